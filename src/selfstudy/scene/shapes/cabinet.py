"""Cabinets: tall, wide and small; on a plinth, legs or feet; doors, drawers or open shelves."""

from __future__ import annotations

import numpy as np

from selfstudy.scene.shapes.primitives import Builder, by_kind, chance, pick


def build(rng: np.random.Generator, b: Builder) -> None:
    kind = pick(rng, ("tall", "wide", "small"), (3, 3, 2))
    width = by_kind(rng, kind, {"tall": (0.45, 1.0), "wide": (1.0, 2.0), "small": (0.4, 0.6)})
    height = by_kind(rng, kind, {"tall": (1.2, 2.0), "wide": (0.6, 0.95), "small": (0.45, 0.7)})
    depth = rng.uniform(0.32, 0.6)
    base = pick(rng, ("plinth", "legs", "none", "feet"), (3, 3, 2, 1.5))
    base_h = by_kind(rng, base, {"plinth": (0.05, 0.12), "legs": (0.1, 0.28), "none": (0.0, 0.0),
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
    open_shelves = kind != "small" and chance(rng, 0.25)
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
    if chance(rng, 0.45):  # a top slab overhanging the body
        over = rng.uniform(0.01, 0.04)
        b.box((over / 2, 0, height + 0.015), (depth + over, width + 2 * over, 0.03))
    if open_shelves:
        return

    # Front: columns, each of doors or a stack of drawers, with handles sticking out toward +x.
    columns = 1 if width < 0.7 else int(rng.integers(1, 4 if width > 1.3 else 3))
    gap = 0.008
    col_w = width / columns
    knob = chance(rng, 0.5)
    for c in range(columns):
        yc = -width / 2 + col_w * (c + 0.5)
        layout = pick(rng, ("doors", "drawers", "mixed"), (3, 2, 2))
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
