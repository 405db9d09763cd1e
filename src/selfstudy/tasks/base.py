"""What a downstream task is: a head, its targets, a loss and metrics.

A task never sees the backbone's internals: it reads one :class:`~selfstudy.models.base.BackboneOutput`
through :meth:`Task.features` (the pooled vector for image-level tasks; ``maps[dense_map]`` for the
dense tasks that slot in later: segmentation, depth), puts its own head on it (a single linear layer,
as in the paper, docs/PAPER.md §5) and scores the head's output against :meth:`Task.targets`.

Metrics are computed over a whole split in batches: :meth:`Task.metric_sums` turns one batch into
additive sufficient statistics (counts, sums), the caller adds them over batches, and
:meth:`Task.metrics_from_sums` turns the totals into numbers. :meth:`Task.metrics` does both for
tensors that fit at once.

Every task's metrics include ``<primary>_se`` (when the split has two images or more) (:data:`SE_SUFFIX`), the standard error of the primary
metric over the split's images (a binomial one for accuracies; from per-image statistics, carried in
the same additive sums, for the others), and every task states :attr:`Task.budget_tolerance`, the
gain at a larger budget that a budget check ignores, in the metric's own units. A study compares a
check's gain against the larger of the two (:mod:`selfstudy.study.autobudget`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from selfstudy.errors import UserError
from selfstudy.factors import Factors

#: Suffix of the metric key holding the standard error of the primary metric (``accuracy_se``).
SE_SUFFIX = "_se"


@dataclass(frozen=True)
class Availability:
    """Whether a task makes sense on a dataset, and if not, why. Truthy when it does."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


class Task:
    """Base class of downstream tasks. Subclasses set the class attributes and implement the methods.

    Attributes:
        name: registry name (``"classification"``).
        primary: the metric the study compares (a key of :meth:`metrics`).
        higher_is_better: direction of ``primary``.
        min_delta: the smallest change of ``primary`` that counts as an improvement (early stopping and
            the ``still_improving`` flag), in the metric's own units.
        budget_tolerance: the gain of ``primary`` at a larger budget that still counts as converged,
            in the metric's own units (one accuracy point, one degree, ...); a study never uses a
            tolerance below the noise of the scores it compares (:mod:`selfstudy.study.autobudget`).
        required_arrays: dataset arrays :meth:`targets` reads (besides ``images``).
        dense: whether the head reads a feature map (per-pixel task) rather than the pooled vector.
        augment_options: ``PaperAugment`` fields this task needs changed, because the augmentation
            would change its labels (a mirror changes a pose).
    """

    name: str = ""
    primary: str = ""
    higher_is_better: bool = True
    min_delta: float = 0.0
    budget_tolerance: float = 0.0
    required_arrays: tuple[str, ...] = ()
    dense: bool = False
    augment_options: Mapping[str, Any] = {}

    @property
    def spec(self) -> str:
        """The string that rebuilds this task with :func:`selfstudy.tasks.get_task`."""
        args = self.arguments()
        if not args:
            return self.name
        return f"{self.name}({', '.join(f'{k}={v!r}' for k, v in args.items())})"

    def arguments(self) -> dict:
        """The constructor arguments that differ from the defaults (for :attr:`spec`)."""
        return {}

    # --- what the head sees and predicts ---------------------------------------------------------
    def features(self, output, dense_map: str = "prepool") -> torch.Tensor:
        """The tensor the head reads from a ``BackboneOutput``: ``pooled`` (N, D) for image-level tasks,
        ``maps[dense_map]`` (N, C, h, w) for dense ones."""
        return output.maps[dense_map] if self.dense else output.pooled

    def head(self, in_dim: int) -> nn.Module:
        """A fresh head on ``in_dim`` features."""
        raise NotImplementedError

    def targets(self, data: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The training target of every image in ``data`` (arrays named in :attr:`required_arrays`)."""
        raise NotImplementedError

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Scalar training loss of head output ``out`` against targets ``y`` (mean over the batch)."""
        raise NotImplementedError

    # --- metrics ----------------------------------------------------------------------------------
    def metric_sums(self, out: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Additive statistics of one batch (float64 tensors); sum them over batches."""
        raise NotImplementedError

    def metrics_from_sums(self, sums: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """Metrics of a whole split from the summed statistics."""
        raise NotImplementedError

    def primary_se(self, sums: Mapping[str, torch.Tensor]) -> float:
        """The standard error of the primary metric of a split, from its summed statistics (NaN when
        there are fewer than two images)."""
        raise NotImplementedError

    @property
    def se_key(self) -> str:
        """The metric key of the primary metric's standard error (``accuracy_se``)."""
        return self.primary + SE_SUFFIX

    def with_se(self, metrics: dict[str, float], sums: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """``metrics`` with :attr:`se_key` added when the standard error is defined (two images or more)."""
        se = self.primary_se(sums)
        if math.isfinite(se):
            metrics[self.se_key] = float(se)
        return metrics

    def trivial(self, y: torch.Tensor) -> float | None:
        """The primary metric of the task's trivial prediction on targets ``y`` of a split: the
        majority class, the best constant, the all-background map (None where a task has none)."""
        return None

    def metrics(self, out: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """Metrics of the head outputs ``out`` against targets ``y`` of a whole split."""
        return self.metrics_from_sums(self.metric_sums(out, y))

    def better(self, a: float, b: float, delta: float = 0.0) -> bool:
        """Whether primary value ``a`` beats ``b`` by more than ``delta``."""
        return a > b + delta if self.higher_is_better else a < b - delta

    # --- where the task applies -------------------------------------------------------------------
    def available(self, factors: Factors | str | None) -> Availability:
        """Whether the task makes sense on a dataset with these factors (None: unknown, assume yes)."""
        return Availability(True)

    def check(self, factors: Factors | str | None, dataset: str = "the dataset") -> None:
        """Raise :class:`UserError` unless :meth:`available`."""
        a = self.available(factors)
        if not a:
            raise UserError(f"task {self.spec!r} cannot run on {dataset}: {a.reason}")

    def __repr__(self) -> str:
        return f"<task {self.spec}>"


def add_sums(total: dict[str, torch.Tensor] | None, batch: Mapping[str, torch.Tensor]) -> dict:
    """``total + batch`` for metric sums (``total`` may be None for the first batch)."""
    if total is None:
        return {k: v.detach().to("cpu", torch.float64).clone() for k, v in batch.items()}
    for k, v in batch.items():
        total[k] += v.detach().to("cpu", torch.float64)
    return total
