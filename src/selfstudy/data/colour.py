"""Colour spaces and the input normalisation every model applies first.

The paper feeds all models CIELAB, converted with ``skimage.color.rgb2lab`` (sRGB, D65, 2° observer)
and normalised per channel (docs/PAPER.md §2.6). :func:`rgb_to_lab` reproduces skimage's numbers in torch, so
the conversion runs batched on the training device after augmentation. :class:`InputTransform` is the
module that turns augmented RGB in [0, 1] into a model's normalised input; its state travels with every
checkpoint.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from selfstudy.errors import UserError

SPACES = ("rgb", "lab")

# sRGB (linear) -> XYZ, the matrix skimage uses, and the D65 2° white point it divides by.
_XYZ_FROM_RGB = torch.tensor([[0.412453, 0.357580, 0.180423],
                              [0.212671, 0.715160, 0.072169],
                              [0.019334, 0.119193, 0.950227]], dtype=torch.float64)
_RGB_FROM_XYZ = torch.linalg.inv(_XYZ_FROM_RGB)
_WHITE_D65 = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)
_EPS = 0.008856  # CIE (6/29)^3, the switch between the cube root and the linear segment
_KAPPA = 7.787   # slope of the linear segment, as in skimage

# ITU-R BT.601 luma weights: the grey an RGB image is reduced to.
LUMA = (0.299, 0.587, 0.114)

# Normalisation statistics of the paper's data (docs/PAPER.md §2.6), used when none are fitted.
PAPER_STATS = {
    "lab": ((38.44, 3.03, 4.77), (17.42, 9.41, 11.37)),
    "rgb": ((98.12 / 255, 89.92 / 255, 84.36 / 255), (43.95 / 255, 42.66 / 255, 44.05 / 255)),
}


def _check_channels(x: torch.Tensor, dim: int) -> None:
    if x.ndim == 0 or x.shape[dim] != 3:
        raise UserError(f"colour conversion needs 3 channels in dimension {dim}, got shape "
                        f"{tuple(x.shape)}")


def _mix(m: torch.Tensor, c: tuple[torch.Tensor, ...], dim: int) -> torch.Tensor:
    """Apply the 3x3 matrix ``m`` to channels ``c`` and stack them along ``dim``. Three weighted sums
    of planes run faster than a matmul over a strided channels-last view."""
    w = m.tolist()
    return torch.stack([w[i][0] * c[0] + w[i][1] * c[1] + w[i][2] * c[2] for i in range(3)], dim=dim)


def rgb_to_lab(x: torch.Tensor, dim: int = -3) -> torch.Tensor:
    """sRGB in [0, 1] -> CIELAB (D65), matching ``skimage.color.rgb2lab``.

    x: any shape with 3 channels in ``dim`` (default: NCHW / CHW). Returns float32 of the same shape:
    L in [0, 100], a and b roughly in [-128, 127]. White -> (100, 0, 0); pure red -> (53.24, 80.09, 67.20).
    Computed in float32 with autocast off, because bf16 would cost ~1 L unit.
    """
    _check_channels(x, dim)
    with torch.autocast(x.device.type, enabled=False):
        c = x.float()
        lin = torch.where(c > 0.04045, ((c + 0.055) / 1.055).clamp_min(0).pow(2.4), c / 12.92)
        t = _mix(_XYZ_FROM_RGB / _WHITE_D65[:, None], lin.unbind(dim), dim)  # XYZ / white
        f = torch.where(t > _EPS, t.clamp_min(_EPS).pow(1 / 3), _KAPPA * t + 16 / 116)
        fx, fy, fz = f.unbind(dim)
        return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=dim)


def lab_to_rgb(x: torch.Tensor, dim: int = -3) -> torch.Tensor:
    """CIELAB (D65) -> sRGB in [0, 1] (clipped, as ``skimage.color.lab2rgb`` does). Shapes as
    :func:`rgb_to_lab`."""
    _check_channels(x, dim)
    with torch.autocast(x.device.type, enabled=False):
        L, a, b = x.float().unbind(dim)
        fy = (L + 16) / 116
        f = torch.stack([fy + a / 500, fy, fy - b / 200], dim=dim)
        t = torch.where(f > 0.2068966, f.pow(3), (f - 16 / 116) / _KAPPA)  # 0.2068966 = cbrt(_EPS)
        lin = _mix(_RGB_FROM_XYZ * _WHITE_D65[None, :], t.unbind(dim), dim)
        rgb = torch.where(lin > 0.0031308, 1.055 * lin.clamp_min(0).pow(1 / 2.4) - 0.055, 12.92 * lin)
        return rgb.clamp(0, 1)


def luma(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB -> (N, 1, H, W) BT.601 luma ``0.299 R + 0.587 G + 0.114 B``."""
    w = x.new_tensor(LUMA).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def split_luma_chroma(x: torch.Tensor, space: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a normalised (N, 3, H, W) model input into CMC's two views: (N, 1, H, W), (N, 2, H, W).

    ``lab``: L and ab, as the paper. ``rgb``: luma ``Y = 0.299 R + 0.587 G + 0.114 B`` and the two
    colour differences ``(R - Y, B - Y)``, computed on the normalised channels (a linear, invertible
    change of basis, so the two views together still hold the whole image).
    """
    if space == "lab":
        return x[:, :1], x[:, 1:]
    if space == "rgb":
        y = luma(x)
        return y, torch.cat([x[:, :1] - y, x[:, 2:3] - y], dim=1)
    raise UserError(f"unknown colour space {space!r}; allowed: {', '.join(SPACES)}")


def _check_space(space: str) -> str:
    if space not in SPACES:
        raise UserError(f"unknown colour space {space!r}; allowed: {', '.join(SPACES)}")
    return space


class InputTransform(nn.Module):
    """RGB in [0, 1] (N, 3, H, W) -> the model's input: converted to ``space`` and normalised per
    channel, ``(x - mean) / std``.

    ``mean``/``std`` are in the units of ``space`` (LAB: L in [0, 100]; RGB: [0, 1]); by default the
    paper's statistics (:data:`PAPER_STATS`). Fit them to a dataset with :meth:`fit`.
    """

    def __init__(self, space: str = "lab", mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None):
        super().__init__()
        self.space = _check_space(space)
        d_mean, d_std = PAPER_STATS[space]
        mean = torch.as_tensor(d_mean if mean is None else mean, dtype=torch.float32).flatten()
        std = torch.as_tensor(d_std if std is None else std, dtype=torch.float32).flatten()
        if mean.numel() != 3 or std.numel() != 3:
            raise UserError(f"input transform needs 3 means and 3 stds, got {mean.tolist()} and "
                            f"{std.tolist()}")
        if not torch.isfinite(mean).all() or not (std > 0).all():
            raise UserError(f"input transform needs finite means and positive stds, got "
                            f"{mean.tolist()} and {std.tolist()}")
        self.register_buffer("mean", mean.view(1, 3, 1, 1))
        self.register_buffer("std", std.view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 3, H, W) RGB in [0, 1] -> (N, 3, H, W) float32, normalised."""
        if self.space == "lab":
            x = rgb_to_lab(x)
        return (x.float() - self.mean) / self.std

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The output of :meth:`forward` as CMC's (luma, chroma) views; see :func:`split_luma_chroma`."""
        return split_luma_chroma(x, self.space)

    def extra_repr(self) -> str:
        return f"space={self.space!r}"

    @classmethod
    def fit(cls, images, space: str = "lab", max_images: int = 20000,
            chunk: int = 4096) -> "InputTransform":
        """Per-channel mean and std of ``images`` in ``space``.

        images: uint8 (N, H, W, 3) RGB, a numpy array (memmaps are fine: only the rows used are read)
        or a tensor. At most ``max_images`` images enter, evenly spaced over the array (deterministic,
        no RNG), converted ``chunk`` at a time.
        """
        _check_space(space)
        shape, dtype = tuple(images.shape), str(images.dtype).replace("torch.", "")
        if len(shape) != 4 or shape[-1] != 3 or dtype != "uint8" or shape[0] == 0:
            raise UserError(f"InputTransform.fit needs uint8 (N, H, W, 3) images with N > 0, got "
                            f"{dtype} {shape}")
        if max_images < 1:
            raise UserError(f"max_images must be at least 1, got {max_images}")
        n = shape[0]
        idx = np.unique(np.linspace(0, n - 1, min(n, max_images)).round().astype(np.int64))
        total = torch.zeros(3, dtype=torch.float64)
        total_sq = torch.zeros(3, dtype=torch.float64)
        count = 0
        for start in range(0, len(idx), chunk):
            rows = idx[start:start + chunk]
            if isinstance(images, torch.Tensor):
                batch = images[torch.from_numpy(rows).to(images.device)].cpu()
            else:
                batch = torch.from_numpy(np.ascontiguousarray(images[rows]))
            x = batch.permute(0, 3, 1, 2).float().div_(255)
            if space == "lab":
                x = rgb_to_lab(x)
            x = x.double()
            total += x.sum(dim=(0, 2, 3))
            total_sq += x.square().sum(dim=(0, 2, 3))
            count += x.shape[0] * x.shape[2] * x.shape[3]
        mean = total / count
        # A floor keeps a constant channel (e.g. ab of a grey dataset) from dividing by zero.
        std = (total_sq / count - mean.square()).clamp_min(0).sqrt().clamp_min(1e-3)
        return cls(space, mean.tolist(), std.tolist())

    def state(self) -> dict:
        """Plain-python state for checkpoints: ``{"space": str, "mean": [3 floats], "std": [3 floats]}``."""
        return {"space": self.space, "mean": self.mean.flatten().tolist(),
                "std": self.std.flatten().tolist()}

    @classmethod
    def from_state(cls, state: Mapping) -> "InputTransform":
        """Inverse of :meth:`state`."""
        try:
            return cls(state["space"], state["mean"], state["std"])
        except (KeyError, TypeError) as e:
            raise UserError(f"input transform state is malformed ({e!r}); it needs space, mean and "
                            f"std") from None
