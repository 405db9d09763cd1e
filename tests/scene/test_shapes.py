"""Tests of the procedural shape library: contract (frame, dtypes, determinism), mesh validity,
real variation within a class, differences between classes, and the paper's warp factors."""

import hashlib

import numpy as np
import pytest

from selfstudy.errors import UserError
from selfstudy.scene import shapes
from selfstudy.scene.classes import CLASSES, NUM_CLASSES
from selfstudy.scene.shapes import Mesh, build_model, primitives, warp_factors

MODELS = range(40)


def _fresh(class_id: int, model_id: int) -> Mesh:
    """Build without the cache, to prove determinism does not come from it."""
    return shapes._build.__wrapped__(class_id, model_id)


def _face_geometry(mesh: Mesh):
    tri = mesh.vertices.astype(np.float64)[mesh.faces]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    return tri, cross


def _closed_and_consistent(faces: np.ndarray) -> bool:
    """Every directed edge appears once and its reverse once: closed, consistently wound."""
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    forward = {tuple(e) for e in edges.tolist()}
    return len(forward) == len(edges) and all((b, a) in forward for a, b in forward)


def _signed_volume(v: np.ndarray, f: np.ndarray) -> float:
    tri = v[f]
    return float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6)


# --- contract ----------------------------------------------------------------------------------------


def test_same_arguments_give_identical_arrays():
    for class_id in range(NUM_CLASSES):
        a, b = _fresh(class_id, 7), _fresh(class_id, 7)
        np.testing.assert_array_equal(a.vertices, b.vertices)
        np.testing.assert_array_equal(a.normals, b.normals)
        np.testing.assert_array_equal(a.faces, b.faces)


# Hashes of (vertices, normals, faces) bytes recorded with the single-module shapes.py before it was
# split into one module per class: refactoring the class programs must not move a single bit.
_MESH_HASHES = {
    0: ['1b1a11108c4bf577', '16b458ea9ad655b9', '48aa371f2366ad66', 'c222c69a01379f33', '85298b4167ac16c1'],
    1: ['51239bb486d5ca79', '94a8d6e8439ce059', 'bb4ff960cff27ef5', '03d59c389878d2c0', '7f1fa35ffb82882f'],
    2: ['39d80e0d050999be', 'd05efe00acd8e97e', '66ad3bd9e3b19e11', 'e09c64654ad66c96', '01c19beeca27f0ea'],
    3: ['a03122a54362dd0a', 'db5507c0d70deef5', '7ef43df0a251e87a', '805a33aa802353a3', '0a908d367cdb307d'],
    4: ['60217ea2f4693752', '2e0df028bf75b7b5', '0f6196532255fc4e', 'cee5d198edddc2c2', '0482c68532e8bec6'],
    5: ['ee8d040ab693e33b', 'efe39e2d45cb508c', '58e38b820b1c5881', '62ff1f5b83e57ff6', 'd8c0cc706958959e'],
    6: ['7fb21b739e9189dd', '0b109b595d71d49c', 'c848ec6419476da5', '40d79d78e7efc4fe', '9407c0d025a375a3'],
    7: ['6d3196be9c18c8d3', '2c1528349a94e7c6', '6e2cc7165d17f53c', '0ac27177587c73c9', '263f0883a106d57a'],
    8: ['17aceb21220f4f00', '1181c1a68ecc67ac', 'c78a7bfb1c90dfa5', '4b7fc448d8897b05', 'f523a1e9a3a267ed'],
    9: ['3488dc415276298a', 'cc6a310e5d93b432', '70fa0de79a7ad82c', '9e98cadbc1424099', 'd3df7111db174be8'],
}


def _mesh_hash(mesh: Mesh) -> str:
    digest = hashlib.sha256()
    for a in (mesh.vertices, mesh.normals, mesh.faces):
        digest.update(a.tobytes())
    return digest.hexdigest()[:16]


@pytest.mark.parametrize("class_id", range(NUM_CLASSES), ids=CLASSES)
def test_meshes_are_byte_identical_to_the_recorded_ones(class_id):
    got = [_mesh_hash(_fresh(class_id, m)) for m in (0, 1, 2, 17, 4321)]
    assert got == _MESH_HASHES[class_id]


def test_different_model_ids_give_different_meshes():
    for class_id in range(NUM_CLASSES):
        meshes = [build_model(class_id, m) for m in range(10)]
        keys = {(len(m.faces), m.vertices.tobytes()) for m in meshes}
        assert len(keys) == 10, CLASSES[class_id]


def test_dtypes_shapes_and_read_only_cache():
    mesh = build_model(3, 123456789)
    assert mesh.vertices.dtype == np.float32 and mesh.vertices.shape[1] == 3
    assert mesh.normals.dtype == np.float32 and mesh.normals.shape == mesh.vertices.shape
    assert mesh.faces.dtype == np.uint32 and mesh.faces.shape[1] == 3
    assert build_model(3, 123456789) is mesh
    with pytest.raises(ValueError):
        mesh.vertices[0, 0] = 1.0


def test_numpy_integers_are_accepted():
    mesh = build_model(np.int64(4), np.uint32(2))
    assert mesh is build_model(4, 2)


@pytest.mark.parametrize("class_id, model_id", [
    (-1, 0), (NUM_CLASSES, 0), (1.0, 0), ("chair", 0), (True, 0), (None, 0),
    (0, -1), (0, 2.5), (0, "3"), (0, False),
])
def test_bad_ids_raise_user_error(class_id, model_id):
    with pytest.raises(UserError, match="class_id|model_id"):
        build_model(class_id, model_id)


def test_frame_is_centred_with_unit_largest_side():
    for class_id in range(NUM_CLASSES):
        for model_id in MODELS:
            v = build_model(class_id, model_id).vertices.astype(np.float64)
            lo, hi = v.min(0), v.max(0)
            np.testing.assert_allclose((lo + hi) / 2, 0.0, atol=1e-6)
            assert abs((hi - lo).max() - 1.0) < 1e-5


# --- validity ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("class_id", range(NUM_CLASSES), ids=CLASSES)
def test_meshes_are_valid_and_face_outward(class_id):
    for model_id in MODELS:
        mesh = build_model(class_id, model_id)
        v, n, f = mesh.vertices, mesh.normals, mesh.faces
        assert 12 <= len(f) <= 4000
        assert np.isfinite(v).all() and np.isfinite(n).all()
        assert f.max() < len(v)
        np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-5)
        tri, cross = _face_geometry(mesh)
        assert (np.linalg.norm(cross, axis=1) > 0).all(), "degenerate triangle"
        # The winding (counter-clockwise seen from outside) and the shading normals agree per face.
        assert (np.einsum("ij,ij->i", cross, n[f].mean(1)) > 0).all()
        # Parts are closed and outward, so the divergence theorem gives a positive enclosed volume.
        assert _signed_volume(v.astype(np.float64), f) > 0


@pytest.mark.parametrize("prim, volume", [
    (primitives.box_prim(), 1.0),
    (primitives.frustum_prim(12, 1.0), 6 * np.sin(2 * np.pi / 12)),  # inscribed 12-gon prism
    (primitives.frustum_prim(12, 0.0), 2 * np.sin(2 * np.pi / 12)),  # its cone: a third
    (primitives.sphere_prim(), None),
    (primitives.torus_prim(0.25), None),
])
def test_unit_primitives_are_closed_outward_and_sized(prim, volume):
    v, n, f = prim
    if len(np.unique(v.round(9), axis=0)) == len(v):  # smooth primitives share vertices: check topology
        assert _closed_and_consistent(f)
    got = _signed_volume(v, f)
    if volume is not None:
        assert got == pytest.approx(volume, rel=1e-9)
    else:
        assert got > 0
    tri = v[f]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert (np.einsum("ij,ij->i", cross, n[f].mean(1)) > 0).all()


def test_placement_keeps_normals_perpendicular_under_anisotropic_scale():
    b = primitives.Builder()
    b.sphere((0.3, -0.2, 0.1), (0.5, 0.1, 0.2), primitives.rotation(2, 0.7))
    v, n = b._v[0], b._n[0]
    # For an ellipsoid the true normal is proportional to R diag(1/r^2) R^T (p - c).
    r = primitives.rotation(2, 0.7)
    local = (v - (0.3, -0.2, 0.1)) @ r
    expect = (local / np.array([0.5, 0.1, 0.2]) ** 2) @ r.T
    expect /= np.linalg.norm(expect, axis=1, keepdims=True)
    np.testing.assert_allclose(n, expect, atol=1e-9)


def test_part_frames_are_rotations_that_keep_sideways_sideways():
    np.testing.assert_allclose(primitives.frame_z((0, 0, 2.0)), np.eye(3))
    for d in np.random.default_rng(1).normal(size=(20, 3)).tolist() + [[0, 1.0, 0], [0, -1.0, 0]]:
        r = primitives.frame_z(d)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(r) == pytest.approx(1.0)
        np.testing.assert_allclose(r[:, 2], np.array(d) / np.linalg.norm(d), atol=1e-12)
    b = primitives.Builder()
    b.beam((0, 0, 0), (2.0, 0, 0), width=0.3, thick=0.1)  # a plank along x: wide across y, thin in z
    np.testing.assert_allclose(np.ptp(b._v[0], axis=0), [2.0, 0.3, 0.1], atol=1e-12)


def test_loft_orients_a_prism_outward():
    b = primitives.Builder()
    b.prism([(0, 0), (2, 0), (1, 1)], -0.5, 0.5)  # a triangle of area 1, extruded by 1
    v, f = b._v[0], b._f[0]
    assert _signed_volume(v, f) == pytest.approx(1.0)


# --- variation and class identity --------------------------------------------------------------------


@pytest.mark.parametrize("class_id", range(NUM_CLASSES), ids=CLASSES)
def test_each_class_varies_in_structure_and_proportion(class_id):
    meshes = [build_model(class_id, m) for m in MODELS]
    counts = {len(m.faces) for m in meshes}
    extents = np.array([np.ptp(m.vertices, axis=0) for m in meshes])
    # Different part counts give different triangle counts; proportions spread well beyond noise.
    assert len(counts) >= 5, counts
    assert extents.std(0).max() > 0.04, extents.std(0)


def _features(mesh: Mesh, bins: int = 6) -> np.ndarray:
    """Area-weighted occupancy of three orthographic projections plus the bounding-box extents."""
    tri, cross = _face_geometry(mesh)
    centre = tri.mean(1)
    weight = np.linalg.norm(cross, axis=1)
    weight /= weight.sum()
    views = [np.histogram2d(centre[:, i], centre[:, j], bins=bins, range=[[-0.5, 0.5]] * 2,
                            weights=weight)[0].ravel() for i, j in ((0, 1), (0, 2), (1, 2))]
    return np.concatenate(views + [np.ptp(mesh.vertices, axis=0)])


def test_classes_are_told_apart_by_a_crude_shape_statistic():
    # Nearest class centroid on coarse silhouettes, fitted on models 0-29, scored on unseen 30-49.
    feats = np.array([[_features(build_model(c, m)) for m in range(50)] for c in range(NUM_CLASSES)])
    train, test = feats[:, :30], feats[:, 30:]
    scale = train.reshape(-1, feats.shape[-1]).std(0) + 1e-3
    centroids = train.mean(1)
    dist = (((test[:, :, None, :] - centroids[None, None]) / scale) ** 2).sum(-1)
    accuracy = (dist.argmin(-1) == np.arange(NUM_CLASSES)[:, None]).mean(1)
    assert accuracy.mean() > 0.75, accuracy
    assert accuracy.min() >= 0.3, accuracy  # chance is 0.1


def _top_x(v: np.ndarray, frac: float = 0.1) -> float:
    """Mean x of the vertices in the top ``frac`` of the height range."""
    z = v[:, 2]
    return float(v[z >= z.max() - frac * np.ptp(z), 0].mean())


@pytest.mark.parametrize("name, sign, share", [
    ("airplane", -1, 1.0),  # the tail fin is the highest part and sits behind
    ("chair", -1, 1.0),  # the backrest is behind the seat front
    ("sofa", -1, 1.0),
    ("car", -1, 0.8),  # the roof sits behind the long bonnet (pickups may differ)
    ("motorcycle", 1, 0.85),  # handlebars and screen are above the front wheel
])
def test_front_faces_plus_x(name, sign, share):
    class_id = CLASSES.index(name)
    tops = np.array([_top_x(build_model(class_id, m).vertices) for m in MODELS])
    assert (np.sign(tops) == sign).mean() >= share, tops


def test_boat_bows_are_narrower_than_sterns():
    class_id = CLASSES.index("watercraft")
    narrower = []
    for m in MODELS:
        v = build_model(class_id, m).vertices
        x = v[:, 0]
        bow = v[x > x.max() - 0.1 * np.ptp(x), 1]
        stern = v[x < x.min() + 0.1 * np.ptp(x), 1]
        narrower.append(np.ptp(bow) < np.ptp(stern))
    assert np.mean(narrower) >= 0.75


# --- warp ---------------------------------------------------------------------------------------------


def test_warp_factors_follow_the_paper():
    rng = np.random.default_rng(0)
    w = np.array([warp_factors(rng) for _ in range(4000)])
    assert w.shape == (4000, 3)
    np.testing.assert_allclose(w.mean(1), 1.0, atol=1e-12)  # mean removed per draw
    # Removing the mean of three N(0, 0.1^2) leaves a per-axis std of 0.1 * sqrt(2/3).
    np.testing.assert_allclose(w.std(0), 0.1 * np.sqrt(2 / 3), rtol=0.06)
    np.testing.assert_allclose(w.mean(0), 1.0, atol=0.01)


def test_warp_factors_are_clipped_and_seeded():
    w = np.array([warp_factors(np.random.default_rng(s), std=3.0) for s in range(200)])
    assert w.min() == 0.5 and w.max() == 1.5
    np.testing.assert_array_equal(warp_factors(np.random.default_rng(5)), warp_factors(np.random.default_rng(5)))
    with pytest.raises(UserError, match="std"):
        warp_factors(np.random.default_rng(0), std=-0.1)
