"""A study's analysis: rows of finished cells in, utility points, findings and flags out. Pure: no I/O.

:func:`analyse` groups finished rows by (dataset, backbone, task) and computes each finetuned method's
utility and Δ (:func:`selfstudy.study.utility.utility_curve`, paired by seed, with each task's trivial
baseline as signal guard); :func:`summarise` turns the analysis into the JSON-able ``summary.json``
record (point records, the five findings of :mod:`selfstudy.study.findings`, flags) that the report
and ``summary.txt`` are rendered from (:mod:`selfstudy.study.report`).

A row's trivial baseline is its ``trivial`` key or ``metrics["test/trivial"]`` (what finetuning
records: the task's score of the trivial prediction on the test split).

Each utility is computed against a baseline arm: by default ``scratch``, or ``scratch-<method>`` (the
method's own architecture from scratch, :func:`selfstudy.study.transfer.baseline_arm`) when the study ran
it; with ``analyse(..., baseline=NAME)`` (a spec's ``utility: {baseline: NAME}``, e.g. a weights-file arm
``weights:imagenet``) against that arm wherever it was finetuned, and by the default rule, flagged
:data:`BASELINE_ABSENT` with the reason, where it was not. :func:`help_verdicts` says, per method, whether
pretraining helps against its baseline. A method whose primary baseline is its own architecture's
scratch arm (CMC against ``scratch-cmc``) also gets a second utility against the full-backbone
``scratch`` (``Group.secondary``; summary.json's ``secondary``, labelled "vs full scratch"), which the
findings and help verdicts leave out, as they leave out the own-architecture scratch arm's utility
against ``scratch`` (no pretraining: the architecture's effect alone, shown in the tables).

With two or more backbones, :func:`selfstudy.study.findings.compare_backbones` puts each (dataset,
task, method)'s utility per backbone side by side with the paired differences (summary.json's
``backbone_comparison``; F5 is its summary over independent units).
"""

from __future__ import annotations

import json
import math
import zlib
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Iterable, Mapping

import numpy as np

from selfstudy import __version__
from selfstudy.core.constants import BUDGET_CHECK_TOLERANCE, SCRATCH
from selfstudy.errors import UserError
from selfstudy.factors import Factors
from selfstudy.study import findings as findings_mod
from selfstudy.study import transfer as transfer_mod
from selfstudy.study.utility import METHODS, UtilityPoint, rank_correlation, utility_curve

_REQUIRED = ("dataset", "method", "backbone", "task", "protocol", "n_labels", "test")
#: Fewest points a rank correlation is reported on.
MIN_CORR_POINTS = 3
#: The keys of a point record, in order (``selfstudy utility --json`` and summary.json).
POINT_KEYS = ("task", "arm", "n", "kind", "value", "ci_low", "ci_high", "delta", "delta_ci_low", "delta_ci_high",
              "flags", "reason")
#: The flag of a point computed by the default rule because the requested baseline arm has no finished
#: finetune cells in its (dataset, backbone, task) (e.g. a weights arm runs on one backbone only).
BASELINE_ABSENT = "baseline_absent"
#: What :func:`help_verdicts` can say of a method against its baseline.
HELP_VERDICTS = ("helps", "does_not_help", "not_shown", "not_measurable")


@dataclass
class Arm:
    """One curve of a panel: a method under a protocol. ``values[n]`` holds one number per seed,
    ``by_seed[n]`` the same keyed by seed (the pairing key)."""

    method: str
    protocol: str
    values: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    by_seed: dict[int, dict] = field(default_factory=lambda: defaultdict(dict))
    improving: dict[int, list[dict]] = field(default_factory=lambda: defaultdict(list))

    def mean(self, n: int) -> float:
        return float(np.mean(self.values[n]))

    def add(self, n: int, seed, value: float) -> None:
        key = seed if seed is not None and seed not in self.by_seed[n] else f"#{len(self.values[n])}"
        self.values[n].append(value)
        self.by_seed[n][key] = value


@dataclass
class Group:
    """Everything measured on one (dataset, backbone, task)."""

    dataset: str
    backbone: str
    task: str
    metric: str
    higher_is_better: bool
    arms: dict[tuple[str, str], Arm] = field(default_factory=dict)
    utility: dict[str, list[UtilityPoint]] = field(default_factory=dict)
    flags: dict[tuple[str, int], list[dict]] = field(default_factory=dict)
    trivials: list[float] = field(default_factory=list)
    #: finetuned arm -> the arm its utility is computed against (the requested baseline, else
    #: study.transfer.baseline_arm)
    baselines: dict[str, str] = field(default_factory=dict)
    #: finetuned arm -> its utility against plain ``scratch`` where its primary baseline is its own
    #: architecture's scratch arm (cmc: primary against scratch-cmc, this against the full backbone)
    secondary: dict[str, list[UtilityPoint]] = field(default_factory=dict)

    @property
    def scratch(self) -> Arm | None:
        return self.arms.get((SCRATCH, "finetune"))

    @property
    def trivial(self) -> float | None:
        """The task's trivial baseline on this dataset's test split (median of what cells recorded)."""
        return float(np.median(self.trivials)) if self.trivials else None


@dataclass
class Analysis:
    groups: list[Group]
    skipped: list[tuple[dict, str]]
    improving: list[dict]
    methods: list[str]
    utility_method: str
    bootstrap: int
    ci: float
    findings: list[dict] = field(default_factory=list)
    #: the baseline asked for (``analyse(baseline=...)``); ``scratch`` is the default rule
    baseline: str = SCRATCH
    #: every backbone of the study's groups, in findings.backbone_key order
    backbones: list[str] = field(default_factory=list)
    #: findings.compare_backbones (empty with fewer than two backbones)
    backbone_comparison: list[dict] = field(default_factory=list)


def row_trivial(row: Mapping) -> float | None:
    """The trivial baseline a row recorded, or None."""
    v = row.get("trivial")
    if v is None:
        metrics = row.get("metrics")
        if isinstance(metrics, str):
            try:
                metrics = json.loads(metrics)
            except ValueError:
                metrics = None
        if isinstance(metrics, Mapping):
            v = metrics.get("test/trivial")
    return float(v) if _finite(v) else None


def needs_flag(row: Mapping) -> bool:
    """Whether a result is not a converged number (the report's dagger): its budget check is still
    gaining or did not converge within the cap (``under_budget``), or, for a cell without a budget
    check decision, its own validation curve was still improving when its plan ran out. A cell whose
    doubling showed no gain beyond the tolerance (``budget_status == "converged"``) is converged by that
    rule, the same for every arm, even if its own curve ended on a rise that the doubling shows was
    noise or the last of its gains."""
    if row.get("under_budget"):
        return True
    return bool(row.get("still_improving")) and row.get("budget_status") != "converged"


def analyse(rows: Iterable[dict], utility_method: str = "isotonic", bootstrap: int = 1000, seed: int = 0,
            ci: float = 0.95, baseline: str | None = None) -> Analysis:
    """Group finished rows by (dataset, backbone, task), compute each finetuned method's utility and
    test the findings.

    ``baseline``: the arm every utility is computed against (e.g. ``weights:imagenet``) in each group
    where it has finetune cells; there every other finetuned arm except the scratch arms gets a utility
    against it. In a group without it, and with ``None`` or ``scratch``, the default rule: ``scratch``,
    or ``scratch-<method>`` when the study ran it; points computed so under another requested baseline
    carry the flag :data:`BASELINE_ABSENT` and say why in their ``reason``.

    Rows that are not finished, lack a key the analysis needs, or have a non-finite result are set
    aside in ``Analysis.skipped`` with the reason, never silently dropped.
    """
    if utility_method not in METHODS:
        raise UserError(f"unknown utility method {utility_method!r}: allowed are {', '.join(METHODS)}")
    if baseline is not None and not (isinstance(baseline, str) and baseline):
        raise UserError(f"the utility baseline must be an arm name such as scratch or weights:imagenet, "
                        f"got {baseline!r}")
    requested = baseline or SCRATCH
    groups: dict[tuple[str, str, str], Group] = {}
    skipped: list[tuple[dict, str]] = []
    improving: list[dict] = []
    for row in rows:
        if not isinstance(row, Mapping):
            raise UserError(f"a study row must be a mapping of column names to values, got {type(row).__name__}")
        reason = _unusable(row)
        if reason:
            skipped.append((row, reason))
            continue
        key = (str(row["dataset"]), str(row["backbone"]), str(row["task"]))
        metric = str(row.get("metric") or "metric")
        hib = bool(row.get("higher_is_better", True))
        g = groups.setdefault(key, Group(*key, metric=metric, higher_is_better=hib))
        if (metric, hib) != (g.metric, g.higher_is_better):
            skipped.append((row, f"its metric {metric!r} differs from the {g.metric!r} of the other "
                                 f"cells of {'/'.join(key)}"))
            continue
        arm_key = (transfer_mod.arm_name(row), str(row["protocol"]))  # method@bits if transferred
        arm = g.arms.setdefault(arm_key, Arm(*arm_key))
        n = int(row["n_labels"])
        arm.add(n, row.get("seed"), float(row["test"]))
        t = row_trivial(row)
        if t is not None:
            g.trivials.append(t)
        if needs_flag(row):
            arm.improving[n].append(row)
            improving.append(row)

    ordered = [groups[k] for k in sorted(groups)]
    curves = []
    for g in ordered:
        scratch = g.scratch
        finetuned = {m for (m, p) in g.arms if p == "finetune"}
        chosen = requested != SCRATCH and requested in finetuned
        if scratch is None and not chosen:
            continue
        for (method, protocol), arm in sorted(g.arms.items()):
            if method == SCRATCH or protocol != "finetune":
                continue
            if chosen:
                # Against the requested arm: every other finetuned arm but the scratch ones (scratch,
                # scratch-<method>), as the practitioner's answer reads it (study.own.answer_lines).
                if method == requested or _is_scratch_arm(method):
                    continue
                base_name = requested
            else:
                # CMC against scratch on its own two-stream network when the study ran it (scratch-cmc).
                base_name = transfer_mod.baseline_arm(method, finetuned)
            base = g.arms[(base_name, "finetune")]
            g.baselines[method] = base_name
            curve_seed = (seed * 1_000_003 + zlib.crc32(f"{g.dataset}|{g.backbone}|{g.task}|{method}".encode()))
            if utility_method == "powerlaw" and len(base.values) < 3:
                raise UserError(f"--utility powerlaw needs {base_name} at 3 or more label counts; "
                                f"{g.dataset}/{g.backbone}/{g.task} has {len(base.values)}")
            points = utility_curve(dict(base.by_seed), dict(arm.by_seed), g.higher_is_better,
                                   method=utility_method, bootstrap=bootstrap, seed=curve_seed % 2**63, ci=ci,
                                   trivial=g.trivial)
            if requested != SCRATCH and not chosen:
                why = (f"no finished {requested} finetune cells on {g.dataset}/{g.backbone}/{g.task}: "
                       f"against {base_name} instead")
                points = [replace(p, flags=tuple(p.flags) + (BASELINE_ABSENT,),
                                  reason="; ".join(x for x in (p.reason, why) if x)) for p in points]
            g.utility[method] = points
            if (not chosen and base_name != SCRATCH and scratch is not None
                    and not (utility_method == "powerlaw" and len(scratch.values) < 3)):
                # The second row: against scratch on the full backbone (the "vs full scratch").
                g.secondary[method] = utility_curve(
                    dict(scratch.by_seed), dict(arm.by_seed), g.higher_is_better, method=utility_method,
                    bootstrap=bootstrap, seed=(curve_seed + 1) % 2**63, ci=ci, trivial=g.trivial)
            for p in points:
                # A utility inherits doubt from the pretrained cells at n and from the scratch cells
                # its n_s was read from.
                cells = list(arm.improving.get(p.n, []))
                for N in p.scratch_used:
                    cells += base.improving.get(N, [])
                if cells:
                    g.flags[(method, p.n)] = cells
            if _is_scratch_arm(method):
                continue  # scratch-cmc against scratch: the architecture's effect, no pretraining to test
            lin = g.arms.get((method, "linear"))
            curves.append(findings_mod.Curve(
                g.dataset, g.backbone, g.task, method, g.higher_is_better, dict(base.by_seed),
                dict(arm.by_seed), dict(lin.by_seed) if lin else {}, points, baseline=base_name))
    methods = sorted({m for g in ordered for (m, _) in g.arms if m != SCRATCH})
    backbones = sorted({g.backbone for g in ordered}, key=findings_mod.backbone_key)
    compared = findings_mod.compare_backbones(curves, ci=ci, bootstrap=bootstrap, seed=seed,
                                              method=utility_method) if len(backbones) >= 2 else []
    return Analysis(ordered, skipped, improving, methods, utility_method, bootstrap, ci,
                    findings_mod.findings(curves, ci=ci, seed=seed), baseline=requested, backbones=backbones,
                    backbone_comparison=compared)


def help_verdicts(analysis: Analysis) -> list[dict]:
    """Whether pretraining helps, per (dataset, backbone, task, method), against the arm its utility
    was computed against. Read over the measured points (values and bounds; not extrapolated or not
    measurable ones), each U and Δ as its interval, or as its number with one seed:

    - ``does_not_help``: at every measured label count U's and Δ's intervals are at or below 0 (a
      bound ``≤ x`` with x ≤ 0 counts as at or below 0, a bound ``≥ x`` never does; Δ in the metric's
      direction, a gain > 0);
    - ``helps``: at some count U's or Δ's interval is above 0 (two or more seeds; a bound ``≥ x`` has
      no interval, only its Δ can show it), U and Δ agreeing;
    - ``not_shown``: neither (every interval reaches 0 or below; with one seed, no interval can show it);
    - ``not_measurable``: no measured point.

    Each record: dataset, backbone, task, method, baseline, verdict (:data:`HELP_VERDICTS`),
    n_measured, sentence (plain words; "" for ``helps``)."""
    out = []
    for g in analysis.groups:
        for method, points in sorted(g.utility.items()):
            if _is_scratch_arm(method):
                continue  # no pretraining: scratch-cmc's row is the architecture's effect
            base = g.baselines.get(method, SCRATCH)
            pts = [p for p in points if p.kind in ("value", "lower", "upper")]
            where = f"{dataset_name(g.dataset)} · {g.task} · {g.backbone}"
            if not pts:
                verdict = "not_measurable"
                text = f"{where}: {method} against {base}: no measured utility (see the reasons in the table)"
            elif all(_u_high(p) <= 0 and _gain(p, g.higher_is_better)[1] <= 0 for p in pts):
                verdict = "does_not_help"
                text = (f"{where}: pretraining does not help: {method} is no better than {base} at any measured "
                        f"label count (every U and Δ {'interval ' if any(p.has_interval for p in pts) else ''}"
                        f"at or below 0)")
            elif any(p.n_seeds >= 2 and "inconsistent" not in p.flags and
                     (_u_low(p) > 0 or _gain(p, g.higher_is_better)[0] > 0) for p in pts):
                verdict, text = "helps", ""
            else:
                verdict = "not_shown"
                one = all(p.n_seeds < 2 for p in pts)
                text = (f"{where}: pretraining is not shown to help: {method} is not above {base} beyond seed "
                        f"noise at any measured label count" + (" (one seed: no intervals)" if one else ""))
            out.append({"dataset": g.dataset, "backbone": g.backbone, "task": g.task, "method": method,
                        "baseline": base, "verdict": verdict, "n_measured": len(pts), "sentence": text})
    return out


def help_text(verdicts: list[dict], baseline: str = SCRATCH) -> list[str]:
    """Plain lines from :func:`help_verdicts`: one overall sentence when no method helps anywhere, then
    one per method that does not (or is not shown to) help."""
    said = [v for v in verdicts if v["verdict"] in ("does_not_help", "not_shown")]
    lines = []
    measured = [v for v in verdicts if v["verdict"] != "not_measurable"]
    if measured and all(v["verdict"] == "does_not_help" for v in measured):
        lines.append(f"Pretraining does not help against {baseline} in this study: no method is above it at any "
                     f"measured label count.")
    elif measured and not any(v["verdict"] == "helps" for v in measured):
        lines.append(f"Pretraining is not shown to help against {baseline} in this study: no method is above it "
                     f"beyond seed noise at any measured label count.")
    return lines + [v["sentence"] for v in said]


def _is_scratch_arm(name: str) -> bool:
    method = transfer_mod.split_arm(name)[0]
    return method == SCRATCH or method.startswith(SCRATCH + "-")


def _u_high(p: UtilityPoint) -> float:
    """The upper end of U's interval (its number with one seed; +inf for a lower bound)."""
    if p.kind == "lower":
        return math.inf
    if p.kind == "upper":
        return p.value
    return p.ci_high if p.has_interval else p.value


def _u_low(p: UtilityPoint) -> float:
    """The lower end of U's interval (-inf without one: one seed, or a bound)."""
    return p.ci_low if p.kind == "value" and p.has_interval else -math.inf


def _gain(p: UtilityPoint, higher_is_better: bool) -> tuple[float, float]:
    """Δ's interval as a gain (pretrained better than its baseline > 0, whatever the metric's direction):
    ``(low, high)``; one seed: the number at both ends; no Δ (baseline not run at n): ``(-inf, -inf)``
    (it shows nothing either way)."""
    if p.delta is None:
        return -math.inf, -math.inf
    lo = p.delta_ci_low if p.delta_ci_low is not None else p.delta
    hi = p.delta_ci_high if p.delta_ci_high is not None else p.delta
    return (lo, hi) if higher_is_better else (-hi, -lo)


def point_record(p: UtilityPoint, task: str, arm: str, **extra) -> dict:
    """The record of one utility point: :data:`POINT_KEYS` first (None where there is no number), then
    ``extra`` and the point's other fields."""
    d = p.to_dict()
    rec = {"task": task, "arm": arm, "n": p.n, "kind": p.kind, "value": d["value"],
           "ci_low": _num(p.ci_low), "ci_high": _num(p.ci_high), "delta": _num(p.delta),
           "delta_ci_low": _num(p.delta_ci_low), "delta_ci_high": _num(p.delta_ci_high),
           "flags": list(p.flags), "reason": p.reason or None}
    rec.update(extra)
    rec.update({"text": str(p), "n_scratch_equiv": _num(p.n_scratch_equiv), "accuracy": _num(p.accuracy),
                "n_seeds": p.n_seeds, "ci_low_is_bound": p.ci_low_is_bound, "ci_high_is_bound": p.ci_high_is_bound,
                "frac_bound": p.frac_lower + p.frac_upper, "scratch_used": list(p.scratch_used),
                "backtest_error": _num(p.backtest_error), "note": p.note, "significant": p.significant})
    return rec


def summary_rows(analysis: Analysis) -> list[dict]:
    """One point record per (dataset, backbone, task, method, n), with ``dataset``, ``backbone``,
    ``metric``, ``method``, ``utility`` (the value) and ``still_improving`` added."""
    out = []
    for g in analysis.groups:
        for method, points in sorted(g.utility.items()):
            for p in points:
                flagged = (method, p.n) in g.flags
                rec = point_record(p, g.task, method, dataset=g.dataset, backbone=g.backbone, metric=g.metric,
                                   method=method, trivial=g.trivial, still_improving=flagged,
                                   baseline=g.baselines.get(method, SCRATCH))
                rec["utility"] = rec["value"]
                rec["text"] = str(p) + (" †" if flagged else "")
                out.append(rec)
    return out


#: How the report labels a utility against the full-backbone scratch beside an own-architecture one.
VS_FULL_SCRATCH = "vs full scratch"


def secondary_rows(analysis: Analysis) -> list[dict]:
    """The point records of every second utility (``Group.secondary``: a method against plain
    ``scratch`` where its primary baseline is its own architecture's scratch arm), as
    :func:`summary_rows` writes them, with ``baseline`` scratch and ``role`` :data:`VS_FULL_SCRATCH`;
    ``primary_baseline`` names the arm of its primary row."""
    out = []
    for g in analysis.groups:
        for method, points in sorted(g.secondary.items()):
            arm = g.arms[(method, "finetune")]
            for p in points:
                flagged = bool(arm.improving.get(p.n)) or any(g.scratch.improving.get(N) for N in p.scratch_used)
                rec = point_record(p, g.task, method, dataset=g.dataset, backbone=g.backbone, metric=g.metric,
                                   method=method, trivial=g.trivial, still_improving=flagged, baseline=SCRATCH,
                                   role=VS_FULL_SCRATCH, primary_baseline=g.baselines.get(method, SCRATCH))
                rec["utility"] = rec["value"]
                rec["text"] = str(p) + (" †" if flagged else "")
                out.append(rec)
    return out


def backbone_record(analysis: Analysis) -> dict | None:
    """summary.json's ``backbone_comparison``: None with fewer than two backbones, else ``{"backbones",
    "comparisons": findings.compare_backbones, "f5": {verdict, reason}, "reason"}`` (``reason``: why
    there is nothing to compare, or "")."""
    if len(analysis.backbones) < 2:
        return None
    f5 = next((f for f in analysis.findings if f["id"] == "F5"), None)
    comps = analysis.backbone_comparison
    return {"backbones": list(analysis.backbones), "comparisons": comps,
            "f5": {"verdict": f5["verdict"], "reason": f5["reason"]} if f5 else None,
            "reason": "" if comps else "no method has utility points on two backbones for the same dataset "
                                       "and task"}


def summarise(analysis: Analysis, checks: list[dict] | None = None) -> dict:
    """The JSON-able summary of a study (``summary.json``): the point records of every utility, the
    findings, the trivial baselines and the flags."""
    points = summary_rows(analysis)
    return json_safe({
        "selfstudy": __version__,
        "utility_method": analysis.utility_method,
        "baseline": analysis.baseline,
        "ci": analysis.ci,
        "bootstrap": analysis.bootstrap,
        "interval": "t-interval: U ± t(S-1)·se, se from a paired seed-level bootstrap; Δ on paired per-seed "
                    "differences; no interval with one seed",
        "points": points,
        "secondary": secondary_rows(analysis),
        "backbone_comparison": backbone_record(analysis),
        "help": help_verdicts(analysis),
        "findings": analysis.findings,
        "trivial": [{"dataset": g.dataset, "backbone": g.backbone, "task": g.task, "metric": g.metric,
                     "higher_is_better": g.higher_is_better, "trivial": g.trivial} for g in analysis.groups],
        "flags": {
            "still_improving_cells": [r.get("cell_id") for r in analysis.improving],
            "skipped": [{"cell_id": r.get("cell_id"), "reason": why} for r, why in analysis.skipped],
            "inconsistent": sum("inconsistent" in p["flags"] for p in points),
            "not_measurable": sum(p["kind"] == "not_measurable" for p in points),
            "one_seed": sum("one_seed" in p["flags"] for p in points),
            "extrapolated": sum(p["kind"] == "extrapolated" for p in points),
            BASELINE_ABSENT: sum(BASELINE_ABSENT in p["flags"] for p in points),
            "budget_checks_under_budget": sum(bool(t.get("under_budget")) for t in checks or []),
        },
    })


def json_safe(obj):
    """``obj`` with every non-finite float (an undefined τ, a NaN value) as None, tuples as lists and
    numpy scalars as Python numbers, so that it is strict JSON."""
    if isinstance(obj, Mapping):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(float(obj)) else None
    return obj


def apply_budget_checks(rows: Iterable[dict], checks: Iterable[dict],
                        tolerance: float = BUDGET_CHECK_TOLERANCE) -> tuple[list[dict], list[dict]]:
    """Pair every finished budget-check row (a finetune cell re-run at ``factor`` times its budget;
    ``config["check_of"]`` names the cell) with the row it re-ran, and mark that row ``under_budget``
    when the larger budget raised its validation metric by more than ``tolerance`` (in the metric's
    units and direction: a drop of an error counts as a gain). Such a row is flagged like a still
    improving one (:func:`analyse`): its number is not a converged one.

    Returns ``(rows, table)``: copies of ``rows`` (``under_budget`` True or False on every row that was
    checked, absent on the others),
    and one dict per check: dataset, backbone, task, method, protocol, n_labels, seed, metric,
    higher_is_better, factor, val, val_check, test, test_check, gain (validation, positive = better
    with more budget), steps, steps_check, under_budget. Checks whose cell is not among ``rows`` are
    left out."""
    rows = [dict(r) for r in rows]
    by_id = {r.get("cell_id"): r for r in rows}
    table = []
    for c in checks:
        cfg = c.get("config") or {}
        orig = by_id.get(cfg.get("check_of"))
        if orig is None or not (_finite(orig.get("val")) and _finite(c.get("val"))):
            continue
        sign = 1.0 if bool(orig.get("higher_is_better", True)) else -1.0
        gain = sign * (float(c["val"]) - float(orig["val"]))
        under = gain > float(tolerance)
        orig["under_budget"] = bool(orig.get("under_budget")) or under
        table.append({k: orig.get(k) for k in ("dataset", "backbone", "task", "method", "protocol",
                                               "n_labels", "seed", "metric", "higher_is_better")}
                     | {"factor": cfg.get("budget_factor"), "val": orig.get("val"), "val_check": c.get("val"),
                        "test": orig.get("test"), "test_check": c.get("test"), "gain": gain,
                        "steps": orig.get("steps"), "steps_check": c.get("steps"), "under_budget": under,
                        "tolerance": float(tolerance)})
    table.sort(key=lambda t: (str(t["dataset"]), str(t["backbone"]), str(t["task"]), str(t["method"]),
                              t["n_labels"] or 0, t["seed"] or 0))
    return rows, table


def linear_vs_finetune(analysis: Analysis) -> list[dict]:
    """Paired points: a pretrained method's linear-probe and finetuned means at the same n and data."""
    points = []
    for g in analysis.groups:
        for (method, protocol), lin in sorted(g.arms.items()):
            fine = g.arms.get((method, "finetune"))
            if method == SCRATCH or protocol != "linear" or fine is None:
                continue
            util = {p.n: p for p in g.utility.get(method, [])}
            for n in sorted(set(lin.values) & set(fine.values)):
                points.append({"dataset": g.dataset, "backbone": g.backbone, "task": g.task, "metric": g.metric,
                               "method": method, "n": n, "linear": lin.mean(n), "finetune": fine.mean(n),
                               "utility": util.get(n)})
    return points


def correlations(points: list[dict]) -> list[dict]:
    """Pooled Spearman/Kendall of linear probe vs finetuned result and vs utility, per task, pooled and
    per n (a secondary view: pooling mixes dataset difficulty into both axes; F3 is the test)."""
    out = []
    for task in sorted({p["task"] for p in points}):
        pts = [p for p in points if p["task"] == task]
        scopes = [("all", pts)] + [(f"n={short_n(n)}", [p for p in pts if p["n"] == n])
                                   for n in sorted({p["n"] for p in pts})]
        for scope, sel in scopes:
            r = rank_correlation([p["linear"] for p in sel], [p["finetune"] for p in sel])
            out.append({"task": task, "scope": scope, "against": "finetune", **r})
            vals = [p for p in sel if p["utility"] is not None and p["utility"].kind == "value"]
            r = rank_correlation([p["linear"] for p in vals], [p["utility"].value for p in vals])
            out.append({"task": task, "scope": scope, "against": "utility", **r})
    return out


# ------------------------------------------------------------------------------------------ helpers


def _unusable(row: dict) -> str:
    """Why a row cannot enter the analysis, or ''."""
    if row.get("kind", "downstream") != "downstream":
        return f"a {row.get('kind')} cell, not a downstream result"
    status = row.get("status", "done")
    if status != "done":
        return f"status is {status!r}, not 'done'"
    missing = [k for k in _REQUIRED if row.get(k) is None]
    if missing:
        return f"missing {', '.join(missing)}"
    n = row["n_labels"]
    if isinstance(n, float) and n.is_integer():
        n = int(n)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        return f"n_labels {n!r} is not a positive integer"
    if not _finite(row["test"]):
        return f"test result {row['test']!r} is not a finite number"
    return ""


def _finite(x) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _num(x):
    return None if x is None or not _finite(x) else float(x)


def dataset_name(d: str) -> str:
    try:
        f = Factors.parse(d)
    except UserError:
        return str(d)
    return f"{f.letters} ({f.bits})"


def short_n(n: int) -> str:
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    if n >= 1000 and n % 100 == 0:
        return f"{n / 1000:.1f}k"
    return str(n)
