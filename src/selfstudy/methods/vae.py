"""Variational auto-encoder (Kingma & Welling, ICLR 2014) as the paper ran it (docs/PAPER.md §4.2).

Encoder: the backbone's pooled feature h (N, d), then two ``Linear(d, d)`` for mu and log sigma^2, and a
latent ``z = mu + exp(logvar / 2) * eps`` with eps drawn from the batch's generator. Decoder: z as a
1x1 map, ``ConvTranspose(k4, s2, p0)`` to 4x4, then ``ConvTranspose(k4, s2, p1)`` stages that each
double the side up to ``decode_res``, each followed by BN + ReLU, then a 1x1 conv to 3 channels.

Loss (per batch, :func:`~selfstudy.methods.losses.vae_loss`)::

    loss = mean_{n,c,h,w} (recon - target)^2  +  kl_weight * mean_n KL_n
    KL_n = 0.5 * sum_d (mu_nd^2 + exp(logvar_nd) - logvar_nd - 1)

``target`` is the augmented input in the model's colour space, normalised (what the encoder saw),
resized to ``decode_res`` if the images have another size. The paper summed the KL over the batch too,
with weight 1e-5 at batch 512 (384 for ResNet50); here it is averaged over the batch so that the weight
does not depend on the batch size, and ``kl_weight`` defaults to 1e-5 x the paper's batch (5.12e-3,
3.84e-3 for ResNet50), which makes the two objectives equal at the paper's batch sizes
(docs/PAPER.md §10.1).
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
from selfstudy.methods.base import Method, MethodConfig, randn
from selfstudy.methods.losses import vae_loss


#: The paper's KL weight on a KL *summed over the batch* (its ``VAETask.lmd``); selfstudy's per-image
#: ``kl_weight`` is this times the paper's batch size (docs/PAPER.md §10.1).
PAPER_KL_WEIGHT = 1e-5


def decoder_widths(decode_res: int, width: int) -> list[int]:
    """Output channels of each transposed-conv stage for a ``decode_res`` side.

    ``log2(decode_res) - 1`` stages (1 -> 4, then doubling). The last two stages are ``width // 2``
    and ``width // 4`` and all earlier ones ``width``, which for 64 px and width 256 is the paper's
    256, 256, 256, 128, 64.
    """
    stages = int(math.log2(decode_res)) - 1  # >= 2, since decode_res >= 8
    return [width] * (stages - 2) + [max(1, width // 2), max(1, width // 4)]


class Decoder(nn.Module):
    """(N, d) latent -> (N, 3, decode_res, decode_res), see the module doc."""

    def __init__(self, latent_dim: int, decode_res: int, width: int):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = latent_dim
        for i, c_out in enumerate(decoder_widths(decode_res, width)):
            # The first stage maps 1x1 to 4x4 (padding 0); later ones double (padding 1).
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=0 if i == 0 else 1, bias=False),
                       nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            c_in = c_out
        layers.append(nn.Conv2d(c_in, 3, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])


class VAE(Method):
    """Reconstruct the (augmented, cutout-free) input through a Gaussian latent (docs/PAPER.md §4.2).

    ``loss`` returns ``loss``, ``recon`` (the MSE term), ``kl`` (mean per-sample KL, nats) and
    ``features`` (detached pooled backbone features).
    """

    name = "vae"

    @dataclass
    class Config(MethodConfig):
        # docs/PAPER.md §4.2: peak 1e-3, final 1e-5, wd 1e-5, batch 512 (r9); 800 rounds of 50k samples =
        # 100 passes over ~400k images. decode_res defaults to the training resolution when
        # build_method is told it (see resolution_defaults), else the paper's 64.
        lr: float = 1e-3
        final_lr: float = 1e-5
        weight_decay: float = 1e-5
        batch_size: int = 512
        epochs: int = 100
        kl_weight: float = option(5.12e-3, ge=0)  # PAPER_KL_WEIGHT x 512
        decode_res: int = 64
        decoder_width: int = option(256, ge=4)

        @classmethod
        def paper_defaults(cls, backbone: str) -> dict[str, Any]:
            if backbone.startswith("resnet50-dilated"):
                # The original's dense configuration (four-object scenes, 250k training images):
                # batch 96, 1200 rounds of 10k samples = 48 passes.
                return {"batch_size": 96, "epochs": 48, "kl_weight": 9.6e-4}  # PAPER_KL_WEIGHT x 96
            if backbone.startswith("resnet50"):
                return {"batch_size": 384, "kl_weight": 3.84e-3}  # PAPER_KL_WEIGHT x 384
            return {}

        @classmethod
        def resolution_defaults(cls, res: int) -> dict[str, Any]:
            # Decode at the training resolution, or the next power of two above it (the target is
            # then resized up, losing nothing).
            return {"decode_res": min(1024, max(8, 1 << (int(res) - 1).bit_length()))}

        def check(self) -> None:
            super().check()
            r = self.decode_res
            self.require(8 <= r <= 1024 and r & (r - 1) == 0, "decode_res",
                         "a power of two from 8 to 1024 (e.g. 32, 64, 128)")

    def __init__(self, backbone: str, cfg: Config | None = None, **kw):
        super().__init__(backbone, cfg, **kw)
        d = self.backbone.out_dim
        self.mu = nn.Linear(d, d)
        self.logvar = nn.Linear(d, d)
        self.decoder = Decoder(d, self.cfg.decode_res, self.cfg.decoder_width)
        self.augment = PaperAugment(cutout=False)  # the paper turns cutout off for the VAE

    def loss(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        x, gen = self.unpack(batch)
        x = self.input(self.augment(x, gen))
        h = self.backbone(x).pooled
        mu, logvar = self.mu(h).float(), self.logvar(h).float()
        z = mu + torch.exp(0.5 * logvar) * randn(gen, tuple(mu.shape), mu)
        recon = self.decoder(z).float()
        r = self.cfg.decode_res
        target = x if x.shape[-2:] == (r, r) else F.interpolate(
            x, size=(r, r), mode="bilinear", align_corners=False, antialias=True)
        loss, mse, kl = vae_loss(recon, target, mu, logvar, self.cfg.kl_weight)
        return {"loss": loss, "recon": mse.detach(), "kl": kl.detach(),
                "features": h.detach().float()}
