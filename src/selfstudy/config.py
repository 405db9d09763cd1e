"""``key.sub=value`` overrides for YAML configs, shared by every command.

An override names a nested key with dots and gives its value in YAML, so it is typed the way the
config file would type it::

    labels=[100,1000]            -> {"labels": [100, 1000]}
    methods.rotation.epochs=30   -> {"methods": {"rotation": {"epochs": 30}}}
    finetune.lr=1e-3             -> {"finetune": {"lr": 0.001}}
    space=lab  channels_last=no  -> {"space": "lab", "channels_last": False}

Values follow YAML 1.1 as PyYAML reads it, with one exception: a plain number in exponent notation
without a dot (``1e-3``) is a float here, as a user means it, not the string YAML 1.1 makes of it.
An empty value (``key=``) is ``None`` (YAML's null), which resets a field to its default.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Iterable, Mapping

import yaml

from selfstudy.errors import UserError

# One key segment: letters, digits, '_' and '-' (backbone and method names have dashes).
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-]*$")
# YAML 1.1 reads '1e-3' as a string (it wants '1.0e-3'); users mean a number.
_EXP_FLOAT = re.compile(r"^[-+]?\d+(\.\d*)?[eE][-+]?\d+$")


def parse_value(text: str) -> Any:
    """The value of ``text`` read as YAML (numbers, booleans, null, lists, mappings, strings)."""
    if _EXP_FLOAT.match(text.strip()):
        return float(text)
    try:
        return yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"cannot read value {text!r} as YAML ({first}); quote strings that contain "
                        f"':' or '#', e.g. key='a: b'") from None


def parse_override(item: str) -> tuple[tuple[str, ...], Any]:
    """Split one ``key.sub=value`` into its key path and its YAML-typed value."""
    if not isinstance(item, str) or "=" not in item:
        raise UserError(f"bad override {item!r}: overrides are key=value or key.sub=value, "
                        f"e.g. labels=[100,1000] or finetune.lr=1e-3")
    key, _, value = item.partition("=")
    path = tuple(key.strip().split("."))
    for seg in path:
        if not _SEGMENT.match(seg):
            raise UserError(f"bad override key {key.strip()!r}: a key is dot-separated names of letters, "
                            f"digits, '_' and '-', e.g. methods.rotation.epochs")
    return path, parse_value(value)


def parse_overrides(items: Iterable[str]) -> dict:
    """A nested dict of every override in ``items`` (later ones win on the same key)."""
    out: dict = {}
    for item in items:
        path, value = parse_override(item)
        _set(out, path, value, item)
    return out


def apply_overrides(config: Mapping, items: Iterable[str]) -> dict:
    """A deep copy of ``config`` with every ``key.sub=value`` in ``items`` set.

    Intermediate mappings are created when missing; a key path that runs through a value that is not a
    mapping (``labels.x=1`` when ``labels`` is a list) is an error. Whether a key is *allowed* is for
    the config's own validation to decide.
    """
    out = copy.deepcopy(dict(config))
    for item in items:
        path, value = parse_override(item)
        _set(out, path, value, item)
    return out


def merge(base: Mapping, update: Mapping) -> dict:
    """``base`` deep-updated by ``update``: mappings merge key by key, anything else replaces."""
    out = copy.deepcopy(dict(base))
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _set(target: dict, path: tuple[str, ...], value: Any, item: str) -> None:
    node = target
    for depth, seg in enumerate(path[:-1]):
        nxt = node.get(seg)
        if nxt is None:
            nxt = node[seg] = {}
        elif not isinstance(nxt, dict):
            where = ".".join(path[:depth + 1])
            raise UserError(f"bad override {item!r}: {where} is {type(nxt).__name__} {nxt!r}, not a "
                            f"mapping, so it has no key {path[depth + 1]!r}; set {where}=... as a whole")
        node = nxt
    node[path[-1]] = value
