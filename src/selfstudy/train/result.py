"""What a downstream run reports: one :class:`DownstreamResult` for finetuning, training from scratch,
the linear probe and k-NN alike. The study database stores its :meth:`~DownstreamResult.to_dict`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:  # annotations only: this module imports no torch
    from selfstudy.tasks import Task
    from selfstudy.train.selection import Selection


def prefixed(prefix: str, metrics: Mapping[str, float]) -> dict[str, float]:
    """``{"prefix/name": value}`` for every metric (values as floats)."""
    return {f"{prefix}/{k}": float(v) for k, v in metrics.items()}


def scores(**splits: Mapping[str, float]) -> dict[str, float]:
    """Every split's metrics in one flat dict, each name prefixed with its split
    (``scores(val=..., test=...)`` -> ``{"val/accuracy": .., "test/accuracy": ..}``), in the order given."""
    out: dict[str, float] = {}
    for split, metrics in splits.items():
        out.update(prefixed(split, metrics))
    return out


@dataclass(frozen=True)
class DownstreamResult(Mapping):
    """One downstream run's numbers. Reads like the dict it is stored as (``result["test"]``).

    Attributes:
        metric: the task's primary metric; higher_is_better: its direction.
        val, test: the primary metric of the selected weights (best validation evaluation) on the
            validation subset and the test split; val_last, test_last: of the last weights.
        still_improving: the run used its whole plan and was still gaining at its end.
        steps: optimizer steps taken; seconds: wall time of the run.
        metrics: every metric, prefixed by what it scores (``val/``, ``test/``, ``val_last/``,
            ``test_last/``).
        subset_sha, subset_indices: the labeled subset (dataset rows) and its hash.
        budget: every number the run used (its budget, resolved for ``n_labels``).
        protocol: ``finetune``, ``scratch``, ``linear`` or ``knn``; task: the task's spec;
            backbone, method: the encoder and the pretraining method (None for scratch).
        n_labels, seed: the labeled images and the run's seed.
        best_step: the step of the selected weights; stopped_early: ended on a validation plateau
            (after its annealing tail); curve: ``[step, validation primary]`` of every evaluation.
    """

    metric: str
    higher_is_better: bool
    val: float
    test: float
    val_last: float
    test_last: float
    still_improving: bool
    steps: int
    seconds: float
    metrics: dict[str, float]
    subset_sha: str
    subset_indices: list[int] | None
    budget: dict[str, Any]
    protocol: str
    task: str
    backbone: str
    method: str | None
    n_labels: int
    seed: int
    best_step: int
    stopped_early: bool
    curve: list[list]

    def to_dict(self) -> dict[str, Any]:
        """The result as a plain dict, keyed (and ordered) as the fields."""
        return {name: getattr(self, name) for name in _KEYS}

    def __getitem__(self, key: str) -> Any:
        if key not in _INDEX:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(_KEYS)

    def __len__(self) -> int:
        return len(_KEYS)


_KEYS = tuple(f.name for f in dataclasses.fields(DownstreamResult))
_INDEX = frozenset(_KEYS)


def selected(task: "Task", selection: "Selection", test_best: Mapping[str, float],
             test_last: Mapping[str, float], *, still_improving: bool, stopped_early: bool = False,
             extra_metrics: Mapping[str, float] | None = None, **fields: Any) -> DownstreamResult:
    """The result of a trained run (finetuning, scratch, the linear probe): the weights ``selection``
    chose (best validation) scored ``test_best`` on the test split, the last weights ``test_last``.

    This fills every field read from the task and the selection (metric, direction, val/test of both
    weights, ``metrics``, ``best_step``, ``curve``); ``fields`` are the protocol's own (``steps``,
    ``seconds``, ``subset_sha``, ``subset_indices``, ``budget``, ``protocol``, ``backbone``,
    ``method``, ``n_labels``, ``seed``). ``extra_metrics`` go after the split metrics.
    """
    primary = task.primary
    last_val = selection.curve[-1][1]
    metrics = scores(val=selection.best_metrics, test=test_best, val_last=last_val, test_last=test_last)
    return DownstreamResult(
        metric=primary,
        higher_is_better=task.higher_is_better,
        val=selection.best,
        test=test_best[primary],
        val_last=last_val[primary],
        test_last=test_last[primary],
        still_improving=still_improving,
        metrics=metrics | dict(extra_metrics or {}),
        task=task.spec,
        best_step=selection.best_step,
        stopped_early=stopped_early,
        curve=[[s, m[primary]] for s, m in selection.curve],
        **fields,
    )
