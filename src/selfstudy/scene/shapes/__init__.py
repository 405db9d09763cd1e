"""Procedural, parametric meshes for the paper's 10 object classes.

The paper renders ShapeNet models; here every class is a small program (one module each, beside this
one) that assembles a model from the primitives of :mod:`.primitives` (boxes, cylinders and cones,
ellipsoids, tori, and "lofts": solids spanned by two convex rings, used for wings, hulls, car bodies and
sails). A model id seeds the program, which then picks a sub-type (an office chair or a stool-like one,
an airliner or a glider), part counts, optional parts and proportions, so one class holds structurally
different shapes and not one template with noise.

``build_model(class_id, model_id)`` is deterministic and cached. Its frame: +z up, the object's front
(car nose, airplane nose, chair and sofa seat front, boat bow, motorcycle front wheel) toward +x,
centred on the bounding-box centre, largest bounding-box side 1.0. Units before that normalisation
are metres, which is why the class programs read like furniture dimensions.

Speed: the curved primitives are built once per resolution and placed by affine transforms, so one
model costs about half a millisecond and a few hundred triangles (about 15 KB).
"""

from __future__ import annotations

import functools
import math
import operator
from typing import Callable

import numpy as np

from selfstudy.errors import UserError
from selfstudy.scene.classes import CLASSES, NUM_CLASSES
from selfstudy.scene.shapes import (airplane, bench, cabinet, car, chair, lamp, motorcycle, sofa, table,
                                    watercraft)
from selfstudy.scene.shapes.primitives import Builder, Mesh

__all__ = ["Mesh", "MODEL_SALT", "build_model", "warp_factors"]

#: First word of every model's seed sequence, so model RNG streams never collide with other users of
#: ``default_rng([...])`` in the project that happen to use the same (class, model) integers.
MODEL_SALT = 0x5E1F_57D9

#: The class programs in label order: ``program(rng, builder)`` draws a model's parameters from ``rng``
#: and adds its parts (metres) to ``builder``.
_PROGRAMS: tuple[Callable[[np.random.Generator, Builder], None], ...] = tuple(
    module.build for module in (airplane, bench, cabinet, car, chair, lamp, sofa, table, watercraft,
                                motorcycle))
assert [p.__module__.rsplit(".", 1)[1] for p in _PROGRAMS] == list(CLASSES)


def _check_index(value, name: str, upper: int | None) -> int:
    allowed = f"an integer in 0..{upper - 1}" if upper is not None else "an integer >= 0"
    if isinstance(value, bool):
        raise UserError(f"{name} must be {allowed}, got {value!r}")
    try:
        index = operator.index(value)
    except TypeError:
        raise UserError(f"{name} must be {allowed}, got {value!r}") from None
    if index < 0 or (upper is not None and index >= upper):
        raise UserError(f"{name} must be {allowed}, got {index}")
    return index


@functools.lru_cache(maxsize=4096)  # ~15 KB a mesh, so about 60 MB when full
def _build(class_id: int, model_id: int) -> Mesh:
    rng = np.random.default_rng([MODEL_SALT, class_id, model_id])
    builder = Builder()
    _PROGRAMS[class_id](rng, builder)
    return builder.finish()


def build_model(class_id: int, model_id: int) -> Mesh:
    """The mesh of model ``model_id`` of class ``class_id`` (index into ``CLASSES``).

    Deterministic in its arguments; any ``model_id >= 0`` is a valid, distinct model. The result is
    cached and read-only. Frame: +z up, front toward +x, bounding box centred at the origin with its
    largest side 1.0.
    """
    class_id = _check_index(class_id, "class_id", NUM_CLASSES)
    model_id = _check_index(model_id, "model_id", None)
    return _build(class_id, model_id)


def warp_factors(rng: np.random.Generator, std: float = 0.1) -> np.ndarray:
    """Per-axis scale factors (3,) of the paper's shape warp (docs/PAPER.md §2.4).

    Each axis gets 1 + std·N(0, 1); the mean of the three noise terms is removed (so the object's
    overall size is kept) and the factors are clipped to [0.5, 1.5]. Apply to an object's local axes.
    """
    if not (isinstance(std, (int, float)) and math.isfinite(std) and std >= 0):
        raise UserError(f"warp std must be a finite number >= 0, got {std!r}")
    noise = std * rng.standard_normal(3)
    return np.clip(1.0 + noise - noise.mean(), 0.5, 1.5)
