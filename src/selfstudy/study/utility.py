"""The paper's utility: how many labels self-supervised pretraining saves, with honest uncertainty.

For a pretrained model finetuned on ``n`` labels that reaches accuracy ``a(n)``,

    U(n) = n_s(a(n)) / n - 1

where ``n_s(a)`` is the number of labels a model trained from scratch needs to reach ``a``
(Newell & Deng, CVPR 2020). U = 0: no benefit; U = 1: pretraining is worth doubling the labels;
U < 0: pretraining hurts. Beside it, ``Δ(n)``: the same-n difference, pretrained minus scratch, in the
metric's own units.

``n_s`` comes from the scratch curve, the mean over seeds at each measured label count:

- ``method="isotonic"`` (default): the mean curve made monotone by isotonic regression (weighted by
  the number of seeds) and interpolated linearly in log n;
- ``method="paper"``: the original code's rule, linear interpolation in raw label count between the
  first measured point that reaches ``a`` and the one before it, on the raw mean curve;
- ``method="powerlaw"``: a saturating fit ``f(n) = A - B (n / N_max)^(-c)`` of the scratch means
  (:func:`scipy.optimize.curve_fit`), inverted. It is the only estimate past the largest measured
  label count: such points are of kind ``"extrapolated"``, carry the fit's back-test error (fit
  without the largest count, predict it) and are never mixed with measured values.

What was measured decides the kind of a point, never a fitted level:

- ``a(n)`` above every raw scratch mean: scratch never reached it, ``U >= N_max/n - 1`` (``"lower"``;
  ``"extrapolated"`` with ``powerlaw`` when its fit reaches ``a``);
- ``a(n)`` at or below the raw scratch mean at the smallest count ``N_min`` (so at or below their
  minimum too): scratch reached it with ``N_min`` labels or fewer, ``U <= N_min/n - 1`` (``"upper"``);
- otherwise a value, and ``n_s`` is never more than the smallest measured count whose raw mean
  reaches ``a`` (a fit that pools levels cannot push ``n_s`` past a measurement that already got there).

**Signal guard**: with the task's trivial baseline (``trivial``: the majority-class rate, the best
constant prediction, the all-background map), an arm whose mean at a label count is not above it by
more than the t-interval half-width of its seeds (or not above it at all, with one seed) has not
learned there, and a utility that reads such a cell is ``"not_measurable"`` with the reason.

**Uncertainty, paired by seed.** A seed fixes the labeled subset, the head's initialisation and the
batches of both arms at every label count, so one resample draws seed indices once and uses them for
every label count and both arms (:func:`paired_resample`). Percentile intervals of a mean over 3
seeds cover far less than their nominal level, so intervals are t-intervals: Δ's on the paired
per-seed differences (exact for normal seed noise), U's as ``U ± t_{S-1} · se`` with ``se`` the
paired-bootstrap standard deviation times ``sqrt(S / (S - 1))`` (the bootstrap's plug-in variance of a
mean is ``(S-1)/S`` of the unbiased one). The coverage simulation in ``tests/study/test_coverage.py``
measures 95 % intervals of U and Δ at 3 and 5 seeds (docs/RESULTS.md). One seed gives no interval.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

import numpy as np
from scipy import optimize, stats

from selfstudy.errors import UserError

METHODS = ("isotonic", "paper", "powerlaw")
KINDS = ("value", "lower", "upper", "extrapolated", "not_measurable")
#: Flags a point can carry.
FLAGS = ("inconsistent", "one_seed", "extrapolated", "not_informative", "unpaired")
#: Most resamples a power-law interval refits (each a curve_fit).
POWERLAW_RESAMPLES = 200
_KIND_CODE = {0: "value", 1: "lower", 2: "upper"}


@dataclass(frozen=True)
class UtilityPoint:
    """The utility of a pretrained arm at one label count, and the same-n difference Δ beside it.

    ``kind`` is one of :data:`KINDS`. ``value`` is U for ``"value"``/``"extrapolated"``, the bound
    ``N_max/n - 1`` for ``"lower"`` (U is at least this), ``N_min/n - 1`` for ``"upper"`` (at most),
    NaN for ``"not_measurable"`` (``reason`` says why). ``n_scratch_equiv``: the matching scratch label
    count (the bound's ``N`` for bounds). ``accuracy``: the pretrained arm's mean primary metric at
    ``n`` over ``n_seeds`` seeds. ``scratch_used``: the scratch label counts ``n_s`` was read from.

    ``[ci_low, ci_high]``: the interval of U (None: no interval, e.g. one seed or a bound);
    ``ci_high_is_bound`` (``ci_low_is_bound``): that end was cut at the edge of what can be measured,
    read it as "at least" ("at most"). ``frac_lower``/``frac_upper``: share of resamples that fell
    outside the measured range. ``delta``: pretrained minus scratch at ``n`` (None where scratch was
    not run at ``n``) with its paired t-interval ``[delta_ci_low, delta_ci_high]``. ``flags``: strings
    of :data:`FLAGS`. ``backtest_error``: for extrapolated points, the power-law fit's error at the
    largest measured count when fitted without it (metric units, predicted minus measured).
    """

    n: int
    value: float
    kind: str
    ci_low: float | None
    ci_high: float | None
    n_scratch_equiv: float
    accuracy: float
    n_seeds: int = 1
    frac_lower: float = 0.0
    frac_upper: float = 0.0
    ci_low_is_bound: bool = False
    ci_high_is_bound: bool = False
    scratch_used: tuple[int, ...] = ()
    note: str = ""
    delta: float | None = None
    delta_ci_low: float | None = None
    delta_ci_high: float | None = None
    flags: tuple[str, ...] = ()
    reason: str = ""
    backtest_error: float | None = None

    @property
    def is_bound(self) -> bool:
        return self.kind in ("lower", "upper")

    @property
    def has_interval(self) -> bool:
        return self.ci_low is not None and self.ci_high is not None

    @property
    def significant(self) -> int:
        """+1 / -1 when U's whole interval is above / below 0 and nothing casts doubt on it, else 0."""
        if self.kind not in ("value",) or not self.has_interval or "inconsistent" in self.flags:
            return 0
        return 1 if self.ci_low > 0 else -1 if self.ci_high < 0 else 0

    def __str__(self) -> str:
        if self.kind == "not_measurable":
            return "n/m"
        if self.kind == "lower":
            return f"≥ {self.value:.2f}"
        if self.kind == "upper":
            return f"≤ {self.value:.2f}"
        mark = "~" if self.kind == "extrapolated" else ""
        if not self.has_interval:
            return f"{mark}{self.value:.2f}"
        lo = ("≤" if self.ci_low_is_bound else "") + f"{self.ci_low:.2f}"
        hi = ("≥" if self.ci_high_is_bound else "") + f"{self.ci_high:.2f}"
        return f"{mark}{self.value:.2f} [{lo}, {hi}]"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["scratch_used"] = list(self.scratch_used)
        d["flags"] = list(self.flags)
        d["value"] = _num(self.value)
        d["text"] = str(self)
        return d


def _num(x):
    """A float for JSON: None for None or a non-finite number."""
    return None if x is None or not math.isfinite(float(x)) else float(x)


# ------------------------------------------------------------------------------------ primitives


def isotonic_fit(y: Sequence[float], weights: Sequence[float] | None = None) -> np.ndarray:
    """The weighted least-squares non-decreasing fit of ``y``.

    y: (K,) values in order; weights: (K,) positive (default 1). Returns (K,) float64.
    """
    y = np.asarray(y, dtype=float)
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=float)
    return isotonic_batch(y[None, :], w)[0]


def isotonic_batch(y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Isotonic (non-decreasing) weighted fits of every row of ``y`` (B, K) at once, weights (K,).

    Uses the min-max formula ``fit_i = max_{j<=i} min_{k>=i} mean_w(y[j..k])``: O(K^3) per row but
    vectorised over rows, for the short curves (K label counts) of a study.
    """
    y = np.asarray(y, dtype=float)
    w = np.asarray(weights, dtype=float)
    k = y.shape[1]
    cw = np.concatenate([[0.0], np.cumsum(w)])
    cy = np.concatenate([np.zeros((y.shape[0], 1)), np.cumsum(y * w, axis=1)], axis=1)
    j, e = np.triu_indices(k)  # block [j, e]
    means = np.full((y.shape[0], k, k), np.nan)
    means[:, j, e] = (cy[:, e + 1] - cy[:, j]) / (cw[e + 1] - cw[j])
    out = np.empty_like(y)
    for i in range(k):
        # min over ends e >= i of each start j <= i, then max over starts
        block = means[:, : i + 1, i:]
        out[:, i] = np.nanmax(np.nanmin(block, axis=2), axis=1)
    return out


def paired_resample(n_seeds: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, n_seeds) seed indices drawn with replacement: one draw per resample, to be used for
    every label count and both arms."""
    return rng.integers(0, n_seeds, size=(resamples, n_seeds))


def t_interval(values: Sequence[float], ci: float = 0.95) -> tuple[float, float | None, float | None]:
    """(mean, low, high) of the t-interval of a mean over ``values`` (None ends for fewer than two)."""
    v = np.asarray(values, dtype=float)
    m = float(v.mean())
    if v.size < 2:
        return m, None, None
    half = float(stats.t.ppf(0.5 + ci / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return m, m - half, m + half


def learned(values: Sequence[float], trivial: float, higher_is_better: bool = True, ci: float = 0.95) -> bool:
    """Whether an arm's seeds at one label count are above the trivial baseline beyond noise: the
    lower end of the t-interval of their mean above it (one seed: the value itself above it)."""
    sign = 1.0 if higher_is_better else -1.0
    v = sign * (np.asarray(values, dtype=float) - trivial)
    m, lo, _ = t_interval(v, ci)
    return bool((lo if lo is not None else m) > 0)


def powerlaw(n, a, b, c):
    """``a - b * n^(-c)``, the saturating learning curve (n in any fixed scale)."""
    return a - b * np.power(n, -c)


def fit_powerlaw(ns: Sequence[float], ys: Sequence[float], weights: Sequence[float] | None = None
                 ) -> tuple[float, float, float] | None:
    """Least-squares ``(a, b, c)`` of :func:`powerlaw` through (ns, ys) (higher is better), label counts
    scaled by their maximum; b >= 0, 0 < c <= 5. None when it fails or there are fewer than 3 points."""
    x = np.asarray(ns, dtype=float)
    y = np.asarray(ys, dtype=float)
    if x.size < 3:
        return None
    x = x / x.max()
    span = max(float(y.max() - y.min()), 1e-6)
    p0 = (float(y.max()) + 0.1 * span, span, 0.5)
    sigma = None if weights is None else 1.0 / np.sqrt(np.asarray(weights, dtype=float))
    # The asymptote within 5 spans of the data and c >= 0.05: a curve that does not bend in the measured
    # range is not identifiable, and an unbounded fit of it runs for long towards a = b = infinity.
    top = float(y.max()) + 5.0 * span
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optimize.OptimizeWarning)
            p, _ = optimize.curve_fit(powerlaw, x, y, p0=p0, sigma=sigma, max_nfev=300,
                                      bounds=([float(y.min()) - span, 0.0, 0.05], [top, 50.0 * span, 5.0]))
    except (RuntimeError, ValueError):
        return None
    return float(p[0]), float(p[1]), float(p[2])


def powerlaw_n_at(params, target: float, n_max: float) -> float:
    """Labels at which the fitted curve reaches ``target`` (inf when it never does)."""
    a, b, c = params
    if target >= a or b <= 0:
        return math.inf
    if target <= a - b * 1e12:
        return 0.0
    return float(n_max * ((a - target) / b) ** (-1.0 / c))


# ------------------------------------------------------------------------------------ utility


def scratch_curve(scratch: Mapping[int, Sequence[float]], higher_is_better: bool = True,
                  method: str = "isotonic") -> tuple[np.ndarray, np.ndarray]:
    """The scratch curve ``n_s`` is read from: label counts (K,) int and levels (K,) float.

    Levels are in the metric's own units: for ``"isotonic"`` non-decreasing in accuracy (non-increasing
    in an error), for ``"paper"`` the raw mean over seeds, for ``"powerlaw"`` the fit at each count.
    """
    _check_method(method)
    counts, x, _ = _matrix(scratch, "scratch", None)
    sign = 1.0 if higher_is_better else -1.0
    means = np.nanmean(x, axis=1)
    weights = np.sum(np.isfinite(x), axis=1).astype(float)
    if method == "isotonic":
        return counts, sign * isotonic_fit(sign * means, weights)
    if method == "powerlaw":
        p = fit_powerlaw(counts, sign * means, weights)
        if p is None:
            raise UserError("the power-law fit of the scratch curve failed: it needs at least 3 label counts")
        return counts, sign * powerlaw(counts / counts.max(), *p)
    return counts, means


def utility_curve(scratch: Mapping, pretrained: Mapping, higher_is_better: bool = True,
                  method: str = "isotonic", bootstrap: int = 1000, seed: int = 0, ci: float = 0.95,
                  trivial: float | None = None) -> list[UtilityPoint]:
    """Utility and Δ of a pretrained arm at each of its label counts, with paired intervals.

    scratch, pretrained: label count -> the primary metric of each seed at that count, either a
    sequence (position i is seed i) or a mapping seed -> value. Seeds with the same key are paired
    across arms and label counts. ``bootstrap`` paired resamples (0: none; U then has no interval)
    from ``np.random.default_rng(seed)``; ``ci`` the intervals' coverage; ``trivial`` the task's
    trivial baseline (None: no signal guard). Returns one :class:`UtilityPoint` per pretrained label
    count, in increasing order.
    """
    _check_method(method)
    if not isinstance(higher_is_better, (bool, np.bool_)):
        raise UserError(f"higher_is_better must be true or false, got {higher_is_better!r}")
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, (int, np.integer)) or bootstrap < 0:
        raise UserError(f"bootstrap must be a whole number of resamples >= 0, got {bootstrap!r}")
    if not (isinstance(ci, (int, float)) and 0.0 < ci < 1.0):
        raise UserError(f"ci must be a coverage strictly between 0 and 1 (e.g. 0.95), got {ci!r}")
    if trivial is not None and not _finite(trivial):
        raise UserError(f"the trivial baseline must be a finite number, got {trivial!r}")
    seeds = _seed_keys(scratch, pretrained)
    s_counts, xs, _ = _matrix(scratch, "scratch", seeds)
    p_counts, xp, _ = _matrix(pretrained, "pretrained", seeds)
    if method == "powerlaw" and len(s_counts) < 3:
        raise UserError(f"--utility powerlaw needs scratch results at 3 or more label counts, got "
                        f"{len(s_counts)} ({', '.join(map(str, s_counts.tolist()))})")
    sign = 1.0 if higher_is_better else -1.0
    xs, xp = sign * xs, sign * xp  # internally higher is better
    ns = s_counts.astype(float)
    weights = np.sum(np.isfinite(xs), axis=1).astype(float)
    n_seeds = len(seeds)

    s_mean = np.nanmean(xs, axis=1)[None, :]
    p_mean = np.nanmean(xp, axis=1)[None, :]
    kinds, n_s, extra = _solve(s_mean, p_mean, ns, p_counts, weights, method)
    backtest = _backtest(ns, s_mean[0], weights, xs) if method == "powerlaw" else None

    # The paired resamples (B, M) of U, with bounds at their bound values.
    boot_kinds = boot_u = None
    resamples = min(bootstrap, POWERLAW_RESAMPLES) if method == "powerlaw" else bootstrap
    if resamples > 0 and n_seeds > 1:
        idx = paired_resample(n_seeds, resamples, np.random.default_rng(seed))
        boot_kinds, boot_u = resampled_utility(xs, xp, ns, p_counts, weights, method, idx)

    s_learned = p_learned = None
    if trivial is not None:
        t = sign * float(trivial)
        s_learned = {int(N): learned(row[np.isfinite(row)], t, True, ci) for N, row in zip(s_counts, xs)}
        p_learned = {int(n): learned(row[np.isfinite(row)], t, True, ci) for n, row in zip(p_counts, xp)}

    out = []
    s_index = {int(N): k for k, N in enumerate(s_counts.tolist())}
    tq = float(stats.t.ppf(0.5 + ci / 2, n_seeds - 1)) if n_seeds > 1 else math.nan
    for j, n in enumerate(p_counts.tolist()):
        kind, n_sj = kinds[0, j], float(n_s[0, j])
        used = extra["used"][0][j]
        value = n_sj / n - 1.0
        row_p = xp[j][np.isfinite(xp[j])]
        point = dict(n=int(n), value=value, kind=kind, ci_low=None, ci_high=None, n_scratch_equiv=n_sj,
                     accuracy=float(sign * row_p.mean()), n_seeds=int(row_p.size), scratch_used=used)
        flags: list[str] = []
        notes: list[str] = []
        # Δ: paired per-seed differences where scratch was run at the same n.
        k = s_index.get(int(n))
        if k is not None:
            both = np.isfinite(xs[k]) & np.isfinite(xp[j])
            if both.any():
                d, lo, hi = t_interval(sign * (xp[j][both] - xs[k][both]), ci)
            else:
                d, lo, hi = sign * (float(np.nanmean(xp[j])) - float(np.nanmean(xs[k]))), None, None
                flags.append("unpaired")
            point.update(delta=d, delta_ci_low=lo, delta_ci_high=hi)
        if n_seeds < 2 or row_p.size < 2:
            flags.append("one_seed")
            notes.append("one seed: no interval, no significance")
        elif bootstrap == 0:
            notes.append("no bootstrap: interval of U not computed")
        if boot_u is not None:
            bk, bu = boot_kinds[:, j], boot_u[:, j]
            point.update(frac_lower=float(np.mean(bk == "lower")), frac_upper=float(np.mean(bk == "upper")))
            if kind in ("value", "extrapolated"):
                se = float(np.std(bu, ddof=1)) * math.sqrt(n_seeds / (n_seeds - 1))
                lo, hi = value - tq * se, value + tq * se
                top = (math.inf if method == "powerlaw" and kind == "extrapolated" else ns[-1] / n - 1.0)
                bottom = ns[0] / n - 1.0
                point.update(ci_low=max(lo, bottom), ci_high=min(hi, top), ci_low_is_bound=lo < bottom,
                             ci_high_is_bound=hi > top)
        if kind == "extrapolated":
            flags.append("extrapolated")
            if backtest is None:
                notes.append("no back-test: it needs 4 or more scratch label counts")
                flags.append("not_informative")
            else:
                err, informative = backtest
                point["backtest_error"] = sign * err
                notes.append(f"extrapolated past {int(ns[-1])} labels; back-test error {sign * err:+.4g} at "
                             f"{int(ns[-1])} labels" + ("" if informative else ": not informative"))
                if not informative:
                    flags.append("not_informative")
        # Signal guard: a utility that reads a cell that did not learn is not measurable.
        if trivial is not None:
            bad = ([f"the pretrained arm at {n} labels"] if not p_learned[int(n)] else []) + \
                  [f"scratch at {N} labels" for N in used if not s_learned[int(N)]]
            if bad:
                point.update(kind="not_measurable", value=math.nan, ci_low=None, ci_high=None,
                             ci_low_is_bound=False, ci_high_is_bound=False)
                point["reason"] = (f"{' and '.join(bad)} {'is' if len(bad) == 1 else 'are'} not above the "
                                   f"trivial baseline {float(trivial):.4g} beyond seed noise")
        if kind in ("lower", "upper") and point["kind"] != "not_measurable":
            point["reason"] = ("the pretrained arm is beyond every scratch mean: scratch would need more than "
                               f"{int(ns[-1])} labels" if kind == "lower" else
                               f"scratch reaches it with {int(ns[0])} labels or fewer")
        # U and Δ must agree in sign.
        d = point.get("delta")
        if d is not None and point["kind"] in ("value", "lower", "upper", "extrapolated"):
            u = point["value"]
            su = (1 if u > 1e-12 else -1 if u < -1e-12 else 0)
            if point["kind"] == "lower" and su < 0:
                su = 0  # "at least a negative number" says nothing about the sign
            if point["kind"] == "upper" and su > 0:
                su = 0
            sd = 1 if sign * d > 1e-12 else -1 if sign * d < -1e-12 else 0
            if su * sd < 0:
                flags.append("inconsistent")
        point["flags"] = tuple(flags)
        point["note"] = "; ".join(notes)
        out.append(UtilityPoint(**point))
    return out


def resampled_utility(xs: np.ndarray, xp: np.ndarray, ns: np.ndarray, p_counts: np.ndarray,
                      weights: np.ndarray, method: str, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(kinds, U)``, each (B, M), of the paired seed resamples ``idx`` (B, S): the scratch and
    pretrained seed matrices ``xs`` (N, S) and ``xp`` (M, S) (higher is better; NaN: not run), resampled
    by the same seed draw, then solved as :func:`utility_curve` solves the means (bounds at their bound
    values). ``ns``: scratch's label counts, ``p_counts`` the pretrained ones, ``weights`` scratch's
    seeds per count. What :func:`utility_curve`'s interval and the backbone comparison's ΔU resample."""
    kinds, n_s, _ = _solve(_resampled_means(xs, idx), _resampled_means(xp, idx), ns, p_counts, weights, method)
    return kinds, n_s / p_counts[None, :] - 1.0


def rank_correlation(x: Sequence[float], y: Sequence[float]) -> dict:
    """Spearman's rho and Kendall's tau-b between paired samples ``x`` and ``y`` (scipy.stats).

    Returns ``{"spearman": float, "kendall": float, "n": int}``; a coefficient is NaN when it is
    undefined (fewer than 2 pairs, or one side constant). Pairs with a NaN are dropped.
    """
    xa, ya = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if xa.shape != ya.shape:
        raise UserError(f"rank correlation needs paired samples, got {xa.size} x values and {ya.size} y values")
    keep = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[keep], ya[keep]
    n = int(xa.size)
    nan = float("nan")
    if n < 2 or np.all(xa == xa[0]) or np.all(ya == ya[0]):
        return {"spearman": nan, "kendall": nan, "n": n}
    # rounded so that a perfect agreement reads 1.0, not 0.9999999999999999
    return {"spearman": round(float(np.clip(stats.spearmanr(xa, ya).statistic, -1, 1)), 12),
            "kendall": round(float(np.clip(stats.kendalltau(xa, ya).statistic, -1, 1)), 12), "n": n}


# ---------------------------------------------------------------------------------------------------


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise UserError(f"unknown utility method {method!r}: allowed are {', '.join(METHODS)}")


def _finite(x) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _seed_keys(*curves: Mapping) -> list:
    """The union of seed keys over every label count of the curves, sorted."""
    keys: set = set()
    for curve in curves:
        if not isinstance(curve, Mapping):
            continue
        for vals in curve.values():
            if isinstance(vals, Mapping):
                keys |= set(vals)
            else:
                keys |= set(range(len(np.asarray(vals, dtype=float).ravel())))
    return sorted(keys, key=lambda k: (str(type(k)), k))


def _matrix(curve: Mapping, name: str, seeds: list | None) -> tuple[np.ndarray, np.ndarray, list]:
    """Sorted label counts (K,) int and the (K, S) matrix of results by seed (NaN where a seed was not
    run), validated."""
    if not isinstance(curve, Mapping) or len(curve) == 0:
        raise UserError(f"the {name} curve is empty: it needs at least one label count with results")
    seeds = _seed_keys(curve) if seeds is None else seeds
    col = {s: i for i, s in enumerate(seeds)}
    counts, rows = [], []
    for n in sorted(curve):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
            raise UserError(f"{name} label count {n!r} is not allowed: label counts are positive integers")
        vals = curve[n]
        items = list(vals.items()) if isinstance(vals, Mapping) else \
            list(enumerate(np.asarray(vals, dtype=float).ravel().tolist()))
        if not items:
            raise UserError(f"{name} label count {n} has no results: give at least one seed's value")
        row = np.full(len(seeds), np.nan)
        for s, v in items:
            if not _finite(v):
                raise UserError(f"{name} label count {n} has a non-finite result ({[v for _, v in items]}): "
                                f"values must be finite numbers")
            row[col[s]] = float(v)
        counts.append(int(n))
        rows.append(row)
    return np.array(counts, dtype=np.int64), np.array(rows), seeds


def _resampled_means(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """(B, K) means over the seeds each resample drew (a label count none of whose drawn seeds was run
    keeps its full mean)."""
    drawn = x[:, idx]  # (K, B, S)
    cnt = np.sum(np.isfinite(drawn), axis=2)
    tot = np.nansum(drawn, axis=2)
    full = np.nanmean(x, axis=1)[:, None]
    return np.where(cnt > 0, tot / np.maximum(cnt, 1), full).T


def _solve(s_mean: np.ndarray, p_mean: np.ndarray, ns: np.ndarray, p_counts: np.ndarray, weights: np.ndarray,
           method: str):
    """Kinds (B, M) str, n_s (B, M) and the scratch counts used, for scratch means (B, K) and
    pretrained means (B, M), higher is better."""
    b, k = s_mean.shape
    if method == "isotonic":
        levels = isotonic_batch(s_mean, weights)
    else:
        levels = s_mean
    kinds = np.empty(p_mean.shape, dtype=object)
    n_s = np.empty(p_mean.shape)
    used: list[list[tuple[int, ...]]] = [[() for _ in range(p_mean.shape[1])] for _ in range(b)] if b == 1 else [[]]
    fits = None
    if method == "powerlaw":
        fits = [fit_powerlaw(ns, s_mean[i], weights) for i in range(b)]
    raw_max = s_mean.max(axis=1)
    for j in range(p_mean.shape[1]):
        a = p_mean[:, j]
        lower = a > raw_max
        upper = ~lower & (a <= s_mean[:, 0])
        # first raw point reaching a
        rreach = s_mean >= a[:, None]
        kr = rreach.argmax(axis=1)
        n_raw = np.where(rreach.any(axis=1), ns[kr], np.inf)
        if method == "powerlaw":
            n_fit = np.array([powerlaw_n_at(f, float(ai), ns[-1]) if f is not None else np.nan
                              for f, ai in zip(fits, a)])
            n_fit = np.where(np.isnan(n_fit), n_raw, n_fit)
            val = np.clip(np.minimum(n_fit, n_raw), ns[0], None)
            ext = lower & np.isfinite(n_fit)
            kind = np.where(ext, "extrapolated", np.where(lower, "lower", np.where(upper, "upper", "value")))
            nsj = np.where(ext, n_fit, np.where(lower, ns[-1], np.where(upper, ns[0], val)))
            u_used = [(int(ns[-1]),) if kd in ("lower", "extrapolated") else (int(ns[0]),) if kd == "upper"
                      else tuple(int(x) for x in ns) for kd in kind]
        else:
            reach = levels >= a[:, None]
            has = reach.any(axis=1)
            kk = reach.argmax(axis=1)
            k1 = np.clip(kk, 1, k - 1) if k > 1 else np.zeros_like(kk)
            rows = np.arange(b)
            f0, f1 = levels[rows, k1 - 1], levels[rows, k1]
            with np.errstate(divide="ignore", invalid="ignore"):
                t = np.clip((a - f0) / (f1 - f0), 0.0, 1.0)
            n0, n1 = ns[k1 - 1], ns[k1]
            interp = np.exp(np.log(n0) + t * (np.log(n1) - np.log(n0))) if method == "isotonic" else n0 + t * (n1 - n0)
            n_fit = np.where(~has, np.inf, np.where(kk == 0, ns[0], interp))
            val = np.minimum(n_fit, n_raw)
            kind = np.where(lower, "lower", np.where(upper, "upper", "value"))
            nsj = np.where(lower, ns[-1], np.where(upper, ns[0], val))
            u_used = []
            for i in range(b if b == 1 else 0):
                if kind[i] == "lower":
                    u_used.append((int(ns[-1]),))
                elif kind[i] == "upper":
                    u_used.append((int(ns[0]),))
                elif nsj[i] == n_raw[i] and (not has[i] or n_raw[i] < n_fit[i]):
                    u_used.append((int(n_raw[i]),))
                elif kk[i] == 0 or t[i] >= 1.0:
                    u_used.append((int(ns[kk[i] - 1]), int(ns[kk[i]])) if kk[i] > 0 else (int(ns[0]),))
                else:
                    u_used.append((int(n0[i]), int(n1[i])))
        kinds[:, j] = kind
        n_s[:, j] = nsj
        if b == 1:
            used[0][j] = u_used[0]
    return kinds, n_s, {"used": used}


def _backtest(ns: np.ndarray, means: np.ndarray, weights: np.ndarray, xs: np.ndarray):
    """(error, informative) of the power-law fit without the largest count, predicting it (higher is
    better units); None with fewer than 4 counts or a failed fit. Informative: the error is within
    twice the seed standard error of the measured mean there, or 10 % of the measured curve's span."""
    if ns.size < 4:
        return None
    p = fit_powerlaw(ns[:-1], means[:-1], weights[:-1])
    if p is None:
        return None
    pred = float(powerlaw(ns[-1] / ns[:-1].max(), *p))
    err = pred - float(means[-1])
    last = xs[-1][np.isfinite(xs[-1])]
    se = float(last.std(ddof=1) / math.sqrt(last.size)) if last.size > 1 else 0.0
    tol = max(2.0 * se, 0.1 * float(means.max() - means.min()))
    return err, abs(err) <= tol
