import pytest
import torch
import torch.nn.functional as F

from selfstudy.errors import UserError
from selfstudy.models import build_backbone
from selfstudy.tasks import add_sums, get_task
from selfstudy.tasks.dense_head import LinearReadout, UpsamplingDecoder, nearest_resize, pixel_rows
from selfstudy.tasks.segmentation import IGNORE_INDEX, SEGMENTATION_CLASSES

K = len(SEGMENTATION_CLASSES)


def logits_for(pred):
    """(N, 11, H, W) logits whose argmax is the (N, H, W) map ``pred``."""
    return F.one_hot(torch.as_tensor(pred).long(), K).permute(0, 3, 1, 2).float() * 5.0


# Ground truth and prediction of one 3x4 image: background (0), airplane (1), bench (2); one ignored pixel.
Y = torch.tensor([[[0, 0, 1, 1],
                   [0, 0, 1, 1],
                   [2, 2, 0, IGNORE_INDEX]]], dtype=torch.uint8)
PRED = torch.tensor([[[0, 0, 1, 0],
                      [0, 1, 1, 1],
                      [2, 0, 0, 2]]])


def test_miou_and_pixel_accuracy_on_a_hand_made_map():
    task = get_task("segmentation")
    m = task.metrics(logits_for(PRED), Y)
    # 11 labeled pixels (the 255 one counts nowhere, although it is predicted wrong); 8 right.
    # background: TP 4 (of 5 true), FP 2 (pred 0 on a 1 and on a 2) -> IoU 4 / (5 + 6 - 4) = 4 / 7
    # airplane: TP 3 (of 4 true), FP 1 -> 3 / (4 + 4 - 3) = 3 / 5; bench: TP 1 (of 2), FP 0 -> 1 / 2
    assert m["pixel_accuracy"] == pytest.approx(8 / 11)
    assert m["iou/background"] == pytest.approx(4 / 7)
    assert m["iou/airplane"] == pytest.approx(3 / 5)
    assert m["iou/bench"] == pytest.approx(1 / 2)
    assert m["miou"] == pytest.approx((4 / 7 + 3 / 5 + 1 / 2) / 3)
    assert "iou/cabinet" not in m  # classes absent from the labels are left out of the mean
    assert task.primary == "miou" and task.higher_is_better and task.dense


def test_a_class_predicted_but_absent_costs_its_true_class():
    task = get_task("segmentation")
    y = torch.zeros(1, 2, 2, dtype=torch.uint8)
    pred = torch.tensor([[[0, 0], [0, 5]]])  # one pixel called "class 5", which is nowhere in the labels
    m = task.metrics(logits_for(pred), y)
    assert m["miou"] == pytest.approx(3 / 4) and m["iou/background"] == pytest.approx(3 / 4)
    assert m["pixel_accuracy"] == pytest.approx(3 / 4)


def test_ignored_pixels_count_nowhere_and_the_loss_is_over_labeled_pixels():
    task = get_task("segmentation")
    out = torch.randn(2, K, 3, 4, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, K, (2, 3, 4), generator=torch.Generator().manual_seed(1)).to(torch.uint8)
    y[0, :, :2] = IGNORE_INDEX
    labeled = y != IGNORE_INDEX
    expected = F.cross_entropy(out.permute(0, 2, 3, 1)[labeled], y[labeled].long())
    assert task.loss(out, y).item() == pytest.approx(expected.item(), rel=1e-6)
    # Whatever is predicted at ignored pixels changes nothing.
    moved = out.clone()
    moved[0, :, :, :2] = torch.randn(K, 3, 2)
    assert task.metrics(moved, y) == pytest.approx(task.metrics(out, y))
    # A batch with nothing labeled (all shifted in) has a finite, zero loss and no metrics.
    none = torch.full((1, 3, 4), IGNORE_INDEX, dtype=torch.uint8)
    assert task.loss(out[:1], none).item() == 0.0 and task.metrics(out[:1], none) == {}


def test_sums_over_batches_equal_the_metrics_of_the_whole():
    task = get_task("segmentation")
    g = torch.Generator().manual_seed(2)
    out, y = torch.randn(6, K, 4, 4, generator=g), torch.randint(0, K, (6, 4, 4), generator=g).to(torch.uint8)
    sums = None
    for s in (slice(0, 2), slice(2, 6)):
        sums = add_sums(sums, task.metric_sums(out[s], y[s]))
    assert task.metrics_from_sums(sums) == pytest.approx(task.metrics(out, y))


def test_labels_out_of_range_are_refused():
    task = get_task("segmentation")
    with pytest.raises(UserError, match="0..10 or 255"):
        task.metrics(torch.zeros(1, K, 2, 2), torch.full((1, 2, 2), 12, dtype=torch.uint8))


def test_linear_readout_scores_at_feature_resolution_with_nearest_labels():
    task = get_task("segmentation(readout='linear')")
    assert task.spec == "segmentation(readout='linear')" and get_task(task.spec).readout == "linear"
    y = torch.arange(16, dtype=torch.uint8).reshape(1, 4, 4) % K
    small = nearest_resize(y, (2, 2))
    assert small.tolist() == [[[y[0, 0, 0], y[0, 0, 2]], [y[0, 2, 0], y[0, 2, 2]]]]  # F.interpolate's rule
    ref = F.interpolate(y[:, None].float(), size=(2, 2), mode="nearest")[:, 0].to(torch.uint8)
    assert torch.equal(small, ref) and small.dtype == torch.uint8
    out = torch.randn(1, K, 2, 2, generator=torch.Generator().manual_seed(3))
    assert task.loss(out, y).item() == pytest.approx(F.cross_entropy(out, small.long()).item(), rel=1e-6)
    assert task.metrics(out, y) == pytest.approx(task.metrics(out, small))


def test_decoder_output_smaller_than_the_labels_is_resized_up():
    task = get_task("segmentation")
    out = torch.randn(1, K, 2, 2)
    up = F.interpolate(out, size=(4, 4), mode="bilinear", align_corners=False)
    y = torch.zeros(1, 4, 4, dtype=torch.uint8)
    assert task.loss(out, y).item() == pytest.approx(task.loss(up, y).item())


@pytest.mark.parametrize("backbone, res", [("resnet9-tiny", 32), ("resnet18-dilated", 64)])
def test_decoder_predicts_at_input_resolution(backbone, res):
    torch.manual_seed(0)
    enc = build_backbone(backbone).eval()
    task = get_task("segmentation")
    stride = enc.map_strides[enc.dense_map]
    head = task.head(enc.map_channels[enc.dense_map], stride=stride).eval()
    assert isinstance(head, UpsamplingDecoder)
    with torch.no_grad():
        feats = task.features(enc(torch.rand(2, 3, res, res)), enc.dense_map)
        out = head(feats)
    assert feats.shape[-1] == res // stride and out.shape == (2, K, res, res)
    linear = get_task("segmentation(readout='linear')").head(feats.shape[1], stride=stride)
    assert isinstance(linear, LinearReadout) and linear(feats).shape == (2, K, res // stride, res // stride)


def test_linear_readout_is_one_linear_map_per_pixel():
    head = LinearReadout(5, K)
    x = torch.randn(2, 5, 3, 3)
    rows, _ = pixel_rows(x, torch.zeros(2, 3, 3))
    per_pixel = head(rows).reshape(2, 3, 3, K).permute(0, 3, 1, 2)
    assert torch.allclose(head(x), per_pixel, atol=1e-6)
    conv = F.conv2d(x, head.linear.weight[:, :, None, None], head.linear.bias)
    assert torch.allclose(head(x), conv, atol=1e-5)


def test_bad_arguments():
    with pytest.raises(UserError, match="unknown readout.*allowed: decoder, linear"):
        get_task("segmentation(readout='mlp')")
    with pytest.raises(UserError, match="powers of two"):
        UpsamplingDecoder(8, K, stride=6)
