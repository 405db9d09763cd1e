"""Dense tasks (segmentation, depth) through finetuning and the linear probe, on tiny hand-made
multi-object-like datasets: coloured squares on a grey background, each square's class its colour and
its depth set by its class. No renderer."""

import numpy as np
import pytest
import torch

import selfstudy.data.augment as augment
import selfstudy.train.finetune as finetune
from selfstudy.data.store import Dataset, DatasetWriter
from selfstudy.data.subsets import nested_balanced, nested_random
from selfstudy.errors import UserError
from selfstudy.tasks.segmentation import IGNORE_INDEX, Segmentation
from selfstudy.train.budget import Budget, ProbeBudget
from selfstudy.train.finetune import run
from selfstudy.train.inputs import labeled_subset
from selfstudy.train.probe import linear

PALETTE = np.array([[128, 128, 128],                                   # background
                    [230, 40, 40], [40, 200, 60], [50, 80, 230]])    # classes 0, 1, 2 (labels 1, 2, 3)
BACKGROUND_DEPTH = 4.0


def square_depth(label):
    return 1.0 + 0.5 * (label - 1)  # 1, 1.5, 2 metres


def make_dataset(path, n=240, res=16, noise=12.0, seed=0, label=-1):
    """Two res/2-pixel squares per image of 3 classes (later squares cover earlier ones); ``label`` -1
    as a multi-object dataset (or a class per image). 60 % train, 20 % val, 20 % test. ``noise=0`` makes
    colours exact."""
    rng = np.random.default_rng(seed)
    seg = np.zeros((n, res, res), np.uint8)
    side = res // 2
    for i in range(n):
        for _ in range(2):
            y0, x0 = rng.integers(0, res - side + 1, 2)
            seg[i, y0:y0 + side, x0:x0 + side] = rng.integers(1, 4)
    images = PALETTE[seg] + rng.normal(0, noise, (n, res, res, 3)) if noise else PALETTE[seg]
    depth = np.where(seg > 0, square_depth(seg.astype(np.float32)), BACKGROUND_DEPTH)
    split = np.zeros(n, np.uint8)
    split[n * 6 // 10:n * 8 // 10] = 1
    split[n * 8 // 10:] = 2
    schema = {"images": ((res, res, 3), "uint8"), "segmentation": ((res, res), "uint8"),
              "depth": ((res, res), "float16"), "label": ((), "int64"), "split": ((), "uint8")}
    with DatasetWriter(path, {"factors": "1111", "multi": True, "n": n, "res": res}, schema, n) as w:
        w.write(0, {"images": images.clip(0, 255).astype(np.uint8), "segmentation": seg,
                    "depth": depth.astype(np.float16), "label": np.broadcast_to(label, (n,)), "split": split})
    return Dataset(path)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "squares")


SMOKE = Budget(min_steps=150, max_steps=150, batch_size=16, evals=5, patience=0)


def test_segmentation_learns_well_above_chance(ds):
    r = run(ds, "segmentation", backbone="resnet9-tiny", n_labels=100, seed=0, budget=SMOKE)
    assert r["metric"] == "miou" and r["higher_is_better"] and r["task"] == "segmentation"
    seg = np.asarray(ds["segmentation"][ds.indices("test")])
    background = float((seg == 0).mean())
    chance = background / 4  # "background everywhere": IoU = background share for 1 of 4 present classes
    assert r["test"] > 2 * chance and r["test"] > 0.5
    assert r["metrics"]["test/pixel_accuracy"] > background + 0.05
    for key in ("test/iou/background", "test/iou/airplane", "test/iou/bench", "test/iou/cabinet", "val/miou"):
        assert key in r["metrics"]


def test_depth_error_falls_below_any_constant_guess(ds):
    r = run(ds, "depth", backbone="resnet9-tiny", n_labels=100, seed=0, budget=SMOKE)
    assert r["metric"] == "abs_rel" and not r["higher_is_better"]
    gt = np.asarray(ds["depth"][ds.indices("test")], np.float64)
    best_constant = min(np.mean(np.abs(c - gt) / gt) for c in np.unique(gt))  # the optimum is a data value
    assert r["test"] < 0.7 * best_constant
    assert r["val"] < r["curve"][0][1]  # it kept improving after the first evaluation
    m = r["metrics"]
    assert 0 < m["test/rmse"] < 2.0 and m["test/delta1"] > 0.6 and m["test/delta3"] >= m["test/delta1"]


def test_augmentation_moves_labels_with_images_in_the_training_step(tmp_path, monkeypatch):
    ds = make_dataset(tmp_path / "exact", n=60, noise=0.0)  # colours exact: labels readable off pixels
    real = augment.PaperAugment
    calls, seen = [], []

    class Spy:
        """The task's PaperAugment without colour changes, always translated; records what it did."""

        def __init__(self, **options):
            self.options = options
            self.aug = real(**{**options, "colour_jitter": False, "grayscale": False, "crop_keep_p": 0.0})

        def __call__(self, x, generator, targets=None):
            out = self.aug(x, generator, targets=targets)
            calls.append((self.options, x.clone(), targets, out))
            return out

    class Recording(Segmentation):
        def loss(self, out, y):
            seen.append(y.clone())
            return super().loss(out, y)

    monkeypatch.setattr(finetune, "PaperAugment", Spy)  # the name the training step looks up
    run(ds, Recording(), backbone="resnet9-tiny", n_labels=20, seed=0,
        budget=Budget(min_steps=4, max_steps=4, batch_size=8, evals=1, patience=0))

    def read_labels(x):  # (N, 3, H, W) in [0, 1] -> (N, H, W): the palette entry of each pixel
        dist = (x.permute(0, 2, 3, 1)[..., None, :] * 255 - torch.tensor(PALETTE).float()).abs().sum(-1)
        return dist.argmin(-1)

    assert len(calls) == len(seen) == 4
    moved = 0
    for (options, x_in, t_in, (x_out, t_out)), y_loss in zip(calls, seen):
        assert options == {"cutout": False} and set(t_in) == {"segmentation"}
        assert torch.equal(read_labels(x_in), t_in["segmentation"].long())
        y = t_out["segmentation"]
        outside = y == IGNORE_INDEX  # shifted in: black image pixels, ignored labels
        assert (x_out.permute(0, 2, 3, 1)[outside] == 0).all() and outside.any()
        assert torch.equal(read_labels(x_out)[~outside], y[~outside].long())
        assert torch.equal(y_loss, y)  # the loss saw the moved labels
        moved += sum(not torch.equal(a, b) for a, b in zip(x_in, x_out))
    assert moved >= 24  # nearly every image moved (a shift of (0, 0) without a flip is rare)


def test_multi_object_subsets_are_nested_and_random(ds):
    task = Segmentation()
    small, sha_small = labeled_subset(ds, task, 40, 0)
    big, sha_big = labeled_subset(ds, task, 100, 0)
    assert len(small) == 40 and len(big) == 100 and set(small) <= set(big) and sha_small != sha_big
    assert not np.array_equal(labeled_subset(ds, task, 40, 1)[0], small)
    sets = nested_random(10, [3, 7, 10], seed=4)
    assert set(sets[3]) <= set(sets[7]) <= set(sets[10]) == set(range(10))
    assert np.array_equal(nested_random(10, [3], seed=4)[3], sets[3])  # independent of the other counts
    with pytest.raises(UserError, match="larger than the train split"):
        nested_random(10, [11], seed=0)


def test_single_object_datasets_keep_class_balanced_subsets(tmp_path):
    labels = np.arange(100) % 10
    ds = make_dataset(tmp_path / "single", n=100, label=labels)
    pos, _ = labeled_subset(ds, Segmentation(), 20, 0)
    assert np.array_equal(pos, nested_balanced(labels[ds.indices("train")], [20], 0)[20])
    assert np.bincount(labels[ds.indices("train")][pos], minlength=10).tolist() == [2] * 10


def test_dense_tasks_need_the_per_pixel_maps(tmp_path, ds):
    n, res = 30, 16
    schema = {"images": ((res, res, 3), "uint8"), "label": ((), "int64"), "split": ((), "uint8")}
    with DatasetWriter(tmp_path / "plain", {"factors": "1111"}, schema, n) as w:
        w.write(0, {"images": np.zeros((n, res, res, 3), np.uint8), "label": np.arange(n) % 10,
                    "split": np.arange(n) % 3})
    with pytest.raises(UserError, match="per-pixel 'segmentation' maps.*render --multi"):
        run(Dataset(tmp_path / "plain"), "segmentation", backbone="resnet9-tiny", n_labels=10)
    with pytest.raises(UserError, match="per-pixel 'depth' maps"):
        run(Dataset(tmp_path / "plain"), "depth", backbone="resnet9-tiny", n_labels=10)
    with pytest.raises(UserError, match="no per-image class label"):
        run(ds, "classification", backbone="resnet9-tiny", n_labels=10)


@pytest.mark.parametrize("spec, metric", [("segmentation", "miou"), ("depth", "abs_rel")])
def test_linear_probe_of_a_dense_task_is_the_per_pixel_readout(ds, spec, metric):
    r = linear(ds, spec, init=None, backbone="resnet9-tiny", n_labels=40, seed=0,
               budget=ProbeBudget(steps=40, eval_every=20, weight_decays=(0.0,), test_size=20))
    assert r["protocol"] == "linear" and r["metric"] == metric and r["n_labels"] == 40
    assert np.isfinite(r["test"]) and f"test/{metric}" in r["metrics"]
