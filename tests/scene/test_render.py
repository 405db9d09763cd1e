"""Renderer values: analytic depth, exact labels, tiles that do not leak, the mesh cache, factors."""

from dataclasses import dataclass

import numpy as np
import pytest
import trimesh

from selfstudy.data.generate import renderer_for
from selfstudy.errors import UserError
from selfstudy.scene.pose import Camera, axis_rotation, paper_rotation
from selfstudy.scene.render import Renderer, background_depth, check_render_settings
from selfstudy.scene.sampler import Materials, SceneBatch, class_colours, sample_scenes, view_centre

CAM = Camera()
GREY = 0.5


@dataclass
class Mesh:
    vertices: np.ndarray
    normals: np.ndarray
    faces: np.ndarray


def from_trimesh(m: trimesh.Trimesh, flat: bool) -> Mesh:
    if flat:
        m = m.copy()
        m.unmerge_vertices()
    return Mesh(np.asarray(m.vertices, np.float32), np.asarray(m.vertex_normals, np.float32),
                np.asarray(m.faces, np.uint32))


MESHES = {
    0: from_trimesh(trimesh.creation.box((1.0, 1.0, 1.0)), flat=True),        # unit cube
    1: from_trimesh(trimesh.creation.icosphere(subdivisions=4, radius=0.5), flat=False),  # diameter 1
    2: from_trimesh(trimesh.creation.box((1.0, 0.3, 0.6)), flat=True),
    3: from_trimesh(trimesh.creation.cylinder(radius=0.4, height=1.0, sections=24), flat=True),
}


def meshes(class_id, model_id):
    return MESHES[model_id]


def materials(shape, colour=GREY):
    c = np.full(shape + (3,), colour, dtype=np.float64)
    return Materials(c, c, np.zeros(shape, int), c, np.zeros(shape), np.zeros(shape + (3, 4)))


def scenes(rotation, position, size, model_ids, classes, bg_colour=0.2, light_angle=-0.5):
    """Scenes of flat grey objects; arguments are (N, K, ...) arrays."""
    model_ids = np.asarray(model_ids)
    n, k = model_ids.shape
    a = np.full(n, light_angle)
    light = np.stack([a, 0 * a, 1.5 * np.sin(a), 1.5 * np.cos(a)], axis=1)
    return SceneBatch(classes=np.asarray(classes), model_id=model_ids,
                      rotation=np.broadcast_to(rotation, (n, k, 3, 3)).copy(),
                      scale=np.broadcast_to(np.asarray(size, float)[..., None], (n, k, 3)).copy(),
                      position=np.broadcast_to(position, (n, k, 3)).copy(), colour=np.full((n, k, 3), GREY),
                      objects=materials((n, k)), background=materials((n,), bg_colour), light=light)


@pytest.fixture(scope="module")
def renderer():
    return renderer_for(64, 2)  # the dataset generator's per-process renderer


def analytic_cube(size=0.3):
    """A cube facing the camera (its +z face toward the viewer), centred on the viewing axis."""
    centre = view_centre(CAM)
    return scenes(CAM.rotation, centre, size, [[0]], [[3]]), -CAM.to_camera(centre)[2] - size / 2


def test_depth_of_a_camera_facing_cube_and_of_the_background(renderer):
    batch, face = analytic_cube()
    out = renderer.render(batch, meshes)
    depth = out.depth[0].astype(np.float64)
    assert depth[32, 32] == pytest.approx(face, rel=0.01)
    assert depth[32, 32] == pytest.approx(face, rel=1e-3)  # float16 rounding is the only error
    bg = out.instance[0] == 0
    np.testing.assert_allclose(depth[bg], background_depth(), rtol=1e-3)
    assert background_depth() == pytest.approx(np.dot(-4 * np.array(CAM.position), CAM.forward))
    # Exact labels: two depths only, never a blend across the cube's edge.
    assert set(np.unique(out.depth[0])) == {np.float16(face), np.float16(background_depth())}
    # Its silhouette: half side 0.15 m at that depth, sampled at label_offset from pixel centres.
    half = 0.15 / (face * np.tan(CAM.fov / 2)) * 32
    columns = np.flatnonzero(out.instance[0, 32])
    first = int(np.ceil(32 - half - 0.5 - renderer.label_offset))
    last = int(np.floor(32 + half - 0.5 - renderer.label_offset))
    assert (columns.min(), columns.max()) == (first, last)


def test_depth_of_a_sphere_at_its_centre_pixel(renderer):
    centre = view_centre(CAM) + 0.3 * CAM.forward  # farther away
    radius = 0.2
    batch = scenes(np.eye(3), centre, 2 * radius, [[1]], [[0]])
    out = renderer.render(batch, meshes)
    distance = -CAM.to_camera(centre)[2]
    # The ray through the centre sample is (almost) the viewing axis: depth = distance - radius.
    assert float(out.depth[0, 32, 32]) == pytest.approx(distance - radius, rel=0.01)
    # Away from the centre: the ray-sphere intersection, in depth along the axis.
    i, j = 28, 36
    u, v = (j + 0.5 + renderer.label_offset) / 64, (i + 0.5 + renderer.label_offset) / 64
    d = CAM.ray(u, v)
    oc = np.asarray(CAM.position) - centre
    t = -oc @ d - np.sqrt((oc @ d) ** 2 - oc @ oc + radius ** 2)
    assert float(out.depth[0, i, j]) == pytest.approx(t * (d @ CAM.forward), rel=0.01)


def test_rgb_is_anti_aliased_but_labels_are_not(renderer):
    batch, _ = analytic_cube()
    out = renderer.render(batch, meshes)
    grey = out.rgb[0, 32, 32].astype(int)
    background = out.rgb[0, 2, 32].astype(int)
    row = out.rgb[0, 32, :, 0].astype(int)
    lo, hi = sorted((grey[0], background[0]))
    assert np.any((row > lo + 2) & (row < hi - 2))  # blended edge pixels in RGB
    assert set(np.unique(out.instance[0])) == {0, 1}
    np.testing.assert_array_equal(out.semantic[0], np.where(out.instance[0] == 1, 4, 0))


def test_tiles_do_not_leak_and_batches_equal_single_renders(renderer):
    cube, _ = analytic_cube()
    # Scene 0: a box so close that it overflows its tile; scenes 1-2: ordinary objects.
    near = np.asarray(CAM.position) + 0.3 * CAM.forward
    big = scenes(CAM.rotation, near, 0.5, [[2]], [[7]])
    tilted = scenes(axis_rotation("y", 0.7), view_centre(CAM), 0.5, [[3]], [[5]])
    parts = [big, cube, tilted]
    batch = SceneBatch.concatenate(parts)
    together = renderer.render(batch, meshes)
    for i, p in enumerate(parts):
        # The same scene in another tile is rasterised at other window coordinates: equal up to
        # floating-point rounding (a dataset always puts a scene in the same tile).
        alone = renderer.render(p, meshes)
        assert np.abs(together.rgb[i].astype(int) - alone.rgb[0]).max() <= 2
        np.testing.assert_allclose(together.depth[i], alone.depth[0], rtol=1e-3)
        assert np.mean(together.instance[i] == alone.instance[0]) > 0.999
    assert together.instance[0].mean() > 0.9  # the close box fills its own tile...
    assert together.instance[1].mean() < 0.3  # ...and nothing of it spills into the next one


def test_mesh_cache_eviction_keeps_results_identical():
    small = Renderer(32, 1, max_models=2)
    big = Renderer(32, 1)
    try:
        def one(model):
            return scenes(paper_rotation(), view_centre(CAM), 0.5, [[model]], [[model]])

        for model in [0, 1, 2, 3, 1, 0, 2]:
            a, b = small.render(one(model), meshes), big.render(one(model), meshes)
            np.testing.assert_array_equal(a.rgb, b.rgb)
            np.testing.assert_array_equal(a.depth, b.depth)
            assert len(small._arena.entries) <= 3  # two models plus the pinned background plane
        assert small._arena.version > 0  # it did evict and compact
        # A batch that needs more models than the bound still renders them all.
        four = [[m] for m in range(4)]
        batch = scenes(paper_rotation(), view_centre(CAM), 0.5, four, four)
        np.testing.assert_array_equal(small.render(batch, meshes).rgb, big.render(batch, meshes).rgb)
    finally:
        small.release()
        big.release()


def test_multi_object_ids_are_consistent(renderer):
    k = 4
    rng = np.random.default_rng(3)
    classes = rng.integers(0, 10, size=(6, k))
    batch = sample_scenes("1111", rng, classes, rng.integers(0, 4, size=(6, k)), class_colours(rng))
    out = renderer.render(batch, meshes)
    for i in range(6):
        seen = np.unique(out.instance[i])
        assert len(seen) >= 3  # the layout keeps most objects visible
        for inst in seen:
            classes_here = np.unique(out.semantic[i][out.instance[i] == inst])
            expected = 0 if inst == 0 else classes[i, inst - 1] + 1
            np.testing.assert_array_equal(classes_here, [expected])
        assert np.all(out.depth[i][out.instance[i] == 0] == np.float16(background_depth()))
        assert np.all(out.depth[i][out.instance[i] > 0] < 2.0)


def render_sampled(renderer, factors, n=48, seed=0):
    rng = np.random.default_rng(seed)
    classes = np.arange(n)[:, None] % 10
    reference = class_colours(np.random.default_rng(5))
    batch = sample_scenes(factors, rng, classes, np.arange(n)[:, None] % 4, reference)
    return batch, renderer.render(batch, meshes)


def laplacian_energy(out, instance):
    """Mean |Laplacian| of grey levels inside one instance id (0 background, 1 the object), away from
    its silhouette (3x3 neighbourhoods of that id only)."""
    g = out.rgb.astype(np.float64).mean(axis=-1)
    lap = 4 * g[:, 1:-1, 1:-1] - g[:, :-2, 1:-1] - g[:, 2:, 1:-1] - g[:, 1:-1, :-2] - g[:, 1:-1, 2:]
    ids = out.instance.astype(int)
    inner = np.ones_like(lap, dtype=bool)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            inner &= ids[:, 1 + di:ids.shape[1] - 1 + di, 1 + dj:ids.shape[2] - 1 + dj] == instance
    return np.abs(lap[inner]).mean()


def test_texture_raises_high_frequency_energy(renderer):
    _, flat = render_sampled(renderer, "0000")
    _, textured = render_sampled(renderer, "1000")
    # Flat colours vary only with the light (and at the creases of objects); patterns add edges.
    assert laplacian_energy(textured, 0) > 4 * laplacian_energy(flat, 0)
    assert laplacian_energy(textured, 1) > 1.5 * laplacian_energy(flat, 1)
    # Labels do not depend on texture.
    np.testing.assert_array_equal(flat.instance, textured.instance)
    np.testing.assert_array_equal(flat.depth, textured.depth)


def test_colour_factor_in_pixels(renderer):
    batch, tied = render_sampled(renderer, "0000", n=120)
    labels = batch.classes[:, 0]

    def object_means(out):
        mask = out.instance == 1
        return np.array([out.rgb[i][mask[i]].mean(axis=0) for i in range(len(out.rgb))]) / 255

    means = object_means(tied)
    per_class = np.array([means[labels == c].mean(axis=0) for c in range(10)])
    within = np.mean([means[labels == c].std(axis=0).sum() for c in range(10)])
    across = np.linalg.norm(per_class[:, None] - per_class[None], axis=-1)[np.triu_indices(10, 1)]
    assert np.median(across) > within


def test_viewpoint_and_light_change_the_pixels_they_should(renderer):
    _, base = render_sampled(renderer, "0000", n=16)
    _, lit = render_sampled(renderer, "0001", n=16)
    _, turned = render_sampled(renderer, "0010", n=16)
    np.testing.assert_array_equal(base.instance, lit.instance)  # light moves no geometry
    assert not np.array_equal(base.rgb, lit.rgb)
    assert not np.array_equal(base.instance, turned.instance)


def test_bad_settings_are_user_errors():
    for res, ss in ((60, 2), (24, 2), (264, 2), (64, 0), (64, 5), (64.0, 2), (True, 2)):
        with pytest.raises(UserError):
            check_render_settings(res, ss)
