"""Configs: one typed layer, YAML read strictly, and ``key.sub=value`` overrides, shared by every command.

**The typed layer.** A config is a dataclass deriving from :class:`Config` whose fields carry their
allowed range or choices (:func:`option`: ``lr: float = option(1e-3, gt=0)``). :func:`load` reads a
mapping (a YAML section, :func:`parse_overrides`' dict, CLI ``key=value`` pairs) into one: it converts
every value by the field's type hint (an int given for a float field becomes a float, so ``lr: 1`` and
``lr: 1.0`` are one config), refuses an unknown key naming the nearest allowed one, and checks every
rule with an error that says what is allowed. :func:`canonical` (``Config.to_dict``) is the plain dict
that checkpoints store and study cell ids hash. The method configs, the finetune and probe budgets and
the study spec are such configs.

**YAML** is read with :class:`StrictLoader`, which refuses a key given twice in one mapping.

**Overrides.**

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
import dataclasses
import difflib
import math
import re
import typing
from collections import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Mapping

import numpy as np
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
        return yaml.load(text, Loader=StrictLoader) if text.strip() else None
    except yaml.YAMLError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"cannot read value {text!r} as YAML ({first}); quote strings that contain "
                        f"':' or '#', e.g. key='a: b'") from None


def parse_override(item: str) -> tuple[tuple[str, ...], Any]:
    """Split one ``key.sub=value`` into its key path and its YAML-typed value."""
    if not isinstance(item, str) or "=" not in item:
        raise UserError(f"bad override {item!r}; write key=value or key.sub=value, "
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


# --- YAML ---------------------------------------------------------------------------------------


class StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses a mapping with a key given twice (plain PyYAML keeps the
    last one silently, so a second ``datasets:`` block would replace the first)."""


def _construct_mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            continue  # the base constructor raises its own error for an unhashable key
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is given twice (line {seen[key] + 1} and line "
                f"{key_node.start_mark.line + 1}); give each key once", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(text: str, where: str) -> Any:
    """``text`` read as YAML with :class:`StrictLoader`; any error is one :class:`UserError` line."""
    try:
        return yaml.load(text, Loader=StrictLoader)
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None)
        first = problem if problem else (str(e).splitlines()[0] if str(e) else type(e).__name__)
        raise UserError(f"{where}: not valid YAML ({first})") from None


# --- typed configs ------------------------------------------------------------------------------

RULE = "selfstudy.rule"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Rule:
    """What a config field allows beyond its type: bounds, choices, a pattern, non-emptiness.

    ``allowed`` replaces the generated description in error messages (``"a whole number >= 1"``).
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple | None = None
    pattern: str | None = None
    nonempty: bool = False
    allowed: str | None = None
    #: How an error reads: "must" (``key=<value> is not allowed; key must be <allowed>``) or "choice"
    #: (``key <value> is not allowed; allowed: <allowed>``, for names and patterns).
    style: str = "must"


def option(default: Any = dataclasses.MISSING, *, default_factory: Any = dataclasses.MISSING,
           **rule: Any) -> Any:
    """A dataclass field with its :class:`Rule`: ``lr: float = option(1e-3, gt=0)``."""
    if "choices" in rule:
        rule["choices"] = tuple(rule["choices"])
    return field(default=default, default_factory=default_factory, metadata={RULE: Rule(**rule)})


class Config:
    """Base of the typed configs: dataclasses whose fields carry their :class:`Rule` (:func:`option`).

    ``config_name`` starts every error message (``"budget: max_steps must be ..."``). :meth:`check`
    holds the rules that tie fields together; :meth:`validate` runs the field rules, then it.
    """

    config_name: ClassVar[str] = "config"
    #: The error for keys the config does not have ({where}, {prefix}, {keys}, {first}: the first
    #: unknown key, {hint}: "did you mean", {allowed}).
    unknown_message: ClassVar[str] = "{where}: unknown option(s) {keys}{hint}; allowed: {allowed}"
    #: Whether string values are text to read (``"1e-3"`` -> 0.001, ``"true"`` -> True), as from a
    #: command line; False where values come typed by YAML, so that ``'yes'`` stays a string.
    read_strings: ClassVar[bool] = True

    @classmethod
    def load(cls, raw: Mapping[str, Any] | None = None, *, where: str | None = None, base: Any = None,
             prefix: str = ""):
        """An instance from ``raw`` (see :func:`load`)."""
        return load(cls, raw, where=where, base=base, prefix=prefix)

    def validate(self):
        """Convert every field to its type, check its rule, then :meth:`check`; return ``self``."""
        _validate_fields(self, self.config_name)
        self.check()
        return self

    def check(self) -> None:
        """Rules between fields; the base has none."""

    def require(self, ok: bool, key: str, allowed: str) -> None:
        """Raise the config's :class:`UserError` for ``key`` unless ``ok``."""
        if not ok:
            raise UserError(_message(self.config_name, key, allowed, getattr(self, key), Rule()))

    def to_dict(self) -> dict[str, Any]:
        """The canonical plain dict (tuples as lists): what checkpoints store and cell ids hash."""
        return canonical(self)


def load(cls: type, raw: Mapping[str, Any] | None = None, *, where: str | None = None, base: Any = None,
         prefix: str = ""):
    """A ``cls`` (a :class:`Config` dataclass) from a mapping, converted by type hint and validated.

    ``raw`` comes from YAML, from :func:`parse_overrides` or from a dict whose string values are read
    as YAML (``"1e-3"``, ``"true"``); ``None`` values reset a field to its default. Starts from
    ``base`` (an instance) or the class defaults. Unknown keys raise :class:`UserError` naming the
    nearest allowed one; a value of the wrong type or out of its rule raises one naming what is allowed.
    ``where`` starts every message (default: the class's ``config_name``); ``prefix`` goes before every
    key in them (``"datasets."``).
    """
    where = cls.config_name if where is None else where
    raw = {} if raw is None else raw
    if not isinstance(raw, Mapping):
        raise UserError(f"{where}: {prefix.rstrip('.') or 'it'} must be a mapping of options, got {raw!r}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in raw if k not in names]
    if unknown:
        near = difflib.get_close_matches(str(unknown[0]), names, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise UserError(cls.unknown_message.format(where=where, prefix=prefix, keys=", ".join(map(str, unknown)),
                                                   first=unknown[0], hint=hint, allowed=", ".join(names)))
    hints = typing.get_type_hints(cls)
    values = {}
    for k, v in raw.items():
        if v is None and not _optional(hints[k]):
            continue  # reset to the default
        values[k] = convert(v, hints[k], prefix + k, where, _rule_of(cls, k), cls.read_strings)
    obj = dataclasses.replace(base, **values) if base is not None else cls(**values)
    return obj.validate()


def convert_field(cls: type, key: str, value: Any, where: str | None = None) -> Any:
    """``value`` converted to field ``key`` of config class ``cls`` by its type hint, its rule checked
    (one field of :func:`load`, for callers that route keys between configs)."""
    return convert(value, typing.get_type_hints(cls)[key], key, cls.config_name if where is None else where,
                   _rule_of(cls, key), cls.read_strings)


def canonical(obj: Any) -> Any:
    """The canonical JSON-able form of a config (dataclasses as dicts, tuples as lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: canonical(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    return obj


def convert(value: Any, hint: Any, key: str, where: str, rule: Rule | None = None, strings: bool = True) -> Any:
    """``value`` as type ``hint`` (bool, int, float, str, Optional, tuple[...], Mapping, Any, a
    dataclass), then its ``rule`` checked. With ``strings`` (text from a command line or a dict of
    such text) a string is read as YAML first unless the field is a string; without (a value YAML
    already typed), a string is only a string."""
    rule = rule or Rule()
    out = _convert(value, hint, key, where, rule, strings)
    _check_rule(out, hint, key, where, rule, shown=value)
    return out


def allowed_text(hint: Any, rule: Rule) -> str:
    """What a field allows, in words: ``"an integer >= 1"``, ``"'cosine' or 'constant'"``."""
    if rule.allowed:
        return rule.allowed
    if rule.choices is not None:
        return _or(rule.choices)
    inner = _strip_optional(hint)
    base = _type_name(inner)
    bounds = _bounds(rule)
    if bounds and inner in (int, float):
        base = f"{base} {bounds}" if " in " not in bounds else f"{base}{bounds}"
    elif bounds:
        base = f"{base} (each {bounds.strip()})"
    if rule.nonempty and typing.get_origin(inner) is tuple:
        base = f"a non-empty {base[2:] if base.startswith('a ') else base}"
    return base + (" or empty" if _optional(hint) else "")


# --- helpers of the typed layer -----------------------------------------------------------------


def _rule_of(cls: type, name: str) -> Rule:
    """The rule of field ``name``: the nearest class in the MRO that gave it one (a subclass that only
    changes a default keeps its parent's rule)."""
    for klass in cls.__mro__:
        f = klass.__dict__.get("__dataclass_fields__", {}).get(name)
        if f is not None and RULE in f.metadata:
            return f.metadata[RULE]
    return Rule()


def _validate_fields(obj: Any, where: str) -> None:
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        out = convert(value, hints[f.name], f.name, where, _rule_of(type(obj), f.name), obj.read_strings)
        if out is not value and out != value or type(out) is not type(value):
            object.__setattr__(obj, f.name, out)


def _message(where: str, key: str, allowed: str, value: Any, rule: Rule) -> str:
    head = f"{where}: " if where else ""
    if rule.style == "choice":
        return f"{head}{key} {value!r} is not allowed; allowed: {allowed}"
    return f"{head}{key}={value!r} is not allowed; {key} must be {allowed}"


def _optional(hint: Any) -> bool:
    return hint is Any or type(None) in typing.get_args(hint)


def _strip_optional(hint: Any) -> Any:
    args = typing.get_args(hint)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]
    return hint


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        item = {float: "numbers", int: "integers", str: "strings"}.get(args[0], "values")
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {item}"
        return f"{len(args)} comma-separated {item}"
    if dataclasses.is_dataclass(hint):
        return "a mapping of options"
    return {bool: "true or false", float: "a number", int: "an integer", str: "a string"}.get(
        hint, "a mapping of options" if typing.get_origin(hint) in (dict, Mapping, abc.Mapping) else "a value")


def _bounds(rule: Rule) -> str:
    lo = (f"[{_num(rule.ge)}" if rule.ge is not None else f"({_num(rule.gt)}" if rule.gt is not None else None)
    hi = (f"{_num(rule.le)}]" if rule.le is not None else f"{_num(rule.lt)})" if rule.lt is not None else None)
    if lo and hi:
        return f" in {lo}, {hi}"
    if lo:
        return (">= " if lo[0] == "[" else "> ") + lo[1:]
    if hi:
        return ("<= " if hi[-1] == "]" else "< ") + hi[:-1]
    return ""


def _num(x: float) -> str:
    return f"{x:g}"


def _or(choices: Iterable) -> str:
    items = [repr(c) for c in choices]
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def _convert(value: Any, hint: Any, key: str, where: str, rule: Rule, strings: bool = True) -> Any:
    given = hint

    def fail() -> typing.NoReturn:
        raise UserError(_message(where, key, allowed_text(given, rule), value, rule))

    if hint is Any:
        return value
    if _optional(hint):
        if value is None or (strings and isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
            return None
        hint = _strip_optional(hint)
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, Mapping):
            fail()
        return load(hint, value, where=where, prefix=f"{key}.")
    if hint is str:
        if not isinstance(value, str):
            fail()
        return value
    text = value.strip() if isinstance(value, str) and strings else None
    if text is not None and hint is not bool:
        try:
            value = parse_value(text) if typing.get_origin(hint) is not tuple or text[:1] in "[(" else text
        except UserError:
            fail()
        if isinstance(value, str) and typing.get_origin(hint) is tuple and value[:1] == "(":
            value = value.strip("()")
    if hint is bool:
        if isinstance(value, bool):
            return value
        if text is not None and text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        fail()
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            fail()
        if isinstance(value, (int, np.integer)):
            return int(value)
        if not math.isfinite(value) or value != int(value):
            fail()
        return int(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            fail()
        if not math.isfinite(float(value)):
            fail()
        return float(value)
    origin = typing.get_origin(hint)
    if origin is tuple:
        args = typing.get_args(hint)
        if isinstance(value, str) and strings:
            items = [v.strip() for v in value.split(",")]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        elif len(args) == 2 and args[1] is Ellipsis:
            items = [value]  # one value for a list of any length
        else:
            fail()
        types = [args[0]] * len(items) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(types) != len(items):
            fail()
        try:
            return tuple(_convert(v, t, key, where, Rule(), strings) for v, t in zip(items, types))
        except UserError:
            fail()
    if origin in (dict, Mapping, abc.Mapping):
        if not isinstance(value, Mapping):
            fail()
        return dict(value)
    raise TypeError(f"config field {key} has an unsupported type {hint!r}")  # a bug in a Config


def _check_rule(value: Any, hint: Any, key: str, where: str, rule: Rule, shown: Any = None) -> None:
    """Raise the field's :class:`UserError` (showing ``shown``, the value as given) unless ``value``,
    converted, keeps ``rule``."""
    if value is None:
        return
    items = value if isinstance(value, tuple) else (value,)
    ok = True
    if rule.nonempty and isinstance(value, tuple) and not value:
        ok = False
    for v in items:
        if rule.choices is not None and v not in rule.choices:
            ok = False
        if rule.pattern is not None and not (isinstance(v, str) and re.fullmatch(rule.pattern, v)):
            ok = False
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if (rule.ge is not None and not v >= rule.ge) or (rule.gt is not None and not v > rule.gt) \
                    or (rule.le is not None and not v <= rule.le) or (rule.lt is not None and not v < rule.lt):
                ok = False
    if not ok:
        raise UserError(_message(where, key, allowed_text(hint, rule), value if shown is None else shown, rule))
