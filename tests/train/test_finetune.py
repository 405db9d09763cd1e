"""Finetuning / scratch training on tiny colour-coded datasets (no renderer)."""

import math

import numpy as np
import pytest
import torch

from selfstudy.data.colour import InputTransform
from selfstudy.data.store import Dataset, DatasetWriter
from selfstudy.errors import UserError
from selfstudy.models import build_backbone
from selfstudy.train.checkpoint import save_checkpoint
from selfstudy.train.budget import Budget
from selfstudy.train.finetune import run
from selfstudy.train.selection import still_improving


def make_dataset(path, n=300, res=16, factors="1111", seed=0):
    """Each class a noisy flat colour (a task any network learns in a few dozen steps); pose class =
    label % 5; azimuth uniform. 60 % train, 20 % val, 20 % test."""
    rng = np.random.default_rng(seed)
    label = np.arange(n) % 10
    colours = rng.uniform(0, 1, (10, 3))
    noise = rng.normal(0, 20, (n, res, res, 3))
    images = (colours[label][:, None, None, :] * 255 + noise).clip(0, 255).astype(np.uint8)
    split = np.zeros(n, np.uint8)
    split[n * 6 // 10:n * 8 // 10] = 1
    split[n * 8 // 10:] = 2
    schema = {"images": ((res, res, 3), "uint8"), "label": ((), "int64"), "split": ((), "uint8"),
              "pose_class": ((), "int64"), "azimuth": ((), "float32"), "elevation": ((), "float32")}
    with DatasetWriter(path, {"factors": factors, "n": n, "res": res}, schema, n) as w:
        w.write(0, {"images": images, "label": label, "split": split, "pose_class": label % 5,
                    "azimuth": rng.uniform(-math.pi, math.pi, n).astype(np.float32),
                    "elevation": np.zeros(n, np.float32)})
    return Dataset(path)


def transfer_state(backbone="resnet9-tiny", seed=1):
    torch.manual_seed(seed)
    enc = build_backbone(backbone)
    return {"method": "rotation", "backbone": backbone, "state_dict": enc.state_dict(),
            "input": InputTransform("rgb").state(), "out_dim": enc.out_dim}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "colours")


SHORT = Budget(min_steps=40, max_steps=40, batch_size=32, evals=8, patience=0)


@pytest.fixture(scope="module")
def scratch(ds):
    # Module-scoped, so built before the function-scoped one_thread: the same single thread here, or
    # SELFSTUDY_THREADS from the caller's shell would give this run other float rounding.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SELFSTUDY_THREADS", "1")
        before = torch.get_num_threads()
        try:
            return run(ds, "classification", backbone="resnet9-tiny", n_labels=100, seed=0, budget=SHORT)
        finally:
            torch.set_num_threads(before)


def test_scratch_learns_an_easy_task_and_stores_best_and_last(scratch):
    r = scratch
    assert r["protocol"] == "scratch" and r["method"] is None and r["metric"] == "accuracy"
    assert r["test"] >= 0.9 and r["val"] >= 0.9
    assert r["steps"] == 40 and r["budget"]["planned_steps"] == 40 and r["budget"]["eval_every"] == 5
    assert [s for s, _ in r["curve"]] == list(range(5, 41, 5))
    best = max(v for _, v in r["curve"])
    assert r["val"] == best and r["val"] >= r["val_last"] == r["curve"][-1][1]
    assert r["best_step"] == next(s for s, v in r["curve"] if v == best)  # the first best is kept
    for key in ("val/accuracy", "test/accuracy", "val_last/accuracy", "test_last/accuracy",
                "test/mean_class_accuracy", "test/class_accuracy/airplane"):
        assert key in r["metrics"]
    assert r["metrics"]["test/accuracy"] == r["test"] and r["metrics"]["test_last/accuracy"] == r["test_last"]
    assert len(r["subset_sha"]) == 16 and r["n_labels"] == 100
    # A flat plateau at the end: converged, not still improving.
    assert r["still_improving"] is False


def test_same_seed_same_numbers_other_seed_other_subset(ds, scratch):
    again = run(ds, "classification", backbone="resnet9-tiny", n_labels=100, seed=0, budget=SHORT)
    for key in ("val", "test", "val_last", "test_last", "curve", "subset_sha", "metrics"):
        assert again[key] == scratch[key], key
    short = Budget(min_steps=5, max_steps=5, batch_size=32, evals=1)
    other = run(ds, "classification", backbone="resnet9-tiny", n_labels=100, seed=1, budget=short)
    assert other["subset_sha"] != scratch["subset_sha"]


def test_finetune_from_a_transfer_state_and_from_a_file(ds, tmp_path):
    state = transfer_state()
    r = run(ds, "classification", backbone="resnet9-tiny", n_labels=50, seed=0, init=state, budget=SHORT)
    assert r["protocol"] == "finetune" and r["method"] == "rotation" and r["test"] >= 0.9
    path = tmp_path / "final.pt"
    save_checkpoint(path, {"transfer": state})
    tiny = Budget(min_steps=2, max_steps=2, batch_size=16, evals=1)
    r2 = run(ds, "pose", n_labels=20, seed=0, init=path, budget=tiny)  # backbone taken from the file
    assert r2["backbone"] == "resnet9-tiny" and r2["metric"] == "accuracy"
    # The weights really are loaded: ones that do not fit are refused.
    bad = dict(state, state_dict={k: v[..., :1] if v.ndim == 4 else v for k, v in state["state_dict"].items()})
    with pytest.raises(UserError, match="do not fit"):
        run(ds, "classification", n_labels=20, seed=0, init=bad, budget=tiny)


def test_init_of_another_backbone_is_refused(ds):
    with pytest.raises(UserError, match="backbone 'resnet18-tiny'.*--backbone resnet18-tiny"):
        run(ds, "classification", backbone="resnet9-tiny", n_labels=20, seed=0,
            init=transfer_state("resnet18-tiny"), budget=SHORT)


def test_absurdly_small_budget_is_flagged_still_improving(ds):
    tiny = Budget(min_steps=16, max_steps=16, batch_size=32, eval_every=2, lr=3e-3, warmup_fraction=0.0)
    r = run(ds, "classification", backbone="resnet9-tiny", n_labels=100, seed=0, budget=tiny)
    assert r["steps"] == 16 and len(r["curve"]) == 8
    assert r["still_improving"] is True and r["best_step"] >= 14 and not r["stopped_early"]


def test_early_stopping_ends_a_converged_run(ds):
    budget = Budget(min_steps=400, max_steps=400, batch_size=32, eval_every=5, patience=3, min_fraction=0.1)
    r = run(ds, "classification", backbone="resnet9-tiny", n_labels=100, seed=0, budget=budget)
    assert r["stopped_early"] and r["budget"]["stopped_early"] and 40 <= r["steps"] < 400
    assert r["budget"]["min_stop_step"] == 40
    assert r["still_improving"] is False and r["steps"] == r["curve"][-1][0]
    assert r["test"] >= 0.9


@pytest.mark.parametrize("arm", ["scratch", "finetune"])
def test_a_run_stops_on_a_plateau_only_after_annealing(ds, arm):
    budget = Budget(min_steps=400, max_steps=400, batch_size=32, eval_every=5, patience=3, min_fraction=0.1,
                    final_lr=2e-5)
    init = transfer_state() if arm == "finetune" else None
    r = run(ds, "classification", backbone="resnet9-tiny", n_labels=100, seed=0, init=init, budget=budget)
    b = r["budget"]
    assert r["protocol"] == arm and r["stopped_early"] and r["steps"] < 400
    assert b["anneal_steps"] == 40  # 10 % of the 400 planned steps
    plateau = r["steps"] - b["anneal_steps"]  # where the tail began: a plateau, not before min_stop_step
    assert plateau >= b["min_stop_step"] == 40
    assert b["end_lr"] == pytest.approx(budget.final_lr)  # the last step ran at the final rate
    assert r["curve"][-1][0] == r["steps"]  # the annealed weights were scored too


def test_pose_regression_runs_with_angle_metrics(ds):
    tiny = Budget(min_steps=3, max_steps=3, batch_size=16, evals=1)
    r = run(ds, "pose-regression", backbone="resnet9-tiny", n_labels=30, seed=0, budget=tiny)
    assert r["metric"] == "angular_error" and r["higher_is_better"] is False
    assert 0 <= r["test"] <= 180 and "test/within_30" in r["metrics"]
    assert r["budget"]["min_delta"] == 0.5


def test_bad_input(ds, tmp_path):
    tiny = Budget(min_steps=1, max_steps=1, batch_size=8, evals=1)
    with pytest.raises(UserError, match="180 images"):
        run(ds, "classification", backbone="resnet9-tiny", n_labels=500, seed=0, budget=tiny)
    with pytest.raises(UserError, match="positive"):
        run(ds, "classification", backbone="resnet9-tiny", n_labels=-3, seed=0, budget=tiny)
    with pytest.raises(UserError, match="unknown task"):
        run(ds, "segmentationz", n_labels=10, seed=0, budget=tiny)
    fixed = make_dataset(tmp_path / "fixed-view", n=60, factors="TC-L")
    with pytest.raises(UserError, match="V=0"):
        run(fixed, "pose", backbone="resnet9-tiny", n_labels=10, seed=0, budget=tiny)
    with pytest.raises(UserError, match="space"):
        run(ds, "classification", n_labels=10, seed=0, init=transfer_state(), space="lab", budget=tiny)


def test_budget_rule_and_overrides():
    b = Budget()
    assert b.planned_steps(100) == b.min_steps
    assert b.planned_steps(3000) == math.ceil(b.epochs * 3000 / 128) == 4688
    assert b.planned_steps(10 ** 6) == b.max_steps
    b2 = Budget.from_overrides(["max_steps=50", "min_steps=10", "epochs=2", "lr=1e-3"])
    assert (b2.max_steps, b2.min_steps, b2.epochs, b2.lr) == (50, 10, 2.0, 1e-3)
    assert Budget.from_overrides({"epochs": "300", "min_delta": ""}).epochs == 300.0  # strings as YAML
    from selfstudy.tasks import get_task

    resolved = b2.resolve(320, get_task("classification"))
    assert resolved["planned_steps"] == 10 and resolved["eval_every"] == 1 and resolved["min_delta"] == 0.005
    with pytest.raises(UserError, match="unknown budget option.*allowed: epochs"):
        Budget.from_overrides({"stepz": 3})
    with pytest.raises(UserError, match="max_steps"):
        Budget.from_overrides({"min_steps": 10, "max_steps": 5})
    with pytest.raises(UserError, match="patience"):
        Budget(patience=-1).validate()


def test_still_improving_rule():
    assert still_improving([0.1, 0.2, 0.3, 0.4, 0.5], True, 0.005)
    assert not still_improving([0.1, 0.5, 0.5, 0.5, 0.5], True, 0.005)
    assert not still_improving([0.1, 0.5, 0.5, 0.5, 0.503], True, 0.005)  # within the tolerance
    assert still_improving([40.0, 30.0, 20.0], False, 0.5)                 # an error still falling
    assert not still_improving([40.0, 20.0, 20.2], False, 0.5)
    assert still_improving([0.3], True, 0.0)                               # one evaluation: unknown


def test_budget_augment_false_turns_the_augmentation_off_and_keeps_default_ids(ds, monkeypatch):
    # Default budgets hash as before (augment is left out of the canonical dict while true).
    assert "augment" not in Budget().to_dict()
    off = Budget.from_overrides(["augment=false"], base=SHORT)
    assert off.to_dict()["augment"] is False and Budget.from_overrides(off.to_dict()) == off
    with pytest.raises(UserError, match="augment"):
        Budget.from_overrides(["augment=maybe"])
    import selfstudy.train.finetune as ft

    built = []
    real = ft.PaperAugment

    def spy(**kw):
        built.append(kw)
        return real(**kw)

    monkeypatch.setattr(ft, "PaperAugment", spy)
    a = run(ds, "classification", backbone="resnet9-tiny", n_labels=60, seed=0, budget=off)
    assert built == [] and a["budget"]["augment"] is False
    b = run(ds, "classification", backbone="resnet9-tiny", n_labels=60, seed=0, budget=SHORT)
    assert len(built) == 1 and b["budget"]["augment"] is True
    assert a["curve"] != b["curve"]  # the augmentation changed what was learned
