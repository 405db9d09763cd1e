"""The GPU-hours a plan would take: its cells' images (pretraining: epochs x training images x views;
finetuning: planned steps x batch size; probes: one feature pass over their labels, validation and
test images) over a training throughput per (backbone, resolution).

:data:`IMAGES_PER_SECOND` holds those throughputs with where each came from. **None is measured on a
GPU yet**: they are assumed, one GPU of the H100/H200 class at bf16, from the relative FLOPs of the
backbones; ``benchmarks/gpu_check.sh`` measures them on a real one. An entry marked ``measured`` would
say so in :func:`summary_line`.
"""

from __future__ import annotations

from typing import Mapping

from selfstudy.train.budget import Budget

#: (backbone, res) -> (training images/s on one GPU, how it is known). Other backbones and sizes scale
#: from the nearest entry of the same backbone by pixel count.
IMAGES_PER_SECOND: dict[tuple[str, int], tuple[float, str]] = {
    ("resnet9", 64): (20000.0, "assumed"),
    ("resnet9-tiny", 32): (150000.0, "assumed"),
    ("resnet9-half", 64): (30000.0, "assumed"),
    ("resnet18", 64): (15000.0, "assumed"),
    ("resnet50", 64): (5000.0, "assumed"),
    ("resnet50-dilated", 128): (600.0, "assumed"),
}
#: Views per pretraining image (methods that see two augmentations of each image).
VIEWS = {"amdim": 2, "simclr": 2, "moco": 2, "byol": 2, "barlow": 2, "vicreg": 2}
TRAIN_SHARE = 0.85  # the training split's share of a dataset (data.generate's split rule, about)


def rate(backbone: str, res: int) -> tuple[float, str]:
    """Training images/s of ``backbone`` at ``res`` px and how it is known."""
    if (backbone, res) in IMAGES_PER_SECOND:
        return IMAGES_PER_SECOND[(backbone, res)]
    same = [(r, v) for (b, r), v in IMAGES_PER_SECOND.items() if b == backbone]
    base = backbone.split("-")[0]
    if not same:
        same = [(r, v) for (b, r), v in IMAGES_PER_SECOND.items() if b == base] or [(64, (20000.0, "assumed"))]
    r0, (v, how) = min(same, key=lambda rv: abs(rv[0] - res))
    return v * (r0 / res) ** 2, how


def gpu_hours(plan) -> dict[str, float]:
    """Hours per kind of work (pretrain, finetune, probe, check) of every cell of ``plan``."""
    hours = {"pretrain": 0.0, "finetune": 0.0, "probe": 0.0, "check": 0.0}
    for c in plan.pretrain:
        ds = c.config["dataset"]
        epochs = (c.config.get("config", {}).get("method", {}) or {}).get("epochs") or 1
        images = float(epochs) * (ds.get("n") or 0) * TRAIN_SHARE * VIEWS.get(c.method, 1)
        hours["pretrain"] += images / rate(c.backbone, ds.get("res") or 64)[0] / 3600
    for c in plan.downstream + plan.checks:
        res = c.config["dataset"].get("res") or 64
        if c.protocol == "finetune":
            b = Budget.from_overrides(dict(c.config["budget"]))
            images = b.planned_steps(c.n_labels) * b.batch_size
            hours["check" if c.kind == "check" else "finetune"] += images / rate(c.backbone, res)[0] / 3600
        else:  # a forward pass (a third of a training step) over labels, validation and test images
            images = c.n_labels + 2 * 1000
            hours["probe"] += images / (3 * rate(c.backbone, res)[0]) / 3600
    return hours


def sources(plan) -> set[str]:
    """How the throughputs the plan uses are known (``assumed``, ``measured ...``)."""
    cells = plan.pretrain + plan.downstream + plan.checks
    return {rate(c.backbone, c.config["dataset"].get("res") or 64)[1] for c in cells}


def summary_line(plan, hours: Mapping[str, float] | None = None) -> str:
    """``estimated 123.4 GPU-hours (pretrain 1.0, finetune ..., ...): <how the per-step times are known>``."""
    hours = gpu_hours(plan) if hours is None else hours
    def h(v):
        return f"{v:.1f}" if v >= 1 else f"{v:.3f}"

    parts = ", ".join(f"{k} {h(v)}" for k, v in hours.items() if v)
    how = sources(plan)
    said = ("from per-step times measured on a GPU" if how and all(h.startswith("measured") for h in how)
            else "from assumed per-step times (none measured on a GPU yet; benchmarks/gpu_check.sh measures "
                 "them; table: selfstudy.study.estimate.IMAGES_PER_SECOND)")
    return f"estimated {h(sum(hours.values()))} GPU-hours ({parts}) on one GPU, {said}"
