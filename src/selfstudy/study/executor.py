"""Where a study's cells run: in this process (the default) or as Ray tasks on a cluster.

An executor has one method, ``map(fn, cells)``: it runs ``fn(cell)`` for every cell and yields
``(cell, result)`` as each finishes, or ``(cell, exception)`` when ``fn`` raised; one failing cell never
stops the others. Results come back to the process that called ``map``, and only that process writes
the results database, so workers need no access to it.

``cells`` may be a lazy iterable: an executor pulls a cell just before it starts it (the in-process
executor) or when it submits it (Ray), which is when the runner marks the cell ``running``.

Fanning out on a cluster with Ray
---------------------------------
1. Put the study folder and the dataset root (``$SELFSTUDY_DATA``) on storage every node mounts at
   the same path (NFS, a shared volume): workers read datasets and write checkpoints there.
2. Install the same ``selfstudy`` (and torch build) on every node, plus ``pip install ray``.
3. Start the cluster (``ray start --head`` on one node, ``ray start --address=HEAD:6379`` on the
   others, or a Ray cluster launcher / KubeRay), then on the head node::

       RAY_ADDRESS=auto selfstudy study run paper --dir /shared/studies/paper --executor ray

   Each cell is a Ray task asking for ``num_gpus`` (default 1 for pretraining, 0.25 for downstream
   cells, so four small finetunes share a GPU; set ``SELFSTUDY_RAY_GPUS_PRETRAIN`` /
   ``SELFSTUDY_RAY_GPUS_DOWNSTREAM`` to change them) and ``num_cpus`` (``SELFSTUDY_RAY_CPUS``, default 2).
   Ray places tasks where resources are free.
4. Resuming works as in-process: killing the driver loses only the cells in flight; rerunning the same
   command skips every finished cell and pretraining resumes from its own ``last.pt``.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Iterator

from selfstudy.errors import UserError

Outcome = Any  # the cell function's result, or the exception it raised


class Executor:
    """Runs a function over cells; subclasses implement :meth:`map`."""

    name = "base"

    def map(self, fn: Callable[[Any], Any], cells: Iterable) -> Iterator[tuple[Any, Outcome]]:
        """Yield ``(cell, fn(cell))`` or ``(cell, exception)`` for every cell, in completion order."""
        raise NotImplementedError

    def close(self) -> None:
        """Release whatever the executor holds (a cluster connection)."""


class InProcessExecutor(Executor):
    """Runs cells one after another in the calling process (the default; the only sensible choice on a
    one-GPU machine, where cells would only compete for the device). ``KeyboardInterrupt`` and
    ``SystemExit`` are not caught: they stop the study."""

    name = "inprocess"

    def map(self, fn, cells):
        for cell in cells:
            try:
                result = fn(cell)
            except Exception as e:  # noqa: BLE001 -- a cell's failure is its result
                yield cell, e
            else:
                yield cell, result


class RayExecutor(Executor):
    """Runs each cell as a Ray task (see the module docstring for a cluster setup).

    address: the Ray cluster (None: ``$RAY_ADDRESS`` or a local Ray started on this machine);
    num_gpus: GPUs (or a fraction) each task of a phase asks for, ``{"pretrain": 1, "downstream": .25}``
    by default, read per cell from ``cell.kind``; num_cpus: CPU cores per task;
    max_in_flight: most tasks submitted at once (bounds the driver's memory on huge grids).
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
        if not self._ray.is_initialized():
            self._ray.init(address=address or os.environ.get("RAY_ADDRESS"), ignore_reinit_error=True)
        has_gpu = self._ray.cluster_resources().get("GPU", 0) > 0
        if not has_gpu:
            # A CPU-only cluster: asking for GPUs would leave every task unschedulable forever.
            self.num_gpus = {k: 0.0 for k in self.num_gpus}
        self._remote = self._ray.remote(_call)

    def map(self, fn, cells):
        ray = self._ray
        pending: dict = {}
        it = iter(cells)
        exhausted = False
        while True:
            while not exhausted and len(pending) < self.max_in_flight:
                try:
                    cell = next(it)
                except StopIteration:
                    exhausted = True
                    break
                gpus = self.num_gpus.get(getattr(cell, "kind", "downstream"), 0.0)
                ref = self._remote.options(num_gpus=gpus, num_cpus=self.num_cpus).remote(fn, cell)
                pending[ref] = cell
            if not pending:
                return
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                cell = pending.pop(ref)
                try:
                    yield cell, ray.get(ref)
                except Exception as e:  # noqa: BLE001 -- RayTaskError wraps the cell's own exception
                    yield cell, getattr(e, "cause", None) or e

    def close(self) -> None:
        pass  # leave the cluster connection to whoever opened it: a driver may run several studies


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
        raise UserError("the ray executor needs Ray, which is not installed: pip install ray "
                        "(or use --executor inprocess)") from None
    return ray


EXECUTORS = {"inprocess": InProcessExecutor, "ray": RayExecutor}


def make_executor(name: str) -> Executor:
    """The executor called ``name`` (``inprocess`` or ``ray``)."""
    if name not in EXECUTORS:
        raise UserError(f"unknown executor {name!r}; allowed: {', '.join(EXECUTORS)}")
    return EXECUTORS[name]()
