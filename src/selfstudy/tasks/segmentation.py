"""Semantic segmentation: 11 classes per pixel, background and the 10 object classes (docs/PAPER.md §5.3).

Targets are the dataset's ``segmentation`` maps (uint8 (N, H, W): 0 background, 1..10 = class + 1). The
loss is per-pixel cross-entropy, averaged over the labeled pixels; pixels labeled :data:`IGNORE_INDEX`
(255, what a translation of the augmentation shifts in, ``augment.TARGET_FILL``) count nowhere. The head
is the upsampling decoder by default or the paper's linear readout (``segmentation(readout='linear')``,
scored at feature resolution), see :mod:`selfstudy.tasks.dense_head`.

Metrics, over all labeled pixels of a split (fractions in [0, 1]):

- ``miou`` (primary): the mean over classes present in the split's labels of the intersection over
  union ``TP / (TP + FP + FN)`` of that class, background included. Classes absent from the labels are
  left out of the mean, but a pixel wrongly predicted as one still lowers the IoU of its true class.
- ``pixel_accuracy``: the fraction of pixels whose class is right, background included (the paper's
  metric; with about 80 % background pixels, predicting "background" everywhere scores 0.8);
- ``iou/<class>``: each present class's IoU (``iou/background``, ``iou/airplane``, ...);
- ``loss``: mean cross-entropy per labeled pixel;
- ``miou_se``: the standard error of ``miou`` over the split's images, by the delta method: image
  ``i``'s influence is ``z_i = 1/|C| sum_c (t_ic - IoU_c u_ic) / U_c`` (``t_ic``, ``u_ic``: its
  intersection and union pixels of class ``c``; ``U_c`` the split's union), and ``SE^2 = n / (n - 1)
  sum_i z_i^2``, computed from the per-image cross products ``sum_i t_i t_i^T``, ``t_i u_i^T``,
  ``u_i u_i^T`` that the sums carry (pixels of one image are not independent draws, images are). Rows
  of pixels (the linear probe) count each row as one unit.

The budget-check tolerance is one mIoU point (0.01).

Multi-object datasets (``selfstudy render --multi``) are the paper's setting; single-object datasets
have the same maps (one object) and are allowed too.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F

from selfstudy.data.augment import TARGET_FILL
from selfstudy.errors import UserError
from selfstudy.scene.classes import CLASSES
from selfstudy.tasks.dense_head import DenseTask

#: Label of pixels that count nowhere (shifted in from outside the image by augmentation).
IGNORE_INDEX = int(TARGET_FILL["segmentation"])
#: Names of the 11 segmentation classes: label 0 is background, label c + 1 is object class c.
SEGMENTATION_CLASSES = ("background", *CLASSES)


def confusion_matrix(pred: torch.Tensor, y: torch.Tensor, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """(K, K) float64 counts: row = true class, column = predicted class, over pixels whose label is not
    ``ignore_index``. pred, y: integer tensors of one shape (any)."""
    y = y.reshape(-1).long()
    keep = y != ignore_index
    y, pred = y[keep], pred.reshape(-1).long()[keep]
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise UserError(f"segmentation labels must be 0..{num_classes - 1} or {ignore_index} (ignored), "
                        f"got values in [{int(y.min())}, {int(y.max())}]")
    cm = torch.bincount(y * num_classes + pred, minlength=num_classes * num_classes)
    return cm.reshape(num_classes, num_classes).double()


def iou_from_confusion(cm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(iou (K,), present (K,) bool)`` from a (K, K) confusion matrix (rows true, columns predicted):
    ``iou[c] = cm[c, c] / (row c + column c - cm[c, c])``; ``present[c]``: class c occurs in the labels.
    Absent classes get IoU 0 (leave them out with ``present``)."""
    tp = cm.diagonal()
    union = cm.sum(1) + cm.sum(0) - tp
    present = cm.sum(1) > 0
    return torch.where(union > 0, tp / union.clamp_min(1), torch.zeros_like(tp)), present


def unit_overlaps(pred: torch.Tensor, y: torch.Tensor, num_classes: int,
                  ignore_index: int = IGNORE_INDEX) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-unit ``(intersection (U, K), union (U, K), labeled (U,))`` pixel counts (float64), a unit
    being an image (``y`` of shape (N, H, W)) or a pixel row (``y`` of shape (P,)); ignored pixels count
    nowhere. ``pred``: class ids of ``y``'s shape."""
    units = len(y) if y.ndim >= 1 else 1
    k = num_classes
    y, pred = y.reshape(units, -1).long(), pred.reshape(units, -1).long()
    keep = (y != ignore_index).double()
    unit = torch.arange(units, device=y.device)[:, None].expand_as(y)
    yc = y.clamp(0, k - 1)

    def counts(cls: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        flat = (unit * k + cls).reshape(-1)
        return torch.bincount(flat, weights=weights.reshape(-1), minlength=units * k).reshape(units, k)

    true = counts(yc, keep)
    predicted = counts(pred, keep)
    inter = counts(yc, keep * (pred == y).double())
    return inter, true + predicted - inter, keep.sum(1)


def miou_se(cm: torch.Tensor, tt: torch.Tensor, tu: torch.Tensor, uu: torch.Tensor, units: float) -> float:
    """Delta-method standard error of the mIoU of confusion matrix ``cm`` over ``units`` units, from
    the per-unit cross products ``tt = sum_i t_i t_i^T``, ``tu = sum_i t_i u_i^T``, ``uu = sum_i u_i
    u_i^T`` of intersections ``t_i`` and unions ``u_i`` (K,) (see the module doc); NaN for fewer than
    two units."""
    if units < 2:
        return float("nan")
    iou, present = iou_from_confusion(cm)
    union = cm.sum(1) + cm.sum(0) - cm.diagonal()
    a = torch.where(present & (union > 0), 1.0 / (present.sum() * union.clamp_min(1)), torch.zeros_like(iou))
    b = a * iou
    ss = float(a @ tt @ a - 2.0 * (a @ tu @ b) + b @ uu @ b)
    return (units / (units - 1.0) * max(0.0, ss)) ** 0.5


class Segmentation(DenseTask):
    """Per-pixel 11-way classification of ``segmentation``; mIoU is the primary metric."""

    name = "segmentation"
    primary = "miou"
    higher_is_better = True
    min_delta = 0.005  # half an IoU point
    budget_tolerance = 0.01  # one mIoU point
    target_array = "segmentation"
    class_names = SEGMENTATION_CLASSES
    out_channels = len(SEGMENTATION_CLASSES)
    # Cutout blanks image pixels whose labels stay, asking the head to guess what it cannot see; the
    # paper turned it off for segmentation (docs/PAPER.md §6.6). Flips and translations move the labels too.
    augment_options = {"cutout": False}

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over labeled pixels of logits ``out`` (N, 11, h, w) against ``y`` (N, H, W)
        (0 when no pixel is labeled)."""
        out, y = self.align(out.float(), y)
        y = y.long()
        total = F.cross_entropy(out, y, ignore_index=IGNORE_INDEX, reduction="sum")
        return total / (y != IGNORE_INDEX).sum().clamp_min(1)

    def metric_sums(self, out: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        out, y = self.align(out.float(), y)
        y = y.long()
        pred = out.argmax(1)
        cm = confusion_matrix(pred, y, self.num_classes)
        t, u, labeled = unit_overlaps(pred, y, self.num_classes)
        return {
            "confusion": cm,
            "units": (labeled > 0).double().sum(),
            "unit_tt": t.T @ t,
            "unit_tu": t.T @ u,
            "unit_uu": u.T @ u,
            "loss": F.cross_entropy(out, y, ignore_index=IGNORE_INDEX, reduction="sum").double(),
        }

    def primary_se(self, sums: Mapping[str, torch.Tensor]) -> float:
        """Standard error of the mIoU over images (see the module doc), NaN for fewer than two."""
        return miou_se(sums["confusion"], sums["unit_tt"], sums["unit_tu"], sums["unit_uu"],
                       float(sums["units"]))

    def trivial(self, y: torch.Tensor) -> float | None:
        """The mIoU of the all-background map (class 0 everywhere) on targets ``y`` (N, H, W)."""
        y = y.long()
        if y.numel() == 0:
            return None
        cm = confusion_matrix(torch.zeros_like(y), y, self.num_classes)
        iou, present = iou_from_confusion(cm)
        return float(iou[present].mean()) if bool(present.any()) else None

    def metrics_from_sums(self, sums: Mapping[str, torch.Tensor]) -> dict[str, float]:
        cm = sums["confusion"]
        n = float(cm.sum())
        if n == 0:
            return {}
        iou, present = iou_from_confusion(cm)
        m = {
            "miou": float(iou[present].mean()),
            "pixel_accuracy": float(cm.diagonal().sum()) / n,
            "loss": float(sums["loss"]) / n,
        }
        for c in torch.nonzero(present).flatten().tolist():
            m[f"iou/{self.class_names[c]}"] = float(iou[c])
        return self.with_se(m, sums)
