"""Issue 9 on the utility math: bounds from raw scratch means (both counter-examples), Δ beside U and the
inconsistent flag, paired seed-level resampling, the signal guard, one seed, the power-law fit."""

import math

import numpy as np
import pytest

from selfstudy.errors import UserError
from selfstudy.study.utility import isotonic_batch, isotonic_fit, learned, utility_curve


def one_seed(curve):
    return {n: [v] for n, v in curve.items()}


def test_counter_example_same_n_worse_gives_no_positive_utility():
    # scratch {100: 0.30, 250: 0.20, 1k: 0.50}, pretrained 0.26 at 100: worse than scratch at the same n.
    (p,) = utility_curve(one_seed({100: 0.30, 250: 0.20, 1000: 0.50}), one_seed({100: 0.26}), bootstrap=0)
    assert p.kind == "upper" and p.value == pytest.approx(0.0)  # scratch reached 0.26 with <= 100 labels
    assert p.delta == pytest.approx(-0.04)
    assert not (p.kind in ("value", "lower") and p.value > 0)


def test_counter_example_equal_to_scratch_gives_no_lower_bound():
    # scratch {100: 0.2, 1k: 0.5, 10k: 0.4}, pretrained 0.50 at 1k: equal to scratch at 1k.
    (p,) = utility_curve(one_seed({100: 0.2, 1000: 0.5, 10000: 0.4}), one_seed({1000: 0.5}), bootstrap=0)
    assert p.kind == "value" and p.value == pytest.approx(0.0) and p.n_scratch_equiv == 1000
    assert p.delta == pytest.approx(0.0) and "inconsistent" not in p.flags


def test_bounds_against_raw_means_not_pooled_levels():
    # The isotonic fit pools 1k and 10k to 0.45; 0.48 is below the raw max 0.5: a value, not "≥ 9".
    (p,) = utility_curve(one_seed({100: 0.2, 1000: 0.5, 10000: 0.4}), one_seed({1000: 0.48}), bootstrap=0)
    assert p.kind == "value" and p.value <= 0.0
    (p,) = utility_curve(one_seed({100: 0.2, 1000: 0.5, 10000: 0.4}), one_seed({1000: 0.51}), bootstrap=0)
    assert p.kind == "lower" and p.value == pytest.approx(9.0)  # above every raw mean: a real lower bound


def test_inconsistent_sign_is_flagged_and_never_coloured():
    scratch = {100: [0.2, 0.21, 0.19], 300: [0.5, 0.51, 0.49], 1000: [0.4, 0.41, 0.39], 3000: [0.7, 0.71, 0.69]}
    (p,) = utility_curve(scratch, {1000: [0.45, 0.46, 0.44]}, bootstrap=200)
    # n_s = 300 (scratch measured 0.5 there): U = -0.7, but pretrained beats scratch at 1000 by 0.05.
    assert p.kind == "value" and p.value == pytest.approx(-0.7)
    assert p.delta == pytest.approx(0.05) and p.delta_ci_low > 0
    assert "inconsistent" in p.flags and p.significant == 0


def test_delta_is_a_paired_t_interval():
    scratch = {100: {0: 0.30, 1: 0.40, 2: 0.50}, 1000: {0: 0.6, 1: 0.7, 2: 0.8}}
    pre = {100: {0: 0.33, 1: 0.42, 2: 0.55}}
    (p,) = utility_curve(scratch, pre, bootstrap=100)
    d = np.array([0.03, 0.02, 0.05])
    half = 4.302652729911275 * d.std(ddof=1) / math.sqrt(3)  # t(0.975, 2)
    assert p.delta == pytest.approx(d.mean())
    assert (p.delta_ci_low, p.delta_ci_high) == (pytest.approx(d.mean() - half), pytest.approx(d.mean() + half))


def test_pairing_by_seed_narrows_the_interval_of_u():
    rng = np.random.default_rng(0)
    ns = [100, 300, 1000, 3000]
    f = {n: 0.2 + 0.1 * math.log2(n / 100) for n in ns + [200, 600]}
    effect = 0.05 * rng.standard_normal(5)  # a large seed effect shared by both arms at every n
    scratch = {n: {s: f[n] + effect[s] + 0.002 * rng.standard_normal() for s in range(5)} for n in ns}
    pre = {n: {s: f[2 * n] + effect[s] + 0.002 * rng.standard_normal() for s in range(5)} for n in (100, 300)}
    shuffled = {n: {(s + 2) % 5: v for s, v in vals.items()} for n, vals in pre.items()}  # pairing broken
    paired = utility_curve(scratch, pre, bootstrap=500, seed=1)
    unpaired = utility_curve(scratch, shuffled, bootstrap=500, seed=1)
    for a, b in zip(paired, unpaired):
        assert a.value == pytest.approx(b.value)  # same means
        assert a.value == pytest.approx(1.0, abs=0.1)
        assert (a.ci_high - a.ci_low) < 0.5 * (b.ci_high - b.ci_low)
        assert (a.delta_ci_high - a.delta_ci_low) < 0.5 * (b.delta_ci_high - b.delta_ci_low)


def test_signal_guard_curve_at_chance_is_not_measurable():
    # The demo's pose on TCVL: scratch 25.9 % at 3,000 labels, majority class 26.4 %, pretrained 26.7 % at 300.
    scratch = one_seed({100: 0.22, 300: 0.24, 1000: 0.25, 3000: 0.259})
    (p,) = utility_curve(scratch, one_seed({300: 0.267}), bootstrap=0)
    assert p.kind == "lower" and p.value == pytest.approx(9.0)  # what the report used to print
    (p,) = utility_curve(scratch, one_seed({300: 0.267}), bootstrap=0, trivial=0.264)
    assert p.kind == "not_measurable" and math.isnan(p.value) and p.ci_low is None
    assert "scratch at 3000 labels" in p.reason and "0.264" in p.reason
    assert p.to_dict()["value"] is None and str(p) == "n/m"
    # With seeds, "above the baseline beyond noise": 3 seeds spread around 0.27 are not.
    seeds = {n: [v - 0.02, v, v + 0.02] for n, v in {100: 0.3, 300: 0.4, 1000: 0.5}.items()}
    (p,) = utility_curve(seeds, {100: [0.25, 0.27, 0.29]}, bootstrap=50, trivial=0.264)
    assert p.kind == "not_measurable" and "pretrained arm at 100 labels" in p.reason
    assert learned([0.4, 0.41, 0.39], 0.264) and not learned([0.25, 0.27, 0.29], 0.264)
    assert learned([10.0, 11.0], 30.0, higher_is_better=False)  # an error far below the best constant


def test_one_seed_has_no_interval_and_no_significance():
    scratch = one_seed({100: 0.2, 200: 0.3, 400: 0.4, 800: 0.5})
    (p,) = utility_curve(scratch, one_seed({100: 0.35}), bootstrap=500)
    assert p.kind == "value" and p.value > 0
    assert not p.has_interval and p.delta_ci_low is None and p.significant == 0
    assert "one_seed" in p.flags and "one seed" in p.note


def test_powerlaw_recovers_a_shift_and_marks_extrapolation_with_its_backtest():
    def f(n):
        return 0.9 - 0.8 * (n / 100) ** -0.5

    rng = np.random.default_rng(3)
    ns = [100, 300, 1000, 3000, 10000]
    scratch = {n: (f(n) + 0.002 * rng.standard_normal(3)).tolist() for n in ns}
    pre = {n: (f(3 * n) + 0.002 * rng.standard_normal(3)).tolist() for n in (300, 10000)}
    inside, beyond = utility_curve(scratch, pre, method="powerlaw", bootstrap=100)
    assert inside.kind == "value" and inside.value == pytest.approx(2.0, abs=0.25)
    assert beyond.kind == "extrapolated" and beyond.value == pytest.approx(2.0, abs=0.6)
    assert "extrapolated" in beyond.flags and "not_informative" not in beyond.flags
    assert beyond.backtest_error is not None and abs(beyond.backtest_error) < 0.01
    assert "back-test error" in beyond.note and str(beyond).startswith("~")
    # Isotonic never extrapolates: the same point is a lower bound.
    (_, lower) = utility_curve(scratch, pre, bootstrap=0)
    assert lower.kind == "lower"
    with pytest.raises(UserError, match="3 or more"):
        utility_curve({100: [0.1], 200: [0.2]}, {100: [0.3]}, method="powerlaw")


def test_powerlaw_backtest_error_large_is_not_informative():
    # A curve that jumps at the last count: fitting without it cannot predict it.
    scratch = one_seed({100: 0.20, 300: 0.30, 1000: 0.35, 3000: 0.37, 10000: 0.80})
    (p,) = utility_curve(scratch, one_seed({1000: 0.85}), method="powerlaw", bootstrap=0)
    assert p.kind in ("extrapolated", "lower")
    if p.kind == "extrapolated":
        assert "not_informative" in p.flags and "not informative" in p.note


def test_isotonic_batch_matches_scipy():
    from scipy.optimize import isotonic_regression

    rng = np.random.default_rng(0)
    y = rng.random((50, 6))
    w = rng.integers(1, 4, 6).astype(float)
    batch = isotonic_batch(y, w)
    for row, fit in zip(y, batch):
        assert fit == pytest.approx(isotonic_regression(row, weights=w).x)
        assert fit == pytest.approx(isotonic_fit(row, w))
        assert np.all(np.diff(fit) >= -1e-12)
