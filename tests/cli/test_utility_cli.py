"""``selfstudy utility RESULTS.csv``: the point records, the flags and every bad input as one line, exit 2."""

import json
import math
import subprocess
import sys

import pytest

from selfstudy.cli.main import main


def write(tmp_path, text, name="r.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def curve_csv(seeds=(0, 1, 2), extra=""):
    lines = ["arm,n,seed,score"]
    for s in seeds:
        for n in (100, 300, 1000, 3000):
            v = 0.2 + 0.1 * math.log2(n / 100)
            lines.append(f"scratch,{n},{s},{v + 0.003 * s:.5f}")
            lines.append(f"simclr,{n},{s},{0.2 + 0.1 * math.log2(2 * n / 100) + 0.003 * s + 0.001 * (s % 2):.5f}")
    return "\n".join(lines) + "\n" + extra


def run_json(capsys, *argv):
    assert main(["utility", *map(str, argv), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_points_have_the_issue_schema(tmp_path, capsys):
    out = run_json(capsys, write(tmp_path, curve_csv()))
    pts = out["points"]
    assert len(pts) == 4 and [p["n"] for p in pts] == [100, 300, 1000, 3000]
    keys = ["task", "arm", "n", "kind", "value", "ci_low", "ci_high", "delta", "delta_ci_low", "delta_ci_high",
            "flags", "reason"]
    assert list(pts[0])[:len(keys)] == keys
    p300 = pts[1]
    assert p300["task"] is None and p300["arm"] == "simclr" and p300["kind"] == "value"
    assert p300["value"] == pytest.approx(1.0, abs=0.02)  # simclr(n) = scratch(2n)
    assert p300["ci_low"] < p300["value"] < p300["ci_high"]
    assert p300["delta"] == pytest.approx(0.1, abs=0.002) and p300["delta_ci_low"] > 0
    assert pts[-1]["kind"] == "lower" and pts[-1]["ci_low"] is None  # beyond scratch at 3000: a bound


def test_one_seed_lower_is_better_task_column_and_trivial(tmp_path, capsys):
    text = "task,arm,n,seed,score\n" + "".join(
        f"pose,{a},{n},0,{v}\n" for a, n, v in [("scratch", 100, 40.0), ("scratch", 1000, 20.0), ("rot", 100, 30.0)])
    out = run_json(capsys, write(tmp_path, text), "--lower-is-better")
    (p,) = out["points"]
    assert p["task"] == "pose" and p["kind"] == "value" and p["value"] > 0
    assert p["ci_low"] is None and "one_seed" in p["flags"] and p["delta"] == pytest.approx(-10.0)
    # The chance-level demo case through the CLI: not measurable, with the reason.
    text = "arm,n,seed,score\nscratch,100,0,0.22\nscratch,1000,0,0.25\nscratch,3000,0,0.259\npre,300,0,0.267\n"
    (p,) = run_json(capsys, write(tmp_path, text, "c.csv"), "--trivial", "0.264")["points"]
    assert p["kind"] == "not_measurable" and p["value"] is None and "trivial baseline" in p["reason"]


def test_baseline_name_and_powerlaw(tmp_path, capsys):
    text = curve_csv().replace("scratch,", "random,")
    out = run_json(capsys, write(tmp_path, text), "--baseline", "random", "--utility", "powerlaw", "--bootstrap", "50")
    assert out["utility"] == "powerlaw" and {p["arm"] for p in out["points"]} == {"simclr"}
    assert all(p["kind"] in ("value", "extrapolated", "upper", "lower") for p in out["points"])


def test_table_output(tmp_path, capsys):
    assert main(["utility", str(write(tmp_path, curve_csv()))]) == 0
    out = capsys.readouterr().out
    assert out.startswith("utility U(n)") and "simclr" in out and "≥" in out


@pytest.mark.parametrize("text,needle", [
    ("arm,n,score\nscratch,100,0.5\n", "no column seed"),
    ("arm,n,seed,score\nscratch,100,0,abc\n", "score 'abc' is not a finite number"),
    ("arm,n,seed,score\nscratch,x,0,0.5\n", "n 'x' is not a positive whole number"),
    ("arm,n,seed,score\nfoo,100,0,0.5\nfoo,300,0,0.6\nbar,100,0,0.7\n", "no baseline arm 'scratch'"),
    ("arm,n,seed,score\nscratch,100,0,0.5\nscratch,100,1,0.5\nbar,100,0,0.7\n", "two or more"),
    ("arm,n,seed,score\n", "has no rows"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, text, needle):
    assert main(["utility", str(write(tmp_path, text))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("selfstudy: error: ") and needle in err and err.count("\n") == 1


def test_missing_file_and_help(tmp_path):
    assert main(["utility", str(tmp_path / "none.csv")]) == 2
    r = subprocess.run([sys.executable, "-m", "selfstudy", "utility", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "example" in r.stdout and "--trivial" in r.stdout and "arm,n,seed,score" in r.stdout
