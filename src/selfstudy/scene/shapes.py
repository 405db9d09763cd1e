"""Procedural, parametric meshes for the paper's 10 object classes.

The paper renders ShapeNet models; here every class is a small program that assembles a model from
primitives (boxes, cylinders and cones, ellipsoids, tori, and "lofts": solids spanned by two convex
rings, used for wings, hulls, car bodies and sails). A model id seeds the program, which then picks a
sub-type (an office chair or a stool-like one, an airliner or a glider), part counts, optional parts
and proportions, so one class holds structurally different shapes and not one template with noise.

``build_model(class_id, model_id)`` is deterministic and cached. Its frame: +z up, the object's front
(car nose, airplane nose, chair and sofa seat front, boat bow, motorcycle front wheel) toward +x,
centred on the bounding-box centre, largest bounding-box side 1.0. Units before that normalisation
are metres, which is why the class programs read like furniture dimensions.

Speed: the curved primitives are built once per resolution and placed by affine transforms, so one
model costs about half a millisecond and a few hundred triangles (about 15 KB).
"""

from __future__ import annotations

import bisect
import functools
import math
import operator
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import numpy as np

from selfstudy.errors import UserError
from selfstudy.scene.classes import CLASSES, NUM_CLASSES

__all__ = ["Mesh", "MODEL_SALT", "build_model", "warp_factors"]

#: First word of every model's seed sequence, so model RNG streams never collide with other users of
#: ``default_rng([...])`` in the project that happen to use the same (class, model) integers.
MODEL_SALT = 0x5E1F_57D9


@dataclass(frozen=True)
class Mesh:
    """A triangle mesh in the canonical object frame.

    vertices: (V, 3) float32, unitless (largest bounding-box side 1.0).
    normals: (V, 3) float32, unit length, per vertex (vertices are duplicated where shading is flat).
    faces: (F, 3) uint32, counter-clockwise seen from outside.

    Meshes returned by :func:`build_model` are shared through a cache: their arrays are read-only.
    """

    vertices: np.ndarray
    normals: np.ndarray
    faces: np.ndarray


# ---------------------------------------------------------------------------------------------------
# Unit primitives, built once and placed by affine transforms.


class _Prim(NamedTuple):
    v: np.ndarray  # (V, 3) float64
    n: np.ndarray  # (V, 3) float64, unit
    f: np.ndarray  # (F, 3) int64, counter-clockwise seen from outside


def _outward(v: np.ndarray, f: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Flip the faces whose winding points toward ``inside`` ((3,) or (F, 3) points in the solid)."""
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    facing = np.einsum("ij,ij->i", np.cross(b - a, c - a), (a + b + c) / 3.0 - inside)
    f = f.copy()
    f[facing < 0] = f[facing < 0][:, ::-1]
    return f


@functools.lru_cache(maxsize=None)
def _box_prim() -> _Prim:
    """Unit cube centred at the origin, side 1, flat shaded (24 vertices, 12 triangles)."""
    v, n, f = [], [], []
    for axis in range(3):
        u, w = (axis + 1) % 3, (axis + 2) % 3
        for sign in (-1.0, 1.0):
            base = len(v)
            for du, dw in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
                p = np.zeros(3)
                p[axis], p[u], p[w] = 0.5 * sign, 0.5 * du, 0.5 * dw
                v.append(p)
                n.append(np.eye(3)[axis] * sign)
            f += [(base, base + 1, base + 2), (base, base + 2, base + 3)]
    v, n = np.array(v), np.array(n)
    return _Prim(v, n, _outward(v, np.array(f), np.zeros(3)))


@functools.lru_cache(maxsize=None)
def _frustum_prim(segs: int, top: float) -> _Prim:
    """Closed frustum along +z from z=0 (radius 1) to z=1 (radius ``top``; 0 gives a cone).

    The side is smooth shaded (normals of the true cone), the caps flat.
    """
    theta = np.linspace(0.0, 2.0 * math.pi, segs, endpoint=False)
    ring = np.stack([np.cos(theta), np.sin(theta), np.zeros(segs)], 1)
    side_n = np.stack([np.cos(theta), np.sin(theta), np.full(segs, 1.0 - top)], 1)
    side_n /= np.linalg.norm(side_n, axis=1, keepdims=True)
    i = np.arange(segs)
    j = (i + 1) % segs
    v = [ring, ring * [top, top, 1.0] + [0, 0, 1.0]]
    n = [side_n, side_n]
    f = [np.stack([i, j, segs + j], 1)]
    if top > 0:
        f.append(np.stack([i, segs + j, segs + i], 1))
    caps = [(0.0, 1.0)] + ([(1.0, top)] if top > 0 else [])
    for z, r in caps:
        base = sum(len(a) for a in v)
        v += [np.array([[0.0, 0.0, z]]), ring * [r, r, 1.0] + [0, 0, z]]
        n += [np.tile([0.0, 0.0, 1.0 if z else -1.0], (segs + 1, 1))]
        f.append(np.stack([np.full(segs, base), base + 1 + i, base + 1 + j], 1))
    v, f = np.concatenate(v), np.concatenate(f)
    return _Prim(v, np.concatenate(n), _outward(v, f, np.array([0.0, 0.0, 0.5])))


@functools.lru_cache(maxsize=None)
def _sphere_prim(stacks: int = 7, slices: int = 12) -> _Prim:
    """Unit sphere at the origin, smooth shaded (UV layout, poles as triangle fans)."""
    phi = np.linspace(0.0, math.pi, stacks + 1)
    theta = np.linspace(0.0, 2.0 * math.pi, slices, endpoint=False)
    p, t = np.meshgrid(phi, theta, indexing="ij")
    v = np.stack([np.sin(p) * np.cos(t), np.sin(p) * np.sin(t), np.cos(p)], -1).reshape(-1, 3)
    f = []
    for s in range(stacks):
        for k in range(slices):
            a, b = s * slices + k, s * slices + (k + 1) % slices
            c, d = a + slices, b + slices
            if s > 0:
                f.append((a, b, d))
            if s < stacks - 1:
                f.append((a, d, c))
    f = np.array(f)
    # The pole rows repeat one point; keep only the triangles that have an area.
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    f = f[np.linalg.norm(np.cross(b - a, c - a), axis=1) > 1e-9]
    return _Prim(v, v.copy(), _outward(v, f, np.zeros(3)))


@functools.lru_cache(maxsize=None)
def _torus_prim(minor: float, major_segs: int = 16, minor_segs: int = 8) -> _Prim:
    """Torus about +z: tube centre circle of radius 1, tube radius ``minor``; smooth shaded."""
    u = np.linspace(0.0, 2.0 * math.pi, major_segs, endpoint=False)
    w = np.linspace(0.0, 2.0 * math.pi, minor_segs, endpoint=False)
    uu, ww = np.meshgrid(u, w, indexing="ij")
    centre = np.stack([np.cos(uu), np.sin(uu), np.zeros_like(uu)], -1)
    normal = np.stack([np.cos(ww) * np.cos(uu), np.cos(ww) * np.sin(uu), np.sin(ww)], -1)
    v = (centre + minor * normal).reshape(-1, 3)
    i = np.arange(major_segs)[:, None]
    k = np.arange(minor_segs)[None, :]
    a = i * minor_segs + k
    b = ((i + 1) % major_segs) * minor_segs + k
    c = ((i + 1) % major_segs) * minor_segs + (k + 1) % minor_segs
    d = i * minor_segs + (k + 1) % minor_segs
    f = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    # Not convex: orient each face against the nearest point of the tube's centre circle.
    cen = v[f].mean(1)
    ang = np.arctan2(cen[:, 1], cen[:, 0])
    inside = np.stack([np.cos(ang), np.sin(ang), np.zeros_like(ang)], 1)
    return _Prim(v, normal.reshape(-1, 3), _outward(v, f, inside))


@functools.lru_cache(maxsize=64)
def _loft_faces(n: int) -> np.ndarray:
    """Triangles of a solid spanned by two n-gons: side quads plus two fan caps. (F, 3) indices."""
    i = np.arange(n)
    j = (i + 1) % n
    k = np.arange(1, n - 1)
    zero = np.zeros(n - 2, dtype=np.int64)
    return np.concatenate([np.stack([i, j, n + j], 1), np.stack([i, n + j, n + i], 1),
                           np.stack([zero, k, k + 1], 1), np.stack([zero, k, k + 1], 1) + n])


# ---------------------------------------------------------------------------------------------------
# Geometry helpers.


def _rot(axis: int, angle: float) -> np.ndarray:
    """Right-handed rotation by ``angle`` radians about coordinate axis 0/1/2 (x/y/z). (3, 3)."""
    c, s = math.cos(angle), math.sin(angle)
    u, w = (axis + 1) % 3, (axis + 2) % 3
    r = np.eye(3)
    r[u, u], r[u, w], r[w, u], r[w, w] = c, -s, s, c
    return r


def _frame_z(d) -> np.ndarray:
    """A rotation (3, 3) taking +z to the direction of ``d`` and +y to the part of +y across it.

    So a part's local y stays "sideways" in the object (and a vertical axis gives the identity);
    when ``d`` is along y, local y goes to +x instead.
    """
    w = _arr(d) / np.linalg.norm(d)
    across = np.array([0.0, 1.0, 0.0]) if abs(w[1]) < 0.99 else np.array([1.0, 0.0, 0.0])
    a = across - (across @ w) * w
    a /= np.linalg.norm(a)
    return np.stack([np.cross(a, w), a, w], 1)


_I3 = np.eye(3)
_AXES = {"x": np.array([1.0, 0, 0]), "y": np.array([0, 1.0, 0]), "z": np.array([0, 0, 1.0])}


def _arr(p) -> np.ndarray:
    return np.asarray(p, dtype=np.float64)


class _Builder:
    """Collects placed parts (metres, canonical axes) and emits the normalised :class:`Mesh`."""

    def __init__(self) -> None:
        self._v: list[np.ndarray] = []
        self._n: list[np.ndarray] = []
        self._f: list[np.ndarray] = []
        self._count = 0

    def _append(self, v: np.ndarray, n: np.ndarray, f: np.ndarray) -> None:
        self._v.append(v)
        self._n.append(n)
        self._f.append(f + self._count)
        self._count += len(v)

    def place(self, prim: _Prim, scale, rot: np.ndarray, origin) -> None:
        """Add ``prim`` scaled per local axis, then rotated, then moved to ``origin``."""
        scale = _arr(scale)
        v = (prim.v * scale) @ rot.T + _arr(origin)
        # Normals transform by the inverse transpose: for rot @ diag(scale) that is rot @ diag(1/scale).
        n = (prim.n / scale) @ rot.T
        n /= np.linalg.norm(n, axis=1, keepdims=True)
        self._append(v, n, prim.f if np.prod(scale) > 0 else prim.f[:, ::-1])

    def box(self, centre, size, rot: np.ndarray = _I3) -> None:
        """Box of ``size`` (3,) along its local axes, rotated by ``rot`` about ``centre``."""
        self.place(_box_prim(), size, rot, centre)

    def beam(self, p0, p1, width: float, thick: float | None = None) -> None:
        """Box from point ``p0`` to ``p1``: ``width`` across the object (along y, or x for beams
        along y), ``thick`` (default ``width``) along the remaining direction."""
        p0, p1 = _arr(p0), _arr(p1)
        d = p1 - p0
        self.place(_box_prim(), (thick or width, width, np.linalg.norm(d)), _frame_z(d), (p0 + p1) / 2)

    def cylinder(self, p0, p1, r0: float, r1: float | None = None, segs: int = 12,
                 ry: float | None = None) -> None:
        """Frustum from ``p0`` (radius ``r0``) to ``p1`` (radius ``r1``, default ``r0``).

        ``ry`` makes the cross-section elliptic: the radius across the object (see :meth:`beam`).
        """
        p0, p1 = _arr(p0), _arr(p1)
        r1 = r0 if r1 is None else r1
        if r1 > r0:  # the unit frustum narrows upward; flip ends instead of caching widening ones
            p0, p1, r0, r1 = p1, p0, r1, r0
            ry = None if ry is None else ry * r0 / r1
        top = round(20 * r1 / r0) / 20  # quantised so the primitive cache stays small
        d = p1 - p0
        ry_scale = r0 if ry is None else ry
        self.place(_frustum_prim(segs, top), (r0, ry_scale, np.linalg.norm(d)), _frame_z(d), p0)

    def disc(self, centre, radius: float, thickness: float, axis: str = "y", segs: int = 16) -> None:
        """Short cylinder (a wheel, a base plate) centred at ``centre`` along a coordinate axis."""
        half = _AXES[axis] * thickness / 2
        self.cylinder(_arr(centre) - half, _arr(centre) + half, radius, segs=segs)

    def sphere(self, centre, radii, rot: np.ndarray = _I3) -> None:
        """Ellipsoid with semi-axes ``radii`` (3,) along its local axes."""
        radii = np.broadcast_to(_arr(radii), (3,))
        self.place(_sphere_prim(), radii, rot, centre)

    def torus(self, centre, major: float, minor: float, axis: str = "y") -> None:
        """Torus around a coordinate axis: tube circle radius ``major``, tube radius ``minor``."""
        ratio = max(0.05, min(0.6, round(20 * minor / major) / 20))
        self.place(_torus_prim(ratio), (major, major, major), _frame_z(_AXES[axis]), centre)

    def loft(self, ring0, ring1) -> None:
        """Flat-shaded solid spanned by two convex rings of matching points ((n, 3) each).

        Covers prisms, wedges, wings, hulls and sails. Zero-area triangles are dropped.
        """
        pts = np.concatenate([_arr(ring0), _arr(ring1)])
        tri = pts[_loft_faces(len(pts) // 2)]
        nrm = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        area = np.linalg.norm(nrm, axis=1)
        keep = area > 1e-12
        tri, nrm, area = tri[keep], nrm[keep], area[keep]
        # The solid is convex, so its centroid lies behind every face.
        flip = np.einsum("ij,ij->i", nrm, tri.mean(1) - pts.mean(0)) < 0
        tri[flip] = tri[flip][:, ::-1]
        nrm = np.where(flip[:, None], -nrm, nrm) / area[:, None]
        f = np.arange(3 * len(tri)).reshape(-1, 3)
        self._append(tri.reshape(-1, 3), np.repeat(nrm, 3, axis=0), f)

    def prism(self, xz: Sequence[Sequence[float]], y0: float, y1: float) -> None:
        """Extrude a convex side profile (x, z) pairs between y0 and y1."""
        xz = _arr(xz)
        ring = np.stack([xz[:, 0], np.zeros(len(xz)), xz[:, 1]], 1)
        self.loft(ring + [0.0, y0, 0.0], ring + [0.0, y1, 0.0])

    def finish(self) -> Mesh:
        """Concatenate, centre on the bounding box, scale the largest side to 1, freeze."""
        v = np.concatenate(self._v)
        lo, hi = v.min(0), v.max(0)
        v = (v - (lo + hi) / 2) / (hi - lo).max()
        out = Mesh(v.astype(np.float32), np.concatenate(self._n).astype(np.float32),
                   np.concatenate(self._f).astype(np.uint32))
        for a in (out.vertices, out.normals, out.faces):
            a.flags.writeable = False
        return out


def _pick(rng: np.random.Generator, options: Sequence, weights: Sequence[float]):
    """One of ``options`` with the given relative weights (cheaper than ``rng.choice(p=...)``)."""
    cum = list(np.cumsum(weights))
    return options[bisect.bisect_right(cum, rng.random() * cum[-1])]


def _by_kind(rng: np.random.Generator, kind: str, ranges: dict[str, tuple[float, float]],
             default: tuple[float, float] | None = None) -> float:
    """A uniform draw from the (low, high) range listed for ``kind``, else from ``default``."""
    low, high = ranges.get(kind, default)
    return float(rng.uniform(low, high))


def _chance(rng: np.random.Generator, p: float) -> bool:
    return bool(rng.random() < p)


def _arc(b: _Builder, centre, radius: float, a0: float, a1: float, pieces: int, width: float,
         thick: float, y: float = 0.0) -> None:
    """Beams along a circular arc in the xz plane (angles in radians from +x, counter-clockwise
    toward +z): fenders, bent lamp arms."""
    cx, cz = centre
    angles = np.linspace(a0, a1, pieces + 1)
    pts = [(cx + radius * math.cos(a), y, cz + radius * math.sin(a)) for a in angles]
    for p, q in zip(pts[:-1], pts[1:]):
        b.beam(p, q, width, thick)


# ---------------------------------------------------------------------------------------------------
# The class programs. Each draws its parameters from ``rng`` and adds parts (metres) to ``b``.


def _wing(b: _Builder, root_le, root_chord: float, tip_le, tip_chord: float, thickness: float) -> None:
    """A lifting surface from a root to a tip section, each a convex lens along -x.

    The sections lie perpendicular to the span; ``thickness`` is relative to the chord.
    """
    root_le, tip_le = _arr(root_le), _arr(tip_le)
    span = tip_le - root_le
    span[0] = 0.0
    t_dir = np.cross([1.0, 0.0, 0.0], span)
    t_dir /= np.linalg.norm(t_dir)
    s = np.array([0.0, 0.2, 0.6, 1.0, 0.6, 0.2])
    h = np.array([0.0, 0.5, 0.35, 0.0, -0.35, -0.5]) * thickness

    def section(le, chord):
        return le + np.outer(-s * chord, [1.0, 0.0, 0.0]) + np.outer(h * chord, t_dir)

    b.loft(section(root_le, root_chord), section(tip_le, tip_chord))


def _airplane(rng: np.random.Generator, b: _Builder) -> None:
    kind = _pick(rng, ("airliner", "bizjet", "prop", "fighter", "glider"), (3, 2, 2.5, 2, 1))
    length = 1.0
    radius = length * _by_kind(rng, kind, {"airliner": (0.045, 0.065), "bizjet": (0.05, 0.07),
                       "prop": (0.05, 0.08), "fighter": (0.04, 0.055),
                       "glider": (0.03, 0.045)})
    nose_len = rng.uniform(1.5, 3.0) * radius if kind != "fighter" else rng.uniform(4.0, 6.0) * radius
    tail_len = rng.uniform(0.22, 0.32) * length
    x_nose = length / 2 - nose_len
    x_tail = -length / 2 + tail_len
    upsweep = rng.uniform(0.3, 0.9) * radius
    b.cylinder((x_tail, 0, 0), (x_nose, 0, 0), radius, segs=14)
    b.sphere((x_nose, 0, 0), (nose_len, radius, radius))
    b.cylinder((x_tail, 0, 0), (-length / 2, 0, upsweep), radius, radius * rng.uniform(0.15, 0.35))
    if kind in ("fighter", "glider") or _chance(rng, 0.15):
        b.sphere((x_nose - rng.uniform(0.0, 0.08), 0, radius * 0.7),
                 (rng.uniform(0.08, 0.14), radius * 0.6, radius * 0.75))

    # Main wing: span relative to the fuselage length, taper and sweep define the planform.
    span = _by_kind(rng, kind, {"airliner": (0.85, 1.1), "bizjet": (0.8, 1.0),
            "prop": (1.1, 1.5), "fighter": (0.5, 0.75),
            "glider": (1.8, 2.6)}) * length
    chord = _by_kind(rng, kind, {"airliner": (0.16, 0.24), "bizjet": (0.14, 0.2),
             "prop": (0.12, 0.18), "fighter": (0.35, 0.5),
             "glider": (0.07, 0.1)}) * length
    taper = _by_kind(rng, kind, {"fighter": (0.05, 0.3), "prop": (0.5, 1.0),
             "glider": (0.35, 0.6)}, (0.25, 0.45))
    sweep = _by_kind(rng, kind, {"airliner": (0.4, 0.65), "bizjet": (0.3, 0.55),
             "prop": (0.0, 0.08), "fighter": (0.6, 1.0),
             "glider": (0.0, 0.05)})
    dihedral = rng.uniform(-0.02, 0.1) if kind != "glider" else rng.uniform(0.03, 0.1)
    z_wing = radius * _pick(rng, (-0.6, 0.0, 0.75), (3, 1, 2) if kind == "prop" else (4, 1, 1))
    x_wing = rng.uniform(0.02, 0.14) * length if kind != "fighter" else rng.uniform(-0.05, 0.05)
    half = span / 2

    def wing_le(y: float):
        return (x_wing - abs(y) * math.tan(sweep), y, z_wing + abs(y) * math.tan(dihedral))

    for side in (-1, 1):
        _wing(b, (x_wing, 0, z_wing), chord, wing_le(side * half), chord * taper, 0.12)

    # Engines: under the wing, at the rear fuselage, or propellers.
    nacelle_r = radius * rng.uniform(0.45, 0.7)
    nacelle_len = rng.uniform(0.1, 0.16) * length
    layout = {"airliner": _pick(rng, ("wing", "rear"), (6, 1)), "bizjet": "rear"}.get(kind, kind)
    if layout == "wing":
        stations = (0.33,) if _chance(rng, 0.65) else (0.28, 0.55)
        for frac in stations:
            for side in (-1, 1):
                le = wing_le(side * frac * half)
                front = le[0] + 0.4 * nacelle_len
                z = le[2] - nacelle_r * 1.3
                b.cylinder((front - nacelle_len, le[1], z), (front, le[1], z), nacelle_r * 0.75,
                           nacelle_r)
                b.beam((le[0] - 0.05 * length, le[1], z), (le[0] - 0.05 * length, le[1], le[2]),
                       nacelle_r * 0.3, nacelle_r * 1.2)
    elif layout == "rear":
        count = 3 if _chance(rng, 0.25) else 2
        x_eng = x_tail + rng.uniform(-0.02, 0.06) * length
        for side in (-1, 1):
            y = side * (radius + nacelle_r * 1.1)
            b.cylinder((x_eng - nacelle_len, y, radius * 0.5), (x_eng, y, radius * 0.5),
                       nacelle_r * 0.8, nacelle_r)
            b.box((x_eng - nacelle_len / 2, y / 2, radius * 0.5), (nacelle_len * 0.5, abs(y), nacelle_r * 0.4))
        if count == 3:
            b.cylinder((x_eng - nacelle_len, 0, radius * 1.2), (x_eng, 0, radius * 1.2),
                       nacelle_r * 0.8, nacelle_r)
    elif kind == "prop":
        twin = _chance(rng, 0.55)
        blades = int(rng.integers(2, 5))
        prop_r = rng.uniform(0.07, 0.11) * length
        hubs = []
        if twin:
            for side in (-1, 1):
                le = wing_le(side * rng.uniform(0.25, 0.35) * half)
                front = le[0] + nacelle_len * 0.6
                b.cylinder((front - nacelle_len * 1.5, le[1], le[2]), (front, le[1], le[2]),
                           nacelle_r * 0.7, nacelle_r)
                hubs.append((front, le[1], le[2]))
        else:
            hubs.append((length / 2, 0.0, 0.0))
        for hub in hubs:
            b.sphere(hub, (nacelle_r * 0.6, nacelle_r * 0.5, nacelle_r * 0.5))
            spin = rng.uniform(0, math.pi)
            for k in range(blades):
                a = spin + 2 * math.pi * k / blades
                tip = (hub[0], hub[1] + prop_r * math.cos(a), hub[2] + prop_r * math.sin(a))
                b.beam(hub, tip, prop_r * 0.18, prop_r * 0.03)
    elif kind == "fighter":
        b.cylinder((-length / 2 - 0.02, 0, upsweep * 0.3), (x_tail, 0, 0), radius * 0.7, radius * 0.9)
        for side in (-1, 1):  # intakes beside the cockpit
            b.box((x_wing + 0.05, side * radius * 1.1, -radius * 0.2),
                  (0.22 * length, radius * 0.5, radius * 1.1))

    # Empennage: fin(s) at the tail end, so the highest point is behind the middle.
    tail_type = {"glider": "t"}.get(kind) or _pick(
        rng, ("conventional", "t", "twin", "v"),
        (5, 2, 0, 0.7) if kind == "airliner" else (3, 4, 0, 0.5) if kind == "bizjet"
        else (4, 1, 1.2, 0.6) if kind == "prop" else (1.2, 0, 3, 0.8))
    fin_h = rng.uniform(0.14, 0.22) * length
    fin_c = rng.uniform(0.14, 0.2) * length
    fin_sweep = rng.uniform(0.35, 0.75)
    stab_span = rng.uniform(0.3, 0.45) * length
    stab_c = rng.uniform(0.08, 0.12) * length
    x_fin = -length / 2 + fin_c * rng.uniform(0.9, 1.1)
    z_top = upsweep + radius * 0.2
    if tail_type == "v":
        for side in (-1, 1):
            tip_le = (x_fin - fin_h * math.tan(fin_sweep), side * fin_h * 0.8, z_top + fin_h * 0.7)
            _wing(b, (x_fin, 0, z_top), fin_c, tip_le, fin_c * 0.5, 0.1)
    elif tail_type == "twin":
        for side in (-1, 1):
            y = side * stab_span * 0.35
            _wing(b, (x_fin, y, z_top), fin_c * 0.9,
                  (x_fin - fin_h * math.tan(fin_sweep), y * 1.1, z_top + fin_h * 0.85), fin_c * 0.5, 0.1)
    else:
        tip_le = (x_fin - fin_h * math.tan(fin_sweep), 0, z_top + fin_h)
        _wing(b, (x_fin, 0, z_top - radius * 0.3), fin_c, tip_le, fin_c * rng.uniform(0.4, 0.7), 0.1)
    if tail_type != "v":
        if tail_type == "t":
            stab_le = (x_fin - fin_h * math.tan(fin_sweep), 0, z_top + fin_h)
        else:
            stab_le = (x_fin - 0.01, 0, z_top - radius * 0.2)
        for side in (-1, 1):
            tip = (stab_le[0] - stab_span / 2 * math.tan(sweep * 0.8 + 0.1), side * stab_span / 2,
                   stab_le[2] + stab_span / 2 * 0.05)
            _wing(b, stab_le, stab_c, tip, stab_c * 0.55, 0.1)


def _car(rng: np.random.Generator, b: _Builder) -> None:
    kind = _pick(rng, ("sedan", "hatchback", "pickup", "van", "suv", "coupe"), (3, 2, 1.5, 1.2, 1.8, 1.5))
    length = _by_kind(rng, kind, {"sedan": (4.3, 5.0), "hatchback": (3.6, 4.3),
              "pickup": (5.0, 5.8), "van": (4.6, 5.4),
              "suv": (4.3, 5.0), "coupe": (4.2, 4.7)})
    width = rng.uniform(1.7, 1.95)
    wheel_r = _by_kind(rng, kind, {"suv": (0.36, 0.42), "pickup": (0.37, 0.43),
               "van": (0.32, 0.37)}, (0.29, 0.34))
    clearance = _by_kind(rng, kind, {"suv": (0.25, 0.32), "pickup": (0.3, 0.38),
                 "coupe": (0.12, 0.16)}, (0.16, 0.22))
    belt = clearance + _by_kind(rng, kind, {"van": (0.65, 0.8), "suv": (0.6, 0.72),
                        "pickup": (0.6, 0.75), "coupe": (0.42, 0.5)
                        }, (0.48, 0.58))
    roof = belt + _by_kind(rng, kind, {"van": (0.7, 0.9), "coupe": (0.36, 0.44),
                   "suv": (0.55, 0.68)}, (0.44, 0.56))
    front, rear = length / 2, -length / 2

    # Lower body: a side profile with a sloping nose, extruded across the width.
    nose_drop = rng.uniform(0.1, 0.3) * (belt - clearance)
    hood_round = rng.uniform(0.1, 0.3)
    tail_drop = rng.uniform(0.05, 0.2) * (belt - clearance)
    body = [(rear, clearance + 0.05), (rear + 0.15, clearance), (front - 0.25, clearance),
            (front, clearance + 0.12), (front, belt - nose_drop), (front - hood_round, belt),
            (rear + 0.1, belt), (rear, belt - tail_drop)]
    b.prism(body, -width / 2, width / 2)

    # Greenhouse: trapezoid from the belt line to the roof; where it sits is what tells the types apart.
    hood = _by_kind(rng, kind, {"van": (0.35, 0.7), "pickup": (1.3, 1.7), "coupe": (1.3, 1.6),
            "suv": (0.9, 1.2)}, (1.0, 1.35))
    screen = _by_kind(rng, kind, {"van": (0.3, 0.7), "coupe": (0.75, 1.0),
              "suv": (0.45, 0.65)}, (0.55, 0.8))
    cab_front = front - hood
    roof_front = cab_front - screen
    if kind == "sedan" or kind == "coupe":
        cab_rear = rear + rng.uniform(0.7, 1.1)
        roof_rear = cab_rear + rng.uniform(0.55, 0.85) * (1.3 if kind == "coupe" else 1.0)
    elif kind == "pickup":
        cab_rear = cab_front - rng.uniform(1.3, 2.2)
        roof_rear = cab_rear + 0.1
    else:
        cab_rear = rear + 0.05
        roof_rear = rear + rng.uniform(0.12, 0.3)
    roof_rear = min(roof_rear, roof_front - 0.5)
    inset = rng.uniform(0.08, 0.14)
    b.prism([(cab_rear, belt), (cab_front, belt), (roof_front, roof), (roof_rear, roof)],
            -width / 2 + inset, width / 2 - inset)
    if kind == "pickup":  # the open bed: side walls and a tailgate
        wall = 0.06
        bed_h = rng.uniform(0.35, 0.5)
        bed_x = (rear + cab_rear) / 2
        for side in (-1, 1):
            b.box((bed_x, side * (width / 2 - wall / 2), belt + bed_h / 2),
                  (cab_rear - rear, wall, bed_h))
        b.box((rear + wall / 2, 0, belt + bed_h / 2), (wall, width, bed_h))
    if _chance(rng, {"coupe": 0.6, "sedan": 0.15, "hatchback": 0.3}.get(kind, 0.0)):  # rear spoiler
        sx = rear + 0.15
        sz = belt + rng.uniform(0.12, 0.25)
        b.box((sx, 0, sz), (0.25, width * 0.9, 0.04))
        for side in (-1, 1):
            b.beam((sx, side * width * 0.3, belt - 0.02), (sx, side * width * 0.3, sz), 0.05)
    if kind in ("suv", "van") and _chance(rng, 0.5):  # roof rails, sometimes carrying a roof box
        for side in (-1, 1):
            b.beam((roof_rear + 0.15, side * (width / 2 - inset - 0.05), roof + 0.05),
                   (roof_front - 0.1, side * (width / 2 - inset - 0.05), roof + 0.05), 0.05)
        if _chance(rng, 0.4):
            box_len = rng.uniform(0.4, 0.6) * (roof_front - roof_rear)
            b.box(((roof_front + roof_rear) / 2, 0, roof + 0.16), (box_len, width * 0.5, rng.uniform(0.15, 0.3)))
    if kind == "suv" and _chance(rng, 0.45):  # spare wheel on the tailgate
        b.disc((rear - 0.1, 0, (clearance + belt) / 2 + 0.1), wheel_r, 0.2, "x", segs=14)
    if kind in ("suv", "pickup") and _chance(rng, 0.3):  # bull bar
        for side in (-1, 1):
            b.beam((front + 0.08, side * width * 0.3, clearance), (front + 0.08, side * width * 0.3,
                                                                   belt - nose_drop), 0.06)
        b.beam((front + 0.08, -width * 0.3, belt - nose_drop), (front + 0.08, width * 0.3, belt - nose_drop), 0.06)
    if kind == "pickup" and _chance(rng, 0.4):  # roll bar behind the cab
        for side in (-1, 1):
            b.beam((cab_rear - 0.15, side * (width / 2 - 0.1), belt), (cab_rear - 0.15, side * (width / 2 - 0.1),
                                                                       roof - 0.05), 0.06)
        b.beam((cab_rear - 0.15, -(width / 2 - 0.1), roof - 0.05), (cab_rear - 0.15, width / 2 - 0.1, roof - 0.05),
               0.06)
    for side in (-1, 1):  # side mirrors
        b.box((cab_front - 0.1, side * (width / 2 + 0.06), belt + 0.08), (0.1, 0.14, 0.1))

    # Wheels, with overhangs that differ by type.
    wheelbase = length * rng.uniform(0.56, 0.64)
    shift = rng.uniform(-0.05, 0.05) * length
    tyre_w = rng.uniform(0.2, 0.28)
    axles = [shift + wheelbase / 2, shift - wheelbase / 2]
    if kind == "pickup" and _chance(rng, 0.2):  # dually: a second rear axle
        axles.append(axles[1] - 2.1 * wheel_r)
    for x in axles:
        for side in (-1, 1):
            y = side * (width / 2 - tyre_w / 2 + 0.02)
            b.disc((x, y, wheel_r), wheel_r, tyre_w, "y", segs=14)
            b.disc((x, y + side * 0.01, wheel_r), wheel_r * 0.6, tyre_w, "y", segs=10)


def _chair(rng: np.random.Generator, b: _Builder) -> None:
    base = _pick(rng, ("legs", "pedestal", "sled", "legs3"), (5, 2.5, 1.5, 0.8))
    seat_w, seat_d = rng.uniform(0.4, 0.56), rng.uniform(0.38, 0.52)
    seat_h = rng.uniform(0.4, 0.5)
    seat_t = rng.uniform(0.06, 0.1) if base == "pedestal" else rng.uniform(0.025, 0.07)
    round_seat = base != "sled" and _chance(rng, 0.2)
    if round_seat:
        b.place(_frustum_prim(20, 1.0), (seat_d / 2, seat_w / 2, seat_t), _I3, (0, 0, seat_h - seat_t))
    else:
        b.box((0, 0, seat_h - seat_t / 2), (seat_d, seat_w, seat_t))
    under = seat_h - seat_t

    if base in ("legs", "legs3"):
        leg_t = rng.uniform(0.022, 0.045)
        square = _chance(rng, 0.5)
        splay = rng.uniform(0.0, 0.07)
        inset = leg_t / 2 + rng.uniform(0.0, 0.03)
        corners = [(1, -1), (1, 1), (-1, -1), (-1, 1)] if base == "legs" else [(1, -1), (1, 1), (-1, 0)]
        feet = []
        # On a round seat the legs go where the ellipse is, not at the bounding-box corners.
        reach = math.sqrt(0.5) if round_seat else 1.0
        for sx, sy in corners:
            top = (sx * reach * (seat_d / 2 - inset), sy * reach * (seat_w / 2 - inset), under)
            bot = (top[0] + sx * splay, top[1] + sy * splay, 0.0)
            feet.append((bot, top))
            if square:
                b.beam(bot, top, leg_t)
            else:
                b.cylinder(bot, top, leg_t * rng.uniform(0.35, 0.5), leg_t / 2, segs=8)
        if base == "legs" and _chance(rng, 0.45):  # stretchers between the legs
            t = rng.uniform(0.25, 0.45)
            at = [np.add(bot, np.multiply(t, np.subtract(top, bot))) for bot, top in feet]
            for i, j in ((0, 2), (1, 3)) + (((0, 1),) if _chance(rng, 0.5) else ()):
                b.beam(at[i], at[j], leg_t * 0.6)
    elif base == "pedestal":
        b.cylinder((0, 0, 0.06), (0, 0, under), rng.uniform(0.02, 0.035), segs=10)
        b.cylinder((0, 0, 0.06), (0, 0, under * 0.55), rng.uniform(0.035, 0.05), segs=10)
        if _chance(rng, 0.75):  # star base on casters
            arms = 5 if _chance(rng, 0.75) else 4
            reach = rng.uniform(0.26, 0.34)
            spin = rng.uniform(0, 2 * math.pi)
            for k in range(arms):
                a = spin + 2 * math.pi * k / arms
                tip = (reach * math.cos(a), reach * math.sin(a), 0.05)
                b.beam((0, 0, 0.08), tip, 0.035)
                b.sphere((tip[0], tip[1], 0.025), 0.025)
        else:  # tulip / disc base
            b.cylinder((0, 0, 0), (0, 0, 0.06), rng.uniform(0.2, 0.28), 0.06, segs=16)
    else:  # sled: two tube loops on the floor
        tube = rng.uniform(0.01, 0.016)
        for side in (-1, 1):
            y = side * (seat_w / 2 - 0.02)
            fx, bx = seat_d / 2 - 0.03, -seat_d / 2 + 0.03
            b.cylinder((bx - 0.04, y, tube), (fx + 0.04, y, tube), tube, segs=6)
            b.cylinder((fx, y, tube), (fx - 0.02, y, under), tube, segs=6)
            b.cylinder((bx, y, tube), (bx + 0.02, y, under), tube, segs=6)

    # Backrest, in a frame tilted backward about the seat's rear edge.
    tilt = rng.uniform(0.0, 0.25)
    rot = _rot(1, -tilt)
    back_t = rng.uniform(0.02, 0.05)
    back_h = rng.uniform(0.3, 0.55) * (1.4 if base == "pedestal" and _chance(rng, 0.3) else 1.0)
    back_w = seat_w * rng.uniform(0.75, 1.0)
    gap = rng.uniform(0.05, 0.12) if base == "pedestal" else rng.uniform(0.0, 0.1)
    back_x = -seat_d / 2 + back_t / 2
    if round_seat and base != "pedestal":  # a narrower back set in, so it stands on the rounded edge
        back_w, gap, back_x = seat_w * rng.uniform(0.55, 0.7), 0.0, -seat_d * 0.4 + back_t / 2
    origin = np.array([back_x, 0.0, seat_h])

    def back(local):
        return origin + rot @ _arr(local)

    style = "panel" if base == "pedestal" else _pick(rng, ("panel", "slats", "rails"), (2, 1.3, 1))
    post_w = rng.uniform(0.025, 0.04)
    if style == "panel":
        b.box(back((0, 0, gap + (back_h - gap) / 2)), (back_t, back_w, back_h - gap), rot)
        if base == "pedestal":
            b.beam((-seat_d / 2 + 0.05, 0, under), back((0, 0, gap + 0.05)), 0.05, 0.02)
        elif gap > 0.04:
            for side in (-1, 1):
                b.box(back((0, side * (back_w / 2 - post_w / 2), gap / 2)), (back_t, post_w, gap + 0.01), rot)
    else:
        for side in (-1, 1):
            b.box(back((0, side * (back_w / 2 - post_w / 2), back_h / 2)), (back_t, post_w, back_h), rot)
        rail_h = rng.uniform(0.04, 0.1)
        b.box(back((0, 0, back_h - rail_h / 2)), (back_t, back_w, rail_h), rot)
        inner = back_w - 2 * post_w
        if style == "slats":
            count = int(rng.integers(2, 7))
            slat_w = inner / count * rng.uniform(0.3, 0.6)
            for k in range(count):
                y = -inner / 2 + inner * (k + 0.5) / count
                b.box(back((0, y, (back_h - rail_h) / 2 + gap / 2)), (back_t * 0.6, slat_w, back_h - rail_h - gap),
                      rot)
        else:
            count = int(rng.integers(1, 4))
            for k in range(count):
                z = gap + (back_h - rail_h - gap) * (k + 0.5) / (count + 0.5)
                b.box(back((0, 0, z)), (back_t * 0.8, inner, rail_h * 0.6), rot)

    if _chance(rng, 0.5 if base == "pedestal" else 0.0 if round_seat else 0.3):  # armrests
        arm_h = seat_h + rng.uniform(0.17, 0.26)
        arm_w = rng.uniform(0.035, 0.07)
        arm_len = seat_d * rng.uniform(0.6, 0.95)
        x0 = -seat_d / 2
        for side in (-1, 1):
            y = side * (seat_w / 2 + (arm_w / 2 if base == "pedestal" else -arm_w / 2))
            b.box((x0 + arm_len / 2, y, arm_h), (arm_len, arm_w, 0.035))
            x_post = x0 + arm_len * (0.5 if base == "pedestal" else 0.85)
            b.beam((x_post, y, under if base == "pedestal" else seat_h), (x_post, y, arm_h), arm_w * 0.6)


def _table(rng: np.random.Generator, b: _Builder) -> None:
    kind = _pick(rng, ("dining", "coffee", "bar", "desk"), (4, 2.5, 1.5, 1.5))
    height = _by_kind(rng, kind, {"dining": (0.7, 0.78), "coffee": (0.36, 0.48),
              "bar": (0.95, 1.08), "desk": (0.72, 0.78)})
    shape = _pick(rng, ("rect", "round", "oval"), (1, 4, 0.5) if kind == "bar" else (4, 1.5, 0.7)
                  if kind != "desk" else (1, 0, 0))
    if kind == "bar":
        span = rng.uniform(0.5, 0.8)
        depth = span
    else:
        span = _by_kind(rng, kind, {"dining": (1.1, 2.2), "coffee": (0.8, 1.4),
                "desk": (1.1, 1.7)})
        depth = _by_kind(rng, kind, {"dining": (0.7, 1.0), "coffee": (0.45, 0.8),
                 "desk": (0.55, 0.8)})
    if shape == "round":
        span = depth = rng.uniform(0.7, 1.3) if kind != "bar" else span
    elif shape == "oval":
        depth = span * rng.uniform(0.5, 0.75)
    top_t = rng.uniform(0.025, 0.06)
    under = height - top_t
    if shape == "rect":
        b.box((0, 0, under + top_t / 2), (depth, span, top_t))
    else:
        b.place(_frustum_prim(24, 1.0), (depth / 2, span / 2, top_t), _I3, (0, 0, under))

    support = {"dining": _pick(rng, ("legs", "pedestal", "trestle"), (5, 2.5, 2)),
               "coffee": _pick(rng, ("legs", "trestle", "pedestal"), (5, 2, 1)),
               "bar": _pick(rng, ("pedestal", "legs"), (4, 1)),
               "desk": _pick(rng, ("legs", "drawers", "trestle"), (4, 3, 2))}[kind]
    if shape != "rect" and support in ("trestle", "drawers"):
        support = "legs"
    leg_t = rng.uniform(0.03, 0.07)
    if support == "legs":
        if shape == "rect":
            inset = leg_t / 2 + rng.uniform(0.0, 0.08)
            spots = [(sx * (depth / 2 - inset), sy * (span / 2 - inset)) for sx in (-1, 1) for sy in (-1, 1)]
            if span > 1.8 and _chance(rng, 0.5):  # long tables get a middle pair
                spots += [(sx * (depth / 2 - inset), 0.0) for sx in (-1, 1)]
        else:
            count = 3 if _chance(rng, 0.35) else 4
            spin = rng.uniform(0, math.pi)
            spots = [(0.38 * depth * math.cos(spin + 2 * math.pi * k / count),
                      0.38 * span * math.sin(spin + 2 * math.pi * k / count)) for k in range(count)]
        square = _chance(rng, 0.5)
        splay = rng.uniform(0.0, 0.06) if _chance(rng, 0.4) else 0.0
        for x, y in spots:
            bot = (x + math.copysign(splay, x), y + math.copysign(splay, y), 0.0)
            if square:
                b.beam(bot, (x, y, under), leg_t)
            else:
                b.cylinder(bot, (x, y, under), leg_t / 2 * rng.uniform(0.5, 1.0), leg_t / 2, segs=8)
        if shape == "rect" and _chance(rng, 0.5):  # apron under the top
            apron = rng.uniform(0.06, 0.12)
            xs, ys = depth / 2 - inset, span / 2 - inset
            b.box((xs, 0, under - apron / 2), (0.02, 2 * ys, apron))
            b.box((-xs, 0, under - apron / 2), (0.02, 2 * ys, apron))
            b.box((0, ys, under - apron / 2), (2 * xs, 0.02, apron))
            b.box((0, -ys, under - apron / 2), (2 * xs, 0.02, apron))
        if _chance(rng, 0.35 if kind == "coffee" else 0.2):  # lower shelf
            z = rng.uniform(0.08, 0.3) * height
            if shape == "rect":
                b.box((0, 0, z), (depth - 2 * inset, span - 2 * inset, 0.02))
            else:
                b.place(_frustum_prim(16, 1.0), (0.4 * depth, 0.4 * span, 0.02), _I3, (0, 0, z))
    elif support == "pedestal":
        double = shape != "round" and span > 1.5 and _chance(rng, 0.6)
        ys = (-span / 3, span / 3) if double else (0.0,)
        col_r = rng.uniform(0.035, 0.09)
        foot = _pick(rng, ("disc", "cross", "bar"), (2, 2, 1 if double else 0))
        for y in ys:
            b.cylinder((0, y, 0.03), (0, y, under), col_r, col_r * rng.uniform(0.5, 1.0), segs=10)
            reach = min(depth, span) * rng.uniform(0.3, 0.42)
            if foot == "disc":
                b.cylinder((0, y, 0), (0, y, 0.04), reach, reach * 0.8, segs=18)
            elif foot == "cross":
                for k in range(4):
                    a = math.pi / 4 + k * math.pi / 2
                    b.beam((0, y, 0.04), (reach * math.cos(a), y + reach * math.sin(a), 0.02), 0.05, 0.04)
            else:
                b.box((0, y, 0.03), (depth * 0.8, 0.08, 0.06))
        if double:
            b.beam((0, ys[0], height * 0.35), (0, ys[1], height * 0.35), 0.05)
    else:  # trestle panels or a drawer block on one side
        inset = rng.uniform(0.03, 0.15)
        panel_t = rng.uniform(0.03, 0.08)
        panel_d = depth * rng.uniform(0.6, 0.95)
        ends = (-1, 1)
        if support == "drawers":
            block_w = rng.uniform(0.35, 0.5)
            yb = span / 2 - inset - block_w / 2
            b.box((0, yb, under / 2), (depth * 0.9, block_w, under))
            drawers = int(rng.integers(2, 5))
            for k in range(drawers):
                zc = under * (k + 0.5) / drawers
                b.box((depth * 0.45 + 0.01, yb, zc), (0.02, block_w * 0.9, under / drawers * 0.85))
                b.box((depth * 0.45 + 0.03, yb, zc), (0.02, 0.1, 0.02))
            ends = (-1,)
        for side in ends:
            b.box((0, side * (span / 2 - inset - panel_t / 2), under / 2), (panel_d, panel_t, under))
        if support == "trestle" and _chance(rng, 0.7):
            y = span / 2 - inset
            b.beam((0, -y, under * 0.35), (0, y, under * 0.35), 0.05)


def _cabinet(rng: np.random.Generator, b: _Builder) -> None:
    kind = _pick(rng, ("tall", "wide", "small"), (3, 3, 2))
    width = _by_kind(rng, kind, {"tall": (0.45, 1.0), "wide": (1.0, 2.0), "small": (0.4, 0.6)})
    height = _by_kind(rng, kind, {"tall": (1.2, 2.0), "wide": (0.6, 0.95), "small": (0.45, 0.7)})
    depth = rng.uniform(0.32, 0.6)
    base = _pick(rng, ("plinth", "legs", "none", "feet"), (3, 3, 2, 1.5))
    base_h = _by_kind(rng, base, {"plinth": (0.05, 0.12), "legs": (0.1, 0.28), "none": (0.0, 0.0),
                                  "feet": (0.04, 0.08)})
    if base == "plinth":
        b.box((-0.02, 0, base_h / 2), (depth - 0.06, width - 0.04, base_h))
    elif base in ("legs", "feet"):
        leg = rng.uniform(0.025, 0.045)
        for sx in (-1, 1):
            for sy in (-1, 1):
                x, y = sx * (depth / 2 - leg - 0.01), sy * (width / 2 - leg - 0.01)
                if base == "feet":
                    b.sphere((x, y, base_h / 2), (leg, leg, base_h / 2))
                else:
                    b.cylinder((x + sx * 0.02, y + sy * 0.02, 0), (x, y, base_h), leg * 0.6, leg, segs=8)
    body_h = height - base_h
    z0 = base_h
    front = depth / 2
    open_shelves = kind != "small" and _chance(rng, 0.25)
    wall = rng.uniform(0.018, 0.03)
    if open_shelves:  # bookcase: sides, back, top, bottom and shelves, open at the front
        for side in (-1, 1):
            b.box((0, side * (width / 2 - wall / 2), z0 + body_h / 2), (depth, wall, body_h))
        b.box((-depth / 2 + wall / 2, 0, z0 + body_h / 2), (wall, width, body_h))
        shelves = max(1, int(round(body_h / rng.uniform(0.28, 0.4))))
        for k in range(shelves + 1):
            b.box((0, 0, z0 + wall / 2 + (body_h - wall) * k / shelves), (depth, width, wall))
    else:
        b.box((0, 0, z0 + body_h / 2), (depth, width, body_h))
    if _chance(rng, 0.45):  # a top slab overhanging the body
        over = rng.uniform(0.01, 0.04)
        b.box((over / 2, 0, height + 0.015), (depth + over, width + 2 * over, 0.03))
    if open_shelves:
        return

    # Front: columns, each of doors or a stack of drawers, with handles sticking out toward +x.
    columns = 1 if width < 0.7 else int(rng.integers(1, 4 if width > 1.3 else 3))
    gap = 0.008
    col_w = width / columns
    knob = _chance(rng, 0.5)
    for c in range(columns):
        yc = -width / 2 + col_w * (c + 0.5)
        layout = _pick(rng, ("doors", "drawers", "mixed"), (3, 2, 2))
        if layout == "doors":
            rows = [(0.0, 1.0, "door")]
        elif layout == "drawers":
            count = int(rng.integers(2, 6))
            rows = [(k / count, (k + 1) / count, "drawer") for k in range(count)]
        else:
            split = rng.uniform(0.55, 0.8)
            count = int(rng.integers(1, 3))
            step = (1 - split) / count
            rows = [(0.0, split, "door")] + [(split + step * k, split + step * (k + 1), "drawer")
                                             for k in range(count)]
        for lo, hi, part in rows:
            z_lo, z_hi = z0 + lo * body_h + gap, z0 + hi * body_h - gap
            zc = (z_lo + z_hi) / 2
            leaves = 2 if part == "door" and col_w > 0.55 else 1
            leaf_w = col_w / leaves
            for k in range(leaves):
                yl = yc - col_w / 2 + leaf_w * (k + 0.5)
                b.box((front + 0.008, yl, zc), (0.016, leaf_w - 2 * gap, z_hi - z_lo))
                if part == "drawer":
                    hy, hz = yl, zc
                else:  # door handles sit next to the leaf's opening edge, at a reachable height
                    edge = 1 if (leaves == 2 and k == 0) or (leaves == 1 and c % 2 == 0) else -1
                    hy = yl + edge * (leaf_w / 2 - 0.05)
                    hz = min(zc, z0 + 1.0) if kind == "tall" else z_hi - 0.1
                if knob:
                    b.sphere((front + 0.03, hy, hz), 0.018)
                elif part == "drawer":
                    b.box((front + 0.03, hy, hz), (0.02, min(0.15, leaf_w * 0.4), 0.02))
                else:
                    b.box((front + 0.03, hy, hz), (0.02, 0.02, min(0.15, (z_hi - z_lo) * 0.3)))


def _bench(rng: np.random.Generator, b: _Builder) -> None:
    span = rng.uniform(0.9, 2.2)
    depth = rng.uniform(0.3, 0.5)
    seat_h = rng.uniform(0.4, 0.48)
    seat_t = rng.uniform(0.03, 0.08)
    has_back = _chance(rng, 0.5)
    support = _pick(rng, ("legs", "slabs", "aframe", "frame"), (3, 2.5, 1.5, 1.5))
    under = seat_h - seat_t
    if _chance(rng, 0.45):  # slatted seat: boards along the bench
        boards = int(rng.integers(3, 7))
        board_d = depth / boards * rng.uniform(0.6, 0.85)
        for k in range(boards):
            b.box((-depth / 2 + depth * (k + 0.5) / boards, 0, seat_h - seat_t / 2), (board_d, span, seat_t))
    else:
        b.box((0, 0, seat_h - seat_t / 2), (depth, span, seat_t))

    inset = rng.uniform(0.05, 0.2) * span / 2
    end_ys = [-(span / 2 - inset), span / 2 - inset]
    if support == "legs" and span > 1.6 and _chance(rng, 0.6):
        end_ys.insert(1, 0.0)
    leg_t = rng.uniform(0.04, 0.08)
    for y in end_ys:
        if support == "legs":
            for sx in (-1, 1):
                x = sx * (depth / 2 - leg_t / 2 - 0.01)
                b.beam((x, y, 0), (x, y, under), leg_t)
        elif support == "slabs":
            b.box((0, y, under / 2), (depth * rng.uniform(0.85, 1.0), leg_t * 0.7, under))
        elif support == "aframe":
            spread = depth * rng.uniform(0.55, 0.7)
            for sx in (-1, 1):
                b.beam((sx * spread, y, 0), (sx * depth * 0.15, y, under), leg_t * 0.7, leg_t)
            b.beam((-depth * 0.4, y, under * 0.45), (depth * 0.4, y, under * 0.45), 0.03, leg_t)
        else:  # tube frame: an upright rectangle per end
            tube = rng.uniform(0.012, 0.02)
            for sx in (-1, 1):
                b.cylinder((sx * depth * 0.42, y, 0), (sx * depth * 0.42, y, under), tube, segs=6)
            b.cylinder((-depth * 0.42, y, tube), (depth * 0.42, y, tube), tube, segs=6)
    if support in ("legs", "aframe") and _chance(rng, 0.5):  # long stretcher
        b.beam((0, end_ys[0], under * 0.4), (0, end_ys[-1], under * 0.4), 0.04)

    if has_back:
        back_h = rng.uniform(0.3, 0.5)
        tilt = rng.uniform(0.05, 0.3)
        rot = _rot(1, -tilt)
        origin = np.array([-depth / 2 + 0.02, 0.0, seat_h])
        gap = rng.uniform(0.03, 0.12)
        for y in end_ys:
            b.box(origin + rot @ _arr((0, y, back_h / 2)), (0.04, 0.05, back_h), rot)
        if _chance(rng, 0.5):
            rails = int(rng.integers(2, 5))
            rail_h = (back_h - gap) / rails * rng.uniform(0.5, 0.8)
            for k in range(rails):
                z = gap + (back_h - gap) * (k + 0.5) / rails
                b.box(origin + rot @ _arr((0.0, 0, z)), (0.025, span * 0.98, rail_h), rot)
        else:
            b.box(origin + rot @ _arr((0.0, 0, gap + (back_h - gap) / 2)), (0.03, span * 0.98, back_h - gap), rot)
        if _chance(rng, 0.5):  # armrests at both ends
            arm_h = seat_h + rng.uniform(0.15, 0.25)
            for y in (-span / 2 + 0.03, span / 2 - 0.03):
                b.box((0, y, arm_h), (depth, 0.06, 0.04))
                b.beam((depth / 2 - 0.05, y, seat_h), (depth / 2 - 0.05, y, arm_h), 0.04)


def _sofa(rng: np.random.Generator, b: _Builder) -> None:
    seats = _pick(rng, (1, 2, 3, 4), (1.5, 3, 3.5, 1))
    seat_w = rng.uniform(0.55, 0.75)
    arm_style = _pick(rng, ("box", "rolled", "thin", "none"), (3, 2, 2, 1))
    arm_w = _by_kind(rng, arm_style, {"box": (0.15, 0.28), "rolled": (0.15, 0.25), "thin": (0.06, 0.12),
                                      "none": (0.0, 0.0)})
    width = seats * seat_w + 2 * arm_w
    depth = rng.uniform(0.8, 1.0)
    legs = _chance(rng, 0.55)
    leg_h = rng.uniform(0.06, 0.18) if legs else 0.0
    base_top = rng.uniform(0.25, 0.35)
    seat_h = rng.uniform(0.4, 0.47)
    back_h = rng.uniform(0.7, 0.95)
    back_t = rng.uniform(0.15, 0.25)
    inner = seats * seat_w
    chaise = seats >= 2 and _chance(rng, 0.3)
    chaise_len = rng.uniform(0.5, 0.75) if chaise else 0.0
    chaise_side = 1 if _chance(rng, 0.5) else -1

    b.box((0, 0, leg_h + (base_top - leg_h) / 2), (depth, width, base_top - leg_h))
    if chaise:  # the chaise extends one end of the seat forward
        yc = chaise_side * (inner / 2 - seat_w / 2)
        b.box((depth / 2 + chaise_len / 2, yc, leg_h + (base_top - leg_h) / 2),
              (chaise_len, seat_w, base_top - leg_h))
    if legs:
        leg_t = rng.uniform(0.03, 0.06)
        spots = [(sx * (depth / 2 - 0.05), sy * (width / 2 - 0.05)) for sx in (-1, 1) for sy in (-1, 1)]
        if width > 2.0:
            spots += [(-(depth / 2 - 0.05), 0.0), (depth / 2 - 0.05, 0.0)]
        if chaise:
            yc = chaise_side * (inner / 2 - seat_w / 2)
            spots += [(depth / 2 + chaise_len - 0.05, yc + sy * (seat_w / 2 - 0.05)) for sy in (-1, 1)]
        for x, y in spots:
            b.cylinder((x, y, 0), (x, y, leg_h), leg_t * 0.6, leg_t, segs=8)

    cushion_d = depth - back_t
    cushions = seats if _chance(rng, 0.7) else 1
    cw = inner / cushions
    for k in range(cushions):
        yc = -inner / 2 + cw * (k + 0.5)
        extra = chaise_len if chaise and abs(yc - chaise_side * (inner / 2 - seat_w / 2)) < cw / 2 else 0.0
        b.box((-depth / 2 + back_t + (cushion_d + extra) / 2, yc, (base_top + seat_h) / 2),
              (cushion_d + extra - 0.01, cw - 0.01, seat_h - base_top))
    # Backrest: a frame and leaning cushions.
    b.box((-depth / 2 + back_t / 2, 0, base_top + (back_h - base_top) / 2), (back_t, width, back_h - base_top))
    if _chance(rng, 0.65):
        lean = _rot(1, -rng.uniform(0.1, 0.25))
        for k in range(cushions):
            yc = -inner / 2 + cw * (k + 0.5)
            b.box((-depth / 2 + back_t + 0.07, yc, seat_h + (back_h - seat_h) * 0.45),
                  (0.14, cw - 0.02, (back_h - seat_h) * 0.85), lean)

    if arm_style != "none":
        arm_h = min(back_h, _by_kind(rng, arm_style, {"box": (0.58, 0.7), "rolled": (0.6, 0.7),
                                                      "thin": (0.5, 0.65)}))
        for side in (-1, 1):
            y = side * (width / 2 - arm_w / 2)
            if arm_style == "rolled":
                b.box((0, y, (base_top + arm_h - arm_w / 2) / 2), (depth, arm_w, arm_h - arm_w / 2 - base_top))
                b.cylinder((-depth / 2, y, arm_h - arm_w / 2), (depth / 2 + 0.03, y, arm_h - arm_w / 2),
                           arm_w * 0.55, segs=12)
            else:
                b.box((0, y, (base_top + arm_h) / 2), (depth, arm_w, arm_h - base_top))


def _lamp(rng: np.random.Generator, b: _Builder) -> None:
    kind = _pick(rng, ("floor", "table", "desk", "arc"), (3, 3, 3, 1.5))
    shade_kind = _pick(rng, ("drum", "empire", "cone", "dome", "globe"),
                       (1, 2, 3, 2, 0.5) if kind in ("desk", "arc") else (3, 3, 0.5, 0.5, 1))

    def shade(top, down=np.array([0.0, 0, -1]), size=1.0):
        """A shade hanging from ``top`` along ``down``; returns the bulb point."""
        top = _arr(top)
        if shade_kind == "globe":
            r = size * rng.uniform(0.1, 0.16)
            b.sphere(top + down * r, r)
            return top + down * r
        h = size * rng.uniform(0.18, 0.32)
        r_low = size * rng.uniform(0.12, 0.22)
        if shade_kind == "dome":
            b.sphere(top + down * h * 0.35, (r_low, r_low, h * 0.6), _frame_z(down))
            return top + down * h
        narrowing = _by_kind(rng, shade_kind, {"drum": (0.9, 1.0), "empire": (0.5, 0.75), "cone": (0.05, 0.25)})
        b.cylinder(top + down * h, top, r_low, r_low * narrowing, segs=16)
        return top + down * h

    if kind in ("floor", "table"):
        height = rng.uniform(1.3, 1.8) if kind == "floor" else rng.uniform(0.4, 0.7)
        base_r = (rng.uniform(0.12, 0.2) if kind == "floor" else rng.uniform(0.07, 0.13))
        if kind == "floor":
            if _chance(rng, 0.3):  # tripod
                for k in range(3):
                    a = 2 * math.pi * k / 3
                    b.cylinder((base_r * 1.5 * math.cos(a), base_r * 1.5 * math.sin(a), 0),
                               (0, 0, height * 0.4), 0.012, segs=6)
            else:
                b.cylinder((0, 0, 0), (0, 0, 0.03), base_r, base_r * 0.9, segs=16)
            b.cylinder((0, 0, 0), (0, 0, height), rng.uniform(0.01, 0.02), segs=8)
            size = 1.0
        else:
            body = _pick(rng, ("vase", "column", "stack", "cone"), (3, 2, 1, 1))
            body_h = height * rng.uniform(0.45, 0.65)
            if body == "vase":
                b.sphere((0, 0, body_h / 2), (base_r, base_r, body_h / 2))
            elif body == "column":
                b.cylinder((0, 0, 0), (0, 0, 0.03), base_r * 1.2, segs=14)
                b.cylinder((0, 0, 0), (0, 0, body_h), base_r * 0.35, segs=10)
            elif body == "stack":
                n = int(rng.integers(2, 4))
                for k in range(n):
                    b.sphere((0, 0, body_h * (k + 0.5) / n), (base_r, base_r, body_h / n / 2))
            else:
                b.cylinder((0, 0, 0), (0, 0, body_h), base_r, base_r * 0.3, segs=14)
            b.cylinder((0, 0, body_h), (0, 0, height), 0.008, segs=6)
            size = rng.uniform(0.6, 0.9)
        top = (0, 0, height + size * 0.05)
        if kind == "floor" and _chance(rng, 0.25):  # torchiere: a bowl opening upward
            r = rng.uniform(0.15, 0.25)
            b.cylinder((0, 0, height), (0, 0, height + r * 0.6), r * 0.25, r, segs=16)
        else:
            shade(top, size=size)
    else:
        # An articulated desk lamp or an arc floor lamp, both reaching toward +x.
        if kind == "desk":
            if _chance(rng, 0.5):
                b.cylinder((0, 0, 0), (0, 0, 0.03), rng.uniform(0.07, 0.11), segs=16)
            else:
                b.box((0, 0, 0.02), (rng.uniform(0.12, 0.2), rng.uniform(0.1, 0.16), 0.04))
            joints = int(rng.integers(2, 4))
            p = np.array([0.0, 0, 0.03])
            for k in range(joints):
                seg = rng.uniform(0.2, 0.35) if k < 2 else rng.uniform(0.1, 0.2)
                if k == 0:  # the first arm rises, leaning back; later ones reach forward
                    lean = rng.uniform(0.1, 0.5)
                    d = np.array([-math.sin(lean), 0.0, math.cos(lean)])
                else:
                    angle = rng.uniform(-0.6, 0.6)
                    if p[2] + seg * math.sin(angle) < 0.22:  # keep the head well above the desk
                        angle = abs(angle)
                    d = np.array([math.cos(angle), 0.0, math.sin(angle)])
                q = p + seg * d
                b.cylinder(p, q, 0.01, segs=6)
                b.sphere(q, 0.018)
                p = q
            down = _arr((rng.uniform(0.2, 0.8), 0, -1.0))
            shade(p, down / np.linalg.norm(down), size=rng.uniform(0.35, 0.5))
        else:
            height = rng.uniform(1.5, 2.0)
            reach = rng.uniform(0.8, 1.3)
            if _chance(rng, 0.5):
                b.box((0, 0, 0.05), (0.35, 0.3, 0.1))
            else:
                b.cylinder((0, 0, 0), (0, 0, 0.05), 0.2, segs=16)
            radius = reach / 2
            # A vertical pole to the arc's start, then a half-ish arc that ends over the floor at +x.
            z_arc = height - radius
            b.cylinder((0, 0, 0), (0, 0, z_arc), 0.015, segs=8)
            pts = [(radius - radius * math.cos(a), 0, z_arc + radius * math.sin(a))
                   for a in np.linspace(0, math.pi * rng.uniform(0.75, 0.95), 7)]
            for p, q in zip(pts[:-1], pts[1:]):
                b.cylinder(p, q, 0.015, segs=8)
            shade(pts[-1], size=rng.uniform(0.9, 1.2))


def _hull_outline(length: float, beam: float, transom: float, widest: float, bow_power: float
                  ) -> np.ndarray:
    """Deck outline (n, 2) in xy: a pointed bow at +x, a transom of relative width ``transom`` at -x.

    The half-breadth is a concave function of x, so the polygon is convex (a valid loft ring).
    """
    xs = np.concatenate([np.linspace(length / 2, widest, 5)[1:-1], np.linspace(widest, -length / 2, 4)])
    to_bow = np.clip((xs - widest) / (length / 2 - widest), 0.0, 1.0)
    to_stern = np.clip((widest - xs) / (widest + length / 2), 0.0, 1.0)
    half = np.where(xs > widest, 1 - to_bow ** bow_power, 1 - (1 - transom) * to_stern ** 1.6) * beam / 2
    port = np.stack([xs, half], 1)
    if transom <= 0:  # a pointed stern: end the side at the stern tip
        port = np.concatenate([port[:-1], [[-length / 2, 0.0]]])
        starboard = port[-2::-1] * [1, -1]
    else:
        starboard = port[::-1] * [1, -1]
    return np.concatenate([[[length / 2, 0.0]], port, starboard])


def _watercraft(rng: np.random.Generator, b: _Builder) -> None:
    kind = _pick(rng, ("sail", "motor", "ship", "rowboat", "canoe"), (3, 3, 2.5, 1.2, 0.8))
    length = 1.0
    beam = _by_kind(rng, kind, {"ship": (0.12, 0.18), "canoe": (0.12, 0.18),
            "rowboat": (0.3, 0.4)}, (0.25, 0.35)) * length
    freeboard = _by_kind(rng, kind, {"ship": (0.06, 0.1), "canoe": (0.03, 0.05),
                 "rowboat": (0.06, 0.09)}, (0.05, 0.08)) * length
    draft = _by_kind(rng, kind, {"ship": (0.04, 0.07)}, (0.03, 0.06)) * length
    transom = 0.0 if kind == "canoe" else rng.uniform(0.4, 0.85)
    outline = _hull_outline(length, beam, transom, rng.uniform(-0.15, 0.05) * length, rng.uniform(1.4, 2.2))
    sheer = rng.uniform(0.0, 0.04) * length
    deck = np.stack([outline[:, 0], outline[:, 1],
                     freeboard + sheer * ((outline[:, 0] + length / 2) / length) ** 2], 1)
    keel_scale = rng.uniform(0.15, 0.4) if kind != "ship" else rng.uniform(0.6, 0.8)
    rake = rng.uniform(0.05, 0.15) * length  # the bow stem slopes back toward the keel
    keel = np.stack([(outline[:, 0] + length / 2) * (1 - rake / length) - length / 2,
                     outline[:, 1] * keel_scale, np.full(len(outline), -draft)], 1)
    if kind == "canoe":  # both ends raked
        keel[:, 0] = outline[:, 0] * (1 - 2 * rake / length)
    b.loft(deck, keel)

    if kind == "sail":
        b.box((-0.05 * length, 0, -draft - 0.08 * length), (0.12 * length, 0.01, 0.16 * length))  # fin keel
        b.box((-0.45 * length, 0, -draft * 0.8), (0.05 * length, 0.01, 0.08 * length))  # rudder
        masts = 2 if _chance(rng, 0.25) else 1
        mast_x = rng.uniform(0.0, 0.15) * length
        mast_h = rng.uniform(1.0, 1.4) * length
        for m in range(masts):
            x = mast_x - m * 0.45 * length
            h = mast_h * (1.0 - 0.3 * m)
            b.cylinder((x, 0, freeboard), (x, 0, freeboard + h), 0.008 * length, segs=6)
            boom = rng.uniform(0.3, 0.45) * length * (1 - 0.3 * m)
            z0 = freeboard + 0.08 * length
            b.loft([(x - 0.01, -0.003, z0), (x - 0.01, -0.003, freeboard + h * 0.95),
                    (x - boom, -0.003, z0)],
                   [(x - 0.01, 0.003, z0), (x - 0.01, 0.003, freeboard + h * 0.95), (x - boom, 0.003, z0)])
            if m == 0 and _chance(rng, 0.7):  # jib from the bow to the mast
                bow = length / 2 - 0.02
                b.loft([(x + 0.02, -0.003, freeboard + h * 0.8), (x + 0.02, -0.003, z0), (bow, -0.003, z0)],
                       [(x + 0.02, 0.003, freeboard + h * 0.8), (x + 0.02, 0.003, z0), (bow, 0.003, z0)])
        if _chance(rng, 0.5):
            b.box((-0.1 * length, 0, freeboard + 0.03 * length), (0.25 * length, beam * 0.5, 0.06 * length))
    elif kind == "motor":
        tiers = int(rng.integers(1, 4))
        x_front = rng.uniform(0.05, 0.2) * length
        x_back = -rng.uniform(0.3, 0.42) * length
        z = freeboard
        for t in range(tiers):
            h = rng.uniform(0.06, 0.1) * length
            w = beam * (0.75 - 0.12 * t)
            # Each tier is a wedge with a raked front, set back from the one below.
            rake_x = h * rng.uniform(0.5, 1.2)
            b.prism([(x_back, z), (x_front, z), (x_front - rake_x, z + h), (x_back, z + h)], -w / 2, w / 2)
            x_front -= rake_x + rng.uniform(0.02, 0.1) * length
            x_back += rng.uniform(0.0, 0.08) * length
            z += h
            if x_front - x_back < 0.1 * length:
                break
        if _chance(rng, 0.5):
            b.cylinder(((x_front + x_back) / 2, 0, z), ((x_front + x_back) / 2, 0, z + 0.06 * length),
                       0.006 * length, segs=6)
    elif kind == "ship":
        cargo = _chance(rng, 0.5)
        house_x = -rng.uniform(0.25, 0.38) * length if cargo else rng.uniform(-0.1, 0.05) * length
        house_len = rng.uniform(0.08, 0.14) * length if cargo else rng.uniform(0.35, 0.5) * length
        decks = int(rng.integers(2, 5))
        z = freeboard
        for t in range(decks):
            h = 0.035 * length
            w = beam * (0.9 - 0.08 * t)
            span = house_len * (1 - 0.12 * t)
            b.box((house_x - t * 0.005, 0, z + h / 2), (span, w, h))
            z += h
        funnels = 1 if cargo else int(rng.integers(1, 4))
        spots = np.linspace(-0.3, 0.3, funnels) if funnels > 1 else [-0.2]
        for fx in house_x + house_len * np.asarray(spots):
            b.cylinder((fx, 0, z), (fx - 0.01 * length, 0, z + rng.uniform(0.05, 0.09) * length),
                       0.018 * length, segs=10, ry=0.013 * length)
        if cargo:  # container stacks ahead of the bridge
            rows = int(rng.integers(3, 8))
            stack_x0, stack_x1 = house_x + house_len / 2 + 0.02 * length, 0.3 * length
            cell = (stack_x1 - stack_x0) / rows
            for r in range(rows):
                hgt = rng.uniform(0.02, 0.06) * length
                b.box((stack_x0 + cell * (r + 0.5), 0, freeboard + hgt / 2), (cell * 0.9, beam * 0.8, hgt))
    else:  # open boats: thwarts, and oars for rowboats
        seats = int(rng.integers(1, 4))
        for k in range(seats):
            x = -0.3 * length + 0.6 * length * (k + 0.5) / seats
            b.box((x, 0, freeboard + 0.005), (0.05 * length, beam * 0.8, 0.01))
        if kind == "rowboat" and _chance(rng, 0.6):
            for side in (-1, 1):
                b.cylinder((0.0, side * beam * 0.3, freeboard + 0.01),
                           (-0.25 * length, side * beam * 1.3, -0.01), 0.008 * length, segs=6)


def _motorcycle(rng: np.random.Generator, b: _Builder) -> None:
    kind = _pick(rng, ("sport", "cruiser", "dirt", "scooter", "standard"), (2.5, 2, 2, 1.5, 2))
    r_front = _by_kind(rng, kind, {"cruiser": (0.32, 0.36), "dirt": (0.36, 0.4),
               "scooter": (0.17, 0.22)}, (0.29, 0.32))
    r_rear = _by_kind(rng, kind, {"cruiser": (0.3, 0.33), "dirt": (0.33, 0.37)}, (r_front, r_front))
    tyre = {"dirt": 0.16, "cruiser": 0.22, "scooter": 0.3}.get(kind, 0.25) * rng.uniform(0.85, 1.15)
    wheelbase = _by_kind(rng, kind, {"cruiser": (1.55, 1.75), "scooter": (1.2, 1.35)}, (1.35, 1.5))
    rake = _by_kind(rng, kind, {"cruiser": (0.5, 0.62)}, (0.4, 0.5))
    xf, xr = wheelbase / 2, -wheelbase / 2
    for x, r in ((xf, r_front), (xr, r_rear)):
        b.torus((x, 0, r), r * (1 - tyre), r * tyre, "y")
        if kind in ("dirt", "cruiser") and _chance(rng, 0.7):  # spoked: hub and thin spokes
            b.disc((x, 0, r), r * 0.15, 0.1, "y", segs=8)
            for k in range(8):
                a = k * math.pi / 4
                b.beam((x, 0, r), (x + r * (1 - 2 * tyre) * math.cos(a), 0, r + r * (1 - 2 * tyre) * math.sin(a)),
                       0.01)
        else:
            b.disc((x, 0, r), r * (1 - 1.5 * tyre), 0.06, "y", segs=12)

    # Fork: two tubes from the front axle up along the steering axis, which leans back by the rake.
    steer = np.array([-math.sin(rake), 0.0, math.cos(rake)])
    head_z = _by_kind(rng, kind, {"dirt": (0.95, 1.05), "scooter": (0.85, 0.95),
              "cruiser": (0.8, 0.9)}, (0.85, 0.95))
    head = np.array([xf, 0.0, r_front]) + steer * (head_z - r_front) / steer[2]
    for side in (-1, 1):
        b.cylinder((xf, side * 0.07, r_front), head + (0, side * 0.07, 0), 0.022, segs=6)
    bar_rise = _by_kind(rng, kind, {"cruiser": (0.1, 0.35), "dirt": (0.1, 0.18),
                "sport": (-0.02, 0.04)}, (0.08, 0.15))
    bar_half = _by_kind(rng, kind, {"cruiser": (0.38, 0.45), "sport": (0.3, 0.34)}, (0.35, 0.42))
    bar = head + steer * bar_rise
    b.cylinder(head, bar, 0.018, segs=6)
    b.cylinder(bar + (-0.08, -bar_half, 0), bar + (0, 0, 0), 0.013, segs=6)
    b.cylinder(bar + (-0.08, bar_half, 0), bar + (0, 0, 0), 0.013, segs=6)

    pivot = np.array([xr + wheelbase * 0.3, 0, r_rear + 0.05])
    for side in (-1, 1):  # swingarm
        b.beam((xr, side * 0.08, r_rear), pivot + (0, side * 0.08, 0), 0.04)

    if kind == "scooter":
        floor_z = rng.uniform(0.22, 0.3)
        b.box((0.0, 0, floor_z), (wheelbase * 0.55, 0.35, 0.05))
        b.loft([(xf - 0.12, -0.2, floor_z), (xf - 0.12, 0.2, floor_z), (head[0] - 0.05, 0.12, head_z),
                (head[0] - 0.05, -0.12, head_z)],
               [(xf - 0.2, -0.2, floor_z), (xf - 0.2, 0.2, floor_z), (head[0] - 0.12, 0.12, head_z),
                (head[0] - 0.12, -0.12, head_z)])
        body_len = rng.uniform(0.6, 0.75)
        b.sphere((xr + 0.15, 0, r_rear + 0.2), (body_len / 2, 0.2, rng.uniform(0.2, 0.28)))
        seat_z = r_rear + rng.uniform(0.42, 0.5)
        b.box((xr + 0.25, 0, seat_z), (rng.uniform(0.5, 0.65), 0.28, 0.08))
        b.sphere(head + (0.08, 0, -0.05), 0.06)
        return

    # Engine between the wheels, fuel tank behind the steering head, seat behind the tank.
    eng_x = rng.uniform(-0.1, 0.08)
    eng_z = r_rear * rng.uniform(0.9, 1.2)
    eng = (rng.uniform(0.35, 0.5), rng.uniform(0.25, 0.32), rng.uniform(0.28, 0.38))
    b.box((eng_x, 0, eng_z), eng)
    if kind == "cruiser":  # V-twin cylinders
        for a in (-0.45, 0.45):
            top = (eng_x + 0.25 * math.sin(a), 0, eng_z + eng[2] / 2 + 0.2 * math.cos(a))
            b.cylinder((eng_x, 0, eng_z + eng[2] / 2 - 0.05), top, 0.06, 0.055, segs=8)
    tank_len = rng.uniform(0.4, 0.55)
    tank_x = head[0] - 0.05 - tank_len / 2
    tank_z = head_z - rng.uniform(0.0, 0.08)
    b.sphere((tank_x, 0, tank_z), (tank_len / 2, rng.uniform(0.13, 0.18), rng.uniform(0.09, 0.13)))
    b.beam(head, (tank_x - tank_len / 2, 0, tank_z - 0.05), 0.05)  # top tube
    b.beam(head, (eng_x + eng[0] / 2, 0, eng_z), 0.05)  # down tube
    seat_front = tank_x - tank_len / 2 + 0.05
    seat_z = _by_kind(rng, kind, {"cruiser": (0.62, 0.7), "dirt": (0.85, 0.95),
              "sport": (0.78, 0.85)}, (0.76, 0.82))
    seat_back = xr + rng.uniform(0.0, 0.15)
    b.prism([(seat_back, seat_z - 0.1), (seat_front, seat_z - 0.1), (seat_front - 0.05, seat_z),
             (seat_back + 0.03, seat_z + (0.06 if kind == "sport" else 0.0))], -0.14, 0.14)
    if kind == "sport":  # tail cowl rising to the rear, and a fairing with a screen
        b.prism([(xr - 0.05, seat_z + 0.05), (seat_back + 0.25, seat_z - 0.12), (seat_back + 0.3, seat_z),
                 (xr - 0.05, seat_z + 0.12)], -0.1, 0.1)
        nose = head + (0.28, 0, -0.12)
        b.loft([nose + (0, -0.06, -0.05), nose + (0, 0.06, -0.05), nose + (0, 0.05, 0.05),
                nose + (0, -0.05, 0.05)],
               [(head[0] - 0.15, -0.22, 0.45), (head[0] - 0.15, 0.22, 0.45),
                (head[0] - 0.1, 0.16, head_z + rng.uniform(0.1, 0.2)),
                (head[0] - 0.1, -0.16, head_z + rng.uniform(0.1, 0.2))])
    else:
        b.sphere(head + (0.1, 0, -0.02), (0.06, rng.uniform(0.07, 0.1), rng.uniform(0.07, 0.1)))
    if kind == "dirt":  # high front fender and a flat rear fender
        b.beam(head + (0.05, 0, -0.25), head + (0.4, 0, -0.3), 0.1, 0.02)
        b.beam((seat_back, 0, seat_z - 0.05), (xr - 0.2, 0, seat_z + 0.05), 0.12, 0.02)
    elif kind in ("cruiser", "standard"):  # fenders hugging the wheels
        _arc(b, (xf, r_front), r_front * 1.1, math.pi * 0.15, math.pi * 0.75, 4, 0.12, 0.015)
        _arc(b, (xr, r_rear), r_rear * 1.1, math.pi * 0.3, math.pi * 0.95, 4, 0.14, 0.015)
        if kind == "cruiser" and _chance(rng, 0.4):  # sissy bar behind the pillion
            b.beam((xr + 0.05, 0, seat_z - 0.05), (xr - 0.02, 0, seat_z + 0.35), 0.18, 0.03)
    pipes = 2 if kind == "cruiser" else 1
    for k in range(pipes):
        z = eng_z - eng[2] / 2 + 0.05 + k * 0.08
        tail = (xr - 0.15, 0.17, z + (0.35 if kind == "dirt" else 0.1 + 0.05 * k))
        b.cylinder((eng_x + eng[0] / 2, 0.17, z), tail, 0.04, 0.045, segs=8)


_PROGRAMS: tuple[Callable[[np.random.Generator, _Builder], None], ...] = (
    _airplane, _bench, _cabinet, _car, _chair, _lamp, _sofa, _table, _watercraft, _motorcycle)
assert [p.__name__[1:] for p in _PROGRAMS] == list(CLASSES)


# ---------------------------------------------------------------------------------------------------
# Public API.


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
    builder = _Builder()
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
    """Per-axis scale factors (3,) of the paper's shape warp (PAPER.md §1.1).

    Each axis gets 1 + std·N(0, 1); the mean of the three noise terms is removed (so the object's
    overall size is kept) and the factors are clipped to [0.5, 1.5]. Apply to an object's local axes.
    """
    if not (isinstance(std, (int, float)) and math.isfinite(std) and std >= 0):
        raise UserError(f"warp std must be a finite number >= 0, got {std!r}")
    noise = std * rng.standard_normal(3)
    return np.clip(1.0 + noise - noise.mean(), 0.5, 1.5)
