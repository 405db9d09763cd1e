"""Chairs: on four or three legs, an office pedestal or a sled frame; square or round seats."""

from __future__ import annotations

import math

import numpy as np

from selfstudy.scene.shapes.primitives import Builder, I3, arr, chance, frustum_prim, pick, rotation


def build(rng: np.random.Generator, b: Builder) -> None:
    base = pick(rng, ("legs", "pedestal", "sled", "legs3"), (5, 2.5, 1.5, 0.8))
    seat_w, seat_d = rng.uniform(0.4, 0.56), rng.uniform(0.38, 0.52)
    seat_h = rng.uniform(0.4, 0.5)
    seat_t = rng.uniform(0.06, 0.1) if base == "pedestal" else rng.uniform(0.025, 0.07)
    round_seat = base != "sled" and chance(rng, 0.2)
    if round_seat:
        b.place(frustum_prim(20, 1.0), (seat_d / 2, seat_w / 2, seat_t), I3, (0, 0, seat_h - seat_t))
    else:
        b.box((0, 0, seat_h - seat_t / 2), (seat_d, seat_w, seat_t))
    under = seat_h - seat_t

    if base in ("legs", "legs3"):
        leg_t = rng.uniform(0.022, 0.045)
        square = chance(rng, 0.5)
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
        if base == "legs" and chance(rng, 0.45):  # stretchers between the legs
            t = rng.uniform(0.25, 0.45)
            at = [np.add(bot, np.multiply(t, np.subtract(top, bot))) for bot, top in feet]
            for i, j in ((0, 2), (1, 3)) + (((0, 1),) if chance(rng, 0.5) else ()):
                b.beam(at[i], at[j], leg_t * 0.6)
    elif base == "pedestal":
        b.cylinder((0, 0, 0.06), (0, 0, under), rng.uniform(0.02, 0.035), segs=10)
        b.cylinder((0, 0, 0.06), (0, 0, under * 0.55), rng.uniform(0.035, 0.05), segs=10)
        if chance(rng, 0.75):  # star base on casters
            arms = 5 if chance(rng, 0.75) else 4
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
    rot = rotation(1, -tilt)
    back_t = rng.uniform(0.02, 0.05)
    back_h = rng.uniform(0.3, 0.55) * (1.4 if base == "pedestal" and chance(rng, 0.3) else 1.0)
    back_w = seat_w * rng.uniform(0.75, 1.0)
    gap = rng.uniform(0.05, 0.12) if base == "pedestal" else rng.uniform(0.0, 0.1)
    back_x = -seat_d / 2 + back_t / 2
    if round_seat and base != "pedestal":  # a narrower back set in, so it stands on the rounded edge
        back_w, gap, back_x = seat_w * rng.uniform(0.55, 0.7), 0.0, -seat_d * 0.4 + back_t / 2
    origin = np.array([back_x, 0.0, seat_h])

    def back(local):
        return origin + rot @ arr(local)

    style = "panel" if base == "pedestal" else pick(rng, ("panel", "slats", "rails"), (2, 1.3, 1))
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

    if chance(rng, 0.5 if base == "pedestal" else 0.0 if round_seat else 0.3):  # armrests
        arm_h = seat_h + rng.uniform(0.17, 0.26)
        arm_w = rng.uniform(0.035, 0.07)
        arm_len = seat_d * rng.uniform(0.6, 0.95)
        x0 = -seat_d / 2
        for side in (-1, 1):
            y = side * (seat_w / 2 + (arm_w / 2 if base == "pedestal" else -arm_w / 2))
            b.box((x0 + arm_len / 2, y, arm_h), (arm_len, arm_w, 0.035))
            x_post = x0 + arm_len * (0.5 if base == "pedestal" else 0.85)
            b.beam((x_post, y, under if base == "pedestal" else seat_h), (x_post, y, arm_h), arm_w * 0.6)
