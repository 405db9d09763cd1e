"""Augmented Multiscale Deep InfoMax (Bachman, Hjelm & Buchwalter, NeurIPS 2019), as adapted by the
paper (PAPER.md §3.4).

Two augmented views of every image (both with the same horizontal flip) go through the backbone in one
batch. Three embeddings of width ``embed_dim`` per view:

* r1: ``Linear`` of the pooled feature (the global vector);
* r5: 1x1 conv of the backbone's deep AMDIM map (``amdim_maps[1]``) average-pooled to 5x5;
* r7: 1x1 conv of the earlier AMDIM map (``amdim_maps[0]``) average-pooled to 7x7.

(Pooling and a 1x1 conv are both linear and commute; pooling first is cheaper.) With
:func:`amdim_nce` (scores / sqrt(d), tanh soft clip at ``tclip``, every location of the other images as
negatives) the loss is::

    loss = 1->5 + 1->7 + 5->5 + penalty
    a->b = 0.5 * (nce(a of view 1, b of view 2) + nce(a of view 2, b of view 1))
    penalty = 0.5 * (sum of the six terms' 0.05 * mean(raw score^2))

For 5->5 the source is the r5 vector at one location per image, drawn uniformly from the batch's
generator, as in the paper's code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from selfstudy.data.augment import PaperAugment
from selfstudy.methods.base import Method, MethodConfig, randint
from selfstudy.methods.losses import amdim_nce


class AMDIM(Method):
    """Global-to-local and local-to-local mutual information between two views (PAPER.md §3.4).

    ``loss`` returns ``loss``, its terms ``loss_1t5``, ``loss_1t7``, ``loss_5t5``, ``penalty`` and
    ``features`` (detached pooled features of the first view).
    """

    name = "amdim"

    @dataclass
    class Config(MethodConfig):
        # PAPER.md §3.4 (r9): lr 1e-3, wd 1e-5, batch 384, tclip 30; 800 rounds of 25k image pairs =
        # 50 passes over ~400k images.
        lr: float = 1e-3
        final_lr: float = 1e-6
        weight_decay: float = 1e-5
        batch_size: int = 384
        epochs: int = 50
        embed_dim: int = 256
        tclip: float = 30.0
        penalty: float = 0.05

        @classmethod
        def paper_defaults(cls, backbone: str) -> dict[str, Any]:
            # r50: batch 192, 1600 rounds of 25k pairs.
            return {"batch_size": 192, "epochs": 100} if backbone.startswith("resnet50") else {}

        def validate(self) -> None:
            super().validate()
            self._check(self.embed_dim >= 1, "embed_dim", "an integer >= 1")
            self._check(math.isfinite(self.tclip) and self.tclip > 0, "tclip", "a number > 0")
            self._check(math.isfinite(self.penalty) and self.penalty >= 0, "penalty", "a number >= 0")

        def min_batch_size(self) -> int:
            return 2  # the negatives are the other images of the batch

    def __init__(self, backbone: str, cfg: Config | None = None, **kw):
        super().__init__(backbone, cfg, **kw)
        b, e = self.backbone, self.cfg.embed_dim
        self.map7, self.map5 = b.amdim_maps
        self.embed1 = nn.Linear(b.out_dim, e)
        self.embed5 = nn.Conv2d(b.map_channels[self.map5], e, 1)
        self.embed7 = nn.Conv2d(b.map_channels[self.map7], e, 1)
        self.augment = PaperAugment()

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised input (N, 3, H, W) -> r1 (N, e), r5 (N, e, 5, 5), r7 (N, e, 7, 7), pooled (N, D)."""
        out = self.backbone(x)
        r1 = self.embed1(out.pooled)
        r5 = self.embed5(F.adaptive_avg_pool2d(out.maps[self.map5], 5))
        r7 = self.embed7(F.adaptive_avg_pool2d(out.maps[self.map7], 7))
        return r1, r5, r7, out.pooled

    def loss(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        x, gen = self.unpack(batch)
        n = x.shape[0]
        if n < 2:
            raise ValueError(f"amdim needs at least 2 images per batch (the negatives), got {n}")
        size = tuple(x.shape[-2:])
        p1 = self.augment.draw(n, size, gen, x.device)
        p2 = self.augment.draw(n, size, gen, x.device)
        p2["flip"] = p1["flip"]  # both views of an image share the flip (PAPER.md §3.4)
        views = torch.cat([self.augment.apply(x, p1), self.augment.apply(x, p2)])
        r1, r5, r7, pooled = self.embed(self.input(views))
        r1, r5, r7 = r1.float(), r5.float().flatten(2), r7.float().flatten(2)   # maps: (2N, e, L)

        # One r5 location per image as the 5->5 source.
        loc = randint(gen, r5.shape[2], (2 * n,), r5.device)
        r5_src = r5[torch.arange(2 * n, device=r5.device), :, loc]               # (2N, e)

        def both(src: torch.Tensor, trg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            a = amdim_nce(src[:n], trg[n:], self.cfg.tclip, self.cfg.penalty)
            b = amdim_nce(src[n:], trg[:n], self.cfg.tclip, self.cfg.penalty)
            return 0.5 * (a[0] + b[0]), a[1] + b[1]

        l15, p15 = both(r1, r5)
        l17, p17 = both(r1, r7)
        l55, p55 = both(r5_src, r5)
        penalty = 0.5 * (p15 + p17 + p55)
        return {"loss": l15 + l17 + l55 + penalty, "loss_1t5": l15.detach(), "loss_1t7": l17.detach(),
                "loss_5t5": l55.detach(), "penalty": penalty.detach(),
                "features": pooled[:n].detach().float()}
