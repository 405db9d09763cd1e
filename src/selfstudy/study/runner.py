"""Run a study: render the datasets, pretrain once per combination, run every downstream cell, report.

:func:`run_study` is resumable by construction:

- every cell has a stable id and one row in the study's results database; a finished (``done``) row is
  never run again, so rerunning the same command after a crash, ``Ctrl-C`` or ``kill -9`` at any point
  runs only what is missing and ends with exactly the rows an uninterrupted run would have;
- a cell left ``running`` by a process that died is run again from its start (downstream cells are
  short); pretraining writes ``<study>/pretrain/<cell id>/last.pt`` as it goes and resumes from it;
- a cell's result depends only on its config (every random draw is seeded from it), so a rerun cell
  gives the same numbers as the first attempt would have;
- one process at a time owns a study folder (an advisory lock, released by the OS when the process
  dies, so a killed run never blocks the next).

Cells run through an :class:`~selfstudy.study.executor.Executor` (in-process by default; ``auto``
picks what is fastest here). A downstream cell starts once its pretraining cell is done, so with
several workers the scratch cells run while a method pretrains. Every cell runs with the same
number of torch threads, pinned for the whole study (``$SELFSTUDY_THREADS``, else the count of the
study's first run, stored in its database), since the thread count changes a cell's numbers: a
cell gives the same row whichever executor runs it. What a cell *does* is a cell function
``fn(cell) -> result dict``; the default, :class:`PipelineCells`, runs the real pipeline, and tests
inject their own.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

import yaml

from selfstudy.core.device import resolve_device
from selfstudy.core.io import atomic_write_text
from selfstudy.errors import UserError
from selfstudy.study import autobudget
from selfstudy.study.db import DB_NAME, ResultsDB, git_commit
from selfstudy.study.executor import (Executor, InProcessExecutor, LocalExecutor, choose_executor,
                                      _import_ray, make_executor)
from selfstudy.study.spec import Cell, Plan, Spec, dataset_label
from selfstudy.train.budget import Budget, ProbeBudget

LOCK_NAME = ".lock"
REPORT_NAME = "report.html"
SUMMARY_NAME = "summary.txt"
#: the study database's record of the torch threads every cell of the study runs with
THREADS_META = "threads_per_cell"


@dataclass
class StudyResult:
    """What :func:`run_study` did.

    total: cells in the plan; done: finished cells of the plan (this run or earlier); ran: cells this
    call ran (successfully or not); failed: ``(cell label, one-line error)`` of every failed cell;
    report: the HTML report (None if there was nothing to report); summary: the utility table as text.
    """

    study_dir: Path
    db_path: Path
    total: int
    done: int
    ran: int
    failed: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    report: Path | None = None
    summary: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed and self.done == self.total


def run_study(spec: Spec, study_dir: str | os.PathLike, executor: Executor | str | None = None,
              progress: bool = True, *, cell_fn: Callable[[Cell], Mapping] | None = None,
              data_root: str | os.PathLike | None = None, report: bool = True,
              out=None, workers: int | None = None) -> StudyResult:
    """Run every unfinished cell of ``spec`` into ``study_dir`` and write the report there.

    Args:
        spec: a validated :class:`Spec` (see :func:`selfstudy.study.spec.load_spec`).
        study_dir: the study folder: ``results.sqlite``, ``spec.yaml``, ``pretrain/<cell id>/``,
            ``report.html`` (+ PNGs, ``cells.csv``), ``summary.txt``.
        executor: where cells run: an :class:`Executor`, or its name (``inprocess``, ``local``,
            ``ray``, or ``auto``: :func:`~selfstudy.study.executor.choose_executor` decides from the
            device, the cores and the cells left); default in-process.
        workers: worker processes of the ``local`` executor (given with ``auto``: local with that
            many).
        progress: show cells done/total, the current cell and an ETA on stderr.
        cell_fn: what a cell does, ``fn(cell) -> result dict`` (default: the real pipeline,
            :class:`PipelineCells`). If it has a ``prepare(plan, progress)`` method, that runs first.
        data_root: where datasets are rendered and reused (default: ``$SELFSTUDY_DATA`` or
            ``./data/datasets``).
        report: write the report and print the summary table after the cells.
        out: where the summary and report path are printed (default: stdout).

    Raises:
        UserError: another process is running this study folder.

    Dataset rendering starts worker processes by spawning, so a script that calls this must guard its
    entry point with ``if __name__ == "__main__":``.
    """
    started = time.perf_counter()
    out = sys.stdout if out is None else out
    study_dir = Path(study_dir)
    if executor == "ray":
        _import_ray()  # refuse before anything is written when Ray is missing
    study_dir.mkdir(parents=True, exist_ok=True)
    plan = spec.cells()
    if cell_fn is None:
        cell_fn = PipelineCells(spec, study_dir, data_root=data_root, progress=progress)

    with _StudyLock(study_dir), ResultsDB(study_dir / DB_NAME) as db:
        atomic_write_text(study_dir / "spec.yaml", yaml.safe_dump(spec.to_dict(), sort_keys=False))
        db.set_meta("spec", spec.to_dict())
        db.set_meta("plan", [c.id for c in plan.all])
        db.add_cells(plan.all)
        stale = db.reset_stale()
        status = db.statuses()
        todo_pre = [c for c in plan.pretrain if status.get(c.id) != "done"]
        # Budget checks run last, after every cell they re-run: a partial study is still comparable.
        todo_down = [c for c in plan.downstream + plan.checks if status.get(c.id) != "done"]
        already = len(plan) - len(todo_pre) - len(todo_down)
        threads, threads_note = _pinned_threads(db)
        executor = _resolve_executor(executor, workers, spec.device, len(todo_pre) + len(todo_down), threads)
        if threads is None:
            threads = executor.default_threads or _torch_threads()
        db.set_meta(THREADS_META, threads)
        if isinstance(cell_fn, PipelineCells) and executor.slots > 1:
            cell_fn.progress = False  # bars from several workers would garble the study's own

        show = _Progress(len(plan), already, _timings(db, plan), enabled=progress)
        show.plan(todo_pre + todo_down)
        show.parallel = executor.slots
        checks = f", {len(plan.checks)} budget checks" if plan.checks else ""
        show.say(f"study {spec.name}: {len(plan)} cells ({len(plan.pretrain)} pretraining, "
                 f"{len(plan.downstream)} downstream{checks}); {already} already done"
                 + (f"; {stale} left running by a stopped run will run again" if stale else ""))
        if todo_pre or todo_down:
            show.say(f"executor: {_describe_executor(executor, threads)}")
        for note in plan.notes + ([threads_note] if threads_note else []):
            show.say(f"note: {note}")

        failed: list[tuple[str, str]] = []
        ran = 0
        try:
            if todo_pre or todo_down:
                prepare = getattr(cell_fn, "prepare", None)
                if prepare is not None:
                    prepare(plan, progress)
            timed = _Timed(cell_fn, threads)
            # Pretraining first (each unblocks many cells), then downstream cells, budget checks last;
            # then, with budget: auto, round by round the next doubling of every check that still gained.
            batch = todo_pre + todo_down
            while True:
                for cell, outcome, wall in _schedule(executor, timed, batch, db, show):
                    if isinstance(outcome, _Blocked):  # its pretraining failed: it cannot run
                        db.fail(cell.id, outcome.message)
                        failed.append((cell.label, outcome.message))
                        show.finish(cell, None, ok=False, message=outcome.message)
                        continue
                    ran += 1
                    _record(db, cell, outcome, wall, failed, show)
                batch = _next_attempts(spec, plan, db, show)
                if not batch:
                    break
            autobudget.record_decisions(spec, plan, db)
        finally:
            show.close()
            # Cells this process had started and not finished (Ctrl-C) are not running any more.
            db.reset_stale()
            executor.close()

        counts = db.counts(c.id for c in plan.all)
        done = sum(k.get("done", 0) for k in counts.values())
        result = StudyResult(study_dir=study_dir, db_path=study_dir / DB_NAME, total=len(plan), done=done,
                             ran=ran, failed=failed, notes=list(plan.notes))
        if report:
            rows = db.rows(status="done", kind="downstream", cell_ids=[c.id for c in plan.downstream])
            check_rows = db.rows(status="done", kind="check", cell_ids=[c.id for c in plan.checks])
            meta = {"study": spec.name, "folder": str(study_dir.resolve()), "database": str(result.db_path),
                    "cells": f"{done} of {len(plan)} done" + (f", {len(failed)} failed" if failed else ""),
                    "device": spec.device, "precision": spec.precision,
                    "executor": _describe_executor(executor, threads),
                    "git commit": git_commit() or "unknown"}
            result.report, result.summary = write_report(rows, study_dir, spec.to_dict(), meta,
                                                         checks=check_rows)
            print(result.summary, file=out)
            if result.report is not None:
                print(f"report: {result.report}", file=out)
        if failed:
            print(f"{len(failed)} cell(s) failed (rerun the same command to retry them):", file=out)
            for label, err in failed[:20]:
                print(f"  {label}: {err}", file=out)
        result.seconds = time.perf_counter() - started
        return result


def _next_attempts(spec: Spec, plan: Plan, db: ResultsDB, show: "_Progress") -> list[Cell]:
    """``budget: auto``'s next round: the check cells at the next doubling of every checked cell that
    still gained (:func:`selfstudy.study.autobudget.next_attempts`), added to the plan, the database and
    the progress; those an earlier run finished are taken as they are, and the round after them is
    looked for at once. Returns the cells to run (empty: every checked cell is decided)."""
    while True:
        new = autobudget.next_attempts(spec, plan, db)
        if not new:
            return []
        plan.checks.extend(new)
        db.add_cells(new)
        db.set_meta("plan", [c.id for c in plan.all])
        status = db.statuses(c.id for c in new)
        todo = [c for c in new if status.get(c.id) != "done"]
        show.total += len(new)
        show.done += len(new) - len(todo)
        if show.bar is not None:
            show.bar.total = show.total
        if todo:
            show.plan(todo)
            factors = sorted({c.config["budget_factor"] for c in todo})
            show.say(f"budget auto: {len(todo)} cell(s) still gained at their last check: running them at "
                     + "/".join(f"x{f:g}" for f in factors) + " (a doubled budget restarts training)")
            return todo


def write_report(rows: list[dict], folder: Path, spec: dict | None, meta: dict | None,
                 out_html: Path | None = None, checks: list[dict] | None = None, *,
                 utility_method: str = "isotonic", bootstrap: int = 1000) -> tuple[Path | None, str]:
    """Write ``report.html`` (+ figures, ``cells.csv``) and ``summary.txt`` beside it for finished
    downstream rows (and the budget-check rows that re-ran some of them: every checked row takes the
    numbers of its attempt that counts and the flags ``budget_status``, ``not_converged_within_cap``,
    ``under_budget``, see :func:`selfstudy.study.autobudget.resolve_rows`); ``utility_method`` and
    ``bootstrap`` go to the analysis. Returns (report path or None when there are no rows, summary
    text)."""
    from selfstudy.study import arms
    from selfstudy.study.report import build_report

    folder = Path(folder)
    if not rows:
        return None, "no finished downstream cells yet: nothing to report"
    rows, check_table = autobudget.resolve_rows(rows, checks or [], (spec or {}).get("budget_check") or {})
    # A study on imported data opens with the practitioner's answer and the class counts (study.own).
    from selfstudy.study.own import headline, report_meta

    head = headline(rows, spec, utility_method=utility_method, bootstrap=bootstrap)
    if head:
        meta = {**report_meta(head, spec), **(meta or {})}
    out_html = Path(out_html) if out_html is not None else folder / REPORT_NAME
    # Utility against the spec's utility.baseline (scratch unless it names another arm); summary.txt is
    # the text rendering of the same analysis the report and summary.json show.
    built = build_report(rows, out_html, spec, meta, utility_method=utility_method, bootstrap=bootstrap,
                         checks=check_table, headline=head or None, baseline=arms.baseline_of(spec),
                         notes=report_notes(spec))
    summary = ("\n".join(head) + "\n\n" if head else "") + built["text"]
    atomic_write_text(out_html.parent / SUMMARY_NAME, summary + "\n")
    return Path(built["html"]), summary


def report_notes(spec: Mapping | None) -> list[str]:
    """The notes a report of ``spec`` (its dict form) carries: one per method whose pretraining every
    seed shares (``shared: true``), since its intervals then leave out the noise of pretraining, and
    one when finetuning runs without augmentation (``finetune.augment: false``)."""
    from selfstudy.study.spec import method_notes

    spec = spec or {}
    methods = (spec.get("methods") or {}).items()
    finetune = spec.get("finetune")
    return method_notes(((name, isinstance(m, Mapping) and bool(m.get("shared"))) for name, m in methods),
                        tuple(spec.get("seeds") or ()), spec.get("protocols") or ("finetune",),
                        finetune if isinstance(finetune, Mapping) else None)


# --- running cells --------------------------------------------------------------------------------


class _Timed:
    """``fn(cell)`` with its wall time, run with ``threads`` torch threads: returns ``(result, seconds)``;
    a result dict gets ``threads`` added. A class (not a closure) so that it pickles for workers."""

    def __init__(self, fn, threads: int | None = None):
        self.fn = fn
        self.threads = threads

    def __call__(self, cell):
        restore = _use_threads(self.threads)
        try:
            t = time.perf_counter()
            result = self.fn(cell)
            seconds = time.perf_counter() - t
        finally:
            restore()
        if isinstance(result, Mapping) and self.threads is not None and "threads" not in result:
            result = {**result, "threads": self.threads}
        return result, seconds


def _use_threads(threads: int | None) -> Callable[[], None]:
    """Run torch (and what reads ``$SELFSTUDY_THREADS``, the Trainer) with ``threads`` threads;
    returns what restores the previous setting."""
    if threads is None:
        return lambda: None
    import torch

    before, env = torch.get_num_threads(), os.environ.get("SELFSTUDY_THREADS")
    if before != threads:
        torch.set_num_threads(threads)
    os.environ["SELFSTUDY_THREADS"] = str(threads)

    def restore():
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
        if env is None:
            os.environ.pop("SELFSTUDY_THREADS", None)
        else:
            os.environ["SELFSTUDY_THREADS"] = env

    return restore


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _pinned_threads(db: ResultsDB) -> tuple[int | None, str | None]:
    """The torch threads per cell this run must use: ``$SELFSTUDY_THREADS``, else the study's record
    from its earlier runs, else None (the executor decides). Plus a note when the two differ."""
    from selfstudy.train.loop import resolve_threads

    before = db.get_meta(THREADS_META)
    env = resolve_threads(None)
    if env is not None:
        note = None
        if before is not None and int(before) != env:
            note = (f"earlier runs of this study ran each cell with {before} torch thread(s), this one with "
                    f"{env} ($SELFSTUDY_THREADS): the cells run now may differ in their last digits from "
                    f"what {before} would give")
        return env, note
    return (int(before) if before is not None else None), None


def _resolve_executor(request, workers: int | None, device: str, cells: int, threads: int | None) -> Executor:
    """The executor for ``request`` (an Executor, its name, ``auto`` or None), fitted to ``threads``."""
    if isinstance(request, Executor):
        if threads is not None and isinstance(request, LocalExecutor):
            request.fit_threads(threads)
        return request
    if request is None:
        if workers is not None:
            raise UserError("workers= is for the local executor: pass executor='local' (or 'auto')")
        return InProcessExecutor()
    if request == "auto":
        if workers is not None:
            return LocalExecutor(workers=workers, threads=threads)
        return choose_executor(str(resolve_device(device)), cells, threads)
    if request == "local":
        return LocalExecutor(workers=workers, threads=threads)
    return make_executor(request, workers)


def _describe_executor(executor: Executor, threads: int | None) -> str:
    each = f"{threads} torch thread{'s' if threads != 1 else ''} per cell"
    if isinstance(executor, LocalExecutor):
        return f"local, {executor.workers} worker process{'es' if executor.workers != 1 else ''}, {each}"
    return f"{executor.name}, {each}"


@dataclass
class _Blocked:
    """A cell that cannot run: the pretraining it loads failed."""

    message: str


def _schedule(executor: Executor, fn, cells: list[Cell], db: ResultsDB,
              show: "_Progress") -> Iterator[tuple[Cell, object, float | None]]:
    """Run ``cells`` through ``executor``, keeping its slots busy, in the order given, except that a
    cell waits until the pretraining cell it loads (if that is among ``cells``) is done; yields
    (cell, result or exception, wall seconds), or (cell, :class:`_Blocked`, None) for a cell whose
    pretraining failed."""
    waiting = list(cells)
    unfinished = {c.id for c in cells if c.kind == "pretrain"}
    broken: set[str] = set()
    started: dict[str, float] = {}
    in_flight = 0
    executor.open(fn)
    while waiting or in_flight:
        blocked = [c for c in waiting if c.pretrain_id in broken]
        for c in blocked:
            waiting.remove(c)
            yield c, _Blocked(f"its pretraining cell {c.pretrain_id} did not finish (see that cell's error)"), None
        while in_flight < executor.slots:
            i = next((i for i, c in enumerate(waiting) if c.pretrain_id not in unfinished), None)
            if i is None:
                break
            c = waiting.pop(i)
            db.mark_running(c.id)
            started[c.id] = time.perf_counter()
            show.start(c)
            executor.submit(c)
            in_flight += 1
        if not in_flight:
            return  # (cannot happen: every cell waits only on a pretraining cell in ``cells``)
        cell, outcome = executor.next_done()
        in_flight -= 1
        if isinstance(outcome, BaseException):
            wall = time.perf_counter() - started.get(cell.id, time.perf_counter())
        else:
            outcome, wall = outcome
        if cell.kind == "pretrain":
            unfinished.discard(cell.id)
            if isinstance(outcome, BaseException) or not isinstance(outcome, Mapping):
                broken.add(cell.id)
        yield cell, outcome, wall


def _record(db: ResultsDB, cell: Cell, outcome, wall: float | None, failed: list, show: "_Progress") -> None:
    if isinstance(outcome, BaseException):
        text = "".join(traceback.format_exception(type(outcome), outcome, outcome.__traceback__))
        db.fail(cell.id, text, wall)
        line = f"{type(outcome).__name__}: {outcome}".splitlines()[0]
        failed.append((cell.label, line))
        show.finish(cell, wall, ok=False, message=line)
        return
    if not isinstance(outcome, Mapping):
        msg = f"the cell function returned {type(outcome).__name__}, not a result dict"
        db.fail(cell.id, msg, wall)
        failed.append((cell.label, msg))
        show.finish(cell, wall, ok=False, message=msg)
        return
    db.finish(cell.id, outcome, wall)
    show.finish(cell, wall, ok=True)


def _timings(db: ResultsDB, plan: Plan) -> dict[str, list[float]]:
    """Measured wall seconds of finished cells, by timing key (for the ETA)."""
    keys = {c.id: c.timing_key for c in plan.all}
    out: dict[str, list[float]] = {}
    for kind in ("pretrain", "downstream", "check"):
        for r in db.rows(status="done", kind=kind, cell_ids=keys):
            if r.get("wall_seconds") is not None and r.get("attempts", 1) <= 1:
                out.setdefault(keys[r["cell_id"]], []).append(float(r["wall_seconds"]))
    return out


class _Progress:
    """Cells done/total, the current cell and an ETA from the measured time per kind of cell.

    On a terminal it is one tqdm bar; otherwise (logs, CI) one line per cell start/finish. The ETA sums,
    over the cells still to run, the mean time of finished cells of the same timing key (pretraining of
    that method and backbone; downstream cells of that protocol and backbone); cells of a key not yet
    timed are counted separately.
    """

    def __init__(self, total: int, done: int, timings: dict[str, list[float]], enabled: bool = True,
                 stream=None):
        self.total, self.done = total, done
        self.timings = {k: list(v) for k, v in timings.items()}
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.remaining: dict[str, int] = {}
        self.parallel = 1  # cells run at once: the ETA divides by it
        self.started = done
        self.bar = None
        if enabled and self.stream.isatty():
            from tqdm import tqdm

            # The current cell and the ETA go in the description: tqdm's own ETA would average
            # minutes-long pretraining cells with seconds-long probes.
            self.bar = tqdm(total=total, initial=done, file=self.stream, dynamic_ncols=True,
                            bar_format="cells {n_fmt}/{total_fmt} |{bar:20}| {elapsed} {desc}")

    def plan(self, cells: Iterable[Cell]) -> None:
        for c in cells:
            self.remaining[c.timing_key] = self.remaining.get(c.timing_key, 0) + 1

    def eta(self) -> str:
        seconds, untimed = 0.0, 0
        for key, count in self.remaining.items():
            if self.timings.get(key):
                seconds += count * sum(self.timings[key]) / len(self.timings[key])
            else:
                untimed += count
        left = sum(self.remaining.values())
        seconds /= max(1, min(self.parallel, left))
        text = _duration(seconds) if seconds or not untimed else "?"
        if untimed and seconds:
            text += f" + {untimed} untimed"
        return text

    def say(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def start(self, cell: Cell) -> None:
        if self.bar is not None:
            self.bar.set_description_str(f"{cell.label} · ETA {self.eta()}")
        elif self.enabled:
            self.started += 1
            print(f"[{self.started}/{self.total}] {cell.label} (ETA {self.eta()})", file=self.stream, flush=True)

    def finish(self, cell: Cell, seconds: float | None, ok: bool, message: str = "") -> None:
        self.done += 1
        key = cell.timing_key
        if key in self.remaining:
            self.remaining[key] = max(0, self.remaining[key] - 1)
        if ok and seconds is not None:
            self.timings.setdefault(key, []).append(seconds)
        if not ok:
            self.say(f"FAILED {cell.label}: {message}")
        if self.bar is not None:
            self.bar.update(1)
        elif self.enabled and ok:
            where = f" {cell.label}" if self.parallel > 1 else ""
            print(f"      done{where} in {_duration(seconds or 0)}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _duration(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    m, s = divmod(int(round(seconds)), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


class _StudyLock:
    """One process per study folder: an exclusive ``flock`` on ``<study>/.lock``. The OS drops it when
    the process dies, however it dies, so a killed run never blocks the next one."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK_NAME
        self.fd = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # pragma: no cover -- not POSIX: no locking
            return self
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(self.fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(self.fd)
            self.fd = None
            raise UserError(f"study folder {self.path.parent} is in use by another run (pid {holder}); "
                            f"wait for it to finish or stop it, or use another --dir") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # closing releases the flock
            self.fd = None


# --- the real pipeline ----------------------------------------------------------------------------


class PipelineCells:
    """The cell function of real studies: pretraining cells run :func:`selfstudy.train.pretrain.pretrain`
    into ``<study>/pretrain/<cell id>/`` (resuming from its ``last.pt``); downstream cells run
    finetuning, a linear probe or kNN on the cell's dataset, starting from that checkpoint (or from a
    random init for ``scratch``).

    Holds only plain data, so it pickles to Ray workers (which need the study folder and the dataset
    root on shared storage).
    """

    def __init__(self, spec: Spec, study_dir: str | os.PathLike, data_root: str | os.PathLike | None = None,
                 progress: bool = False):
        self.spec = spec
        self.study_dir = Path(study_dir).resolve()
        self.data_root = None if data_root is None else str(data_root)
        self.progress = progress
        self.data_paths: dict[str, str] = {}

    def prepare(self, plan: Plan, progress: bool = True) -> None:
        """Render every dataset of the plan that does not exist yet (reused by config hash)."""
        from selfstudy.data.generate import ensure_dataset

        for bits in plan.datasets:
            if self.spec.datasets.path:  # an imported folder (study.imported): nothing to render
                self.data_paths[bits] = self.spec.datasets.path
                continue
            cfg = self.spec.dataset_config(bits)  # bits, or bits#i in dataset block i
            path = ensure_dataset(cfg, root=self.data_root, progress=progress)
            self.data_paths[bits] = str(Path(path).resolve())

    def checkpoint(self, pretrain_id: str) -> Path:
        return self.study_dir / "pretrain" / pretrain_id / "final.pt"

    def __call__(self, cell: Cell) -> dict:
        if cell.data_key not in self.data_paths:
            self.prepare_one(cell.data_key)
        if cell.kind == "pretrain":
            return self._pretrain(cell)
        return self._downstream(cell)

    def prepare_one(self, bits: str) -> None:
        from selfstudy.data.generate import ensure_dataset

        if self.spec.datasets.path:
            self.data_paths[bits] = self.spec.datasets.path
            return
        path = ensure_dataset(self.spec.dataset_config(bits), root=self.data_root, progress=False)
        self.data_paths[bits] = str(Path(path).resolve())

    def _pretrain(self, cell: Cell) -> dict:
        import json

        from selfstudy.train.pretrain import pretrain

        spec, m = self.spec, self.spec.method(cell.method)
        out = self.checkpoint(cell.id).parent
        final = out / "final.pt"
        t = time.perf_counter()
        if not final.is_file():
            final = Path(pretrain(self.data_paths[cell.data_key], cell.method, cell.backbone, res=spec.block(cell).res, epochs=m.epochs,
                                  out=out, seed=cell.seed, overrides=dict(m.overrides), space=spec.space,
                                  device=resolve_device(spec.device), precision=spec.precision,
                                  channels_last=spec.channels_last, progress=self.progress))
        result = {"checkpoint": str(final), "seconds": time.perf_counter() - t, "metrics": {}}
        log = out / "log.jsonl"
        if log.is_file():
            lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
            if lines:
                last = json.loads(lines[-1])
                result["steps"] = last.get("step")
                result["metrics"] = {k: v for k, v in last.items() if isinstance(v, (int, float))}
                result["seconds"] = sum(float(json.loads(ln).get("seconds", 0) or 0) for ln in lines) or \
                    result["seconds"]
        return result

    def _downstream(self, cell: Cell) -> dict:
        from selfstudy.data.store import open_dataset

        spec = self.spec
        ds = open_dataset(self.data_paths[cell.data_key])
        init = None if cell.pretrain_id is None else str(self.checkpoint(cell.pretrain_id))
        if cell.config.get("arch"):  # scratch on another method's architecture (study.baselines)
            from selfstudy.study.baselines import scratch_init

            init = scratch_init(ds, cell.method, cell.backbone, cell.seed, spec.space)
        if cell.config.get("weights"):  # a weights file the person holds (study.arms)
            from selfstudy.study.arms import checked_file

            init = checked_file(spec.method(cell.method).path, cell.config["weights"]["sha256"])
        common = dict(backbone=cell.backbone, n_labels=cell.n_labels, seed=cell.seed, init=init,
                      device=resolve_device(spec.device), precision=spec.precision,
                      channels_last=spec.channels_last, space=spec.space, progress=False)
        options = spec.protocol_options(cell.protocol, cell.backbone)
        if cell.kind == "check":  # a finetune cell re-run with its budget scaled up
            options = dict(cell.config["budget"])
        if cell.protocol == "finetune":
            from selfstudy.train import recipe

            budget = Budget.from_overrides(options)
            # finetune.run, over the budget's lr/weight-decay grid when it has one (train.recipe)
            return dict(recipe.run(ds, cell.task, budget=budget, **common))
        from selfstudy.train import probe

        del common["progress"]  # probes are seconds long: no bar
        fn = getattr(probe, cell.protocol)
        return dict(fn(ds, cell.task, budget=ProbeBudget.from_overrides(options), **common))


def describe(plan: Plan) -> str:
    """The cells of a plan as a text table (for ``selfstudy study cells``)."""
    lines = [f"{len(plan)} cells: {len(plan.pretrain)} pretraining, {len(plan.downstream)} downstream"
             + (f", {len(plan.checks)} budget checks" if plan.checks else "")]
    for note in plan.notes:
        lines.append(f"note: {note}")
    lines.append("")
    lines.append(f"{'id':16}  {'kind':10}  {'dataset':7}  {'method':10}  {'backbone':14}  {'seed':>4}  "
                 f"{'task':16}  {'protocol':8}  {'labels':>7}  needs")
    for c in plan.all:
        lines.append(f"{c.id:16}  {c.kind:10}  {dataset_label(c.dataset):7}  {c.method:10}  "
                     f"{c.backbone:14}  {c.seed:>4}  {c.task or '':16}  {c.protocol or '':8}  "
                     f"{'' if c.n_labels is None else c.n_labels:>7}  {c.pretrain_id or ''}")
    return "\n".join(lines)
