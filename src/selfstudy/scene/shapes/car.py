"""Cars: sedans, hatchbacks, pickups, vans, SUVs and coupés."""

from __future__ import annotations

import numpy as np

from selfstudy.scene.shapes.primitives import Builder, by_kind, chance, pick


def build(rng: np.random.Generator, b: Builder) -> None:
    kind = pick(rng, ("sedan", "hatchback", "pickup", "van", "suv", "coupe"), (3, 2, 1.5, 1.2, 1.8, 1.5))
    length = by_kind(rng, kind, {"sedan": (4.3, 5.0), "hatchback": (3.6, 4.3),
              "pickup": (5.0, 5.8), "van": (4.6, 5.4),
              "suv": (4.3, 5.0), "coupe": (4.2, 4.7)})
    width = rng.uniform(1.7, 1.95)
    wheel_r = by_kind(rng, kind, {"suv": (0.36, 0.42), "pickup": (0.37, 0.43),
               "van": (0.32, 0.37)}, (0.29, 0.34))
    clearance = by_kind(rng, kind, {"suv": (0.25, 0.32), "pickup": (0.3, 0.38),
                 "coupe": (0.12, 0.16)}, (0.16, 0.22))
    belt = clearance + by_kind(rng, kind, {"van": (0.65, 0.8), "suv": (0.6, 0.72),
                        "pickup": (0.6, 0.75), "coupe": (0.42, 0.5)
                        }, (0.48, 0.58))
    roof = belt + by_kind(rng, kind, {"van": (0.7, 0.9), "coupe": (0.36, 0.44),
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
    hood = by_kind(rng, kind, {"van": (0.35, 0.7), "pickup": (1.3, 1.7), "coupe": (1.3, 1.6),
            "suv": (0.9, 1.2)}, (1.0, 1.35))
    screen = by_kind(rng, kind, {"van": (0.3, 0.7), "coupe": (0.75, 1.0),
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
    if chance(rng, {"coupe": 0.6, "sedan": 0.15, "hatchback": 0.3}.get(kind, 0.0)):  # rear spoiler
        sx = rear + 0.15
        sz = belt + rng.uniform(0.12, 0.25)
        b.box((sx, 0, sz), (0.25, width * 0.9, 0.04))
        for side in (-1, 1):
            b.beam((sx, side * width * 0.3, belt - 0.02), (sx, side * width * 0.3, sz), 0.05)
    if kind in ("suv", "van") and chance(rng, 0.5):  # roof rails, sometimes carrying a roof box
        for side in (-1, 1):
            b.beam((roof_rear + 0.15, side * (width / 2 - inset - 0.05), roof + 0.05),
                   (roof_front - 0.1, side * (width / 2 - inset - 0.05), roof + 0.05), 0.05)
        if chance(rng, 0.4):
            box_len = rng.uniform(0.4, 0.6) * (roof_front - roof_rear)
            b.box(((roof_front + roof_rear) / 2, 0, roof + 0.16), (box_len, width * 0.5, rng.uniform(0.15, 0.3)))
    if kind == "suv" and chance(rng, 0.45):  # spare wheel on the tailgate
        b.disc((rear - 0.1, 0, (clearance + belt) / 2 + 0.1), wheel_r, 0.2, "x", segs=14)
    if kind in ("suv", "pickup") and chance(rng, 0.3):  # bull bar
        for side in (-1, 1):
            b.beam((front + 0.08, side * width * 0.3, clearance), (front + 0.08, side * width * 0.3,
                                                                   belt - nose_drop), 0.06)
        b.beam((front + 0.08, -width * 0.3, belt - nose_drop), (front + 0.08, width * 0.3, belt - nose_drop), 0.06)
    if kind == "pickup" and chance(rng, 0.4):  # roll bar behind the cab
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
    if kind == "pickup" and chance(rng, 0.2):  # dually: a second rear axle
        axles.append(axles[1] - 2.1 * wheel_r)
    for x in axles:
        for side in (-1, 1):
            y = side * (width / 2 - tyre_w / 2 + 0.02)
            b.disc((x, y, wheel_r), wheel_r, tyre_w, "y", segs=14)
            b.disc((x, y + side * 0.01, wheel_r), wheel_r * 0.6, tyre_w, "y", segs=10)
