import pytest
import torch

from selfstudy.errors import UserError
from selfstudy.tasks import get_task


def test_pose_class_accuracy():
    task = get_task("pose")
    y = task.targets({"pose_class": torch.tensor([0, 1, 2, 3, 4, 0])})
    out = torch.zeros(6, 5)
    out[torch.arange(6), torch.tensor([0, 1, 2, 3, 0, 4])] = 1.0  # last two wrong
    m = task.metrics(out, y)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["class_accuracy/upright"] == pytest.approx(0.5)
    assert m["class_accuracy/tilt@90"] == 0.0
    assert task.head(8).out_features == 5


def test_pose_needs_viewpoint():
    task = get_task("pose")
    assert task.available("TCVL") and task.available("0010")
    a = task.available("TC-L")
    assert not a and "V=0" in a.reason and "TCVL" in a.reason
    with pytest.raises(UserError, match="pose"):
        task.check("0000")
    task.check("--V-")  # no error
