"""The local executor: cells in worker processes, the study runner's scheduling over them, a worker or
the driver killed with ``kill -9`` and the study resumed, and the executor choice."""

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from selfstudy.errors import UserError
from selfstudy.study.db import ResultsDB
from selfstudy.study.executor import (InProcessExecutor, LocalExecutor, RemoteTraceback, WorkerDied,
                                      choose_executor, make_executor)
from selfstudy.study.runner import THREADS_META, run_study
from selfstudy.study.spec import spec_from_dict

sys.path.insert(0, str(Path(__file__).parent))
from killing import done_count, final_rows, kill_at_done_counts, rerun_matches  # noqa: E402
from test_runner import SPEC, fake_result  # noqa: E402


class FakeCells:
    """A picklable cell function for worker processes: pretraining cells leave a marker file that the
    cells loading them check (so a downstream cell run before its pretraining fails), every call
    records the worker's pid, and the cells in ``die`` kill their own process with SIGKILL the first
    time they run."""

    def __init__(self, root, delay=0.0, die=()):
        self.root = str(root)
        self.delay = delay
        self.die = set(die)

    def __call__(self, cell):
        root = Path(self.root)
        (root / "pids").mkdir(parents=True, exist_ok=True)
        (root / "pids" / str(os.getpid())).touch()
        if cell.id in self.die and not (root / f"died-{cell.id}").exists():
            (root / f"died-{cell.id}").touch()
            os.kill(os.getpid(), signal.SIGKILL)
        if cell.pretrain_id is not None and not (root / "pre" / cell.pretrain_id).exists():
            raise RuntimeError(f"{cell.label} ran before its pretraining {cell.pretrain_id}")
        if self.delay:
            time.sleep(self.delay)
        if cell.kind == "pretrain":
            (root / "pre").mkdir(exist_ok=True)
            (root / "pre" / cell.id).touch()
        return fake_result(cell)


def _square_or_fail(x):
    if x == 3:
        raise ValueError("three is not allowed")
    return x * x


def _threads_seen(_):
    import torch

    return torch.get_num_threads(), os.environ.get("SELFSTUDY_THREADS"), os.getpid()


# --- the executor alone ---------------------------------------------------------------------------


def test_local_executor_maps_in_worker_processes():
    ex = LocalExecutor(workers=2, threads=1)
    try:
        out = dict(ex.map(_square_or_fail, range(6)))
        assert {k: v for k, v in out.items() if k != 3} == {0: 0, 1: 1, 2: 4, 4: 16, 5: 25}
        err = out[3]
        assert isinstance(err, ValueError) and str(err) == "three is not allowed"
        # The worker's traceback comes along as the cause (the runner stores it with the cell).
        assert isinstance(err.__cause__, RemoteTraceback) and "_square_or_fail" in str(err.__cause__)
        seen = [r for _, r in ex.map(_threads_seen, range(4))]
        assert {(t, env) for t, env, _ in seen} == {(1, "1")}
        pids = {pid for *_, pid in seen}
        assert os.getpid() not in pids and 1 <= len(pids) <= 2  # reused workers, never the driver
    finally:
        ex.close()
    assert ex._pool == []


def test_a_killed_worker_fails_its_cell_and_is_replaced(tmp_path):
    spec = spec_from_dict({**SPEC, "seeds": [0]})
    cells = spec.cells().downstream[:5]
    scratch = [c for c in cells if c.pretrain_id is None]
    victim = scratch[1]
    ex = LocalExecutor(workers=2, threads=1)
    try:
        out = {c.id: r for c, r in ex.map(FakeCells(tmp_path, die={victim.id}), scratch)}
    finally:
        ex.close()
    assert isinstance(out[victim.id], WorkerDied) and "killed by signal 9" in str(out[victim.id])
    assert {k: v for k, v in out.items() if k != victim.id} == \
        {c.id: fake_result(c) for c in scratch if c.id != victim.id}
    assert len(os.listdir(tmp_path / "pids")) >= 2  # the dead worker and its replacement


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(UserError, match="workers=0 is not allowed"):
        LocalExecutor(workers=0)
    with pytest.raises(UserError, match="unknown executor 'threads'; allowed: auto, inprocess, local, ray"):
        make_executor("threads")
    with pytest.raises(UserError, match="--workers is for the local executor"):
        make_executor("inprocess", workers=2)
    with pytest.raises(UserError, match="pickles"):
        LocalExecutor(workers=1).open(lambda cell: cell)


def test_auto_choice():
    # Two cores and many cells: a worker per core, one thread each (measured faster than one cell at
    # a time with two threads); a GPU, one core or one cell: in-process.
    ex = choose_executor("cpu", cells=10, cores=2)
    assert isinstance(ex, LocalExecutor) and (ex.workers, ex.threads) == (2, 1)
    ex = choose_executor("cpu", cells=3, cores=16)
    assert isinstance(ex, LocalExecutor) and (ex.workers, ex.threads) == (3, 1)
    ex = choose_executor("cpu", cells=40, cores=16, threads=4)
    assert isinstance(ex, LocalExecutor) and (ex.workers, ex.threads) == (4, 4)
    for args in [("cuda", 10, None, 16), ("cpu", 1, None, 16), ("cpu", 10, None, 1), ("cpu", 10, 2, 2)]:
        assert isinstance(choose_executor(*args), InProcessExecutor), args


# --- the runner over worker processes -------------------------------------------------------------


def test_local_study_gives_the_rows_of_an_inprocess_study(tmp_path, one_thread):
    spec = spec_from_dict(SPEC)
    plan = spec.cells()
    run_study(spec, tmp_path / "inproc", cell_fn=FakeCells(tmp_path / "a"), progress=False, report=False)
    err = io.StringIO()
    import contextlib

    with contextlib.redirect_stderr(err):
        result = run_study(spec, tmp_path / "local", executor="local", workers=2,
                           cell_fn=FakeCells(tmp_path / "b"), progress=True, report=False)
    assert result.ok and result.ran == len(plan)
    # FakeCells raises for a cell started before its pretraining: none was.
    assert final_rows(tmp_path / "local") == final_rows(tmp_path / "inproc")
    with ResultsDB.open(tmp_path / "local") as db:
        assert db.get_meta(THREADS_META) == 1
        assert all(r["result"]["threads"] == 1 for r in db.rows())
    assert len(os.listdir(tmp_path / "b" / "pids")) == 2
    text = err.getvalue()
    assert "executor: local, 2 worker processes, 1 torch thread per cell" in text
    assert f"[{len(plan)}/{len(plan)}]" in text


def test_a_failed_pretraining_in_a_worker_blocks_its_cells(tmp_path, one_thread):
    spec = spec_from_dict({**SPEC, "seeds": [0]})
    plan = spec.cells()
    victim = plan.pretrain[0]
    result = run_study(spec, tmp_path / "s", executor=LocalExecutor(workers=2),
                       cell_fn=FakeCells(tmp_path / "m", die={victim.id}), progress=False, report=False)
    dependants = {c.id for c in plan.downstream + plan.checks if c.pretrain_id == victim.id}
    assert len(result.failed) == 1 + len(dependants) and result.ran == len(plan) - len(dependants)
    with ResultsDB.open(tmp_path / "s") as db:
        assert "died (killed by signal 9)" in db.get(victim.id)["error"]
        assert all("did not finish" in db.get(i)["error"] for i in dependants)
    retry = run_study(spec, tmp_path / "s", executor=LocalExecutor(workers=2),
                      cell_fn=FakeCells(tmp_path / "m"), progress=False, report=False)
    assert retry.ok and retry.ran == 1 + len(dependants)
    run_study(spec, tmp_path / "full", cell_fn=FakeCells(tmp_path / "f"), progress=False, report=False)
    assert final_rows(tmp_path / "s") == final_rows(tmp_path / "full")


def test_worker_killed_mid_study_then_rerun_gives_the_uninterrupted_rows(tmp_path, one_thread):
    spec = spec_from_dict(SPEC)
    plan = spec.cells()
    run_study(spec, tmp_path / "full", cell_fn=FakeCells(tmp_path / "f"), progress=False, report=False)
    victim = plan.downstream[len(plan.downstream) // 2]
    first = run_study(spec, tmp_path / "s", executor="local", workers=2,
                      cell_fn=FakeCells(tmp_path / "m", die={victim.id}), progress=False, report=False)
    assert [label for label, _ in first.failed] == [victim.label]
    assert "rerun the study to retry it" in first.failed[0][1]
    assert first.done == len(plan) - 1  # every other cell went on
    again = run_study(spec, tmp_path / "s", executor="local", workers=2,
                      cell_fn=FakeCells(tmp_path / "m", die={victim.id}), progress=False, report=False)
    assert again.ok and again.ran == 1
    assert final_rows(tmp_path / "s") == final_rows(tmp_path / "full")


def _forget(study, cell_id):
    con = sqlite3.connect(study / "results.sqlite")
    with con:
        con.execute("UPDATE cells SET status='pending', test=NULL, result=NULL WHERE cell_id=?", (cell_id,))
    con.close()


def test_threads_per_cell_are_pinned_for_the_study(tmp_path, monkeypatch):
    spec = spec_from_dict({**SPEC, "methods": ["scratch"], "tasks": ["classification"], "seeds": [0]})
    monkeypatch.delenv("SELFSTUDY_THREADS", raising=False)
    cells = spec.cells().downstream
    # The first run fixes the threads per cell (local, 2 workers: 1 each) ...
    ids = [c.id for c in cells]
    run_study(spec, tmp_path / "s", executor=LocalExecutor(workers=2, threads=1),
              cell_fn=FakeCells(tmp_path / "m"), progress=False, report=False)
    with ResultsDB.open(tmp_path / "s") as db:
        assert db.get_meta(THREADS_META) == 1
    _forget(tmp_path / "s", ids[0])
    # ... and a later in-process run uses it, not torch's default.
    seen = []

    def record(cell):
        import torch

        seen.append(torch.get_num_threads())
        return fake_result(cell)

    run_study(spec, tmp_path / "s", executor="inprocess", cell_fn=record, progress=False, report=False)
    assert seen == [1]
    # $SELFSTUDY_THREADS wins, with a note that the numbers may move.
    _forget(tmp_path / "s", ids[1])
    monkeypatch.setenv("SELFSTUDY_THREADS", "2")
    err = io.StringIO()
    import contextlib

    with contextlib.redirect_stderr(err):
        run_study(spec, tmp_path / "s", cell_fn=record, progress=True, report=False)
    assert seen == [1, 2] and "earlier runs of this study ran each cell with 1 torch thread(s)" in err.getvalue()


# --- the driver, really killed --------------------------------------------------------------------

_CHILD = """
import sys
sys.path.insert(0, {here!r})
from test_executor import SPEC, FakeCells
from selfstudy.study.executor import LocalExecutor
from selfstudy.study.runner import run_study
from selfstudy.study.spec import spec_from_dict
if __name__ == "__main__":
    run_study(spec_from_dict(SPEC), {study!r}, executor=LocalExecutor(workers=2, threads=1),
              cell_fn=FakeCells({root!r}, delay={delay}), progress=False, report=False)
"""


def _child(study, root, delay):
    code = _CHILD.format(here=str(Path(__file__).parent), study=str(study), root=str(root), delay=delay)
    env = {**os.environ, "SELFSTUDY_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def test_driver_sigkilled_mid_run_then_rerun_gives_the_uninterrupted_rows(tmp_path, one_thread):
    spec = spec_from_dict(SPEC)
    total = len(spec.cells())
    run_study(spec, tmp_path / "full", cell_fn=FakeCells(tmp_path / "f"), progress=False, report=False)

    study, root = tmp_path / "killed", tmp_path / "m"

    def workers_die_with_it():  # its workers die with it: none goes on running (or writing) a cell
        workers = [int(p) for p in os.listdir(root / "pids")]
        deadline = time.monotonic() + 20
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in workers)

    # Kill during pretraining, then in the middle of downstream cells.
    kill_at_done_counts(lambda: _child(study, root, delay=0.1), study, (2, total // 2), timeout=180,
                        after_kill=workers_die_with_it)
    done = done_count(study)
    assert 0 < done < total
    with ResultsDB.open(study) as db:
        counts = db.counts()
        assert 1 <= counts["pretrain"]["running"] + counts["downstream"]["running"] <= 2

    rerun_matches(_child(study, root, delay=0.0), study, tmp_path / "full", total)


# --- the real pipeline: the executor does not change a cell's numbers -----------------------------


@pytest.mark.slow
@pytest.mark.long
def test_real_cells_give_the_same_rows_inprocess_and_in_two_workers(tmp_path, one_thread):
    pytest.importorskip("selfstudy.data.generate")
    spec = spec_from_dict({
        "name": "same", "datasets": {"factors": ["TCVL"], "n": 600, "res": 32, "models_per_class": 12},
        "methods": {"scratch": {}, "rotation": {"epochs": 1, "overrides": {"batch_size": 64}}},
        "backbones": ["resnet9-tiny"], "tasks": ["classification"], "protocols": ["finetune", "linear"],
        "labels": [50, 100], "seeds": [0],
        "finetune": {"epochs": 10, "min_steps": 30, "max_steps": 30, "batch_size": 32, "evals": 3,
                     "patience": 0, "val_size": 100, "test_size": 200},
        "linear": {"steps": 30, "eval_every": 10, "val_size": 100, "test_size": 200},
        "device": "cpu", "precision": "bf16", "channels_last": True})
    data = tmp_path / "data"
    a = run_study(spec, tmp_path / "inproc", progress=False, data_root=data, report=False)
    b = run_study(spec, tmp_path / "local", executor="local", workers=2, progress=False, data_root=data,
                  report=False)
    assert a.ok and b.ok, (a.failed, b.failed)

    def rows(study):
        with ResultsDB.open(study) as db:
            return {r["cell_id"]: (r["test"], r["val"], r["steps"], r["subset_sha"],
                                   json.dumps(r["result"].get("curve"))) for r in db.rows()}

    got, want = rows(tmp_path / "local"), rows(tmp_path / "inproc")
    assert len(got) == len(spec.cells().downstream) and got == want


@pytest.mark.slow
def test_a_study_through_a_real_local_ray_gives_the_inprocess_rows(tmp_path):
    """``selfstudy study run --executor ray`` with ``RAY_ADDRESS`` empty (unset): a local Ray starts and
    the cells give the rows of an in-process run, numbers included."""
    pytest.importorskip("ray")
    pytest.importorskip("selfstudy.data.generate")
    overrides = ["protocols=[finetune]", "labels=[20]", "budget_check=off"]  # an empty section is auto now
    data = tmp_path / "data"
    env = {**os.environ, "RAY_ADDRESS": "", "SELFSTUDY_THREADS": "1", "SELFSTUDY_RAY_CPUS": "1",
           "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    cmd = [sys.executable, "-m", "selfstudy", "study", "run", "smoke", "--data-root", str(data),
           "--no-progress", "--no-report", *overrides]
    inproc = subprocess.run([*cmd, "--dir", str(tmp_path / "inproc"), "--executor", "inprocess"],
                            capture_output=True, text=True, timeout=600, env=env)
    assert inproc.returncode == 0, inproc.stderr
    ray = subprocess.run([*cmd, "--dir", str(tmp_path / "ray"), "--executor", "ray"],
                         capture_output=True, text=True, timeout=600, env=env)
    assert ray.returncode == 0, ray.stderr
    assert "Traceback" not in ray.stderr and "Started a local Ray instance" in ray.stderr

    def rows(study):
        with ResultsDB.open(study) as db:
            return {r["cell_id"]: (r["status"], r["test"], r["val"], r["steps"], r["subset_sha"],
                                   json.dumps(r["result"].get("curve"))) for r in db.rows(kind=None)}

    got, want = rows(tmp_path / "ray"), rows(tmp_path / "inproc")
    assert len(got) == 3 and got == want  # a pretraining and two finetune cells
