"""ResNet18 and ResNet50 as the paper used them (docs/PAPER.md §3.2).

The torchvision layouts (BasicBlock [2, 2, 2, 2], Bottleneck [3, 4, 6, 3]) with the 7x7/2 stem conv kept
and the stem max-pool skipped, so a 64 px input gives a 4x4 final map (stride 16). Module and parameter
names follow torchvision (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0``, ...), so a
torchvision state dict loads here and back, minus its ``fc``. torchvision's ``fc`` classifier is replaced
by the paper's "prepool" projection: a 1x1 conv (a ``Linear`` at every location) from the last layer's
channels to ``out_dim``, followed by global average pooling.

``dilation=(False, False, True)`` replaces layer4's stride with dilation (torchvision's
``replace_stride_with_dilation``) for dense tasks: stride 8, so 128 px in gives a 16x16 map.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from selfstudy.errors import UserError
from selfstudy.models.base import Backbone, BackboneOutput, init_weights, scaled


def conv3x3(c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


def conv1x1(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)


def projection(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """The 1x1 conv + BN skip used when a residual block changes width or stride."""
    return nn.Sequential(conv1x1(c_in, c_out, stride), nn.BatchNorm2d(c_out))


class BasicBlock(nn.Module):
    """Two 3x3 convs with BN and ReLU around a skip. ``mid`` is the first conv's width (default
    ``c_out``; the paper's half-width ResNet9 narrows it)."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 dilation: int = 1, mid: int | None = None):
        super().__init__()
        mid = mid or planes
        self.conv1 = conv3x3(c_in, mid, stride, dilation)
        self.bn1 = nn.BatchNorm2d(mid)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(mid, planes, dilation=dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + skip)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carries the stride, as in torchvision v1.5), 1x1 expand by 4, around a skip."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 dilation: int = 1):
        super().__init__()
        self.conv1 = conv1x1(c_in, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + skip)


class ResNet(Backbone):
    """A torchvision-layout ResNet without the stem max-pool, ending in the prepool projection.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: blocks per stage, e.g. ``(3, 4, 6, 3)``.
        in_channels: input channels (3 for RGB/LAB, 1 or 2 for a CMC stream).
        out_dim: width of the prepool projection and of ``pooled``; default ``256 * width``.
        width: multiplies every stage's width (``0.5``: the paper's half-width ResNet50, base 32).
        stem_width: stem conv channels; default ``64 * width``. The paper's half-width ResNet50 keeps 64.
        dilation: for layers 2-4, replace the stride-2 with dilation (``(False, False, True)``: stride 8).
        name: the registry name, for messages.
    """

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: Sequence[int],
                 in_channels: int = 3, out_dim: int | None = None, width: float = 1.0,
                 stem_width: int | None = None, dilation: Sequence[bool] = (False, False, False),
                 name: str = "resnet"):
        super().__init__()
        if len(layers) != 4 or len(dilation) != 3:
            raise UserError(f"{name}: layers needs 4 stage lengths and dilation 3 flags, got "
                            f"{list(layers)} and {list(dilation)}")
        self.name = name
        self.in_channels = in_channels
        self.out_dim = out_dim = out_dim or scaled(256, width)
        stem = stem_width or scaled(64, width)

        self.conv1 = nn.Conv2d(in_channels, stem, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        # No max-pool after the stem (the paper skips it): small inputs keep their resolution.

        self._c = stem
        self._dilation = 1
        stride = 2
        self.map_channels = {"stem": stem}
        self.map_strides = {"stem": stride}
        for i, n in enumerate(layers):
            planes = scaled(64 * 2 ** i, width)
            step, dilate = (1, False) if i == 0 else (2, bool(dilation[i - 1]))
            setattr(self, f"layer{i + 1}", self._make_layer(block, planes, n, step, dilate))
            if step == 2 and not dilate:
                stride *= 2
            self.map_channels[f"layer{i + 1}"] = self._c
            self.map_strides[f"layer{i + 1}"] = stride

        self.prepool = nn.Conv2d(self._c, out_dim, 1)
        init_weights(self)
        self.prepool.reset_parameters()

        # AMDIM's sources (docs/PAPER.md §4.4): layer3's 5th block (7x7 source) and layer4's 2nd block
        # (5x5 source); shorter stages (ResNet18) use their last block.
        self.amdim_maps = (f"layer3.{min(4, layers[2] - 1)}", f"layer4.{min(1, layers[3] - 1)}")
        for tap, stage in zip(self.amdim_maps, ("layer3", "layer4")):
            self.map_channels[tap] = self.map_channels[stage]
            self.map_strides[tap] = self.map_strides[stage]
        self.map_channels["prepool"] = out_dim
        self.map_strides["prepool"] = stride
        self.dense_map = "prepool"
        self.res_multiple = self.min_res = stride
        self._taps = set(self.amdim_maps)

    def _make_layer(self, block, planes: int, blocks: int, stride: int, dilate: bool) -> nn.Sequential:
        # Mirrors torchvision: the first block of a dilated stage keeps the previous dilation.
        previous = self._dilation
        if dilate:
            self._dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self._c != planes * block.expansion:
            downsample = projection(self._c, planes * block.expansion, stride)
        seq = [block(self._c, planes, stride, downsample, dilation=previous)]
        self._c = planes * block.expansion
        seq += [block(self._c, planes, dilation=self._dilation) for _ in range(1, blocks)]
        return nn.Sequential(*seq)

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        """x: (N, in_channels, H, W) -> pooled (N, out_dim) and maps (see :attr:`map_channels`)."""
        x = self.relu(self.bn1(self.conv1(x)))
        maps = {"stem": x}
        for stage in range(1, 5):
            for j, blk in enumerate(getattr(self, f"layer{stage}")):
                x = blk(x)
                if f"layer{stage}.{j}" in self._taps:
                    maps[f"layer{stage}.{j}"] = x
            maps[f"layer{stage}"] = x
        x = self.prepool(x)
        maps["prepool"] = x
        return BackboneOutput(x.mean(dim=(2, 3)), maps)


def resnet18(**kw) -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2), **kw)


def resnet50(**kw) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), **kw)
