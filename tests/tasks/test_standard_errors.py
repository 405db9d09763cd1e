"""Every task's standard error of its primary metric (``<primary>_se``) and its budget-check tolerance,
checked against values computed by hand or image by image."""

import math

import numpy as np
import pytest
import torch

from selfstudy.tasks import add_sums, get_task
from selfstudy.tasks.depth import ratio_se
from selfstudy.tasks.segmentation import IGNORE_INDEX, iou_from_confusion, miou_se


def test_tolerances_are_in_each_tasks_units():
    assert {t: get_task(t).budget_tolerance for t in
            ("classification", "pose", "pose-regression", "depth", "segmentation")} == {
        "classification": 0.01, "pose": 0.01, "pose-regression": 1.0, "depth": 0.005, "segmentation": 0.01}


def test_accuracy_se_is_binomial():
    task = get_task("classification")
    y = torch.arange(1000) % 10
    pred = y.clone()
    pred[:400] = (pred[:400] + 1) % 10  # 600 of 1000 right
    out = torch.nn.functional.one_hot(pred, 10).float()
    m = task.metrics(out, y)
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["accuracy_se"] == pytest.approx(math.sqrt(0.6 * 0.4 / 1000)) == pytest.approx(0.0154919, abs=1e-7)
    sums = None
    for s in range(0, 1000, 300):
        sums = add_sums(sums, task.metric_sums(out[s:s + 300], y[s:s + 300]))
    assert task.metrics_from_sums(sums)["accuracy_se"] == pytest.approx(m["accuracy_se"])
    # One image says nothing about noise: no standard error.
    assert "accuracy_se" not in task.metrics(out[:1], y[:1])


def test_angular_error_se_is_the_sample_sd_over_sqrt_n():
    task = get_task("pose-regression")
    angles = torch.tensor([10.0, 20.0, 30.0, 40.0])
    rad = torch.deg2rad(angles)
    pred = torch.stack([rad.cos(), rad.sin(), torch.zeros(4)], 1)
    y = torch.tensor([[1.0, 0, 0]]).repeat(4, 1)
    m = task.metrics(pred, y)
    assert m["angular_error"] == pytest.approx(25.0, abs=1e-3)
    # sample variance (15^2 + 5^2 + 5^2 + 15^2) / 3 = 166.67; SE = sqrt(166.67 / 4) = 6.455 degrees
    assert m["angular_error_se"] == pytest.approx(math.sqrt(500 / 3 / 4), abs=1e-3)


def test_abs_rel_se_is_the_delta_method_over_images():
    task = get_task("depth")
    g = torch.Generator().manual_seed(0)
    gt = 1.0 + 3.0 * torch.rand(5, 6, 6, generator=g)
    gt[0, :2] = 0.0  # invalid pixels count nowhere
    gt[3, :, :5] = 0.0
    pred = gt * (1.0 + 0.3 * torch.randn(5, 6, 6, generator=g)).abs().clamp_min(0.05)
    out = pred.clamp_min(1e-3).log()[:, None]
    m = task.metrics(out, gt)
    # Image by image: a_i = sum of relative errors, p_i = valid pixels; z_i = (a_i - R p_i) / sum p.
    p_hat = out[:, 0].exp().double()
    keep = gt > 0
    a = np.array([((p_hat[i] - gt[i].double()).abs() / gt[i].double())[keep[i]].sum().item() for i in range(5)])
    p = keep.reshape(5, -1).sum(1).double().numpy()
    r = a.sum() / p.sum()
    z = (a - r * p) / p.sum()
    assert m["abs_rel"] == pytest.approx(r, rel=1e-5)
    assert m["abs_rel_se"] == pytest.approx(math.sqrt(5 / 4 * (z ** 2).sum()), rel=1e-5)
    # The same from batches.
    sums = add_sums(add_sums(None, task.metric_sums(out[:2], gt[:2])), task.metric_sums(out[2:], gt[2:]))
    assert task.metrics_from_sums(sums)["abs_rel_se"] == pytest.approx(m["abs_rel_se"], rel=1e-9)


def test_ratio_se_by_hand():
    # a = (1, 3), p = (2, 2): R = 1, residuals (-1, 1), SE = sqrt(2 / 1 * 2) / 4 = 0.5
    assert ratio_se(2, 4.0, 4.0, aa=10.0, ap=8.0, pp=8.0) == pytest.approx(0.5)
    assert math.isnan(ratio_se(1, 1.0, 2.0, 1.0, 2.0, 4.0))


def test_miou_se_is_the_delta_method_over_images():
    task = get_task("segmentation")
    K = task.num_classes
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 4, (6, 5, 5), generator=g).to(torch.uint8)
    y[2, 0] = IGNORE_INDEX
    pred = torch.where(torch.rand(6, 5, 5, generator=g) < 0.7, y.long(), torch.randint(0, 5, (6, 5, 5), generator=g))
    pred[y == IGNORE_INDEX] = 3
    out = torch.nn.functional.one_hot(pred, K).permute(0, 3, 1, 2).float()
    m = task.metrics(out, y)
    # Image by image, with plain loops.
    t = np.zeros((6, K))
    u = np.zeros((6, K))
    for i in range(6):
        for c in range(K):
            lab = y[i] != IGNORE_INDEX
            yt, pt = (y[i] == c) & lab, (pred[i] == c) & lab
            t[i, c] = (yt & pt).sum().item()
            u[i, c] = (yt | pt).sum().item()
    T, U = t.sum(0), u.sum(0)
    present = np.array([((y == c) & (y != IGNORE_INDEX)).any().item() for c in range(K)])
    iou = np.where(U > 0, T / np.maximum(U, 1), 0)
    assert m["miou"] == pytest.approx(iou[present].mean())
    z = ((t[:, present] - iou[present] * u[:, present]) / U[present]).sum(1) / present.sum()
    assert abs(z.sum()) < 1e-12
    assert m["miou_se"] == pytest.approx(math.sqrt(6 / 5 * (z ** 2).sum()), rel=1e-9)
    sums = add_sums(add_sums(None, task.metric_sums(out[:4], y[:4])), task.metric_sums(out[4:], y[4:]))
    assert task.metrics_from_sums(sums)["miou_se"] == pytest.approx(m["miou_se"], rel=1e-9)


def test_miou_se_of_a_perfect_prediction_is_zero():
    task = get_task("segmentation")
    y = torch.randint(0, 3, (4, 4, 4), generator=torch.Generator().manual_seed(2)).to(torch.uint8)
    out = torch.nn.functional.one_hot(y.long(), task.num_classes).permute(0, 3, 1, 2).float()
    assert task.metrics(out, y)["miou"] == 1.0 and task.metrics(out, y)["miou_se"] == pytest.approx(0.0, abs=1e-12)
    cm = torch.eye(2, dtype=torch.float64)
    assert math.isnan(miou_se(cm, cm, cm, cm, 1.0)) and iou_from_confusion(cm)[0].tolist() == [1.0, 1.0]


def test_pixel_rows_count_each_row_as_a_unit():
    task = get_task("depth")
    gt = torch.tensor([1.0, 2.0, 4.0, 0.0])
    pred = torch.tensor([1.5, 2.0, 2.0, 9.0])
    m = task.metrics(pred.log()[:, None], gt)
    # per row relative errors 0.5, 0, 0.5 (the last is invalid): mean 1/3, sample sd 0.2887, SE 0.1667
    assert m["abs_rel"] == pytest.approx(1 / 3, rel=1e-6)
    assert m["abs_rel_se"] == pytest.approx(math.sqrt(3 / 2 * (2 * (0.5 - 1 / 3) ** 2 + (1 / 3) ** 2)) / 3, rel=1e-5)
