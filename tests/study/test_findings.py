"""The five findings on synthetic results with a known answer (issue 9)."""

import math

import numpy as np
import pytest
from scipy import stats

from selfstudy.study.findings import (Curve, backbone_key, compare_backbones, f1, f3, f4, f5, findings, outcome,
                                      plateau, tau_batch)
from selfstudy.study.utility import utility_curve

NS = [100, 300, 1000, 3000]


def make_curve(gain, dataset="1111", backbone="resnet9", task="classification", method="rotation", seeds=3,
               noise=0.005, rng=None, linear=None):
    """Scratch 0.2 + 0.1 log(n/100); pretrained = scratch + gain(n); per-seed noise."""
    rng = rng or np.random.default_rng(0)
    scratch = {n: {s: 0.2 + 0.1 * math.log(n / 100) + noise * rng.standard_normal() for s in range(seeds)} for n in NS}
    pre = {n: {s: scratch[n][s] + gain(n) + noise * rng.standard_normal() for s in range(seeds)} for n in NS}
    lin = {n: {s: v for s, v in linear(n).items()} for n in NS} if linear else {}
    return Curve(dataset, backbone, task, method, True, scratch, pre, lin, utility_curve(scratch, pre, bootstrap=100))


def test_f1_supported_when_the_gain_falls_with_labels():
    c = make_curve(lambda n: 0.3 * (100 / n) ** 0.5)
    f = f1([c])
    assert f["verdict"] == "supported" and f["summary"]["ci_high"] < 0
    assert f["evidence"][0]["utility_slope"] < 0


def test_f1_identical_arms_are_inconclusive():
    rng = np.random.default_rng(1)
    scratch = {n: {s: 0.2 + 0.1 * math.log(n / 100) + 0.01 * rng.standard_normal() for s in range(3)} for n in NS}
    c = Curve("1111", "r", "classification", "same", True, scratch, scratch, {}, utility_curve(scratch, scratch))
    assert f1([c])["verdict"] == "inconclusive"


def test_f1_rising_gain_contradicts():
    assert f1([make_curve(lambda n: 0.02 * math.log(n / 50))])["verdict"] == "contradicted"


def test_f1_one_curve_one_seed_has_no_interval():
    f = f1([make_curve(lambda n: 0.3 * (100 / n) ** 0.5, seeds=1)])
    assert f["verdict"] == "inconclusive" and f["summary"]["ci_low"] is None


def test_outcomes_and_plateau_rule():
    # always helps by a constant 0.1: outcome (a)
    assert outcome(make_curve(lambda n: 0.1))[0] == "a"
    # helps at 100 only: they meet at 300 while scratch still rises: outcome (c)
    assert outcome(make_curve(lambda n: 0.2 if n == 100 else 0.0))[0] == "c"
    # a flat scratch from 300 on, pretrained ahead only at 100: they meet at its plateau: outcome (b)
    flat = {100: {s: 0.3 for s in range(3)}, **{n: {s: 0.5 + 0.001 * s for s in range(3)} for n in NS[1:]}}
    assert plateau(flat, NS) == 300
    pre = {n: {s: v + (0.2 if n == 100 else 0.0) + 0.001 * ((s * 7 + n) % 3 - 1) for s, v in flat[n].items()}
           for n in NS}
    assert outcome(Curve("1111", "r", "c", "m", True, flat, pre))[0] == "b"
    assert plateau({n: {0: float(n)} for n in NS}, NS) is None  # one seed: no plateau judgement


def test_f3_within_group_agreement_and_permutation_test():
    x = np.array([0.1, 0.5, 0.3, 0.9])
    ys = np.array([[1, 2, 3, 4], [4, 3, 2, 1], [0.2, 0.6, 0.4, 0.8]])
    assert tau_batch(x, ys) == pytest.approx([stats.kendalltau(x, y).statistic for y in ys])
    rng = np.random.default_rng(0)
    curves = []
    for d in ("1111", "0111", "1011", "1101"):
        for m, q in zip(("a", "b", "c", "d"), (0.0, 0.05, 0.1, 0.15)):
            curves.append(make_curve(lambda n, q=q: q, dataset=d, method=m, rng=rng,
                                     linear=lambda n, q=q: {s: 0.1 + q for s in range(3)}))
    f = f3(curves)  # the linear probe ranks methods exactly as finetuning: contradicted
    assert f["verdict"] == "contradicted" and f["summary"]["tau"] == pytest.approx(1.0) and f["summary"]["p"] < 0.01
    assert f3(curves[:2])["verdict"] == "not measured"


def test_f4_single_dataset_not_measured_and_matched_pairs():
    c = make_curve(lambda n: 0.1)
    assert f4([c])["verdict"] == "not measured" and "one dataset" in f4([c])["reason"]
    # Texture on (1xxx) doubles the gain; the other datasets differ from 1111 in one factor each.
    rng = np.random.default_rng(2)
    curves = [make_curve(lambda n, g=g: g * (100 / n) ** 0.3, dataset=d, rng=rng)
              for d, g in (("1111", 0.2), ("0111", 0.05), ("1011", 0.2), ("0011", 0.05), ("1101", 0.2), ("0101", 0.05))]
    f = f4(curves)
    t = next(e for e in f["evidence"] if e["factor"] == "T")
    assert t["pairs"] == 3 and t["ci_low"] > 0
    assert f["verdict"] == "supported"
    assert {e["factor"] for e in f["evidence"]} == {"T", "C", "V"}


def test_f5_and_all_findings_on_one_backbone():
    c = make_curve(lambda n: 0.1)
    assert f5([c])["verdict"] == "not measured"
    out = findings([c])
    assert [f["id"] for f in out] == ["F1", "F2", "F3", "F4", "F5"]
    assert out[1]["verdict"] == "not measured" and out[2]["verdict"] == "not measured"
    big = make_curve(lambda n: 0.3, backbone="resnet50")
    small = make_curve(lambda n: 0.02, backbone="resnet9")
    assert f5([big, small])["verdict"] in ("supported", "inconclusive")


def test_undefined_statistics_are_null_in_summary_json():
    import json

    from selfstudy.study.analysis import json_safe

    # Three identical methods on two tasks: every rank is tied, Kendall τ is undefined (NaN).
    curves = [make_curve(lambda n: 0.1, task=t, method=m, noise=0.0) for t in ("a", "b") for m in ("x", "y", "z")]
    out = json_safe(findings(curves))
    text = json.dumps(out, allow_nan=False)  # strict JSON: no NaN
    f2 = json.loads(text)[1]
    assert f2["id"] == "F2" and f2["verdict"] in ("inconclusive", "not measured")


def test_f2_rankings_that_flip_between_tasks_support_and_equal_ones_contradict():
    from selfstudy.study.findings import f2

    rng = np.random.default_rng(4)
    gains = {"x": 0.02, "y": 0.08, "z": 0.15}
    same = [make_curve(lambda n, g=g: g, task=t, method=m, rng=rng) for t in ("a", "b") for m, g in gains.items()]
    flipped = [make_curve(lambda n, g=(g if t == "a" else 0.17 - g): g, task=t, method=m, rng=rng)
               for t in ("a", "b") for m, g in gains.items()]
    assert f2(same)["verdict"] == "contradicted" and f2(same)["summary"]["tau"] == pytest.approx(1.0)
    assert f2(flipped)["verdict"] == "supported" and f2(flipped)["summary"]["tau"] == pytest.approx(-1.0)


def test_compare_backbones_pairs_seeds_and_reuses_f5s_differences():
    rng = np.random.default_rng(5)
    # a constant gain of 0.1 log(k) is scratch at k n: U = k - 1 where k n is within the scratch range
    small = make_curve(lambda n: 0.1 * math.log(1.5), backbone="resnet9", rng=rng)
    big = make_curve(lambda n: 0.1 * math.log(2.5), backbone="resnet50", rng=rng)
    assert sorted(["resnet50", "resnet9", "resnet18"], key=backbone_key) == ["resnet9", "resnet18", "resnet50"]
    (c,) = compare_backbones([small, big], bootstrap=300)
    assert c["backbones"] == ["resnet50", "resnet9"] and c["seeds"] == 3 and c["verdict"] == "higher"
    by = {p["n"]: p for p in c["points"]}
    ub, us = ({p.n: p for p in x.utility} for x in (big, small))
    for n in (100, 300, 1000):
        p = by[n]
        assert p["delta_u"] == pytest.approx(ub[n].value - us[n].value)  # the reported U's difference
        assert 0 < p["delta_u_ci_low"] < 1.0 < p["delta_u_ci_high"] and p["delta_u_ci_high"] - p["delta_u_ci_low"] > 0
        # Δ(big) − Δ(small) paired per seed, a t-interval
        g = [(big.pretrained[n][s] - big.scratch[n][s]) - (small.pretrained[n][s] - small.scratch[n][s])
             for s in range(3)]
        assert p["gain_diff"] == pytest.approx(np.mean(g)) and p["seeds"] == 3
        half = stats.t.ppf(0.975, 2) * np.std(g, ddof=1) / math.sqrt(3)
        assert p["gain_diff_ci_low"] == pytest.approx(np.mean(g) - half)
    assert by[3000]["delta_u"] is None and by[3000]["by"] == "gain"  # 2.5 x 3000 is past the scratch range
    assert c["sentence"].startswith("resnet50's utility is higher than resnet9's at n=100")
    # F5 is the mean of the same point differences over its one (dataset, task) unit
    f = f5([small, big])
    values = [p["delta_u"] for p in c["points"] if p["delta_u"] is not None]
    assert f["evidence"][0]["backbones"] == ["resnet50", "resnet9"]
    assert f["evidence"][0]["delta_u"] == pytest.approx(np.mean(values))
    # the same curve on both backbones: ΔU 0 at every count, nothing shown
    same = Curve(**{**small.__dict__, "backbone": "resnet50"})
    (c0,) = compare_backbones([small, same], bootstrap=100)
    assert c0["verdict"] == "inconclusive" and all(p["counts"] == 0 for p in c0["points"])
    # seeds that do not pair: the differences stand, without intervals
    other = Curve(**{**big.__dict__, "scratch": {n: {s + 10: v for s, v in d.items()} for n, d in big.scratch.items()},
                     "pretrained": {n: {s + 10: v for s, v in d.items()} for n, d in big.pretrained.items()}})
    (cu,) = compare_backbones([small, other], bootstrap=100)
    assert cu["verdict"] == "no interval" and cu["seeds"] == 0
    assert cu["points"][0]["delta_u"] == pytest.approx(by[100]["delta_u"]) and cu["points"][0]["delta_u_ci_low"] is None
    assert cu["points"][0]["gain_diff"] is None
    # an error metric: a gain is a drop, and the verdict reads the same way
    flip = [Curve(**{**x.__dict__, "higher_is_better": False,
                     "scratch": {n: {s: -v for s, v in d.items()} for n, d in x.scratch.items()},
                     "pretrained": {n: {s: -v for s, v in d.items()} for n, d in x.pretrained.items()},
                     "utility": utility_curve({n: {s: -v for s, v in d.items()} for n, d in x.scratch.items()},
                                              {n: {s: -v for s, v in d.items()} for n, d in x.pretrained.items()},
                                              False, bootstrap=100)}) for x in (small, big)]
    (ce,) = compare_backbones(flip, bootstrap=300)
    assert ce["verdict"] == "higher" and ce["points"][0]["gain_diff"] == pytest.approx(by[100]["gain_diff"])
