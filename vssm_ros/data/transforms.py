# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Rigid transforms in NumPy (float64): quaternions xyzw (ROS order) and 4x4 matrices.

The data layer needs these for message conversion and extrinsics without importing torch;
``vssm_ros.core.lie`` has the differentiable versions for the engine.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from vssm_ros.errors import MessageError


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrix of a quaternion (x, y, z, w); the quaternion is normalised first.

    Shape: q (..., 4) -> (..., 3, 3).

    Raises:
        MessageError: a quaternion of (near) zero norm or with non-finite values.
    """
    q = np.asarray(q, dtype=np.float64)
    if q.shape[-1] != 4:
        raise MessageError(f'quaternion needs 4 numbers (x, y, z, w), got shape {q.shape}')
    n = np.linalg.norm(q, axis=-1, keepdims=True)
    if not np.all(np.isfinite(n)) or np.any(n < 1e-9):
        raise MessageError(f'quaternion of norm {np.min(n):.3g} cannot be a rotation')
    x, y, z, w = np.moveaxis(q / n, -1, 0)
    R = np.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
    ], axis=-1)
    return R.reshape(q.shape[:-1] + (3, 3))


def matrix_to_quat(R: np.ndarray) -> np.ndarray:
    """Quaternion (x, y, z, w) with w >= 0 of a rotation matrix.

    Uses the largest of the four candidate denominators (Shepperd's method) so that it stays
    accurate near 180 degrees.

    Shape: R (..., 3, 3) -> (..., 4).
    """
    R = np.asarray(R, dtype=np.float64)
    if R.shape[-2:] != (3, 3):
        raise MessageError(f'rotation matrix must be 3x3, got shape {R.shape}')
    batch = R.shape[:-2]
    R = R.reshape(-1, 3, 3)
    m00, m11, m22 = R[:, 0, 0], R[:, 1, 1], R[:, 2, 2]
    # Four candidates for 4 * (component)^2; pick the largest per matrix.
    cand = np.stack([1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22,
                     1 + m00 + m11 + m22], axis=-1)
    s = 2.0 * np.sqrt(np.maximum(cand, 1e-300))  # (N, 4)
    r = R
    d01, d02, d12 = r[:, 0, 1] + r[:, 1, 0], r[:, 0, 2] + r[:, 2, 0], r[:, 1, 2] + r[:, 2, 1]
    a0, a1, a2 = r[:, 2, 1] - r[:, 1, 2], r[:, 0, 2] - r[:, 2, 0], r[:, 1, 0] - r[:, 0, 1]
    s0, s1, s2, s3 = s.T
    options = np.stack([
        np.stack([s0 / 4, d01 / s0, d02 / s0, a0 / s0], axis=-1),
        np.stack([d01 / s1, s1 / 4, d12 / s1, a1 / s1], axis=-1),
        np.stack([d02 / s2, d12 / s2, s2 / 4, a2 / s2], axis=-1),
        np.stack([a0 / s3, a1 / s3, a2 / s3, s3 / 4], axis=-1),
    ], axis=1)  # (N, 4 candidates, 4)
    k = np.argmax(cand, axis=-1)
    q = options[np.arange(R.shape[0]), k]
    q *= np.where(q[:, 3:4] < 0, -1.0, 1.0)
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    return q.reshape(batch + (4,))


def pose_to_matrix(xyz: np.ndarray, q: np.ndarray) -> np.ndarray:
    """4x4 homogeneous transform from a translation and a quaternion (x, y, z, w).

    Shape: xyz (3,), q (4,) -> (4, 4).
    """
    T = np.eye(4)
    T[:3, :3] = quat_to_matrix(q)
    T[:3, 3] = np.asarray(xyz, dtype=np.float64).reshape(3)
    return T


def matrix_to_pose(T: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Translation and quaternion (x, y, z, w) of a 4x4 transform.

    Shape: T (4, 4) -> xyz (3,), q (4,).
    """
    T = as_transform(T)
    return T[:3, 3].copy(), matrix_to_quat(T[:3, :3])


def invert(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid transform (uses R^T, not a general matrix inverse).

    Shape: (4, 4) -> (4, 4).
    """
    T = as_transform(T)
    out = np.eye(4)
    out[:3, :3] = T[:3, :3].T
    out[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return out


def as_transform(T: np.ndarray, name: str = 'transform') -> np.ndarray:
    """``T`` as a float64 4x4 array, or MessageError naming ``name`` and the shape.

    Shape: (4, 4).
    """
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise MessageError(f'{name} must be a 4x4 matrix, got shape {T.shape}')
    return T


def xyzquat_to_matrix(v) -> np.ndarray:
    """4x4 transform from 7 numbers x y z qx qy qz qw (the config's extrinsics format).

    Shape: (7,) -> (4, 4).
    """
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    if v.shape != (7,):
        raise MessageError(f'a pose needs 7 numbers (x y z qx qy qz qw), got {v.size}')
    return pose_to_matrix(v[:3], v[3:])


# Blackbird-style NED world / forward-right-down body frames -> z-up / forward-left-up (REP-103):
# a rotation of 180 degrees about x, the same for both frames and its own inverse.
R_FLU_FRD = np.diag([1.0, -1.0, -1.0])
"""Rotation from forward-right-down (NED) axes to forward-left-up (z-up) axes. Shape: (3, 3)."""


def ned_pose_to_zup(T_ned_frd: np.ndarray) -> np.ndarray:
    """A body pose given as forward-right-down body in a NED world, as forward-left-up body in
    the z-up world that shares the NED world's origin and x axis.

    Shape: (4, 4) -> (4, 4).
    """
    C = np.eye(4)
    C[:3, :3] = R_FLU_FRD
    return C @ as_transform(T_ned_frd, 'NED pose') @ C


def frd_to_flu(v: np.ndarray) -> np.ndarray:
    """A vector (velocity, specific force, angular rate) from forward-right-down (or NED) axes
    to forward-left-up (or z-up) axes.

    Shape: (..., 3) -> (..., 3).
    """
    return np.asarray(v, dtype=np.float64) @ R_FLU_FRD.T
