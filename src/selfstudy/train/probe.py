"""Frozen-feature protocols: a linear probe and k-nearest neighbours (docs/PAPER.md §6.5).

The encoder (pretrained, or randomly initialised as a baseline) is frozen and run **once**, in eval mode
and without augmentation, over the labeled subset (nested, class-balanced, exactly the images
finetuning gets), a fixed validation subset and the test split. Everything after that works on the
stored features, so a probe costs seconds.

**Linear probe** (:func:`linear`): the task's own head (a ``Linear``) trained on the features through the
one :class:`~selfstudy.train.loop.Trainer`: Adam, full batch (minibatches of ``batch_size`` when the
subset is larger), ``steps`` steps with the learning rate decaying linearly to ``final_lr``. Features are
standardised with the labeled subset's per-dimension mean and std first (the head's expressiveness is
unchanged; the weight decay then means the same for every encoder). The L2 weight decay is chosen on the
validation subset from a small grid (``weight_decays``), as is the step (validation every
``eval_every`` steps; the best one is kept), and the test metric of that choice is reported. The paper's
offline probe was scikit-learn's L-BFGS logistic regression on class-balanced subsets; Adam to
convergence reaches the same optimum for the convex problem and also serves regression tasks. For dense
tasks (segmentation, depth) every pixel of the feature map is a row, with its label sampled there by
nearest neighbour: the paper's linear readout (docs/PAPER.md §5.3, §6.5).

**k-NN** (:func:`knn`, classification-type tasks only): cosine similarity between L2-normalised
features; the ``k`` nearest labeled images vote with weight ``exp(similarity / temperature)`` (Wu et
al. 2018's weighted vote; ``temperature=0.07``). Nothing is fitted, so val and test are reported as is.

Both return a :class:`~selfstudy.train.result.DownstreamResult` (``steps`` 0 for k-NN;
``val_last``/``test_last`` are the linear head's final weights at the chosen weight decay).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

import torch
from torch import nn

from selfstudy.core.device import autocast, resolve_device
from selfstudy.data.device import load_split, to_float
from selfstudy.errors import UserError
from selfstudy.tasks import CategoricalTask, Task, add_sums, get_task
from selfstudy.tasks.dense_head import pixel_rows
from selfstudy.train.budget import ProbeBudget
from selfstudy.train.inputs import (TEST_SUBSET_SEED, VAL_SUBSET_SEED, check_run_args, check_task_on,
                                    fixed_subset, labeled_subset, open_data)
from selfstudy.train.loop import TrainConfig, Trainer
from selfstudy.train.model import build_encoder, input_transform, resolve_init, seeded
from selfstudy.train.result import DownstreamResult, scores, selected
from selfstudy.train.selection import Selection, still_improving


@dataclass
class ProbeFeatures:
    """Frozen features of one encoder on one labeled subset: ``x_*`` (N, D) float32 (pooled features,
    or feature maps for dense tasks), ``y_*`` the task's targets."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    subset_sha: str
    backbone: str
    method: str | None
    seconds: float
    info: dict = field(default_factory=dict)


@torch.no_grad()
def encode(encoder: nn.Module, input_tf: nn.Module, task: Task, images: torch.Tensor, *, batch_size: int = 512,
           precision: str = "fp32", channels_last: bool = False) -> torch.Tensor:
    """Frozen features of uint8 (N, H, W, 3) ``images``: what ``task``'s head reads, as float32, computed
    in eval mode, without augmentation, in batches (under autocast when ``precision`` asks)."""
    was = encoder.training
    encoder.eval()
    dense_map = getattr(encoder, "dense_map", "prepool")
    out = []
    try:
        for start in range(0, len(images), batch_size):
            x = to_float(images[start:start + batch_size], channels_last=channels_last)
            with autocast(precision, x.device):
                out.append(task.features(encoder(input_tf(x)), dense_map).float())
    finally:
        encoder.train(was)
    return torch.cat(out) if out else torch.zeros(0)


def extract(ds, task: "str | Task", *, init=None, n_labels: int, seed: int = 0, backbone: str | None = None,
            budget: ProbeBudget | None = None, device: str = "cpu", precision: str = "fp32",
            channels_last: bool = False, space: str | None = None,
            subset_seed: int | None = None) -> ProbeFeatures:
    """Run the frozen encoder once over the labeled subset, the fixed validation subset and the test
    split. ``init=None`` gives a randomly initialised encoder (seeded by ``seed``) as a baseline. The
    arguments mean what they mean for :func:`selfstudy.train.finetune.run`."""
    t0 = time.perf_counter()
    task = get_task(task)
    budget = (budget or ProbeBudget()).validate()
    check_run_args(n_labels, seed, precision)
    ds = open_data(ds)
    dev = resolve_device(device)
    init, backbone = resolve_init(init, backbone)
    task = check_task_on(ds, task)
    pos, sha = labeled_subset(ds, task, int(n_labels), seed if subset_seed is None else subset_seed)
    input_tf = input_transform(ds, init, space).to(dev)
    with seeded(seed):
        encoder = build_encoder(backbone, init)
    if hasattr(encoder, "check_input_res"):
        encoder.check_input_res(int(ds["images"].shape[1]))
    encoder = encoder.to(dev)
    if channels_last:
        encoder = encoder.to(memory_format=torch.channels_last)
    names = ("images", *task.required_arrays)
    splits = {
        "train": load_split(ds, "train", dev, names=names, indices=pos),
        "val": load_split(ds, "val", dev, names=names,
                          indices=fixed_subset(len(ds.indices("val")), budget.val_size, VAL_SUBSET_SEED)),
        "test": load_split(ds, "test", dev, names=names,
                           indices=fixed_subset(len(ds.indices("test")), budget.test_size, TEST_SUBSET_SEED)),
    }
    for name, data in splits.items():
        if len(data["images"]) == 0:
            raise UserError(f"dataset {ds.path} has no {name} images; probes need train, val and test")
    feats = {name: encode(encoder, input_tf, task, data["images"], batch_size=budget.feature_batch,
                          precision=precision, channels_last=channels_last)
             for name, data in splits.items()}
    return ProbeFeatures(feats["train"], task.targets(splits["train"]), feats["val"], task.targets(splits["val"]),
                         feats["test"], task.targets(splits["test"]), sha, backbone,
                         init["method"] if init is not None else None, time.perf_counter() - t0,
                         {"n_labels": int(n_labels), "seed": int(seed), "task": task.spec,
                          "subset_indices": ds.indices("train")[pos].tolist()})


def _check_features(f: ProbeFeatures, task: Task) -> ProbeFeatures:
    made_for = f.info.get("task")
    if made_for is not None and made_for != task.spec:
        raise UserError(f"these features were extracted for task {made_for!r}, not {task.spec!r}; "
                        f"extract them again for {task.spec!r}")
    return f


# -------------------------------------------------------------------------------------- linear probe
class _Standardise(nn.Module):
    """``(x - mean) / std`` with fixed statistics (buffers), then the head."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, head: nn.Module):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head((x - self.mean) / self.std)


def _dense_rows(f: ProbeFeatures) -> ProbeFeatures:
    """Dense features as one row per feature-map pixel, labels sampled there (nearest): the paper's dense
    linear evaluation (docs/PAPER.md §6.5), on every pixel. A linear probe of a dense task is therefore always
    the linear readout at feature resolution, whatever the task's own readout."""
    (xt, yt), (xv, yv), (xs, ys) = (pixel_rows(f.x_train, f.y_train), pixel_rows(f.x_val, f.y_val),
                                    pixel_rows(f.x_test, f.y_test))
    return replace(f, x_train=xt, y_train=yt, x_val=xv, y_val=yv, x_test=xs, y_test=ys)


def _score(module: nn.Module, task: Task, x: torch.Tensor, y: torch.Tensor, batch: int = 8192) -> dict:
    sums = None
    with torch.no_grad():
        for s in range(0, len(x), batch):
            sums = add_sums(sums, task.metric_sums(module(x[s:s + batch]).float(), y[s:s + batch]))
    return task.metrics_from_sums(sums)


def linear(ds=None, task: "str | Task" = "classification", *, init=None, n_labels: int | None = None,
           seed: int = 0, backbone: str | None = None, budget: ProbeBudget | None = None,
           device: str = "cpu", precision: str = "fp32", channels_last: bool = False,
           space: str | None = None, subset_seed: int | None = None,
           features: ProbeFeatures | None = None) -> DownstreamResult:
    """Linear probe on frozen features; returns a :class:`DownstreamResult` (see the module doc).

    Pass ``features`` (from :func:`extract`) to reuse one extraction for several probes; otherwise the
    arguments are those of :func:`extract`.
    """
    t0 = time.perf_counter()
    task = get_task(task)
    budget = (budget or ProbeBudget()).validate()
    if features is None:
        features = extract(ds, task, init=init, n_labels=n_labels, seed=seed, backbone=backbone, budget=budget,
                           device=device, precision=precision, channels_last=channels_last, space=space,
                           subset_seed=subset_seed)
    f = _check_features(features, task)
    n_images = len(f.x_train)
    if task.dense:
        f = _dense_rows(f)
    mean = f.x_train.mean(0)
    # A constant dimension (std 0) would divide by zero; it carries no information anyway.
    std = f.x_train.std(0, unbiased=False).clamp_min(1e-6) if len(f.x_train) > 1 else torch.ones_like(mean)
    min_delta = task.min_delta if budget.min_delta is None else float(budget.min_delta)
    n = len(f.x_train)
    batch = min(budget.batch_size, n)
    seed = int(f.info.get("seed", seed))

    best = None
    fits = []
    for wd in budget.weight_decays:
        with seeded(seed):
            d = f.x_train.shape[1]
            head = task.head(d, readout="linear") if task.dense else task.head(d)
            module = _Standardise(mean, std, head).to(f.x_train.device)
        cfg = TrainConfig(steps=budget.steps, batch_size=batch, lr=budget.lr, final_lr=budget.final_lr,
                          weight_decay=wd, warmup_epochs=0.0, checkpoint_every=0, seed=seed)
        sel = Selection(task, lambda m: _score(m, task, f.x_val, f.y_val), budget.eval_every, 0, min_delta)
        trainer = Trainer(module, cfg, {"x": f.x_train, "y": f.y_train},
                          lambda b, m=module: {"loss": task.loss(m(b["x"]), b["y"])},
                          callbacks=[sel], progress=False, desc=f"probe wd={wd:g}")
        trainer.run()  # patience 0: Selection never stops a probe early
        fits.append({"weight_decay": wd, "val": sel.best, "best_step": sel.best_step})
        if best is None or task.better(sel.best, best[1].best):
            best = (wd, sel, module)
    wd, sel, module = best
    test_last = _score(module, task, f.x_test, f.y_test)
    module.load_state_dict(sel.best_state)
    test_best = _score(module, task, f.x_test, f.y_test)
    return selected(
        task, sel, test_best, test_last,
        still_improving=still_improving(sel.values, task.higher_is_better, min_delta, budget.late_fraction),
        steps=budget.steps * len(budget.weight_decays),
        seconds=f.seconds + time.perf_counter() - t0,
        subset_sha=f.subset_sha,
        subset_indices=f.info.get("subset_indices"),
        budget={**asdict(budget), "weight_decay": wd, "best_step": sel.best_step, "batch": batch,
                "min_delta": min_delta, "fits": fits},
        protocol="linear",
        backbone=f.backbone,
        method=f.method,
        n_labels=n_images,
        seed=seed,
    )


# ----------------------------------------------------------------------------------------------- kNN
def knn_scores(x_train: torch.Tensor, y_train: torch.Tensor, x_query: torch.Tensor, num_classes: int,
               k: int = 20, temperature: float = 0.07, chunk: int = 1024) -> torch.Tensor:
    """Weighted k-NN class scores (Q, C): each query's ``k`` most cosine-similar training features vote
    for their class with weight ``exp(similarity / temperature)``; rows are normalised to sum to 1.

    x_train: (N, D), y_train: (N,) int in [0, C), x_query: (Q, D). ``k`` is capped at N.
    """
    k = min(int(k), len(x_train))
    a = nn.functional.normalize(x_train.float(), dim=1)
    out = []
    for s in range(0, len(x_query), chunk):
        q = nn.functional.normalize(x_query[s:s + chunk].float(), dim=1)
        sim, idx = (q @ a.T).topk(k, dim=1)
        # Subtracting the row max before exp changes no ratio and keeps exp(1/0.07) from overflowing.
        w = ((sim - sim[:, :1]) / temperature).exp()
        votes = torch.zeros(len(q), num_classes, device=q.device)
        votes.scatter_add_(1, y_train[idx].long(), w)
        out.append(votes / votes.sum(1, keepdim=True))
    return torch.cat(out) if out else torch.zeros(0, num_classes)


def knn(ds=None, task: "str | Task" = "classification", *, init=None, n_labels: int | None = None,
        seed: int = 0, backbone: str | None = None, budget: ProbeBudget | None = None,
        device: str = "cpu", precision: str = "fp32", channels_last: bool = False, space: str | None = None,
        subset_seed: int | None = None, features: ProbeFeatures | None = None) -> DownstreamResult:
    """k-NN on frozen features (classification-type tasks); a :class:`DownstreamResult`. ``budget.k`` and
    ``budget.temperature`` set the vote; the other arguments are those of :func:`linear`."""
    t0 = time.perf_counter()
    task = get_task(task)
    if not isinstance(task, CategoricalTask):
        raise UserError(f"k-NN votes for classes; task {task.spec!r} is not a classification task "
                        f"(allowed: classification, pose); use the linear probe")
    budget = (budget or ProbeBudget()).validate()
    if features is None:
        features = extract(ds, task, init=init, n_labels=n_labels, seed=seed, backbone=backbone, budget=budget,
                           device=device, precision=precision, channels_last=channels_last, space=space,
                           subset_seed=subset_seed)
    f = _check_features(features, task)

    def score(x, y):
        p = knn_scores(f.x_train, f.y_train, x, task.num_classes, budget.k, budget.temperature)
        return task.metrics(torch.log(p.clamp_min(1e-12)), y)  # log-votes as logits: loss = vote NLL

    val, test = score(f.x_val, f.y_val), score(f.x_test, f.y_test)
    primary = task.primary
    k = min(budget.k, len(f.x_train))
    return DownstreamResult(
        metric=primary,
        higher_is_better=task.higher_is_better,
        val=val[primary],
        test=test[primary],
        val_last=val[primary],
        test_last=test[primary],
        still_improving=False,
        steps=0,
        seconds=f.seconds + time.perf_counter() - t0,
        metrics=scores(val=val, test=test),
        subset_sha=f.subset_sha,
        subset_indices=f.info.get("subset_indices"),
        budget={"k": k, "temperature": budget.temperature, "val_size": budget.val_size,
                "test_size": budget.test_size},
        protocol="knn",
        task=task.spec,
        backbone=f.backbone,
        method=f.method,
        n_labels=len(f.x_train),
        seed=int(f.info.get("seed", seed)),
        best_step=0,
        stopped_early=False,
        curve=[],
    )
