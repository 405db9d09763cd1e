"""The study runner with an injected cell function (fast, deterministic), including a real
``kill -9`` of a study process and its resumption, and the real pipeline at toy scale (slow)."""

import hashlib
import io
import math
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from selfstudy.errors import UserError
from selfstudy.study.db import ResultsDB
from selfstudy.study.executor import InProcessExecutor, RayExecutor
from selfstudy.study.runner import run_study
from selfstudy.study.spec import load_spec, spec_from_dict

sys.path.insert(0, str(Path(__file__).parent))
from killing import done_count, final_rows, kill_at_done_counts, kill_when, rerun_matches  # noqa: E402

SPEC = {
    "name": "fake",
    "datasets": {"factors": ["TCVL"], "n": 6000, "res": 32},
    "methods": {"scratch": {}, "rotation": {"epochs": 2}, "simclr": {"epochs": 1}},
    "backbones": ["resnet9-tiny"],
    "tasks": ["classification", "pose"],
    "protocols": ["finetune", "linear"],
    "labels": [100, 300, 1000],
    "seeds": [0, 1],
}


def fake_result(cell) -> dict:
    """A deterministic result from the cell alone: pretrained arms beat scratch, more labels help; a
    budget check (budget: auto, on by default) scores as its cell did: converged at its first check."""
    key = cell.config.get("check_of") if cell.kind == "check" else cell.id
    u = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 2**32  # in [0, 1)
    if cell.kind == "pretrain":
        return {"checkpoint": f"pretrain/{cell.id}/final.pt", "steps": 10, "metrics": {"loss": u}}
    acc = 0.1 + 0.12 * math.log10(cell.n_labels) + (0.15 if cell.method != "scratch" else 0.0) + 0.02 * u
    return {"metric": "accuracy", "higher_is_better": True, "val": acc + 0.01, "test": acc,
            "val_last": acc, "test_last": acc - 0.01, "still_improving": False, "steps": 50,
            "seconds": 0.01, "metrics": {"test/accuracy": acc, "val/accuracy": acc + 0.01},
            "subset_sha": hashlib.sha256(f"{cell.n_labels}/{cell.seed}".encode()).hexdigest()[:12],
            "budget": {"max_steps": 50}}


class Recorder:
    def __init__(self, fail=(), interrupt_after=None, delay=0.0):
        self.calls = []
        self.fail = set(fail)
        self.interrupt_after = interrupt_after
        self.delay = delay

    def __call__(self, cell):
        if self.interrupt_after is not None and len(self.calls) >= self.interrupt_after:
            raise KeyboardInterrupt
        self.calls.append(cell)
        if self.delay:
            time.sleep(self.delay)
        if cell.id in self.fail:
            raise ValueError(f"cell {cell.id} broke")
        return fake_result(cell)


def test_runs_every_cell_once_and_reports(tmp_path):
    spec = spec_from_dict(SPEC)
    plan = spec.cells()
    fn = Recorder()
    out = io.StringIO()
    result = run_study(spec, tmp_path / "s", cell_fn=fn, progress=False, out=out)
    assert result.ok and result.done == result.total == len(plan) == result.ran
    # Pretraining first, each once; every downstream cell once.
    kinds = [c.kind for c in fn.calls]
    assert kinds == (["pretrain"] * len(plan.pretrain) + ["downstream"] * len(plan.downstream)
                     + ["check"] * len(plan.checks))
    assert sorted(c.id for c in fn.calls) == sorted(c.id for c in plan.all)
    with ResultsDB.open(tmp_path / "s") as db:
        rows = db.rows()
        assert len(rows) == len(plan.downstream)
        assert db.get_meta("spec")["name"] == "fake"
    assert (tmp_path / "s" / "report.html").is_file() and (tmp_path / "s" / "cells.csv").is_file()
    assert (tmp_path / "s" / "summary.txt").read_text().startswith("utility")
    text = out.getvalue()
    assert "utility" in text and "report:" in text and "rotation" in text
    assert (tmp_path / "s" / "spec.yaml").is_file()

    # A rerun has nothing to do and changes nothing.
    before = final_rows(tmp_path / "s")
    again = Recorder()
    result = run_study(spec, tmp_path / "s", cell_fn=again, progress=False, report=False)
    assert again.calls == [] and result.ran == 0 and result.ok
    assert final_rows(tmp_path / "s") == before


def test_interrupted_run_resumes_to_the_same_rows(tmp_path):
    spec = spec_from_dict(SPEC)
    run_study(spec, tmp_path / "full", cell_fn=Recorder(), progress=False, report=False)

    for k in (1, 9):  # stop during pretraining, then during downstream cells
        with pytest.raises(KeyboardInterrupt):
            run_study(spec, tmp_path / "cut", cell_fn=Recorder(interrupt_after=k), progress=False, report=False)
    statuses = {s for s, *_ in final_rows(tmp_path / "cut").values()}
    assert "running" not in statuses  # Ctrl-C hands the interrupted cell back
    fn = Recorder()
    result = run_study(spec, tmp_path / "cut", cell_fn=fn, progress=False, report=False)
    assert result.ok and result.ran == len(fn.calls) == len(spec.cells()) - 1 - 9
    assert final_rows(tmp_path / "cut") == final_rows(tmp_path / "full")


def test_a_cell_left_running_by_a_dead_process_runs_again(tmp_path):
    spec = spec_from_dict(SPEC)
    plan = spec.cells()
    run_study(spec, tmp_path / "s", cell_fn=Recorder(), progress=False, report=False)
    victim = plan.downstream[3]
    con = sqlite3.connect(tmp_path / "s" / "results.sqlite")
    with con:
        con.execute("UPDATE cells SET status='running', test=NULL, result=NULL WHERE cell_id=?", (victim.id,))
    con.close()
    fn = Recorder()
    run_study(spec, tmp_path / "s", cell_fn=fn, progress=False, report=False)
    assert [c.id for c in fn.calls] == [victim.id]
    assert final_rows(tmp_path / "s")[victim.id][0] == "done"


def test_failures_are_recorded_and_retried(tmp_path):
    spec = spec_from_dict(SPEC)
    plan = spec.cells()
    bad_pre = next(c for c in plan.pretrain if c.method == "simclr" and c.seed == 0)
    bad_down = next(c for c in plan.downstream if c.method == "scratch")
    fn = Recorder(fail={bad_pre.id, bad_down.id})
    out = io.StringIO()
    result = run_study(spec, tmp_path / "s", cell_fn=fn, progress=False, report=False, out=out)
    dependants = [c for c in plan.downstream + plan.checks if c.pretrain_id == bad_pre.id]
    assert not result.ok and len(result.failed) == 2 + len(dependants)
    called = {c.id for c in fn.calls}
    assert not called & {c.id for c in dependants}  # never run without their checkpoint
    status = {k: v[0] for k, v in final_rows(tmp_path / "s").items()}
    assert status[bad_pre.id] == status[bad_down.id] == "failed"
    assert all(status[c.id] == "failed" for c in dependants)
    assert "ValueError" in out.getvalue()
    with ResultsDB.open(tmp_path / "s") as db:
        assert "broke" in db.get(bad_down.id)["error"]

    retry = Recorder()
    result = run_study(spec, tmp_path / "s", cell_fn=retry, progress=False, report=False)
    assert result.ok
    assert {c.id for c in retry.calls} == {bad_pre.id, bad_down.id} | {c.id for c in dependants}


def test_non_dict_result_is_a_failure(tmp_path):
    spec = spec_from_dict({**SPEC, "methods": ["scratch"], "tasks": ["classification"], "seeds": [0]})
    result = run_study(spec, tmp_path / "s", cell_fn=lambda cell: 0.5, progress=False, report=False)
    assert not result.ok and "not a result dict" in result.failed[0][1]


def test_one_run_per_study_folder(tmp_path):
    spec = spec_from_dict({**SPEC, "methods": ["scratch"], "tasks": ["classification"], "seeds": [0]})
    inner = {}

    def nested(cell):
        if not inner:
            with pytest.raises(UserError, match="in use by another run") as e:
                run_study(spec, tmp_path / "s", cell_fn=fake_result, progress=False, report=False)
            inner["msg"] = str(e.value)
        return fake_result(cell)

    run_study(spec, tmp_path / "s", cell_fn=nested, progress=False, report=False)
    assert f"pid {os.getpid()}" in inner["msg"]


def test_progress_lines_and_eta(tmp_path):
    spec = spec_from_dict({**SPEC, "seeds": [0]})
    err = io.StringIO()
    import contextlib

    with contextlib.redirect_stderr(err):
        run_study(spec, tmp_path / "s", cell_fn=Recorder(), progress=True, report=False)
    text = err.getvalue()
    n = len(spec.cells())
    assert f"[1/{n}] pretrain ---- " not in text  # the dataset is TCVL
    assert f"[1/{n}] pretrain TCVL rotation resnet9-tiny s0 (ETA ?)" in text
    assert f"[{n}/{n}]" in text and "ETA" in text


def test_executors(tmp_path):
    def fn(x):
        if x == 2:
            raise ValueError("two")
        return x * 10

    out = list(InProcessExecutor().map(fn, [1, 2, 3]))
    assert [c for c, _ in out] == [1, 2, 3]
    assert out[0][1] == 10 and isinstance(out[1][1], ValueError) and out[2][1] == 30
    try:
        import ray  # noqa: F401
    except ImportError:
        with pytest.raises(UserError, match="the ray executor needs Ray"):
            RayExecutor()


class _FakeRay:
    """Just enough of Ray's API to run RayExecutor.map in-process: tasks run when submitted."""

    class _Remote:
        def __init__(self, ray, fn):
            self.ray, self.fn, self.opts = ray, fn, {}

        def options(self, **kw):
            self.opts = kw
            return self

        def remote(self, *args):
            self.ray.submitted.append(self.opts)
            try:
                return _FakeRay.Ref("ok", self.fn(*args))
            except Exception as e:  # noqa: BLE001
                return _FakeRay.Ref("err", e)

    class Ref:  # hashable, like an ObjectRef
        def __init__(self, kind, value):
            self.kind, self.value = kind, value

    def __init__(self, gpus):
        self.gpus, self.submitted, self.address = gpus, [], "unset"

    def is_initialized(self):
        return False

    def init(self, address=None, ignore_reinit_error=False):
        self.address = address

    def cluster_resources(self):
        return {"CPU": 8.0, "GPU": float(self.gpus)}

    def remote(self, fn):
        return self._Remote(self, fn)

    def wait(self, refs, num_returns=1):
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref):
        if ref.kind == "err":
            raise ref.value
        return ref.value


@pytest.mark.parametrize("value, want", [("", None), ("  ", None), ("ray://head:10001", "ray://head:10001")])
def test_an_empty_ray_address_means_unset(monkeypatch, value, want):
    fake = _FakeRay(0)
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setenv("RAY_ADDRESS", value)
    RayExecutor()
    assert fake.address == want
    assert os.environ.get("RAY_ADDRESS") == (value if want else None)


@pytest.mark.parametrize("gpus", [2, 0])
def test_ray_executor_with_a_stand_in_ray(monkeypatch, gpus):
    fake = _FakeRay(gpus)
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setenv("SELFSTUDY_RAY_GPUS_DOWNSTREAM", "0.5")
    plan = spec_from_dict({**SPEC, "seeds": [0]}).cells()
    cells = plan.pretrain + plan.downstream[:3]
    broken = plan.downstream[1].id

    def fn(cell):
        if cell.id == broken:
            raise ValueError("no")
        return fake_result(cell)

    ex = RayExecutor(max_in_flight=2)
    out = list(ex.map(fn, cells))
    assert [c.id for c, _ in out] == [c.id for c in cells]
    assert isinstance(dict((c.id, r) for c, r in out)[broken], ValueError)
    assert sum(isinstance(r, dict) for _, r in out) == len(cells) - 1
    want = {"pretrain": 1.0, "downstream": 0.5} if gpus else {"pretrain": 0.0, "downstream": 0.0}
    assert [o["num_gpus"] for o in fake.submitted] == [want[c.kind] for c in cells]
    assert all(o["num_cpus"] == 2.0 for o in fake.submitted)


# --- a real process, really killed ----------------------------------------------------------------

_CHILD = """
import sys, time
sys.path.insert(0, {here!r})
from test_runner import SPEC, Recorder
from selfstudy.study.runner import run_study
from selfstudy.study.spec import spec_from_dict
run_study(spec_from_dict(SPEC), {study!r}, cell_fn=Recorder(delay={delay}), progress=False, report=False)
"""


def _child(study, delay):
    code = _CHILD.format(here=str(Path(__file__).parent), study=str(study), delay=delay)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_sigkill_mid_run_then_rerun_gives_the_uninterrupted_rows(tmp_path):
    spec = spec_from_dict(SPEC)
    total = len(spec.cells())
    run_study(spec, tmp_path / "full", cell_fn=Recorder(), progress=False, report=False)

    study = tmp_path / "killed"
    # Kill during pretraining, then in the middle of downstream cells.
    kill_at_done_counts(lambda: _child(study, delay=0.05), study, (3, total // 2), timeout=120)
    done = done_count(study)
    assert 0 < done < total
    with ResultsDB.open(study) as db:
        assert db.counts()["pretrain"]["running"] + db.counts()["downstream"]["running"] == 1

    rerun_matches(_child(study, delay=0.0), study, tmp_path / "full", total)


# --- the real pipeline at toy scale ---------------------------------------------------------------


@pytest.mark.slow
def test_smoke_preset_runs_the_real_pipeline(tmp_path):
    pytest.importorskip("selfstudy.data.generate")
    pytest.importorskip("selfstudy.train.finetune")
    pytest.importorskip("selfstudy.train.probe")
    spec = load_spec("smoke")
    out = io.StringIO()
    result = run_study(spec, tmp_path / "s", progress=False, data_root=tmp_path / "data", out=out)
    assert result.ok, result.failed
    plan = spec.cells()
    with ResultsDB.open(tmp_path / "s") as db:
        rows = db.rows()
        pre = db.rows(kind="pretrain")
    assert len(rows) == len(plan.downstream) and len(pre) == len(plan.pretrain)
    assert (tmp_path / "s" / "pretrain" / pre[0]["cell_id"] / "final.pt").is_file()
    for r in rows:
        assert r["metric"] and 0.0 <= r["test"] <= 1.0 and r["steps"] > 0
    assert (tmp_path / "s" / "report.html").is_file()
    assert "report:" in out.getvalue()
    # The budget check re-ran scratch at 20 labels with twice the steps, and the report says so.
    with ResultsDB.open(tmp_path / "s") as db:
        (check,) = db.rows(kind="check")
    orig = next(r for r in rows if r["cell_id"] == check["config"]["check_of"])
    assert (orig["method"], orig["n_labels"]) == ("scratch", 20) and check["steps"] == 2 * orig["steps"]
    assert "budget check (counted budget: x" in out.getvalue()
    # Rerun: nothing runs, same rows.
    before = final_rows(tmp_path / "s")
    again = run_study(spec, tmp_path / "s", progress=False, data_root=tmp_path / "data", report=False)
    assert again.ran == 0 and final_rows(tmp_path / "s") == before


@pytest.mark.slow
def test_real_pipeline_killed_in_pretraining_resumes_to_the_same_rows(tmp_path):
    """``kill -9`` of ``selfstudy study run`` while it pretrains (after a ``last.pt`` was written):
    the rerun resumes pretraining from it and ends with the rows of an uninterrupted run."""
    pytest.importorskip("selfstudy.data.generate")
    pytest.importorskip("selfstudy.train.finetune")
    pytest.importorskip("selfstudy.train.probe")
    overrides = ["methods.rotation.epochs=4", "methods.rotation.overrides.checkpoint_every=2",
                 "protocols=[finetune]"]
    data = tmp_path / "data"
    spec = load_spec("smoke", overrides)
    run_study(spec, tmp_path / "full", progress=False, data_root=data, report=False)
    pre_id = spec.cells().pretrain[0].id

    study = tmp_path / "killed"
    cmd = [sys.executable, "-m", "selfstudy", "study", "run", "smoke", "--dir", str(study), "--data-root",
           str(data), "--no-progress", "--no-report", *overrides]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = study / "pretrain" / pre_id / "last.pt"
    kill_when(proc, last.exists, timeout=300, poll=0.01)

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    with ResultsDB.open(tmp_path / "full") as db:
        want = {r["cell_id"]: (r["test"], r["val"], r["steps"], r["subset_sha"]) for r in db.rows()}
    with ResultsDB.open(study) as db:
        got = {r["cell_id"]: (r["test"], r["val"], r["steps"], r["subset_sha"]) for r in db.rows()}
        assert len(db.rows(status=None, kind=None)) == len(spec.cells())
    assert got == want


@pytest.mark.slow
def test_a_multi_object_study_runs_segmentation_end_to_end(tmp_path):
    pytest.importorskip("selfstudy.data.generate")
    pytest.importorskip("selfstudy.train.finetune")
    spec = spec_from_dict({
        "name": "multi",
        "datasets": {"factors": ["-CV-"], "n": 480, "res": 32, "models_per_class": 12, "multi": True},
        "methods": {"scratch": {}, "rotation": {"epochs": 1, "overrides": {"batch_size": 64}}},
        "backbones": ["resnet9-tiny"], "tasks": ["classification", "segmentation"],
        "protocols": ["finetune", "knn"], "labels": [50], "seeds": [0],
        "finetune": {"epochs": 5, "min_steps": 10, "max_steps": 10, "batch_size": 16, "evals": 2,
                     "patience": 0, "val_size": 40, "test_size": 40},
        "device": "cpu", "precision": "fp32", "channels_last": False})
    plan = spec.cells()
    assert [(c.task, c.protocol) for c in plan.downstream] == [("segmentation", "finetune")] * 2
    result = run_study(spec, tmp_path / "s", progress=False, data_root=tmp_path / "data",
                       out=io.StringIO())
    assert result.ok, result.failed
    with ResultsDB.open(tmp_path / "s") as db:
        rows = db.rows()
    assert sorted(r["method"] for r in rows) == ["rotation", "scratch"]
    for r in rows:
        assert r["metric"] == "miou" and 0.0 <= r["test"] <= 1.0 and r["steps"] == 10
    datasets = list((tmp_path / "data").iterdir())
    assert len(datasets) == 1 and "multi" in datasets[0].name


def test_budget_checks_run_last_and_flag_cells_that_gain(tmp_path):
    # Check cells re-run the scratch finetune cells at n=100 (2 tasks x 2 seeds) with twice the budget,
    # then (budget: auto) again at 4 and 8 times while they gain. The fake pipeline makes every doubling
    # of seed 0 better by 0.05 (it never converges within the cap of 8) and of seed 1 equal (converged
    # at its first check).
    spec = spec_from_dict({**SPEC, "budget_check": {"labels": [100], "methods": ["scratch"]}})
    plan = spec.cells()
    assert len(plan.checks) == 4 and {(c.task, c.seed) for c in plan.checks} == \
        {(t, s) for t in ("classification", "pose") for s in (0, 1)}

    class Checks(Recorder):
        def __call__(self, cell):
            out = super().__call__(cell)
            if cell.kind == "check":
                orig = next(c for c in plan.downstream if c.id == cell.check_of)
                base = fake_result(orig)
                bump = 0.05 * math.log2(cell.config["budget_factor"]) if cell.seed == 0 else 0.0
                out = {**base, "val": base["val"] + bump, "test": base["test"] + bump,
                       "steps": int(50 * cell.config["budget_factor"])}
            return out

    rec = Checks()
    out = io.StringIO()
    result = run_study(spec, tmp_path / "s", cell_fn=rec, progress=False, out=out)
    # 4 first checks, then x4 and x8 for the 2 cells of seed 0
    assert result.ok and result.total == len(plan) + 4 == len(plan.pretrain) + len(plan.downstream) + 8
    kinds = [c.kind for c in rec.calls]
    assert kinds[-8:] == ["check"] * 8 and "check" not in kinds[:-8]  # checks run last
    assert [c.config["budget_factor"] for c in rec.calls[-4:]] == [4.0, 4.0, 8.0, 8.0]
    text = out.getvalue()
    # The head says which budget counted: a later doubling (x8) for the cells that kept gaining.
    assert ("budget check (counted budget: x1 for 2 cells, x8 for 2 cells; 2 not converged within the cap): "
            "6 of 8 doubling(s) gained more than 0.01") in text
    assert "scratch n=100 s0: val" in text and "(x4 -> x8)" in text
    with ResultsDB.open(tmp_path / "s") as db:
        assert len(db.rows(kind="check")) == 8 and len(db.rows()) == len(plan.downstream)
        decisions = db.budget_decisions()
        assert sorted(d["status"] for d in decisions.values()) == ["converged"] * 2 + ["not_converged"] * 2
        for cid, d in decisions.items():
            cell = next(c for c in plan.downstream if c.id == cid)
            assert (d["counted_factor"], len(d["attempts"])) == ((8.0, 4) if cell.seed == 0 else (1.0, 2))
    page = (tmp_path / "s" / "report.html").read_text()
    assert "<h2 id='budget'>Budget check</h2>" in page and "<b>6 of 8</b> gained more" in page
    assert "<th>counts</th>" in page and "<td>x4 -&gt; x8</td>" in page
    assert "under budget" in page and "converged" in page
    # The utilities at n=100 lean on the scratch cells that did not converge within the cap: flagged.
    summary = (tmp_path / "s" / "summary.txt").read_text()
    assert "gained at a larger budget" in summary
    # A rerun runs nothing, the doublings included; a study that lost its last doubling's row runs
    # only that one again.
    again = run_study(spec, tmp_path / "s", cell_fn=rec, progress=False, out=io.StringIO())
    assert again.ran == 0 and again.total == result.total
    last = rec.calls[-1]
    con = sqlite3.connect(tmp_path / "s" / "results.sqlite")
    with con:
        con.execute("DELETE FROM cells WHERE cell_id=?", (last.id,))
    con.close()
    rec2 = Checks()
    run_study(spec, tmp_path / "s", cell_fn=rec2, progress=False, out=io.StringIO())
    assert [c.id for c in rec2.calls] == [last.id]
