"""Lamps: floor, table, desk and arc lamps with five kinds of shade."""

from __future__ import annotations

import math

import numpy as np

from selfstudy.scene.shapes.primitives import Builder, arc, arr, by_kind, chance, frame_z, pick


def build(rng: np.random.Generator, b: Builder) -> None:
    kind = pick(rng, ("floor", "table", "desk", "arc"), (3, 3, 3, 1.5))
    shade_kind = pick(rng, ("drum", "empire", "cone", "dome", "globe"),
                      (1, 2, 3, 2, 0.5) if kind in ("desk", "arc") else (3, 3, 0.5, 0.5, 1))

    def shade(top, down=np.array([0.0, 0, -1]), size=1.0):
        """A shade hanging from ``top`` along ``down``; returns the bulb point."""
        top = arr(top)
        if shade_kind == "globe":
            r = size * rng.uniform(0.1, 0.16)
            b.sphere(top + down * r, r)
            return top + down * r
        h = size * rng.uniform(0.18, 0.32)
        r_low = size * rng.uniform(0.12, 0.22)
        if shade_kind == "dome":
            b.sphere(top + down * h * 0.35, (r_low, r_low, h * 0.6), frame_z(down))
            return top + down * h
        narrowing = by_kind(rng, shade_kind, {"drum": (0.9, 1.0), "empire": (0.5, 0.75), "cone": (0.05, 0.25)})
        b.cylinder(top + down * h, top, r_low, r_low * narrowing, segs=16)
        return top + down * h

    if kind in ("floor", "table"):
        height = rng.uniform(1.3, 1.8) if kind == "floor" else rng.uniform(0.4, 0.7)
        base_r = (rng.uniform(0.12, 0.2) if kind == "floor" else rng.uniform(0.07, 0.13))
        if kind == "floor":
            if chance(rng, 0.3):  # tripod
                for k in range(3):
                    a = 2 * math.pi * k / 3
                    b.cylinder((base_r * 1.5 * math.cos(a), base_r * 1.5 * math.sin(a), 0),
                               (0, 0, height * 0.4), 0.012, segs=6)
            else:
                b.cylinder((0, 0, 0), (0, 0, 0.03), base_r, base_r * 0.9, segs=16)
            b.cylinder((0, 0, 0), (0, 0, height), rng.uniform(0.01, 0.02), segs=8)
            size = 1.0
        else:
            body = pick(rng, ("vase", "column", "stack", "cone"), (3, 2, 1, 1))
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
        if kind == "floor" and chance(rng, 0.25):  # torchiere: a bowl opening upward
            r = rng.uniform(0.15, 0.25)
            b.cylinder((0, 0, height), (0, 0, height + r * 0.6), r * 0.25, r, segs=16)
        else:
            shade(top, size=size)
    else:
        # An articulated desk lamp or an arc floor lamp, both reaching toward +x.
        if kind == "desk":
            if chance(rng, 0.5):
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
            down = arr((rng.uniform(0.2, 0.8), 0, -1.0))
            shade(p, down / np.linalg.norm(down), size=rng.uniform(0.35, 0.5))
        else:
            height = rng.uniform(1.5, 2.0)
            reach = rng.uniform(0.8, 1.3)
            if chance(rng, 0.5):
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
