"""The budgets of the downstream protocols: :class:`Budget` (finetuning, training from scratch) and
:class:`ProbeBudget` (the frozen-feature linear probe and k-NN).

Both are typed configs (:class:`selfstudy.config.Config`): every field carries the range it allows,
``from_overrides`` reads a dict or ``key=value`` strings into one, and its :meth:`~Config.to_dict` is
the canonical form that a study's cell ids hash. How a budget is spent is
:mod:`selfstudy.train.finetune`'s and :mod:`selfstudy.train.probe`'s business (their module docs).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

from selfstudy.config import Config, option, parse_override

if TYPE_CHECKING:
    from selfstudy.tasks import Task


def _pairs(overrides: Mapping[str, Any] | Sequence[str] | None) -> dict:
    """A dict of overrides from a dict or ``key=value`` strings (values read as YAML)."""
    if overrides is None:
        return {}
    if isinstance(overrides, Mapping):
        return dict(overrides)
    return {".".join(path): value for path, value in map(parse_override, overrides)}


@dataclass
class Budget(Config):
    """How long a downstream run trains, how it is evaluated and when it stops (see
    :mod:`selfstudy.train.finetune`).

    Attributes:
        epochs: passes over the labeled subset the plan asks for (before clamping).
        min_steps, max_steps: bounds of the planned optimizer steps.
        batch_size: images per step.
        evals: evaluations over the planned run, used when ``eval_every`` is None.
        eval_every: steps between validation evaluations (None: ``ceil(planned / evals)``).
        patience: evaluations without an improvement > ``min_delta`` before stopping (0: never stop).
        min_fraction: early stopping never ends a run before this fraction of its planned steps (the
            decaying learning rate has to anneal for the later gains to show).
        min_delta: smallest improvement of the primary metric that counts (None: the task's).
        late_fraction: the share of the last evaluations that decides ``still_improving``.
        val_size: validation images scored per evaluation (None or 0: the whole split).
        test_size: test images scored (None or 0: the whole split).
        eval_batch: images per forward pass when evaluating.
        lr, final_lr, weight_decay, warmup_fraction: the optimizer schedule (the paper's values).
        lr_grid, weight_decay_grid: optional grids of peak learning rates and weight decays: the cell
            trains once per combination (the others' values: ``lr``, ``weight_decay``) and keeps the
            one with the best validation score, the same rule for every arm
            (:mod:`selfstudy.train.recipe`). None: ``lr`` and ``weight_decay`` alone. Left out of
            :meth:`to_dict` when None, so a budget without grids keeps its cell ids.
        augment: apply the paper's augmentation to the labeled images (false: none, for every arm
            alike). Without it a network trained on a few hundred labels stops gaining within a few
            hundred passes, so its budget converges quickly; with it the same network keeps gaining
            for thousands of steps. Left out of :meth:`to_dict` while true (the default).
    """

    config_name: ClassVar[str] = "budget"
    unknown_message: ClassVar[str] = "unknown budget option(s) {keys}{hint}; allowed: {allowed}"

    epochs: float = option(200.0, gt=0)
    min_steps: int = option(500, ge=1)
    max_steps: int = option(10000, ge=1)
    batch_size: int = option(128, ge=1)
    evals: int = option(25, ge=1)
    eval_every: int | None = option(None, ge=1)
    patience: int = option(8, ge=0, allowed="an integer >= 0 (0: no early stopping)")
    min_fraction: float = option(0.5, ge=0, le=1)
    min_delta: float | None = option(None, ge=0)
    late_fraction: float = option(0.2, gt=0, le=1)
    val_size: int | None = option(1000, ge=0)
    test_size: int | None = option(None, ge=0)
    eval_batch: int = option(512, ge=1)
    lr: float = option(1e-3, gt=0)
    final_lr: float = option(1e-6, ge=0)
    weight_decay: float = option(1e-4, ge=0)
    warmup_fraction: float = option(0.05, ge=0, le=1)
    lr_grid: tuple[float, ...] | None = option(None, gt=0, nonempty=True,
                                               allowed="a non-empty list of learning rates > 0, e.g. "
                                                       "lr_grid=[3e-4,1e-3,3e-3] (null: lr alone)")
    weight_decay_grid: tuple[float, ...] | None = option(None, ge=0, nonempty=True,
                                                         allowed="a non-empty list of numbers >= 0, e.g. "
                                                                 "weight_decay_grid=[0,1e-4,1e-3] (null: "
                                                                 "weight_decay alone)")
    augment: bool = option(True)

    #: Fields added after cell ids were recorded: left out of the canonical dict while at their
    #: default, so a budget that does not set them keeps its cell ids.
    optional_fields: ClassVar[tuple[str, ...]] = ("lr_grid", "weight_decay_grid", "augment")

    def to_dict(self) -> dict[str, Any]:
        """The canonical dict (what cell ids hash), without :attr:`optional_fields` at their default."""
        d = super().to_dict()
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for k in self.optional_fields:
            if k in d and d[k] == defaults[k]:
                d.pop(k)
        return d

    def check(self) -> None:
        self.require(self.max_steps >= self.min_steps, "max_steps",
                     f"an integer >= min_steps ({self.min_steps})")

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, Any] | Sequence[str] | None = None,
                       base: "Budget | None" = None) -> "Budget":
        """``base`` (default: the defaults) with fields replaced from a dict or ``key=value`` strings.
        String values in a dict are read as YAML (``"300"`` -> 300), as on a command line."""
        return cls.load(_pairs(overrides), base=base)

    def planned_steps(self, n: int) -> int:
        """Optimizer steps planned for ``n`` labels: ``clamp(ceil(epochs * n / batch_size), min, max)``."""
        return int(min(self.max_steps, max(self.min_steps, math.ceil(self.epochs * n / self.batch_size))))

    def resolve(self, n: int, task: Task) -> dict:
        """Every number the run will use for ``n`` labels (stored with the result)."""
        steps = self.planned_steps(n)
        d = dataclasses.asdict(self)
        d.update(
            n_labels=int(n),
            planned_steps=steps,
            eval_every=self.eval_every or max(1, math.ceil(steps / self.evals)),
            warmup_steps=int(self.warmup_fraction * steps),
            min_stop_step=max(int(self.warmup_fraction * steps), int(self.min_fraction * steps)),
            min_delta=task.min_delta if self.min_delta is None else float(self.min_delta),
        )
        return d


@dataclass
class ProbeBudget(Config):
    """Settings of the frozen-feature protocols (see :mod:`selfstudy.train.probe`).

    Attributes:
        steps: optimizer steps of each linear fit.
        batch_size: features per step (full batch when the subset is no larger).
        lr, final_lr: Adam's learning rate, decaying linearly from ``lr`` to ``final_lr``.
        weight_decays: the L2 grid the validation split chooses from.
        eval_every: steps between validation evaluations of a fit.
        min_delta: smallest improvement that counts (None: the task's); late_fraction: see
            :func:`~selfstudy.train.selection.still_improving`.
        val_size, test_size: images scored (None or 0: the whole split); the same fixed subsets as
            finetuning's.
        feature_batch: images per forward pass while extracting features.
        k, temperature: the k-NN vote.
    """

    config_name: ClassVar[str] = "probe budget"
    unknown_message: ClassVar[str] = "unknown probe option(s) {keys}{hint}; allowed: {allowed}"

    steps: int = option(300, ge=1)
    batch_size: int = option(4096, ge=1)
    lr: float = option(1e-2, gt=0)
    final_lr: float = option(0.0, ge=0)
    weight_decays: tuple[float, ...] = option((0.0, 1e-4, 1e-3, 1e-2, 1e-1), ge=0, nonempty=True,
                                              allowed="a non-empty list of numbers >= 0, "
                                                      "e.g. weight_decays=[0,1e-3,1e-2]")
    eval_every: int = option(25, ge=1)
    min_delta: float | None = option(None, ge=0)
    late_fraction: float = option(0.2, gt=0, le=1)
    val_size: int | None = option(1000, ge=0)
    test_size: int | None = option(None, ge=0)
    feature_batch: int = option(512, ge=1)
    k: int = option(20, ge=1)
    temperature: float = option(0.07, gt=0)

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, Any] | Sequence[str] | None = None) -> "ProbeBudget":
        """The defaults with fields replaced from a dict or ``key=value`` strings (string values in a
        dict are read as YAML)."""
        return cls.load(_pairs(overrides))
