"""Linear probe and k-NN on frozen features."""

import math

import numpy as np
import pytest
import torch

from selfstudy.data.colour import InputTransform
from selfstudy.data.store import Dataset, DatasetWriter
from selfstudy.errors import UserError
from selfstudy.models import build_backbone
from selfstudy.train.budget import ProbeBudget
from selfstudy.train.probe import ProbeFeatures, extract, knn, knn_scores, linear


def make_dataset(path, n=300, res=16, seed=0):
    """Each class a noisy flat colour; 60 % train, 20 % val, 20 % test; azimuth uniform."""
    rng = np.random.default_rng(seed)
    label = np.arange(n) % 10
    colours = rng.uniform(0, 1, (10, 3))
    images = (colours[label][:, None, None, :] * 255 + rng.normal(0, 20, (n, res, res, 3)))
    split = np.zeros(n, np.uint8)
    split[n * 6 // 10:n * 8 // 10] = 1
    split[n * 8 // 10:] = 2
    schema = {"images": ((res, res, 3), "uint8"), "label": ((), "int64"), "split": ((), "uint8"),
              "azimuth": ((), "float32"), "elevation": ((), "float32")}
    with DatasetWriter(path, {"factors": "1111"}, schema, n) as w:
        w.write(0, {"images": images.clip(0, 255).astype(np.uint8), "label": label, "split": split,
                    "azimuth": rng.uniform(-math.pi, math.pi, n).astype(np.float32),
                    "elevation": np.zeros(n, np.float32)})
    return Dataset(path)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "colours")


def blobs(n_per_class, centres, seed, spread=0.3):
    g = torch.Generator().manual_seed(seed)
    c = torch.tensor(centres, dtype=torch.float32)
    y = torch.arange(len(c)).repeat_interleave(n_per_class)
    return c[y] + spread * torch.randn(len(y), c.shape[1], generator=g), y


def hand_features(centres=((3.0, 0, 0, 0), (0, 3.0, 0, 0), (0, 0, 3.0, 0)), spread=0.3):
    xs = [blobs(n, centres, s, spread) for n, s in ((20, 0), (30, 1), (30, 2))]
    return ProbeFeatures(xs[0][0], xs[0][1], xs[1][0], xs[1][1], xs[2][0], xs[2][1], "0" * 16,
                         "hand-made", None, 0.0, {"seed": 0})


def test_linear_probe_on_separable_hand_made_features():
    from selfstudy.tasks import get_task

    task = get_task("classification")
    r = linear(task=task, features=hand_features(), budget=ProbeBudget(steps=100, eval_every=20))
    assert r["protocol"] == "linear" and r["test"] == 1.0 and r["val"] == 1.0
    assert r["budget"]["weight_decay"] in ProbeBudget().weight_decays
    assert len(r["budget"]["fits"]) == 5 and r["steps"] == 500
    assert r["curve"][-1][0] == 100 and r["metrics"]["test_last/accuracy"] == r["test_last"]


def test_linear_probe_recovers_colour_from_a_random_encoder(ds):
    r = linear(ds, "classification", init=None, backbone="resnet9-tiny", n_labels=100, seed=0)
    assert r["method"] is None and r["backbone"] == "resnet9-tiny"
    assert r["test"] >= 0.9
    assert r["n_labels"] == 100 and len(r["subset_sha"]) == 16


def test_probe_of_a_pretrained_state_and_regression(ds):
    torch.manual_seed(3)
    enc = build_backbone("resnet9-tiny")
    state = {"method": "rotation", "backbone": "resnet9-tiny", "state_dict": enc.state_dict(),
             "input": InputTransform("rgb").state(), "out_dim": enc.out_dim}
    feats = extract(ds, "pose-regression", init=state, n_labels=50, seed=0)
    assert feats.x_train.shape == (50, 64) and feats.y_train.shape == (50, 3) and feats.method == "rotation"
    r = linear(task="pose-regression", features=feats, budget=ProbeBudget(steps=20, eval_every=10))
    assert r["metric"] == "angular_error" and not r["higher_is_better"] and r["method"] == "rotation"
    assert 0 <= r["test"] <= 180
    with pytest.raises(UserError, match="extracted for task 'pose-regression'"):
        linear(task="classification", features=feats)


def test_same_subset_as_finetuning(ds):
    from selfstudy.train.inputs import labeled_subset
    from selfstudy.tasks import get_task

    feats = extract(ds, "classification", backbone="resnet9-tiny", n_labels=40, seed=2)
    assert feats.subset_sha == labeled_subset(ds, get_task("classification"), 40, 2)[1]


def test_knn_scores_by_hand():
    train = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    y = torch.tensor([0, 0, 1, 1])
    q = torch.tensor([[1.0, 0.0]])
    # Cosine similarities to the query: 1, 0.8, 0, 0.6. k=3 keeps 1, 0.8 (class 0) and 0.6 (class 1).
    p = knn_scores(train, y, q, num_classes=2, k=3, temperature=0.5)
    w0 = math.exp(1 / 0.5) + math.exp(0.8 / 0.5)
    w1 = math.exp(0.6 / 0.5)
    assert p[0].tolist() == pytest.approx([w0 / (w0 + w1), w1 / (w0 + w1)], rel=1e-5)
    # Length does not matter (cosine), k above N is capped, a tiny temperature is the 1-NN.
    p1 = knn_scores(train * 7, y, torch.tensor([[0.3, 0.4]]), 2, k=99, temperature=1e-3)
    assert p1[0].tolist() == pytest.approx([0.0, 1.0], abs=1e-6)  # nearest is (0.6, 0.8), parallel: class 1


def test_knn_protocol(ds):
    r = knn(ds, "classification", backbone="resnet9-tiny", n_labels=100, seed=0)
    assert r["protocol"] == "knn" and r["steps"] == 0 and r["test"] >= 0.9
    assert r["budget"]["k"] == 20 and r["val_last"] == r["val"]
    with pytest.raises(UserError, match="not a classification task"):
        knn(task="pose-regression", features=hand_features())


def test_probe_budget_overrides():
    b = ProbeBudget.from_overrides(["weight_decays=[0, 1e-3]", "k=5", "steps=10"])
    assert b.weight_decays == (0.0, 1e-3) and b.k == 5 and b.steps == 10
    assert ProbeBudget.from_overrides({"weight_decays": 0.01}).weight_decays == (0.01,)
    with pytest.raises(UserError, match="unknown probe option"):
        ProbeBudget.from_overrides(["kk=3"])
    with pytest.raises(UserError, match="weight_decays"):
        ProbeBudget.from_overrides({"weight_decays": []})
