"""Where a study's cells run: in this process, in worker processes on this machine, or as Ray tasks.

An executor runs a function over cells: :meth:`Executor.submit` starts ``fn(cell)`` (the function
given to :meth:`Executor.open`), :meth:`Executor.next_done` blocks until one started cell finishes and
returns ``(cell, result)``, or ``(cell, exception)`` when ``fn`` raised; one failing cell never stops
the others. ``slots`` is how many cells it runs at once, so a scheduler (the study runner's, which
starts a downstream cell only once its pretraining is done) keeps that many in flight.
:meth:`Executor.map` is the plain loop over an iterable of independent cells. Results come back to
the process that called it, and only that process writes the results database, so workers need no
access to it.

- ``inprocess``: one cell after another in the calling process (the default of the Python API, and
  the fastest choice on one GPU, where cells would only compete for the device);
- ``local``: ``workers`` processes on this machine (spawned, so a worker shares no state with the
  driver), each running ``threads`` torch threads so that ``workers x threads`` does not exceed the
  cores. On a CPU a small model uses many cores poorly: two cells side by side with one thread each
  finish sooner than the same two one after the other with two threads. A worker killed while it
  runs a cell (``kill -9``, the kernel's OOM killer) fails that cell with the reason, a new worker
  takes its place, and the next run of the study retries the cell; a worker dies with its driver.
- ``ray``: each cell a Ray task on a cluster (below).

Torch's thread count changes the order of floating-point reductions, hence a cell's numbers in their
last bits and, after a few hundred steps, in their leading digits. The study runner therefore fixes
the threads per cell for a whole study (``$SELFSTUDY_THREADS``, else what the study's first run used)
and runs every cell with it, whichever executor runs the cell.

Fanning out on a cluster with Ray
---------------------------------
1. Put the study folder and the dataset root (``$SELFSTUDY_DATA``) on storage every node mounts at
   the same path (NFS, a shared volume): workers read datasets and write checkpoints there.
2. Install the same ``selfstudy`` (and torch build) on every node: ``pip install -e .[ray]``.
3. Start the cluster (``ray start --head`` on one node, ``ray start --address=HEAD:6379`` on the
   others, or a Ray cluster launcher / KubeRay), then on the head node::

       RAY_ADDRESS=auto selfstudy study run paper --dir /shared/studies/paper --executor ray

   Each cell is a Ray task asking for ``num_gpus`` (default 1 for pretraining, 0.25 for downstream
   cells, so four small finetunes share a GPU; set ``SELFSTUDY_RAY_GPUS_PRETRAIN`` /
   ``SELFSTUDY_RAY_GPUS_DOWNSTREAM`` to change them) and ``num_cpus`` (``SELFSTUDY_RAY_CPUS``, default 2).
   Ray places tasks where resources are free. Without ``RAY_ADDRESS`` (unset or empty) a local Ray
   is started on this machine.
4. Resuming works as in-process: killing the driver loses only the cells in flight; rerunning the same
   command skips every finished cell and pretraining resumes from its own ``last.pt``.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import pickle
import signal
import threading
import traceback
from multiprocessing.connection import wait as wait_for
from typing import Any, Callable, Iterable, Iterator

from selfstudy.errors import UserError

Outcome = Any  # the cell function's result, or the exception it raised


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, which containers and ``taskset`` narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover -- not Linux
        return max(1, os.cpu_count() or 1)


class Executor:
    """Runs a function over cells; subclasses implement :meth:`submit` and :meth:`next_done`."""

    name = "base"
    #: cells run at once
    slots = 1
    #: torch threads a cell gets when nobody pins them (None: torch's default)
    default_threads: int | None = None

    def open(self, fn: Callable[[Any], Any]) -> None:
        """Use ``fn`` for the cells submitted from now on."""
        self._fn = fn

    def submit(self, cell) -> None:
        """Start ``fn(cell)``; at most :attr:`slots` cells may be in flight."""
        raise NotImplementedError

    def next_done(self) -> tuple[Any, Outcome]:
        """Block until a submitted cell finishes: ``(cell, result)`` or ``(cell, exception)``."""
        raise NotImplementedError

    def map(self, fn: Callable[[Any], Any], cells: Iterable) -> Iterator[tuple[Any, Outcome]]:
        """Yield ``(cell, fn(cell))`` or ``(cell, exception)`` for every cell, in completion order.
        ``cells`` may be lazy: a cell is pulled when a slot is free to start it."""
        self.open(fn)
        it, in_flight, exhausted = iter(cells), 0, False
        while True:
            while not exhausted and in_flight < self.slots:
                try:
                    cell = next(it)
                except StopIteration:
                    exhausted = True
                    break
                self.submit(cell)
                in_flight += 1
            if not in_flight:
                return
            yield self.next_done()
            in_flight -= 1

    def close(self) -> None:
        """Release what the executor holds (worker processes; a cluster connection stays open)."""


class InProcessExecutor(Executor):
    """Runs cells one after another in the calling process (the default of :func:`run_study`; the
    only sensible choice on a one-GPU machine, where cells would only compete for the device).
    ``KeyboardInterrupt`` and ``SystemExit`` are not caught: they stop the study."""

    name = "inprocess"

    def __init__(self):
        self._queue: collections.deque = collections.deque()

    def submit(self, cell) -> None:
        self._queue.append(cell)

    def next_done(self):
        cell = self._queue.popleft()
        try:
            return cell, self._fn(cell)
        except Exception as e:  # noqa: BLE001 -- a cell's failure is its result
            return cell, e


class WorkerDied(RuntimeError):
    """The worker process running a cell ended without returning its result."""


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker, as text (set as the exception's cause)."""

    def __str__(self) -> str:
        return self.args[0] if self.args else ""


class LocalExecutor(Executor):
    """Runs cells in ``workers`` processes on this machine, ``threads`` torch threads each.

    workers: processes (default: every core, :func:`available_cores`); threads: torch threads per
    cell (default: cores // workers, at least 1). Workers are started by spawning when the first
    cell is submitted and are reused for every later cell; each gets the cell function once.
    """

    name = "local"

    def __init__(self, workers: int | None = None, threads: int | None = None):
        cores = available_cores()
        if workers is not None and not (isinstance(workers, int) and workers >= 1):
            raise UserError(f"workers={workers!r} is not allowed: give an integer >= 1")
        if threads is not None and not (isinstance(threads, int) and threads >= 1):
            raise UserError(f"threads={threads!r} is not allowed: give an integer >= 1")
        self.explicit_workers = workers is not None
        self.workers = workers if workers is not None else max(1, cores // (threads or 1))
        self.threads = threads if threads is not None else max(1, cores // self.workers)
        self._ctx = multiprocessing.get_context("spawn")
        self._pool: list[_Worker] = []
        self._fn = None

    @property
    def slots(self) -> int:
        return self.workers

    @property
    def default_threads(self) -> int:
        return self.threads

    def fit_threads(self, threads: int) -> None:
        """Run cells with ``threads`` threads each (the study's pinned count): unless the number of
        workers was given, as many workers as fit in the cores."""
        self.threads = int(threads)
        if not self.explicit_workers:
            self.workers = max(1, available_cores() // self.threads)

    def open(self, fn) -> None:
        if fn is not self._fn:
            self.close()
            try:
                pickle.dumps(fn)
            except Exception as e:  # noqa: BLE001
                raise UserError(f"the local executor needs a cell function that pickles (a module-level "
                                f"function or an object of a module-level class): {e}") from None
        self._fn = fn

    def submit(self, cell) -> None:
        idle = [w for w in self._pool if w.cell is None]
        if idle:
            worker = idle[0]
        elif len(self._pool) < self.workers:
            worker = _Worker(self._ctx, self._fn, self.threads)
            self._pool.append(worker)
        else:
            raise RuntimeError("submit() with every worker busy: wait for next_done() first")
        worker.run(cell)

    def next_done(self):
        busy = [w for w in self._pool if w.cell is not None]
        if not busy:
            raise RuntimeError("next_done() with no cell in flight")
        while True:
            ready = set(wait_for([w.conn for w in busy] + [w.process.sentinel for w in busy]))
            for w in busy:
                if w.conn in ready or w.process.sentinel in ready:
                    outcome = w.receive()
                    if outcome is None:
                        continue  # the sentinel fired first; the message is on its way
                    cell, result = outcome
                    if isinstance(result, WorkerDied):
                        self._pool.remove(w)  # the next submit starts a fresh worker
                    return cell, result

    def close(self) -> None:
        for w in self._pool:
            w.stop()
        self._pool = []


class _Worker:
    """One worker process and the pipe to it; ``cell`` is the cell it runs (None: idle)."""

    def __init__(self, ctx, fn, threads: int):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, threads, os.getpid()), daemon=True,
                                   name="selfstudy-worker")
        self.process.start()
        child.close()
        self.conn.send(("fn", fn))
        self.cell = None

    def run(self, cell) -> None:
        self.cell = cell
        try:
            self.conn.send(("run", cell))
        except (BrokenPipeError, ConnectionResetError, EOFError):
            pass  # it died idle: next_done() reports the cell with the exit code

    def receive(self):
        """(cell, result or exception), or None when nothing is there yet."""
        cell = self.cell
        try:
            if not self.conn.poll():
                if self.process.is_alive():
                    return None
                raise EOFError
            kind, *payload = self.conn.recv()
        except (EOFError, OSError):
            self.process.join(5)
            code = self.process.exitcode
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit status {code}"
            self.conn.close()
            self.cell = None
            return cell, WorkerDied(f"its worker process (pid {self.process.pid}) died ({how}) while running "
                                    f"it; rerun the study to retry it")
        self.cell = None
        if kind == "ok":
            return cell, payload[0]
        error, text = payload
        error.__cause__ = RemoteTraceback(text)
        return cell, error

    def stop(self) -> None:
        if self.process.is_alive():
            if self.cell is None:
                try:
                    self.conn.send(("stop",))
                except OSError:
                    pass
                self.process.join(5)
            if self.process.is_alive():
                self.process.kill()  # it was running a cell (Ctrl-C of the driver) or hangs
            self.process.join(5)
        self.conn.close()


def _worker_main(conn, threads: int, parent: int) -> None:
    """A worker: set its threads, then run cells sent over ``conn`` until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    _die_with(parent)
    os.environ["SELFSTUDY_THREADS"] = str(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    fn = None
    while True:
        try:
            kind, *payload = conn.recv()
        except (EOFError, OSError):
            return
        if kind == "stop":
            return
        if kind == "fn":
            fn = payload[0]
            continue
        try:
            message = ("ok", fn(payload[0]))
        except Exception as e:  # noqa: BLE001 -- the cell's failure is its result
            text = "".join(traceback.format_exception(type(e), e, e.__traceback__))
            try:
                pickle.loads(pickle.dumps(e))
            except Exception:  # noqa: BLE001 -- an exception that does not survive pickling
                e = RuntimeError(f"{type(e).__name__}: {e}")
            message = ("err", e, text)
        try:
            conn.send(message)
        except (BrokenPipeError, OSError):
            return


def _die_with(parent: int) -> None:
    """End this process when ``parent`` dies (even by ``kill -9``), so that no orphaned worker goes on
    writing checkpoints a rerun of the study is writing too."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover -- not Linux: the watchdog alone
        pass
    if os.getppid() != parent:
        os._exit(1)

    def watch():
        import time

        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="selfstudy-parent-watch").start()


class RayExecutor(Executor):
    """Runs each cell as a Ray task (see the module docstring for a cluster setup).

    address: the Ray cluster (None: ``$RAY_ADDRESS``; unset or empty: a local Ray started on this
    machine); num_gpus: GPUs (or a fraction) each task of a phase asks for,
    ``{"pretrain": 1, "downstream": .25}`` by default, read per cell from ``cell.kind``; num_cpus: CPU
    cores per task (also its torch threads unless the study pins them); max_in_flight: most tasks
    submitted at once (bounds the driver's memory on huge grids).
    """

    name = "ray"

    def __init__(self, address: str | None = None, num_gpus: dict | None = None, num_cpus: float | None = None,
                 max_in_flight: int = 256):
        self._ray = _import_ray()
        gpu_default = {"pretrain": _env_number("SELFSTUDY_RAY_GPUS_PRETRAIN", 1.0),
                       "downstream": _env_number("SELFSTUDY_RAY_GPUS_DOWNSTREAM", 0.25)}
        self.num_gpus = {**gpu_default, **(num_gpus or {})}
        self.num_cpus = float(num_cpus) if num_cpus is not None else _env_number("SELFSTUDY_RAY_CPUS", 2.0)
        self.max_in_flight = int(max_in_flight)
        self.slots = self.max_in_flight
        self.default_threads = max(1, int(self.num_cpus))
        if not self._ray.is_initialized():
            address = address or os.environ.get("RAY_ADDRESS", "").strip() or None
            if address is None:
                os.environ.pop("RAY_ADDRESS", None)  # empty means unset; Ray itself would reject ""
            try:
                self._ray.init(address=address, ignore_reinit_error=True)
            except ConnectionError as e:
                raise UserError(f"cannot reach the Ray cluster at {address!r}: {str(e).splitlines()[0]} "
                                f"(start it with `ray start --head`, or unset RAY_ADDRESS for a local Ray)") \
                    from None
        has_gpu = self._ray.cluster_resources().get("GPU", 0) > 0
        if not has_gpu:
            # A CPU-only cluster: asking for GPUs would leave every task unschedulable forever.
            self.num_gpus = {k: 0.0 for k in self.num_gpus}
        self._remote = self._ray.remote(_call)
        self._pending: dict = {}

    def submit(self, cell) -> None:
        gpus = self.num_gpus.get(getattr(cell, "kind", "downstream"), 0.0)
        ref = self._remote.options(num_gpus=gpus, num_cpus=self.num_cpus).remote(self._fn, cell)
        self._pending[ref] = cell

    def next_done(self):
        done, _ = self._ray.wait(list(self._pending), num_returns=1)
        cell = self._pending.pop(done[0])
        try:
            return cell, self._ray.get(done[0])
        except Exception as e:  # noqa: BLE001 -- RayTaskError wraps the cell's own exception
            return cell, getattr(e, "cause", None) or e

    def close(self) -> None:
        # Leave the cluster connection to whoever opened it: a driver may run several studies.
        for ref in list(self._pending):
            try:
                self._ray.cancel(ref)
            except Exception:  # noqa: BLE001
                pass
        self._pending = {}


def _env_number(name: str, default: float) -> float:
    text = os.environ.get(name)
    if text is None or not text.strip():
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise UserError(f"${name}={text!r} is not allowed: give a number >= 0 (a fraction of a GPU is fine)")
    return value


def _call(fn, cell):
    return fn(cell)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UserError("the ray executor needs Ray, which is not installed: pip install ray (in a checkout: pip install -e '.[ray]') "
                        "(or use --executor local or inprocess)") from None
    return ray


EXECUTORS = {"inprocess": InProcessExecutor, "local": LocalExecutor, "ray": RayExecutor}
#: what ``--executor`` accepts: an executor, or ``auto`` (:func:`choose_executor`)
CHOICES = ("auto", *EXECUTORS)


def make_executor(name: str, workers: int | None = None) -> Executor:
    """The executor called ``name`` (``inprocess``, ``local`` or ``ray``); ``workers`` for ``local``."""
    if name not in EXECUTORS:
        raise UserError(f"unknown executor {name!r}; allowed: {', '.join(CHOICES)}")
    if workers is not None and name != "local":
        raise UserError(f"--workers is for the local executor, not {name!r}")
    if name == "local":
        return LocalExecutor(workers=workers)
    return EXECUTORS[name]()


def choose_executor(device: str, cells: int, threads: int | None = None, cores: int | None = None) -> Executor:
    """What runs ``cells`` cells fastest here (the CLI's ``--executor auto``).

    On a GPU (``device`` ``cuda...``): in-process, since cells would share the one device. On a CPU
    with at least two cores and more than one cell: the local executor with one worker per
    ``threads`` cores (``threads``: the study's pinned threads per cell, default 1): side by side with
    one thread each, cells finish sooner than one after the other with all threads (docs/RESULTS.md
    §3). Otherwise in-process.
    """
    cores = available_cores() if cores is None else cores
    if str(device).startswith("cuda") or cells < 2 or cores < 2:
        return InProcessExecutor()
    per = threads or 1
    workers = min(max(1, cores // per), cells)
    if workers < 2:
        return InProcessExecutor()
    return LocalExecutor(workers=workers, threads=per)
