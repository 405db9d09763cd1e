"""Pose as regression: the direction of the object's front axis seen from the camera.

The dataset's ``azimuth`` and ``elevation`` (radians, of the object's front axis in the camera frame)
become a unit 3-vector ``v = (cos el cos az, cos el sin az, sin el)``; the head (``Linear(D, 3)``)
regresses it with a squared-error loss. A direction rather than two angles, because a vector has no
wrap-around at +-180 degrees and one number, the angle between the predicted and the true direction,
scores azimuth and elevation together.

Metrics: ``angular_error``, the mean angle in degrees between the normalised prediction and the truth
(primary, lower is better); ``within_<t>``, the fraction of images with an error below ``t`` degrees
(``t`` = 30 by default; ``pose-regression(within=15)`` changes it); ``angular_error_se``, the standard
error of the mean angle over the split's images (sample standard deviation / sqrt(n)); ``loss``, the
mean squared error. The budget-check tolerance is one degree.
"""

from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from selfstudy.errors import UserError
from selfstudy.factors import Factors
from selfstudy.tasks.base import Availability, Task
from selfstudy.tasks.pose import needs_viewpoint


def direction(azimuth: torch.Tensor, elevation: torch.Tensor) -> torch.Tensor:
    """Unit vectors (N, 3) of directions at ``azimuth`` and ``elevation`` (N,) radians."""
    az, el = azimuth.float(), elevation.float()
    return torch.stack([el.cos() * az.cos(), el.cos() * az.sin(), el.sin()], dim=-1)


def angular_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Angle in degrees (N,) between the directions of ``pred`` (N, 3), any length, and unit ``target``
    (N, 3). A zero prediction counts as 90 degrees off."""
    cos = (F.normalize(pred.float(), dim=-1) * target.float()).sum(-1)
    return torch.rad2deg(torch.acos(cos.clamp(-1.0, 1.0)))


class PoseRegression(Task):
    """Front-axis direction regression; mean angular error in degrees (lower is better)."""

    name = "pose-regression"
    primary = "angular_error"
    higher_is_better = False
    min_delta = 0.5  # degrees
    budget_tolerance = 1.0  # degrees
    required_arrays = ("azimuth", "elevation")

    def __init__(self, within: float = 30.0):
        if isinstance(within, bool) or not isinstance(within, (int, float)) or not 0 < within <= 180:
            raise UserError(f"pose-regression(within={within!r}): the accuracy threshold is an angle in "
                            f"degrees in (0, 180], e.g. pose-regression(within=30)")
        self.within = float(within)

    def arguments(self) -> dict:
        return {} if self.within == 30.0 else {"within": self.within}

    @property
    def within_key(self) -> str:
        return f"within_{self.within:g}"

    def head(self, in_dim: int) -> nn.Module:
        return nn.Linear(in_dim, 3)

    def targets(self, data: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """(N, 3) unit front-axis directions."""
        return direction(data["azimuth"], data["elevation"])

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Squared error summed over the 3 components, mean over the batch."""
        return (out.float() - y).pow(2).sum(-1).mean()

    def trivial(self, y: torch.Tensor) -> float | None:
        """The mean angular error of the best constant direction on unit targets ``y`` (N, 3): the
        spherical median, from the mean direction refined by Weiszfeld steps."""
        y = y.double()
        if len(y) == 0:
            return None
        c = F.normalize(y.mean(0), dim=0) if float(y.mean(0).norm()) > 1e-9 else y[0]
        best = float(angular_error(c.expand_as(y), y).mean())
        for _ in range(50):
            ang = torch.deg2rad(angular_error(c.expand_as(y), y).double()).clamp_min(1e-6)
            c = F.normalize((y / ang[:, None]).sum(0), dim=0)
            best = min(best, float(angular_error(c.expand_as(y), y).mean()))
        return best

    def metric_sums(self, out: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        err = angular_error(out, y).double()
        return {
            "count": torch.tensor(float(len(y)), dtype=torch.float64),
            "angle": err.sum(),
            "angle_sq": err.pow(2).sum(),
            "within": (err < self.within).double().sum(),
            "loss": (out.float() - y.float()).pow(2).sum(-1).double().sum(),
        }

    def primary_se(self, sums: Mapping[str, torch.Tensor]) -> float:
        """Standard error of the mean angular error: the images' sample standard deviation over
        sqrt(n) (NaN for n < 2)."""
        n = float(sums["count"])
        if n < 2:
            return float("nan")
        mean = float(sums["angle"]) / n
        var = max(0.0, (float(sums["angle_sq"]) - n * mean * mean) / (n - 1))
        return (var / n) ** 0.5

    def metrics_from_sums(self, sums: Mapping[str, torch.Tensor]) -> dict[str, float]:
        n = float(sums["count"])
        if n == 0:
            return {}
        return self.with_se({
            "angular_error": float(sums["angle"]) / n,
            self.within_key: float(sums["within"]) / n,
            "loss": float(sums["loss"]) / n,
        }, sums)

    # A horizontal mirror turns a pose into its mirror image without changing the label.
    augment_options = {"flip": False}

    def available(self, factors: Factors | str | None) -> Availability:
        return needs_viewpoint(factors, "every object faces the same way")

