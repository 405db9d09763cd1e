import math

import pytest
import torch

from selfstudy.tasks import add_sums, get_task


def logits_for(pred, k=10):
    """Logits whose argmax is ``pred``."""
    out = torch.zeros(len(pred), k)
    out[torch.arange(len(pred)), torch.tensor(pred)] = 5.0
    return out


def test_accuracy_and_per_class_on_hand_made_logits():
    task = get_task("classification")
    y = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    pred = [0, 0, 0, 1, 1, 0, 2, 2]  # class 0: 3/4, class 1: 1/2, class 2: 2/2
    m = task.metrics(logits_for(pred), y)
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["class_accuracy/airplane"] == pytest.approx(0.75)
    assert m["class_accuracy/bench"] == pytest.approx(0.5)
    assert m["class_accuracy/cabinet"] == pytest.approx(1.0)
    assert "class_accuracy/car" not in m  # absent classes are not scored
    assert m["mean_class_accuracy"] == pytest.approx((0.75 + 0.5 + 1.0) / 3)
    # Cross-entropy of a correct row: log(1 + 9 e^-5); a wrong one: 5 + log(1 + 9 e^-5).
    base = math.log(1 + 9 * math.exp(-5))
    assert m["loss"] == pytest.approx(base + 5 * 2 / 8, rel=1e-5)
    assert task.primary == "accuracy" and task.higher_is_better


def test_batched_sums_equal_whole_split():
    task = get_task("classification")
    g = torch.Generator().manual_seed(0)
    out = torch.randn(37, 10, generator=g)
    y = torch.randint(0, 10, (37,), generator=g)
    whole = task.metrics(out, y)
    sums = None
    for i in range(0, 37, 8):
        sums = add_sums(sums, task.metric_sums(out[i:i + 8], y[i:i + 8]))
    batched = task.metrics_from_sums(sums)
    assert batched.keys() == whole.keys()
    for k in whole:
        assert batched[k] == pytest.approx(whole[k])


def test_head_targets_loss():
    task = get_task("classification")
    head = task.head(16)
    assert isinstance(head, torch.nn.Linear) and head.out_features == 10
    y = task.targets({"label": torch.tensor([3, 1], dtype=torch.int64)})
    assert y.tolist() == [3, 1]
    loss = task.loss(torch.zeros(2, 10), y)
    assert loss.item() == pytest.approx(math.log(10))
    assert task.available("----") and task.available(None)
