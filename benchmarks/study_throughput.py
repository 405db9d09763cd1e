"""Study throughput: the ``quick`` study's downstream cells per minute with one worker and with the
default executor, and what a finetune cell gets out of a bare training step.

Prints one JSON line. A reduced slice of the ``quick`` preset (scratch only, so no pretraining; its
task, protocol and seeds at two label counts, without budget checks; the preset's budget, so a cell
costs what it costs in the demo) runs twice into fresh study folders:

- ``one_worker``: in-process, one cell at a time with torch's default threads (every core);
- ``default``: what ``selfstudy study run`` picks here (``--executor auto``: on a CPU with two or more
  cores, one worker process per core with one thread each).

``speedup`` = default cells/min over one-worker cells/min, both measured in this run, in alternation
when ``--repeats`` > 1 (medians), so load from other processes affects both alike.

``finetune_vs_bare_step``: the finetune cells of the one-worker run trained ``steps x batch`` images in
their wall time (building the model, gathering and augmenting batches, evaluating on validation and
test, Python between steps: everything a cell does); the ratio divides those images/s by the
images/s of a bare training step (the backbone + a linear head, cross-entropy on pre-made float
tensors, Adam; ``benchmarks/train_throughput.py``'s reference) at the same batch size, precision and
threads, timed right before and after each one-worker run. One minus it is the share of a cell's
time not spent in training arithmetic.

    python benchmarks/study_throughput.py [--labels 100,1000] [--n 8000] [--repeats 1] [key=value ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_throughput import Reference  # noqa: E402

from selfstudy.study.db import ResultsDB  # noqa: E402
from selfstudy.study.executor import available_cores  # noqa: E402
from selfstudy.study.runner import run_study  # noqa: E402
from selfstudy.study.spec import load_spec  # noqa: E402
from selfstudy.train.allocator import retain_freed_memory  # noqa: E402


def bare_images_per_s(backbone: str, res: int, batch: int, bf16: bool, steps: int = 12) -> float:
    """Median images/s of the bare supervised step (after 2 untimed steps)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, res, res, generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)
    ref = Reference(backbone, x, y, bf16)
    for _ in range(2):
        ref.step()
    return batch / statistics.median(ref.step() for _ in range(steps))


def run_once(spec, executor: str, data_root: Path, root: Path) -> dict:
    """Run the spec into a fresh folder; cells/min and the finetune cells' trained images/s."""
    with tempfile.TemporaryDirectory(dir=root) as folder:
        start = time.perf_counter()
        result = run_study(spec, folder, executor=executor, progress=False, data_root=data_root, report=False)
        wall = time.perf_counter() - start
        if not result.ok:
            raise SystemExit(f"study_throughput: cells failed: {result.failed[:3]}")
        with ResultsDB.open(folder) as db:
            rows = db.rows()
            describe = db.get_meta("threads_per_cell")
    finetune = [r for r in rows if r["config"].get("protocol") == "finetune"]
    images = sum(r["steps"] * r["config"]["budget"]["batch_size"] for r in finetune)
    return {"cells": len(rows), "seconds": wall, "cells_per_min": 60 * len(rows) / wall,
            "finetune_images_per_s": images / sum(r["wall_seconds"] for r in finetune),
            "finetune_cell_seconds": statistics.median(r["wall_seconds"] for r in finetune),
            "threads_per_cell": describe}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--labels", default="100,1000", help="label counts of the slice (default 100,1000)")
    p.add_argument("--n", type=int, default=8000, help="images in the slice's dataset (quick: 18000)")
    p.add_argument("--repeats", type=int, default=1, help="runs of each executor, alternated (median)")
    p.add_argument("--data-root", type=Path, default=None, help="dataset cache (default: a temp folder)")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value",
                   help="more spec overrides of the slice, e.g. tasks=[classification] finetune.max_steps=60")
    args = p.parse_args()
    labels = [int(x) for x in args.labels.split(",")]
    overrides = ["methods=[scratch]", f"labels={labels}", f"datasets.n={args.n}", "budget_check=off",
                 *args.overrides]
    spec = load_spec("quick", overrides)
    ft = spec.protocol_options("finetune")
    batch = int(ft.get("batch_size", 64))
    bf16 = spec.precision == "bf16"
    retain_freed_memory()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data_root = args.data_root or root / "data"
        from selfstudy.data.generate import ensure_dataset

        ensure_dataset(spec.datasets.config(spec.datasets.factors[0]), root=data_root, progress=False)
        one, auto, bare = [], [], []
        for _ in range(args.repeats):
            bare.append(bare_images_per_s(spec.backbones[0], spec.datasets.res, batch, bf16))
            one.append(run_once(spec, "inprocess", data_root, root))
            bare.append(bare_images_per_s(spec.backbones[0], spec.datasets.res, batch, bf16))
            auto.append(run_once(spec, "auto", data_root, root))

    def med(runs, key):
        return statistics.median(r[key] for r in runs)

    bare_ips = statistics.median(bare)
    from selfstudy.study.executor import choose_executor
    from selfstudy.study.runner import _describe_executor, resolve_device

    chosen = choose_executor(str(resolve_device(spec.device)), len(spec.cells()))
    print(json.dumps({
        "benchmark": "study_throughput",
        "slice": {"preset": "quick", "overrides": overrides, "downstream_cells": len(spec.cells().downstream)},
        "cores": available_cores(),
        "one_worker": {"executor": f"inprocess, {one[0]['threads_per_cell']} threads per cell",
                       "cells_per_min": round(med(one, "cells_per_min"), 2),
                       "seconds": round(med(one, "seconds"), 1)},
        "default": {"executor": _describe_executor(chosen, getattr(chosen, "threads", None) or
                                                   auto[0]["threads_per_cell"]),
                    "cells_per_min": round(med(auto, "cells_per_min"), 2),
                    "seconds": round(med(auto, "seconds"), 1)},
        "speedup": round(med(auto, "cells_per_min") / med(one, "cells_per_min"), 3),
        "finetune": {"batch": batch, "precision": "bf16+channels_last" if bf16 else "fp32",
                     "cell_images_per_s": round(med(one, "finetune_images_per_s"), 1),
                     "cell_seconds": round(med(one, "finetune_cell_seconds"), 2),
                     "bare_step_images_per_s": round(bare_ips, 1),
                     "finetune_vs_bare_step": round(med(one, "finetune_images_per_s") / bare_ips, 3)},
        "repeats": args.repeats,
        "note": "cells/min of the slice's downstream cells, wall time of run_study without the report; "
                "finetune_vs_bare_step = trained images/s over a finetune cell's whole wall time / a bare "
                "step's images/s at the same batch, precision and threads (timed before and after each "
                "one-worker run).",
    }))


if __name__ == "__main__":
    main()
