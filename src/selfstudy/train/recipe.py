"""A recipe for each arm, as a practitioner would tune it: finetuning over a grid of peak learning rates
and weight decays (``Budget.lr_grid``, ``Budget.weight_decay_grid``), chosen on the validation split.

Every arm (scratch and each pretrained method) gets the same grid and the same rule, so a pretrained
arm and scratch each train with their best recipe rather than one shared guess:

- the cell trains once per ``(lr, weight_decay)`` combination, lr-major in the grids' order, each run
  exactly as a cell without a grid would (same seed, subset, schedule shape, early stopping);
- the combination with the best validation score (:func:`choose`: the task's direction; a tie goes to
  the earlier combination; a non-finite score is never chosen over a finite one) is the cell's result;
  the test split plays no part in the choice;
- the result carries ``chosen_lr``, ``chosen_weight_decay`` and ``recipe_grid`` (every combination's
  lr, weight_decay, val, test, steps); ``seconds`` is the time of every run together.

Without grids :func:`run` is :func:`selfstudy.train.finetune.run`, unchanged.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

from selfstudy.train import finetune
from selfstudy.train.budget import Budget


def grid_points(budget: Budget) -> list[tuple[float, float]]:
    """The ``(lr, weight_decay)`` combinations of ``budget``, lr-major; one when it has no grids."""
    lrs = budget.lr_grid or (budget.lr,)
    wds = budget.weight_decay_grid or (budget.weight_decay,)
    return [(float(lr), float(wd)) for lr in lrs for wd in wds]


def choose(vals: Sequence[float], higher_is_better: bool) -> int:
    """The index of the best validation score: the task's direction, the first of equal ones, finite
    scores before non-finite ones (all non-finite: the first)."""
    best = None
    for i, v in enumerate(vals):
        if not (isinstance(v, (int, float)) and math.isfinite(v)):
            continue
        if best is None or (v > vals[best] if higher_is_better else v < vals[best]):
            best = i
    return 0 if best is None else best


def run(ds, task, *, budget: Budget | None = None, **kwargs) -> dict:
    """:func:`selfstudy.train.finetune.run` over ``budget``'s grid, the best combination on validation
    (see the module doc). Keyword arguments go to every run."""
    budget = budget or Budget()
    if budget.lr_grid is None and budget.weight_decay_grid is None:
        return dict(finetune.run(ds, task, budget=budget, **kwargs))
    points = grid_points(budget)
    results = []
    for lr, wd in points:
        b = dataclasses.replace(budget, lr=lr, weight_decay=wd, lr_grid=None, weight_decay_grid=None)
        results.append(dict(finetune.run(ds, task, budget=b, **kwargs)))
    i = choose([r.get("val") for r in results], bool(results[0].get("higher_is_better", True)))
    out = dict(results[i])
    out["chosen_lr"], out["chosen_weight_decay"] = points[i]
    out["recipe_grid"] = [{"lr": lr, "weight_decay": wd, "val": r.get("val"), "test": r.get("test"),
                           "steps": r.get("steps")} for (lr, wd), r in zip(points, results)]
    out["seconds"] = float(sum(float(r.get("seconds") or 0.0) for r in results))
    return out
