"""Depth estimation: metric depth per pixel (docs/PAPER.md §5.4).

Targets are the dataset's ``depth`` maps (float16 (N, H, W), metres along the camera axis; the
background plane has its own depth, about 4.3 m behind objects at about 1 m). Pixels whose depth is not
positive are invalid and count nowhere: 0 is what a translation of the augmentation shifts in
(``augment.TARGET_FILL``).

**Output and loss.** The head predicts log-depth; :func:`depth_from_output` turns it into metres
(``exp``), which keeps every prediction positive (ratios and relative errors are defined) and lets a
freshly initialised head (output about 0, i.e. 1 m) reach a 4 m background by a change of about 1.5
instead of 4. The loss is the L1 distance **in metres**, averaged over valid pixels, as the paper's L1
(whose target was depth / 25 in centimetres, i.e. 4 x metres, after clipping at 2.55 m, with invalid
pixels set to the batch maximum: a constant loss scale, which Adam nearly ignores, and a clip this
renderer does not need).

Metrics, over all valid pixels of a split (pooled, not averaged per image):

- ``abs_rel`` (primary, lower is better): mean ``|pred - gt| / gt``, the standard relative error; unlike
  the threshold accuracies it keeps improving once most pixels are within 25 %, which is where the
  background plane puts every reasonable model;
- ``delta1``, ``delta2``, ``delta3``: fractions of pixels with ``max(pred / gt, gt / pred)`` below
  1.25, 1.25^2, 1.25^3 (``delta1`` is the paper's "accuracy");
- ``rmse``: root mean squared error, metres;
- ``loss``: mean absolute error, metres (the training loss);
- ``abs_rel_se``: the standard error of ``abs_rel`` over the split's images. AbsRel pools pixels, so it
  is a ratio of per-image totals (``sum_i a_i / sum_i p_i``: relative errors and valid pixels of image
  ``i``); its delta-method variance is ``n / (n - 1) * sum_i (a_i - R p_i)^2 / (sum_i p_i)^2``, which
  the sums carry as ``sum a_i^2``, ``sum a_i p_i`` and ``sum p_i^2`` (pixels of one image are not
  independent draws, images are). Rows of pixels (the linear probe) count each row as one unit.

The budget-check tolerance is 0.005 of AbsRel (half a point of relative error).
"""

from __future__ import annotations

from typing import Mapping

import torch

from selfstudy.tasks.dense_head import DenseTask

#: Thresholds of the delta accuracies.
DELTA = 1.25
#: Log-depth outputs are clamped to this range before ``exp`` (metres: 4.5e-5 .. 22026), so that a
#: wild early output cannot overflow; real depths lie far inside it.
LOG_DEPTH_RANGE = (-10.0, 10.0)


def depth_from_output(out: torch.Tensor) -> torch.Tensor:
    """Metres from the head's log-depth output, any shape, as float32."""
    return out.float().clamp(*LOG_DEPTH_RANGE).exp()


def valid_pixels(y: torch.Tensor) -> torch.Tensor:
    """Mask of the pixels with a depth to learn: positive and finite (bool, shape of ``y``)."""
    y = y.float()
    return (y > 0) & torch.isfinite(y)


def depth_error_sums(pred: torch.Tensor, gt: torch.Tensor) -> dict[str, torch.Tensor]:
    """Additive error statistics (float64 scalars) of predicted depths ``pred`` against ``gt`` (same
    shape, metres), over the valid pixels of ``gt`` (see :func:`valid_pixels`); ``pred`` must be > 0."""
    keep = valid_pixels(gt)
    p, g = pred.float()[keep].double(), gt.float()[keep].double()
    ratio = torch.maximum(p / g, g / p)
    err = p - g
    # Per-image totals for the standard error (each row is its own unit when gt is rows of pixels).
    rel = torch.zeros(gt.shape, dtype=torch.float64, device=gt.device)
    rel[keep] = err.abs() / g
    units = len(gt) if gt.ndim >= 1 else 1
    a = rel.reshape(units, -1).sum(1) if units else rel.new_zeros(0)
    px = keep.reshape(units, -1).sum(1).double() if units else rel.new_zeros(0)
    return {
        "pixels": torch.tensor(float(keep.sum()), dtype=torch.float64),
        "abs": err.abs().sum(),
        "abs_rel": (err.abs() / g).sum(),
        "squared": err.pow(2).sum(),
        "delta1": (ratio < DELTA).double().sum(),
        "delta2": (ratio < DELTA ** 2).double().sum(),
        "delta3": (ratio < DELTA ** 3).double().sum(),
        "images": (px > 0).double().sum(),
        "img_rel_sq": a.pow(2).sum(),
        "img_rel_px": (a * px).sum(),
        "img_px_sq": px.pow(2).sum(),
    }


def ratio_se(units: float, total_a: float, total_p: float, aa: float, ap: float, pp: float) -> float:
    """Delta-method standard error of the ratio ``R = sum a_i / sum p_i`` over ``units`` units, from
    ``sum a_i^2`` (aa), ``sum a_i p_i`` (ap) and ``sum p_i^2`` (pp): ``sqrt(n / (n - 1) * sum_i (a_i -
    R p_i)^2) / sum p_i`` (NaN for fewer than two units)."""
    if units < 2 or total_p <= 0:
        return float("nan")
    r = total_a / total_p
    ss = max(0.0, aa - 2.0 * r * ap + r * r * pp)
    return (units / (units - 1.0) * ss) ** 0.5 / total_p


class Depth(DenseTask):
    """Per-pixel metric depth from the ``depth`` array; AbsRel is the primary metric (lower is better)."""

    name = "depth"
    primary = "abs_rel"
    higher_is_better = False
    min_delta = 0.002  # 0.2 % relative error, a few percent of a typical AbsRel
    budget_tolerance = 0.005  # half a point of relative error
    target_array = "depth"
    out_channels = 1
    # Cutout blanks pixels whose depth stays (the paper turned it off). The paper also turned the
    # translation off, because its shifted-in zeros became the batch's maximum depth; here they are
    # masked out, so the translation stays on.
    augment_options = {"cutout": False}

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean absolute error in metres over valid pixels of log-depth ``out`` (N, 1, h, w) against
        ``y`` (N, H, W) metres (0 when no pixel is valid)."""
        out, y = self.align(out, y)
        y = y.float()
        keep = valid_pixels(y)
        # Indexing (not masking a full error map) keeps a non-finite target out of the gradient too.
        err = (depth_from_output(out[:, 0])[keep] - y[keep]).abs()
        return err.sum() / keep.sum().clamp_min(1)

    def trivial(self, y: torch.Tensor) -> float | None:
        """The AbsRel of the best constant depth on targets ``y`` (N, H, W) metres: the median of the
        valid depths weighted by 1/depth, which minimises the mean of |c - d| / d."""
        d = y.float()[valid_pixels(y)].double()
        if d.numel() == 0:
            return None
        d, _ = torch.sort(d)
        w = torch.cumsum(1.0 / d, 0)
        c = d[int(torch.searchsorted(w, w[-1] / 2))]
        return float(((c - d).abs() / d).mean())

    def metric_sums(self, out: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        out, y = self.align(out, y)
        return depth_error_sums(depth_from_output(out[:, 0]), y)

    def primary_se(self, sums: Mapping[str, torch.Tensor]) -> float:
        """Standard error of AbsRel over images (see the module doc), NaN for fewer than two images."""
        return ratio_se(float(sums["images"]), float(sums["abs_rel"]), float(sums["pixels"]),
                        float(sums["img_rel_sq"]), float(sums["img_rel_px"]), float(sums["img_px_sq"]))

    def metrics_from_sums(self, sums: Mapping[str, torch.Tensor]) -> dict[str, float]:
        n = float(sums["pixels"])
        if n == 0:
            return {}
        return self.with_se({
            "abs_rel": float(sums["abs_rel"]) / n,
            "delta1": float(sums["delta1"]) / n,
            "delta2": float(sums["delta2"]) / n,
            "delta3": float(sums["delta3"]) / n,
            "rmse": (float(sums["squared"]) / n) ** 0.5,
            "loss": float(sums["abs"]) / n,
        }, sums)
