"""Augmented Multiscale Deep InfoMax (Bachman, Hjelm & Buchwalter, NeurIPS 2019), as adapted by the
paper (docs/PAPER.md §4.4).

Two augmented views of every image (both with the same horizontal flip) go through the backbone, one
pass per view by default so that BatchNorm normalises each view with its own statistics;
``joint_bn=true`` encodes both in one batch of 2N as AMDIM's original code (same objective, other batch
statistics; per-view passes are faster on a CPU, :func:`~selfstudy.methods.base.encode_views`). Three
embeddings of width ``embed_dim`` per view:

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

from selfstudy.config import option
from selfstudy.data.augment import PaperAugment
from selfstudy.methods.base import Method, MethodConfig, encode_views, randint
from selfstudy.methods.losses import amdim_nce_scaled


class AMDIM(Method):
    """Global-to-local and local-to-local mutual information between two views (docs/PAPER.md §4.4).

    ``loss`` returns ``loss``, its terms ``loss_1t5``, ``loss_1t7``, ``loss_5t5``, ``penalty`` and
    ``features`` (detached pooled features of the first view).
    """

    name = "amdim"

    @dataclass
    class Config(MethodConfig):
        # docs/PAPER.md §4.4 (r9): lr 1e-3, wd 1e-5, batch 384, tclip 30; 800 rounds of 25k image pairs =
        # 50 passes over ~400k images.
        lr: float = 1e-3
        final_lr: float = 1e-6
        weight_decay: float = 1e-5
        batch_size: int = 384
        epochs: int = 50
        embed_dim: int = option(256, ge=1)
        tclip: float = option(30.0, gt=0)
        penalty: float = option(0.05, ge=0)
        joint_bn: bool = False

        @classmethod
        def paper_defaults(cls, backbone: str) -> dict[str, Any]:
            # r50: batch 192, 1600 rounds of 25k pairs. Dense (the dilated ResNet50 on four-object
            # scenes, 250k training images): lr 5e-4, batch 32, 512-d embeddings, 1600 rounds of 5k
            # pairs = 32 passes.
            if backbone.startswith("resnet50-dilated"):
                return {"lr": 5e-4, "batch_size": 32, "epochs": 32, "embed_dim": 512}
            return {"batch_size": 192, "epochs": 100} if backbone.startswith("resnet50") else {}

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
        """Normalised input (N, 3, H, W) -> r1 (N, e), r5 (N, e, 5, 5), r7 (N, e, 7, 7), pooled (N, D).

        The embeddings as the paper defines them; :meth:`loss` computes the same scores without
        materialising r5 and r7 where that is cheaper (see there)."""
        out = self.backbone(x)
        r1 = self.embed1(out.pooled)
        r5 = self.embed5(F.adaptive_avg_pool2d(out.maps[self.map5], 5))
        r7 = self.embed7(F.adaptive_avg_pool2d(out.maps[self.map7], 7))
        return r1, r5, r7, out.pooled

    def loss(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """The six NCE terms in two batched matmuls and two fused :func:`amdim_nce_scaled` calls.

        Cost is dominated by the (N, N, L) score tensors. Two exact rewrites shrink it:

        * A target embedding is ``r_jl = W m_jl + b`` (1x1 conv of the pooled map m, C channels), so
          ``a . r_jl = (W^T a) . m_jl + a . b``: when ``C + 1 < embed_dim`` the scores are one matmul
          of the projected sources ``[W^T a, a . b]`` with ``[m; 1]``, inner width C + 1 instead of
          embed_dim (resnet9-tiny: 129 and 65 instead of 256, so ``embed_dim`` keeps the paper's 256
          at no cost in the big products); otherwise r is materialised as usual.
        * 1->5 and 5->5 share their target, so both sources go in one product, and the two directions
          are one ``bmm`` of batch 2. Scores are scaled by ``1 / (sqrt(e) tclip)`` on the sources.

        Pooling is a matmul with the fixed adaptive-average-pool matrix. The heads and the scores run in
        float32 with autocast off; the loss equals the plain definition up to float rounding
        (``tests/methods/test_amdim.py`` checks it against one).
        """
        x, gen = self.unpack(batch)
        n = x.shape[0]
        if n < 2:
            raise ValueError(f"amdim needs at least 2 images per batch (the negatives), got {n}")
        size = tuple(x.shape[-2:])
        p1 = self.augment.draw(n, size, gen, x.device)
        p2 = self.augment.draw(n, size, gen, x.device)
        p2["flip"] = p1["flip"]  # both views of an image share the flip (docs/PAPER.md §4.4)
        views = [self.input(self.augment.apply(x, p1)), self.input(self.augment.apply(x, p2))]
        out = encode_views(self.backbone, views, self.cfg.joint_bn, maps=(self.map5, self.map7))
        cfg, e = self.cfg, self.cfg.embed_dim
        # One r5 location per image as the 5->5 source.
        loc = randint(gen, 25, (2 * n,), x.device)
        # Under mixed precision the two big score products run in the autocast dtype, as autocast runs
        # every matmul (the paper trained AMDIM in fp16); their fp32 results and everything else stay
        # fp32.
        dev = x.device.type
        gemm = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else None
        with torch.autocast(dev, enabled=False):
            m5 = _adaptive_pool(out.maps[self.map5].float(), 5)                  # (2N, C5, 25)
            m7 = _adaptive_pool(out.maps[self.map7].float(), 7)                  # (2N, C7, 49)
            r1 = F.linear(out.pooled.float(), self.embed1.weight, self.embed1.bias)   # (2N, e)
            w5, b5 = self.embed5.weight.flatten(1), self.embed5.bias                   # (e, C5), (e,)
            r5_src = F.linear(m5[torch.arange(2 * n, device=x.device), :, loc], w5, b5)  # (2N, e)
            scale = 1.0 / (math.sqrt(e) * cfg.tclip)
            # Sources (2 directions, rows, width): direction 0 is view 1 -> view 2.
            src5 = torch.stack([torch.cat([r1[:n], r5_src[:n]]), torch.cat([r1[n:], r5_src[n:]])])
            src7 = torch.stack([r1[:n], r1[n:]])
            z5 = _scores(src5.mul(scale), m5, w5, b5, n, gemm)                    # (2, 2n, n, 25)
            z7 = _scores(src7.mul(scale), m7, self.embed7.weight.flatten(1), self.embed7.bias, n, gemm)
            nce5, sq5 = amdim_nce_scaled(z5.view(4, n, n, 25), cfg.tclip)   # 1->5, 5->5 per direction
            nce7, sq7 = amdim_nce_scaled(z7, cfg.tclip)
        l15, l55 = 0.5 * (nce5[0] + nce5[2]), 0.5 * (nce5[1] + nce5[3])
        l17 = 0.5 * nce7.sum()
        penalty = 0.5 * cfg.penalty * (sq5.sum() + sq7.sum())
        return {"loss": l15 + l17 + l55 + penalty, "loss_1t5": l15.detach(), "loss_1t7": l17.detach(),
                "loss_5t5": l55.detach(), "penalty": penalty.detach(),
                "features": out.pooled[:n].detach().float()}


def _adaptive_pool(x: torch.Tensor, size: int) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, size).flatten(2)`` as one matmul with the pooling matrix (the same
    bins and weights; much faster than the pooling kernel on a CPU at these sizes)."""
    h, w = x.shape[-2:]
    basis = torch.eye(h * w, dtype=x.dtype, device=x.device).view(h * w, 1, h, w)
    pool = F.adaptive_avg_pool2d(basis, size).flatten(1)                   # (H W, size^2)
    return x.flatten(2) @ pool


def _scores(src: torch.Tensor, m: torch.Tensor, w: torch.Tensor, b: torch.Tensor, n: int,
            gemm_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Scores of sources ``src`` (2, S, e) against the other view's targets ``r = w m + b``:
    (2, S, n, L) float32; direction 0 scores view 2's targets, direction 1 view 1's. ``gemm_dtype``
    (bf16/fp16): the final product's inputs are cast to it.

    ``m``: (2n, C, L) pooled map, ``w``: (e, C), ``b``: (e,). When C + 1 < e the product runs in the
    C + 1 wide space of ``[m; 1]`` with the sources projected to ``[w^T a, a . b]`` (exact)."""
    c, locs = m.shape[1:]
    e = w.shape[0]
    if c + 1 < e:
        src = torch.cat([src @ w, src @ b[:, None]], dim=2)                 # (2, S, C + 1)
        trg = torch.cat([m, m.new_ones(2 * n, 1, locs)], dim=1)              # (2n, C + 1, L)
    else:
        trg = torch.einsum("ec,ncl->nel", w, m) + b[:, None]                 # (2n, e, L): r itself
    # Direction 0 (view-1 sources) meets view 2's targets, direction 1 view 1's. Targets are laid out
    # (2, n L, width) and handed to bmm transposed: the layout the CPU's GEMM reads fastest
    # (docs/RESULTS.md §3).
    trg = trg.view(2, n, -1, locs).flip(0).transpose(2, 3).reshape(2, n * locs, -1)
    if gemm_dtype is not None and gemm_dtype != torch.float32:
        src, trg = src.to(gemm_dtype), trg.to(gemm_dtype)
    return torch.bmm(src, trg.transpose(1, 2)).float().view(2, src.shape[1], n, locs)
