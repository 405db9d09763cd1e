"""Barlow Twins (Zbontar, Jing, Misra, LeCun & Deny, ICML 2021): a modern method beside the paper's four.

Two :class:`~selfstudy.data.augment.SimCLRAugment` views of every image, the backbone's pooled feature,
a projector ``Linear -> BN -> ReLU -> Linear -> BN -> ReLU -> Linear`` (``hidden_dim``, ``proj_dim``)
and :func:`~selfstudy.methods.losses.barlow_twins_loss`: the cross-correlation matrix of the two views'
batch-standardised embeddings is pulled toward the identity. No negatives, no momentum network, no
predictor; the off-diagonal term (weight ``lambd``) keeps the dimensions from carrying the same thing.

Choices for this project's small backbones and CPU budgets, all settable: projector width 1024 (the
paper: 8192 on ResNet50's 2048-d features), ``lambd`` 0.0051 (the paper's 0.005 scaled as solo-learn's
CIFAR recipe), Adam with the paper's schedule (lr 1e-3, weight decay 1e-6) instead of LARS. Each view
gets its own backbone pass unless ``joint_bn`` (see :func:`~selfstudy.methods.base.encode_views`).

At toy scale it is slow to start: give it long schedules, and check a short run with a probe before
trusting it in a study (measurements: docs/RESULTS.md §1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from selfstudy.config import option
from selfstudy.data.augment import SimCLRAugment
from selfstudy.methods.base import Method, TwoViewConfig, encode_views
from selfstudy.methods.losses import barlow_twins_from_correlation, cross_correlation


def mlp3(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """The three-layer projector of Barlow Twins and VICReg: two ``Linear -> BN -> ReLU`` blocks and a
    final ``Linear``."""
    return nn.Sequential(nn.Linear(in_dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim),
                         nn.ReLU(inplace=True), nn.Linear(hidden_dim, hidden_dim, bias=False),
                         nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))


class BarlowTwins(Method):
    """Make the cross-correlation of two views' embeddings the identity.

    ``loss`` returns ``loss``, ``on_diagonal`` (the diagonal's mean cross-correlation, 1 at best) and
    ``features`` (detached pooled features of the first view).
    """

    name = "barlow"

    @dataclass
    class Config(TwoViewConfig):
        lambd: float = option(0.0051, ge=0)
        hidden_dim: int = option(1024, ge=1)
        proj_dim: int = 1024

        def min_batch_size(self) -> int:
            return 2  # batch statistics: the standardisation and the projector's BatchNorm

    def __init__(self, backbone: str, cfg: Config | None = None, **kw):
        super().__init__(backbone, cfg, **kw)
        self.projector = mlp3(self.backbone.out_dim, self.cfg.hidden_dim, self.cfg.proj_dim)
        self.augment = SimCLRAugment()

    def loss(self, batch: Mapping[str, Any]) -> dict:
        n, views = self.two_views(batch, "batch statistics")
        h = encode_views(self.backbone, views, self.cfg.joint_bn).pooled
        z = self.projector(h)
        c = cross_correlation(z[:n], z[n:])
        loss = barlow_twins_from_correlation(c, self.cfg.lambd)
        return {"loss": loss, "on_diagonal": torch.diagonal(c).detach().mean(),
                "features": h[:n].detach().float()}
