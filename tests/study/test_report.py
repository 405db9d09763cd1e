"""The report from synthetic rows: self-contained HTML with every figure, bounds, flags and the CSV."""

import csv
import math
import re

import pytest

from selfstudy.errors import UserError
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
