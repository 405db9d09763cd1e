import math

import pytest
import torch

from selfstudy.data.augment import TARGET_FILL
from selfstudy.errors import UserError
from selfstudy.models import build_backbone
from selfstudy.tasks import add_sums, get_task
from selfstudy.tasks.depth import depth_from_output


def as_output(depth_m):
    """Head output (N, 1, H, W) that predicts ``depth_m`` (N, H, W) metres (the head predicts log-depth)."""
    return torch.log(torch.as_tensor(depth_m, dtype=torch.float32))[:, None]


# One 1x5 image: 4 valid pixels and one shifted in by augmentation (depth 0, invalid).
GT = torch.tensor([[[1.0, 2.0, 4.0, 0.5, 0.0]]], dtype=torch.float16)
PRED = torch.tensor([[[1.2, 1.0, 4.0, 0.75, 7.0]]])


def test_depth_metrics_of_known_predictions():
    task = get_task("depth")
    m = task.metrics(as_output(PRED), GT)
    # Ratios max(p/g, g/p): 1.2, 2.0, 1.0, 1.5; errors 0.2, -1.0, 0, 0.25 metres.
    assert m["delta1"] == pytest.approx(2 / 4)          # 1.2 and 1.0 below 1.25
    assert m["delta2"] == pytest.approx(3 / 4)          # 1.5 < 1.5625
    assert m["delta3"] == pytest.approx(3 / 4)          # 2.0 > 1.953
    assert m["abs_rel"] == pytest.approx((0.2 / 1 + 1.0 / 2 + 0 + 0.25 / 0.5) / 4, rel=1e-5)
    assert m["rmse"] == pytest.approx(math.sqrt((0.04 + 1.0 + 0 + 0.0625) / 4), rel=1e-5)
    assert m["loss"] == pytest.approx((0.2 + 1.0 + 0 + 0.25) / 4, rel=1e-5)
    assert task.primary == "abs_rel" and not task.higher_is_better and task.dense
    assert task.better(0.10, 0.12) and not task.better(0.12, 0.10)


def test_invalid_pixels_count_nowhere():
    task = get_task("depth")
    out = as_output(PRED).requires_grad_()
    loss = task.loss(out, GT)
    assert loss.item() == pytest.approx((0.2 + 1.0 + 0 + 0.25) / 4, rel=1e-5)
    loss.backward()
    assert out.grad[0, 0, 0, 4] == 0 and (out.grad[0, 0, 0, :2] != 0).all()
    wild = as_output(PRED).clone()
    wild[0, 0, 0, 4] = 30.0  # any prediction at an invalid pixel, even beyond the clamp
    assert task.metrics(wild, GT) == pytest.approx(task.metrics(as_output(PRED), GT))
    assert TARGET_FILL["depth"] == 0.0  # what augmentation shifts in is what the task masks


def test_a_non_finite_target_does_not_poison_the_gradient():
    task = get_task("depth")
    gt = torch.tensor([[[2.0, float("nan"), float("inf")]]])
    out = torch.zeros(1, 1, 1, 3, requires_grad=True)
    task.loss(out, gt).backward()
    assert torch.isfinite(out.grad).all() and out.grad[0, 0, 0, 1:].eq(0).all()
    empty, out = torch.zeros(1, 2, 2), torch.zeros(1, 1, 2, 2)  # every pixel invalid
    assert task.loss(out, empty).item() == 0.0 and task.metrics(out, empty) == {}


def test_sums_over_batches_equal_the_metrics_of_the_whole():
    task = get_task("depth")
    g = torch.Generator().manual_seed(0)
    gt = (torch.rand(5, 4, 4, generator=g) * 4 + 0.5).half()
    gt[1, 0] = 0
    out = torch.randn(5, 1, 4, 4, generator=g) * 0.3 + 0.5
    sums = None
    for s in (slice(0, 1), slice(1, 5)):
        sums = add_sums(sums, task.metric_sums(out[s], gt[s]))
    assert task.metrics_from_sums(sums) == pytest.approx(task.metrics(out, gt))


def test_output_is_log_depth_and_always_positive():
    assert depth_from_output(torch.zeros(2)).tolist() == [1.0, 1.0]
    assert depth_from_output(torch.tensor([math.log(4.3)])).item() == pytest.approx(4.3, rel=1e-6)
    big = depth_from_output(torch.tensor([-1e4, 1e4]))
    assert (big > 0).all() and torch.isfinite(big).all()


def test_linear_readout_scores_at_feature_resolution():
    task = get_task("depth(readout='linear')")
    gt = torch.tensor([[[1.0, 9.0], [9.0, 9.0]]]).repeat_interleave(2, 1).repeat_interleave(2, 2)  # 4x4
    out = as_output(torch.tensor([[[1.0, 9.0], [9.0, 9.0]]]))  # 2x2: right at every sampled pixel
    m = task.metrics(out, gt)
    assert m["abs_rel"] == 0.0 and m["delta1"] == 1.0
    assert task.loss(out, gt).item() == pytest.approx(0.0, abs=1e-5)


def test_decoder_predicts_one_channel_at_input_resolution():
    torch.manual_seed(0)
    enc = build_backbone("resnet9-tiny").eval()
    task = get_task("depth")
    head = task.head(enc.map_channels["prepool"], stride=enc.map_strides["prepool"]).eval()
    with torch.no_grad():
        out = head(task.features(enc(torch.rand(2, 3, 32, 32)), enc.dense_map))
    assert out.shape == (2, 1, 32, 32)
    assert task.metrics(out, torch.full((2, 32, 32), 2.0))["abs_rel"] >= 0


def test_depth_bad_readout_and_augmentation():
    with pytest.raises(UserError, match="allowed: decoder, linear"):
        get_task("depth(readout=1)")
    assert get_task("depth").augment_options == {"cutout": False}
