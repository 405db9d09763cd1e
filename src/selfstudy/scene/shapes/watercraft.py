"""Watercraft: sailing boats, motor boats, ships, rowing boats and canoes."""

from __future__ import annotations

import numpy as np

from selfstudy.scene.shapes.primitives import Builder, by_kind, chance, pick


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


def build(rng: np.random.Generator, b: Builder) -> None:
    kind = pick(rng, ("sail", "motor", "ship", "rowboat", "canoe"), (3, 3, 2.5, 1.2, 0.8))
    length = 1.0
    beam = by_kind(rng, kind, {"ship": (0.12, 0.18), "canoe": (0.12, 0.18),
            "rowboat": (0.3, 0.4)}, (0.25, 0.35)) * length
    freeboard = by_kind(rng, kind, {"ship": (0.06, 0.1), "canoe": (0.03, 0.05),
                 "rowboat": (0.06, 0.09)}, (0.05, 0.08)) * length
    draft = by_kind(rng, kind, {"ship": (0.04, 0.07)}, (0.03, 0.06)) * length
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
        masts = 2 if chance(rng, 0.25) else 1
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
            if m == 0 and chance(rng, 0.7):  # jib from the bow to the mast
                bow = length / 2 - 0.02
                b.loft([(x + 0.02, -0.003, freeboard + h * 0.8), (x + 0.02, -0.003, z0), (bow, -0.003, z0)],
                       [(x + 0.02, 0.003, freeboard + h * 0.8), (x + 0.02, 0.003, z0), (bow, 0.003, z0)])
        if chance(rng, 0.5):
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
        if chance(rng, 0.5):
            b.cylinder(((x_front + x_back) / 2, 0, z), ((x_front + x_back) / 2, 0, z + 0.06 * length),
                       0.006 * length, segs=6)
    elif kind == "ship":
        cargo = chance(rng, 0.5)
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
        if kind == "rowboat" and chance(rng, 0.6):
            for side in (-1, 1):
                b.cylinder((0.0, side * beam * 0.3, freeboard + 0.01),
                           (-0.25 * length, side * beam * 1.3, -0.01), 0.008 * length, segs=6)
