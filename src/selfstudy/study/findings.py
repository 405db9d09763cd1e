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
from selfstudy.study.utility import t_interval

VERDICTS = ("supported", "contradicted", "inconclusive", "not measured")
#: |ΔU| below which a factor or backbone is taken to make no difference.
EQUIVALENCE = 0.25
PERMUTATIONS = 2000
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
    if hi < 0:
        return "supported" if claim_negative else "contradicted"
    if lo > 0:
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
    if any(lo > 0 or hi < 0 for lo, hi in ok):
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


def f5(curves: list[Curve], ci: float = 0.95) -> dict:
    by = {}
    for c in curves:
        by.setdefault((c.dataset, c.task, c.method), {})[c.backbone] = _value_u(c)
    backbones = sorted({c.backbone for c in curves})
    if len(backbones) < 2:
        return _finding("F5", "not measured", f"one backbone only ({backbones[0] if backbones else 'none'})")
    evidence, intervals = [], []
    for a, b in itertools.combinations(backbones, 2):
        # One number per (dataset, task): its methods share the scratch curve and its label counts the
        # seeds, so only (dataset, task) units are independent.
        units: dict = {}
        for (dataset, task, _), per in by.items():
            if a in per and b in per:
                units.setdefault((dataset, task), []).extend(
                    per[a][n] - per[b][n] for n in sorted(set(per[a]) & set(per[b])))
        diffs = [float(np.mean(v)) for v in units.values() if v]
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
