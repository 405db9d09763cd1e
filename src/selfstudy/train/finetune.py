"""Finetuning and training from scratch on a labeled subset: the two arms whose gap is the utility.

Both arms run the same recipe (PAPER.md §5.1, §5.4): every layer trained, a fresh linear head, Adam with
betas (0.8, 0.999), peak lr 1e-3, L2 weight decay 1e-4, linear warm-up then linear decay to 1e-6,
the paper's augmentation, all through the one :class:`~selfstudy.train.loop.Trainer`. The only
difference is where the encoder and the input normalisation come from:

- **finetune** (``init`` = a pretraining transfer state): the pretrained encoder, and the
  :class:`~selfstudy.data.colour.InputTransform` the pretraining used (``init["input"]``), so the
  encoder sees inputs normalised as it was trained on;
- **scratch** (``init=None``): a freshly initialised backbone, and an ``InputTransform`` fitted on the
  dataset's whole training split (image statistics cost no labels; the pretraining fits the same
  statistics the same way, so both arms see identical inputs when the colour space agrees).

**Budgets decide the answer** (ARCHITECTURE.md, "Measured"): an arm that stops before it has converged
makes pretraining look more useful than it is. A :class:`Budget` therefore grows with the label count
and stops on the validation split rather than at a fixed step:

- planned steps ``= clamp(ceil(epochs * n / batch_size), min_steps, max_steps)``; the learning-rate
  schedule spans the planned steps (warm-up ``warmup_fraction`` of them). Small subsets are tiled, as
  the paper tiled them to 10k samples per round, so a step always sees a full batch;
- every ``eval_every`` steps (default: ``planned / evals``) the model is scored on a fixed subset of the
  model-disjoint validation split (``val_size`` images, the same ones for every run on the dataset);
- **stopping only after annealing**: ``patience`` evaluations in a row without an improvement of more
  than ``min_delta`` (the task's, e.g. half an accuracy point), never before ``min_fraction`` of the
  planned steps, start an annealing tail: the learning rate falls linearly from where it is to
  ``final_lr`` over :data:`ANNEAL_FRACTION` (10 %) of the planned steps, then the run ends (earliest at
  60 % of the plan with the defaults). Every arm ends annealed, so an arm that plateaus first does not
  forfeit the gain of the decay (issue 11). A tail that would outlast the plan changes nothing;
- **model selection**: the weights of the best validation evaluation are kept; the reported ``test`` is
  the test metric of those weights (the whole test split, or ``test_size`` fixed images); the last
  weights' numbers are stored too (``val_last``, ``test_last``; the paper reported the last);
- **still_improving** is set when the run used its whole budget (no early stop) and the best
  validation value of the last ``late_fraction`` of the evaluations beat everything before them by
  more than ``min_delta``: the cell needs a longer budget before its number means anything.

Returns the "Downstream result dict" of DESIGN.md.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from selfstudy.core.device import autocast, check_precision, resolve_device
from selfstudy.errors import UserError
from selfstudy.models import weights
from selfstudy.tasks import Task, add_sums, get_task
from selfstudy.train.loop import Callback, TrainConfig, Trainer
from selfstudy.train.budget import Budget

#: Rows a labeled subset is tiled up to, so that a Trainer epoch holds many full batches (the paper
#: tiled small subsets to 10k samples per round, PAPER.md §5.3).
TILE_ROWS = 10_000
#: A run that plateaus anneals over this fraction of its planned steps before it stops (see the module
#: doc). A fixed rule rather than a budget option, so that the budgets' canonical dicts, and with them
#: existing cell ids, stay the same.
ANNEAL_FRACTION = 0.1
#: Seeds of the fixed evaluation subsets: the same images for every run, whatever its own seed.
VAL_SUBSET_SEED, TEST_SUBSET_SEED = 0x7A1, 0x7E57


def still_improving(values: Sequence[float], higher_is_better: bool, min_delta: float,
                    late_fraction: float = 0.2) -> bool:
    """Whether a validation curve was still rising at its end.

    ``values``: the primary metric at each evaluation, in order. True when the best of the last
    ``ceil(late_fraction * len)`` evaluations beats the best of all earlier ones by more than
    ``min_delta`` (for ``higher_is_better=False``, "beats" means "is lower").
    """
    v = [float(x) for x in values]
    if len(v) < 2:
        return len(v) == 1  # one evaluation says nothing about convergence; assume not converged
    late = max(1, math.ceil(late_fraction * len(v)))
    late = min(late, len(v) - 1)
    pick = max if higher_is_better else min
    before, after = pick(v[:-late]), pick(v[-late:])
    return after > before + min_delta if higher_is_better else after < before - min_delta


# ----------------------------------------------------------------------------------- data and init
def open_data(data, res: int | None = None, n: int | None = None, progress: bool = False):
    """A :class:`~selfstudy.data.store.Dataset` from a folder, a ``Dataset``, or a factor string
    (``"TCVL"``: generated once, then reused, by ``selfstudy.data.generate.ensure_dataset``).

    ``res`` (pixels) and ``n`` (images) pick what to generate for a factor string; for a folder ``res``
    must match the stored images.
    """
    from selfstudy.data.store import Dataset

    if isinstance(data, Dataset):
        ds = data
    else:
        from selfstudy.data.generate import data_argument, ensure_dataset

        target = data_argument(data, res, n)
        ds = Dataset(target if isinstance(target, Path) else ensure_dataset(target, progress=progress))
    stored = int(ds["images"].shape[1])
    if res is not None and int(res) != stored:
        raise UserError(f"dataset {ds.path} is {stored} px but --res {res} was asked for; omit --res or "
                        f"render the dataset at {res} px")
    return ds


def dataset_factors(ds) -> str | None:
    """The dataset's factor string from its config, or None if it does not record one."""
    f = ds.config.get("factors") if isinstance(ds.config, Mapping) else None
    return str(f) if f is not None else None


def check_task_on(ds, task: Task) -> Task:
    """Raise :class:`UserError` unless ``task`` can run on ``ds`` (its factors, its arrays); return the
    task for ``ds``: classification on an imported dataset takes its classes (``class_names``)."""
    task.check(dataset_factors(ds), f"dataset {ds.path}")
    if task.dense:  # per-pixel labels: any dataset with the maps, multi-object ones included
        task.check_dataset(ds)
        return task
    missing = [a for a in task.required_arrays if a not in ds]
    if missing:
        raise UserError(f"task {task.spec!r} needs array(s) {', '.join(missing)}, which dataset {ds.path} "
                        f"does not have; it has: {', '.join(ds.names)}")
    if "label" not in ds or bool((np.asarray(ds["label"][:1]) < 0).any()):
        raise UserError(f"dataset {ds.path} has no per-image class label (a multi-object dataset?); "
                        f"task {task.spec!r} needs a single-object dataset")
    names = ds.config.get("class_names") if isinstance(ds.config, Mapping) else None
    if names and getattr(task, "target_array", None) == "label":
        task = copy.copy(task)
        task.class_names = tuple(str(n) for n in names)
    return task


def resolve_init(init, backbone: str | None) -> tuple[dict | None, str]:
    """``(transfer state or None, backbone name)``. ``init`` may be a transfer state, a path to a
    pretraining checkpoint (``final.pt`` or its run folder), or None (scratch: ``backbone`` or
    ``resnet9``). A checkpoint of another backbone than ``backbone`` raises :class:`UserError`."""
    from selfstudy.models import BACKBONES

    if init is not None and not isinstance(init, Mapping):
        from selfstudy.train.pretrain import load_transfer

        # A pretraining run's final.pt, or weights the user holds (torchvision names; needs backbone).
        if weights.is_pretraining_checkpoint(init):
            init = load_transfer(init)
        elif backbone is None:
            raise UserError(f"{init} is a weights file, not a selfstudy pretraining run; name the backbone "
                            f"it was saved from with --backbone (e.g. resnet18 or resnet50)")
        else:
            init = weights.load_weights(init, backbone)
    if init is not None:
        if backbone is not None and init["backbone"] != backbone:
            raise UserError(f"the init checkpoint was pretrained ({init['method']}) with backbone "
                            f"{init['backbone']!r}, but backbone {backbone!r} was asked for; use "
                            f"--backbone {init['backbone']} or another checkpoint")
        backbone = init["backbone"]
    backbone = backbone or "resnet9"
    if backbone not in BACKBONES:
        raise UserError(f"unknown backbone {backbone!r}; allowed: {', '.join(BACKBONES)}")
    return (dict(init) if init is not None else None), backbone


class _SplitRows:
    """Rows ``rows`` of a memory-mapped array, indexable like an array (so ``InputTransform.fit`` reads
    only the rows it samples instead of the whole split)."""

    def __init__(self, arr, rows: np.ndarray):
        self.arr, self.rows = arr, rows
        self.shape = (len(rows), *arr.shape[1:])
        self.dtype = arr.dtype

    def __getitem__(self, i):
        return self.arr[self.rows[i]]


def input_transform(ds, init: Mapping | None, space: str | None):
    """The input normalisation: the pretraining's for finetuning, fitted on the train split for scratch.

    ``space`` (``rgb``/``lab``) must agree with the pretraining's when both are given; for scratch it
    defaults to ``rgb``.
    """
    from selfstudy.data.colour import InputTransform

    if init is not None and init["input"] is not None:  # a weights file records none: fit it
        tf = InputTransform.from_state(init["input"])
        if space is not None and space != tf.space:
            raise UserError(f"the init checkpoint was pretrained on {tf.space} input, but space {space!r} "
                            f"was asked for; omit the space or use {tf.space}")
        return tf
    return InputTransform.fit(_SplitRows(ds["images"], ds.indices("train")), space or "rgb")


def fixed_subset(n_split: int, size: int | None, stream: int) -> np.ndarray | None:
    """Positions of a fixed random ``size``-subset of a split of ``n_split`` images (sorted), or None
    for the whole split. Independent of any run's seed, so every arm is scored on the same images."""
    if not size or size >= n_split:
        return None
    return np.sort(np.random.default_rng([stream, n_split]).permutation(n_split)[:size])


class DownstreamModel(nn.Module):
    """Input normalisation + encoder + task head: RGB in [0, 1] (N, 3, H, W) -> head output."""

    def __init__(self, input_tf: nn.Module, encoder: nn.Module, head: nn.Module, task: Task):
        super().__init__()
        self.input = input_tf
        self.encoder = encoder
        self.head = head
        self.task = task
        self.dense_map = getattr(encoder, "dense_map", "prepool")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """What the head reads (see :meth:`Task.features`)."""
        return self.task.features(self.encoder(self.input(x)), self.dense_map)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_encoder(backbone: str, init: Mapping | None) -> nn.Module:
    """The encoder: the pretrained one with its weights (``init``), or a freshly initialised
    ``backbone``. Draws initial weights from torch's global generator; callers seed it (see
    :func:`seeded`)."""
    if weights.is_weights_init(init):
        return weights.build_encoder(init)
    if init is not None:
        from selfstudy.methods import build_encoder as from_transfer

        return from_transfer(init)
    from selfstudy.models import build_backbone

    return build_backbone(backbone, in_channels=3)


def head_in_dim(encoder: nn.Module, task: Task) -> int:
    if task.dense:
        return int(encoder.map_channels[encoder.dense_map])
    return int(encoder.out_dim)


def build_head(encoder: nn.Module, task: Task) -> nn.Module:
    """A fresh head of ``task`` for ``encoder``; a dense head also learns the map's stride (how far its
    decoder upsamples)."""
    if task.dense:
        return task.head(head_in_dim(encoder, task), stride=int(encoder.map_strides[encoder.dense_map]))
    return task.head(head_in_dim(encoder, task))


@contextlib.contextmanager
def seeded(seed: int):
    """Context: torch's global CPU generator seeded with ``seed`` and restored afterwards (module
    constructors draw their initial weights from it; build on the CPU, then move)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@torch.no_grad()
def evaluate(model: nn.Module, task: Task, images: torch.Tensor, y: torch.Tensor, *, batch_size: int = 512,
             precision: str = "fp32", channels_last: bool = False) -> dict[str, float]:
    """Metrics of ``model`` on uint8 (N, H, W, 3) ``images`` with targets ``y``, in batches, in eval mode
    (the mode is restored afterwards)."""
    from selfstudy.data.device import to_float

    was_training = model.training
    model.eval()
    sums = None
    try:
        for start in range(0, len(images), batch_size):
            x = to_float(images[start:start + batch_size], channels_last=channels_last)
            with autocast(precision, x.device):
                out = model(x)
            sums = add_sums(sums, task.metric_sums(out.float(), y[start:start + batch_size]))
    finally:
        model.train(was_training)
    return task.metrics_from_sums(sums) if sums is not None else {}


class Selection(Callback):
    """A Trainer callback: scores the model on validation every ``eval_every`` steps and at the last
    step, keeps the best weights, and after ``patience`` evaluations without an improvement of more
    than ``min_delta`` (never before step ``min_step``) ends the run after an annealing tail of
    ``anneal_steps`` (:meth:`Trainer.stop <selfstudy.train.loop.Trainer.stop>`).

    ``score(module) -> dict`` returns the task's metrics; ``curve`` collects ``(step, metrics)``.
    """

    def __init__(self, task: Task, score, eval_every: int, patience: int, min_delta: float,
                 min_step: int = 0, anneal_steps: int = 0):
        self.task, self.score = task, score
        self.anneal_steps = anneal_steps
        self.eval_every, self.patience, self.min_delta, self.min_step = eval_every, patience, min_delta, min_step
        self.curve: list[tuple[int, dict]] = []
        self.best: float | None = None
        self.best_step = 0
        self.best_metrics: dict = {}
        self.best_state: dict | None = None
        self._ref: float | None = None
        self._since = 0
        self.stopped_early = False

    def on_step_end(self, trainer, step: int, outputs) -> None:
        if step % self.eval_every and step != trainer.end_step:
            return
        module = trainer.module
        m = self.score(module)
        v = m[self.task.primary]
        self.curve.append((step, m))
        if self.best is None or self.task.better(v, self.best):
            self.best, self.best_step, self.best_metrics = v, step, m
            self.best_state = {k: t.detach().clone() for k, t in module.state_dict().items()}
        if self._ref is None or self.task.better(v, self._ref, self.min_delta):
            self._ref, self._since = v, 0
        else:
            self._since += 1
        if (self.patience and self._since >= self.patience and self.min_step <= step < trainer.end_step
                and not self.stopped_early):
            trainer.stop(self.anneal_steps)
            self.stopped_early = trainer.stopped_early

    @property
    def values(self) -> list[float]:
        return [m[self.task.primary] for _, m in self.curve]


def prefixed(prefix: str, metrics: Mapping[str, float]) -> dict[str, float]:
    return {f"{prefix}/{k}": float(v) for k, v in metrics.items()}


def labeled_subset(ds, task: Task, n_labels: int, seed: int) -> tuple[np.ndarray, str]:
    """``(positions within the train split, subset_sha)`` of the ``n_labels``-label subset: nested and
    balanced over object classes (``label``) for every task, so all tasks of a seed share one subset;
    nested and uniformly random on datasets without a per-image class (multi-object scenes, label -1).
    The sha is of the dataset indices."""
    from selfstudy.data.subsets import nested_balanced, nested_random, subset_sha

    train_idx = ds.indices("train")
    labels = np.asarray(ds["label"][train_idx]) if "label" in ds else None
    if labels is None or bool((labels < 0).any()):
        pos = nested_random(len(train_idx), [n_labels], seed)[n_labels]
    else:
        pos = nested_balanced(labels, [n_labels], seed)[n_labels]
    return pos, subset_sha(train_idx[pos])


def check_run_args(n_labels, seed, precision: str) -> None:
    if isinstance(n_labels, bool) or not isinstance(n_labels, (int, np.integer)) or n_labels <= 0:
        raise UserError(f"label count {n_labels!r} is not allowed; it must be a positive integer")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"seed {seed!r} is not allowed; it must be an integer >= 0")
    check_precision(precision)


# ---------------------------------------------------------------------------------------- protocol
def run(ds, task: "str | Task", *, backbone: str | None = None, n_labels: int, seed: int = 0,
        init: "Mapping | str | os.PathLike | None" = None, budget: Budget | None = None,
        device: str = "cpu", precision: str = "fp32", channels_last: bool = False,
        space: str | None = None, augment: bool = True, subset_seed: int | None = None,
        progress: bool = False) -> dict:
    """Finetune (``init`` given) or train from scratch (``init=None``) on ``n_labels`` labels.

    Args:
        ds: a :class:`~selfstudy.data.store.Dataset`, a dataset folder or a factor string.
        task: a task or its spec (``"classification"``, ``"pose"``, ``"pose-regression"``,
            ``"segmentation"``, ``"depth"``).
        backbone: backbone name; for finetuning it must match the checkpoint's (None: the checkpoint's,
            or ``resnet9`` from scratch).
        n_labels: size of the labeled subset of the train split (nested; class-balanced where images
            have a class, uniformly random on multi-object datasets).
        seed: seeds the subset (unless ``subset_seed``), the initialisation of the head (and of the
            backbone from scratch), the batch order and the augmentation.
        init: a transfer state (``load_transfer``), a path to ``final.pt``, or None for scratch.
        budget: a :class:`Budget` (default ``Budget()``).
        device: ``cpu``, ``cuda``, ``cuda:N``.
        precision: ``fp32``, ``bf16`` (autocast, training and evaluation), ``fp16`` (CUDA).
        channels_last: run convolutions in channels_last memory format.
        space: ``rgb``/``lab`` input for scratch (default ``rgb``); when finetuning, the checkpoint's.
        augment: apply the paper's augmentation (flips off for pose tasks, which a mirror would change).
        subset_seed: seed of the labeled subset (default: ``seed``).
        progress: show a progress bar on a terminal.

    Returns:
        The downstream result dict (DESIGN.md) plus ``protocol``, ``task``, ``backbone``, ``method``,
        ``n_labels``, ``seed``, ``best_step``, ``stopped_early`` and ``curve`` ([step, val primary]).
    """
    from selfstudy.data.augment import PaperAugment
    from selfstudy.data.device import load_split, to_float

    t_start = time.perf_counter()
    task = get_task(task)
    budget = (budget or Budget()).validate()
    check_run_args(n_labels, seed, precision)
    ds = open_data(ds)
    dev = resolve_device(device)
    init, backbone = resolve_init(init, backbone)
    task = check_task_on(ds, task)
    res = int(ds["images"].shape[1])

    pos, sha = labeled_subset(ds, task, int(n_labels), seed if subset_seed is None else subset_seed)
    names = ("images", *task.required_arrays)
    train = load_split(ds, "train", dev, names=names, indices=pos)
    y_train = task.targets(train)
    if getattr(task, "num_classes", None) and len(torch.unique(y_train)) < 2 and len(y_train) > 1:
        raise UserError(f"every labeled image has the same {task.required_arrays[0]}: task {task.spec!r} "
                        f"has nothing to learn on dataset {ds.path}")
    n_val, n_test = len(ds.indices("val")), len(ds.indices("test"))
    if n_val == 0 or n_test == 0:
        raise UserError(f"dataset {ds.path} has {n_val} validation and {n_test} test images; finetuning "
                        f"needs both splits")
    val = load_split(ds, "val", dev, names=names, indices=fixed_subset(n_val, budget.val_size, VAL_SUBSET_SEED))
    test = load_split(ds, "test", dev, names=names,
                      indices=fixed_subset(n_test, budget.test_size, TEST_SUBSET_SEED))
    y_val, y_test = task.targets(val), task.targets(test)

    input_tf = input_transform(ds, init, space)
    with seeded(seed):
        encoder = build_encoder(backbone, init)
        if hasattr(encoder, "check_input_res"):
            encoder.check_input_res(res)
        head = build_head(encoder, task)
    model = DownstreamModel(input_tf, encoder, head, task).to(dev)

    resolved = budget.resolve(int(n_labels), task)
    steps = resolved["planned_steps"]
    resolved["anneal_steps"] = max(1, math.ceil(ANNEAL_FRACTION * steps))
    batch = budget.batch_size
    reps = max(1, math.ceil(max(TILE_ROWS, batch) / len(pos)))
    rows = torch.arange(len(pos), device=dev).repeat(reps)
    cfg = TrainConfig(steps=steps, batch_size=batch, lr=budget.lr, final_lr=budget.final_lr,
                      weight_decay=budget.weight_decay, warmup_epochs=float(steps),
                      warmup_max_fraction=budget.warmup_fraction, precision=precision,
                      channels_last=channels_last, checkpoint_every=0, seed=int(seed))
    aug = PaperAugment(**task.augment_options) if augment else None
    images = train["images"]

    def step_fn(b: dict) -> dict:
        r = b["row"]
        x, y = to_float(images[r]), y_train[r]
        if aug is not None and task.dense:  # flips and shifts move the per-pixel labels with the image
            x, moved = aug(x, b["generator"], targets={task.target_array: y})
            y = moved[task.target_array]
        elif aug is not None:
            x = aug(x, b["generator"])
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return {"loss": task.loss(model(x), y)}

    def score_val(module: nn.Module) -> dict:
        return evaluate(module, task, val["images"], y_val, batch_size=budget.eval_batch,
                        precision=precision, channels_last=channels_last)

    selection = Selection(task, score_val, resolved["eval_every"], budget.patience, resolved["min_delta"],
                          min_step=resolved["min_stop_step"], anneal_steps=resolved["anneal_steps"])
    trainer = Trainer(model, cfg, {"row": rows}, step_fn, callbacks=[selection], progress=progress,
                      desc=f"{'finetune' if init else 'scratch'} {task.name} n={n_labels}")
    trainer.run()

    def score_test(module: nn.Module) -> dict:
        return evaluate(module, task, test["images"], y_test, batch_size=budget.eval_batch,
                        precision=precision, channels_last=channels_last)

    last_step, last_val = selection.curve[-1]
    test_last = score_test(model)
    if selection.best_step == last_step:
        test_best = test_last
    else:
        model.load_state_dict(selection.best_state)
        test_best = score_test(model)
    primary = task.primary
    resolved["stopped_early"] = selection.stopped_early
    resolved["end_lr"] = trainer.lr  # the rate of the last step: final_lr, whether stopped or not
    trivial = task.trivial(y_test)  # the trivial prediction's score on the test split (signal guard)
    return {
        "metric": primary,
        "higher_is_better": task.higher_is_better,
        "val": selection.best,
        "test": test_best[primary],
        "val_last": last_val[primary],
        "test_last": test_last[primary],
        "still_improving": (not selection.stopped_early) and still_improving(
            selection.values, task.higher_is_better, resolved["min_delta"], budget.late_fraction),
        "steps": int(trainer.step),
        "seconds": time.perf_counter() - t_start,
        "metrics": {**prefixed("val", selection.best_metrics), **prefixed("test", test_best),
                    **prefixed("val_last", last_val), **prefixed("test_last", test_last),
                    **({"test/trivial": trivial} if trivial is not None else {})},
        "subset_sha": sha,
        # The labeled dataset rows; the study database keeps them once per subset (by sha).
        "subset_indices": ds.indices("train")[pos].tolist(),
        "budget": resolved,
        "protocol": "finetune" if init is not None else "scratch",
        "task": task.spec,
        "backbone": backbone,
        "method": init["method"] if init is not None else None,
        "n_labels": int(n_labels),
        "seed": int(seed),
        "best_step": selection.best_step,
        "stopped_early": selection.stopped_early,
        "curve": [[s, m[primary]] for s, m in selection.curve],
    }
