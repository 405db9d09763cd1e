"""Coverage of the 95 % intervals of U and Δ by simulation (issue 9): 1,000 synthetic studies drawn from
known learning curves with seed noise (a per-seed effect shared by both arms and every label count, plus
per-cell noise), at 3 and at 5 seeds. Each interval must cover the true value (the utility of the
noise-free curves, read the same way) in 90-98 % of the studies. Measured values are in docs/RESULTS.md.
About 15 s on one core, hence slow."""

import math

import numpy as np
import pytest

from selfstudy.study.utility import utility_curve

NS = [100, 300, 1000, 3000, 10000]
PRE_NS = [100, 300, 1000]
STUDIES = 1000


def scratch_curve(n):
    return 0.85 - 0.6 * (n / 100.0) ** -0.45


def pre_curve(n):
    return scratch_curve(2.5 * n)


def coverage(n_seeds: int, studies: int = STUDIES, resamples: int = 300) -> tuple[np.ndarray, np.ndarray]:
    truth = utility_curve({n: [scratch_curve(n)] for n in NS}, {n: [pre_curve(n)] for n in PRE_NS}, bootstrap=0)
    true_u = np.array([p.value for p in truth])
    true_d = np.array([pre_curve(n) - scratch_curve(n) for n in PRE_NS])
    rng = np.random.default_rng(1000 + n_seeds)
    # All studies' results at once: (studies, seeds, counts).
    effect = 0.01 * rng.standard_normal((studies, n_seeds, 1))
    sc = np.array([scratch_curve(n) for n in NS]) + effect + 0.015 * rng.standard_normal((studies, n_seeds, len(NS)))
    pr = np.array([pre_curve(n) for n in PRE_NS]) + effect + 0.015 * rng.standard_normal((studies, n_seeds, 3))
    cu, cd = np.zeros(3), np.zeros(3)
    for r in range(studies):
        pts = utility_curve({n: sc[r, :, k] for k, n in enumerate(NS)}, {n: pr[r, :, k] for k, n in enumerate(PRE_NS)},
                            bootstrap=resamples, seed=r)
        for j, p in enumerate(pts):
            if p.kind == "value" and p.has_interval:
                lo = -math.inf if p.ci_low_is_bound else p.ci_low
                hi = math.inf if p.ci_high_is_bound else p.ci_high
                cu[j] += lo <= true_u[j] <= hi
            cd[j] += p.delta_ci_low <= true_d[j] <= p.delta_ci_high
    return cu / studies, cd / studies


@pytest.mark.slow
@pytest.mark.parametrize("n_seeds", [3, 5])
def test_95_percent_intervals_cover_the_truth(n_seeds):
    cov_u, cov_d = coverage(n_seeds)
    print(f"seeds={n_seeds} coverage U={cov_u.round(3).tolist()} Δ={cov_d.round(3).tolist()}")
    assert np.all((0.90 <= cov_u) & (cov_u <= 0.98)), cov_u
    assert np.all((0.90 <= cov_d) & (cov_d <= 0.98)), cov_d


def test_percentile_intervals_of_three_seeds_would_undercover():
    """Why not a percentile bootstrap: with 3 seeds its 95 % interval of a mean covers ~75 % (fast check)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 3))
    idx = rng.integers(0, 3, size=(2000, 300, 3))
    boots = np.take_along_axis(x[:, None, :].repeat(300, 1), idx, axis=2).mean(2)
    lo, hi = np.percentile(boots, [2.5, 97.5], axis=1)
    assert 0.65 < np.mean((lo <= 0) & (0 <= hi)) < 0.82
