"""Finetuning and training from scratch on a labeled subset: the two arms whose gap is the utility.

Both arms run the same recipe (docs/PAPER.md §6.1, §6.4): every layer trained, a fresh linear head,
Adam with betas (0.8, 0.999), peak lr 1e-3, L2 weight decay 1e-4, linear warm-up then linear decay to
1e-6, the paper's augmentation, all through the one :class:`~selfstudy.train.loop.Trainer`. The only
difference is where the encoder and the input normalisation come from (:mod:`.model`): the
pretraining's for **finetune** (``init`` given), a fresh backbone and statistics of the training split
for **scratch** (``init=None``).

**Budgets decide the answer** (docs/RESULTS.md §2, the budget check): an arm that stops before it has converged
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
  ``final_lr`` over 10 % of the planned steps (:mod:`.selection`), then the run ends (earliest at
  60 % of the plan with the defaults). Every arm ends annealed, so an arm that plateaus first does not
  forfeit the gain of the decay. A tail that would outlast the plan changes nothing;
- **model selection**: the weights of the best validation evaluation are kept; the reported ``test`` is
  the test metric of those weights (the whole test split, or ``test_size`` fixed images); the last
  weights' numbers are stored too (``val_last``, ``test_last``; the paper reported the last);
- **still_improving** is set when the run used its whole budget (no early stop) and the best
  validation value of the last ``late_fraction`` of the evaluations beat everything before them by
  more than ``min_delta``: the cell needs a longer budget before its number means anything.

Returns a :class:`~selfstudy.train.result.DownstreamResult`. The pieces live beside this module: the data
(:mod:`.inputs`), the model (:mod:`.model`), selection and stopping (:mod:`.selection`), the budget
(:mod:`.budget`) and the result (:mod:`.result`).
"""

from __future__ import annotations

import math
import os
import time
from typing import Mapping, NamedTuple

import numpy as np
import torch
from torch import nn

from selfstudy.core.constants import SCRATCH
from selfstudy.core.device import resolve_device
from selfstudy.data.augment import PaperAugment
from selfstudy.data.device import load_split, to_float
from selfstudy.errors import UserError
from selfstudy.tasks import Task, get_task
from selfstudy.train.budget import Budget
from selfstudy.train.inputs import (TEST_SUBSET_SEED, VAL_SUBSET_SEED, check_run_args, check_task_on,
                                    fixed_subset, labeled_subset, open_data)
from selfstudy.train.loop import TrainConfig, Trainer
from selfstudy.train.model import (DownstreamModel, build_encoder, build_head, evaluate, input_transform,
                                   resolve_init, seeded)
from selfstudy.train.result import DownstreamResult, selected
from selfstudy.train.selection import Selection, anneal_steps, still_improving

__all__ = ["TILE_ROWS", "run"]

#: Rows a labeled subset is tiled up to, so that a Trainer epoch holds many full batches (the paper
#: tiled small subsets to 10k samples per round, docs/PAPER.md §6.3).
TILE_ROWS = 10_000


def run(ds, task: "str | Task", *, backbone: str | None = None, n_labels: int, seed: int = 0,
        init: "Mapping | str | os.PathLike | None" = None, budget: Budget | None = None,
        device: str = "cpu", precision: str = "fp32", channels_last: bool = False,
        space: str | None = None, augment: bool = True, subset_seed: int | None = None,
        progress: bool = False) -> DownstreamResult:
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
        augment: apply the paper's augmentation (flips off for pose tasks, which a mirror would change);
            it is applied only when ``budget.augment`` is true too.
        subset_seed: seed of the labeled subset (default: ``seed``).
        progress: show a progress bar on a terminal.

    Returns:
        A :class:`~selfstudy.train.result.DownstreamResult` (``stopped_early``: ended on a validation
        plateau, after its annealing tail; ``budget["end_lr"]``: the rate of the last step).
    """
    t_start = time.perf_counter()
    task = get_task(task)
    budget = (budget or Budget()).validate()
    check_run_args(n_labels, seed, precision)
    ds = open_data(ds)
    dev = resolve_device(device)
    init, backbone = resolve_init(init, backbone)
    task = check_task_on(ds, task)
    pos, sha = labeled_subset(ds, task, int(n_labels), seed if subset_seed is None else subset_seed)
    data = _load(ds, task, pos, budget, dev)
    model = _build_model(ds, task, backbone, init, space, seed).to(dev)

    resolved = budget.resolve(int(n_labels), task)
    resolved["anneal_steps"] = anneal_steps(resolved["planned_steps"])
    selection, trainer = _train(model, task, data, budget, resolved, len(pos), seed=seed, precision=precision,
                                channels_last=channels_last, augment=augment and budget.augment, progress=progress,
                                desc=f"{'finetune' if init else 'scratch'} {task.name} n={n_labels}")

    def score_test(module: nn.Module) -> dict:
        return evaluate(module, task, data.test_images, data.y_test, batch_size=budget.eval_batch,
                        precision=precision, channels_last=channels_last)

    last_step = selection.curve[-1][0]
    test_last = score_test(model)
    if selection.best_step == last_step:
        test_best = test_last
    else:
        model.load_state_dict(selection.best_state)
        test_best = score_test(model)
    resolved["stopped_early"] = selection.stopped_early
    resolved["end_lr"] = trainer.lr  # the rate of the last step: final_lr, whether stopped or not
    trivial = task.trivial(data.y_test)  # the trivial prediction's score on the test split (signal guard)
    return selected(
        task, selection, test_best, test_last,
        still_improving=(not selection.stopped_early) and still_improving(
            selection.values, task.higher_is_better, resolved["min_delta"], budget.late_fraction),
        stopped_early=selection.stopped_early,
        extra_metrics={"test/trivial": trivial} if trivial is not None else None,
        steps=int(trainer.step),
        seconds=time.perf_counter() - t_start,
        subset_sha=sha,
        # The labeled dataset rows; the study database keeps them once per subset (by sha).
        subset_indices=ds.indices("train")[pos].tolist(),
        budget=resolved,
        protocol="finetune" if init is not None else SCRATCH,
        backbone=backbone,
        method=init["method"] if init is not None else None,
        n_labels=int(n_labels),
        seed=int(seed),
    )


class _Data(NamedTuple):
    """The labeled subset and the fixed evaluation subsets on the device: uint8 images and targets."""

    train_images: torch.Tensor
    y_train: torch.Tensor
    val_images: torch.Tensor
    y_val: torch.Tensor
    test_images: torch.Tensor
    y_test: torch.Tensor


def _load(ds, task: Task, pos: np.ndarray, budget: Budget, dev: torch.device) -> _Data:
    """Load the labeled rows ``pos`` of the train split and the fixed val/test subsets onto ``dev``."""
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
    return _Data(train["images"], y_train, val["images"], task.targets(val), test["images"], task.targets(test))


def _build_model(ds, task: Task, backbone: str, init: Mapping | None, space: str | None,
                 seed: int) -> DownstreamModel:
    """Input normalisation, encoder and a fresh head, the weights drawn from ``seed`` (on the CPU)."""
    input_tf = input_transform(ds, init, space)
    with seeded(seed):
        encoder = build_encoder(backbone, init)
        if hasattr(encoder, "check_input_res"):
            encoder.check_input_res(int(ds["images"].shape[1]))
        head = build_head(encoder, task)
    return DownstreamModel(input_tf, encoder, head, task)


def _train(model: DownstreamModel, task: Task, data: _Data, budget: Budget, resolved: Mapping, n_rows: int, *,
           seed: int, precision: str, channels_last: bool, augment: bool, progress: bool,
           desc: str) -> tuple[Selection, Trainer]:
    """Train every layer of ``model`` on the labeled subset (tiled to :data:`TILE_ROWS` rows) with the
    paper's augmentation, selecting and stopping on validation; return the selection and the trainer."""
    steps, batch = resolved["planned_steps"], budget.batch_size
    dev = data.train_images.device
    reps = max(1, math.ceil(max(TILE_ROWS, batch) / n_rows))
    rows = torch.arange(n_rows, device=dev).repeat(reps)
    cfg = TrainConfig(steps=steps, batch_size=batch, lr=budget.lr, final_lr=budget.final_lr,
                      weight_decay=budget.weight_decay, warmup_epochs=float(steps),
                      warmup_max_fraction=budget.warmup_fraction, precision=precision,
                      channels_last=channels_last, checkpoint_every=0, seed=int(seed))
    aug = PaperAugment(**task.augment_options) if augment else None
    images, y_train = data.train_images, data.y_train

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
        return evaluate(module, task, data.val_images, data.y_val, batch_size=budget.eval_batch,
                        precision=precision, channels_last=channels_last)

    selection = Selection(task, score_val, resolved["eval_every"], budget.patience, resolved["min_delta"],
                          min_step=resolved["min_stop_step"], anneal_steps=resolved["anneal_steps"])
    trainer = Trainer(model, cfg, {"row": rows}, step_fn, callbacks=[selection], progress=progress, desc=desc)
    trainer.run()
    return selection, trainer
