"""The data a downstream run reads, the same way for every protocol (finetune, scratch, linear probe,
k-NN): the dataset, checked against the task and the run's arguments, its labeled subset, and the fixed
validation and test subsets every arm is scored on.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Mapping

import numpy as np

from selfstudy.core import distributed
from selfstudy.core.device import check_precision
from selfstudy.data import generate
from selfstudy.data.store import Dataset
from selfstudy.data.subsets import nested_balanced, nested_random, subset_sha
from selfstudy.errors import UserError
from selfstudy.tasks import Task

#: Seeds of the fixed evaluation subsets: the same images for every run, whatever its own seed.
VAL_SUBSET_SEED, TEST_SUBSET_SEED = 0x7A1, 0x7E57


def open_data(data, res: int | None = None, n: int | None = None, progress: bool = False,
              res_name: str = "--res"):
    """A :class:`~selfstudy.data.store.Dataset` from a folder, a ``Dataset``, or a factor string
    (``"TCVL"``: generated once, then reused, by ``selfstudy.data.generate.ensure_dataset``).

    ``res`` (pixels) and ``n`` (images) pick what to generate for a factor string; for a folder ``res``
    must match the stored images (``res_name`` names it in the error: ``--res`` on the command line,
    ``res`` for a Python argument). Under torchrun every rank calls this: rank 0 renders a factor
    string's dataset, the others wait, then find the finished dataset by its hash.
    """
    if isinstance(data, Dataset):
        ds = data
    else:
        target = generate.data_argument(data, res, n)
        if isinstance(target, Path):
            ds = Dataset(target)
        elif distributed.current().is_main:
            path = generate.ensure_dataset(target, progress=progress)
            distributed.barrier()
            ds = Dataset(path)
        else:
            distributed.barrier()
            ds = Dataset(generate.ensure_dataset(target, progress=False))
    stored = int(ds["images"].shape[1])
    if res is not None and int(res) != stored:
        asked = f"{res_name} {res}" if res_name.startswith("-") else f"{res_name}={res}"
        raise UserError(f"dataset {ds.path} is {stored} px but {asked} was asked for; omit {res_name} or "
                        f"render the dataset at {res} px")
    return ds


def names_a_folder(data) -> bool:
    """Whether :func:`open_data` opens ``data`` as it is (a ``Dataset`` or a folder) rather than
    generating or reusing the dataset of a factor string."""
    return isinstance(data, Dataset) or isinstance(generate.data_argument(data), Path)


def dataset_factors(ds) -> str | None:
    """The dataset's factor string from its config, or None if it does not record one."""
    f = ds.config.get("factors") if isinstance(ds.config, Mapping) else None
    return str(f) if f is not None else None


def check_task_on(ds, task: Task) -> Task:
    """Raise :class:`UserError` unless ``task`` can run on ``ds`` (its factors, its arrays); return the
    task for ``ds``: classification on an imported dataset takes its classes (``class_names``)."""
    task.check(dataset_factors(ds), f"dataset {ds.path}")
    if task.dense:  # per-pixel labels: any dataset with the maps, multi-object ones included
        task.check_dataset(ds)
        return task
    missing = [a for a in task.required_arrays if a not in ds]
    if missing:
        raise UserError(f"task {task.spec!r} needs array(s) {', '.join(missing)}, which dataset {ds.path} "
                        f"does not have; it has: {', '.join(ds.names)}")
    if "label" not in ds or bool((np.asarray(ds["label"][:1]) < 0).any()):
        raise UserError(f"dataset {ds.path} has no per-image class label (a multi-object dataset?); "
                        f"task {task.spec!r} needs a single-object dataset")
    names = ds.config.get("class_names") if isinstance(ds.config, Mapping) else None
    if names and getattr(task, "target_array", None) == "label":
        task = copy.copy(task)
        task.class_names = tuple(str(n) for n in names)
    return task


def check_run_args(n_labels, seed, precision: str) -> None:
    if isinstance(n_labels, bool) or not isinstance(n_labels, (int, np.integer)) or n_labels <= 0:
        raise UserError(f"label count {n_labels!r} is not allowed; it must be a positive integer")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"seed {seed!r} is not allowed; it must be an integer >= 0")
    check_precision(precision)


def labeled_subset(ds, task: Task, n_labels: int, seed: int) -> tuple[np.ndarray, str]:
    """``(positions within the train split, subset_sha)`` of the ``n_labels``-label subset: nested and
    balanced over object classes (``label``) for every task, so all tasks of a seed share one subset;
    nested and uniformly random on datasets without a per-image class (multi-object scenes, label -1).
    The sha is of the dataset indices."""
    train_idx = ds.indices("train")
    labels = np.asarray(ds["label"][train_idx]) if "label" in ds else None
    if labels is None or bool((labels < 0).any()):
        pos = nested_random(len(train_idx), [n_labels], seed)[n_labels]
    else:
        pos = nested_balanced(labels, [n_labels], seed)[n_labels]
    return pos, subset_sha(train_idx[pos])


def fixed_subset(n_split: int, size: int | None, stream: int) -> np.ndarray | None:
    """Positions of a fixed random ``size``-subset of a split of ``n_split`` images (sorted), or None
    for the whole split. Independent of any run's seed, so every arm is scored on the same images."""
    if not size or size >= n_split:
        return None
    return np.sort(np.random.default_rng([stream, n_split]).permutation(n_split)[:size])
