"""SimCLR (Chen, Kornblith, Norouzi & Hinton, ICML 2020): the modern method beside the paper's four.

Two :class:`~selfstudy.data.augment.SimCLRAugment` views of every image, the backbone's pooled feature
h (N, d), a projector ``Linear(d, d) -> BN -> ReLU -> Linear(d, proj_dim)`` and :func:`nt_xent` over
the 2N projections. Optimised with the paper's Adam schedule (no LARS: batches here are small).

Temperature: SimCLR's paper uses 0.5 for its CIFAR-10 runs and 0.1 for large ImageNet batches. For the
small batches and datasets this project trains on (batch 256, tens of thousands of 32-64 px images) the
default is 0.2, between the two, as in solo-learn's CIFAR recipe; set ``temperature`` to change it.

BatchNorm: by default each view goes through the backbone in its own pass, so BN normalises a view with
its own batch statistics (as solo-learn and lightly do); ``joint_bn=true`` encodes both views in one
pass of 2N, as SimCLR's global BN (see :func:`~selfstudy.methods.base.encode_views`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from selfstudy.config import option
from selfstudy.data.augment import SimCLRAugment
from selfstudy.methods.base import Method, TwoViewConfig, encode_views
from selfstudy.methods.losses import nt_xent


def projector(in_dim: int, out_dim: int) -> nn.Sequential:
    """SimCLR's projection head: ``Linear(d, d, no bias) -> BN -> ReLU -> Linear(d, out_dim)``."""
    return nn.Sequential(nn.Linear(in_dim, in_dim, bias=False), nn.BatchNorm1d(in_dim),
                         nn.ReLU(inplace=True), nn.Linear(in_dim, out_dim))


class SimCLR(Method):
    """Contrast two augmented views of each image against the rest of the batch.

    ``loss`` returns ``loss`` (NT-Xent) and ``features`` (detached pooled features of the first view).
    """

    name = "simclr"

    @dataclass
    class Config(TwoViewConfig):
        temperature: float = option(0.2, gt=0)

        def min_batch_size(self) -> int:
            return 2  # the negatives are the other images of the batch

    def __init__(self, backbone: str, cfg: Config | None = None, **kw):
        super().__init__(backbone, cfg, **kw)
        self.projector = projector(self.backbone.out_dim, self.cfg.proj_dim)
        self.augment = SimCLRAugment()

    def loss(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        n, views = self.two_views(batch, "the negatives")
        h = encode_views(self.backbone, views, self.cfg.joint_bn).pooled
        z = self.projector(h)
        loss = nt_xent(z[:n], z[n:], self.cfg.temperature)
        return {"loss": loss, "features": h[:n].detach().float()}
