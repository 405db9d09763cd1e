"""docs/DESIGN.md's documented call signatures match the code.

Every backticked ``package.name(arguments)`` in DESIGN.md whose first part is a selfstudy module
(``train.loop.Trainer(...)``, ``methods.build_method(...)``, ...) must name something importable, and
its arguments must be real parameters, in the code's order, with every required parameter listed.
Arguments written as ``...`` stand for "more, optional" and are skipped. A renamed or re-signed function
then fails here until the doc follows.
"""

import importlib
import inspect
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "DESIGN.md"
PACKAGES = {"errors", "factors", "config", "core", "scene", "data", "models", "methods", "tasks", "train",
            "study"}
SPAN = re.compile(r"`([a-z_][\w]*(?:\.[A-Za-z_]\w*)+)\(([^`]*?)\)(?:\s*->[^`]*)?`")


def _split_args(text: str) -> list[str]:
    """Top-level comma-separated parts of an argument list (brackets and quotes respected)."""
    parts, depth, cur, quote = [], 0, "", None
    for ch in text:
        if quote:
            cur += ch
            quote = None if ch == quote else quote
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        cur += ch
    parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def _arg_name(part: str) -> str | None:
    if part in ("...", "…") or part.startswith("*"):
        return None
    name = re.split(r"[=:\s]", part, maxsplit=1)[0]
    name = name.split("|")[0].strip()
    return name if name.isidentifier() else None


def _resolve(dotted: str):
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module("selfstudy." + ".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise AttributeError(dotted)


def documented_signatures() -> list[tuple[str, list[str]]]:
    found = []
    for m in SPAN.finditer(DOC.read_text()):
        dotted, args = m.group(1), m.group(2)
        if dotted.split(".")[0] not in PACKAGES:
            continue
        names = [_arg_name(p) for p in _split_args(args)]
        found.append((dotted, [n for n in names if n]))
    return found


def test_the_doc_documents_signatures():
    assert len(documented_signatures()) >= 10


@pytest.mark.parametrize("dotted, names", documented_signatures(), ids=lambda v: v if isinstance(v, str) else "")
def test_documented_signature_matches_the_code(dotted, names):
    obj = _resolve(dotted)
    if isinstance(obj, type) and issubclass(obj, BaseException) and "__init__" not in vars(obj):
        return  # an exception that takes its message as it comes: nothing more to check
    sig = inspect.signature(obj)
    params = [p for p in sig.parameters.values() if p.name not in ("self", "cls")
              and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    real = [p.name for p in params]
    unknown = [n for n in names if n not in real]
    assert not unknown, f"DESIGN.md documents {dotted}({', '.join(names)}), but the code's parameters are {real}"
    assert names == sorted(names, key=real.index), f"{dotted}: documented order {names}, code order {real}"
    required = [p.name for p in params if p.default is p.empty]
    missing = [n for n in required if n not in names]
    assert not missing, f"DESIGN.md's {dotted}(...) leaves out required parameters {missing}"
