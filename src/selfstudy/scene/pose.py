"""Rotations, the camera and the pose labels of a scene.

Frames (all right-handed, metres):

* **object frame**: the frame of :func:`selfstudy.scene.shapes.build_model`: +z up, the object's front
  toward +x.
* **world frame**: Blender's, as in the paper: +z up; the camera sits at (1, 0, 0.4) and looks toward
  -x, slightly down, so world +y is the image's right.
* **camera frame**: OpenGL's eye frame: +x image right, +y image up, +z toward the viewer (the camera
  looks along -z). Depth is the distance along the viewing axis, ``-z``.

Euler angles follow Blender's ``XYZ`` order: ``R = Rz(c) @ Ry(b) @ Rx(a)`` for angles ``(a, b, c)``.

Pose class (docs/PAPER.md §5.2): the paper used the column of the object rotation that carries the model's
up axis (column 1 for ShapeNet's +y up); in our object frame up is +z, so it is **column 2** here. With
``r`` that up axis in world coordinates, ``θ`` its angle from world +z and ``ψ = atan2(r_x, r_y)``:
class 0 is upright (``θ < π/8``); otherwise the tilt direction picks class 1 (``|ψ| ≥ 135°``), 2
(``ψ ∈ [-135°, -45°)``), 3 (``ψ ∈ [-45°, 45°)``) or 4 (``ψ ∈ [45°, 135°)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: The paper's camera: Blender location and XYZ Euler rotation, 50 mm lens on a 36 mm sensor.
CAMERA_POSITION = (1.0, 0.0, 0.4)
CAMERA_EULER = (0.36 * np.pi, 0.0, np.pi / 2)
CAMERA_FOV = 2.0 * np.arctan(18.0 / 50.0)  # radians, horizontal = vertical for square images

#: The paper's base rotation (π/2, 0, -π/6) acts on ShapeNet models (+y up, front -z). For our object
#: frame (+z up, front +x) the same placement is ``euler_to_matrix((0, 0, -π/6)) @ Rz(π/2)``: the
#: object stands upright with its front turned 60° from the camera axis toward the image's right, the
#: paper's three-quarter view. See :func:`paper_rotation`.
UPRIGHT_TILT = np.pi / 8


def euler_to_matrix(euler) -> np.ndarray:
    """Rotation matrices from XYZ Euler angles.

    euler: (..., 3) radians ``(a, b, c)``. Returns (..., 3, 3) float64 ``Rz(c) @ Ry(b) @ Rx(a)``.
    """
    e = np.asarray(euler, dtype=np.float64)
    ca, cb, cc = np.cos(e[..., 0]), np.cos(e[..., 1]), np.cos(e[..., 2])
    sa, sb, sc = np.sin(e[..., 0]), np.sin(e[..., 1]), np.sin(e[..., 2])
    R = np.empty(e.shape[:-1] + (3, 3))
    R[..., 0, 0] = cc * cb
    R[..., 0, 1] = cc * sb * sa - sc * ca
    R[..., 0, 2] = cc * sb * ca + sc * sa
    R[..., 1, 0] = sc * cb
    R[..., 1, 1] = sc * sb * sa + cc * ca
    R[..., 1, 2] = sc * sb * ca - cc * sa
    R[..., 2, 0] = -sb
    R[..., 2, 1] = cb * sa
    R[..., 2, 2] = cb * ca
    return R


def matrix_to_euler(R) -> np.ndarray:
    """XYZ Euler angles of rotation matrices, the inverse of :func:`euler_to_matrix`.

    R: (..., 3, 3). Returns (..., 3) radians with ``b ∈ [-π/2, π/2]``, ``a, c ∈ (-π, π]``.
    """
    R = np.asarray(R, dtype=np.float64)
    b = -np.arcsin(np.clip(R[..., 2, 0], -1.0, 1.0))
    a = np.arctan2(R[..., 2, 1], R[..., 2, 2])
    c = np.arctan2(R[..., 1, 0], R[..., 0, 0])
    # At gimbal lock (cos b = 0) a and c are coupled; put it all in c, a = 0.
    lock = np.abs(R[..., 2, 0]) > 1.0 - 1e-9
    if np.any(lock):
        a = np.where(lock, 0.0, a)
        c = np.where(lock, np.arctan2(-R[..., 0, 1], R[..., 1, 1]), c)
    return np.stack([a, b, c], axis=-1)


def axis_rotation(axis: str, angle) -> np.ndarray:
    """Rotation about a coordinate axis ``"x"``, ``"y"`` or ``"z"``; angle (...,) radians -> (..., 3, 3)."""
    angle = np.asarray(angle, dtype=np.float64)
    e = np.zeros(angle.shape + (3,))
    e[..., "xyz".index(axis)] = angle
    return euler_to_matrix(e)


def paper_rotation(noise=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Object-to-world rotation of the paper's placement with Euler noise ``(nx, ny, nz)`` (..., 3) rad.

    The paper set Blender's Euler angles to ``(π/2 + nx, ny, -π/6 + nz)`` on a ShapeNet model (+y up,
    front -z). Writing the model in our frame (+z up, front +x), ``Rx(π/2)`` times the frame change is
    ``Rz(π/2)``, so the same world placement is ``E(nx, ny, -π/6 + nz) @ Rz(π/2)``. Returns (..., 3, 3).
    """
    n = np.asarray(noise, dtype=np.float64)
    e = n + np.array([0.0, 0.0, -np.pi / 6])
    return euler_to_matrix(e) @ axis_rotation("z", np.pi / 2)


def pose_class(R) -> np.ndarray:
    """The paper's 5-way pose class of object-to-world rotations R (..., 3, 3) -> (...) int64 in 0..4."""
    R = np.asarray(R, dtype=np.float64)
    up = R[..., :, 2]
    theta = np.arccos(np.clip(up[..., 2] / np.linalg.norm(up, axis=-1), -1.0, 1.0))
    psi = np.degrees(np.arctan2(up[..., 0], up[..., 1]))
    tilt = np.select([psi < -135.0, psi < -45.0, psi < 45.0, psi < 135.0], [1, 2, 3, 4], default=1)
    return np.where(theta < UPRIGHT_TILT, 0, tilt).astype(np.int64)


@dataclass(frozen=True)
class Camera:
    """A pinhole camera; defaults are the paper's.

    ``rotation`` (3, 3) is camera-to-world (its columns are the camera's right, up and backward axes in
    world coordinates); ``fov`` the full field of view in radians of a square image.
    """

    position: tuple = CAMERA_POSITION
    euler: tuple = CAMERA_EULER
    fov: float = float(CAMERA_FOV)
    near: float = 0.05
    far: float = 20.0
    rotation: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "rotation", euler_to_matrix(self.euler))

    @property
    def forward(self) -> np.ndarray:
        """Unit viewing direction in world coordinates, (3,)."""
        return -self.rotation[:, 2]

    def to_camera(self, points) -> np.ndarray:
        """World points (..., 3) -> camera-frame points (..., 3); depth is ``-z``."""
        p = np.asarray(points, dtype=np.float64) - np.asarray(self.position)
        return p @ self.rotation

    def directions_to_camera(self, vectors) -> np.ndarray:
        """World directions (..., 3) -> camera-frame directions (..., 3)."""
        return np.asarray(vectors, dtype=np.float64) @ self.rotation

    def project(self, points) -> np.ndarray:
        """World points (..., 3) -> image coordinates (..., 2) in [0, 1]: (column, row) from the top left."""
        c = self.to_camera(points)
        t = np.tan(self.fov / 2)
        x = c[..., 0] / (-c[..., 2] * t)
        y = c[..., 1] / (-c[..., 2] * t)
        return np.stack([(x + 1) / 2, (1 - y) / 2], axis=-1)

    def ray(self, u, v) -> np.ndarray:
        """Unit world direction through image point (u, v) in [0, 1] (column, row from the top left)."""
        t = np.tan(self.fov / 2)
        d = np.array([(2 * u - 1) * t, (1 - 2 * v) * t, -1.0])
        d = self.rotation @ d
        return d / np.linalg.norm(d)

    def view_matrix(self) -> np.ndarray:
        """(4, 4) world-to-camera matrix, for column vectors."""
        V = np.eye(4)
        V[:3, :3] = self.rotation.T
        V[:3, 3] = -self.rotation.T @ np.asarray(self.position)
        return V

    def projection_matrix(self) -> np.ndarray:
        """(4, 4) OpenGL perspective projection (clip space, z in [-1, 1])."""
        f = 1.0 / np.tan(self.fov / 2)
        n, fa = self.near, self.far
        P = np.zeros((4, 4))
        P[0, 0] = f
        P[1, 1] = f
        P[2, 2] = (fa + n) / (n - fa)
        P[2, 3] = 2 * fa * n / (n - fa)
        P[3, 2] = -1.0
        return P


def front_angles(R, camera: Camera | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Azimuth and elevation of the object's front axis (+x, column 0 of R) in the camera frame.

    R: (..., 3, 3) object-to-world. Returns two (...) arrays in radians: azimuth 0 when the front faces
    the camera, positive when it turns toward the image's right, in (-π, π]; elevation positive when it
    points up in the image, in [-π/2, π/2].
    """
    camera = camera or Camera()
    f = camera.directions_to_camera(np.asarray(R, dtype=np.float64)[..., :, 0])
    azimuth = np.arctan2(f[..., 0], f[..., 2])
    elevation = np.arcsin(np.clip(f[..., 1], -1.0, 1.0))
    return azimuth, elevation
