"""Per-pixel heads, and the base class of the tasks that put them on a feature map.

A dense task reads one feature map, ``maps[dense_map]`` (N, C, h, w) at stride ``s`` (``h = H / s``; 8
for ResNet9 and the dilated ResNets), and predicts K values per pixel. Two readouts:

- ``"decoder"`` (default, docs/PAPER.md §9.12): :class:`UpsamplingDecoder`, a light resize-convolution decoder
  that brings the map back to the input resolution, so predictions and scores are per input pixel;
- ``"linear"`` (the paper's, docs/PAPER.md §5.3-5.4): :class:`LinearReadout`, one ``Linear(C -> K)`` at every
  pixel of the map (a 1x1 convolution), scored at the map's resolution against labels downsampled by
  nearest-neighbour sampling, as the paper's ``F.interpolate`` did (16x16 for 128 px on a dilated
  ResNet50).

:meth:`DenseTask.align` is the one place where predictions meet labels of another resolution: the
linear readout samples the labels down; a decoder whose output is not at the labels' resolution (a
stride that is not a power of two) has its output resized bilinearly up to them.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from selfstudy.errors import UserError
from selfstudy.tasks.base import Task

READOUTS = ("decoder", "linear")


class LinearReadout(nn.Module):
    """The paper's dense head: the same ``Linear(in_dim -> out_dim)`` at every pixel (a 1x1 conv).

    Takes feature maps (N, C, h, w) -> (N, K, h, w), or rows of pixels (P, C) -> (P, K) (what the linear
    probe trains on). Both share one weight layout, so a readout fitted on rows runs on maps.
    """

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            return self.linear(x)
        return self.linear(x.movedim(1, -1)).movedim(-1, 1)


class UpsamplingDecoder(nn.Module):
    """A light decoder from a stride-``stride`` feature map back to input resolution.

    ``1x1 conv (in_dim -> width), BN, ReLU``, then ``log2(stride)`` stages of ``x2 bilinear upsampling,
    3x3 conv, BN, ReLU`` (channels halving from ``width``, never below ``min_width``), then a 1x1 conv
    to ``out_dim``. ``width`` defaults to ``min(128, in_dim)``, so a narrow backbone gets a narrow
    decoder. Upsampling before the convolution (resize-convolution) avoids the checkerboard
    artefacts of transposed convolutions. It has no skip connections: it sees only the one map the
    study evaluates, so what it measures is that representation (about 0.14M parameters for a 256-channel
    map at stride 8 with the default width).

    Input (N, in_dim, h, w) -> output (N, out_dim, h * stride, w * stride).
    """

    def __init__(self, in_dim: int, out_dim: int, stride: int, width: int | None = None, min_width: int = 32):
        super().__init__()
        width = width or min(128, in_dim)
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1 or stride & (stride - 1):
            raise UserError(f"the dense decoder upsamples by powers of two; the feature map's stride "
                            f"{stride!r} is not one (allowed: 1, 2, 4, 8, 16, 32)")
        layers: list[nn.Module] = [nn.Conv2d(in_dim, width, 1, bias=False), nn.BatchNorm2d(width),
                                   nn.ReLU(inplace=True)]
        c = width
        for _ in range(int(math.log2(stride))):
            nxt = max(min_width, c // 2)
            layers += [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                       nn.Conv2d(c, nxt, 3, padding=1, bias=False), nn.BatchNorm2d(nxt), nn.ReLU(inplace=True)]
            c = nxt
        self.body = nn.Sequential(*layers)
        self.predict = nn.Conv2d(c, out_dim, 1)
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict(self.body(x))


def nearest_resize(y: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Dense labels (N, H, W), any dtype, sampled to ``size = (h, w)`` by nearest neighbour.

    Output pixel ``(i, j)`` takes input pixel ``(floor(i * H / h), floor(j * W / w))``, the rule of
    ``F.interpolate(mode="nearest")`` (the paper's), done as an index gather so that every dtype and
    device keeps its values exactly (no float round trip of labels).
    """
    (H, W), (h, w) = y.shape[-2:], size
    if (H, W) == (h, w):
        return y
    rows = torch.div(torch.arange(h, device=y.device) * H, h, rounding_mode="floor")
    cols = torch.div(torch.arange(w, device=y.device) * W, w, rounding_mode="floor")
    return y[..., rows, :][..., cols]


def pixel_rows(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature maps x (N, C, h, w) and labels y (N, H, W) as one row per feature pixel: (N h w, C) and
    (N h w,), labels sampled at the map's resolution with :func:`nearest_resize` (the paper's dense
    linear evaluation, on every pixel rather than a sample of them)."""
    n, c, h, w = x.shape
    return x.movedim(1, -1).reshape(n * h * w, c), nearest_resize(y, (h, w)).reshape(-1)


class DenseTask(Task):
    """Shared machinery of per-pixel tasks on one (N, H, W) array of the dataset (``target_array``).

    Subclasses set ``name``, ``target_array``, ``out_channels`` and the metric attributes, and implement
    ``loss`` / ``metric_sums`` / ``metrics_from_sums`` on head outputs (N, K, h, w) against targets
    (N, H, W), passing both through :meth:`align` first. Outputs and targets may also be rows of pixels,
    (P, K) and (P,), which need no aligning.

    Args:
        readout: ``"decoder"`` (upsampling decoder, scored at input resolution) or ``"linear"`` (the
            paper's 1x1 readout, scored at feature resolution).
    """

    dense = True
    target_array: str = ""
    out_channels: int = 1

    def __init__(self, readout: str = "decoder"):
        if readout not in READOUTS:
            raise UserError(f"{self.name}(readout={readout!r}): unknown readout; allowed: "
                            f"{', '.join(READOUTS)}, e.g. {self.name}(readout='linear')")
        self.readout = readout

    def arguments(self) -> dict:
        return {} if self.readout == "decoder" else {"readout": self.readout}

    @property
    def required_arrays(self) -> tuple[str, ...]:  # type: ignore[override]
        return (self.target_array,)

    def head(self, in_dim: int, stride: int = 8, readout: str | None = None) -> nn.Module:
        """A fresh head on a map of ``in_dim`` channels at ``stride`` input pixels per map pixel.
        ``readout`` overrides the task's (the linear probe always fits the linear one)."""
        if (readout or self.readout) == "linear":
            return LinearReadout(in_dim, self.out_channels)
        return UpsamplingDecoder(in_dim, self.out_channels, int(stride))

    def targets(self, data: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The (N, H, W) target maps, in their stored dtype (uint8 labels, float16 metres: 8x and 2x
        smaller than long and float32 for a split held on the device); losses convert per batch."""
        return data[self.target_array]

    def align(self, out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(out, y)`` at one resolution: out (N, K, h, w), y (N, H, W) -> y sampled to (h, w) for the
        linear readout, out resized bilinearly to (H, W) otherwise. Rows (P, K), (P,) pass as they are."""
        if out.ndim == 2 or out.shape[-2:] == y.shape[-2:]:
            return out, y
        if self.readout == "linear":
            return out, nearest_resize(y, tuple(out.shape[-2:]))
        return F.interpolate(out, size=tuple(y.shape[-2:]), mode="bilinear", align_corners=False), y

    def check_dataset(self, ds) -> None:
        """Raise :class:`UserError` unless dataset ``ds`` has the per-pixel array this task learns,
        at the images' resolution. Multi-object datasets (``selfstudy render --multi``, 128 px, 4
        objects) are the paper's setting; single-object ones carry the same arrays and are allowed."""
        arr = self.target_array
        if arr not in ds:
            raise UserError(f"task {self.spec!r} needs a dataset with per-pixel {arr!r} maps, e.g. a "
                            f"multi-object one (selfstudy render --multi); dataset {ds.path} has only: "
                            f"{', '.join(ds.names)}")
        image, target = tuple(ds["images"].shape[1:3]), tuple(ds[arr].shape[1:])
        if image != target:
            raise UserError(f"dataset {ds.path}: the {arr!r} maps are {target} but the images are {image}; "
                            f"they must have the same height and width")
