"""Baseline arms a practitioner already has: a weights file (e.g. supervised ImageNet weights saved
with torchvision's key names), finetuned like a pretrained checkpoint, as one more arm of a study.

In a spec::

    methods: [scratch, simclr, {name: weights, path: imagenet_r18.pth, backbone: resnet18}]
    baselines: [{path: imagenet_r18.pth, backbone: resnet18}]      # the same, as its own section
    utility: {baseline: weights:imagenet_r18}                        # utility against it (default scratch)

Such an arm is called ``weights:<file stem>`` (the method label :func:`selfstudy.train.finetune.run`
gives it). It has no pretraining cell; its downstream cells load the file (strictly, with
``weights_only=True``: :mod:`selfstudy.models.weights`) and run only on its backbone, which must be
among the study's ``backbones``. A cell's id hashes the file's SHA-256 (not its path): the same file
anywhere gives the same cells, a changed file new ones.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping

from selfstudy.core.constants import SCRATCH
from selfstudy.errors import UserError
from selfstudy.models import BACKBONES, weights

WEIGHTS = "weights"
PREFIX = "weights:"
#: The keys of a weights arm.
WEIGHTS_KEYS = ("path", "backbone")
UTILITY_KEYS = ("baseline",)


def is_weights_name(name) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


def arm_name(path) -> str:
    """The method name of the weights arm of file ``path``: ``weights:<stem>``."""
    return PREFIX + Path(str(path)).stem


def normalise(raw: dict) -> dict:
    """``baselines: [...]`` and list entries ``{name: weights, path: ..., backbone: ...}`` of
    ``methods`` rewritten as ``methods`` entries ``{"weights:<stem>": {path, backbone}}`` (in place of
    the list entry; baselines after the methods)."""
    extra = raw.pop("baselines", None)
    methods = raw.get("methods")
    if isinstance(methods, str):
        methods = [methods]
    if isinstance(methods, list):
        methods = [_entry(m) if isinstance(m, Mapping) and m.get("name") == WEIGHTS else m for m in methods]
    if extra is not None:
        if isinstance(extra, Mapping):
            extra = [extra]
        if not isinstance(extra, list):
            raise UserError(f"baselines must be a list of weights files, each {{path: FILE, backbone: NAME}}, "
                            f"got {extra!r}")
        entries = []
        for b in extra:
            if not isinstance(b, Mapping):
                raise UserError(f"baselines: each entry is {{path: FILE, backbone: NAME}}, got {b!r}")
            entries.append(_entry({"name": WEIGHTS, **b}))
        if methods is None:
            methods = []
        if isinstance(methods, Mapping):
            methods = dict(methods)
            for e in entries:
                methods.update(e)
        else:
            methods = list(methods) + entries
    if methods is not None:
        raw["methods"] = methods
    return raw


def _entry(m: Mapping) -> dict:
    opts = {k: v for k, v in m.items() if k != "name"}
    for k in opts:
        if k not in WEIGHTS_KEYS:
            raise UserError(f"methods: a weights arm takes {', '.join(WEIGHTS_KEYS)}, got unknown key {k!r}; "
                            f"e.g. {{name: weights, path: imagenet.pth, backbone: resnet18}}")
    if not opts.get("path"):
        raise UserError("methods: a weights arm needs path: the weights file, e.g. "
                        "{name: weights, path: imagenet.pth, backbone: resnet18}")
    return {arm_name(opts["path"]): opts}


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_options(name: str, opts: Mapping, backbones, res: int | None, where: str) -> dict:
    """The checked fields of weights arm ``name`` (``path`` resolved, ``backbone``, ``sha256``): the file
    exists, its stem gives ``name``, the backbone is among the study's ``backbones``, and the file loads
    strictly into that backbone (one :class:`UserError` line otherwise)."""
    for k in opts:
        if k not in WEIGHTS_KEYS:
            raise UserError(f"{where}: methods.{name}: unknown key {k!r}; a weights arm takes "
                            f"{', '.join(WEIGHTS_KEYS)}")
    path, backbone = opts.get("path"), opts.get("backbone")
    if not path:
        raise UserError(f"{where}: methods.{name} needs path: the weights file")
    file = Path(str(path)).expanduser()
    if arm_name(file) != name:
        raise UserError(f"{where}: methods.{name}: a weights arm is named after its file ({arm_name(file)})")
    if not file.is_file():
        raise UserError(f"{where}: methods.{name}: weights file {str(path)!r} does not exist")
    if backbone not in BACKBONES:
        raise UserError(f"{where}: methods.{name}: backbone {backbone!r} is not allowed; give the backbone "
                        f"the file was saved from, one of: {', '.join(BACKBONES)}")
    if backbone not in backbones:
        raise UserError(f"{where}: methods.{name} runs on backbone {backbone}, which is not among the study's "
                        f"backbones {list(backbones)}; add it (scratch and the SSL arms need it to compare)")
    try:
        weights.load_weights(file, backbone)
    except UserError as e:
        raise UserError(f"{where}: methods.{name}: {e}") from None
    return {"path": str(file.resolve()), "backbone": backbone, "sha256": file_sha256(file)}


def utility_options(raw, methods, where: str) -> dict:
    """The ``utility`` section: ``{}`` (utility against scratch) or ``{"baseline": NAME}``, NAME one of
    the study's methods (scratch, a weights arm, or any other arm)."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise UserError(f"{where}: utility must be a mapping, e.g. {{baseline: weights:imagenet}}, got {raw!r}")
    for k in raw:
        if k not in UTILITY_KEYS:
            raise UserError(f"{where}: unknown key utility.{k!r}; allowed: {', '.join(UTILITY_KEYS)}")
    base = raw.get("baseline")
    if base is None or base == SCRATCH:
        return {}
    names = [m.name for m in methods]
    if base not in names:
        raise UserError(f"{where}: utility.baseline {base!r} is not among the study's methods; allowed: "
                        f"{', '.join(names)}")
    return {"baseline": str(base)}


def weights_cell_config(cfg: dict, method) -> dict:
    """A weights arm's downstream cell config: no pretraining cell, the file's hash instead."""
    return {**cfg, "pretrain": None, "weights": {"sha256": method.sha256, "backbone": method.backbone}}


def baseline_of(spec: Mapping[str, Any] | None) -> str:
    """The utility baseline a spec dict names (``scratch`` unless ``utility.baseline``)."""
    return str(((spec or {}).get("utility") or {}).get("baseline") or SCRATCH)


def checked_file(path, sha256: str) -> str:
    """``path``, after checking that the file is still the one the cell's id hashed (one line if not)."""
    file = Path(str(path))
    if not file.is_file():
        raise UserError(f"weights file {path} is gone; put it back or plan the study again")
    if file_sha256(file) != sha256:
        raise UserError(f"weights file {path} changed since the study was planned (its SHA-256 differs); "
                        f"rerun the study command: the changed file gets new cells")
    return str(file)
