"""Scene descriptions: what to draw, drawn from the four factors (docs/PAPER.md §2.2).

:func:`sample_scenes` turns (factors, a random generator, each object's class and model id, the
dataset's class-colour reference) into a :class:`SceneBatch`: object transforms, materials, the
background's material and the light. The renderer draws a batch; the dataset generator stores its
labels. Nothing here touches OpenGL.

Every random quantity is drawn for every scene whatever the factors say, in a fixed order, and the
factors only choose which draws are used. So two datasets that differ in one factor but share a seed
differ in exactly what that factor controls.

Factors:

* **T** texture: 0 flat colours; 1 a procedural pattern (``KINDS``) with two random colours on every
  object and on the background, random frequency, orientation and phase.
* **C** colour: 0 the object colour comes from its class: a per-dataset HSV reference per class
  (:func:`class_colours`), jittered; with texture on it tints the pattern at 0.4. 1 a uniformly random
  colour (textured objects show their pattern colours only). The background is random in both cases.
* **V** viewpoint: 0 the paper's canonical rotation; 1 N(0, 0.5 rad) added to each Euler angle.
* **L** lighting: 0 the point light at angle a = -0.5 rad; 1 a = -0.5 + N(0, 2) rad. The light sits
  at (0, 1.5 sin a, 1.5 cos a) in the world frame (:mod:`selfstudy.scene.pose`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable

import numpy as np

from selfstudy.factors import Factors
from selfstudy.scene.classes import NUM_CLASSES
from selfstudy.scene.pose import Camera, paper_rotation
from selfstudy.scene.shapes import warp_factors

#: Pattern kinds of ``shaders/patterns.glsl``; index 0 is a flat colour.
KINDS = ("flat", "noise", "stripes", "checks", "cells", "marble", "dots")

#: Largest side of a single object, metres: the paper's 0.7 x 0.8.
OBJECT_SIZE = 0.7 * 0.8
#: Largest side of each object of a multi-object scene, metres.
MULTI_OBJECT_SIZE = 0.3
#: Objects in a multi-object scene.
MULTI_OBJECTS = 4

VIEW_NOISE = 0.5          # rad, std of the Euler-angle noise of V=1
LIGHT_ANGLE = -0.5        # rad, the fixed light of L=0
LIGHT_NOISE = 2.0         # rad, std of the light-angle noise of L=1
LIGHT_DISTANCE = 1.5      # metres from the world origin
CLASS_TINT = 0.4          # how much the class colour tints a texture when C=0
HUE_JITTER = 0.06         # std of the class-colour jitter in hue (of 1 turn)
SV_JITTER = 0.2           # std of the class-colour jitter in saturation and value

# Pattern frequencies, features per unit of the object's size (objects) or per metre (background, seen
# about four times farther away, so a similar size in the image).
OBJECT_FREQUENCY = (2.0, 7.0)
BACKGROUND_FREQUENCY = (0.8, 3.0)

# Multi-object layout (after docs/PAPER.md §2.8, whose chain step 1.75, jitter 10 % and spacing 1.25 were
# scaled by 1/5): a jittered chain of steps of 0.3 m, centres at least 0.25 m apart, laid in the plane
# facing the camera through the point of the viewing axis at the depth of the world origin (a chain on
# the ground would be squashed 2.3x vertically by the paper's downward-looking camera and overlap),
# with a little depth jitter. It is redrawn until, in the image, the discs of the objects' half sizes
# overlap by at most a quarter of their radii and stick out of the frame by at most 40 % of a radius.
CHAIN_STEP = 0.3
CHAIN_JITTER = 0.1
MIN_SPACING = 0.25
DEPTH_JITTER = 0.05
MAX_OVERLAP = 0.25
MAX_OUTSIDE = 0.4


@dataclass
class Materials:
    """Surface materials of an array of surfaces, leading shape ``S`` (e.g. (N,) or (N, K)).

    A surface's albedo is ``mix(colour_a, colour_b, pattern(kind, q))`` (``colour_a`` alone when kind is
    0), then ``mix(albedo, tint, tint_amount)``; colours are display RGB in [0, 1]. ``texture`` maps the
    surface's own coordinates ``p`` (object frame, or the background plane's frame in metres) to the
    pattern's ``q = texture[..., :3] @ p + texture[..., 3]``.

    colour_a, colour_b, tint: S + (3,) float; kind: S int; tint_amount: S float; texture: S + (3, 4).
    """

    colour_a: np.ndarray
    colour_b: np.ndarray
    kind: np.ndarray
    tint: np.ndarray
    tint_amount: np.ndarray
    texture: np.ndarray

    def __getitem__(self, index) -> "Materials":
        return Materials(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @staticmethod
    def concatenate(parts: list["Materials"]) -> "Materials":
        """Join along the first axis."""
        return Materials(**{f.name: np.concatenate([getattr(p, f.name) for p in parts])
                            for f in fields(Materials)})


@dataclass
class SceneBatch:
    """N scenes of K objects each (K = 1 for single-object scenes). World frame, metres, radians.

    classes: (N, K) int64 class ids; model_id: (N, K) int64.
    rotation: (N, K, 3, 3) float64 object-to-world. scale: (N, K, 3) float64, the object's per-axis
    size factor (largest side times the warp) applied along its own axes before rotating.
    position: (N, K, 3) float64 world position of the object's centre.
    colour: (N, K, 3) float64 the object's base colour (display RGB): its flat colour, its class colour
    when a texture is tinted by it, else the mean of its two pattern colours.
    objects: Materials of shape (N, K); background: Materials of shape (N,).
    light: (N, 4) float64: light angle a (rad) and light position xyz.
    """

    classes: np.ndarray
    model_id: np.ndarray
    rotation: np.ndarray
    scale: np.ndarray
    position: np.ndarray
    colour: np.ndarray
    objects: Materials
    background: Materials
    light: np.ndarray

    def __len__(self) -> int:
        return len(self.classes)

    def __getitem__(self, index) -> "SceneBatch":
        """Scenes ``index`` (a slice or an index array) as a new batch."""
        return SceneBatch(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @staticmethod
    def concatenate(parts: list["SceneBatch"]) -> "SceneBatch":
        """The scenes of several batches (with the same K) as one batch."""
        joined = {}
        for f in fields(SceneBatch):
            values = [getattr(p, f.name) for p in parts]
            joined[f.name] = Materials.concatenate(values) if isinstance(values[0], Materials) \
                else np.concatenate(values)
        return SceneBatch(**joined)


def class_colours(rng: np.random.Generator) -> np.ndarray:
    """The per-dataset reference colour of each class, (NUM_CLASSES, 3) HSV in [0, 1)."""
    return rng.random((NUM_CLASSES, 3))


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """HSV (..., 3) in [0, 1] (hue wraps) -> RGB (..., 3) in [0, 1]."""
    hsv = np.asarray(hsv, dtype=np.float64)
    h = (hsv[..., 0] % 1.0) * 6.0
    s, v = hsv[..., 1], hsv[..., 2]
    i = np.floor(h).astype(np.int64) % 6
    f = h - np.floor(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    return np.stack([np.choose(i, [c[k] for c in choices]) for k in range(3)], axis=-1)


def _random_rotations(rng: np.random.Generator, shape: tuple) -> np.ndarray:
    """Uniformly random rotations, shape + (3, 3), from normalised Gaussian quaternions."""
    q = rng.standard_normal(shape + (4,))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], axis=-2)


def _patterns(rng: np.random.Generator, shape: tuple, frequency: tuple) -> tuple:
    """Random pattern parameters: kinds (1..6), two colours, and the (3, 4) texture map."""
    kind = rng.integers(1, len(KINDS), size=shape)
    colours = rng.random(shape + (2, 3))
    lo, hi = np.log(frequency[0]), np.log(frequency[1])
    freq = np.exp(rng.uniform(lo, hi, size=shape))
    texture = np.empty(shape + (3, 4))
    texture[..., :3] = _random_rotations(rng, shape) * freq[..., None, None]
    # A random phase keeps patterns off the hash lattice's origin and from repeating across surfaces.
    texture[..., 3] = rng.uniform(0.0, 64.0, size=shape + (3,))
    return kind, colours, texture


def sample_scenes(factors: Factors | str, rng: np.random.Generator, classes, model_ids,
                  reference: np.ndarray, warp: Callable[[np.random.Generator], np.ndarray] | None = None,
                  camera: Camera | None = None) -> SceneBatch:
    """Draw N scenes of K objects.

    classes, model_ids: (N, K) ints. K = 1: single-object scenes, the object centred at
    :func:`view_centre`, largest side ``OBJECT_SIZE``; K > 1: multi-object scenes laid out by a chain (see
    ``CHAIN_STEP``), largest sides ``MULTI_OBJECT_SIZE``.
    reference: (NUM_CLASSES, 3) HSV class colours (:func:`class_colours`).
    warp: per-object axis warp ``warp(rng) -> (3,)``; default :func:`selfstudy.scene.shapes.warp_factors`.
    """
    factors = Factors.parse(factors)
    warp = warp_factors if warp is None else warp
    classes = np.asarray(classes, dtype=np.int64)
    model_ids = np.asarray(model_ids, dtype=np.int64)
    n, k = classes.shape
    multi = k > 1

    # Every draw, in a fixed order, whatever the factors (see the module doc).
    view_noise = rng.normal(0.0, VIEW_NOISE, size=(n, k, 3))
    warps = np.array([warp(rng) for _ in range(n * k)], dtype=np.float64).reshape(n, k, 3)
    jitter = rng.standard_normal((n, k, 3))
    random_colour = rng.random((n, k, 3))
    obj_kind, obj_colours, obj_texture = _patterns(rng, (n, k), OBJECT_FREQUENCY)
    bg_colour = rng.random((n, 3))
    bg_kind, bg_colours, bg_texture = _patterns(rng, (n,), BACKGROUND_FREQUENCY)
    light_noise = rng.normal(0.0, LIGHT_NOISE, size=n)
    camera = camera or Camera()
    position = _layout(rng, n, k, camera) if multi else np.broadcast_to(view_centre(camera), (n, 1, 3)).copy()

    rotation = paper_rotation(view_noise if factors.viewpoint else np.zeros((n, k, 3)))
    size = MULTI_OBJECT_SIZE if multi else OBJECT_SIZE
    scale = size * warps

    ref = reference[classes]
    hsv = np.stack([ref[..., 0] + HUE_JITTER * jitter[..., 0],
                    np.clip(0.2 + 0.8 * ref[..., 1] + SV_JITTER * jitter[..., 1], 0.0, 1.0),
                    np.clip(0.6 + 0.4 * ref[..., 2] + SV_JITTER * jitter[..., 2], 0.0, 1.0)], axis=-1)
    class_colour = hsv_to_rgb(hsv)

    zeros = np.zeros((n, k))
    if factors.texture:
        tint_amount = zeros if factors.colour else zeros + CLASS_TINT
        objects = Materials(obj_colours[..., 0, :], obj_colours[..., 1, :], obj_kind, class_colour,
                            tint_amount, obj_texture)
        colour = obj_colours.mean(axis=-2) if factors.colour else class_colour
        background = Materials(bg_colours[:, 0], bg_colours[:, 1], bg_kind, bg_colours[:, 0],
                               np.zeros(n), bg_texture)
    else:
        colour = random_colour if factors.colour else class_colour
        objects = Materials(colour, colour, np.zeros((n, k), dtype=np.int64), colour, zeros, obj_texture)
        background = Materials(bg_colour, bg_colour, np.zeros(n, dtype=np.int64), bg_colour, np.zeros(n),
                               bg_texture)

    a = LIGHT_ANGLE + (light_noise if factors.lighting else np.zeros(n))
    light = np.stack([a, np.zeros(n), LIGHT_DISTANCE * np.sin(a), LIGHT_DISTANCE * np.cos(a)], axis=-1)
    return SceneBatch(classes=classes, model_id=model_ids, rotation=rotation, scale=scale,
                      position=position, colour=colour, objects=objects, background=background,
                      light=light)


def view_centre(camera: Camera) -> np.ndarray:
    """The point (3,) on the viewing axis at the depth of the world origin: where objects are centred.

    The paper put single objects at the origin, which its camera sees 8 % of the frame above the image
    centre, so tall objects were cut at the top; the 6 cm move centres them.
    """
    depth = -camera.to_camera(np.zeros(3))[2]
    return np.asarray(camera.position) + depth * camera.forward


def _layout(rng: np.random.Generator, n: int, k: int, camera: Camera) -> np.ndarray:
    """Object centres (n, k, 3), world frame, of multi-object scenes (see ``CHAIN_STEP``).

    Vectorised rejection sampling: every round draws one candidate layout for each scene still without
    one (about a third fit), so the cost is a few numpy calls per round, not per scene.
    """
    out = np.empty((n, k, 3))
    todo = np.arange(n)
    centre = view_centre(camera)
    right, up, forward = camera.rotation[:, 0], camera.rotation[:, 1], camera.forward
    for _ in range(100):
        if len(todo) == 0:
            break
        q, ok = _chains(rng, len(todo), k)
        q -= q.mean(axis=1, keepdims=True)
        p = centre + q[..., :1] * right + q[..., 1:2] * up
        p += rng.normal(0.0, DEPTH_JITTER, size=(len(todo), k, 1)) * forward
        ok &= _fits(p, MULTI_OBJECT_SIZE / 2, camera)
        out[todo[ok]] = p[ok]
        todo = todo[~ok]
    if len(todo):  # pragma: no cover - about 1 in 10^17 per scene; a square always fits
        square = np.array([[-1, -1], [1, -1], [-1, 1], [1, 1]] * (k // 4 + 1))[:k] * MIN_SPACING / 1.9
        out[todo] = centre + square[:, :1] * right + square[:, 1:] * up
    return out


def _chains(rng: np.random.Generator, m: int, k: int, tries: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """m chains of k points in a plane, (m, k, 2), each point a jittered step from a random earlier one
    (chains and rings alike), at least MIN_SPACING from all earlier ones; and which chains succeeded."""
    p = np.zeros((m, k, 2))
    ok = np.ones(m, dtype=bool)
    rows = np.arange(m)
    for i in range(1, k):
        angle = rng.uniform(0.0, 2 * np.pi, size=(m, tries))
        step = CHAIN_STEP * (1.0 + CHAIN_JITTER * rng.standard_normal((m, tries)))
        anchor = p[rows[:, None], rng.integers(0, i, size=(m, tries))]
        cand = anchor + step[..., None] * np.stack([np.cos(angle), np.sin(angle)], axis=-1)
        gap = np.linalg.norm(cand[:, :, None, :] - p[:, None, :i, :], axis=-1).min(axis=-1)
        valid = gap >= MIN_SPACING
        first = valid.argmax(axis=1)  # the first try that keeps its distance
        ok &= valid[rows, first]
        p[:, i] = cand[rows, first]
    return p, ok


def _fits(p: np.ndarray, radius: float, camera: Camera) -> np.ndarray:
    """Whether layouts p (..., k, 3) keep their objects' image discs (of world radius ``radius``) apart
    and in the frame, (...) bool."""
    uv = camera.project(p)
    depth = -camera.to_camera(p)[..., 2]
    r = radius / (depth * np.tan(camera.fov / 2) * 2)  # disc radius in image units
    inside = (1.0 - MAX_OUTSIDE) * r[..., None]
    framed = np.all((uv - inside >= 0.0) & (uv + inside <= 1.0), axis=(-2, -1))
    d = np.linalg.norm(uv[..., :, None, :] - uv[..., None, :, :], axis=-1)
    need = (1.0 - MAX_OVERLAP) * (r[..., :, None] + r[..., None, :])
    need = need * (1.0 - np.eye(p.shape[-2]))
    return framed & np.all(d >= need, axis=(-2, -1))
