"""Rigid transforms and quaternions (ROS convention: x, y, z, w), vectorised, no ROS imports.

``Transform(rotation, translation)`` maps points from a child frame into its parent frame:
``p_parent = R @ p_child + t``, the meaning of a ROS ``TransformStamped`` whose header.frame_id is
the parent and child_frame_id the child.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def quat_to_matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    """3x3 rotation of a (normalised here) quaternion."""
    q = np.array([x, y, z, w], np.float64)
    n = np.linalg.norm(q)
    if not np.isfinite(n) or n < 1e-12:
        raise ValueError(f"invalid quaternion {q.tolist()}")
    x, y, z, w = q / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quat(r: np.ndarray) -> tuple[float, float, float, float]:
    """Quaternion (x, y, z, w) with w >= 0 of a 3x3 rotation matrix (Shepperd's method)."""
    m = np.asarray(r, np.float64)
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = 2.0 * np.sqrt(tr + 1.0)
        w, x, y, z = 0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        w, x, y, z = (m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        w, x, y, z = (m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        w, x, y, z = (m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s
    q = np.array([x, y, z, w])
    q /= np.linalg.norm(q)
    if q[3] < 0:
        q = -q
    return tuple(float(v) for v in q)


def rotation_z(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rotation_y(pitch: float) -> np.ndarray:
    c, s = np.cos(pitch), np.sin(pitch)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


# Columns: the optical frame's x (right), y (down), z (forward) in a REP 103 body frame
# (x forward, y left, z up).
OPTICAL_IN_BODY = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


@dataclass(frozen=True)
class Transform:
    """p_parent = rotation @ p_child + translation."""

    rotation: np.ndarray
    translation: np.ndarray

    @staticmethod
    def identity() -> Transform:
        return Transform(np.eye(3), np.zeros(3))

    @staticmethod
    def from_quat(translation, quat_xyzw) -> Transform:
        return Transform(quat_to_matrix(*quat_xyzw), np.asarray(translation, np.float64))

    def quat(self) -> tuple[float, float, float, float]:
        return matrix_to_quat(self.rotation)

    def __matmul__(self, other: Transform) -> Transform:
        """Composition: (self @ other) maps other's child frame into self's parent frame."""
        return Transform(self.rotation @ other.rotation, self.rotation @ other.translation + self.translation)

    def inverse(self) -> Transform:
        rt = self.rotation.T
        return Transform(rt, -rt @ self.translation)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Transform (..., 3) points (NaN stays NaN)."""
        p = np.asarray(points)
        out = p @ self.rotation.T.astype(p.dtype, copy=False)
        out += self.translation.astype(p.dtype, copy=False)
        return out

    def matrix(self) -> np.ndarray:
        m = np.eye(4)
        m[:3, :3], m[:3, 3] = self.rotation, self.translation
        return m
