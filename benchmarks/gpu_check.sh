#!/usr/bin/env bash
# gpu_check.sh: is this NVIDIA machine ready for the `paper` study, and how long would it take?
#
#   benchmarks/gpu_check.sh                 # on a machine with an NVIDIA GPU (at most ~8 minutes)
#   benchmarks/gpu_check.sh --cpu-dry-run   # the same steps on a CPU at toy sizes (CI; ~1-2 minutes)
#
# Steps, each under its own time limit, each saying plainly what failed:
#   1. the GPU (nvidia-smi) and a torch that sees it: an existing CUDA torch if one imports (in
#      $PYTHON, .venv-gpu or .venv), else `make venv VENV=.venv-gpu TORCH_SPEC=...` (the CUDA wheel;
#      needs the internet: if the machine cannot reach it, the script says so and stops);
#   2. the tests marked `gpu` (pyproject.toml markers);
#   3. measurements: ResNet9 64 px bf16 training images/s (a bare step: backbone + linear head, Adam),
#      EGL rendering images/s into the dataset store (NVIDIA's EGL when its driver is installed), and
#      one finetune cell's seconds per step at the paper's batch size;
#   4. the `paper` preset's estimated GPU-hours from those figures: every cell of
#      `selfstudy study cells paper` with its planned steps from its budget (pretraining: epochs x
#      unlabeled images x views; finetuning and budget checks: Budget.planned_steps(n) at the measured
#      seconds per finetune step; probes: a feature pass over their images).
# Prints one JSON line at the end (the figures) after a human-readable log.
#
# Environment: TORCH_SPEC (default: torch==2.13.0 from the cu128 index), PYTHON (a python to try
# first), GPU_CHECK_BUDGET_S (total seconds, default 480).
set -u -o pipefail

cd "$(dirname "$0")/.." || exit 2
DRY=0
for arg in "$@"; do
    case "$arg" in
        --cpu-dry-run) DRY=1 ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "gpu_check: unknown argument '$arg' (allowed: --cpu-dry-run, --help)" >&2; exit 2 ;;
    esac
done
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128}"
BUDGET_S="${GPU_CHECK_BUDGET_S:-480}"
START=$(date +%s)
STATUS=0
say() { echo "gpu_check: $*" >&2; }
left() { echo $(( BUDGET_S - ($(date +%s) - START) )); }
# run LIMIT CMD...: CMD under `timeout`, never past the overall budget
limit() { local want=$1 l; l=$(left); (( l < want )) && want=$l; (( want < 5 )) && want=5; echo "$want"; }

# --- 1. the GPU and a torch that sees it -----------------------------------------------------------
if (( DRY )); then
    say "CPU dry run: toy sizes, the device is the CPU"
    DEVICE=cpu
else
    if ! command -v nvidia-smi >/dev/null 2>&1; then
        say "FAILED: nvidia-smi not found: no NVIDIA driver on this machine (use --cpu-dry-run on a CPU)"
        exit 1
    fi
    if ! timeout 30 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2; then
        say "FAILED: nvidia-smi did not list a GPU (driver not loaded, or no device visible to this container)"
        exit 1
    fi
    DEVICE=cuda
fi

has_torch() {  # has_torch PY: 0 if PY imports torch (and, unless dry, sees a CUDA device)
    [ -x "$1" ] || command -v "$1" >/dev/null 2>&1 || return 1
    if (( DRY )); then timeout 60 "$1" -c "import torch, selfstudy" >/dev/null 2>&1
    else timeout 60 "$1" -c "import torch, selfstudy; assert torch.cuda.is_available()" >/dev/null 2>&1; fi
}
PY=""
for cand in ${PYTHON:-} .venv-gpu/bin/python .venv/bin/python python3; do
    if has_torch "$cand"; then PY=$cand; break; fi
done
if [ -z "$PY" ] && (( ! DRY )); then
    say "no CUDA torch importable here; installing one: make venv VENV=.venv-gpu TORCH_SPEC=\"$TORCH_SPEC\""
    if timeout "$(limit 240)" make venv VENV=.venv-gpu TORCH_SPEC="$TORCH_SPEC" >/tmp/gpu_check_pip.log 2>&1 \
        && has_torch .venv-gpu/bin/python; then
        PY=.venv-gpu/bin/python
    else
        say "FAILED: could not install the CUDA build of torch ($(tail -n 1 /tmp/gpu_check_pip.log)); the" \
            "machine may not reach the package index (full log: /tmp/gpu_check_pip.log). Install it by hand" \
            "(pip install $TORCH_SPEC) or point PYTHON= at a python with CUDA torch and selfstudy."
        exit 1
    fi
fi
[ -n "$PY" ] || { say "FAILED: no python with torch and selfstudy found (run make venv)"; exit 1; }
say "python: $PY ($("$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'))"

# --- 2. the tests marked gpu -----------------------------------------------------------------------
TESTS="skipped"
if (( DRY )); then
    say "tests marked gpu: skipped in a dry run (they would skip without a GPU)"
else
    timeout "$(limit 150)" "$PY" -m pytest -q -m gpu tests >/tmp/gpu_check_tests.log 2>&1
    rc=$?
    case $rc in
        0) TESTS="passed" ;;
        5) TESTS="none marked gpu" ;;
        124) TESTS="timed out"; STATUS=1 ;;
        *) TESTS="failed (exit $rc)"; STATUS=1 ;;
    esac
    say "tests marked gpu: $TESTS: $(tail -n 1 /tmp/gpu_check_tests.log)"
fi

# --- 3 + 4. measurements and the estimate ----------------------------------------------------------
MEASURE_LIMIT=$(limit 300)
say "measuring (limit ${MEASURE_LIMIT}s)"
timeout "$MEASURE_LIMIT" env GPU_CHECK_DRY="$DRY" GPU_CHECK_DEVICE="$DEVICE" GPU_CHECK_TESTS="$TESTS" "$PY" - <<'PY'
import json, math, os, statistics, sys, tempfile, time

import torch
import torch.nn.functional as F

dry = os.environ["GPU_CHECK_DRY"] == "1"
device = torch.device(os.environ["GPU_CHECK_DEVICE"])
out = {"benchmark": "gpu_check", "dry_run": dry, "device": str(device),
       "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
       "torch": torch.__version__, "cuda": torch.version.cuda, "tests_marked_gpu": os.environ["GPU_CHECK_TESTS"]}


def log(msg):
    print(f"gpu_check: {msg}", file=sys.stderr, flush=True)


def sync():
    if device.type == "cuda":
        torch.cuda.synchronize()


from selfstudy.models import build_backbone

# ResNet9 at 64 px, bf16 autocast, channels_last: the bare training step (images/s).
backbone, res, batch, steps = ("resnet9-tiny", 32, 32, 4) if dry else ("resnet9", 64, 256, 30)


def train_rate(name, res, batch, steps):
    torch.manual_seed(0)
    model = build_backbone(name).to(device, memory_format=torch.channels_last)
    head = torch.nn.Linear(model.out_dim, 10).to(device)
    x = torch.rand(batch, 3, res, res, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    opt = torch.optim.Adam(list(model.parameters()) + list(head.parameters()), lr=1e-3)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            logits = head(model(x).pooled)
        F.cross_entropy(logits.float(), y).backward()
        opt.step()

    for _ in range(3):
        step()
    sync()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return batch * steps / (time.perf_counter() - t)


def gflop_per_image(name, res):
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):  # shapes only: counted, not computed
        model = build_backbone(name)
        x = torch.rand(2, 3, res, res)
    with FlopCounterMode(display=False) as c:
        model(x).pooled.sum().backward()
    return c.get_total_flops() / 2 / 1e9


try:
    ips = train_rate(backbone, res, batch, steps)
    out["train"] = {"backbone": backbone, "res": res, "batch": batch, "precision": "bf16+channels_last",
                    "images_per_s": round(ips, 1)}
    log(f"training {backbone} {res}px bf16 batch {batch}: {ips:.0f} images/s")
except Exception as e:  # noqa: BLE001
    out["train"] = {"error": f"{type(e).__name__}: {e}"}
    log(f"FAILED training step: {e}")
    ips = None

# EGL rendering into the dataset store (one process, cold: context, meshes, checksums included).
from selfstudy.data.generate import DatasetConfig, generate

try:
    import moderngl

    ctx = moderngl.create_context(standalone=True, backend="egl")
    gl = ctx.info.get("GL_RENDERER", "?")
    ctx.release()
    n = 200 if dry else 4000
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        generate(DatasetConfig(factors="TCVL", n=n, res=64, seed=1), os.path.join(tmp, "d"), workers=1,
                 progress=False)
        rate = n / (time.perf_counter() - t)
    out["render"] = {"gl_renderer": gl, "res": 64, "images": n, "images_per_s": round(rate, 1),
                     "nvidia": "nvidia" in gl.lower()}
    log(f"rendering 64px with {gl}: {rate:.0f} images/s")
except Exception as e:  # noqa: BLE001
    out["render"] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0]}"}
    log(f"FAILED rendering: {e}")

# One finetune cell at the paper's finetune batch size: seconds per step, everything included.
from selfstudy.study.spec import load_spec
from selfstudy.train import finetune
from selfstudy.train.budget import Budget

spec = load_spec("paper")
ft = dict(spec.protocol_options("finetune"))
sec_per_step = None
try:
    ft_res, ft_backbone = (32, "resnet9-tiny") if dry else (spec.datasets.res, spec.backbones[0])
    n_img, n_lab, ft_steps = (600, 100, 10) if dry else (3000, 1000, 200)
    cell = {**ft, "min_steps": ft_steps, "max_steps": ft_steps, "patience": 0,
            "val_size": 100 if dry else 500, "test_size": 100 if dry else 500}
    if dry:
        cell["batch_size"] = 32
    with tempfile.TemporaryDirectory() as tmp:
        path = generate(DatasetConfig(factors="TCVL", n=n_img, res=ft_res, seed=1, models_per_class=12),
                        os.path.join(tmp, "ft"), workers=1 if dry else None, progress=False)
        t = time.perf_counter()
        r = finetune.run(str(path), "classification", backbone=ft_backbone, n_labels=n_lab, seed=0,
                         budget=Budget.from_overrides(cell), device=str(device), precision="bf16",
                         channels_last=True)
        wall = time.perf_counter() - t
    sec_per_step = wall / max(1, r["steps"])
    out["finetune_cell"] = {"backbone": ft_backbone, "res": ft_res, "batch": cell["batch_size"],
                            "steps": r["steps"], "seconds": round(wall, 2),
                            "seconds_per_step": round(sec_per_step, 4)}
    log(f"finetune cell {ft_backbone} {ft_res}px: {r['steps']} steps in {wall:.1f} s")
except Exception as e:  # noqa: BLE001
    out["finetune_cell"] = {"error": f"{type(e).__name__}: {e}"}
    log(f"FAILED finetune cell: {e}")

# The paper preset's GPU-hours from those figures.
try:
    if ips is None or sec_per_step is None:
        raise RuntimeError("needs the training and finetune figures above")
    plan = spec.cells()
    ref_gflop = gflop_per_image(backbone, res)
    # Other backbones (and 64 px in a dry run) scale by their forward+backward FLOPs per image.
    scale = {}

    def factor(name, r):
        if (name, r) not in scale:
            scale[name, r] = gflop_per_image(name, r) / ref_gflop
        return scale[name, r]

    ft_ref = factor(out["finetune_cell"]["backbone"], out["finetune_cell"]["res"])
    import functools

    from selfstudy.methods import METHODS

    @functools.lru_cache(maxsize=None)
    def planned(budget_json, n):
        b = Budget.from_overrides(json.loads(budget_json))
        return b.planned_steps(n), b.batch_size

    views = {"amdim": 2, "simclr": 2, "moco": 2, "byol": 2, "barlow": 2, "vicreg": 2}
    hours = {"pretrain": 0.0, "finetune": 0.0, "probe": 0.0, "check": 0.0}
    for c in plan.pretrain:
        m = spec.method(c.method)
        epochs = m.epochs or dict(m.overrides).get("epochs") or getattr(METHODS[c.method].Config(), "epochs", 50)
        n_train = spec.datasets.config(c.dataset).split_sizes()["train"]
        images = epochs * n_train * views.get(c.method, 1)
        hours["pretrain"] += images * factor(c.backbone, spec.datasets.res) / ips / 3600
    for c in plan.downstream + plan.checks:
        f = factor(c.backbone, spec.datasets.res) / ft_ref
        if c.protocol == "finetune":
            n_steps, cell_batch = planned(json.dumps(dict(c.config["budget"]), sort_keys=True), c.n_labels)
            steps = n_steps * cell_batch / out["finetune_cell"]["batch"]
            hours["check" if c.kind == "check" else "finetune"] += steps * sec_per_step * f / 3600
        else:  # a probe: one forward pass over its labels, val and test (1/3 of a training step each)
            images = c.n_labels + 2 * 1000
            hours["probe"] += images * f / (3 * ips) / 3600
    total = sum(hours.values())
    out["paper_estimate"] = {
        "cells": len(plan), "pretrain_cells": len(plan.pretrain), "downstream_cells": len(plan.downstream),
        "check_cells": len(plan.checks), "gpu_hours": round(total, 1),
        "by_kind": {k: round(v, 2) for k, v in hours.items()},
        "how": "pretraining: epochs x train images x views / training images/s; finetuning and checks: "
               "Budget.planned_steps(n) x the measured finetune seconds per step (batch-scaled); probes: a "
               "forward pass over labels + val + test; other backbones scaled by FLOPs per image"
               + ("; DRY RUN: CPU figures at toy sizes, not a GPU estimate" if dry else "")}
    log(f"paper preset: {len(plan)} cells, about {total:.1f} GPU-hours"
        + (" (dry run: CPU toy figures)" if dry else ""))
except Exception as e:  # noqa: BLE001
    out["paper_estimate"] = {"error": f"{type(e).__name__}: {e}"}
    log(f"FAILED estimate: {e}")

print(json.dumps(out))
failed = [k for k in ("train", "render", "finetune_cell", "paper_estimate") if "error" in out.get(k, {})]
sys.exit(1 if failed else 0)
PY
rc=$?
if (( rc == 124 )); then say "FAILED: the measurements ran past ${MEASURE_LIMIT}s and were stopped"; STATUS=1
elif (( rc != 0 )); then STATUS=1; fi
say "done in $(( $(date +%s) - START )) s (status $STATUS)"
exit $STATUS
