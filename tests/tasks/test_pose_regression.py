import math

import pytest
import torch

from selfstudy.errors import UserError
from selfstudy.tasks import get_task
from selfstudy.tasks.pose_regression import angular_error, direction


def test_direction_is_unit_and_known():
    v = direction(torch.tensor([0.0, math.pi / 2, 0.0]), torch.tensor([0.0, 0.0, math.pi / 2]))
    assert torch.allclose(v, torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]), atol=1e-6)


def test_angular_error_of_known_vectors():
    target = torch.tensor([[1.0, 0, 0]] * 4)
    pred = torch.tensor([[2.0, 0, 0],                       # same direction, longer: 0 deg
                         [1.0, 1.0, 0],                     # 45 deg
                         [0, 0, 3.0],                       # 90 deg
                         [-1.0, 0, 0]])                     # 180 deg
    err = angular_error(pred, target)
    assert err.tolist() == pytest.approx([0.0, 45.0, 90.0, 180.0], abs=1e-3)


def test_metrics_mean_error_and_within():
    task = get_task("pose-regression")
    az = torch.tensor([0.0, 0.0, 0.0, 0.0])
    y = task.targets({"azimuth": az, "elevation": torch.zeros(4)})
    pred = torch.tensor([[1.0, 0, 0], [1.0, 1.0, 0], [1.0, 0.2, 0], [0, 1.0, 0]])
    m = task.metrics(pred, y)
    expected = [0.0, 45.0, math.degrees(math.atan(0.2)), 90.0]
    assert m["angular_error"] == pytest.approx(sum(expected) / 4, abs=1e-3)
    assert m["within_30"] == pytest.approx(2 / 4)
    assert task.primary == "angular_error" and not task.higher_is_better
    assert task.better(10.0, 12.0) and not task.better(12.0, 10.0)


def test_threshold_argument_and_availability():
    task = get_task("pose-regression(within=15)")
    assert task.spec == "pose-regression(within=15.0)"
    y = direction(torch.zeros(2), torch.zeros(2))
    m = task.metrics(torch.tensor([[1.0, 0.2, 0], [1.0, 0.3, 0]]), y)  # 11.3 and 16.7 deg
    assert m["within_15"] == pytest.approx(0.5)
    with pytest.raises(UserError, match="degrees"):
        get_task("pose-regression(within=0)")
    assert not task.available("TC--")
