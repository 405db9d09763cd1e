import colorsys

import numpy as np
import pytest

from selfstudy.scene import sampler as S
from selfstudy.scene.pose import Camera, paper_rotation
from selfstudy.scene.sampler import (CLASS_TINT, LIGHT_ANGLE, LIGHT_DISTANCE, MULTI_OBJECTS, class_colours,
                                     hsv_to_rgb, sample_scenes, view_centre)

N = 400


def draw(factors, seed=0, k=1, n=N):
    rng = np.random.default_rng(seed)
    classes = np.arange(n * k).reshape(n, k) % 10
    ref = class_colours(np.random.default_rng(99))
    return sample_scenes(factors, rng, classes, np.zeros((n, k), int), ref)


def materials_equal(a, b) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f))
               for f in ("colour_a", "colour_b", "kind", "tint", "tint_amount", "texture"))


def test_same_seed_same_scenes_other_seed_other_scenes():
    a, b, c = draw("1111", 0), draw("1111", 0), draw("1111", 1)
    assert np.array_equal(a.rotation, b.rotation) and np.array_equal(a.light, b.light)
    assert materials_equal(a.objects, b.objects) and materials_equal(a.background, b.background)
    assert not np.array_equal(a.rotation, c.rotation)


def test_viewpoint_factor_changes_only_rotation():
    fixed, varied = draw("0000"), draw("0010")
    np.testing.assert_allclose(fixed.rotation, np.broadcast_to(paper_rotation(), fixed.rotation.shape))
    assert np.std(varied.rotation[:, 0, :, 0], axis=0).min() > 0.1
    assert np.array_equal(fixed.light, varied.light)
    assert np.array_equal(fixed.colour, varied.colour) and np.array_equal(fixed.scale, varied.scale)
    assert materials_equal(fixed.objects, varied.objects)
    assert materials_equal(fixed.background, varied.background)


def test_lighting_factor_changes_only_light():
    fixed, varied = draw("0000"), draw("0001")
    a = LIGHT_ANGLE
    np.testing.assert_allclose(fixed.light, np.broadcast_to(
        [a, 0.0, LIGHT_DISTANCE * np.sin(a), LIGHT_DISTANCE * np.cos(a)], (N, 4)))
    assert np.std(varied.light[:, 0]) == pytest.approx(2.0, rel=0.15)  # N(0, 2 rad)
    np.testing.assert_allclose(np.linalg.norm(varied.light[:, 1:], axis=1), LIGHT_DISTANCE)
    assert np.array_equal(fixed.rotation, varied.rotation)
    assert materials_equal(fixed.objects, varied.objects)


def test_colour_factor_ties_colour_to_class():
    tied, free = draw("0000", n=2000), draw("0100", n=2000)
    labels = tied.classes[:, 0]

    def spread(colour):
        """Distances between class means (across) and between two halves of a class (within)."""
        halves = [[colour[labels == c, 0][h::2].mean(axis=0) for h in (0, 1)] for c in range(10)]
        means = np.array([(a + b) / 2 for a, b in halves])
        across = np.linalg.norm(means[:, None] - means[None], axis=-1)[np.triu_indices(10, 1)]
        within = np.array([np.linalg.norm(a - b) for a, b in halves])
        return across, within

    across, within = spread(tied.colour)
    assert np.median(across) > 10 * np.median(within)
    across, within = spread(free.colour)
    assert np.median(across) < 3 * np.median(within)  # a uniform random colour says nothing of the class
    assert np.array_equal(tied.rotation, free.rotation) and np.array_equal(tied.light, free.light)
    # Flat colours: the object material is the label colour.
    np.testing.assert_array_equal(tied.objects.colour_a, tied.colour)
    assert np.all(tied.objects.kind == 0) and np.all(tied.background.kind == 0)


def test_class_colour_follows_the_reference():
    ref = class_colours(np.random.default_rng(99))
    scenes = draw("0000")
    # Mean over many jittered draws is near the reference H, 0.2 + 0.8 S, 0.6 + 0.4 V (before clipping).
    for c in (0, 3, 7):
        rgb = scenes.colour[scenes.classes[:, 0] == c, 0]
        hsv = np.array([colorsys.rgb_to_hsv(*x) for x in rgb])
        hue_error = (hsv[:, 0] - ref[c, 0] + 0.5) % 1.0 - 0.5
        assert abs(np.median(hue_error)) < 0.05
        assert np.std(hue_error) < 0.12


def test_texture_factor_and_tint():
    flat, textured, textured_free = draw("0000"), draw("1000"), draw("1100")
    assert np.all(flat.objects.kind == 0)
    assert set(np.unique(textured.objects.kind)) == set(range(1, len(S.KINDS)))
    assert set(np.unique(textured.background.kind)) == set(range(1, len(S.KINDS)))
    np.testing.assert_allclose(textured.objects.tint_amount, CLASS_TINT)
    np.testing.assert_allclose(textured.objects.tint, flat.colour)  # the class colour tints the pattern
    np.testing.assert_allclose(textured_free.objects.tint_amount, 0.0)
    assert np.array_equal(flat.rotation, textured.rotation) and np.array_equal(flat.light, textured.light)


def test_hsv_to_rgb_matches_colorsys():
    rng = np.random.default_rng(0)
    hsv = rng.random((200, 3))
    expected = np.array([colorsys.hsv_to_rgb(*x) for x in hsv])
    np.testing.assert_allclose(hsv_to_rgb(hsv), expected, atol=1e-12)


def test_single_objects_are_centred_and_sized():
    scenes = draw("1111", n=50)
    np.testing.assert_allclose(scenes.position[:, 0], np.broadcast_to(view_centre(Camera()), (50, 3)))
    # Warp keeps the mean size: largest side 0.56 m on average.
    np.testing.assert_allclose(scenes.scale.mean(axis=-1), S.OBJECT_SIZE, rtol=1e-9)


def test_multi_object_layout_spreads_objects():
    cam = Camera()
    scenes = draw("1111", k=MULTI_OBJECTS, n=60)
    assert scenes.position.shape == (60, MULTI_OBJECTS, 3)
    for p in scenes.position:
        assert S._fits(p, S.MULTI_OBJECT_SIZE / 2, cam)
        d = np.linalg.norm(p[:, None] - p[None], axis=-1) + np.eye(MULTI_OBJECTS)
        assert d.min() > 0.15
    # Layouts differ between scenes.
    assert np.std(scenes.position[:, 0, 1]) > 0.05
