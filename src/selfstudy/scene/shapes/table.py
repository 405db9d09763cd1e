"""Tables: dining, coffee, bar and desk; rectangular, round or oval tops; legs, pedestal, trestles or drawers."""

from __future__ import annotations

import math

import numpy as np

from selfstudy.scene.shapes.primitives import Builder, I3, by_kind, chance, frustum_prim, pick


def build(rng: np.random.Generator, b: Builder) -> None:
    kind = pick(rng, ("dining", "coffee", "bar", "desk"), (4, 2.5, 1.5, 1.5))
    height = by_kind(rng, kind, {"dining": (0.7, 0.78), "coffee": (0.36, 0.48),
              "bar": (0.95, 1.08), "desk": (0.72, 0.78)})
    shape = pick(rng, ("rect", "round", "oval"), (1, 4, 0.5) if kind == "bar" else (4, 1.5, 0.7)
                 if kind != "desk" else (1, 0, 0))
    if kind == "bar":
        span = rng.uniform(0.5, 0.8)
        depth = span
    else:
        span = by_kind(rng, kind, {"dining": (1.1, 2.2), "coffee": (0.8, 1.4),
                "desk": (1.1, 1.7)})
        depth = by_kind(rng, kind, {"dining": (0.7, 1.0), "coffee": (0.45, 0.8),
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
        b.place(frustum_prim(24, 1.0), (depth / 2, span / 2, top_t), I3, (0, 0, under))

    support = {"dining": pick(rng, ("legs", "pedestal", "trestle"), (5, 2.5, 2)),
               "coffee": pick(rng, ("legs", "trestle", "pedestal"), (5, 2, 1)),
               "bar": pick(rng, ("pedestal", "legs"), (4, 1)),
               "desk": pick(rng, ("legs", "drawers", "trestle"), (4, 3, 2))}[kind]
    if shape != "rect" and support in ("trestle", "drawers"):
        support = "legs"
    leg_t = rng.uniform(0.03, 0.07)
    if support == "legs":
        if shape == "rect":
            inset = leg_t / 2 + rng.uniform(0.0, 0.08)
            spots = [(sx * (depth / 2 - inset), sy * (span / 2 - inset)) for sx in (-1, 1) for sy in (-1, 1)]
            if span > 1.8 and chance(rng, 0.5):  # long tables get a middle pair
                spots += [(sx * (depth / 2 - inset), 0.0) for sx in (-1, 1)]
        else:
            count = 3 if chance(rng, 0.35) else 4
            spin = rng.uniform(0, math.pi)
            spots = [(0.38 * depth * math.cos(spin + 2 * math.pi * k / count),
                      0.38 * span * math.sin(spin + 2 * math.pi * k / count)) for k in range(count)]
        square = chance(rng, 0.5)
        splay = rng.uniform(0.0, 0.06) if chance(rng, 0.4) else 0.0
        for x, y in spots:
            bot = (x + math.copysign(splay, x), y + math.copysign(splay, y), 0.0)
            if square:
                b.beam(bot, (x, y, under), leg_t)
            else:
                b.cylinder(bot, (x, y, under), leg_t / 2 * rng.uniform(0.5, 1.0), leg_t / 2, segs=8)
        if shape == "rect" and chance(rng, 0.5):  # apron under the top
            apron = rng.uniform(0.06, 0.12)
            xs, ys = depth / 2 - inset, span / 2 - inset
            b.box((xs, 0, under - apron / 2), (0.02, 2 * ys, apron))
            b.box((-xs, 0, under - apron / 2), (0.02, 2 * ys, apron))
            b.box((0, ys, under - apron / 2), (2 * xs, 0.02, apron))
            b.box((0, -ys, under - apron / 2), (2 * xs, 0.02, apron))
        if chance(rng, 0.35 if kind == "coffee" else 0.2):  # lower shelf
            z = rng.uniform(0.08, 0.3) * height
            if shape == "rect":
                b.box((0, 0, z), (depth - 2 * inset, span - 2 * inset, 0.02))
            else:
                b.place(frustum_prim(16, 1.0), (0.4 * depth, 0.4 * span, 0.02), I3, (0, 0, z))
    elif support == "pedestal":
        double = shape != "round" and span > 1.5 and chance(rng, 0.6)
        ys = (-span / 3, span / 3) if double else (0.0,)
        col_r = rng.uniform(0.035, 0.09)
        foot = pick(rng, ("disc", "cross", "bar"), (2, 2, 1 if double else 0))
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
        if support == "trestle" and chance(rng, 0.7):
            y = span / 2 - inset
            b.beam((0, -y, under * 0.35), (0, y, under * 0.35), 0.05)
