import subprocess
import sys

import pytest
import yaml

from selfstudy.cli.main import main
from selfstudy.study import runner
from selfstudy.study.db import ResultsDB

SPEC = {
    "name": "clitest",
    "datasets": {"factors": ["TCVL"], "n": 6000, "res": 32},
    "methods": ["scratch", "rotation"],
    "tasks": ["classification"],
    "protocols": ["finetune"],
    "labels": [100, 1000],
    "seeds": [0],
}


class FakeCells:
    """Stands in for the real pipeline: a deterministic result per cell, no training."""

    def __init__(self, spec, study_dir, data_root=None, progress=False):
        pass

    def __call__(self, cell):
        if cell.kind == "pretrain":
            return {"checkpoint": "none", "metrics": {}}
        acc = {100: 0.3, 1000: 0.6}[cell.n_labels] + (0.2 if cell.method != "scratch" else 0.0)
        return {"metric": "accuracy", "higher_is_better": True, "val": acc, "test": acc, "val_last": acc,
                "test_last": acc, "still_improving": False, "steps": 10, "seconds": 0.1,
                "metrics": {"test/accuracy": acc}, "subset_sha": "x"}


@pytest.fixture
def spec_file(tmp_path):
    f = tmp_path / "spec.yaml"
    f.write_text(yaml.safe_dump(SPEC))
    return f


def test_run_status_report(tmp_path, spec_file, monkeypatch, capsys):
    monkeypatch.setattr(runner, "PipelineCells", FakeCells)
    study = tmp_path / "study"
    assert main(["study", "run", str(spec_file), "--dir", str(study), "--no-progress", "seeds=[0,1]"]) == 0
    out = capsys.readouterr().out
    assert "utility" in out and f"report: {study / 'report.html'}" in out
    with ResultsDB.open(study) as db:
        downstream = db.rows()
        assert len(downstream) == 2 * 2 * 2  # methods x labels x seeds
        # budget: auto (the default): every finetune cell re-runs once at twice its budget; the fake
        # results gain nothing there, so each is decided converged at its own budget
        checks = db.rows(kind="check")
        assert len(checks) == len(downstream)
        assert sorted(c["check_of"] for c in checks) == sorted(r["cell_id"] for r in downstream)
        assert {c["budget_factor"] for c in checks} == {2.0}
        decisions = db.budget_decisions()
        assert set(decisions) == {r["cell_id"] for r in downstream}
        assert all(d["status"] == "converged" and d["counted_factor"] == 1.0 and d["gain"] == 0.0
                   for d in decisions.values())

    # 2 pretraining + 8 downstream + 8 budget checks
    assert main(["study", "status", str(study)]) == 0
    out = capsys.readouterr().out
    assert "study clitest" in out and "18/18 cells done" in out
    assert "pretrain    done 2  running 0  pending 0  failed 0" in out
    assert "check       done 8  running 0  pending 0  failed 0" in out

    # A row a killed run left 'running' shows as interrupted when no run holds the study.
    import sqlite3

    con = sqlite3.connect(study / "results.sqlite")
    with con:
        con.execute("UPDATE cells SET status='running' WHERE kind='pretrain'")
    con.close()
    assert main(["study", "status", str(study)]) == 0
    out = capsys.readouterr().out
    assert "16/18 cells done" in out and "interrupted: pretrain TCVL rotation resnet9-tiny s0" in out

    other = tmp_path / "elsewhere" / "r.html"
    assert main(["report", str(study / "results.sqlite"), "-o", str(other), "--bootstrap", "0"]) == 0
    assert other.is_file() and (other.parent / "cells.csv").is_file()
    assert "report:" in capsys.readouterr().out


def test_cells_dry_run(spec_file, capsys):
    assert main(["study", "cells", str(spec_file)]) == 0
    out = capsys.readouterr().out
    # budget: auto by default: each of the 4 finetune cells has its first check at twice the budget
    assert out.startswith("9 cells: 1 pretraining, 4 downstream, 4 budget checks")
    assert out.count("downstream  TCVL") == 4 and out.count("check       TCVL") == 4
    assert main(["study", "cells", "paper", "--count"]) == 0
    out = capsys.readouterr().out
    # 12 datasets x 4 methods x 2 backbones (resnet9, resnet50) x 3 seeds pretrained; pose is skipped on
    # the 6 fixed-viewpoint datasets: (12 + 6) task-datasets x 6 arms (scratch, scratch-cmc, 4 methods)
    # x 2 backbones x 2 protocols x 8 label counts x 3 seeds downstream; budget checks (finetune only):
    # the 18 task-datasets x 6 arms x 2 backbones at 2 label counts, seed 0
    pretraining, downstream, checks = 12 * 4 * 2 * 3, 18 * 6 * 2 * 2 * 8 * 3, 18 * 6 * 2 * 2
    assert pretraining + downstream + checks == 11088
    assert out.startswith(f"11088 cells: {pretraining} pretraining, {downstream} downstream, "
                          f"{checks} budget checks")
    assert out.count("note: skipped task pose") == 6


def test_cells_count_prints_the_finetune_budgets_in_samples(spec_file, capsys):
    assert main(["study", "cells", str(spec_file), "--count"]) == 0
    out = capsys.readouterr().out
    # The default Budget: clamp(ceil(200 n / 128), 500, 10000) steps x 128
    assert ("finetune budget, resnet9-tiny: samples seen per label count (planned steps x batch 128; early "
            "stopping may end a run sooner): n=100 64k (below the original 2M), n=1000 200k (below the "
            "original 2M)") in out
    assert "budget checks: 4 cell(s) re-run at x2 their budget" in out
    # The paper presets plan at least the original protocol's samples at every label count.
    outs = {}
    for preset in ("paper", "paper-dense", "paper-transfer"):
        assert main(["study", "cells", preset, "--count"]) == 0
        outs[preset] = out = capsys.readouterr().out
        assert "finetune budget, " in out and "below the original" not in out
    assert ("finetune budget, resnet9: samples seen per label count (planned steps x batch 128; early "
            "stopping may end a run sooner): n=100 2M, n=250 2M, n=1000 2M, n=4000 6M, n=20000 30M, "
            "n=50000 30M (cap), n=100000 30M (cap), n=200000 30M (cap)") in outs["paper"]


@pytest.mark.parametrize("args, fragment", [
    (["labels=[-100]"], "label count -100 is not allowed"),
    (["methods=[scratch,rotatoin]"], "unknown method 'rotatoin' (did you mean 'rotation'?)"),
    (["tasks=[depht]"], "unknown task"),
    (["backbones=[resnet7]"], "unknown backbone"),
    (["datasets.factors=[TCXL]"], "bad factor string"),
    (["lables=[100]"], "unknown key 'lables'"),
])
def test_bad_spec_exits_2_before_anything_runs(tmp_path, spec_file, args, fragment, capsys, monkeypatch):
    monkeypatch.setattr(runner, "PipelineCells", FakeCells)
    study = tmp_path / "never"
    assert main(["study", "run", str(spec_file), "--dir", str(study), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("selfstudy: error: ") and fragment in err and err.count("\n") == 1
    assert not study.exists()


def test_missing_things_exit_2(tmp_path, capsys):
    assert main(["study", "run", "no-such-preset"]) == 2
    err = capsys.readouterr().err
    assert "one of the presets " in err and all(p in err for p in ("own", "paper", "quick", "smoke"))
    assert main(["study", "status", str(tmp_path / "nope")]) == 2
    assert main(["report", str(tmp_path / "nope")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no results database" in capsys.readouterr().err


def test_ray_executor_without_ray_says_how_to_get_it(tmp_path, spec_file, capsys):
    try:
        import ray  # noqa: F401
        pytest.skip("ray is installed")
    except ImportError:
        pass
    assert main(["study", "run", str(spec_file), "--dir", str(tmp_path / "s"), "--executor", "ray"]) == 2
    assert "pip install ray" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_report_of_a_study_without_results(tmp_path, capsys):
    with ResultsDB.open(tmp_path, create=True):
        pass
    assert main(["report", str(tmp_path)]) == 2
    assert "no finished downstream cells" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["study", "run"], ["study", "status"], ["study", "cells"], ["report"]])
def test_help_has_examples(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv + ["--help"])
    assert e.value.code == 0
    assert "examples:" in capsys.readouterr().out


def test_exit_status_of_the_real_command(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "selfstudy", "study", "cells", "quick", "labels=[0]"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("selfstudy: error: preset quick with overrides: label count 0 is not "
                                   "allowed: label counts are positive whole numbers (100, 1000, or 1k)")


class LongerIsBetter(FakeCells):
    """FakeCells whose budget checks gain: at module level so that the local executor pickles it."""

    def __call__(self, cell):
        out = super().__call__(cell)
        if cell.kind == "check":  # twice the budget: +0.05 on scratch at 1000 labels
            out = {**out, "val": out["val"] + 0.05, "test": out["test"] + 0.05, "steps": 20}
        return out


def test_budget_checks_through_the_commands(tmp_path, spec_file, monkeypatch, capsys):
    monkeypatch.setattr(runner, "PipelineCells", LongerIsBetter)
    study = tmp_path / "study"
    argv = ["study", "run", str(spec_file), "--dir", str(study), "--no-progress",
            "budget_check.labels=[1000]", "budget_check.methods=[scratch]"]
    assert main(argv) == 0
    # budget: auto: the x2 check gained, so the cell ran again at x4, which gained nothing over x2:
    # converged, counting the x2 attempt
    assert ("budget check (counted budget: x2 for 1 cell): 1 of 2 doubling(s) gained more than 0.01"
            in capsys.readouterr().out)
    with ResultsDB.open(study) as db:
        (checked,) = [r for r in db.rows() if r["method"] == "scratch" and r["n_labels"] == 1000]
        assert [c["budget_factor"] for c in db.attempts(checked["cell_id"])] == [2.0, 4.0]
        decision = db.budget_decisions()[checked["cell_id"]]
        assert decision["status"] == "converged" and decision["counted_factor"] == 2.0
        assert decision["gain"] == 0.0
    assert main(["study", "status", str(study)]) == 0
    out = capsys.readouterr().out
    assert "7/7 cells done" in out and "check       done 2  running 0  pending 0  failed 0" in out
    assert main(["report", str(study), "--bootstrap", "0"]) == 0
    out = capsys.readouterr().out
    assert "budget check (counted budget: x2 for 1 cell): 1 of 2" in out
    assert "scratch n=1000 s0: val 0.6 -> 0.65" in out and "(x1 -> x2)" in out
    assert "Budget check" in (study / "report.html").read_text()
