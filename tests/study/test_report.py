"""The report from synthetic rows: self-contained HTML with every figure, bounds, flags and the CSV."""

import csv
import math
import re

import pytest

from selfstudy.errors import UserError
from selfstudy.study.analysis import BASELINE_ABSENT
from selfstudy.study.report import analyse, build_report, summary_table_text

NS = [100, 300, 1000, 3000]
SHIFT = {"rotation": 4.0, "simclr": 1.5}  # pretrained(n) = scratch(shift * n): utility = shift - 1


def scratch_acc(n: float, dataset: str) -> float:
    base = 0.25 if dataset == "1111" else 0.35
    return base + 0.15 * math.log(n / 100) / math.log(3)


def make_rows(datasets=("1111", "0000"), methods=("rotation", "simclr"), tasks=("classification", "pose-regression"),
              seeds=(0, 1), linear=True):
    rows = []

    def add(dataset, task, method, protocol, n, seed, acc, improving=False):
        error = task == "pose-regression"
        value = 90.0 * (1.0 - acc) if error else acc
        rows.append({
            "cell_id": f"{dataset}-{task}-{method}-{protocol}-{n}-{seed}", "dataset": dataset, "method": method,
            "backbone": "resnet9-tiny", "task": task, "protocol": protocol, "n_labels": n, "seed": seed,
            "status": "done", "metric": "angular_error" if error else "accuracy", "higher_is_better": not error,
            "test": value, "val": value, "test_last": value, "still_improving": improving, "steps": 300,
            "seconds": 7.5, "metrics": {"accuracy": acc, "loss": 1.0}, "config": {"lr": 0.001, "epochs": 10}})

    for d in datasets:
        for t in tasks:
            for n in NS:
                for s in seeds:
                    noise = 0.004 * (1 if s % 2 else -1)
                    add(d, t, "scratch", "finetune", n, s, scratch_acc(n, d) + noise,
                        improving=(d, t, n, s) == ("1111", "classification", 1000, 0))
                    for m in methods:
                        add(d, t, m, "finetune", n, s, scratch_acc(SHIFT[m] * n, d) + noise)
                        if linear:
                            add(d, t, m, "linear", n, s, 0.8 * scratch_acc(SHIFT[m] ** 2 * n, d) + noise)
    return rows


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "report.html"
    rows = make_rows()
    result = build_report(rows, out, spec={"name": "toy", "datasets": ["1111", "0000"]},
                          meta={"database": "study.sqlite"}, bootstrap=200)
    return rows, result


def test_html_is_self_contained_with_every_figure(full_report):
    rows, result = full_report
    page = result["html"].read_text()
    # accuracy + utility for 2 tasks, linear vs finetune (the confounded on/off factor figure is gone,
    # issue 9; F4's figure needs matched pairs, which 1111 vs 0000 are not)
    assert len(result["figures"]) == 5
    assert page.count('<img src="data:image/png;base64,') == len(result["figures"])
    for path in result["figures"]:
        assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.parent == result["html"].parent
    # Nothing refers to a file or a remote resource: only embedded data and in-page anchors.
    for ref in re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", page):
        assert ref.startswith("data:") or ref.startswith("#"), ref
    assert "<link" not in page and "<script" not in page
    assert "toy" in page and "study.sqlite" in page


def test_summary_values_bounds_and_flags(full_report):
    rows, result = full_report
    page = result["html"].read_text()
    summary = {(r["dataset"], r["task"], r["method"], r["n"]): r for r in result["summary"]}
    assert len(summary) == 2 * 2 * 2 * 4
    # simclr is scratch shifted x1.5 in labels on a log-linear curve: utility 0.5 inside the range.
    for t in ("classification", "pose-regression"):
        r = summary[("0000", t, "simclr", 1000)]
        assert r["kind"] == "value" and r["utility"] == pytest.approx(0.5, abs=1e-6)
    # rotation at 3000 labels matches scratch at 12000 > N_max = 3000: only U >= 3000/3000 - 1.
    r = summary[("1111", "classification", "rotation", 3000)]
    assert r["kind"] == "lower" and r["utility"] == pytest.approx(0.0) and r["text"].startswith("≥ 0.00")
    # the still-improving scratch cell (1111, classification, 1000 labels) flags utilities read from it
    assert summary[("1111", "classification", "rotation", 300)]["still_improving"]  # n_s = 1200 uses 1000
    assert not summary[("0000", "classification", "rotation", 300)]["still_improving"]
    assert "≥ 0.00" in page and "†" in page and "Honesty note" in page
    assert "1111-classification-scratch-finetune-1000-0" in page  # listed by name
    assert "utility_resnet9-tiny_classification.png" in page
    assert "Spearman" in page


def test_csv_has_one_line_per_row(full_report):
    rows, result = full_report
    lines = result["csv"].read_text().splitlines()
    assert len(lines) == len(rows) + 1
    parsed = list(csv.DictReader(lines))
    assert parsed[0]["cell_id"] == rows[0]["cell_id"]
    assert float(parsed[0]["test"]) == pytest.approx(rows[0]["test"])


def test_factor_and_correlation_results(full_report):
    _, result = full_report
    # 1111 and 0000 differ in every factor: no matched pair, so F4 is not measured (issue 9 removed the
    # confounded on/off table this test used to read).
    f4 = next(f for f in result["findings"] if f["id"] == "F4")
    assert f4["verdict"] == "not measured" and "exactly one factor" in f4["reason"]
    pooled = next(c for c in result["correlations"]
                  if (c["task"], c["scope"], c["against"]) == ("classification", "all", "finetune"))
    assert pooled["n"] == 2 * 2 * 4 and pooled["spearman"] > 0.9


def test_only_scratch_rows_render(tmp_path):
    rows = make_rows(datasets=("1111",), methods=(), tasks=("classification",), seeds=(0,), linear=False)
    result = build_report(rows, tmp_path / "r.html")
    page = result["html"].read_text()
    assert result["summary"] == []
    assert len(result["figures"]) == 1  # accuracy only
    assert page.count('<img src="data:image/png;base64,') == 1
    assert "No utility" in page and "Too few paired points" in page and "not measured" in page
    assert "no utility" in summary_table_text(rows)


def test_one_seed_one_task_no_linear_and_skipped_rows(tmp_path):
    rows = make_rows(datasets=("0110",), methods=("rotation",), tasks=("pose-regression",), seeds=(0,),
                     linear=False)
    rows.append(dict(rows[0], cell_id="broken", test=float("nan")))
    rows.append(dict(rows[0], cell_id="queued", status="pending"))
    rows.append(dict(rows[0], cell_id="crashed", status="failed", test=None, error="Traceback:\n  boom"))
    result = build_report(rows, tmp_path / "sub" / "r.html", bootstrap=50)
    page = result["html"].read_text()
    assert len(result["figures"]) == 2  # accuracy and utility
    assert "broken" in page and "not a finite number" in page and "queued" in page and "crashed" in page
    assert len(result["csv"].read_text().splitlines()) == len(rows) + 1
    # One seed: the interval collapses, the table shows the plain value.
    r = next(r for r in result["summary"] if r["n"] == 300)
    assert r["text"] == "3.00" and r["ci_low"] == r["ci_high"]


def test_summary_table_text_lists_each_method_at_each_n():
    rows = make_rows(datasets=("1111",), tasks=("classification",), linear=False)
    text = summary_table_text(rows, bootstrap=50)
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("dataset"))
    assert all(f"n={n}" in header for n in NS)
    rot = next(line for line in lines if " rotation " in line)
    assert "3.00" in rot and "≥ 0.00" in rot and "†" in rot
    assert "still improving" in text


def test_report_path_that_is_a_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="folder"):
        build_report(make_rows(), tmp_path)


def test_analysis_is_deterministic_and_takes_the_paper_rule():
    rows = make_rows(datasets=("1111",), tasks=("classification",), linear=False)
    a = analyse(rows, bootstrap=100, seed=5).groups[0].utility
    b = analyse(rows, bootstrap=100, seed=5).groups[0].utility
    assert a == b
    # rotation at 100 reaches scratch(400): raw-linear between 300 and 1000 on a log-linear curve.
    paper = analyse(rows, utility_method="paper", bootstrap=0).groups[0].utility["rotation"][0]
    n_s = 300 + 700 * math.log(4 / 3) / math.log(10 / 3)
    assert paper.value == pytest.approx(n_s / 100 - 1)
    with pytest.raises(UserError, match="utility method"):
        analyse(rows, utility_method="spline")


def test_budget_checks_follow_the_metric_direction():
    from selfstudy.study.report import apply_budget_checks

    def row(cid, method, val, hib=True):
        return {"cell_id": cid, "dataset": "1111", "backbone": "resnet9-tiny", "task": "depth", "method": method,
                "protocol": "finetune", "n_labels": 100, "seed": 0, "metric": "absrel",
                "higher_is_better": hib, "val": val, "test": val, "steps": 10, "still_improving": False}

    rows = [row("a", "scratch", 0.30, hib=False), row("b", "rotation", 0.20, hib=False), row("c", "simclr", 0.5)]
    checks = [{**row("a2", "scratch", 0.25, hib=False), "config": {"check_of": "a", "budget_factor": 2.0}},
              {**row("b2", "rotation", 0.205, hib=False), "config": {"check_of": "b", "budget_factor": 2.0}},
              {**row("c2", "simclr", 0.9), "config": {"check_of": "missing", "budget_factor": 2.0}}]
    marked, table = apply_budget_checks(rows, checks, tolerance=0.01)
    by = {r["cell_id"]: r for r in marked}
    # An error that drops by 0.05 with twice the budget is a gain: under budget. A rise is no gain.
    assert by["a"]["under_budget"] is True and by["b"]["under_budget"] is False
    assert [(t["method"], round(t["gain"], 4), t["under_budget"]) for t in table] == \
        [("rotation", -0.005, False), ("scratch", 0.05, True)]
    assert "under_budget" not in rows[0]  # the caller's rows are left as they were
    text = summary_table_text(marked, checks=table)
    assert "budget check (x2 budget): 1 of 2 re-run cell(s) gained more than 0.01 in validation absrel" in text
    assert "scratch n=100 s0: val 0.3 -> 0.25" in text


def test_summary_json_is_what_the_html_and_text_render(full_report):
    import json

    _, result = full_report
    record = json.loads(result["json"].read_text())
    assert result["json"].parent == result["html"].parent and result["json"].name == "summary.json"
    assert [f["id"] for f in record["findings"]] == ["F1", "F2", "F3", "F4", "F5"]
    assert all(f["verdict"] in ("supported", "contradicted", "inconclusive", "not measured")
               for f in record["findings"])
    assert len(record["points"]) == len(result["summary"]) == 32
    p = next(p for p in record["points"] if (p["dataset"], p["task"], p["method"], p["n"]) ==
             ("0000", "classification", "simclr", 1000))
    assert p["kind"] == "value" and p["value"] == pytest.approx(0.5, abs=1e-6) and p["delta"] > 0
    assert set(record["flags"]) >= {"still_improving_cells", "inconsistent", "not_measurable", "one_seed"}
    page = result["html"].read_text()
    assert "Findings" in page and "F1" in page and "Δ" in page and "summary.json" in page
    assert result["text"].startswith("utility U(n)") and "findings:" in result["text"]
    assert "t-interval over seeds" in result["text"]


def test_chance_level_cells_are_not_measurable_and_one_seed_says_so(tmp_path):
    # The demo's pose on TCVL: scratch reaches the majority-class rate only, recorded by every cell.
    def row(method, n, acc):
        return {"cell_id": f"{method}-{n}", "dataset": "1111", "method": method, "backbone": "resnet9-tiny",
                "task": "pose", "protocol": "finetune", "n_labels": n, "seed": 0, "status": "done",
                "metric": "accuracy", "higher_is_better": True, "test": acc, "val": acc, "steps": 10,
                "metrics": {"test/accuracy": acc, "test/trivial": 0.264}}

    rows = [row("scratch", n, a) for n, a in ((100, 0.22), (300, 0.24), (1000, 0.25), (3000, 0.259))]
    rows.append(row("rotation", 300, 0.267))
    result = build_report(rows, tmp_path / "r.html", bootstrap=50)
    (p,) = result["summary"]
    assert p["kind"] == "not_measurable" and p["value"] is None and "trivial baseline 0.264" in p["reason"]
    assert p["trivial"] == pytest.approx(0.264)
    page = result["html"].read_text()
    assert "n/m" in page and "trivial baseline 0.264" in page and "≥ 9.00" not in page
    assert "One seed: there are no intervals" in page and "bootstrap interval" not in page
    assert "one seed: no intervals" in result["text"] and "[95 %" not in result["text"]


# ---- utility against a named baseline arm (issue 12 item 5: utility.baseline, e.g. a weights file)

WEIGHTS = "weights:imagenet"
# weights:imagenet is monotone in n, so the isotonic fit is its means; an arm that reaches its value at
# 2n has U = 2n/n - 1 = 1 exactly, and Δ = its gain at the same n.
W_CURVE = {100: 0.50, 200: 0.60, 400: 0.70, 800: 0.80}
S_CURVE = {100: 0.30, 200: 0.35, 400: 0.40, 800: 0.45}


def baseline_rows(backbone="resnet18", weights=True, bad=False):
    noise = {0: -0.01, 1: 0.0, 2: 0.01}  # the same per seed in every arm: paired, intervals collapse

    def row(method, n, seed, value):
        return {"cell_id": f"{backbone}-{method}-{n}-{seed}", "dataset": "own", "method": method,
                "backbone": backbone, "task": "classification", "protocol": "finetune", "n_labels": n,
                "seed": seed, "status": "done", "metric": "accuracy", "higher_is_better": True,
                "test": value + noise[seed], "val": value, "steps": 10}

    rows = []
    for s in noise:
        for n in W_CURVE:
            rows.append(row("scratch", n, s, S_CURVE[n]))
            if weights:
                rows.append(row(WEIGHTS, n, s, W_CURVE[n]))
        for n in (100, 200, 400):
            rows.append(row("simclr", n, s, W_CURVE[2 * n]))  # = weights at twice the labels
            if bad:
                rows.append(row("rotation", n, s, W_CURVE[n] - 0.1))  # worse than the weights at every n
    return rows


def test_utility_against_a_weights_arm_by_hand():
    rows = baseline_rows()
    a = analyse(rows, bootstrap=200, baseline=WEIGHTS)
    (g,) = a.groups
    assert a.baseline == WEIGHTS and g.baselines == {"simclr": WEIGHTS}
    assert set(g.utility) == {"simclr"}  # neither the baseline nor scratch gets a utility against it
    pts = g.utility["simclr"]
    assert [p.n for p in pts] == [100, 200, 400] and all(p.kind == "value" for p in pts)
    for p in pts:
        assert p.value == pytest.approx(1.0) and p.n_scratch_equiv == pytest.approx(2 * p.n)
        assert p.delta == pytest.approx(W_CURVE[2 * p.n] - W_CURVE[p.n])  # +0.1
        assert BASELINE_ABSENT not in p.flags
    # against scratch (the default) simclr is above every scratch mean: lower bounds, as before
    default = analyse(rows, bootstrap=200)
    assert default.baseline == "scratch" and default.groups[0].baselines["simclr"] == "scratch"
    assert [p.kind for p in default.groups[0].utility["simclr"]] == ["lower"] * 3
    assert analyse(rows, bootstrap=200, baseline="scratch").groups[0].utility == default.groups[0].utility
    # the default is today's numbers: utility_curve against scratch, seeded as analyse always seeded it
    import zlib

    from selfstudy.study.utility import utility_curve

    by = {}
    for r in rows:
        by.setdefault(r["method"], {}).setdefault(r["n_labels"], {})[r["seed"]] = r["test"]
    seed = zlib.crc32(b"own|resnet18|classification|simclr") % 2**63
    assert default.groups[0].utility["simclr"] == utility_curve(by["scratch"], by["simclr"], True,
                                                                bootstrap=200, seed=seed)
    assert default.groups[0].utility[WEIGHTS] == utility_curve(
        by["scratch"], by[WEIGHTS], True, bootstrap=200, seed=zlib.crc32(
            f"own|resnet18|classification|{WEIGHTS}".encode()) % 2**63)


def test_a_group_without_the_baseline_falls_back_and_says_so():
    rows = baseline_rows() + baseline_rows(backbone="resnet50", weights=False)
    a = analyse(rows, bootstrap=50, baseline=WEIGHTS)
    g18, g50 = sorted(a.groups, key=lambda g: g.backbone)
    assert g18.baselines == {"simclr": WEIGHTS} and g50.baselines == {"simclr": "scratch"}
    for p in g50.utility["simclr"]:
        assert BASELINE_ABSENT in p.flags and "no finished weights:imagenet finetune cells" in p.reason
        assert "against scratch instead" in p.reason
    with pytest.raises(UserError, match="arm name"):
        analyse(rows, baseline=3)


def test_report_and_summary_json_record_the_baseline(tmp_path):
    import json

    rows = baseline_rows() + baseline_rows(backbone="resnet50", weights=False)
    result = build_report(rows, tmp_path / "r.html", bootstrap=50, baseline=WEIGHTS)
    record = json.loads(result["json"].read_text())
    assert record["baseline"] == WEIGHTS
    by = {(p["backbone"], p["n"]): p for p in record["points"]}
    assert len(record["points"]) == 6 and {p["method"] for p in record["points"]} == {"simclr"}
    for n in (100, 200, 400):
        p = by[("resnet18", n)]
        assert p["baseline"] == WEIGHTS and p["value"] == pytest.approx(1.0) and p["delta"] == pytest.approx(0.1)
        assert by[("resnet50", n)]["baseline"] == "scratch" and BASELINE_ABSENT in by[("resnet50", n)]["flags"]
    assert record["flags"][BASELINE_ABSENT] == 3
    text = result["text"]
    assert text.startswith("utility U(n) = n_weights:imagenet/n - 1")
    assert "against weights:imagenet (utility.baseline)" in text
    assert "resnet50 classification: no finished weights:imagenet finetune cells, against scratch instead" in text
    page = result["html"].read_text()
    assert "simclr vs weights:imagenet" in page and "simclr vs scratch" in page
    assert "the table is against scratch" not in page
    # summary_table_text renders the same analysis
    assert summary_table_text(rows, bootstrap=50, baseline=WEIGHTS) == text
    # the default: against scratch, as before, and no baseline lines
    plain = build_report(rows, tmp_path / "plain" / "r.html", bootstrap=50)
    assert plain["record"]["baseline"] == "scratch"
    assert {p["baseline"] for p in plain["record"]["points"]} == {"scratch"}
    assert "utility.baseline" not in plain["text"]


def test_the_report_says_plainly_when_pretraining_does_not_help(tmp_path):
    from selfstudy.study.analysis import help_verdicts

    rows = baseline_rows(bad=True)
    a = analyse(rows, bootstrap=50, baseline=WEIGHTS)
    verdicts = {v["method"]: v for v in help_verdicts(a)}
    assert verdicts["simclr"]["verdict"] == "helps" and verdicts["simclr"]["sentence"] == ""
    rot = verdicts["rotation"]
    assert rot["verdict"] == "does_not_help" and rot["baseline"] == WEIGHTS
    # rotation: ≤ 0.00 at 100 (below the weights arm's smallest count), U = -0.5 at 200 and 400, Δ = -0.1
    assert [str(p) for p in a.groups[0].utility["rotation"]][0] == "≤ 0.00"
    assert [p.value for p in a.groups[0].utility["rotation"]][1:] == [pytest.approx(-0.5)] * 2
    result = build_report(rows, tmp_path / "r.html", bootstrap=50, baseline=WEIGHTS)
    line = ("own · classification · resnet18: pretraining does not help: rotation is no better than "
            "weights:imagenet at any measured label count (every U and Δ interval at or below 0)")
    assert line in result["text"] and line in result["html"].read_text()
    assert {v["method"]: v["verdict"] for v in result["record"]["help"]} == {"rotation": "does_not_help",
                                                                           "simclr": "helps"}
    # no method helps: one overall sentence first
    only_bad = [r for r in rows if r["method"] != "simclr"]
    text = summary_table_text(only_bad, bootstrap=50, baseline=WEIGHTS)
    assert "Pretraining does not help against weights:imagenet in this study" in text
    # against scratch the same arm helps (it is above every scratch count): no such sentence
    assert "does not help" not in summary_table_text(only_bad, bootstrap=50)


def test_write_report_uses_the_specs_baseline(tmp_path):
    import json

    from selfstudy.study.runner import SUMMARY_NAME, write_report

    rows = baseline_rows()
    html, summary = write_report(rows, tmp_path, {"name": "w", "utility": {"baseline": WEIGHTS}}, None,
                                 bootstrap=50)
    record = json.loads((tmp_path / "summary.json").read_text())
    assert record["baseline"] == WEIGHTS and {p["baseline"] for p in record["points"]} == {WEIGHTS}
    assert (tmp_path / SUMMARY_NAME).read_text() == summary + "\n"
    assert summary == summary_table_text(rows, bootstrap=50, baseline=WEIGHTS)
    _, plain = write_report(rows, tmp_path / "plain", {"name": "s"}, None, bootstrap=50)
    assert plain == summary_table_text(rows, bootstrap=50)


def test_does_not_help_reads_an_error_metric_in_its_direction():
    from selfstudy.study.analysis import help_verdicts

    rows = [dict(r, test=1.0 - r["test"], metric="error", higher_is_better=False) for r in baseline_rows(bad=True)]
    verdicts = {v["method"]: v["verdict"] for v in help_verdicts(analyse(rows, bootstrap=50, baseline=WEIGHTS))}
    assert verdicts == {"rotation": "does_not_help", "simclr": "helps"}


def test_a_shared_pretraining_is_noted_in_the_summary_json_text_and_html(tmp_path):
    import json

    from selfstudy.study.runner import report_notes, write_report

    spec = {"name": "s", "seeds": [0, 1, 2],
            "methods": {"scratch": {}, "rotation": {"epochs": 2, "shared": True}, "simclr": {"epochs": 1}}}
    notes = report_notes(spec)
    assert notes == ["rotation: one pretraining (seed 0) shared by every seed; the seeds vary its finetuning "
                     "only, so its intervals hold the finetuning noise, not the noise of pretraining"]
    assert report_notes({**spec, "seeds": [0]}) == []  # one seed: no interval to qualify
    assert report_notes({"name": "s", "seeds": [0, 1], "methods": {"rotation": {}}}) == []
    html, summary = write_report(make_rows(), tmp_path, spec, None, bootstrap=50)
    assert summary.splitlines()[0] == f"note: {notes[0]}"
    assert json.loads((tmp_path / "summary.json").read_text())["notes"] == notes
    assert "<b>Note:</b> rotation: one pretraining (seed 0)" in html.read_text()
    _, plain = write_report(make_rows(), tmp_path / "plain", {"name": "s"}, None, bootstrap=50)
    assert not plain.startswith("note:")
    assert "notes" not in json.loads((tmp_path / "plain" / "summary.json").read_text())
