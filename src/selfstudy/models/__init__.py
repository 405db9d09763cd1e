"""Backbones by name: ``build_backbone("resnet9-tiny")``.

| name | what | pooled dim |
|---|---|---|
| ``resnet9`` | the paper's ResNet9 (docs/PAPER.md §3.1), 6.7M parameters | 256 |
| ``resnet9-tiny`` | ResNet9 at 1/4 width (16/32/64/128), for CPUs | 64 |
| ``resnet9-nano`` | ResNet9 at 1/8 width (8/16/32/64): the 2-core demo, ~2.4x faster a step than tiny | 32 |
| ``resnet9-pico`` | ResNet9 at 1/16 width (4/8/16/32): the smaller model of the 2-core ``findings`` study | 16 |
| ``resnet9-half`` | the CMC half-width stream (in_channels 1 or 2) | 128 |
| ``resnet18``, ``resnet18-tiny`` | torchvision ResNet18 layout, no stem max-pool | 256, 64 |
| ``resnet18-dilated`` | ResNet18 with layer4 dilated (stride 8), for dense tasks | 512 |
| ``resnet50`` | torchvision ResNet50 layout, no stem max-pool (docs/PAPER.md §3.2) | 256 |
| ``resnet50-half`` | ResNet50 with base width 32 (the CMC stream) | 128 |
| ``resnet50-dilated`` | ResNet50 with layer4 dilated (stride 8), for dense tasks | 512 |

Keyword overrides: ``out_dim`` (the prepool width) and ``width`` (multiplies the variant's own widths:
``resnet9-tiny`` with ``width=2`` is half width), and ``channels_last``.
"""

from __future__ import annotations

import functools
from typing import Callable

from selfstudy.errors import UserError
from selfstudy.models.base import Backbone, BackboneOutput
from selfstudy.models.resnet import ResNet, resnet18, resnet50
from selfstudy.models.resnet9 import ResNet9

__all__ = ["BACKBONES", "Backbone", "BackboneOutput", "ResNet", "ResNet9", "build_backbone"]

_DILATED = (False, False, True)

BACKBONES: dict[str, Callable[..., Backbone]] = {
    "resnet9": functools.partial(ResNet9),
    "resnet9-tiny": functools.partial(ResNet9, width=0.25),
    "resnet9-nano": functools.partial(ResNet9, width=0.125),
    "resnet9-pico": functools.partial(ResNet9, width=0.0625),
    "resnet9-half": functools.partial(ResNet9, half=True),
    "resnet18": functools.partial(resnet18),
    "resnet18-tiny": functools.partial(resnet18, width=0.25),
    "resnet18-dilated": functools.partial(resnet18, dilation=_DILATED, out_dim=512),
    "resnet50": functools.partial(resnet50),
    # The paper's half ResNet50 keeps the 64-channel stem and halves the stages.
    "resnet50-half": functools.partial(resnet50, width=0.5, stem_width=64),
    "resnet50-dilated": functools.partial(resnet50, dilation=_DILATED, out_dim=512),
}

_OVERRIDES = ("out_dim", "width")


def build_backbone(name: str, in_channels: int = 3, channels_last: bool = False, **kw) -> Backbone:
    """Build backbone ``name`` (see :data:`BACKBONES`) for ``in_channels``-channel input.

    ``kw`` may set ``out_dim`` (positive int) and ``width`` (positive float). ``channels_last`` converts
    the parameters' memory format (feed it channels_last inputs too).
    """
    if name not in BACKBONES:
        raise UserError(f"unknown backbone {name!r}; allowed: {', '.join(BACKBONES)}")
    if not isinstance(in_channels, int) or isinstance(in_channels, bool) or in_channels < 1:
        raise UserError(f"backbone {name}: in_channels must be a positive integer, got {in_channels!r}")
    kw = {k: v for k, v in kw.items() if v is not None}
    bad = sorted(set(kw) - set(_OVERRIDES))
    if bad:
        raise UserError(f"backbone {name}: unknown option(s) {', '.join(bad)}; allowed: "
                        f"{', '.join(_OVERRIDES)}")
    if "out_dim" in kw and (not isinstance(kw["out_dim"], int) or kw["out_dim"] < 1):
        raise UserError(f"backbone {name}: out_dim must be a positive integer, got {kw['out_dim']!r}")
    if "width" in kw:
        base = BACKBONES[name].keywords.get("width", 1.0)
        if not isinstance(kw["width"], (int, float)) or not 0 < kw["width"] <= 8:
            raise UserError(f"backbone {name}: width must be a number in (0, 8], got {kw['width']!r}")
        kw["width"] = float(kw["width"]) * base
    model = BACKBONES[name](in_channels=in_channels, name=name, **kw)
    if channels_last:
        import torch

        model = model.to(memory_format=torch.channels_last)
    return model
