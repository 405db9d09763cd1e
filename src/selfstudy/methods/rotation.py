"""Rotation prediction (RotNet, Gidaris et al., ICLR 2018) as the paper ran it (docs/PAPER.md §4.1).

The batch is cut into four equal chunks rotated by 0, 90, 180 and 270 degrees, so the 4-way
cross-entropy always sees exactly balanced labels; a ``Linear(out_dim -> 4)`` head on the pooled feature
predicts the rotation. The paper's augmentation (with cutout) runs before the rotation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from selfstudy.data.augment import PaperAugment
from selfstudy.methods.base import Method, MethodConfig


def rotation_chunks(n: int) -> torch.Tensor:
    """Rotation label of each of the first ``4 * (n // 4)`` images of a batch of ``n``.

    Chunk k (images ``k*m .. (k+1)*m - 1``, ``m = n // 4``) gets label k, i.e. k quarter turns.
    When ``n`` is not a multiple of 4 the last ``n % 4`` images get no label (they are left out of the
    loss), so every label occurs exactly ``m`` times. Returns (4 * m,) int64.
    """
    return torch.arange(4).repeat_interleave(n // 4)


class Rotation(Method):
    """Predict which of four rotations was applied to an image (docs/PAPER.md §4.1).

    ``loss`` returns ``loss`` (CE over the ``4 * (N // 4)`` labelled images), ``accuracy`` of the
    rotation prediction and ``features``: detached pooled features of the N augmented images *upright*
    (rotation 0), one row per input image in batch order, so ``features[i]`` goes with
    ``batch["label"][i]`` for the online probe.

    The training pass already holds the upright features of chunk 0 and of the ``N % 4`` leftovers;
    the other ``3 * (N // 4)`` images get one extra forward, without autograd, of their upright
    versions (the cheapest correct way: about a quarter of a training step's backbone work). It runs
    in the module's mode, i.e. with batch statistics in training, on copies of the BatchNorm running
    statistics so that it leaves them as the training pass set them.
    """

    name = "rotation"

    @dataclass
    class Config(MethodConfig):
        # docs/PAPER.md §4.1 / §6.1: peak 5e-4, final 1e-5, wd 1e-4, batch 512 (r9); 400 rounds of 50k
        # samples = 50 passes over ~400k images.
        lr: float = 5e-4
        final_lr: float = 1e-5
        weight_decay: float = 1e-4
        batch_size: int = 512
        epochs: int = 50
        cutout: bool = True

        @classmethod
        def paper_defaults(cls, backbone: str) -> dict[str, Any]:
            if backbone.startswith("resnet50-dilated"):
                # The original's dense configuration: batch 64, 900 rounds of 10k samples on 250k
                # training images = 36 passes.
                return {"batch_size": 64, "epochs": 36}
            return {"batch_size": 384} if backbone.startswith("resnet50") else {}

        def min_batch_size(self) -> int:
            return 4  # one image per rotation

    def __init__(self, backbone: str, cfg: Config | None = None, **kw):
        super().__init__(backbone, cfg, **kw)
        self.head = nn.Linear(self.backbone.out_dim, 4)
        self.augment = PaperAugment(cutout=self.cfg.cutout)

    def loss(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        x, gen = self.unpack(batch)
        n = x.shape[0]
        if n < 4:
            raise ValueError(f"rotation needs at least 4 images per batch (one per rotation), got {n}")
        if x.shape[2] != x.shape[3]:
            raise ValueError(f"rotation needs square images, got {x.shape[2]}x{x.shape[3]}")
        x = self.augment(x, gen)
        labels = rotation_chunks(n).to(x.device)
        m = n // 4
        chunks = [torch.rot90(x[k * m:(k + 1) * m], k, dims=(2, 3)) for k in range(4)]
        x = torch.cat(chunks + [x[4 * m:]])  # the n % 4 leftovers stay upright, outside the loss
        out = self.backbone(self.input(x))
        logits = self.head(out.pooled[:4 * m])
        loss = F.cross_entropy(logits.float(), labels)
        accuracy = (logits.argmax(dim=1) == labels).float().mean()
        # The online probe sees only the images that went through the backbone upright (chunk 0 and the
        # leftovers): their labels are batch["label"][feature_rows]. A second, upright pass over the
        # rotated chunks would cost a quarter of the step for a diagnostic.
        rows = torch.cat([torch.arange(m), torch.arange(4 * m, n)]).to(x.device)
        features = out.pooled.detach()[rows]
        return {"loss": loss, "accuracy": accuracy.detach(), "features": features.float(),
                "feature_rows": rows}
