"""``budget: auto``: the decision from a cell's attempts, with values."""

import math

import pytest

from selfstudy.study.autobudget import (Attempt, decide, decision_record, doublings, effective_tolerance,
                                        resolve_rows, task_tolerance)


def test_effective_tolerance_is_never_below_the_noise():
    # Binomial SE of 60 % on 1,000 images is 1.55 points; the gain of two such scores has SE 2.19 points.
    se = math.sqrt(0.6 * 0.4 / 1000)
    assert effective_tolerance(0.01, se, se) == pytest.approx(math.sqrt(2) * se) == pytest.approx(0.021909, abs=1e-6)
    assert effective_tolerance(0.01, se, se, k=2) == pytest.approx(2 * math.sqrt(2) * se)
    # Small noise: the task's tolerance.
    assert effective_tolerance(0.01, 0.001, 0.002) == 0.01
    # Unknown standard errors (results from before they were recorded) count as 0.
    assert effective_tolerance(1.0, None, float("nan")) == 1.0


def test_doublings():
    assert doublings(2, 8) == [2.0, 4.0, 8.0]
    assert doublings(2, 6) == [2.0, 4.0]
    assert doublings(3, 8) == [3.0]
    assert doublings(2, 1) == []


def A(f, v, se=None):
    return Attempt(f, v, se, f"c{f:g}")


def test_converged_at_the_first_check_counts_the_cell_itself():
    d = decide([A(1, 0.500), A(2, 0.505)], True, 0.01)
    assert (d.status, d.counted, d.next_factor) == ("converged", 1.0, None)
    assert d.gain == pytest.approx(0.005) and d.tolerance == 0.01 and not d.not_converged_within_cap


def test_a_gain_above_the_tolerance_asks_for_the_next_doubling():
    d = decide([A(1, 0.30), A(2, 0.40)], True, 0.01)
    assert (d.status, d.counted, d.next_factor) == ("run", 2.0, 4.0)
    # With the attempt at 4 there: 4 gained 0.5 points over 2, so 2 counts.
    d = decide([A(1, 0.30), A(2, 0.40), A(4, 0.405)], True, 0.01)
    assert (d.status, d.counted) == ("converged", 2.0)
    assert [(c.factor_from, c.factor_to, round(c.gain, 6)) for c in d.comparisons] == [(1, 2, 0.1), (2, 4, 0.005)]


def test_a_cell_still_gaining_at_the_cap_did_not_converge_and_its_largest_attempt_counts():
    d = decide([A(1, 0.30), A(2, 0.40), A(4, 0.45), A(8, 0.48)], True, 0.01, cap=8)
    assert (d.status, d.counted, d.next_factor) == ("not_converged", 8.0, None)
    assert d.not_converged_within_cap and d.gain == pytest.approx(0.03)
    # cap 2 is today's single check: a gain there is "did not converge within cap 2".
    d = decide([A(1, 0.30), A(2, 0.40)], True, 0.01, cap=2)
    assert (d.status, d.counted) == ("not_converged", 2.0)
    assert decide([A(1, 0.3)], True, 0.01, cap=1).status == "unchecked"


def test_lower_is_better_and_noise():
    # Angular error 20.0 -> 19.2 degrees: a gain of 0.8 < 1 degree: converged.
    assert decide([A(1, 20.0), A(2, 19.2)], False, 1.0).status == "converged"
    assert decide([A(1, 20.0), A(2, 18.5)], False, 1.0).status == "run"
    # A 1.5-point gain on 1,000 images at 60 %: inside the noise (2.19 points), converged.
    se = math.sqrt(0.6 * 0.4 / 1000)
    d = decide([A(1, 0.600, se), A(2, 0.615, se)], True, 0.01)
    assert d.status == "converged" and d.tolerance == pytest.approx(0.021909, abs=1e-6)
    # The same gain with SEs unknown exceeds one point: doubling again.
    assert decide([A(1, 0.600), A(2, 0.615)], True, 0.01).status == "run"


def test_a_diverged_attempt_stops_the_chain():
    d = decide([A(1, 0.30), A(2, 0.40), A(4, float("nan"))], True, 0.01)
    assert (d.status, d.counted) == ("not_converged", 2.0)
    with pytest.raises(ValueError, match="factor 1"):
        decide([A(2, 0.4)], True, 0.01)


def row(cid, val, test, task="classification", factor=None, of=None, se=None, metric="accuracy", hib=True):
    cfg = {} if of is None else {"check_of": of, "budget_factor": factor}
    metrics = {} if se is None else {f"val/{metric}_se": se}
    return {"cell_id": cid, "kind": "downstream" if of is None else "check", "dataset": "1111",
            "backbone": "resnet9-tiny", "task": task, "method": "scratch", "protocol": "finetune",
            "n_labels": 100, "seed": 0, "metric": metric, "higher_is_better": hib, "val": val, "test": test,
            "steps": 100 * (factor or 1), "config": cfg, "metrics": metrics,
            "check_of": of, "budget_factor": factor}


def test_resolve_rows_gives_each_row_its_counted_attempt_and_flags():
    rows = [row("a", 0.30, 0.29), row("b", 0.50, 0.49), row("c", 20.0, 21.0, task="pose-regression",
                                                             metric="angular_error", hib=False),
            row("d", 0.7, 0.7)]
    checks = [row("a2", 0.40, 0.41, factor=2.0, of="a"), row("a4", 0.45, 0.46, factor=4.0, of="a"),
              row("a8", 0.48, 0.47, factor=8.0, of="a"),
              row("b2", 0.505, 0.51, factor=2.0, of="b"),
              row("c2", 18.5, 19.0, task="pose-regression", factor=2.0, of="c", metric="angular_error", hib=False),
              row("c4", 18.0, 18.2, task="pose-regression", factor=4.0, of="c", metric="angular_error", hib=False)]
    out, table = resolve_rows(rows, checks, {"factor": 2, "cap": 8})
    a, b, c, d = out
    assert (a["budget_status"], a["not_converged_within_cap"], a["under_budget"], a["budget_factor"],
            a["counted_cell_id"], a["val"], a["test"], a["steps"]) == ("not_converged", True, True, 8.0, "a8",
                                                                       0.48, 0.47, 800)
    assert [t["factor"] for t in a["budget_attempts"]] == [1.0, 2.0, 4.0, 8.0]
    assert (b["budget_status"], b["under_budget"], b["counted_cell_id"], b["test"]) == ("converged", False, "b", 0.49)
    # pose-regression: 20.0 -> 18.5 gains 1.5 degrees (> 1), 18.5 -> 18.0 gains 0.5: attempt 2 counts.
    assert (c["budget_status"], c["budget_factor"], c["test"]) == ("converged", 2.0, 19.0)
    assert "budget_status" not in d and d == rows[3]
    assert [(t["task"], t["factor_from"], t["factor_to"], t["under_budget"]) for t in table] == [
        ("classification", 1.0, 2.0, True), ("classification", 2.0, 4.0, True), ("classification", 4.0, 8.0, True),
        ("classification", 1.0, 2.0, False),
        ("pose-regression", 1.0, 2.0, True), ("pose-regression", 2.0, 4.0, False)]
    assert table[0]["tolerance"] == 0.01 and table[4]["tolerance"] == 1.0
    # A spec tolerance applies to every task; a mapping names tasks.
    assert resolve_rows(rows, checks, {"tolerance": 2.0})[0][2]["budget_status"] == "converged"
    assert task_tolerance("pose-regression(within=15)", {"pose-regression": 3.0}) == 3.0
    assert task_tolerance("depth", {"pose": 3.0}) == 0.005
    rec = decision_record(rows[0], checks[:3], {"cap": 8})
    assert (rec["status"], rec["counted_id"], rec["counted_factor"]) == ("not_converged", "a8", 8.0)
    assert [x["cell_id"] for x in rec["attempts"]] == ["a", "a2", "a4", "a8"]


def test_original_samples():
    from selfstudy.study.autobudget import original_samples

    assert [original_samples(n) for n in (100, 4000, 19999, 20000, 200000)] == [2_000_000] * 3 + [30_000_000] * 2
    assert original_samples(50000, "resnet50") == 40_000_000 and original_samples(100, "resnet50") == 2_000_000
    assert original_samples(100, dense=True) == original_samples(200000, dense=True) == 8_000_000


def test_a_cell_its_doubling_showed_converged_is_not_flagged_for_its_own_rising_curve():
    from selfstudy.study.analysis import analyse, needs_flag

    rows = [dict(row("a", 0.30, 0.29), still_improving=True), dict(row("b", 0.50, 0.49), still_improving=True),
            row("c", 0.40, 0.41)]
    checks = [dict(row("a2", 0.305, 0.30, factor=2.0, of="a"), still_improving=True),  # no gain: converged
              row("c2", 0.48, 0.47, factor=2.0, of="c"), row("c4", 0.55, 0.54, factor=4.0, of="c")]
    out, _ = resolve_rows(rows, checks, {"factor": 2, "cap": 4})
    a, b, c = out
    assert a["budget_status"] == "converged" and a["still_improving"] and not needs_flag(a)
    assert "budget_status" not in b and needs_flag(b)  # unchecked: its own curve decides
    assert c["budget_status"] == "not_converged" and needs_flag(c)
    flagged = {r["cell_id"] for r in analyse(out, bootstrap=0).improving}
    assert flagged == {"b", "c"}
