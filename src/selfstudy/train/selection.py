"""Model selection and stopping on the validation split: which weights a downstream run reports, and
when it ends.

A :class:`Selection` scores the model every ``eval_every`` steps and at the last step and keeps the
best weights. After ``patience`` evaluations without an improvement of more than ``min_delta`` (never
before ``min_step``) it does not stop at once: the learning rate first anneals linearly from where it is
to the final rate over an :func:`anneal_steps` tail (10 % of the planned steps), then the run ends
(:meth:`Trainer.stop <selfstudy.train.loop.Trainer.stop>`). So every arm, scratch or pretrained, ends
annealed, and the arm that plateaus first keeps the gain of the decay. :func:`still_improving` says
whether a curve that used its whole plan was still rising at its end.
"""

from __future__ import annotations

import math
from typing import Sequence

from selfstudy.tasks import Task
from selfstudy.train.loop import Callback

#: A run that plateaus anneals over this fraction of its planned steps before it stops. A fixed rule
#: rather than a budget option, so that the budgets' canonical dicts, and with them existing cell ids,
#: stay the same.
ANNEAL_FRACTION = 0.1


def anneal_steps(planned_steps: int) -> int:
    """Length of the annealing tail of a run of ``planned_steps``: ``ceil(ANNEAL_FRACTION * planned)``,
    at least 1."""
    return max(1, math.ceil(ANNEAL_FRACTION * planned_steps))


class Selection(Callback):
    """A Trainer callback: scores the model on validation every ``eval_every`` steps and at the last
    step, keeps the best weights, and after ``patience`` evaluations without an improvement of more
    than ``min_delta`` (never before step ``min_step``) ends the run after an annealing tail of
    ``anneal_steps`` (:meth:`Trainer.stop <selfstudy.train.loop.Trainer.stop>`).

    ``score(module) -> dict`` returns the task's metrics; ``curve`` collects ``(step, metrics)``.
    """

    def __init__(self, task: Task, score, eval_every: int, patience: int, min_delta: float,
                 min_step: int = 0, anneal_steps: int = 0):
        self.task, self.score = task, score
        self.anneal_steps = anneal_steps
        self.eval_every, self.patience, self.min_delta, self.min_step = eval_every, patience, min_delta, min_step
        self.curve: list[tuple[int, dict]] = []
        self.best: float | None = None
        self.best_step = 0
        self.best_metrics: dict = {}
        self.best_state: dict | None = None
        self._ref: float | None = None
        self._since = 0
        self.stopped_early = False

    def on_step_end(self, trainer, step: int, outputs) -> None:
        if step % self.eval_every and step != trainer.end_step:
            return
        module = trainer.module
        m = self.score(module)
        v = m[self.task.primary]
        self.curve.append((step, m))
        if self.best is None or self.task.better(v, self.best):
            self.best, self.best_step, self.best_metrics = v, step, m
            self.best_state = {k: t.detach().clone() for k, t in module.state_dict().items()}
        if self._ref is None or self.task.better(v, self._ref, self.min_delta):
            self._ref, self._since = v, 0
        else:
            self._since += 1
        if (self.patience and self._since >= self.patience and self.min_step <= step < trainer.end_step
                and not self.stopped_early):
            trainer.stop(self.anneal_steps)
            self.stopped_early = trainer.stopped_early

    @property
    def values(self) -> list[float]:
        return [m[self.task.primary] for _, m in self.curve]


def still_improving(values: Sequence[float], higher_is_better: bool, min_delta: float,
                    late_fraction: float = 0.2) -> bool:
    """Whether a validation curve was still rising at its end.

    ``values``: the primary metric at each evaluation, in order. True when the best of the last
    ``ceil(late_fraction * len)`` evaluations beats the best of all earlier ones by more than
    ``min_delta`` (for ``higher_is_better=False``, "beats" means "is lower").
    """
    v = [float(x) for x in values]
    if len(v) < 2:
        return len(v) == 1  # one evaluation says nothing about convergence; assume not converged
    late = max(1, math.ceil(late_fraction * len(v)))
    late = min(late, len(v) - 1)
    pick = max if higher_is_better else min
    before, after = pick(v[:-late]), pick(v[-late:])
    return after > before + min_delta if higher_is_better else after < before - min_delta
