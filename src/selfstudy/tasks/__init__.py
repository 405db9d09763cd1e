"""Downstream tasks, by name.

A task is named by a short string that can carry keyword arguments, VTAB-style:
``"classification"``, ``"pose"``, ``"pose-regression(within=15)"``. :func:`get_task` turns the string
into a :class:`Task`; :data:`TASKS` is the registry (adding a task is one file plus one line here).
"""

from __future__ import annotations

import ast
import re

from selfstudy.errors import UserError
from selfstudy.tasks.base import Availability, Task, add_sums
from selfstudy.tasks.classification import CategoricalTask, Classification
from selfstudy.tasks.dense_head import DenseTask
from selfstudy.tasks.depth import Depth
from selfstudy.tasks.pose import Pose
from selfstudy.tasks.pose_regression import PoseRegression
from selfstudy.tasks.segmentation import Segmentation

TASKS: dict[str, type[Task]] = {
    "classification": Classification,
    "pose": Pose,
    "pose-regression": PoseRegression,
    "segmentation": Segmentation,
    "depth": Depth,
}

_SPEC = re.compile(r"^\s*([A-Za-z][\w-]*)\s*(?:\((.*)\))?\s*$", re.S)


def parse_spec(spec: str) -> tuple[str, dict]:
    """Split ``"name(key=value, ...)"`` into the name and a dict of literal keyword arguments."""
    m = _SPEC.match(str(spec))
    if not m:
        raise UserError(f"bad task {spec!r}: write a task name, optionally with keyword arguments, "
                        f"e.g. classification or pose-regression(within=15)")
    name, args = m.group(1), m.group(2)
    kwargs = {}
    if args and args.strip():
        try:
            call = ast.parse(f"_({args})", mode="eval").body
            if not isinstance(call, ast.Call) or call.args:
                raise ValueError("only keyword arguments are allowed")
            kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
            if None in kwargs:
                raise ValueError("** is not allowed")
        except (SyntaxError, ValueError) as e:
            raise UserError(f"bad arguments in task {spec!r} ({e}); write key=value pairs of numbers or "
                            f"strings, e.g. pose-regression(within=15)") from None
    return name, kwargs


def get_task(spec: "str | Task") -> Task:
    """The task named by ``spec`` (a :class:`Task` is returned as is)."""
    if isinstance(spec, Task):
        return spec
    name, kwargs = parse_spec(spec)
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; allowed: {', '.join(TASKS)}")
    try:
        return TASKS[name](**kwargs)
    except TypeError:
        raise UserError(f"task {name!r} does not take arguments {sorted(kwargs)}; "
                        f"allowed: {_signature(TASKS[name])}") from None


def _signature(cls: type) -> str:
    import inspect
    if cls.__init__ is object.__init__:
        return "none"
    params = [p for p in inspect.signature(cls.__init__).parameters.values()
              if p.name != "self" and p.kind is p.POSITIONAL_OR_KEYWORD]
    if not params:
        return "none"
    return ", ".join(f"{p.name}={p.default!r}" for p in params)


__all__ = ["TASKS", "Task", "Availability", "CategoricalTask", "Classification", "DenseTask", "Depth", "Pose",
           "PoseRegression", "Segmentation", "get_task", "parse_spec", "add_sums"]
