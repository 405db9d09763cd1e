"""The kill-and-rerun scaffold of the study tests (test_runner, test_executor): start a study in a child
process, ``kill -9`` it at a chosen moment, rerun it, and compare its rows with an uninterrupted run.

Imported by its basename: pytest puts this folder on ``sys.path`` for the tests in it (no
``__init__.py``), and the child processes insert it themselves.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterable

from selfstudy.study.db import ResultsDB


def final_rows(study_dir) -> dict:
    """cell id -> (status, test, metrics, attempts-independent fields) of every row."""
    with ResultsDB.open(study_dir) as db:
        rows = db.rows(status=None, kind=None)
    return {r["cell_id"]: (r["status"], r["kind"], r["test"], json.dumps(r["metrics"], sort_keys=True),
                           json.dumps(r["result"], sort_keys=True)) for r in rows}


def done_count(study: Path) -> int:
    """Cells done in the study's database, read without locking it (0 while it does not exist yet)."""
    try:
        con = sqlite3.connect(f"file:{study / 'results.sqlite'}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT COUNT(*) FROM cells WHERE status='done'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float, poll: float = 0.02) -> None:
    """Wait until ``ready()`` (at most ``timeout`` seconds), check ``proc`` still runs (else fail with its
    stderr), then SIGKILL it and reap it."""
    deadline = time.monotonic() + timeout
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(poll)
    assert proc.poll() is None, proc.stderr.read().decode()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()


def kill_at_done_counts(start: Callable[[], subprocess.Popen], study: Path, targets: Iterable[int],
                        timeout: float, after_kill: Callable[[], None] = lambda: None) -> None:
    """For each target: ``start()`` the study and kill it once ``target`` cells are done; then
    ``after_kill()``."""
    for target in targets:
        kill_when(start(), lambda: done_count(study) >= target, timeout)
        after_kill()


def rerun_matches(proc: subprocess.Popen, study: Path, full: Path, total: int) -> None:
    """``proc``, the rerun of a killed ``study``, succeeds and leaves the rows of the uninterrupted run
    ``full``: ``total`` rows, one per cell."""
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    assert final_rows(study) == final_rows(full)
    con = sqlite3.connect(study / "results.sqlite")
    try:
        assert con.execute("SELECT COUNT(*), COUNT(DISTINCT cell_id) FROM cells").fetchone() == (total, total)
    finally:
        con.close()
