# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""NumPy rigid transforms (xyzw quaternions)."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vssm_ros.data.transforms import (invert, matrix_to_pose, matrix_to_quat, pose_to_matrix,
                                      quat_to_matrix, xyzquat_to_matrix)
from vssm_ros.errors import MessageError


def _random_quats(n, seed=0):
    q = np.random.default_rng(seed).normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q * np.sign(q[:, 3:])


def test_quat_to_matrix_matches_scipy_xyzw():
    q = _random_quats(200)
    np.testing.assert_allclose(quat_to_matrix(q), Rotation.from_quat(q).as_matrix(), atol=1e-14)


def test_matrix_to_quat_inverts_including_near_180_degrees():
    q = _random_quats(200, seed=1)
    np.testing.assert_allclose(matrix_to_quat(quat_to_matrix(q)), q, atol=1e-14)
    for axis in np.eye(3):
        R = Rotation.from_rotvec(axis * (np.pi - 1e-9)).as_matrix()
        q180 = matrix_to_quat(R)
        np.testing.assert_allclose(quat_to_matrix(q180), R, atol=1e-12)
        assert abs(np.linalg.norm(q180) - 1) < 1e-14


def test_pose_matrix_round_trip_and_invert():
    q = _random_quats(1, seed=2)[0]
    T = pose_to_matrix([1.0, -2.0, 0.5], q)
    xyz, q2 = matrix_to_pose(T)
    np.testing.assert_allclose(xyz, [1.0, -2.0, 0.5])
    np.testing.assert_allclose(q2, q, atol=1e-15)
    np.testing.assert_allclose(invert(T) @ T, np.eye(4), atol=1e-15)
    np.testing.assert_allclose(invert(T), np.linalg.inv(T), atol=1e-14)
    np.testing.assert_allclose(xyzquat_to_matrix([1.0, -2.0, 0.5, *q]), T)


def test_bad_inputs_raise_message_error():
    with pytest.raises(MessageError, match='norm'):
        quat_to_matrix([0.0, 0.0, 0.0, 0.0])
    with pytest.raises(MessageError, match='4x4'):
        invert(np.eye(3))
    with pytest.raises(MessageError, match='7 numbers'):
        xyzquat_to_matrix([0.0] * 6)
