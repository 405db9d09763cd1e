"""Self-supervised methods by name: ``build_method("rotation", "resnet9-tiny")``.

| name | what | paper |
|---|---|---|
| ``rotation`` | predict 0/90/180/270 degree rotations (RotNet) | docs/PAPER.md §4.1 |
| ``vae`` | variational auto-encoder | docs/PAPER.md §4.2 |
| ``cmc`` | contrastive multiview coding, luma vs chroma, memory bank | docs/PAPER.md §4.3 |
| ``amdim`` | augmented multiscale deep infomax | docs/PAPER.md §4.4 |
| ``simclr`` | SimCLR, NT-Xent between two augmented views (not in the paper) | |
| ``moco`` | MoCo v2, momentum key encoder and a queue of negatives (not in the paper) | |
| ``byol`` | BYOL, predict a momentum target's projection, no negatives (not in the paper) | |
| ``barlow`` | Barlow Twins, cross-correlation of two views toward the identity (not in the paper) | |
| ``vicreg`` | VICReg, invariance + variance + covariance terms (not in the paper) | |

Each method's ``Config`` holds the paper's hyper-parameters; override them with a dict of field names
(values may be strings, as from a command line).
"""

from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from selfstudy.errors import UserError
from selfstudy.methods.amdim import AMDIM
from selfstudy.methods.barlow import BarlowTwins
from selfstudy.methods.base import Method, MethodConfig
from selfstudy.methods.byol import BYOL
from selfstudy.methods.cmc import CMC, CMCEncoder
from selfstudy.methods.moco import MoCo
from selfstudy.methods.rotation import Rotation
from selfstudy.methods.simclr import SimCLR
from selfstudy.methods.vae import VAE
from selfstudy.methods.vicreg import VICReg

__all__ = ["METHODS", "Method", "MethodConfig", "CMCEncoder", "build_method", "build_encoder",
           "method_config"]

METHODS: dict[str, type[Method]] = {
    "rotation": Rotation,
    "vae": VAE,
    "cmc": CMC,
    "amdim": AMDIM,
    "simclr": SimCLR,
    "moco": MoCo,
    "byol": BYOL,
    "barlow": BarlowTwins,
    "vicreg": VICReg,
}


def _method_class(name: str) -> type[Method]:
    if name not in METHODS:
        raise UserError(f"unknown method {name!r}; allowed: {', '.join(METHODS)}")
    return METHODS[name]


def method_config(name: str, backbone: str, overrides: Mapping[str, Any] | None = None,
                  res: int | None = None) -> MethodConfig:
    """Method ``name``'s config for ``backbone``: the paper's defaults, then ``overrides``.

    ``res`` (the training resolution, if known) sets defaults that follow it (the VAE's
    ``decode_res``); overrides still win.
    """
    return _method_class(name).Config.from_overrides(overrides, backbone=backbone, res=res)


def build_method(name: str, backbone: str, overrides: Mapping[str, Any] | None = None,
                 in_channels: int = 3, num_train: int = 0, input_state: Mapping | None = None,
                 res: int | None = None) -> Method:
    """Build method ``name`` (see :data:`METHODS`) on backbone ``backbone``.

    Args:
        overrides: config fields to change (unknown ones raise :class:`UserError`).
        in_channels: must be 3 (methods read RGB).
        num_train: training split size (CMC's memory bank needs it).
        input_state: an ``InputTransform.state()`` (default: the paper's LAB normalisation).
        res: training resolution, if known (the VAE decodes at it).
    """
    cfg = method_config(name, backbone, overrides, res)
    return METHODS[name](backbone, cfg, in_channels=in_channels, num_train=num_train,
                         input_state=input_state)


def build_encoder(transfer: Mapping[str, Any], load: bool = True) -> nn.Module:
    """The encoder a :meth:`Method.transfer_state` describes, with its weights loaded (strictly)
    unless ``load`` is False. Its input is normalised by ``InputTransform.from_state(transfer["input"])``.
    """
    for key in ("method", "backbone", "state_dict", "input"):
        if key not in transfer:
            raise UserError(f"not a pretrained-encoder state: key {key!r} is missing; it needs method, "
                            f"backbone, state_dict and input")
    enc = _method_class(transfer["method"]).build_encoder(transfer)
    if load:
        try:
            enc.load_state_dict(transfer["state_dict"], strict=True)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0]
            raise UserError(f"pretrained weights do not fit backbone {transfer['backbone']} of method "
                            f"{transfer['method']}: {first}") from None
    return enc
