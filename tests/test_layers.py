"""The package layering, read from the source: no import cycle, nothing imports a layer above it.

    errors <- core, factors, config <- scene, models <- data <- tasks, methods <- train <- study <- cli

Every ``import`` of a project module counts, function-local ones too (they hide cycles rather than
remove them). Function-local imports of project modules belong in the CLI only, where they keep
``selfstudy --help`` from importing torch.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
LAYERS = [
    {"selfstudy", "selfstudy.errors"},
    {"selfstudy.core", "selfstudy.factors", "selfstudy.config"},
    {"selfstudy.scene", "selfstudy.models"},
    {"selfstudy.data"},
    {"selfstudy.tasks", "selfstudy.methods"},
    {"selfstudy.train"},
    {"selfstudy.study"},
    {"selfstudy.cli"},
    {"selfstudy.__main__"},
]
LAYER = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}
#: Modules outside the CLI that still import project modules inside functions. Being emptied by the
#: issue-8 work in those files; this set may only shrink.
STILL_LOCAL = {"selfstudy.study.runner"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


MODULES = {_module_name(p) for p in (SRC / "selfstudy").rglob("*.py")}


def _imports():
    """``(importer, imported, at_module_level)`` for every import of a project module;
    ``from package import name`` imports the submodule when ``name`` is one."""
    out = []
    for path in sorted((SRC / "selfstudy").rglob("*.py")):
        me = _module_name(path)
        tree = ast.parse(path.read_text())
        # Module level: the body, and the bodies of top-level ``if``/``try`` (``if TYPE_CHECKING:``).
        top = {id(n) for n in tree.body}
        for n in tree.body:
            if isinstance(n, (ast.If, ast.Try)):
                top |= {id(c) for c in ast.walk(n)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = me.split(".") if path.name == "__init__.py" else me.split(".")[:-1]
                    base = base[:len(base) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module
                subs = [f"{module}.{a.name}" for a in node.names if f"{module}.{a.name}" in MODULES]
                names = subs if len(subs) == len(node.names) else [module, *subs]
            else:
                continue
            out += [(me, name, id(node) in top) for name in names if name.split(".")[0] == "selfstudy"]
    return out


IMPORTS = _imports()


def test_the_walk_sees_the_project():
    importers = {a for a, _, _ in IMPORTS}
    assert {"selfstudy.methods.moco", "selfstudy.train.loop", "selfstudy.study.runner"} <= importers
    assert {_package(b) for _, b, _ in IMPORTS} <= set(LAYER)


def test_no_package_imports_a_layer_above_its_own():
    upward = sorted({(a, b) for a, b, _ in IMPORTS
                     if _package(a) != _package(b) and LAYER[_package(b)] >= LAYER[_package(a)]})
    assert not upward, "imports against the layering (importer -> imported): " + ", ".join(
        f"{a} -> {b}" for a, b in upward)


def test_no_cycle_among_module_level_imports():
    graph = defaultdict(set)
    for a, b, top in IMPORTS:
        if top and a != b:
            graph[a].add(b)
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_function_local_project_imports_only_in_the_cli():
    local = {a for a, _, top in IMPORTS if not top and _package(a) != "selfstudy.cli"}
    assert local <= STILL_LOCAL, f"new function-local imports of project modules in {sorted(local - STILL_LOCAL)}"


@pytest.mark.parametrize("package", sorted(set(LAYER) - {"selfstudy", "selfstudy.__main__"}))
def test_each_package_imports_alone_in_a_fresh_interpreter(package):
    root = SRC / package.replace(".", "/")
    modules = [package]
    if root.is_dir():
        modules += sorted(_module_name(p) for p in root.rglob("*.py") if p.name != "__init__.py")
    code = "import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
