"""The paper's five findings, tested on a study's results: pure functions, no I/O.

Each finding is a dict ``{"id", "claim", "verdict", "reason", "evidence": [dict], "summary": dict}``
with ``verdict`` one of :data:`VERDICTS`: *supported*, *contradicted*, *inconclusive* (the interval
spans the null, or there is no interval) or *not measured* (what the study lacks, in ``reason``).

They read :class:`Curve` records: one (dataset, backbone, task, method) with its scratch and pretrained
results by label count and seed (``{n: {seed: value}}``), optional linear-probe results, its utility
points and the metric's direction. Differences are taken "better minus worse" (an error is negated)
so that a positive number always means pretraining helped.

- **F1** utility is highest with few labels and falls as labels grow: per curve, the paired per-seed
  Δ(n) (pretrained minus scratch) is fitted against log n; the slope's t-interval over seeds, and over
  all curves the per-seed mean slope. Each curve's outcome as the paper names them: (a) pretraining
  helps at every measured count, (b) both meet at or after the scratch plateau, (c) they meet before
  scratch plateaus. **Plateau rule**: an arm has plateaued at the smallest count n_k from which its
  paired gain to the largest count is not above 0 (t-interval lower end <= 0); with one seed there is
  no plateau judgement. "Helps at n": Δ's t-interval is above 0; "meet": it is not.
- **F2** the best method depends on the task: Kendall τ between the methods' rankings (mean Δ over
  shared counts) of every two tasks on the same data and backbone; its interval a paired bootstrap
  over seeds. Supported when the interval of the mean τ lies below +0.5, contradicted above it.
- **F3** linear evaluation does not predict finetuning: within each (dataset, backbone, task, n), τ
  between the methods' linear-probe and finetuned means; the mean τ and a permutation test (finetuned
  values permuted within each group). Contradicted when p < 0.05 and the mean τ >= 0.5; supported
  when the mean τ < 0.5 and a perfect agreement would have been significant; else inconclusive.
- **F4** data difficulty changes utility: matched dataset pairs that differ in exactly one factor,
  ΔU (on minus off, mean over shared counts where both are values) with a t-interval over pairs per
  factor, and a least-squares main-effects fit ``U = μ + Σ β_f f`` per (backbone, task, method).
- **F5** model size changes utility: U of two backbones on the same (dataset, task, method, n).

:func:`compare_backbones` is F5 point by point, for the report's backbone section: the same pairs of
curves (:func:`backbone_pairs`) and the same ΔU, each with a paired interval and a one-line verdict.

Intervals of F4 and F5 are over independent units only: a (backbone, task, dataset pair), resp. a
(dataset, task), each averaged over its methods and label counts (which share scratch curves and seeds).

F4/F5 are supported when some interval excludes 0 and contradicted when every interval lies within
±:data:`EQUIVALENCE` (a quarter of a label doubling).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from selfstudy.errors import UserError
from selfstudy.factors import LETTERS, Factors
from selfstudy.study.utility import POWERLAW_RESAMPLES, _matrix, paired_resample, resampled_utility, t_interval

VERDICTS = ("supported", "contradicted", "inconclusive", "not measured")
#: |ΔU| below which a factor or backbone is taken to make no difference.
EQUIVALENCE = 0.25
PERMUTATIONS = 2000
#: An interval end within this of 0 is taken as 0 (a rounding error of identical arms, not an effect).
_TINY = 1e-9
RESAMPLES = 200
CLAIMS = {
    "F1": "utility is highest with few labels and falls as labels grow",
    "F2": "the best pretraining method depends on the downstream task",
    "F3": "linear evaluation does not predict finetuning performance",
    "F4": "data difficulty (texture, colour, viewpoint, lighting) changes utility",
    "F5": "model size (the backbone) changes utility",
}


@dataclass
class Curve:
    dataset: str
    backbone: str
    task: str
    method: str
    higher_is_better: bool
    scratch: dict  # {n: {seed: value}}
    pretrained: dict  # {n: {seed: value}}
    linear: dict = field(default_factory=dict)
    utility: list = field(default_factory=list)  # UtilityPoint
    baseline: str = "scratch"  # the arm ``scratch`` holds (scratch-cmc for CMC, a weights arm, ...)


def findings(curves: list[Curve], ci: float = 0.95, seed: int = 0) -> list[dict]:
    """All five findings, in order."""
    rng = np.random.default_rng(seed)
    return [f1(curves, ci), f2(curves, ci, rng), f3(curves, rng), f4(curves, ci), f5(curves, ci)]


def _finding(fid, verdict, reason, evidence=(), **summary) -> dict:
    assert verdict in VERDICTS
    return {"id": fid, "claim": CLAIMS[fid], "verdict": verdict, "reason": reason, "evidence": list(evidence),
            "summary": summary}


def _sign(c: Curve) -> float:
    return 1.0 if c.higher_is_better else -1.0


def _paired(c: Curve, ns) -> tuple[list, np.ndarray]:
    """Seeds run at every n of ``ns`` in both arms and the (S, len(ns)) better-is-positive Δ."""
    seeds = set.intersection(*(set(c.scratch[n]) & set(c.pretrained[n]) for n in ns))
    seeds = sorted(seeds, key=str)
    d = np.array([[_sign(c) * (c.pretrained[n][s] - c.scratch[n][s]) for n in ns] for s in seeds])
    return seeds, d.reshape(len(seeds), len(ns))


def _verdict_sign(lo, hi, claim_negative: bool) -> str:
    if lo is None:
        return "inconclusive"
    if hi < -_TINY:  # a zero-width interval a rounding error from 0 (identical arms) shows nothing
        return "supported" if claim_negative else "contradicted"
    if lo > _TINY:
        return "contradicted" if claim_negative else "supported"
    return "inconclusive"


# --------------------------------------------------------------------------------------------- F1


def plateau(values: dict, ns: list[int], ci: float = 0.95) -> int | None:
    """The plateau rule (module doc): smallest count from which the paired gain to the largest count is
    not above 0; None when the arm still gains at the last step or there is one seed only."""
    top = ns[-1]
    for n in ns[:-1]:
        common = sorted(set(values[n]) & set(values[top]), key=str)
        if len(common) < 2:
            return None
        _, lo, _ = t_interval([values[top][s] - values[n][s] for s in common], ci)
        if lo <= 0:
            return n
    return None


def outcome(c: Curve, ci: float = 0.95) -> tuple[str, str]:
    """The curve's outcome: ``("a"|"b"|"c"|"none"|"undetermined", why)``."""
    ns = sorted(set(c.scratch) & set(c.pretrained))
    if len(ns) < 2:
        return "undetermined", "fewer than two shared label counts"
    seeds, d = _paired(c, ns)
    if len(seeds) < 2:
        return "undetermined", "one seed: no interval for Δ, no plateau"
    helps = []
    for j in range(len(ns)):
        _, lo, _ = t_interval(d[:, j], ci)
        helps.append(lo > 0)
    if all(helps):
        return "a", "Δ above 0 at every measured label count"
    if not helps[0]:
        return "none", f"Δ is not above 0 at the smallest count ({ns[0]})"
    meet = ns[helps.index(False)]
    sign = _sign(c)
    s_vals = {n: {s: sign * v for s, v in c.scratch[n].items()} for n in ns}
    p_vals = {n: {s: sign * v for s, v in c.pretrained[n].items()} for n in ns}
    ps, pp = plateau(s_vals, ns, ci), plateau(p_vals, ns, ci)
    if ps is not None and meet >= ps:
        return "b", (f"they meet at {meet} labels, at or after scratch's plateau ({ps}); pretrained "
                     f"plateaus at {pp if pp is not None else 'none'}")
    return "c", (f"they meet at {meet} labels, before scratch plateaus "
                 f"({'not in the measured range' if ps is None else ps})")


def f1(curves: list[Curve], ci: float = 0.95) -> dict:
    evidence, per_seed = [], {}
    for c in curves:
        ns = sorted(set(c.scratch) & set(c.pretrained))
        if len(ns) < 2:
            continue
        seeds, d = _paired(c, ns)
        if not seeds:
            continue
        x = np.log(np.asarray(ns, dtype=float))
        slopes = np.polyfit(x, d.T, 1)[0].reshape(-1)  # one slope per seed
        m, lo, hi = t_interval(slopes, ci)
        vals = [p for p in c.utility if p.kind == "value"]
        u_slope = float(np.polyfit(np.log([p.n for p in vals]), [p.value for p in vals], 1)[0]) \
            if len(vals) >= 2 else None
        oc, why = outcome(c, ci)
        evidence.append({"dataset": c.dataset, "backbone": c.backbone, "task": c.task, "method": c.method,
                         "ns": ns, "seeds": len(seeds), "delta_slope": m, "ci_low": lo, "ci_high": hi,
                         "utility_slope": u_slope, "outcome": oc, "outcome_reason": why})
        for s, sl in zip(seeds, slopes):
            per_seed.setdefault(s, []).append(float(sl))
    if not evidence:
        return _finding("F1", "not measured", "no pretrained arm shares two label counts with scratch")
    n_curves = len(evidence)
    full = [s for s, v in per_seed.items() if len(v) == n_curves]
    if len(full) >= 2:
        m, lo, hi = t_interval([np.mean(per_seed[s]) for s in full], ci)
        how = f"per-seed mean slope over {n_curves} curve(s), t-interval over {len(full)} seeds"
    else:
        m, lo, hi = t_interval([e["delta_slope"] for e in evidence], ci) if n_curves > 1 else \
            (evidence[0]["delta_slope"], None, None)
        how = "t-interval over curves" if n_curves > 1 else "one curve with one seed: no interval"
    verdict = _verdict_sign(lo, hi, claim_negative=True)
    reason = (f"slope of Δ against log n: {m:+.4g}" +
              (f" [{lo:+.4g}, {hi:+.4g}]" if lo is not None else " (no interval)") + f"; {how}")
    outcomes = {k: sum(e["outcome"] == k for e in evidence) for k in ("a", "b", "c", "none", "undetermined")}
    return _finding("F1", verdict, reason, evidence, slope=m, ci_low=lo, ci_high=hi, outcomes=outcomes)


# --------------------------------------------------------------------------------------------- F2


def _scores(c: Curve, ns, seeds) -> np.ndarray:
    """(S,) per-seed mean Δ over ``ns`` (better positive)."""
    return np.array([np.mean([_sign(c) * (c.pretrained[n][s] - c.scratch[n][s]) for n in ns]) for s in seeds])


def f2(curves: list[Curve], ci: float = 0.95, rng=None) -> dict:
    rng = rng or np.random.default_rng(0)
    by = {}
    for c in curves:
        by.setdefault((c.dataset, c.backbone), {}).setdefault(c.task, {})[c.method] = c
    evidence, taus, boots = [], [], []
    for (dataset, backbone), tasks in sorted(by.items()):
        for ta, tb in itertools.combinations(sorted(tasks), 2):
            methods = sorted(set(tasks[ta]) & set(tasks[tb]))
            if len(methods) < 3:
                continue
            sel = [tasks[ta][m] for m in methods] + [tasks[tb][m] for m in methods]
            ns = sorted(set.intersection(*(set(c.scratch) & set(c.pretrained) for c in sel)))
            if not ns:
                continue
            seeds = sorted(set.intersection(*(set(c.scratch[n]) & set(c.pretrained[n]) for c in sel for n in ns)),
                           key=str)
            if not seeds:
                continue
            sa = np.stack([_scores(tasks[ta][m], ns, seeds) for m in methods])  # (M, S)
            sb = np.stack([_scores(tasks[tb][m], ns, seeds) for m in methods])
            tau = float(stats.kendalltau(sa.mean(1), sb.mean(1)).statistic)
            evidence.append({"dataset": dataset, "backbone": backbone, "tasks": [ta, tb], "methods": methods,
                             "tau": tau, "best": [methods[int(np.argmax(sa.mean(1)))],
                                                  methods[int(np.argmax(sb.mean(1)))]]})
            if not math.isfinite(tau):
                continue  # every method tied on a task: no ranking to compare
            if len(seeds) >= 2:
                idx = rng.integers(0, len(seeds), size=(RESAMPLES, len(seeds)))
                boots.append(np.array([stats.kendalltau(sa[:, i].mean(1), sb[:, i].mean(1)).statistic
                                       for i in idx]))
            taus.append(tau)
    if not evidence:
        return _finding("F2", "not measured", "needs two tasks on the same dataset and backbone with the same "
                                              "3 or more pretraining methods")
    if not taus:
        return _finding("F2", "inconclusive", "the methods are tied on a task: no ranking to compare", evidence)
    m = float(np.mean(taus))
    lo = hi = None
    if len(boots) == len(taus):
        dist = np.nanmean(np.stack(boots), axis=0)  # a resample whose methods tie has no τ
        dist = dist[np.isfinite(dist)]
        if dist.size:
            lo, hi = (float(q) for q in np.percentile(dist, [50 * (1 - ci), 50 * (1 + ci)]))
    if lo is None:
        verdict = "inconclusive"
    else:
        verdict = "supported" if hi < 0.5 else "contradicted" if lo > 0.5 else "inconclusive"
    reason = f"mean Kendall τ between tasks' method rankings {m:+.2f}" + \
        (f" [{lo:+.2f}, {hi:+.2f}] (paired bootstrap over seeds)" if lo is not None else " (one seed: no interval)")
    return _finding("F2", verdict, reason, evidence, tau=m, ci_low=lo, ci_high=hi)


# --------------------------------------------------------------------------------------------- F3


def tau_batch(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's τ-b between ``x`` (m,) and every row of ``y`` (P, m), vectorised."""
    iu = np.triu_indices(x.size, k=1)
    dx = np.sign(x[:, None] - x[None, :])[iu]
    dy = np.sign(y[:, :, None] - y[:, None, :])[:, iu[0], iu[1]]
    num = dy @ dx
    den = np.sqrt(np.count_nonzero(dx) * np.count_nonzero(dy, axis=1))
    return np.where(den > 0, num / np.maximum(den, 1e-300), 0.0)


def f3(curves: list[Curve], rng=None) -> dict:
    rng = rng or np.random.default_rng(0)
    groups = {}
    for c in curves:
        for n in sorted(set(c.linear) & set(c.pretrained)):
            groups.setdefault((c.dataset, c.backbone, c.task, n), []).append(
                (c.method, float(np.mean(list(c.linear[n].values()))), float(np.mean(list(c.pretrained[n].values())))))
    groups = {k: v for k, v in groups.items() if len(v) >= 3}
    if not groups:
        return _finding("F3", "not measured", "needs 3 or more methods with both a linear probe and finetuning "
                                              "on the same dataset, backbone, task and label count")
    evidence, obs, perm, best = [], [], [], []
    for (d, b, t, n), items in sorted(groups.items()):
        x = np.array([i[1] for i in items])
        y = np.array([i[2] for i in items])
        tau = float(tau_batch(x, y[None, :])[0])
        keys = rng.random((PERMUTATIONS, y.size))
        perm.append(tau_batch(x, y[np.argsort(keys, axis=1)]))
        best.append(float(tau_batch(x, x[None, :])[0]))
        obs.append(tau)
        evidence.append({"dataset": d, "backbone": b, "task": t, "n": n, "methods": [i[0] for i in items],
                         "tau": tau, "scipy_tau": float(stats.kendalltau(x, y).statistic)})
    dist = np.mean(np.stack(perm), axis=0)
    m = float(np.mean(obs))
    p = float((1 + np.sum(dist >= m - 1e-12)) / (1 + PERMUTATIONS))
    p_min = float((1 + np.sum(dist >= np.mean(best) - 1e-12)) / (1 + PERMUTATIONS))
    if p < 0.05 and m >= 0.5:
        verdict = "contradicted"
    elif m < 0.5 and p_min < 0.05:
        verdict = "supported"
    else:
        verdict = "inconclusive"
    reason = (f"mean within-group Kendall τ {m:+.2f} over {len(obs)} group(s), permutation p = {p:.3g}"
              + ("" if p_min < 0.05 else f"; too few groups or methods: even perfect agreement gives p = {p_min:.2g}"))
    return _finding("F3", verdict, reason, evidence, tau=m, p=p, p_min=p_min, groups=len(obs))


# --------------------------------------------------------------------------------------------- F4


def _value_u(c: Curve) -> dict[int, float]:
    return {p.n: p.value for p in c.utility if p.kind == "value"}


def _equiv_verdict(intervals: list[tuple]) -> str:
    ok = [(lo, hi) for lo, hi in intervals if lo is not None]
    if any(lo > _TINY or hi < -_TINY for lo, hi in ok):
        return "supported"
    if ok and len(ok) == len(intervals) and all(-EQUIVALENCE <= lo and hi <= EQUIVALENCE for lo, hi in ok):
        return "contradicted"
    return "inconclusive"


def f4(curves: list[Curve], ci: float = 0.95) -> dict:
    by = {}
    for c in curves:
        try:
            f = Factors.parse(c.dataset)
        except UserError:
            continue
        by.setdefault((c.backbone, c.task, c.method), {})[f.as_tuple()] = _value_u(c)
    datasets = {bits for v in by.values() for bits in v}
    if len(datasets) < 2:
        return _finding("F4", "not measured", "one dataset only: comparing factors needs datasets that differ "
                                              "in exactly one factor" if datasets else
                        "no utilities on factor-named datasets")
    pairs = {L: [] for L in LETTERS}
    effects = []
    for (backbone, task, method), per in sorted(by.items()):
        for on, off in itertools.permutations(per, 2):
            diff = [i for i in range(4) if on[i] != off[i]]
            if len(diff) != 1 or not on[diff[0]]:
                continue
            shared = sorted(set(per[on]) & set(per[off]))
            if shared:
                pairs[LETTERS[diff[0]]].append(
                    {"backbone": backbone, "task": task, "method": method, "on": "".join(map(str, map(int, on))),
                     "off": "".join(map(str, map(int, off))), "ns": shared,
                     "delta_u": float(np.mean([per[on][n] - per[off][n] for n in shared]))})
        rows = [(bits, np.mean(list(u.values()))) for bits, u in per.items() if u]
        if len(rows) >= 5:
            x = np.array([[1.0, *map(float, bits)] for bits, _ in rows])
            if np.linalg.matrix_rank(x) == 5:
                beta = np.linalg.lstsq(x, np.array([u for _, u in rows]), rcond=None)[0]
                effects.append({"backbone": backbone, "task": task, "method": method, "datasets": len(rows),
                                **{L: float(beta[i + 1]) for i, L in enumerate(LETTERS)}})
    if not any(pairs.values()):
        return _finding("F4", "not measured", "no two datasets differ in exactly one factor (with utilities "
                                              "at a shared label count)")
    evidence, intervals = [], []
    for L in LETTERS:
        if not pairs[L]:
            continue
        # One number per (backbone, task, dataset pair): its methods share the scratch curves.
        units: dict = {}
        for p in pairs[L]:
            units.setdefault((p["backbone"], p["task"], p["on"], p["off"]), []).append(p["delta_u"])
        m, lo, hi = t_interval([float(np.mean(v)) for v in units.values()], ci)
        intervals.append((lo, hi))
        evidence.append({"factor": L, "pairs": len(units), "delta_u": m, "ci_low": lo, "ci_high": hi,
                         "main_effect": float(np.mean([e[L] for e in effects])) if effects else None,
                         "matched": pairs[L]})
    verdict = _equiv_verdict(intervals)
    reason = "; ".join(f"{e['factor']}: ΔU {e['delta_u']:+.2f}" +
                       (f" [{e['ci_low']:+.2f}, {e['ci_high']:+.2f}]" if e["ci_low"] is not None else " (1 pair)")
                       + f" over {e['pairs']} pair(s)" for e in evidence)
    return _finding("F4", verdict, reason, evidence, main_effects=effects)


# --------------------------------------------------------------------------------------------- F5


def backbone_key(name: str) -> tuple:
    """Natural order of backbone names (resnet9 < resnet18 < resnet50): digits compare as numbers."""
    import re

    return tuple((0, int(t)) if t.isdigit() else (1, t) for t in re.split(r"(\d+)", str(name)) if t)


def backbone_pairs(curves: list[Curve]) -> list[dict]:
    """Every two backbones measured on the same (dataset, task, method): ``{"dataset", "task", "method",
    "backbones": [later, earlier], "curves": (later's, earlier's)}`` in :func:`backbone_key` order (so a
    difference reads "resnet50 minus resnet9"). F5 and :func:`compare_backbones` read these."""
    by: dict = {}
    for c in curves:
        by.setdefault((c.dataset, c.task, c.method), {})[c.backbone] = c
    out = []
    for (dataset, task, method), per in sorted(by.items()):
        names = sorted(per, key=backbone_key)
        for small, big in itertools.combinations(names, 2):
            out.append({"dataset": dataset, "task": task, "method": method, "backbones": [big, small],
                        "curves": (per[big], per[small])})
    return out


def f5(curves: list[Curve], ci: float = 0.95) -> dict:
    backbones = sorted({c.backbone for c in curves})
    if len(backbones) < 2:
        return _finding("F5", "not measured", f"one backbone only ({backbones[0] if backbones else 'none'})")
    # One number per (dataset, task) and pair of backbones: its methods share the scratch curve and its
    # label counts the seeds, so only (dataset, task) units are independent.
    units: dict = {}
    for pair in backbone_pairs(curves):
        ua, ub = (_value_u(c) for c in pair["curves"])
        units.setdefault(tuple(pair["backbones"]), {}).setdefault((pair["dataset"], pair["task"]), []).extend(
            ua[n] - ub[n] for n in sorted(set(ua) & set(ub)))
    evidence, intervals = [], []
    for (a, b), per in sorted(units.items(), key=lambda kv: (backbone_key(kv[0][1]), backbone_key(kv[0][0]))):
        diffs = [float(np.mean(v)) for v in per.values() if v]
        if not diffs:
            continue
        m, lo, hi = t_interval(diffs, ci)
        intervals.append((lo, hi))
        evidence.append({"backbones": [a, b], "points": len(diffs), "delta_u": m, "ci_low": lo, "ci_high": hi})
    if not evidence:
        return _finding("F5", "not measured", "no two backbones have utility values on the same dataset, task, "
                                              "method and label count")
    reason = "; ".join(f"U({e['backbones'][0]}) − U({e['backbones'][1]}) {e['delta_u']:+.2f}" +
                       (f" [{e['ci_low']:+.2f}, {e['ci_high']:+.2f}]" if e["ci_low"] is not None else "") +
                       f" over {e['points']} point(s)" for e in evidence)
    return _finding("F5", _equiv_verdict(intervals), reason, evidence)


# ------------------------------------------------------------------------- backbones, point by point

#: What :func:`compare_backbones` can say of one (dataset, task, method) and two backbones.
BACKBONE_VERDICTS = ("higher", "lower", "mixed", "inconclusive", "no interval")


def _u_record(p, baseline: str) -> dict:
    return {"kind": p.kind, "value": p.value if p.kind != "not_measurable" else None, "ci_low": p.ci_low,
            "ci_high": p.ci_high, "text": str(p), "n_seeds": p.n_seeds, "baseline": baseline}


def _restrict(curve: dict, seeds: list) -> dict:
    out = {n: {s: v for s, v in vals.items() if s in set(seeds)} for n, vals in curve.items()}
    return {n: v for n, v in out.items() if v}


def _boot_u(c: Curve, seeds: list, idx: np.ndarray, method: str) -> dict[int, np.ndarray]:
    """{n: (B,) U of each paired resample ``idx`` of ``seeds``} for one curve, as utility_curve's
    bootstrap computes it (bounds at their bound values)."""
    sign = _sign(c)
    s_counts, xs, _ = _matrix(_restrict(c.scratch, seeds), "scratch", seeds)
    p_counts, xp, _ = _matrix(_restrict(c.pretrained, seeds), "pretrained", seeds)
    xs, xp = sign * xs, sign * xp
    weights = np.sum(np.isfinite(xs), axis=1).astype(float)
    _, u = resampled_utility(xs, xp, s_counts.astype(float), p_counts, weights, method, idx)
    return {int(n): u[:, j] for j, n in enumerate(p_counts.tolist())}


def _fmt_d(x: float) -> str:
    return f"{x:+.3f}" if abs(x) < 5 else f"{x:+.1f}"


def compare_backbones(curves: list[Curve], ci: float = 0.95, bootstrap: int = 1000, seed: int = 0,
                      method: str = "isotonic") -> list[dict]:
    """Utility per backbone side by side, per (dataset, task, method) and pair of backbones
    (:func:`backbone_pairs`), at each label count both measured, with the paired differences:

    - ``delta_u``: U(later) − U(earlier) where both are values (F5's point difference), its interval
      ``U ± t(S-1)·se`` as U's own (utility.py), se from one paired seed-level bootstrap that draws the
      same seeds for both backbones and all four arms (``bootstrap`` resamples, ``method`` the scratch
      fit); S the seeds both backbones ran. With one paired seed, or a bound on either side, no interval
      (resp. no ΔU);
    - ``gain_diff``: Δ(later) − Δ(earlier), each Δ pretrained minus its baseline at n in the metric's
      direction (a gain > 0), a t-interval over the paired seeds.

    A label count counts for one backbone when ΔU's interval excludes 0, or, where ΔU has no interval
    because a U is a bound, the gain difference's does. ``verdict`` (:data:`BACKBONE_VERDICTS`): higher
    / lower (later's utility at those counts, never the other way at another), mixed, inconclusive (no
    interval excludes 0) or no interval (fewer than two paired seeds); ``sentence`` says it in words.
    """
    rng = np.random.default_rng(seed)
    out = []
    for pair in backbone_pairs(curves):
        ca, cb = pair["curves"]
        a, b = pair["backbones"]
        ua = {p.n: p for p in ca.utility}
        ub = {p.n: p for p in cb.utility}
        ns = sorted(set(ua) & set(ub))
        if not ns:
            continue
        keys = lambda c: {s for arm in (c.scratch, c.pretrained) for v in arm.values() for s in v}  # noqa: E731
        seeds = sorted(keys(ca) & keys(cb), key=str)
        boot = None
        resamples = min(bootstrap, POWERLAW_RESAMPLES) if method == "powerlaw" else bootstrap
        if len(seeds) >= 2 and resamples > 0:
            idx = paired_resample(len(seeds), resamples, rng)
            boot = (_boot_u(ca, seeds, idx, method), _boot_u(cb, seeds, idx, method))
        tq = float(stats.t.ppf(0.5 + ci / 2, len(seeds) - 1)) if len(seeds) >= 2 else math.nan
        sign = _sign(ca)
        points, ups, downs = [], [], []
        for n in ns:
            pa, pb = ua[n], ub[n]
            rec = {"n": n, "u": {a: _u_record(pa, ca.baseline), b: _u_record(pb, cb.baseline)},
                   "delta_u": None, "delta_u_ci_low": None, "delta_u_ci_high": None,
                   "gain_diff": None, "gain_diff_ci_low": None, "gain_diff_ci_high": None, "seeds": 0,
                   "counts": 0, "by": ""}
            if pa.kind == "value" and pb.kind == "value":
                d = float(pa.value - pb.value)
                rec["delta_u"] = d
                if boot is not None and n in boot[0] and n in boot[1]:
                    se = float(np.std(boot[0][n] - boot[1][n], ddof=1)) * math.sqrt(len(seeds) / (len(seeds) - 1))
                    rec["delta_u_ci_low"], rec["delta_u_ci_high"] = d - tq * se, d + tq * se
            paired = [s for s in seeds if all(n in arm and s in arm[n] for arm in
                                              (ca.scratch, ca.pretrained, cb.scratch, cb.pretrained))]
            if paired:
                g = [sign * ((ca.pretrained[n][s] - ca.scratch[n][s]) - (cb.pretrained[n][s] - cb.scratch[n][s]))
                     for s in paired]
                rec["gain_diff"], rec["gain_diff_ci_low"], rec["gain_diff_ci_high"] = t_interval(g, ci)
                rec["seeds"] = len(paired)
            if rec["delta_u_ci_low"] is not None:
                lo, hi, rec["by"] = rec["delta_u_ci_low"], rec["delta_u_ci_high"], "U"
            elif rec["delta_u"] is None and rec["gain_diff_ci_low"] is not None:
                lo, hi, rec["by"] = rec["gain_diff_ci_low"], rec["gain_diff_ci_high"], "gain"
            else:
                lo = hi = None
            # A zero-width interval at a rounding error from 0 (identical arms) shows nothing.
            if lo is not None and (lo > _TINY or hi < -_TINY):
                rec["counts"] = 1 if lo > 0 else -1
                (ups if lo > 0 else downs).append(rec)
            points.append(rec)

        def said(recs):
            return "; ".join(
                f"n={r['n']}: ΔU {r['delta_u']:+.2f} [{r['delta_u_ci_low']:+.2f}, {r['delta_u_ci_high']:+.2f}]"
                if r["by"] == "U" else
                f"n={r['n']}: gain {_fmt_d(r['gain_diff'])} [{_fmt_d(r['gain_diff_ci_low'])}, "
                f"{_fmt_d(r['gain_diff_ci_high'])}] (a U is a bound)" for r in recs)

        at = lambda recs: ", ".join(f"n={r['n']}" for r in recs)  # noqa: E731
        if ups and downs:
            verdict = "mixed"
            sentence = (f"mixed: {a}'s utility is higher than {b}'s at {at(ups)} ({said(ups)}) and lower at "
                        f"{at(downs)} ({said(downs)})")
        elif ups or downs:
            verdict = "higher" if ups else "lower"
            sentence = f"{a}'s utility is {verdict} than {b}'s at {at(ups or downs)} ({said(ups or downs)})"
            rest = [r for r in points if not r["counts"]]
            if rest:
                sentence += f"; no difference shown at {at(rest)}"
        elif len(seeds) < 2:
            verdict = "no interval"
            sentence = (f"no interval: {len(seeds)} seed(s) ran on both {a} and {b}, and a difference needs the "
                        f"spread of two or more paired seeds")
        else:
            verdict = "inconclusive"
            sentence = (f"inconclusive: no interval of ΔU (or, where a U is a bound, of the gain difference) "
                        f"excludes 0 at {at(points)} ({len(seeds)} paired seeds)")
        out.append({"dataset": pair["dataset"], "task": pair["task"], "method": pair["method"],
                    "higher_is_better": ca.higher_is_better, "backbones": [a, b],
                    "baselines": {a: ca.baseline, b: cb.baseline}, "seeds": len(seeds), "points": points,
                    "verdict": verdict, "sentence": sentence})
    return out
