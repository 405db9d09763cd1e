"""Backbone weights from a checkpoint file the user already holds (``selfstudy finetune --init FILE``).

A practitioner's baseline is often not "from scratch" but "from the weights I have": supervised
ImageNet ResNet18/50 saved by torchvision, or a backbone trained elsewhere. The backbones here use
torchvision's module names, so such a file loads as it is. :func:`load_weights` reads it with
``torch.load(..., weights_only=True)`` (nothing in the file can run code) and checks it **strictly**
against the named backbone before any data is touched:

- accepted layouts: a bare state dict (name -> tensor), a dict holding one under ``state_dict`` or
  ``model``, with or without DataParallel's ``module.`` prefix on every key. (A selfstudy pretraining
  checkpoint, ``final.pt`` with a ``transfer`` entry, is read by ``train.pretrain.load_transfer``
  instead: :func:`is_pretraining_checkpoint` tells them apart.)
- the only tolerated differences: torchvision's classifier ``fc.*`` is dropped (a task head replaces
  it), the backbone's own ``prepool.*`` projection may be absent (the paper's 1x1 projection, not in
  torchvision; it then starts freshly initialised) and BatchNorm's ``num_batches_tracked`` counters may
  be absent (older files). Any other missing or unexpected key, or any shape mismatch, is refused
  with one line naming a few of them and their counts.

The result is an *init* dict like a pretraining transfer state, ``{"method", "backbone",
"state_dict", "input", "weights"}``, with ``input`` None: the file does not say how its inputs were
normalised, so finetuning fits the normalisation on the dataset's training split, as from scratch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from selfstudy.errors import UserError
from selfstudy.models import BACKBONES, build_backbone

#: Keys of the file dropped before the check: torchvision's classifier.
DROPPED_PREFIXES = ("fc.",)
#: Backbone keys the file may lack: the prepool projection (not in torchvision) and BN counters.
OPTIONAL_PREFIXES = ("prepool.",)
OPTIONAL_SUFFIXES = ("num_batches_tracked",)
_SHOW = 3  # names listed per kind of mismatch


def is_weights_init(init: Mapping | None) -> bool:
    """Whether ``init`` came from :func:`load_weights` (not from a pretraining run)."""
    return isinstance(init, Mapping) and bool(init.get("weights"))


#: What :func:`load_file` tells a user whose weights file it cannot read.
WEIGHTS_FIX = "it must be a torch file of tensors (torch.save(model.state_dict(), path))"


def load_file(path: str | os.PathLike, what: str = "weights file", fix: str = WEIGHTS_FIX) -> dict:
    """The dict in a torch file, loaded onto the CPU with ``weights_only=True`` (nothing in the file can
    run code). The one loader for torch files: weights files here, selfstudy's own checkpoints through
    ``train.checkpoint.load_checkpoint``.

    Raises :class:`UserError` if the file is missing, not a torch file, holds pickled objects, or is not
    a dict; the message calls the file ``what`` and ends with ``fix`` (what to do instead).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file (RuntimeError, UnpicklingError, EOFError)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path} is not a readable {what} ({first[:200]}); {fix}") from None
    if not isinstance(state, dict):
        raise UserError(f"{path} is not a readable {what}: it holds a {type(state).__name__}, not a dict; {fix}")
    return state


def is_pretraining_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a selfstudy pretraining run (its folder, or a file with a ``transfer`` entry)."""
    path = Path(path)
    return path.is_dir() or "transfer" in load_file(path)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict in ``path`` (see the module docstring for the layouts), keys as in the file minus
    a ``module.`` prefix shared by every key. Raises :class:`UserError` for anything else."""
    path = Path(path)
    state = load_file(path)
    allowed = ("a state dict (name -> tensor), or a dict with one under 'state_dict' or 'model'")
    for key in ("state_dict", "model"):
        if isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if not state or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        kinds = sorted({type(v).__name__ for v in state.values()}) if state else ["nothing"]
        raise UserError(f"{path} holds no backbone weights (found {', '.join(kinds)} values under keys like "
                        f"{', '.join(map(repr, list(state)[:3])) or 'none'}); allowed: {allowed}")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def check_fits(state: Mapping[str, torch.Tensor], model: nn.Module, what: str) -> dict[str, torch.Tensor]:
    """``state`` minus the dropped keys, after checking that it fits ``model`` strictly (but for the
    optional keys); raises :class:`UserError` naming a few missing, unexpected and mis-shaped keys."""
    state = {k: v for k, v in state.items() if not k.startswith(DROPPED_PREFIXES)}
    target = model.state_dict()
    missing = [k for k in target if k not in state
               and not k.startswith(OPTIONAL_PREFIXES) and not k.endswith(OPTIONAL_SUFFIXES)]
    unexpected = [k for k in state if k not in target]
    shapes = [f"{k} ({_shape(state[k])} in the file, {_shape(target[k])} here)" for k in state
              if k in target and tuple(state[k].shape) != tuple(target[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        for label, names in (("missing", missing), ("unexpected", unexpected), ("of another shape", shapes)):
            if names:
                more = f", and {len(names) - _SHOW} more" if len(names) > _SHOW else ""
                parts.append(f"{len(names)} {label}: {', '.join(names[:_SHOW])}{more}")
        raise UserError(f"{what}: {'; '.join(parts)}; pass the --backbone the file was saved from "
                        f"(resnet18, resnet50 ...) or another file")
    return state


def _shape(t: torch.Tensor) -> str:
    return "x".join(map(str, t.shape)) or "scalar"


def load_weights(path: str | os.PathLike, backbone: str) -> dict[str, Any]:
    """An init dict for ``backbone`` from the weights file ``path`` (checked strictly, on the CPU)."""
    if backbone not in BACKBONES:
        raise UserError(f"unknown backbone {backbone!r}; allowed: {', '.join(BACKBONES)}")
    path = Path(path)
    state = read_state_dict(path)
    state = check_fits(state, build_backbone(backbone, in_channels=3),
                       f"{path} does not fit backbone {backbone}")
    return {"method": f"weights:{path.stem}", "backbone": backbone, "state_dict": state, "input": None,
            "weights": str(path)}


def build_encoder(init: Mapping[str, Any]) -> nn.Module:
    """The backbone of an init dict from :func:`load_weights` with its weights loaded (keys the file
    lacks keep their fresh initialisation, drawn from torch's global generator)."""
    model = build_backbone(init["backbone"], in_channels=3)
    state = check_fits(init["state_dict"], model, f"weights {init.get('weights')} do not fit {init['backbone']}")
    model.load_state_dict(state, strict=False)  # check_fits allowed only the optional keys to be absent
    return model
