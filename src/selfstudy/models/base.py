"""What every backbone returns and promises.

A backbone maps images ``(N, C, H, W)`` to a pooled feature ``(N, D)`` and a dict of feature maps
``name -> (N, C_name, H_name, W_name)``. Map names are the module names of the blocks that produce them
(``"layer2"``, ``"layer3.0"``, ``"layer4.1"``), plus ``"stem"`` (after the first conv, BN, ReLU) and
``"prepool"`` (the 1x1 projection just before global average pooling, whose mean is ``pooled``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from selfstudy.errors import UserError


class BackboneOutput(NamedTuple):
    """``pooled``: (N, out_dim) float; ``maps``: name -> (N, C, h, w) feature maps (see module doc)."""

    pooled: torch.Tensor
    maps: dict[str, torch.Tensor]


class Backbone(nn.Module):
    """Base class: subclasses build their layers and set the attributes below in ``__init__``.

    Attributes:
        name: the registry name it was built under (``"resnet9-tiny"``).
        in_channels: input channels C.
        out_dim: D, the width of ``pooled`` and of the ``"prepool"`` map.
        map_channels: map name -> channels, for every map ``forward`` returns.
        map_strides: map name -> input pixels per map pixel (for a resolution that is a multiple of
            ``res_multiple``).
        amdim_maps: (name of the 7x7 source, name of the 5x5 source) for AMDIM (docs/PAPER.md §4.4).
        dense_map: the map dense heads read (``"prepool"``).
        min_res, res_multiple: inputs must be square-or-not with both sides ``>= min_res`` and a
            multiple of ``res_multiple`` pixels.
    """

    name: str
    in_channels: int
    out_dim: int
    map_channels: dict[str, int]
    map_strides: dict[str, int]
    amdim_maps: tuple[str, str]
    dense_map: str = "prepool"
    min_res: int
    res_multiple: int

    def forward(self, x: torch.Tensor) -> BackboneOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def check_input_res(self, res: int | tuple[int, int]) -> None:
        """Raise :class:`UserError` unless images of ``res`` pixels (or ``(H, W)``) fit this backbone."""
        sides = (res, res) if isinstance(res, int) else tuple(res)
        for side in sides:
            if side < self.min_res or side % self.res_multiple:
                raise UserError(
                    f"backbone {self.name} cannot take {side} px input; allowed: a multiple of "
                    f"{self.res_multiple} px, at least {self.min_res} px (e.g. 32, 64, 128)")

    def map_size(self, name: str, res: int) -> int:
        """Side in pixels of map ``name`` for a ``res`` x ``res`` input."""
        return res // self.map_strides[name]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def init_weights(module: nn.Module) -> None:
    """The paper's init: Kaiming-normal (fan_out, ReLU gain) for convs, BN weight 1 and bias 0.

    Backbones then reset their prepool projection to PyTorch's default ``nn.Linear`` init, because the
    paper's projection was an ``nn.Linear`` that this loop never touched.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def scaled(channels: int, width: float) -> int:
    """``channels * width`` rounded, at least 1 (a width multiplier for layer widths)."""
    return max(1, int(round(channels * width)))
