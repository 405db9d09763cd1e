"""``budget: auto``: a finetune cell is run again at twice its budget until the doubling stops paying.

A checked finetune cell has **attempts**: the cell itself (budget factor 1) and its check cells, the same
cell with its budget (epochs, min_steps, max_steps) multiplied by ``factor``, ``factor**2``, ... up to
``cap``. :func:`decide` reads the attempts' validation scores and says what the cell is:

- **converged** when the attempt at ``f * factor`` gained no more than the tolerance over the attempt
  at ``f``: the attempt at ``f`` counts (its own doubling showed it had learned what it could);
- **run** the next doubling when it gained more and ``f * factor * factor`` is within ``cap`` (or when
  the attempt at ``f * factor`` is not there yet);
- **not_converged** ("did not converge within cap") when the attempt at the cap still gained more than
  the tolerance over the one before it: the largest attempt counts, flagged, never as a clean number;
- **unchecked** when the cap leaves no room for a single check (``cap < factor``).

**Tolerance, in the task's units and above the noise.** The gain ``v(2f) - v(f)`` (an error's drop
counts as a gain) is compared against ``max(task tolerance, k * sqrt(se(f)^2 + se(2f)^2))``
(:func:`effective_tolerance`): the task's :attr:`~selfstudy.tasks.base.Task.budget_tolerance` (one
accuracy point, one degree, 0.005 AbsRel, one mIoU point) unless the spec gives one, and ``k`` (default
:data:`NOISE_K` = 1) standard errors of the difference of two independent validation scores (each
``se`` is the score's standard error over the validation images, ``<primary>_se`` in the cell's
metrics). The two scores share their images, so the true noise of the gain is smaller: the rule errs
towards calling a cell converged on noise, never towards doubling on it. A result without a standard
error (from before they were recorded) is compared against the task's tolerance alone.

**What a rerun reuses.** Every attempt is a cell of its own (a ``check`` cell with a stable id, the
cell's id in ``check_of`` and its factor in ``budget_factor``), so a study rerun runs only the
attempts still missing, and a decision is always recomputed from the stored attempts. A doubled
budget **restarts training** from the cell's initialisation: the learning rate decays linearly over the
planned steps, so the weights at step ``s`` of a plan of ``S`` steps are not those at step ``s`` of a
plan of ``2S`` and no checkpoint of the shorter run can be resumed into the longer one.

This module is pure: :func:`decide` works on numbers, :func:`resolve_rows` on the rows of the results
database (it gives every checked downstream row the numbers of the attempt that counts and the flags
the report reads, see its docstring).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from selfstudy.core.constants import BUDGET_CAP, BUDGET_MODES, BUDGET_NOISE_K
from selfstudy.study.spec import check_cell, checks_on, is_checked
from selfstudy.tasks import get_task, parse_spec
from selfstudy.train.budget import Budget

#: Standard errors of the gain a budget check must exceed to count (see the module doc).
NOISE_K = BUDGET_NOISE_K
#: Default doubling factor and cap (the largest budget multiple ``auto`` runs).
DEFAULT_FACTOR = 2.0
DEFAULT_CAP = BUDGET_CAP
#: What a cell's budget is, after :func:`decide`.
STATUSES = ("converged", "run", "not_converged", "unchecked")
#: Budget checks of a study: ``auto`` (doubling up to the cap) or ``off``.
MODES = BUDGET_MODES


@dataclass(frozen=True)
class Attempt:
    """One run of a cell at ``factor`` times its budget: its validation score ``val`` and that score's
    standard error ``se`` (None or NaN: unknown); ``cell_id`` names the row that holds it."""

    factor: float
    val: float
    se: float | None = None
    cell_id: str = ""


@dataclass(frozen=True)
class Comparison:
    """One doubling: the attempt at ``factor_to`` against the one at ``factor_from``."""

    factor_from: float
    factor_to: float
    gain: float
    tolerance: float

    @property
    def gained(self) -> bool:
        return self.gain > self.tolerance


@dataclass(frozen=True)
class Decision:
    """What :func:`decide` found. ``counted``: the factor of the attempt whose numbers count;
    ``next_factor``: the attempt to run next (status ``run``); ``comparisons``: every doubling
    compared, in order; ``cap``: the cap it was decided under."""

    status: str
    counted: float
    next_factor: float | None = None
    comparisons: tuple[Comparison, ...] = field(default_factory=tuple)
    cap: float = DEFAULT_CAP

    @property
    def not_converged_within_cap(self) -> bool:
        return self.status == "not_converged"

    @property
    def gain(self) -> float | None:
        """The gain of the last doubling compared (None: none compared)."""
        return self.comparisons[-1].gain if self.comparisons else None

    @property
    def tolerance(self) -> float | None:
        return self.comparisons[-1].tolerance if self.comparisons else None


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def effective_tolerance(tolerance: float, se_a: float | None = None, se_b: float | None = None,
                        k: float = NOISE_K) -> float:
    """``max(tolerance, k * sqrt(se_a^2 + se_b^2))``: the gain of a budget check that counts, never below
    the noise of the difference of the two scores. Unknown (None, NaN) standard errors count as 0."""
    var = sum(float(s) ** 2 for s in (se_a, se_b) if _finite(s))
    return max(float(tolerance), float(k) * math.sqrt(var))


def doublings(factor: float = DEFAULT_FACTOR, cap: float = DEFAULT_CAP) -> list[float]:
    """The budget multiples ``auto`` may run: ``factor, factor**2, ...`` up to ``cap`` (1 excluded)."""
    out, f = [], float(factor)
    while f <= float(cap) * (1 + 1e-9):
        out.append(f)
        f *= factor
    return out


def decide(attempts: Iterable[Attempt], higher_is_better: bool, tolerance: float, *,
           factor: float = DEFAULT_FACTOR, cap: float = DEFAULT_CAP, k: float = NOISE_K) -> Decision:
    """The budget status of one cell from its attempts (see the module doc).

    ``attempts`` must hold the cell itself (factor 1); others at factors outside ``1, factor,
    factor**2, ...`` are ignored. An attempt whose ``val`` is not finite (a diverged run) cannot be
    compared: the chain stops before it, as if it were missing, except that it is never run again, so
    the cell is ``not_converged`` at the attempt before it.
    """
    if not (_finite(factor) and factor > 1):
        raise ValueError(f"the budget factor must be a number > 1, got {factor!r}")
    by_factor: dict[float, Attempt] = {}
    for a in attempts:
        by_factor[_key(a.factor)] = a
    if _key(1.0) not in by_factor:
        raise ValueError("the attempts must include the cell itself (factor 1)")
    sign = 1.0 if higher_is_better else -1.0
    f, comps = 1.0, []
    while True:
        here, nxt = by_factor[_key(f)], by_factor.get(_key(f * factor))
        if f * factor > cap * (1 + 1e-9):
            status = "unchecked" if f == 1.0 else "not_converged"
            return Decision(status, f, None, tuple(comps), cap)
        if nxt is None:
            return Decision("run", f, f * factor, tuple(comps), cap)
        if not (_finite(here.val) and _finite(nxt.val)):
            return Decision("not_converged", f, None, tuple(comps), cap)
        c = Comparison(f, f * factor, sign * (float(nxt.val) - float(here.val)),
                       effective_tolerance(tolerance, here.se, nxt.se, k))
        comps.append(c)
        if not c.gained:
            return Decision("converged", f, None, tuple(comps), cap)
        f *= factor


def _key(f: float) -> float:
    return round(float(f), 6)


# --- rows of the results database ---------------------------------------------------------------

#: Keys of a downstream row that take the value of the attempt that counts.
COUNTED_KEYS = ("val", "test", "val_last", "test_last", "still_improving", "steps", "seconds", "metrics",
                "result")


def task_tolerance(task: str, tolerance: float | Mapping[str, float] | None = None) -> float:
    """The budget-check tolerance of ``task`` (a task spec string): ``tolerance`` when it is a number,
    ``tolerance[name]`` when it is a mapping that names the task (its spec or its registry name), else
    the task's own :attr:`~selfstudy.tasks.base.Task.budget_tolerance`."""
    if _finite(tolerance):
        return float(tolerance)
    if isinstance(tolerance, Mapping):
        for key in (task, parse_spec(task)[0]):
            if _finite(tolerance.get(key)):
                return float(tolerance[key])
    return float(get_task(task).budget_tolerance)


def val_se(row: Mapping) -> float | None:
    """The standard error of a row's validation score (``metrics["val/<metric>_se"]``), or None."""
    metrics = row.get("metrics") or (row.get("result") or {}).get("metrics") or {}
    se = metrics.get(f"val/{row.get('metric')}_se")
    return float(se) if _finite(se) else None


def attempt_of(row: Mapping) -> Attempt:
    """The :class:`Attempt` of a downstream (factor 1) or check row."""
    cfg = row.get("config") or {}
    f = row.get("budget_factor") or cfg.get("budget_factor") or 1.0
    val = row.get("val")
    return Attempt(float(f), float(val) if _finite(val) else float("nan"), val_se(row), str(row.get("cell_id")))


def chains(rows: Iterable[Mapping], checks: Iterable[Mapping]) -> dict[str, list[Mapping]]:
    """downstream cell id -> [its row, then its check rows by factor], for every row that has checks."""
    by_id = {r.get("cell_id"): r for r in rows}
    out: dict[str, list[Mapping]] = {}
    for c in checks:
        of = c.get("check_of") or (c.get("config") or {}).get("check_of")
        if of in by_id:
            out.setdefault(of, [by_id[of]]).append(c)
    for v in out.values():
        v[1:] = sorted(v[1:], key=lambda r: attempt_of(r).factor)
    return out


def decide_row(row: Mapping, checks: Sequence[Mapping], settings: Mapping[str, Any]) -> Decision:
    """:func:`decide` for one downstream row and its check rows, with the spec's ``budget_check``
    ``settings`` (factor, cap, tolerance, noise_k; defaults for those missing)."""
    return decide([attempt_of(r) for r in (row, *checks)], bool(row.get("higher_is_better", True)),
                  task_tolerance(str(row.get("task")), settings.get("tolerance")),
                  factor=float(settings.get("factor", DEFAULT_FACTOR)),
                  cap=float(settings.get("cap", DEFAULT_CAP)), k=float(settings.get("noise_k", NOISE_K)))


def resolve_rows(rows: Iterable[Mapping], checks: Iterable[Mapping],
                 settings: Mapping[str, Any] | None = None) -> tuple[list[dict], list[dict]]:
    """The downstream rows with the attempt that counts, and the table of every doubling compared.

    Every downstream row that has check rows (``config["check_of"]`` naming it) gets:

    - ``budget_status``: ``converged``, ``run`` (an attempt still missing: the study is not finished),
      ``not_converged`` or ``unchecked``;
    - ``not_converged_within_cap``: True when it hit the cap still gaining (the flag the report reads;
      such a row is also ``under_budget``, so today's report flags it with its dagger);
    - ``under_budget``: True for ``run`` and ``not_converged``;
    - ``budget_factor``: the budget multiple of the attempt that counts, ``counted_cell_id`` its row;
    - ``budget_attempts``: ``[{cell_id, factor, val, test, val_se, steps}]`` of every attempt;
    - the counted attempt's :data:`COUNTED_KEYS` (val, test, steps, ...) in place of its own.

    Rows without checks are returned unchanged (copies). The table has one dict per comparison:
    dataset, backbone, task, method, protocol, n_labels, seed, metric, higher_is_better, cell_id (the
    downstream cell's), factor (of the
    larger attempt over the smaller), val, val_check, test, test_check, gain, tolerance (the effective
    one), steps, steps_check, under_budget (it gained more than the tolerance), status and counted (the
    cell's: its decision and the budget multiple whose numbers count).
    """
    settings = dict(settings or {})
    rows = [dict(r) for r in rows]
    checks = list(checks)
    grouped = chains(rows, checks)
    table = []
    for r in rows:
        chain = grouped.get(r.get("cell_id"))
        if not chain:
            continue
        d = decide_row(r, chain[1:], settings)
        by_factor = {_key(attempt_of(a).factor): a for a in chain}
        counted = by_factor[_key(d.counted)]
        r["budget_attempts"] = [{"cell_id": a.get("cell_id"), "factor": attempt_of(a).factor, "val": a.get("val"),
                                 "test": a.get("test"), "val_se": val_se(a), "steps": a.get("steps")}
                                for a in chain]
        for c in d.comparisons:
            lo, hi = by_factor[_key(c.factor_from)], by_factor[_key(c.factor_to)]
            table.append({k: r.get(k) for k in ("dataset", "backbone", "task", "method", "protocol",
                                                "n_labels", "seed", "metric", "higher_is_better")}
                         | {"cell_id": r.get("cell_id"), "factor": c.factor_to / c.factor_from, "factor_from": c.factor_from,
                            "factor_to": c.factor_to, "val": lo.get("val"), "val_check": hi.get("val"),
                            "test": lo.get("test"), "test_check": hi.get("test"), "gain": c.gain,
                            "tolerance": c.tolerance, "steps": lo.get("steps"), "steps_check": hi.get("steps"),
                            "under_budget": c.gained, "status": d.status, "counted": d.counted})
        if counted is not r:
            for k in COUNTED_KEYS:
                if k in counted:
                    r[k] = counted[k]
        r["budget_status"] = d.status
        r["not_converged_within_cap"] = d.not_converged_within_cap
        r["under_budget"] = d.status in ("run", "not_converged")
        r["budget_factor"] = d.counted
        r["counted_cell_id"] = counted.get("cell_id")
        r["budget_cap"] = d.cap
    table.sort(key=lambda t: (str(t["dataset"]), str(t["backbone"]), str(t["task"]), str(t["method"]),
                              t["n_labels"] or 0, t["seed"] or 0, str(t["cell_id"]), t["factor_to"]))
    return rows, table


def decision_record(row: Mapping, checks: Sequence[Mapping], settings: Mapping[str, Any]) -> dict:
    """What the results database keeps of one cell's decision (:meth:`ResultsDB.record_budget`)."""
    d = decide_row(row, checks, settings)
    by_factor = {_key(attempt_of(a).factor): a for a in (row, *checks)}
    return {"status": d.status, "counted_id": by_factor[_key(d.counted)].get("cell_id"),
            "counted_factor": d.counted, "next_factor": d.next_factor, "cap": d.cap, "gain": d.gain,
            "tolerance": d.tolerance,
            "attempts": [{"cell_id": a.get("cell_id"), "factor": attempt_of(a).factor, "val": a.get("val"),
                          "val_se": val_se(a)} for a in (row, *checks)]}


# --- a study's attempts (the runner's phase that schedules check cells) ---------------------------


def _checked_rows(spec, plan, db) -> tuple[list, dict[str, Mapping], dict[str, list[Mapping]]]:
    """``(checked downstream cells of the plan, their done rows by id, done check rows by check_of)``."""
    cells = [c for c in plan.downstream if is_checked(c, spec.budget_check)]
    rows = {r["cell_id"]: r for r in db.rows(status="done", kind="downstream", cell_ids=[c.id for c in cells])}
    checks: dict[str, list[Mapping]] = {}
    for r in db.rows(status="done", kind="check", cell_ids=[c.id for c in plan.checks]):
        checks.setdefault(r.get("check_of") or (r.get("config") or {}).get("check_of"), []).append(r)
    return cells, rows, checks


def next_attempts(spec, plan, db) -> list:
    """The check cells ``budget: auto`` asks for next and the plan does not hold yet: for every checked
    finetune cell whose finished attempts end in a gain above the tolerance with room under the cap,
    the cell at the next doubling (:func:`selfstudy.study.spec.check_cell`). Cells whose attempts are
    still missing or failed ask for nothing new (their cells are in the plan already). Empty unless the
    spec's ``budget_check.mode`` is ``auto``."""
    settings = spec.budget_check
    if not checks_on(settings) or settings.get("mode", "auto") != "auto":
        return []
    known = {c.id for c in plan.all}
    cells, rows, checks = _checked_rows(spec, plan, db)
    out = []
    for c in cells:
        if c.id not in rows:
            continue
        d = decide_row(rows[c.id], checks.get(c.id, []), settings)
        if d.status == "run":
            nxt = check_cell(c, d.next_factor)
            if nxt.id not in known:
                out.append(nxt)
                known.add(nxt.id)
    return out


def record_decisions(spec, plan, db) -> int:
    """Store the decision of every checked finetune cell with finished attempts in the results database
    (:meth:`~selfstudy.study.db.ResultsDB.record_budget`): which attempt counts, and why. Returns how
    many cells it recorded."""
    if not checks_on(spec.budget_check):
        return 0
    cells, rows, checks = _checked_rows(spec, plan, db)
    n = 0
    for c in cells:
        if c.id in rows and checks.get(c.id):
            db.record_budget(c.id, decision_record(rows[c.id], sorted(checks[c.id], key=lambda r: attempt_of(r).factor),
                                                   spec.budget_check))
            n += 1
    return n


# --- plans in samples seen ------------------------------------------------------------------------

#: Label count from which the original protocol trains 600 rounds (800 for ResNet50) instead of 200.
ORIGINAL_LARGE_N = 20_000


def original_samples(n: int, backbone: str = "resnet9", dense: bool = False) -> int:
    """Samples the original protocol finetunes on ``n`` labels for (docs/PAPER.md §5.2-5.3): 200 rounds
    of 10k (tiled) samples below 20k labels (2M), 600 rounds of 50k-image blocks from 20k (30M), 800
    for ResNet50 (40M); dense tasks: 800 rounds of 10k-image blocks (8M) at every label count."""
    if dense:
        return 800 * 10_000
    if n < ORIGINAL_LARGE_N:
        return 200 * 10_000
    return (800 if backbone.startswith("resnet50") else 600) * 50_000


def _count(x: float) -> str:
    for div, unit in ((1e6, "M"), (1e3, "k")):
        if x >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:g}"


def budget_lines(plan) -> list[str]:
    """The finetune budgets of a plan as samples seen (planned steps x batch size) per label count, one
    line per distinct (backbone, budget), beside the original protocol's samples (:func:`original_samples`);
    ``(cap)`` marks a count whose plan ``max_steps`` cut, ``(below the original)`` one whose plan is
    smaller than the original's. Then one line on the budget checks (``budget: auto``)."""
    groups: dict[tuple, dict] = {}
    for c in plan.downstream:
        if c.protocol != "finetune":
            continue
        key = (c.backbone, json_key(c.config["budget"]))
        g = groups.setdefault(key, {"budget": Budget.from_overrides(dict(c.config["budget"])), "ns": set(),
                                    "dense": get_task(c.task).dense})
        g["ns"].add(int(c.n_labels))
    lines = []
    for (backbone, _), g in sorted(groups.items(), key=lambda kv: kv[0][0]):
        b: Budget = g["budget"]
        parts = []
        for n in sorted(g["ns"]):
            steps = b.planned_steps(n)
            samples = steps * b.batch_size
            tags = []
            if steps == b.max_steps and math.ceil(b.epochs * n / b.batch_size) > b.max_steps:
                tags.append("cap")
            if samples < original_samples(n, backbone, g["dense"]):
                tags.append(f"below the original {_count(original_samples(n, backbone, g['dense']))}")
            parts.append(f"n={n} {_count(samples)}" + (f" ({', '.join(tags)})" if tags else ""))
        grid = ""
        if b.lr_grid or b.weight_decay_grid:
            k = len(b.lr_grid or (b.lr,)) * len(b.weight_decay_grid or (b.weight_decay,))
            grid = (f"; each cell trains {k} recipes (lr x weight-decay grid) and keeps the best on "
                    f"validation")
        lines.append(f"finetune budget, {backbone}: samples seen per label count (planned steps x batch "
                     f"{b.batch_size}; early stopping may end a run sooner): " + ", ".join(parts) + grid)
    checks = [c for c in plan.checks]
    if checks:
        f = sorted({c.config.get("budget_factor") for c in checks})
        lines.append(f"budget checks: {len(checks)} cell(s) re-run at " + "/".join(f"x{x:g}" for x in f)
                     + " their budget; with budget: auto each one that still gains doubles again up to the cap")
    return lines


def json_key(d: Mapping) -> str:
    return json.dumps(d, sort_keys=True, default=str)
