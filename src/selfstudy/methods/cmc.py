"""Contrastive Multiview Coding (Tian, Krishnan & Isola, ECCV 2020) as the paper ran it (docs/PAPER.md §4.3).

Two views of every image, luminance (1 channel) and chrominance (2 channels), each encoded by its own
half-width backbone and projected to a 128-d unit vector. A memory bank per view holds one unit row per
training image. For view v with embedding e_v of image i, the positive is the *other* view's bank row
of i and the negatives are that bank's rows at K uniformly drawn indices (which may include i, as in
the paper); the loss is :func:`nce_softmax` (softmax cross-entropy, positive at index 0, temperature T)
in both directions, L -> ab plus ab -> L. After the loss, each view's bank rows of the batch move toward
the new embeddings, ``row = normalise(m * row + (1 - m) * e)``.

Views: on ``lab`` input, L vs ab as the paper; on ``rgb`` input, BT.601 luma Y vs the colour differences
(R - Y, B - Y) of the normalised channels (:func:`selfstudy.data.colour.split_luma_chroma`).

Streams: the ``-half`` variant of the requested backbone when the registry has one (``resnet9`` ->
``resnet9-half``); a name that already ends in ``-half``, or that has no such variant (``resnet9-tiny``,
``resnet18``), is used as it is, each stream then having that backbone's full width.

Negatives are drawn once per batch and shared by every anchor and both directions (the paper drew them
per anchor). In expectation it is the same objective, and it needs N x K logits instead of an
(N, K + 1, 128) gather, 1 GB per direction at the paper's N = 256, K = 8192. K is clamped to
``num_train - 1`` so that a small dataset does not draw more negatives than it has other images.

Under several processes (``torchrun``) each rank encodes its shard of the global batch and then applies
the bank updates of every rank (all-gathered indices and embeddings), so the banks stay identical on
all ranks, as if one process had seen the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from selfstudy.config import option
from selfstudy.core.distributed import all_gather_rows
from selfstudy.data.augment import PaperAugment
from selfstudy.data.colour import SPACES, split_luma_chroma
from selfstudy.errors import UserError
from selfstudy.methods.base import Method, MethodConfig, randint
from selfstudy.methods.losses import momentum_rows, nce_softmax
from selfstudy.models import BACKBONES, build_backbone
from selfstudy.models.base import Backbone, BackboneOutput


def cmc_stream_backbone(backbone: str) -> str:
    """The backbone name each CMC stream is built from (see the module doc for the rule)."""
    if backbone not in BACKBONES:
        raise UserError(f"unknown backbone {backbone!r}; allowed: {', '.join(BACKBONES)}")
    if backbone.endswith("-half") or f"{backbone}-half" not in BACKBONES:
        return backbone
    return f"{backbone}-half"


class CMCEncoder(Backbone):
    """Both CMC streams as one backbone: normalised (N, 3, H, W) in, concatenated features out.

    The input is split into (luma, chroma) views for ``space``; ``pooled`` is ``[pooled_L, pooled_ab]``
    (N, 2 D) and every map is the channel concatenation of the two streams' maps of that name.
    """

    def __init__(self, stream: str, space: str = "lab"):
        super().__init__()
        if space not in SPACES:
            raise UserError(f"unknown colour space {space!r}; allowed: {', '.join(SPACES)}")
        self.space = space
        self.l = build_backbone(stream, in_channels=1)
        self.ab = build_backbone(stream, in_channels=2)
        self.name = f"cmc({stream})"
        self.in_channels = 3
        self.out_dim = 2 * self.l.out_dim
        self.map_channels = {k: 2 * c for k, c in self.l.map_channels.items()}
        self.map_strides = dict(self.l.map_strides)
        self.amdim_maps = self.l.amdim_maps
        self.dense_map = self.l.dense_map
        self.min_res, self.res_multiple = self.l.min_res, self.l.res_multiple

    def streams(self, x: torch.Tensor) -> tuple[BackboneOutput, BackboneOutput]:
        """The two streams' outputs, (luma, chroma), for a normalised (N, 3, H, W) input."""
        xl, xab = split_luma_chroma(x, self.space)
        return self.l(xl), self.ab(xab)

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        out_l, out_ab = self.streams(x)
        maps = {k: torch.cat([v, out_ab.maps[k]], dim=1) for k, v in out_l.maps.items()}
        return BackboneOutput(torch.cat([out_l.pooled, out_ab.pooled], dim=1), maps)


class CMC(Method):
    """Contrastive multiview coding between the luma and chroma views (docs/PAPER.md §4.3).

    Needs ``num_train`` (the training split's size: one bank row per image) and ``batch["index"]``
    (each image's row). ``loss`` returns ``loss`` (L -> ab plus ab -> L), ``loss_l``, ``loss_ab`` and
    ``features`` (detached (N, 2 D) concatenated pooled features). Banks are updated only in training
    mode; they are buffers, so checkpoints carry them.
    """

    name = "cmc"
    builds_backbone = False

    @dataclass
    class Config(MethodConfig):
        # docs/PAPER.md §4.3 (r9): lr 1e-3, wd 1e-5, batch 256, K 8192, T 0.1, m 0.2; 800 rounds of 50k
        # samples = 100 passes over ~400k images.
        lr: float = 1e-3
        final_lr: float = 1e-6
        weight_decay: float = 1e-5
        batch_size: int = 256
        epochs: int = 100
        nce_k: int = option(8192, ge=1)
        temperature: float = option(0.1, gt=0)
        momentum: float = option(0.2, ge=0, lt=1)
        embed_dim: int = option(128, ge=1)
        bank_seed: int = 0

        @classmethod
        def paper_defaults(cls, backbone: str) -> dict[str, Any]:
            # r50: lr 5e-3, batch 384, 1600 rounds, m 0.4, K 4096 (the config's 4086 is a typo).
            # Dense (the dilated ResNet50 on four-object scenes, 250k training images): lr 1e-3,
            # batch 64, 1600 rounds of 10k samples = 64 passes, K 16384, m 0.4.
            if backbone.startswith("resnet50-dilated"):
                return {"batch_size": 64, "epochs": 64, "momentum": 0.4, "nce_k": 16384}
            if backbone.startswith("resnet50"):
                return {"lr": 5e-3, "batch_size": 384, "epochs": 200, "momentum": 0.4, "nce_k": 4096}
            return {}

    def __init__(self, backbone: str, cfg: Config | None = None, **kw):
        super().__init__(backbone, cfg, **kw)
        if self.num_train < 2:
            raise UserError(f"cmc needs num_train >= 2 (the training split's size, one memory-bank row "
                            f"per image), got {self.num_train}")
        self.stream_backbone = cmc_stream_backbone(backbone)
        self.streams = CMCEncoder(self.stream_backbone, self.input.space)
        d, e = self.streams.l.out_dim, self.cfg.embed_dim
        self.head_l = nn.Linear(d, e)
        self.head_ab = nn.Linear(d, e)
        self.nce_k = min(self.cfg.nce_k, self.num_train - 1)
        g = torch.Generator().manual_seed(self.cfg.bank_seed)
        self.register_buffer("bank_l", F.normalize(torch.randn(self.num_train, e, generator=g), dim=1))
        self.register_buffer("bank_ab", F.normalize(torch.randn(self.num_train, e, generator=g), dim=1))
        # Colour jitter would change the chroma view alone (the paper turns it off); greyscale would
        # erase it, leaving nothing to predict.
        self.augment = PaperAugment(colour_jitter=False, grayscale=False)

    def encoder(self) -> CMCEncoder:
        return self.streams

    def transfer_state(self) -> dict[str, Any]:
        return {**super().transfer_state(), "stream_backbone": self.stream_backbone}

    @classmethod
    def build_encoder(cls, state: Mapping[str, Any]) -> nn.Module:
        stream = state.get("stream_backbone") or cmc_stream_backbone(state["backbone"])
        return CMCEncoder(stream, state["input"]["space"])

    def loss(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        x, gen = self.unpack(batch)
        index = batch["index"].to(self.bank_l.device).long()
        if index.shape != (x.shape[0],) or int(index.min()) < 0 or int(index.max()) >= self.num_train:
            raise UserError(f"cmc: batch['index'] must hold one index in [0, {self.num_train}) per image "
                            f"(the memory bank's rows); got shape {tuple(index.shape)}, range "
                            f"[{int(index.min())}, {int(index.max())}]")
        out_l, out_ab = self.streams.streams(self.input(self.augment(x, gen)))
        z_l = F.normalize(self.head_l(out_l.pooled).float(), dim=1)
        z_ab = F.normalize(self.head_ab(out_ab.pooled).float(), dim=1)
        neg = randint(gen, self.num_train, (self.nce_k,), self.bank_l.device)
        t = self.cfg.temperature
        loss_l = nce_softmax(z_l, self.bank_ab[index], self.bank_ab[neg], t)    # L predicts ab
        loss_ab = nce_softmax(z_ab, self.bank_l[index], self.bank_l[neg], t)    # ab predicts L
        if self.training:
            with torch.no_grad():
                # Under several processes every rank applies every rank's rows (its shard of the
                # global batch), so the banks stay identical without being broadcast.
                index, z_l, z_ab = (all_gather_rows(t) for t in (index, z_l, z_ab))
                m = self.cfg.momentum
                self.bank_l.index_copy_(0, index, momentum_rows(self.bank_l[index], z_l, m))
                self.bank_ab.index_copy_(0, index, momentum_rows(self.bank_ab[index], z_ab, m))
        features = torch.cat([out_l.pooled, out_ab.pooled], dim=1).detach().float()
        return {"loss": loss_l + loss_ab, "loss_l": loss_l.detach(), "loss_ab": loss_ab.detach(),
                "features": features}
