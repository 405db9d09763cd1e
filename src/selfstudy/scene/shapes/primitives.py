"""The building blocks of the class programs: unit primitives placed by affine transforms, the
:class:`Builder` that collects placed parts into one :class:`Mesh`, and the random draws the programs share.

Units are metres and axes the canonical object frame (+z up, front toward +x) until
:meth:`Builder.finish` centres the mesh and scales its largest side to 1.0. The curved primitives are
built once per resolution (``lru_cache``), so a model costs about half a millisecond.
"""

from __future__ import annotations

import bisect
import functools
import math
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np

__all__ = ["I3", "Builder", "Mesh", "Prim", "arc", "arr", "box_prim", "by_kind", "chance", "frame_z",
           "frustum_prim", "pick", "rotation", "sphere_prim", "torus_prim"]



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


class Prim(NamedTuple):
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
def box_prim() -> Prim:
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
    return Prim(v, n, _outward(v, np.array(f), np.zeros(3)))


@functools.lru_cache(maxsize=None)
def frustum_prim(segs: int, top: float) -> Prim:
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
    return Prim(v, np.concatenate(n), _outward(v, f, np.array([0.0, 0.0, 0.5])))


@functools.lru_cache(maxsize=None)
def sphere_prim(stacks: int = 7, slices: int = 12) -> Prim:
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
    return Prim(v, v.copy(), _outward(v, f, np.zeros(3)))


@functools.lru_cache(maxsize=None)
def torus_prim(minor: float, major_segs: int = 16, minor_segs: int = 8) -> Prim:
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
    return Prim(v, normal.reshape(-1, 3), _outward(v, f, inside))


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


def rotation(axis: int, angle: float) -> np.ndarray:
    """Right-handed rotation by ``angle`` radians about coordinate axis 0/1/2 (x/y/z). (3, 3)."""
    c, s = math.cos(angle), math.sin(angle)
    u, w = (axis + 1) % 3, (axis + 2) % 3
    r = np.eye(3)
    r[u, u], r[u, w], r[w, u], r[w, w] = c, -s, s, c
    return r


def frame_z(d) -> np.ndarray:
    """A rotation (3, 3) taking +z to the direction of ``d`` and +y to the part of +y across it.

    So a part's local y stays "sideways" in the object (and a vertical axis gives the identity);
    when ``d`` is along y, local y goes to +x instead.
    """
    w = arr(d) / np.linalg.norm(d)
    across = np.array([0.0, 1.0, 0.0]) if abs(w[1]) < 0.99 else np.array([1.0, 0.0, 0.0])
    a = across - (across @ w) * w
    a /= np.linalg.norm(a)
    return np.stack([np.cross(a, w), a, w], 1)


I3 = np.eye(3)
_AXES = {"x": np.array([1.0, 0, 0]), "y": np.array([0, 1.0, 0]), "z": np.array([0, 0, 1.0])}


def arr(p) -> np.ndarray:
    return np.asarray(p, dtype=np.float64)


class Builder:
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

    def place(self, prim: Prim, scale, rot: np.ndarray, origin) -> None:
        """Add ``prim`` scaled per local axis, then rotated, then moved to ``origin``."""
        scale = arr(scale)
        v = (prim.v * scale) @ rot.T + arr(origin)
        # Normals transform by the inverse transpose: for rot @ diag(scale) that is rot @ diag(1/scale).
        n = (prim.n / scale) @ rot.T
        n /= np.linalg.norm(n, axis=1, keepdims=True)
        self._append(v, n, prim.f if np.prod(scale) > 0 else prim.f[:, ::-1])

    def box(self, centre, size, rot: np.ndarray = I3) -> None:
        """Box of ``size`` (3,) along its local axes, rotated by ``rot`` about ``centre``."""
        self.place(box_prim(), size, rot, centre)

    def beam(self, p0, p1, width: float, thick: float | None = None) -> None:
        """Box from point ``p0`` to ``p1``: ``width`` across the object (along y, or x for beams
        along y), ``thick`` (default ``width``) along the remaining direction."""
        p0, p1 = arr(p0), arr(p1)
        d = p1 - p0
        self.place(box_prim(), (thick or width, width, np.linalg.norm(d)), frame_z(d), (p0 + p1) / 2)

    def cylinder(self, p0, p1, r0: float, r1: float | None = None, segs: int = 12,
                 ry: float | None = None) -> None:
        """Frustum from ``p0`` (radius ``r0``) to ``p1`` (radius ``r1``, default ``r0``).

        ``ry`` makes the cross-section elliptic: the radius across the object (see :meth:`beam`).
        """
        p0, p1 = arr(p0), arr(p1)
        r1 = r0 if r1 is None else r1
        if r1 > r0:  # the unit frustum narrows upward; flip ends instead of caching widening ones
            p0, p1, r0, r1 = p1, p0, r1, r0
            ry = None if ry is None else ry * r0 / r1
        top = round(20 * r1 / r0) / 20  # quantised so the primitive cache stays small
        d = p1 - p0
        ry_scale = r0 if ry is None else ry
        self.place(frustum_prim(segs, top), (r0, ry_scale, np.linalg.norm(d)), frame_z(d), p0)

    def disc(self, centre, radius: float, thickness: float, axis: str = "y", segs: int = 16) -> None:
        """Short cylinder (a wheel, a base plate) centred at ``centre`` along a coordinate axis."""
        half = _AXES[axis] * thickness / 2
        self.cylinder(arr(centre) - half, arr(centre) + half, radius, segs=segs)

    def sphere(self, centre, radii, rot: np.ndarray = I3) -> None:
        """Ellipsoid with semi-axes ``radii`` (3,) along its local axes."""
        radii = np.broadcast_to(arr(radii), (3,))
        self.place(sphere_prim(), radii, rot, centre)

    def torus(self, centre, major: float, minor: float, axis: str = "y") -> None:
        """Torus around a coordinate axis: tube circle radius ``major``, tube radius ``minor``."""
        ratio = max(0.05, min(0.6, round(20 * minor / major) / 20))
        self.place(torus_prim(ratio), (major, major, major), frame_z(_AXES[axis]), centre)

    def loft(self, ring0, ring1) -> None:
        """Flat-shaded solid spanned by two convex rings of matching points ((n, 3) each).

        Covers prisms, wedges, wings, hulls and sails. Zero-area triangles are dropped.
        """
        pts = np.concatenate([arr(ring0), arr(ring1)])
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
        xz = arr(xz)
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


def pick(rng: np.random.Generator, options: Sequence, weights: Sequence[float]):
    """One of ``options`` with the given relative weights (cheaper than ``rng.choice(p=...)``)."""
    cum = list(np.cumsum(weights))
    return options[bisect.bisect_right(cum, rng.random() * cum[-1])]


def by_kind(rng: np.random.Generator, kind: str, ranges: dict[str, tuple[float, float]],
            default: tuple[float, float] | None = None) -> float:
    """A uniform draw from the (low, high) range listed for ``kind``, else from ``default``."""
    low, high = ranges.get(kind, default)
    return float(rng.uniform(low, high))


def chance(rng: np.random.Generator, p: float) -> bool:
    return bool(rng.random() < p)


def arc(b: Builder, centre, radius: float, a0: float, a1: float, pieces: int, width: float,
        thick: float, y: float = 0.0) -> None:
    """Beams along a circular arc in the xz plane (angles in radians from +x, counter-clockwise
    toward +z): fenders, bent lamp arms."""
    cx, cz = centre
    angles = np.linspace(a0, a1, pieces + 1)
    pts = [(cx + radius * math.cos(a), y, cz + radius * math.sin(a)) for a in angles]
    for p, q in zip(pts[:-1], pts[1:]):
        b.beam(p, q, width, thick)

