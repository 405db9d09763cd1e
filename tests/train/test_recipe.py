"""A learning-rate / weight-decay grid per finetune cell, chosen on validation by one rule for every arm."""

import math

import pytest

from selfstudy.train import finetune, recipe
from selfstudy.train.budget import Budget


def test_grids_are_optional_and_left_out_of_the_cell_id_dict():
    assert "lr_grid" not in Budget().to_dict() and "weight_decay_grid" not in Budget().to_dict()
    b = Budget.from_overrides(["lr_grid=[3e-4,1e-3,3e-3]", "weight_decay_grid=[0,1e-4]"])
    assert b.to_dict()["lr_grid"] == [3e-4, 1e-3, 3e-3] and Budget.from_overrides(b.to_dict()) == b
    assert recipe.grid_points(b) == [(3e-4, 0.0), (3e-4, 1e-4), (1e-3, 0.0), (1e-3, 1e-4), (3e-3, 0.0), (3e-3, 1e-4)]
    assert recipe.grid_points(Budget()) == [(1e-3, 1e-4)]
    assert recipe.grid_points(Budget.from_overrides(["lr_grid=[1e-2]"])) == [(1e-2, 1e-4)]


@pytest.mark.parametrize("bad", ["lr_grid=[]", "lr_grid=[0]", "weight_decay_grid=[-1]"])
def test_bad_grids_are_refused(bad):
    from selfstudy.errors import UserError

    with pytest.raises(UserError, match=bad.split("=")[0] + " must be a non-empty list"):
        Budget.from_overrides([bad])


def test_choose():
    assert recipe.choose([0.3, 0.5, 0.5, 0.4], True) == 1  # the first of equal bests
    assert recipe.choose([20.0, 12.0, 15.0], False) == 1
    assert recipe.choose([float("nan"), 0.1], True) == 1 and recipe.choose([None, float("nan")], True) == 0


def test_run_trains_every_combination_and_keeps_the_best_on_validation(monkeypatch):
    calls = []

    def fake(ds, task, *, budget, **kw):
        calls.append((budget.lr, budget.weight_decay, budget.lr_grid, kw["seed"]))
        val = 0.5 - abs(math.log10(budget.lr) + 3) / 10 - budget.weight_decay  # best: lr 1e-3, wd 0
        return {"metric": "accuracy", "higher_is_better": True, "val": val, "test": 1 - val, "steps": 10,
                "seconds": 2.0}

    monkeypatch.setattr(finetune, "run", fake)
    b = Budget.from_overrides(["lr_grid=[3e-4,1e-3,3e-3]", "weight_decay_grid=[0,1e-4]"])
    out = recipe.run("ds", "classification", budget=b, seed=3)
    assert [(lr, wd) for lr, wd, _, _ in calls] == recipe.grid_points(b)
    assert {g for *_, g, _ in calls} == {None} and {s for *_, s in calls} == {3}  # same seed, no nesting
    assert (out["chosen_lr"], out["chosen_weight_decay"], out["val"]) == (1e-3, 0.0, 0.5)
    assert out["test"] == 0.5 and out["seconds"] == 12.0  # the test split plays no part in the choice
    assert [(g["lr"], g["weight_decay"]) for g in out["recipe_grid"]] == recipe.grid_points(b)
    # Without grids: finetune.run as it is.
    calls.clear()
    plain = recipe.run("ds", "classification", budget=Budget(), seed=0)
    assert len(calls) == 1 and "chosen_lr" not in plain
