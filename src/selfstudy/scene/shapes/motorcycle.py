"""Motorcycles: sport, cruiser, dirt, scooter and standard."""

from __future__ import annotations

import math

import numpy as np

from selfstudy.scene.shapes.primitives import Builder, arc, by_kind, chance, pick


def build(rng: np.random.Generator, b: Builder) -> None:
    kind = pick(rng, ("sport", "cruiser", "dirt", "scooter", "standard"), (2.5, 2, 2, 1.5, 2))
    r_front = by_kind(rng, kind, {"cruiser": (0.32, 0.36), "dirt": (0.36, 0.4),
               "scooter": (0.17, 0.22)}, (0.29, 0.32))
    r_rear = by_kind(rng, kind, {"cruiser": (0.3, 0.33), "dirt": (0.33, 0.37)}, (r_front, r_front))
    tyre = {"dirt": 0.16, "cruiser": 0.22, "scooter": 0.3}.get(kind, 0.25) * rng.uniform(0.85, 1.15)
    wheelbase = by_kind(rng, kind, {"cruiser": (1.55, 1.75), "scooter": (1.2, 1.35)}, (1.35, 1.5))
    rake = by_kind(rng, kind, {"cruiser": (0.5, 0.62)}, (0.4, 0.5))
    xf, xr = wheelbase / 2, -wheelbase / 2
    for x, r in ((xf, r_front), (xr, r_rear)):
        b.torus((x, 0, r), r * (1 - tyre), r * tyre, "y")
        if kind in ("dirt", "cruiser") and chance(rng, 0.7):  # spoked: hub and thin spokes
            b.disc((x, 0, r), r * 0.15, 0.1, "y", segs=8)
            for k in range(8):
                a = k * math.pi / 4
                b.beam((x, 0, r), (x + r * (1 - 2 * tyre) * math.cos(a), 0, r + r * (1 - 2 * tyre) * math.sin(a)),
                       0.01)
        else:
            b.disc((x, 0, r), r * (1 - 1.5 * tyre), 0.06, "y", segs=12)

    # Fork: two tubes from the front axle up along the steering axis, which leans back by the rake.
    steer = np.array([-math.sin(rake), 0.0, math.cos(rake)])
    head_z = by_kind(rng, kind, {"dirt": (0.95, 1.05), "scooter": (0.85, 0.95),
              "cruiser": (0.8, 0.9)}, (0.85, 0.95))
    head = np.array([xf, 0.0, r_front]) + steer * (head_z - r_front) / steer[2]
    for side in (-1, 1):
        b.cylinder((xf, side * 0.07, r_front), head + (0, side * 0.07, 0), 0.022, segs=6)
    bar_rise = by_kind(rng, kind, {"cruiser": (0.1, 0.35), "dirt": (0.1, 0.18),
                "sport": (-0.02, 0.04)}, (0.08, 0.15))
    bar_half = by_kind(rng, kind, {"cruiser": (0.38, 0.45), "sport": (0.3, 0.34)}, (0.35, 0.42))
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
    seat_z = by_kind(rng, kind, {"cruiser": (0.62, 0.7), "dirt": (0.85, 0.95),
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
        arc(b, (xf, r_front), r_front * 1.1, math.pi * 0.15, math.pi * 0.75, 4, 0.12, 0.015)
        arc(b, (xr, r_rear), r_rear * 1.1, math.pi * 0.3, math.pi * 0.95, 4, 0.14, 0.015)
        if kind == "cruiser" and chance(rng, 0.4):  # sissy bar behind the pillion
            b.beam((xr + 0.05, 0, seat_z - 0.05), (xr - 0.02, 0, seat_z + 0.35), 0.18, 0.03)
    pipes = 2 if kind == "cruiser" else 1
    for k in range(pipes):
        z = eng_z - eng[2] / 2 + 0.05 + k * 0.08
        tail = (xr - 0.15, 0.17, z + (0.35 if kind == "dirt" else 0.1 + 0.05 * k))
        b.cylinder((eng_x + eng[0] / 2, 0.17, z), tail, 0.04, 0.045, segs=8)
