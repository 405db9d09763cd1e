"""BYOL, Bootstrap Your Own Latent (Grill et al., NeurIPS 2020): a modern method beside the paper's four.

An online network (the backbone, a projector ``Linear(d, h) -> BN -> ReLU -> Linear(h, proj_dim)`` and
a predictor of the same form ``proj_dim -> h -> proj_dim``) learns to predict, from one
:class:`~selfstudy.data.augment.SimCLRAugment` view, the projection a *target* network gives the other
view. The target (backbone + projector) gets no gradient; its weights are an exponential moving average
of the online ones, ``xi <- tau * xi + (1 - tau) * theta``. The loss is
:func:`~selfstudy.methods.losses.byol_loss` (``2 - 2 cos``) for both view orders, added as in the paper
(so it lies in [0, 8]). No negatives: the predictor and the slowly moving target keep the
representation from collapsing.

Choices for this project's short runs on small datasets, all settable:

* ``momentum`` tau: base 0.99, raised to 1 along a cosine over the run's optimizer steps as the paper
  (``momentum_schedule=constant`` keeps it at the base). 0.99 rather than the paper's 0.996 because
  runs here are a few thousand steps, not ~300k.
* Head widths ``hidden_dim`` 256 and ``proj_dim`` 128 (the paper: 4096 and 256 on ResNet50's 2048-d
  features; the backbones here pool to 256-d).
* Adam with the paper's schedule (lr 1e-3, weight decay 1e-6), like SimCLR here, instead of LARS.
* Each view gets its own backbone pass (BatchNorm statistics per view); ``joint_bn=true`` encodes
  both in one pass (:func:`~selfstudy.methods.base.encode_views`).

When the update happens: after every optimizer step, through :meth:`after_step`, which the training
loop calls with the step count before it writes any checkpoint (the paper's order). Only parameters
are averaged; the target's BatchNorm statistics are its own running averages. :meth:`loss` never
moves the target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from selfstudy.config import option
from selfstudy.data.augment import SimCLRAugment
from selfstudy.methods.base import Method, TwoViewConfig, encode_views
from selfstudy.methods.losses import byol_loss
from selfstudy.methods.moco import frozen_copy, momentum_update_


def mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """BYOL's projector and predictor: ``Linear(in, hidden) -> BN -> ReLU -> Linear(hidden, out)``."""
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
                         nn.Linear(hidden_dim, out_dim))


class BYOL(Method):
    """Predict a momentum target network's projection of the other view.

    ``loss`` returns ``loss`` (the symmetrised ``2 - 2 cos``), ``cosine`` (the mean cosine between
    predictions and targets) and ``features`` (detached pooled features of the first view).
    Attributes: ``backbone``, ``projector``, ``predictor`` (trained), ``target_backbone`` and
    ``target_projector`` (moving averages, no gradient).
    """

    name = "byol"

    @dataclass
    class Config(TwoViewConfig):
        momentum: float = option(0.99, ge=0, lt=1)
        hidden_dim: int = option(256, ge=1)
        momentum_schedule: str = option("cosine", choices=("cosine", "constant"))

        def min_batch_size(self) -> int:
            return 2  # the heads' BatchNorm needs more than one sample

    def __init__(self, backbone: str, cfg: Config | None = None, **kw):
        super().__init__(backbone, cfg, **kw)
        c = self.cfg
        self.projector = mlp(self.backbone.out_dim, c.hidden_dim, c.proj_dim)
        self.predictor = mlp(c.proj_dim, c.hidden_dim, c.proj_dim)
        self.target_backbone = frozen_copy(self.backbone)
        self.target_projector = frozen_copy(self.projector)
        self.augment = SimCLRAugment()

    def target_momentum(self, step: int, total_steps: int) -> float:
        """tau after optimizer step ``step`` (1-based) of ``total_steps``: ``momentum`` when
        ``momentum_schedule`` is ``constant``; for ``cosine`` (the paper's)
        ``1 - (1 - momentum) (cos(pi k / K) + 1) / 2`` with k = step - 1, K = total_steps, rising from
        ``momentum`` at the first step toward 1 at the last."""
        base = self.cfg.momentum
        if self.cfg.momentum_schedule == "constant" or total_steps <= 0:
            return base
        k = min(max(step - 1, 0), total_steps)
        return 1 - (1 - base) * (math.cos(math.pi * k / total_steps) + 1) / 2

    def after_step(self, step: int, total_steps: int) -> None:
        """Move the target toward the online network the optimizer step just produced."""
        tau = self.target_momentum(step, total_steps)
        momentum_update_(self.target_backbone, self.backbone, tau)
        momentum_update_(self.target_projector, self.projector, tau)

    def loss(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        n, views = self.two_views(batch, "BatchNorm in its heads")
        h = encode_views(self.backbone, views, self.cfg.joint_bn).pooled
        p = self.predictor(self.projector(h))
        with torch.no_grad():
            z = self.target_projector(encode_views(self.target_backbone, views, self.cfg.joint_bn).pooled)
        z_other = torch.cat([z[n:], z[:n]])  # each prediction's target is the other view's
        # byol_loss averages over the 2N rows; twice that is the paper's sum of the two orders.
        loss = 2 * byol_loss(p, z_other)
        with torch.no_grad():
            cosine = 1 - loss.detach() / 4
        return {"loss": loss, "cosine": cosine, "features": h[:n].detach().float()}
