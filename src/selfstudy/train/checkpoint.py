"""Checkpoint files: atomic writes, safe loads, RNG state capture, and compatibility checks.

A checkpoint is a plain dict of tensors and plain containers (dict, list, tuple, str, int, float, bool,
None), so that it loads with ``torch.load(..., weights_only=True)``: no pickled objects, nothing in a
file can run code on load.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Mapping

import torch

from selfstudy.core.io import atomic_write
from selfstudy.errors import UserError
from selfstudy.models.weights import load_file


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically: a temporary file beside it, fsync, then ``os.replace``.

    A crash mid-write leaves the previous file at ``path`` untouched (and at worst a stray temporary
    file, which is removed on the next successful write of the same path).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: torch.save(dict(state), f))
    for stray in path.parent.glob(f".{path.name}.*.tmp"):
        stray.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | os.PathLike, what: str = "checkpoint") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` onto the CPU, with ``weights_only=True``
    (``models.weights.load_file``, the one loader of torch files).

    Raises :class:`UserError` if the file is missing, truncated, not a torch file, or holds anything
    but tensors and plain containers.
    """
    return load_file(path, f"selfstudy {what}", fix="delete it or point to another file")


def capture_rng(generators: Mapping[str, torch.Generator]) -> dict:
    """Every random state a training step can touch: the given generators, torch's global CPU and CUDA
    generators, and Python's ``random`` (as a list, so it survives ``weights_only`` loading)."""
    py_version, py_state, py_gauss = random.getstate()
    state = {
        "generators": {name: g.get_state() for name, g in generators.items()},
        "torch_cpu": torch.get_rng_state(),
        "python": [py_version, list(py_state), py_gauss],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["torch_cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping, generators: Mapping[str, torch.Generator]) -> None:
    """Inverse of :func:`capture_rng`. Generators missing from ``state`` raise :class:`UserError`."""
    saved = state["generators"]
    missing = sorted(set(generators) - set(saved))
    if missing:
        raise UserError(f"checkpoint has no state for random generator(s) {', '.join(missing)}")
    for name, g in generators.items():
        g.set_state(saved[name])
    torch.set_rng_state(state["torch_cpu"])
    version, values, gauss = state["python"]
    random.setstate((version, tuple(values), gauss))
    if "torch_cuda" in state and torch.cuda.is_available():
        cuda_states = state["torch_cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def describe_mismatch(saved: Mapping, current: Mapping, prefix: str = "") -> list[str]:
    """``"key: A there, B here"`` for every key whose value differs between two nested dicts."""
    out = []
    for key in sorted(set(saved) | set(current), key=str):
        name = f"{prefix}{key}"
        a, b = saved.get(key, "<absent>"), current.get(key, "<absent>")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out.extend(describe_mismatch(a, b, prefix=f"{name}."))
        elif _normalise(a) != _normalise(b):
            out.append(f"{name}: {a!r} there, {b!r} here")
    return out


def _normalise(value: Any) -> Any:
    # A config saved as a tuple comes back as a tuple, but one built from a CLI or JSON may be a list.
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    return value


def check_compatible(path: str | os.PathLike, saved: Mapping, current: Mapping) -> None:
    """Raise :class:`UserError` naming every difference between a checkpoint's identity and this run's."""
    diffs = describe_mismatch(saved, current)
    if diffs:
        shown = "; ".join(diffs[:4]) + (f"; and {len(diffs) - 4} more" if len(diffs) > 4 else "")
        raise UserError(f"{path} belongs to a different run ({shown}); "
                        f"use another output folder or delete {path} to start over")
