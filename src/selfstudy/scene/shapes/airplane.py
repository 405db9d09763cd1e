"""Airplanes: airliners, business jets, propeller planes, fighters and gliders."""

from __future__ import annotations

import math

import numpy as np

from selfstudy.scene.shapes.primitives import Builder, arr, by_kind, chance, pick


def _wing(b: Builder, root_le, root_chord: float, tip_le, tip_chord: float, thickness: float) -> None:
    """A lifting surface from a root to a tip section, each a convex lens along -x.

    The sections lie perpendicular to the span; ``thickness`` is relative to the chord.
    """
    root_le, tip_le = arr(root_le), arr(tip_le)
    span = tip_le - root_le
    span[0] = 0.0
    t_dir = np.cross([1.0, 0.0, 0.0], span)
    t_dir /= np.linalg.norm(t_dir)
    s = np.array([0.0, 0.2, 0.6, 1.0, 0.6, 0.2])
    h = np.array([0.0, 0.5, 0.35, 0.0, -0.35, -0.5]) * thickness

    def section(le, chord):
        return le + np.outer(-s * chord, [1.0, 0.0, 0.0]) + np.outer(h * chord, t_dir)

    b.loft(section(root_le, root_chord), section(tip_le, tip_chord))


def build(rng: np.random.Generator, b: Builder) -> None:
    kind = pick(rng, ("airliner", "bizjet", "prop", "fighter", "glider"), (3, 2, 2.5, 2, 1))
    length = 1.0
    radius = length * by_kind(rng, kind, {"airliner": (0.045, 0.065), "bizjet": (0.05, 0.07),
                       "prop": (0.05, 0.08), "fighter": (0.04, 0.055),
                       "glider": (0.03, 0.045)})
    nose_len = rng.uniform(1.5, 3.0) * radius if kind != "fighter" else rng.uniform(4.0, 6.0) * radius
    tail_len = rng.uniform(0.22, 0.32) * length
    x_nose = length / 2 - nose_len
    x_tail = -length / 2 + tail_len
    upsweep = rng.uniform(0.3, 0.9) * radius
    b.cylinder((x_tail, 0, 0), (x_nose, 0, 0), radius, segs=14)
    b.sphere((x_nose, 0, 0), (nose_len, radius, radius))
    b.cylinder((x_tail, 0, 0), (-length / 2, 0, upsweep), radius, radius * rng.uniform(0.15, 0.35))
    if kind in ("fighter", "glider") or chance(rng, 0.15):
        b.sphere((x_nose - rng.uniform(0.0, 0.08), 0, radius * 0.7),
                 (rng.uniform(0.08, 0.14), radius * 0.6, radius * 0.75))

    # Main wing: span relative to the fuselage length, taper and sweep define the planform.
    span = by_kind(rng, kind, {"airliner": (0.85, 1.1), "bizjet": (0.8, 1.0),
            "prop": (1.1, 1.5), "fighter": (0.5, 0.75),
            "glider": (1.8, 2.6)}) * length
    chord = by_kind(rng, kind, {"airliner": (0.16, 0.24), "bizjet": (0.14, 0.2),
             "prop": (0.12, 0.18), "fighter": (0.35, 0.5),
             "glider": (0.07, 0.1)}) * length
    taper = by_kind(rng, kind, {"fighter": (0.05, 0.3), "prop": (0.5, 1.0),
             "glider": (0.35, 0.6)}, (0.25, 0.45))
    sweep = by_kind(rng, kind, {"airliner": (0.4, 0.65), "bizjet": (0.3, 0.55),
             "prop": (0.0, 0.08), "fighter": (0.6, 1.0),
             "glider": (0.0, 0.05)})
    dihedral = rng.uniform(-0.02, 0.1) if kind != "glider" else rng.uniform(0.03, 0.1)
    z_wing = radius * pick(rng, (-0.6, 0.0, 0.75), (3, 1, 2) if kind == "prop" else (4, 1, 1))
    x_wing = rng.uniform(0.02, 0.14) * length if kind != "fighter" else rng.uniform(-0.05, 0.05)
    half = span / 2

    def wing_le(y: float):
        return (x_wing - abs(y) * math.tan(sweep), y, z_wing + abs(y) * math.tan(dihedral))

    for side in (-1, 1):
        _wing(b, (x_wing, 0, z_wing), chord, wing_le(side * half), chord * taper, 0.12)

    # Engines: under the wing, at the rear fuselage, or propellers.
    nacelle_r = radius * rng.uniform(0.45, 0.7)
    nacelle_len = rng.uniform(0.1, 0.16) * length
    layout = {"airliner": pick(rng, ("wing", "rear"), (6, 1)), "bizjet": "rear"}.get(kind, kind)
    if layout == "wing":
        stations = (0.33,) if chance(rng, 0.65) else (0.28, 0.55)
        for frac in stations:
            for side in (-1, 1):
                le = wing_le(side * frac * half)
                front = le[0] + 0.4 * nacelle_len
                z = le[2] - nacelle_r * 1.3
                b.cylinder((front - nacelle_len, le[1], z), (front, le[1], z), nacelle_r * 0.75,
                           nacelle_r)
                b.beam((le[0] - 0.05 * length, le[1], z), (le[0] - 0.05 * length, le[1], le[2]),
                       nacelle_r * 0.3, nacelle_r * 1.2)
    elif layout == "rear":
        count = 3 if chance(rng, 0.25) else 2
        x_eng = x_tail + rng.uniform(-0.02, 0.06) * length
        for side in (-1, 1):
            y = side * (radius + nacelle_r * 1.1)
            b.cylinder((x_eng - nacelle_len, y, radius * 0.5), (x_eng, y, radius * 0.5),
                       nacelle_r * 0.8, nacelle_r)
            b.box((x_eng - nacelle_len / 2, y / 2, radius * 0.5), (nacelle_len * 0.5, abs(y), nacelle_r * 0.4))
        if count == 3:
            b.cylinder((x_eng - nacelle_len, 0, radius * 1.2), (x_eng, 0, radius * 1.2),
                       nacelle_r * 0.8, nacelle_r)
    elif kind == "prop":
        twin = chance(rng, 0.55)
        blades = int(rng.integers(2, 5))
        prop_r = rng.uniform(0.07, 0.11) * length
        hubs = []
        if twin:
            for side in (-1, 1):
                le = wing_le(side * rng.uniform(0.25, 0.35) * half)
                front = le[0] + nacelle_len * 0.6
                b.cylinder((front - nacelle_len * 1.5, le[1], le[2]), (front, le[1], le[2]),
                           nacelle_r * 0.7, nacelle_r)
                hubs.append((front, le[1], le[2]))
        else:
            hubs.append((length / 2, 0.0, 0.0))
        for hub in hubs:
            b.sphere(hub, (nacelle_r * 0.6, nacelle_r * 0.5, nacelle_r * 0.5))
            spin = rng.uniform(0, math.pi)
            for k in range(blades):
                a = spin + 2 * math.pi * k / blades
                tip = (hub[0], hub[1] + prop_r * math.cos(a), hub[2] + prop_r * math.sin(a))
                b.beam(hub, tip, prop_r * 0.18, prop_r * 0.03)
    elif kind == "fighter":
        b.cylinder((-length / 2 - 0.02, 0, upsweep * 0.3), (x_tail, 0, 0), radius * 0.7, radius * 0.9)
        for side in (-1, 1):  # intakes beside the cockpit
            b.box((x_wing + 0.05, side * radius * 1.1, -radius * 0.2),
                  (0.22 * length, radius * 0.5, radius * 1.1))

    # Empennage: fin(s) at the tail end, so the highest point is behind the middle.
    tail_type = {"glider": "t"}.get(kind) or pick(
        rng, ("conventional", "t", "twin", "v"),
        (5, 2, 0, 0.7) if kind == "airliner" else (3, 4, 0, 0.5) if kind == "bizjet"
        else (4, 1, 1.2, 0.6) if kind == "prop" else (1.2, 0, 3, 0.8))
    fin_h = rng.uniform(0.14, 0.22) * length
    fin_c = rng.uniform(0.14, 0.2) * length
    fin_sweep = rng.uniform(0.35, 0.75)
    stab_span = rng.uniform(0.3, 0.45) * length
    stab_c = rng.uniform(0.08, 0.12) * length
    x_fin = -length / 2 + fin_c * rng.uniform(0.9, 1.1)
    z_top = upsweep + radius * 0.2
    if tail_type == "v":
        for side in (-1, 1):
            tip_le = (x_fin - fin_h * math.tan(fin_sweep), side * fin_h * 0.8, z_top + fin_h * 0.7)
            _wing(b, (x_fin, 0, z_top), fin_c, tip_le, fin_c * 0.5, 0.1)
    elif tail_type == "twin":
        for side in (-1, 1):
            y = side * stab_span * 0.35
            _wing(b, (x_fin, y, z_top), fin_c * 0.9,
                  (x_fin - fin_h * math.tan(fin_sweep), y * 1.1, z_top + fin_h * 0.85), fin_c * 0.5, 0.1)
    else:
        tip_le = (x_fin - fin_h * math.tan(fin_sweep), 0, z_top + fin_h)
        _wing(b, (x_fin, 0, z_top - radius * 0.3), fin_c, tip_le, fin_c * rng.uniform(0.4, 0.7), 0.1)
    if tail_type != "v":
        if tail_type == "t":
            stab_le = (x_fin - fin_h * math.tan(fin_sweep), 0, z_top + fin_h)
        else:
            stab_le = (x_fin - 0.01, 0, z_top - radius * 0.2)
        for side in (-1, 1):
            tip = (stab_le[0] - stab_span / 2 * math.tan(sweep * 0.8 + 0.1), side * stab_span / 2,
                   stab_le[2] + stab_span / 2 * 0.05)
            _wing(b, stab_le, stab_c, tip, stab_c * 0.55, 0.1)
