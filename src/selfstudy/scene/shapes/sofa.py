"""Sofas: one to four seats; box, rolled, thin or no arms; on legs or standing on the floor."""

from __future__ import annotations

import numpy as np

from selfstudy.scene.shapes.primitives import Builder, by_kind, chance, pick, rotation


def build(rng: np.random.Generator, b: Builder) -> None:
    seats = pick(rng, (1, 2, 3, 4), (1.5, 3, 3.5, 1))
    seat_w = rng.uniform(0.55, 0.75)
    arm_style = pick(rng, ("box", "rolled", "thin", "none"), (3, 2, 2, 1))
    arm_w = by_kind(rng, arm_style, {"box": (0.15, 0.28), "rolled": (0.15, 0.25), "thin": (0.06, 0.12),
                                     "none": (0.0, 0.0)})
    width = seats * seat_w + 2 * arm_w
    depth = rng.uniform(0.8, 1.0)
    legs = chance(rng, 0.55)
    leg_h = rng.uniform(0.06, 0.18) if legs else 0.0
    base_top = rng.uniform(0.25, 0.35)
    seat_h = rng.uniform(0.4, 0.47)
    back_h = rng.uniform(0.7, 0.95)
    back_t = rng.uniform(0.15, 0.25)
    inner = seats * seat_w
    chaise = seats >= 2 and chance(rng, 0.3)
    chaise_len = rng.uniform(0.5, 0.75) if chaise else 0.0
    chaise_side = 1 if chance(rng, 0.5) else -1

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
    cushions = seats if chance(rng, 0.7) else 1
    cw = inner / cushions
    for k in range(cushions):
        yc = -inner / 2 + cw * (k + 0.5)
        extra = chaise_len if chaise and abs(yc - chaise_side * (inner / 2 - seat_w / 2)) < cw / 2 else 0.0
        b.box((-depth / 2 + back_t + (cushion_d + extra) / 2, yc, (base_top + seat_h) / 2),
              (cushion_d + extra - 0.01, cw - 0.01, seat_h - base_top))
    # Backrest: a frame and leaning cushions.
    b.box((-depth / 2 + back_t / 2, 0, base_top + (back_h - base_top) / 2), (back_t, width, back_h - base_top))
    if chance(rng, 0.65):
        lean = rotation(1, -rng.uniform(0.1, 0.25))
        for k in range(cushions):
            yc = -inner / 2 + cw * (k + 0.5)
            b.box((-depth / 2 + back_t + 0.07, yc, seat_h + (back_h - seat_h) * 0.45),
                  (0.14, cw - 0.02, (back_h - seat_h) * 0.85), lean)

    if arm_style != "none":
        arm_h = min(back_h, by_kind(rng, arm_style, {"box": (0.58, 0.7), "rolled": (0.6, 0.7),
                                                     "thin": (0.5, 0.65)}))
        for side in (-1, 1):
            y = side * (width / 2 - arm_w / 2)
            if arm_style == "rolled":
                b.box((0, y, (base_top + arm_h - arm_w / 2) / 2), (depth, arm_w, arm_h - arm_w / 2 - base_top))
                b.cylinder((-depth / 2, y, arm_h - arm_w / 2), (depth / 2 + 0.03, y, arm_h - arm_w / 2),
                           arm_w * 0.55, segs=12)
            else:
                b.box((0, y, (base_top + arm_h) / 2), (depth, arm_w, arm_h - base_top))
