"""Which device a run uses, and the autocast context of a precision.

torch is imported inside the functions, so the study layer and the CLI can import this module
without paying for torch at start-up.
"""

from __future__ import annotations

import contextlib
import re
from typing import TYPE_CHECKING

from selfstudy.core.constants import PRECISIONS
from selfstudy.errors import UserError

if TYPE_CHECKING:
    import torch

    from selfstudy.core.distributed import DistInfo

_DEVICE = re.compile(r"(cpu|cuda)(:\d+)?")


def resolve_device(device: "str | torch.device" = "auto", dist: "DistInfo | None" = None) -> "torch.device":
    """The torch device a run uses.

    ``auto``: ``cuda`` when a CUDA GPU is visible, else ``cpu``; ``cpu``, ``cuda`` and ``cuda:N`` as
    asked (a GPU must be visible for ``cuda``). Under ``torchrun`` (``dist.world > 1``) every process
    uses its own device, ``dist.device``, whatever was asked. Anything else raises :class:`UserError`.
    """
    import torch

    if dist is not None and dist.world > 1:
        return torch.device(dist.device)
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not _DEVICE.fullmatch(name):
        raise UserError(f"unknown device {device!r}; allowed: auto, cpu, cuda, cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    return torch.device(name)


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else :class:`UserError`."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    return precision


def autocast_dtype(precision: str) -> "torch.dtype | None":
    """The dtype autocast runs in for ``precision`` (None for fp32: no autocast)."""
    import torch

    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(precision: str, device: "torch.device | str"):
    """The autocast context of ``precision`` on ``device``'s type (fp32: a context that does nothing)."""
    import torch

    dtype = autocast_dtype(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)
