import numpy as np
import pytest

from selfstudy.scene.pose import (Camera, axis_rotation, euler_to_matrix, front_angles, matrix_to_euler,
                                  paper_rotation, pose_class)


def tilted(direction_deg: float, tilt: float) -> np.ndarray:
    """A rotation whose up axis (column 2) leans by ``tilt`` rad toward world azimuth ψ = direction_deg,
    where ψ is measured like the paper: ψ = atan2(r_x, r_y), 0 toward +y, 90° toward +x."""
    psi = np.radians(direction_deg)
    up = np.array([np.sin(tilt) * np.sin(psi), np.sin(tilt) * np.cos(psi), np.cos(tilt)])
    # Any orthonormal frame with that third column.
    helper = np.array([1.0, 0.0, 0.0]) if abs(up[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    x = np.cross(helper, up)
    x /= np.linalg.norm(x)
    y = np.cross(up, x)
    return np.stack([x, y, up], axis=1)


def test_euler_is_blender_xyz():
    a, b, c = 0.3, -0.7, 1.9
    expected = axis_rotation("z", c) @ axis_rotation("y", b) @ axis_rotation("x", a)
    np.testing.assert_allclose(euler_to_matrix([a, b, c]), expected, atol=1e-12)
    Rx = axis_rotation("x", np.pi / 2)
    np.testing.assert_allclose(Rx @ [0, 1, 0], [0, 0, 1], atol=1e-12)  # right-handed


def test_matrix_to_euler_round_trip_including_gimbal_lock():
    rng = np.random.default_rng(0)
    e = rng.uniform(-np.pi, np.pi, size=(500, 3))
    e[:5, 1] = np.pi / 2  # gimbal lock
    e[5:10, 1] = -np.pi / 2
    R = euler_to_matrix(e)
    np.testing.assert_allclose(euler_to_matrix(matrix_to_euler(R)), R, atol=1e-9)
    np.testing.assert_allclose(R @ np.swapaxes(R, -1, -2), np.broadcast_to(np.eye(3), R.shape), atol=1e-12)


@pytest.mark.parametrize("psi, expected", [
    (0.0, 3), (44.0, 3), (-44.0, 3), (-45.0, 3),     # toward +y: class 3, ψ ∈ [-45°, 45°)
    (45.0, 4), (90.0, 4), (134.0, 4),                # toward +x: class 4, ψ ∈ [45°, 135°)
    (135.0, 1), (180.0, 1), (-136.0, 1),             # toward -y: class 1, |ψ| ≥ 135°
    (-135.0, 2), (-90.0, 2), (-46.0, 2),             # toward -x: class 2, ψ ∈ [-135°, -45°)
])
def test_pose_class_tilt_quadrants(psi, expected):
    assert pose_class(tilted(psi, 0.6)) == expected


def test_pose_class_upright_below_pi_over_8():
    assert pose_class(tilted(70.0, np.pi / 8 - 0.01)) == 0
    assert pose_class(tilted(70.0, np.pi / 8 + 0.01)) == 4
    assert pose_class(np.eye(3)) == 0
    # Upside down is a large tilt (θ = π), not upright.
    assert pose_class(axis_rotation("x", np.pi)) != 0
    # Yaw alone never changes the class.
    assert np.all(pose_class(axis_rotation("z", np.linspace(-3, 3, 13))) == 0)


def test_pose_class_by_hand_built_rotations():
    # Rx(-0.5) leans the up axis toward +y: (0, sin .5, cos .5) -> ψ = 0 -> class 3.
    assert pose_class(axis_rotation("x", -0.5)) == 3
    assert pose_class(axis_rotation("x", 0.5)) == 1   # toward -y
    assert pose_class(axis_rotation("y", 0.5)) == 4   # toward +x
    assert pose_class(axis_rotation("y", -0.5)) == 2  # toward -x
    batch = np.stack([np.eye(3), axis_rotation("x", 0.5), axis_rotation("y", -0.5),
                      axis_rotation("x", -0.5), axis_rotation("y", 0.5)])
    np.testing.assert_array_equal(pose_class(batch), [0, 1, 2, 3, 4])


def test_view_noise_gives_the_papers_class_balance():
    rng = np.random.default_rng(0)
    counts = np.bincount(pose_class(paper_rotation(rng.normal(0, 0.5, size=(20000, 3)))), minlength=5)
    share = counts / counts.sum()
    assert 0.22 < share[0] < 0.31  # docs/PAPER.md §5.2: about 26 % upright
    assert np.all((share[1:] > 0.15) & (share[1:] < 0.22))


def test_canonical_rotation_is_upright_three_quarter_view():
    R = paper_rotation()
    np.testing.assert_allclose(R[:, 2], [0, 0, 1], atol=1e-12)                   # up stays up
    np.testing.assert_allclose(R[:, 0], [0.5, np.sqrt(3) / 2, 0], atol=1e-12)    # front 60° from +x
    assert pose_class(R) == 0
    az, el = front_angles(R)
    cam = Camera()
    back = cam.rotation[:, 2]
    assert az == pytest.approx(np.arctan2(np.sqrt(3) / 2, 0.5 * back[0]))  # turned toward image right
    assert el == pytest.approx(np.arcsin(0.5 * cam.rotation[0, 1]))


def test_front_angles_facing_the_camera_and_turning():
    cam = Camera()
    # Columns: object +x -> camera +z (toward the viewer), +y -> camera +x, +z -> camera +y (up).
    R = cam.rotation @ np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]], float)
    np.testing.assert_allclose(R[:, 0], cam.rotation[:, 2], atol=1e-12)
    az, el = front_angles(R, cam)
    assert az == pytest.approx(0, abs=1e-9) and el == pytest.approx(0, abs=1e-9)
    # Turning the front toward the camera's right makes the azimuth positive.
    turn = cam.rotation @ axis_rotation("y", 0.3) @ cam.rotation.T  # about the camera's up axis
    az, el = front_angles(turn @ R, cam)
    assert az == pytest.approx(0.3) and el == pytest.approx(0, abs=1e-9)


def test_camera_is_the_papers():
    cam = Camera()
    np.testing.assert_allclose(cam.forward, [-np.sin(0.36 * np.pi), 0, -np.cos(0.36 * np.pi)], atol=1e-12)
    np.testing.assert_allclose(cam.rotation[:, 0], [0, 1, 0], atol=1e-12)  # image right = world +y
    assert cam.fov == pytest.approx(2 * np.arctan(18 / 50))
    # A point on the viewing axis projects to the image centre; rays invert projection.
    np.testing.assert_allclose(cam.project(np.array(cam.position) + 2 * cam.forward), [0.5, 0.5], atol=1e-12)
    p = np.array(cam.position) + 1.7 * cam.ray(0.2, 0.9)
    np.testing.assert_allclose(cam.project(p), [0.2, 0.9], atol=1e-12)
    # The projection matrix agrees with project().
    q = np.array([0.1, 0.2, -0.05, 1.0])
    clip = cam.projection_matrix() @ cam.view_matrix() @ q
    ndc = clip[:2] / clip[3]
    np.testing.assert_allclose([(ndc[0] + 1) / 2, (1 - ndc[1]) / 2], cam.project(q[:3]), atol=1e-12)
