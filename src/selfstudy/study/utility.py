"""The paper's utility: how many labels self-supervised pretraining saves.

For a pretrained model finetuned on ``n`` labels that reaches accuracy ``a(n)``,

    U(n) = n_s(a(n)) / n - 1

where ``n_s(a)`` is the number of labels a model trained from scratch needs to reach ``a``
(Newell & Deng, CVPR 2020; docs/PAPER.md §7). U = 0: no benefit; U = 1: pretraining is worth doubling the
labels; U < 0: pretraining hurts.

``n_s`` comes from the scratch curve, the mean over seeds at each measured label count:

- ``method="isotonic"`` (default): the mean curve is made monotone by isotonic regression
  (pool-adjacent-violators, weighted by the number of seeds) and interpolated linearly in log n.
  Noise in the scratch means can no longer make ``n_s`` jump backwards, and a log-linear learning
  curve is interpolated exactly.
- ``method="paper"``: the original code's rule, linear interpolation in raw label count between the
  first measured point that reaches ``a`` and the one before it, on the un-fixed mean curve. Its two
  bugs are not reproduced (the ``-1`` sentinel when no scratch point reaches ``a``, and the missing
  ``-1`` in the saturation case): those cases become bounds, as below.

Outside the measured scratch range the utility is not a number but a bound:

- ``a(n)`` above every scratch point: scratch needs more than ``N_max`` labels, so
  ``U >= N_max / n - 1`` (kind ``"lower"``).
- ``a(n)`` at or below the smallest scratch point: scratch reaches it with ``N_min`` labels or fewer,
  so ``U <= N_min / n - 1`` (kind ``"upper"``).

"Reach" means "at least" for accuracies and "at most" for errors (``higher_is_better=False``).
The target ``a(n)`` is the pretrained arm's mean over seeds (the paper averaged per-seed utilities,
which is undefined once some are bounds); uncertainty comes from a bootstrap over the seeds of both
arms.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np

from selfstudy.errors import UserError

METHODS = ("isotonic", "paper")
KINDS = ("value", "lower", "upper")


@dataclass(frozen=True)
class UtilityPoint:
    """The utility of a pretrained arm at one label count.

    ``value`` is U itself when ``kind == "value"``; for ``"lower"`` it is the bound ``N_max/n - 1``
    (U is at least this) and for ``"upper"`` the bound ``N_min/n - 1`` (U is at most this).
    ``n_scratch_equiv`` is the matching scratch label count (the bound's ``N`` for bounds).
    ``accuracy`` is the pretrained arm's mean primary metric at ``n`` (in the metric's own units),
    over ``n_seeds`` seeds. ``scratch_used`` are the scratch label counts ``n_s`` was read from (the
    bracketing pair, or the one bound count), so a caller can tell which scratch cells it leans on.
    ``note`` says why an interval is missing (no bootstrap, or one seed everywhere).

    The interval ``[ci_low, ci_high]`` is a percentile bootstrap over seeds. Resamples that fell
    outside the measured range enter it at their bound value; ``frac_lower``/``frac_upper`` say how
    many did, and ``ci_high_is_bound`` (``ci_low_is_bound``) says the end can only be read as
    "at least" ("at most") because such a resample could have moved it.
    """

    n: int
    value: float
    kind: str
    ci_low: float
    ci_high: float
    n_scratch_equiv: float
    accuracy: float
    n_seeds: int = 1
    frac_lower: float = 0.0
    frac_upper: float = 0.0
    ci_low_is_bound: bool = False
    ci_high_is_bound: bool = False
    scratch_used: tuple[int, ...] = ()
    note: str = ""

    @property
    def is_bound(self) -> bool:
        return self.kind != "value"

    @property
    def has_interval(self) -> bool:
        return self.ci_low != self.ci_high

    def __str__(self) -> str:
        if self.kind == "lower":
            return f"≥ {self.value:.2f}"
        if self.kind == "upper":
            return f"≤ {self.value:.2f}"
        if not self.has_interval:
            return f"{self.value:.2f}"
        lo = ("≤" if self.ci_low_is_bound else "") + f"{self.ci_low:.2f}"
        hi = ("≥" if self.ci_high_is_bound else "") + f"{self.ci_high:.2f}"
        return f"{self.value:.2f} [{lo}, {hi}]"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["scratch_used"] = list(self.scratch_used)
        d["text"] = str(self)
        return d


def isotonic_fit(y: Sequence[float], weights: Sequence[float] | None = None) -> np.ndarray:
    """The weighted least-squares non-decreasing fit of ``y`` (pool adjacent violators).

    y: (K,) values in order; weights: (K,) positive (default 1). Returns (K,) float64.
    """
    y = np.asarray(y, dtype=float)
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=float)
    # Each block: [weighted mean, total weight, number of points]. A new point that falls below the
    # block before it is pooled with it, and pooling can cascade backwards.
    blocks: list[list[float]] = []
    for yi, wi in zip(y.tolist(), w.tolist()):
        blocks.append([yi, wi, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, c2 = blocks.pop()
            m1, w1, c1 = blocks[-1]
            blocks[-1] = [(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, c1 + c2]
    return np.repeat([b[0] for b in blocks], [int(b[2]) for b in blocks]).astype(float)


def scratch_curve(scratch: Mapping[int, Sequence[float]], higher_is_better: bool = True,
                  method: str = "isotonic") -> tuple[np.ndarray, np.ndarray]:
    """The scratch curve ``n_s`` is read from: label counts (K,) int and levels (K,) float.

    Levels are in the metric's own units: for ``"isotonic"`` non-decreasing in accuracy
    (non-increasing in an error), for ``"paper"`` the raw mean over seeds.
    """
    _check_method(method)
    counts, means, weights = _means(scratch, "scratch")
    sign = 1.0 if higher_is_better else -1.0
    levels = isotonic_fit(sign * means, weights) * sign if method == "isotonic" else means
    return counts, levels


def utility_curve(scratch: Mapping[int, Sequence[float]], pretrained: Mapping[int, Sequence[float]],
                  higher_is_better: bool = True, method: str = "isotonic", bootstrap: int = 1000,
                  seed: int = 0, ci: float = 0.95) -> list[UtilityPoint]:
    """Utility of a pretrained arm at each of its label counts, with bootstrap intervals.

    scratch, pretrained: label count -> the primary metric of each seed at that count (e.g.
    accuracy in [0, 1] or an angular error in degrees). ``bootstrap`` resamples (0: none) draw the
    seeds of every scratch and pretrained label count with replacement from
    ``np.random.default_rng(seed)``; ``ci`` is the central interval's coverage.
    Returns one :class:`UtilityPoint` per pretrained label count, in increasing order.
    """
    _check_method(method)
    if not isinstance(higher_is_better, (bool, np.bool_)):
        raise UserError(f"higher_is_better must be true or false, got {higher_is_better!r}")
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, (int, np.integer)) or bootstrap < 0:
        raise UserError(f"bootstrap must be a whole number of resamples >= 0, got {bootstrap!r}")
    if not (isinstance(ci, (int, float)) and 0.0 < ci < 1.0):
        raise UserError(f"ci must be a coverage strictly between 0 and 1 (e.g. 0.95), got {ci!r}")

    s_counts, s_means, s_weights = _means(scratch, "scratch")
    p_counts, p_means, _ = _means(pretrained, "pretrained")
    # Internally "higher is better": an error is negated so that reaching it means being >= it.
    sign = 1.0 if higher_is_better else -1.0
    s_vals = [sign * np.asarray(scratch[int(N)], dtype=float) for N in s_counts]
    p_vals = [sign * np.asarray(pretrained[int(n)], dtype=float) for n in p_counts]
    ns = s_counts.tolist()

    def levels_of(means: np.ndarray) -> list[float]:
        return (isotonic_fit(means, s_weights) if method == "isotonic" else means).tolist()

    point_levels = levels_of(sign * s_means)
    points = [_solve(n, sign * a, ns, point_levels, method) for n, a in zip(p_counts.tolist(), p_means)]

    single = all(len(v) == 1 for v in s_vals) and all(len(v) == 1 for v in p_vals)
    if bootstrap == 0 or single:
        note = "no bootstrap: interval not computed" if bootstrap == 0 else \
            "one seed per arm: no interval (it collapses to the point)"
        return [_point(n, p, acc, len(v), note=note)
                for n, p, acc, v in zip(p_counts.tolist(), points, p_means.tolist(), p_vals)]

    rng = np.random.default_rng(seed)
    # Resampled means, (B, K) for scratch and (B, M) for pretrained: the mean of len(v) draws with
    # replacement from each label count's seeds.
    s_boot = np.stack([v[rng.integers(0, len(v), size=(bootstrap, len(v)))].mean(axis=1)
                       for v in s_vals], axis=1)
    p_boot = np.stack([v[rng.integers(0, len(v), size=(bootstrap, len(v)))].mean(axis=1)
                       for v in p_vals], axis=1)
    values = np.empty((bootstrap, len(p_counts)))
    kinds = np.empty((bootstrap, len(p_counts)), dtype="<U5")
    for b in range(bootstrap):
        levels = levels_of(s_boot[b])
        for j, n in enumerate(p_counts.tolist()):
            kind, value, _, _ = _solve(n, float(p_boot[b, j]), ns, levels, method)
            kinds[b, j], values[b, j] = kind, value

    alpha = 1.0 - ci
    out = []
    for j, (n, p, acc, v) in enumerate(zip(p_counts.tolist(), points, p_means.tolist(), p_vals)):
        vals, ks = values[:, j], kinds[:, j]
        lo, hi = np.percentile(vals, [100 * alpha / 2, 100 * (1 - alpha / 2)]).tolist()
        lower, upper = ks == "lower", ks == "upper"
        # A lower-bound resample sits at its bound, but its true value could be anywhere above;
        # if it sits at or below the upper percentile it could have moved it up (and likewise below).
        hi_bound = bool(np.any(vals[lower] <= hi))
        lo_bound = bool(np.any(vals[upper] >= lo))
        out.append(_point(n, p, acc, len(v), ci_low=lo, ci_high=hi, frac_lower=float(lower.mean()),
                          frac_upper=float(upper.mean()), ci_low_is_bound=lo_bound,
                          ci_high_is_bound=hi_bound))
    return out


def rank_correlation(x: Sequence[float], y: Sequence[float]) -> dict:
    """Spearman's rho and Kendall's tau-b between paired samples ``x`` and ``y``.

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
    return {"spearman": _pearson(_average_ranks(xa), _average_ranks(ya)), "kendall": _kendall_tau_b(xa, ya),
            "n": n}


# ---------------------------------------------------------------------------------------------------


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise UserError(f"unknown utility method {method!r}: allowed are {', '.join(METHODS)}")


def _means(curve: Mapping[int, Sequence[float]], name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted label counts (K,) int, mean over seeds (K,), and number of seeds (K,), validated."""
    if not isinstance(curve, Mapping) or len(curve) == 0:
        raise UserError(f"the {name} curve is empty: it needs at least one label count with results")
    counts, means, weights = [], [], []
    for n in sorted(curve):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
            raise UserError(f"{name} label count {n!r} is not allowed: label counts are positive integers")
        vals = np.asarray(curve[n], dtype=float).ravel()
        if vals.size == 0:
            raise UserError(f"{name} label count {n} has no results: give at least one seed's value")
        if not np.all(np.isfinite(vals)):
            raise UserError(f"{name} label count {n} has a non-finite result ({vals.tolist()}): "
                            f"values must be finite numbers")
        counts.append(int(n))
        means.append(float(vals.mean()))
        weights.append(float(vals.size))
    return np.array(counts, dtype=np.int64), np.array(means), np.array(weights)


def _n_scratch(a: float, ns: list[int], levels: list[float], method: str) -> tuple[str, float, tuple[int, ...]]:
    """How many scratch labels reach ``a`` (higher is better): (kind, n_s or bound N, counts used)."""
    # The first measured point that reaches a. On the isotonic fit this is the smallest label count
    # reaching it, also when it starts a flat (pooled) segment.
    k = next((i for i, lev in enumerate(levels) if lev >= a), None)
    if k is None:
        return "lower", float(ns[-1]), (ns[-1],)
    if k == 0:
        return "upper", float(ns[0]), (ns[0],)
    n0, n1, f0, f1 = ns[k - 1], ns[k], levels[k - 1], levels[k]
    t = (a - f0) / (f1 - f0)  # in (0, 1]: f0 < a <= f1
    if t >= 1.0:
        return "value", float(n1), (n0, n1)
    if method == "isotonic":
        return "value", math.exp(math.log(n0) + t * (math.log(n1) - math.log(n0))), (n0, n1)
    return "value", n0 + t * (n1 - n0), (n0, n1)


def _solve(n: int, a: float, ns: list[int], levels: list[float], method: str):
    """(kind, utility or bound, n_s or bound N, scratch counts used) for target ``a`` at ``n`` labels."""
    kind, n_s, used = _n_scratch(a, ns, levels, method)
    return kind, n_s / n - 1.0, n_s, used


def _point(n, solved, accuracy, n_seeds, ci_low=None, ci_high=None, **extra) -> UtilityPoint:
    kind, value, n_s, used = solved
    return UtilityPoint(n=int(n), value=float(value), kind=kind,
                        ci_low=float(value if ci_low is None else ci_low),
                        ci_high=float(value if ci_high is None else ci_high),
                        n_scratch_equiv=float(n_s), accuracy=float(accuracy), n_seeds=int(n_seeds),
                        scratch_used=tuple(int(u) for u in used), **extra)


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties given the mean of the ranks they span."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    ranks = np.empty(x.size)
    i = 0
    while i < x.size:
        j = i
        while j + 1 < x.size and xs[j + 1] == xs[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    xc, yc = x - x.mean(), y - y.mean()
    return float(np.clip((xc @ yc) / math.sqrt((xc @ xc) * (yc @ yc)), -1.0, 1.0))


def _kendall_tau_b(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-b (ties in either variable corrected), O(n^2): the samples here are small."""
    dx = np.sign(x[:, None] - x[None, :])
    dy = np.sign(y[:, None] - y[None, :])
    iu = np.triu_indices(x.size, k=1)
    dx, dy = dx[iu], dy[iu]
    s = float(np.sum(dx * dy))
    pairs_x, pairs_y = float(np.count_nonzero(dx)), float(np.count_nonzero(dy))
    return float(np.clip(s / math.sqrt(pairs_x * pairs_y), -1.0, 1.0))
