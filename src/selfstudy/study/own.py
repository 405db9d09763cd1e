"""The practitioner's answer: how many labels does self-supervised pretraining save on *my* images?

``selfstudy study run own --data DIR`` runs the packaged ``own`` preset on a folder that
``selfstudy data import`` wrote: label counts chosen from its labeled training split (``labels: auto``,
log-spaced up to all of it), 3 seeds, SimCLR and VICReg pretrained on its pool (its unlabeled images
and its training images) at settings that learn at this scale (docs/RESULTS.md §1), scratch, and a
weights file's arm when the spec names one. Its summary and report open with :func:`headline`:

    at 102 labels, simclr reaches what scratch would need about 160 labels for [120, 230]

read at the largest label count each method was measured at (what the person has labeled). Inside the
measured range the scratch curve is the isotonic fit of the study's utility analysis; where the method
beats scratch at every measured count, scratch's label count is projected by the power-law fit of
:mod:`selfstudy.study.utility` (``method="powerlaw"``) and the sentence says it is **extrapolated**,
with the fit's back-test error. Only past the measured range, though: where the fit reaches the
method's mean at or below scratch's largest measured count (the measured means say scratch never got
there, the smoothed fit says it did), nothing is projected and the sentence gives the measured bound
of the utility table (``utility ≥ N_max/n - 1`` with Δ), says where the fit lands, and at the largest
count (bound 0) that there is no evidence of a label saving. The utility table below it gives U with
intervals at every count.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable, Mapping

import numpy as np

from selfstudy.core.constants import SCRATCH
from selfstudy.errors import UserError
import selfstudy.study.arms as arms
import selfstudy.study.utility as utility
from selfstudy.study.analysis import row_trivial
from selfstudy.study.imported import read_imported

#: The preset this module answers for.
PRESET = "own"


def headline(rows: Iterable[Mapping], spec: Mapping[str, Any] | None, *, utility_method: str = "isotonic",
             bootstrap: int = 1000, ci: float = 0.95, seed: int = 0) -> list[str]:
    """The lines that open the summary of a study on imported data: the dataset with its class counts,
    then one plain sentence per (backbone, task, method) at the largest label count measured (see the
    module docstring). ``[]`` for a study on rendered data."""
    path = ((spec or {}).get("datasets") or {}).get("path")
    if not path:
        return []
    try:
        lines = read_imported(path, "report").lines()
    except UserError as e:
        lines = [f"dataset at {path}: {e}"]
    # Against the spec's utility.baseline, as the report's utility table below (runner.write_report
    # passes the same baseline to the analysis).
    return answer_lines(rows, arms.baseline_of(spec), utility_method=utility_method, bootstrap=bootstrap,
                        ci=ci, seed=seed) + [""] + lines


def answer_lines(rows: Iterable[Mapping], baseline: str = SCRATCH, *, utility_method: str = "isotonic",
                 bootstrap: int = 1000, ci: float = 0.95, seed: int = 0) -> list[str]:
    """One sentence per (dataset, backbone, task, method) of the finetuned arms in ``rows``, against the
    ``baseline`` arm (``scratch`` by default; any arm of the study, e.g. ``weights:imagenet``)."""
    groups: dict[tuple, dict[str, dict[int, dict[int, float]]]] = defaultdict(lambda: defaultdict(dict))
    hib: dict[tuple, bool] = {}
    trivials: dict[tuple, list[float]] = defaultdict(list)
    for r in rows:
        if r.get("protocol") != "finetune" or r.get("test") is None or not _finite(r.get("test")):
            continue
        key = (str(r["dataset"]), str(r["backbone"]), str(r["task"]))
        groups[key][str(r["method"])].setdefault(int(r["n_labels"]), {})[int(r.get("seed") or 0)] = float(r["test"])
        hib[key] = bool(r.get("higher_is_better", True))
        t = row_trivial(r)
        if t is not None:
            trivials[key].append(t)
    out = []
    for key in sorted(groups):
        arms_ = groups[key]
        dataset, backbone, task = key
        where = f"{dataset} · {task} · {backbone}"
        if baseline not in arms_:
            out.append(f"{where}: no finished {baseline} finetune cells yet: no answer")
            continue
        others = [m for m in sorted(arms_) if m != baseline and not (baseline != SCRATCH and m == SCRATCH)]
        if not others:
            out.append(f"{where}: only {baseline} finished: no method to compare with it yet")
            continue
        seeds = sorted({s for m in [baseline, *others] for v in arms_[m].values() for s in v})
        out.append(f"{where} ({len(seeds)} seed{'s' if len(seeds) != 1 else ''}, {ci:.0%} intervals):")
        for m in others:
            trivial = float(np.median(trivials[key])) if trivials[key] else None
            out.append("  " + sentence(arms_[baseline], arms_[m], m, baseline, hib[key],
                                       utility_method=utility_method, bootstrap=bootstrap, ci=ci, seed=seed,
                                       trivial=trivial))
    return out


def sentence(base: Mapping[int, Mapping[int, float]], arm: Mapping[int, Mapping[int, float]], method: str,
             baseline: str = SCRATCH, higher_is_better: bool = True, *, utility_method: str = "isotonic",
             bootstrap: int = 1000, ci: float = 0.95, seed: int = 0, trivial: float | None = None) -> str:
    """The plain answer for ``method`` against ``baseline`` at the largest label count ``arm`` was
    measured at. ``base``/``arm``: label count -> {seed: primary metric}; ``trivial``: the task's
    trivial score (the signal guard of :func:`selfstudy.study.utility.utility_curve`), as the report's
    analysis reads it from the rows."""
    seeds = sorted({s for v in list(base.values()) + list(arm.values()) for s in v})
    b = {n: [v.get(s, math.nan) for s in seeds] for n, v in base.items()}
    a = {n: [v.get(s, math.nan) for s in seeds] for n, v in arm.items()}
    n = max(a)
    try:
        point = _point_at(b, a, n, higher_is_better, utility_method, bootstrap, ci, seed, trivial)
    except UserError as e:
        return f"at {n} labels, {method}: no utility ({e})"
    n_max, n_min = max(b), min(b)
    if point.kind == "not_measurable":
        return f"at {n} labels, {method}: not measurable ({getattr(point, 'reason', '') or 'no signal'})"
    if point.kind == "upper":
        return (f"at {n} labels, {method} does no better than {baseline} with {n_min} labels, the fewest "
                f"measured (utility ≤ {point.value:.2f}): pretraining does not help here")
    if point.kind == "lower":
        proj = _projection(b, a, n, higher_is_better, bootstrap, ci, seed, trivial)
        if proj is None:
            return (f"at {n} labels, {method} beats {baseline} at every measured count: {baseline} would need "
                    f"more than {n_max} labels (utility ≥ {point.value:.2f}); beyond the measured range a "
                    f"projection needs the power-law fit of {baseline} (3+ label counts; "
                    f"`selfstudy report DIR --utility powerlaw`)")
        if not proj.n_scratch_equiv > n_max:
            return _inside(point, proj, n, method, baseline, n_min, n_max, higher_is_better)
        err = getattr(proj, "backtest_error", None)
        if err is not None and _finite(err):
            back = f", back-test error {abs(err):.3g}" + (
                ": not informative" if "not_informative" in getattr(proj, "flags", ()) else "")
        else:
            back = f", not back-tested: that needs 4 or more {baseline} label counts"
        text = (f"at {n} labels, {method} reaches what {baseline} would need about {_count(proj.n_scratch_equiv)} "
                f"labels for {_k_interval(proj)}; beyond the measured range ({n_max} labels), projected by a "
                f"power-law fit of {baseline} (extrapolated{back})")
        return text + _verdict(proj, method, baseline)
    text = (f"at {n} labels, {method} reaches what {baseline} would need about {_count(point.n_scratch_equiv)} "
            f"labels for {_k_interval(point)} (utility {point})")
    return text + _verdict(point, method, baseline)


def _inside(point, proj, n: int, method: str, baseline: str, n_min: int, n_max: int,
            higher_is_better: bool = True) -> str:
    """The answer where ``method``'s mean beats every ``baseline`` mean but the power-law fit of the
    baseline reaches that mean at or below ``n_max``, inside the measured range: nothing is projected
    (the measurements say the baseline never got there; the fit, smoothing them, says it did), so the
    sentence gives the measured reading, the utility table's bound ``U >= n_max/n - 1`` with Δ, and says
    where the fit lands. At ``n == n_max`` that bound is 0: no evidence of a label saving."""
    delta = ""
    if getattr(point, "delta", None) is not None and _finite(point.delta):
        f = (lambda x: f"{x:+.3f}") if abs(point.delta) < 5 else (lambda x: f"{x:+.1f}")
        delta = f", Δ {f(point.delta)}"
        if point.delta_ci_low is not None:
            delta += f" [{f(point.delta_ci_low)}, {f(point.delta_ci_high)}]"
    head = f"at {n} labels, {method}'s mean beats {baseline}'s at every measured count"
    fit = (f"a power-law fit of {baseline} reaches that mean at about {_count(proj.n_scratch_equiv)} labels, "
           f"inside the measured range ({n_min}-{n_max} labels), not beyond it")
    if point.value > 1e-9:  # the arm stopped short of the baseline's largest count: a measured saving
        return (f"{head}: {baseline} would need more than {n_max} labels (utility ≥ {point.value:.2f}{delta}); "
                f"{fit}, so nothing is projected")
    text = f"{head} (utility ≥ {point.value:.2f}{delta}), yet {fit}: no evidence that pretraining saves labels here"
    lo, hi = point.delta_ci_low, point.delta_ci_high
    if lo is not None and hi is not None and (lo > 0 if higher_is_better else hi < 0):
        text += f", although its score at {n} labels beats {baseline}'s beyond seed noise (Δ)"
    return text


def _verdict(point, method: str, baseline: str) -> str:
    """What the utility's interval says, for measured and projected points alike: worse than the
    baseline, not distinguishable from no gain (the interval reaches 0), or no gain; "" for a gain."""
    if point.has_interval and point.ci_high < 0:
        return f": pretraining does not help here, {method} is worse than {baseline}"
    if point.has_interval and point.ci_low <= 0:
        return f": not distinguishable from no gain over {baseline}"
    if point.value <= 0:
        return ": pretraining does not help here"
    return ""


def _point_at(b, a, n, hib, method, bootstrap, ci, seed, trivial=None):
    points = utility.utility_curve(b, a, hib, method=method, bootstrap=bootstrap, seed=seed, ci=ci,
                                   trivial=trivial)
    return next(p for p in points if p.n == n)


def _projection(b, a, n, hib, bootstrap, ci, seed, trivial=None):
    """The power-law point at ``n`` when the fit extrapolates there (None where the fit is missing from
    this version of :mod:`selfstudy.study.utility`, needs more counts, or does not reach the level)."""
    if "powerlaw" not in utility.METHODS or len(b) < 3:
        return None
    try:
        p = _point_at(b, {n: a[n]}, n, hib, "powerlaw", min(bootstrap, getattr(utility, "POWERLAW_RESAMPLES",
                                                                                 200)), ci, seed, trivial)
    except (UserError, StopIteration, RuntimeError, ValueError):
        return None
    return p if p.kind == "extrapolated" and _finite(p.n_scratch_equiv) else None


def _k_interval(p) -> str:
    """The interval of the equivalent label count, ``n (1 + U)`` at U's interval ends."""
    if not p.has_interval:
        return "[no interval: one seed]"
    lo = ("≤" if p.ci_low_is_bound else "") + _count(p.n * (1 + p.ci_low))
    hi = ("≥" if p.ci_high_is_bound else "") + _count(p.n * (1 + p.ci_high))
    return f"[{lo}, {hi}]"


def _count(x: float) -> str:
    if not _finite(x):
        return "∞" if x == math.inf else "?"
    x = max(0.0, float(x))
    return f"{x:,.0f}" if x >= 10 else f"{x:.1f}"


def _finite(x) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def report_meta(head: list[str], spec: Mapping[str, Any] | None) -> dict:
    """The answer and the class-count table as entries of the report's details (``meta``): ``answer``
    (the sentences), ``dataset`` and ``class counts (train/val/test)``. A report page that renders its
    own block for them calls :func:`headline` (text lines) and
    :meth:`selfstudy.study.imported.ImportedData.table` (rows: class, train, val, test)."""
    path = ((spec or {}).get("datasets") or {}).get("path")
    out = {"answer": " | ".join(line.strip() for line in head if line.strip().startswith("at "))}
    if path:
        try:
            data = read_imported(path, "report")
        except UserError:
            return out
        out["dataset"] = data.lines()[0]
        out["class counts (train/val/test)"] = ", ".join(f"{n} {tr}/{va}/{te}" for n, tr, va, te in
                                                         data.class_counts)
    return out
