"""Pose as the paper posed it: 5-way classification of the object's up axis (docs/PAPER.md §5.2).

The targets are the dataset's ``pose_class`` array: class 0 is upright (the up axis within pi/8 of the
world's), classes 1-4 are the four quadrants the up axis tilts toward (psi centred at 180, -90, 0 and
90 degrees). Only viewpoint-varied datasets (V=1) have more than one pose class; with V=0 every image
is upright, so the task is refused there.
"""

from __future__ import annotations

from selfstudy.factors import Factors
from selfstudy.tasks.base import Availability
from selfstudy.tasks.classification import CategoricalTask

#: Names of the 5 pose classes (the tilt direction's azimuth psi, in degrees).
POSE_CLASSES = ("upright", "tilt@180", "tilt@-90", "tilt@0", "tilt@90")


def needs_viewpoint(factors: Factors | str | None, what: str) -> Availability:
    """Availability of a pose task: only datasets with viewpoint varied (V=1) have poses to tell apart."""
    if factors is None:
        return Availability(True)
    f = Factors.parse(factors)
    if f.viewpoint:
        return Availability(True)
    return Availability(False, f"the dataset has a fixed viewpoint (V=0, factors {f.letters}), so {what}; "
                               f"allowed: a dataset with V=1, e.g. {f.letters[:2]}V{f.letters[3]}")


class Pose(CategoricalTask):
    """5-way pose class from the ``pose_class`` array; accuracy (fraction) is the primary metric."""

    name = "pose"
    target_array = "pose_class"
    class_names = POSE_CLASSES

    # A horizontal mirror turns a pose into its mirror image without changing the label.
    augment_options = {"flip": False}

    def available(self, factors: Factors | str | None) -> Availability:
        return needs_viewpoint(factors, "every image has pose class 0 (upright)")
