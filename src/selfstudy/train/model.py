"""The downstream model: input normalisation, encoder and task head, where each comes from (a
pretraining, a weights file, or a fresh initialisation), and its evaluation.

- **finetune** (``init`` = a pretraining transfer state): the pretrained encoder, and the
  :class:`~selfstudy.data.colour.InputTransform` the pretraining used (``init["input"]``), so the
  encoder sees inputs normalised as it was trained on;
- **scratch** (``init=None``): a freshly initialised backbone, and an ``InputTransform`` fitted on the
  dataset's whole training split (image statistics cost no labels; the pretraining fits the same
  statistics the same way, so both arms see identical inputs when the colour space agrees).
"""

from __future__ import annotations

import contextlib
from typing import Mapping

import numpy as np
import torch
from torch import nn

from selfstudy.core.device import autocast
from selfstudy.data.colour import InputTransform
from selfstudy.data.device import to_float
from selfstudy.errors import UserError
from selfstudy.methods import build_encoder as from_transfer
from selfstudy.models import BACKBONES, build_backbone, weights
from selfstudy.tasks import Task, add_sums
from selfstudy.train.pretrain import load_transfer


def resolve_init(init, backbone: str | None) -> tuple[dict | None, str]:
    """``(transfer state or None, backbone name)``. ``init`` may be a transfer state, a path to a
    pretraining checkpoint (``final.pt`` or its run folder), or None (scratch: ``backbone`` or
    ``resnet9``). A checkpoint of another backbone than ``backbone`` raises :class:`UserError`."""
    if init is not None and not isinstance(init, Mapping):
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
    if init is not None and init["input"] is not None:  # a weights file records none: fit it
        tf = InputTransform.from_state(init["input"])
        if space is not None and space != tf.space:
            raise UserError(f"the init checkpoint was pretrained on {tf.space} input, but space {space!r} "
                            f"was asked for; omit the space or use {tf.space}")
        return tf
    return InputTransform.fit(_SplitRows(ds["images"], ds.indices("train")), space or "rgb")


def build_encoder(backbone: str, init: Mapping | None) -> nn.Module:
    """The encoder: the pretrained one with its weights (``init``), or a freshly initialised
    ``backbone``. Draws initial weights from torch's global generator; callers seed it (see
    :func:`seeded`)."""
    if weights.is_weights_init(init):
        return weights.build_encoder(init)
    if init is not None:
        return from_transfer(init)
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


@torch.no_grad()
def evaluate(model: nn.Module, task: Task, images: torch.Tensor, y: torch.Tensor, *, batch_size: int = 512,
             precision: str = "fp32", channels_last: bool = False) -> dict[str, float]:
    """Metrics of ``model`` on uint8 (N, H, W, 3) ``images`` with targets ``y``, in batches, in eval mode
    (the mode is restored afterwards)."""
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
