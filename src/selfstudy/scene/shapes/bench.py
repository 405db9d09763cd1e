"""Benches: on legs, slabs, A-frames or a frame; solid or slatted seats, with or without a back."""

from __future__ import annotations

import numpy as np

from selfstudy.scene.shapes.primitives import Builder, arr, chance, pick, rotation


def build(rng: np.random.Generator, b: Builder) -> None:
    span = rng.uniform(0.9, 2.2)
    depth = rng.uniform(0.3, 0.5)
    seat_h = rng.uniform(0.4, 0.48)
    seat_t = rng.uniform(0.03, 0.08)
    has_back = chance(rng, 0.5)
    support = pick(rng, ("legs", "slabs", "aframe", "frame"), (3, 2.5, 1.5, 1.5))
    under = seat_h - seat_t
    if chance(rng, 0.45):  # slatted seat: boards along the bench
        boards = int(rng.integers(3, 7))
        board_d = depth / boards * rng.uniform(0.6, 0.85)
        for k in range(boards):
            b.box((-depth / 2 + depth * (k + 0.5) / boards, 0, seat_h - seat_t / 2), (board_d, span, seat_t))
    else:
        b.box((0, 0, seat_h - seat_t / 2), (depth, span, seat_t))

    inset = rng.uniform(0.05, 0.2) * span / 2
    end_ys = [-(span / 2 - inset), span / 2 - inset]
    if support == "legs" and span > 1.6 and chance(rng, 0.6):
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
    if support in ("legs", "aframe") and chance(rng, 0.5):  # long stretcher
        b.beam((0, end_ys[0], under * 0.4), (0, end_ys[-1], under * 0.4), 0.04)

    if has_back:
        back_h = rng.uniform(0.3, 0.5)
        tilt = rng.uniform(0.05, 0.3)
        rot = rotation(1, -tilt)
        origin = np.array([-depth / 2 + 0.02, 0.0, seat_h])
        gap = rng.uniform(0.03, 0.12)
        for y in end_ys:
            b.box(origin + rot @ arr((0, y, back_h / 2)), (0.04, 0.05, back_h), rot)
        if chance(rng, 0.5):
            rails = int(rng.integers(2, 5))
            rail_h = (back_h - gap) / rails * rng.uniform(0.5, 0.8)
            for k in range(rails):
                z = gap + (back_h - gap) * (k + 0.5) / rails
                b.box(origin + rot @ arr((0.0, 0, z)), (0.025, span * 0.98, rail_h), rot)
        else:
            b.box(origin + rot @ arr((0.0, 0, gap + (back_h - gap) / 2)), (0.03, span * 0.98, back_h - gap), rot)
        if chance(rng, 0.5):  # armrests at both ends
            arm_h = seat_h + rng.uniform(0.15, 0.25)
            for y in (-span / 2 + 0.03, span / 2 - 0.03):
                b.box((0, y, arm_h), (depth, 0.06, 0.04))
                b.beam((depth / 2 - 0.05, y, seat_h), (depth / 2 - 0.05, y, arm_h), 0.04)
