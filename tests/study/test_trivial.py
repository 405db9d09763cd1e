"""Each task's trivial baseline (the signal guard's floor), against the task's own metric of the trivial
prediction or a brute-force search for the best constant."""

import torch

from selfstudy.tasks import get_task
from selfstudy.tasks.pose_regression import angular_error, direction


def test_classification_and_pose_majority_rate():
    y = torch.tensor([0, 0, 1, 2, 0, 3, 0, 1])
    assert get_task("classification").trivial(y) == 4 / 8
    assert get_task("pose").trivial(torch.tensor([1, 1, 2])) == 2 / 3


def test_segmentation_all_background_equals_its_miou():
    task = get_task("segmentation")
    y = torch.zeros(2, 4, 4, dtype=torch.long)
    y[0, :2, :2] = 3
    out = torch.zeros(2, task.num_classes, 4, 4)
    out[:, 0] = 1.0  # the all-background map
    assert task.trivial(y) == task.metrics(out, y)["miou"] == 0.4375


def test_depth_best_constant_beats_a_grid():
    torch.manual_seed(0)
    y = torch.rand(3, 8, 8) * 5 + 1
    y[0, 0, 0] = 0.0  # not a valid pixel
    d = y[y > 0].double()
    grid = min(float(((c - d).abs() / d).mean()) for c in torch.linspace(1, 6, 2001).double())
    assert abs(get_task("depth").trivial(y) - grid) < 1e-4


def test_pose_regression_best_constant_direction_beats_a_grid():
    torch.manual_seed(0)
    y = direction(torch.rand(300) * 6.28, torch.rand(300) * 0.6)
    best = min(float(angular_error(direction(az[None], el[None]).expand(300, 3), y).mean())
               for az in torch.linspace(0, 6.28, 37) for el in torch.linspace(-1.5, 1.5, 31))
    assert get_task("pose-regression").trivial(y) <= best + 0.05
