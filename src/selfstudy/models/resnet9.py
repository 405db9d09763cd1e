"""The paper's ResNet9 (docs/PAPER.md §3.1), derived from Myrtle's "How to train your ResNet".

Full width, for a 64 px input::

    stem    conv3x3 C->64, BN, ReLU                                      64 x 64x64
    layer1  ConvBlock 64->128 (conv3x3, max-pool 2, BN, CELU .075)       128 x 32x32
            BasicBlock 128 (two conv3x3 + BN, ReLU, identity skip)
    layer2  ConvBlock 128->256                                           256 x 16x16
    layer3  ConvBlock 256->512                                           512 x 8x8
            BasicBlock 512
    prepool 1x1 conv 512->256 (the paper's per-location Linear)          256 x 8x8
    pooled  global average of prepool                                    256

6,699,328 parameters with the projection (3-channel input). ``width`` scales every width;
``resnet9-tiny`` is width 1/4 (16/32/64/128 channels) with the projection scaled the same way, 128->64,
so the tiny model keeps the paper's 2:1 ratio between the last layer and the feature, and the heads
and projectors built on it stay small.

The half-width variant (``half=True``, one stream of CMC) follows the paper's code: layer1 is
ConvBlock 64->64 then BasicBlock 64->128 (first conv 64 wide, a 1x1-conv projection skip); layer2 is
ConvBlock 128->128; layer3 is ConvBlock 128->512 then BasicBlock 512 whose first conv is 256 wide. Its
projection defaults to 128 so that the two CMC streams concatenate to 256.
"""

from __future__ import annotations

import torch
from torch import nn

from selfstudy.models.base import Backbone, BackboneOutput, init_weights, scaled
from selfstudy.models.resnet import BasicBlock, conv3x3, projection


class ConvBlock(nn.Module):
    """conv3x3 -> max-pool 2 -> BN -> CELU(alpha=0.075): halves the resolution."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = conv3x3(c_in, c_out)
        self.pool = nn.MaxPool2d(2)
        self.bn = nn.BatchNorm2d(c_out)
        self.act = nn.CELU(alpha=0.075, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.pool(self.conv1(x))))


class ResNet9(Backbone):
    """The paper's ResNet9. See the module doc for the layout.

    Args:
        in_channels: input channels (3; 1 or 2 for a CMC stream).
        out_dim: prepool projection width; default 256 * width (128 * width when ``half``).
        width: multiplies every layer's width (0.25 for ``resnet9-tiny``).
        half: the CMC half-width layout.
        name: the registry name, for messages.
    """

    def __init__(self, in_channels: int = 3, out_dim: int | None = None, width: float = 1.0,
                 half: bool = False, name: str = "resnet9"):
        super().__init__()
        w = lambda c: scaled(c, width)  # noqa: E731
        self.name = name
        self.in_channels = in_channels
        self.out_dim = out_dim or w(128 if half else 256)

        self.conv1 = conv3x3(in_channels, w(64))
        self.bn1 = nn.BatchNorm2d(w(64))
        self.relu = nn.ReLU(inplace=True)
        if half:
            self.layer1 = nn.Sequential(
                ConvBlock(w(64), w(64)),
                BasicBlock(w(64), w(128), downsample=projection(w(64), w(128)), mid=w(64)))
            self.layer2 = nn.Sequential(ConvBlock(w(128), w(128)))
            self.layer3 = nn.Sequential(ConvBlock(w(128), w(512)), BasicBlock(w(512), w(512), mid=w(256)))
        else:
            self.layer1 = nn.Sequential(ConvBlock(w(64), w(128)), BasicBlock(w(128), w(128)))
            self.layer2 = nn.Sequential(ConvBlock(w(128), w(256)))
            self.layer3 = nn.Sequential(ConvBlock(w(256), w(512)), BasicBlock(w(512), w(512)))
        self.prepool = nn.Conv2d(w(512), self.out_dim, 1)
        init_weights(self)
        self.prepool.reset_parameters()

        c2 = self.layer2[0].bn.num_features
        self.map_channels = {"stem": w(64), "layer1": w(128), "layer2": c2, "layer3.0": w(512),
                             "layer3": w(512), "prepool": self.out_dim}
        self.map_strides = {"stem": 1, "layer1": 2, "layer2": 4, "layer3.0": 8, "layer3": 8,
                            "prepool": 8}
        # AMDIM (docs/PAPER.md §4.4): the 7x7 source is layer2, the 5x5 source the first conv of layer3.
        self.amdim_maps = ("layer2", "layer3.0")
        self.dense_map = "prepool"
        self.min_res = self.res_multiple = 8

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        """x: (N, in_channels, H, W) -> pooled (N, out_dim) and maps (see :attr:`map_channels`)."""
        maps = {}
        maps["stem"] = x = self.relu(self.bn1(self.conv1(x)))
        maps["layer1"] = x = self.layer1(x)
        maps["layer2"] = x = self.layer2(x)
        maps["layer3.0"] = x = self.layer3[0](x)
        maps["layer3"] = x = self.layer3[1](x)
        maps["prepool"] = x = self.prepool(x)
        return BackboneOutput(x.mean(dim=(2, 3)), maps)
