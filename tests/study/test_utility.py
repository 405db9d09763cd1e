"""Utility values on hand-computed cases: identity, a x2 label shift, bounds, PAVA, the paper's rule."""

import math

import numpy as np
import pytest

from selfstudy.errors import UserError
from selfstudy.study.utility import isotonic_fit, rank_correlation, scratch_curve, utility_curve

GRID = [100, 200, 400, 800, 1600]


def loglinear(n: float) -> float:
    """A learning curve linear in log2(n): 0.2 at 100 labels, +0.1 per doubling."""
    return 0.2 + 0.1 * math.log2(n / 100)


def one_seed(curve):
    return {n: [v] for n, v in curve.items()}


def test_identical_curves_give_zero_inside_and_bounds_at_the_ends():
    scratch = one_seed({n: loglinear(n) for n in GRID})
    pts = utility_curve(scratch, scratch, bootstrap=0)
    for p in pts[1:]:  # at N_max the fit is reached exactly: a value, not a bound
        assert p.kind == "value"
        assert p.value == pytest.approx(0.0, abs=1e-12)
        assert p.n_scratch_equiv == pytest.approx(p.n)
    # At the smallest scratch point, fewer labels might have reached it too: only an upper bound.
    assert pts[0].kind == "upper" and pts[0].value == pytest.approx(0.0)


def test_curve_shifted_by_two_in_labels_gives_exactly_one():
    scratch = one_seed({n: loglinear(n) for n in GRID})
    # pre(n) = scratch(2n); 150 and 300 fall between grid points, so this checks log interpolation.
    pre = one_seed({n: loglinear(2 * n) for n in [100, 150, 300, 400, 800]})
    pts = utility_curve(scratch, pre, bootstrap=0)
    assert [p.kind for p in pts] == ["value"] * 5
    assert [p.value for p in pts] == pytest.approx([1.0] * 5, abs=1e-9)
    assert pts[1].n_scratch_equiv == pytest.approx(300.0)
    assert pts[1].scratch_used == (200, 400)


def test_above_range_is_a_lower_bound_on_n_max():
    scratch = one_seed({n: loglinear(n) for n in GRID})
    pre = one_seed({200: 0.95})  # scratch never reaches 0.95 (max 0.6 at 1600)
    (p,) = utility_curve(scratch, pre, bootstrap=0)
    assert p.kind == "lower"
    assert p.value == pytest.approx(1600 / 200 - 1)  # 7.0
    assert p.n_scratch_equiv == 1600
    assert str(p) == "≥ 7.00"


def test_below_range_is_an_upper_bound_on_n_min():
    scratch = one_seed({n: loglinear(n) for n in GRID})
    pre = one_seed({400: 0.1})  # worse than scratch at its smallest count
    (p,) = utility_curve(scratch, pre, bootstrap=0)
    assert p.kind == "upper"
    assert p.value == pytest.approx(100 / 400 - 1)  # -0.75
    assert str(p) == "≤ -0.75"


def test_pava_hand_computed():
    # 0.3, 0.5, 0.4 with weights 1, 1, 3 -> last two pooled: (0.5 + 3*0.4)/4 = 0.425
    assert isotonic_fit([0.3, 0.5, 0.4], [1, 1, 3]) == pytest.approx([0.3, 0.425, 0.425])
    # Cascade: 0.5, 0.6, 0.2 (unit weights) -> 0.6 & 0.2 pool to 0.4 < 0.5 -> all three pool to 13/30.
    assert isotonic_fit([0.5, 0.6, 0.2]) == pytest.approx([13 / 30] * 3)
    assert isotonic_fit([0.1, 0.2, 0.2, 0.3]) == pytest.approx([0.1, 0.2, 0.2, 0.3])


def test_isotonic_scratch_curve_weights_by_seeds_and_flat_segment_gives_smallest_n():
    # Means 0.2 (1 seed), 0.5 (1 seed), 0.4 (3 seeds), 0.7 (1 seed): PAVA pools 200 and 400 to 0.425.
    scratch = {100: [0.2], 200: [0.5], 400: [0.4, 0.4, 0.4], 800: [0.7]}
    counts, levels = scratch_curve(scratch)
    assert counts.tolist() == [100, 200, 400, 800]
    assert levels == pytest.approx([0.2, 0.425, 0.425, 0.7])
    # Reaching 0.425 first happens at 200 (the start of the flat segment): U(100) = 200/100 - 1.
    (p,) = utility_curve(scratch, {100: [0.425]}, bootstrap=0)
    assert (p.kind, p.value) == ("value", pytest.approx(1.0))
    # 0.45 lies between 400 (0.425) and 800 (0.7) on the fit: t = 0.025/0.275, log-linear.
    (p,) = utility_curve(scratch, {100: [0.45]}, bootstrap=0)
    expected = 400 * 2 ** (0.025 / 0.275)
    assert p.n_scratch_equiv == pytest.approx(200.0)  # but scratch measured 0.5 at 200: n_s <= 200
    (p,) = utility_curve({100: [0.2], 400: [0.4, 0.4, 0.4], 800: [0.7]}, {100: [0.45]}, bootstrap=0)
    expected = 400 * 2 ** (0.05 / 0.3)
    assert p.n_scratch_equiv == pytest.approx(expected)
    assert p.value == pytest.approx(expected / 100 - 1)


def test_lower_is_better_mirrors_higher_is_better():
    scratch = {n: [1.0 - loglinear(n), 1.0 - loglinear(n) + 0.02] for n in GRID}
    pre = {n: [1.0 - loglinear(2 * n) + 0.01] for n in [100, 300]}
    pre[200] = [0.01]  # a tiny error scratch never reaches
    mirrored = {n: [-v for v in vs] for n, vs in scratch.items()}
    mirrored_pre = {n: [-v for v in vs] for n, vs in pre.items()}
    err = utility_curve(scratch, pre, higher_is_better=False, bootstrap=50, seed=3)
    acc = utility_curve(mirrored, mirrored_pre, higher_is_better=True, bootstrap=50, seed=3)
    assert [(p.kind, p.value, p.ci_low, p.ci_high) for p in err] == \
        [(p.kind, pytest.approx(p.value), pytest.approx(p.ci_low), pytest.approx(p.ci_high)) for p in acc]
    assert [p.value for p in err if p.n != 200] == pytest.approx([1.0, 1.0])
    assert err[1].kind == "lower" and err[1].value == pytest.approx(1600 / 200 - 1)
    assert err[0].accuracy == pytest.approx(1.0 - loglinear(200) + 0.01)  # reported in its own units


def test_paper_method_raw_linear_on_unfixed_mean():
    # Raw means 0.2, 0.6, 0.4, 0.7 at 100, 200, 400, 800: non-monotone, left as is.
    scratch = {100: [0.1, 0.3], 200: [0.6], 400: [0.4], 800: [0.7]}
    counts, levels = scratch_curve(scratch, method="paper")
    assert levels == pytest.approx([0.2, 0.6, 0.4, 0.7])
    pts = utility_curve(scratch, {50: [0.3], 100: [0.65], 400: [0.9]}, method="paper", bootstrap=0)
    # 0.3: first point reaching it is 200 (0.6): n_s = 100 + (0.1/0.4)*100 = 125; U(50) = 1.5
    assert pts[0].kind == "value" and pts[0].value == pytest.approx(125 / 50 - 1)
    # 0.65: first reaching is 800 (0.7), interpolate from 400 (0.4): 400 + (0.25/0.3)*400
    assert pts[1].n_scratch_equiv == pytest.approx(400 + 0.25 / 0.3 * 400)
    assert pts[1].value == pytest.approx((400 + 0.25 / 0.3 * 400) / 100 - 1)
    # 0.9 beyond every point: a lower bound with the -1 (the original code had neither).
    assert pts[2].kind == "lower" and pts[2].value == pytest.approx(800 / 400 - 1)


def test_bootstrap_contains_point_is_deterministic_and_collapses_with_one_seed():
    rng = np.random.default_rng(0)
    scratch = {n: (loglinear(n) + 0.01 * rng.standard_normal(4)).tolist() for n in GRID}
    pre = {n: (loglinear(2 * n) + 0.01 * rng.standard_normal(4)).tolist() for n in [150, 300, 600]}
    a = utility_curve(scratch, pre, bootstrap=300, seed=7)
    b = utility_curve(scratch, pre, bootstrap=300, seed=7)
    assert a == b
    for p in a:
        assert p.kind == "value" and p.ci_low <= p.value <= p.ci_high
        assert p.ci_low < p.ci_high
        assert str(p) == f"{p.value:.2f} [{p.ci_low:.2f}, {p.ci_high:.2f}]"
    c = utility_curve(scratch, pre, bootstrap=300, seed=8)
    assert [p.ci_low for p in c] != [p.ci_low for p in a]

    single = utility_curve(one_seed({n: loglinear(n) for n in GRID}), {150: [loglinear(300)]}, bootstrap=100)
    # One seed: no interval at all (issue 9: not an interval collapsed to the point) and a flag.
    assert single[0].ci_low is None and single[0].ci_high is None and not single[0].has_interval
    assert "one seed" in single[0].note and "one_seed" in single[0].flags and single[0].significant == 0
    assert str(single[0]) == "1.00"


def test_bootstrap_reports_bound_resamples():
    # Pretrained at 200 sits right at the scratch maximum: about half the resamples exceed it. Four
    # seeds (with two, the t-interval's 12.7 x se reaches the lower edge of the measurable range too).
    scratch = {100: [0.2, 0.22] * 2, 400: [0.5, 0.52] * 2, 1600: [0.6, 0.62] * 2}
    (p,) = utility_curve(scratch, {200: [0.58, 0.64] * 2}, bootstrap=400, seed=1)
    assert p.kind == "value"
    assert 0.1 < p.frac_lower < 0.9 and p.frac_upper == 0.0
    assert p.ci_high == pytest.approx(1600 / 200 - 1)
    assert p.ci_high_is_bound and not p.ci_low_is_bound
    assert "≥7.00]" in str(p)


def test_bad_input_raises_user_error():
    good = {100: [0.5]}
    for kwargs in ({"method": "spline"}, {"bootstrap": -1}, {"ci": 1.5}):
        with pytest.raises(UserError):
            utility_curve(good, good, **kwargs)
    with pytest.raises(UserError, match="label count"):
        utility_curve({0: [0.5]}, good)
    with pytest.raises(UserError, match="non-finite"):
        utility_curve(good, {100: [float("nan")]})
    with pytest.raises(UserError, match="empty"):
        utility_curve({}, good)


def test_rank_correlation_known_cases():
    x = [1, 2, 3, 4, 5]
    assert rank_correlation(x, [10, 20, 25, 70, 100]) == {"spearman": 1.0, "kendall": 1.0, "n": 5}
    r = rank_correlation(x, [5, 4, 3, 2, 1])
    assert (r["spearman"], r["kendall"]) == (pytest.approx(-1.0), pytest.approx(-1.0))
    # One swapped pair of 4: spearman = 1 - 6*2/(4*15) = 0.8; kendall = (5-1)/6.
    r = rank_correlation([1, 2, 3, 4], [1, 3, 2, 4])
    assert r["spearman"] == pytest.approx(0.8) and r["kendall"] == pytest.approx(4 / 6)
    assert math.isnan(rank_correlation([1], [2])["spearman"])
    assert math.isnan(rank_correlation([1, 2, 3], [2, 2, 2])["kendall"])


def test_rank_correlation_with_ties_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    x = [1, 2, 2, 3, 5, 5, 7]
    y = [2, 1, 4, 4, 3, 6, 6]
    r = rank_correlation(x, y)
    assert r["spearman"] == pytest.approx(stats.spearmanr(x, y).statistic)
    assert r["kendall"] == pytest.approx(stats.kendalltau(x, y).statistic)
