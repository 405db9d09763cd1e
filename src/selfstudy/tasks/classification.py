"""Object classification: 10-way cross-entropy on the pooled feature, top-1 accuracy (docs/PAPER.md §5.1).

Metrics (accuracies are fractions in [0, 1]):

- ``accuracy``: top-1 accuracy over all images (the primary metric, as in the paper);
- ``mean_class_accuracy``: the mean of the per-class accuracies over the classes present in the split
  (insensitive to class imbalance);
- ``class_accuracy/<name>``: each class's accuracy (absent classes are left out);
- ``accuracy_se``: the binomial standard error of ``accuracy``, ``sqrt(p (1 - p) / n)`` over the
  split's ``n`` images;
- ``loss``: mean cross-entropy.

The budget-check tolerance is one accuracy point (0.01).
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from selfstudy.scene.classes import CLASSES
from selfstudy.tasks.base import Task


class CategoricalTask(Task):
    """Shared machinery of K-way classification tasks on one integer array of the dataset."""

    primary = "accuracy"
    higher_is_better = True
    min_delta = 0.005  # half a percentage point
    budget_tolerance = 0.01  # one accuracy point
    target_array: str = "label"
    class_names: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def required_arrays(self) -> tuple[str, ...]:  # type: ignore[override]
        return (self.target_array,)

    def head(self, in_dim: int) -> nn.Module:
        return nn.Linear(in_dim, self.num_classes)

    def targets(self, data: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """(N,) int64 class ids from ``data[target_array]``."""
        return data[self.target_array].long()

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of logits ``out`` (N, K) against ``y`` (N,)."""
        return F.cross_entropy(out.float(), y)

    def metric_sums(self, out: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        out, y = out.float(), y.long()
        k = self.num_classes
        correct = (out.argmax(1) == y).double()
        return {
            "count": torch.tensor(float(len(y)), dtype=torch.float64),
            "correct": correct.sum(),
            "loss": F.cross_entropy(out, y, reduction="sum").double(),
            "class_count": torch.bincount(y, minlength=k).double()[:k],
            "class_correct": torch.bincount(y, weights=correct, minlength=k).double()[:k],
        }

    def primary_se(self, sums: Mapping[str, torch.Tensor]) -> float:
        """Binomial standard error of the accuracy: ``sqrt(p (1 - p) / n)`` (NaN for n < 2)."""
        n = float(sums["count"])
        if n < 2:
            return float("nan")
        p = float(sums["correct"]) / n
        return (p * (1.0 - p) / n) ** 0.5

    def trivial(self, y: torch.Tensor) -> float | None:
        """The majority-class rate of ``y`` (the accuracy of always predicting the commonest class)."""
        y = y.long().reshape(-1)
        return float(torch.bincount(y).max()) / len(y) if len(y) else None

    def metrics_from_sums(self, sums: Mapping[str, torch.Tensor]) -> dict[str, float]:
        n = float(sums["count"])
        if n == 0:
            return {}
        present = sums["class_count"] > 0
        per_class = sums["class_correct"][present] / sums["class_count"][present]
        m = {
            "accuracy": float(sums["correct"]) / n,
            "mean_class_accuracy": float(per_class.mean()),
            "loss": float(sums["loss"]) / n,
        }
        for i in torch.nonzero(present).flatten().tolist():
            m[f"class_accuracy/{self.class_names[i]}"] = float(sums["class_correct"][i] / sums["class_count"][i])
        return self.with_se(m, sums)


class Classification(CategoricalTask):
    """The paper's 10 object classes from the ``label`` array. Applies to every single-object dataset."""

    name = "classification"
    target_array = "label"
    class_names = CLASSES
