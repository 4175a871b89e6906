# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The static-transform buffer."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vssm_ros.data.bags import bag_msg_types, bag_typestore
from vssm_ros.data.messages import tf_message
from vssm_ros.data.tf_static import StaticTransforms
from vssm_ros.errors import MessageError


def _T(rotvec, xyz):
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    T[:3, 3] = xyz
    return T


T_B_CL = _T([0.0, 0.1, 0.0], [0.10, 0.0, 0.05])     # base_link <- camera_link
T_CL_CO = _T([-np.pi / 2, 0.0, -np.pi / 2], [0.0, 0.015, 0.0])  # camera_link <- optical
T_B_IMU = _T([0.0, 0.0, np.pi], [-0.02, 0.0, 0.01])  # base_link <- imu_link


@pytest.fixture
def tree():
    tfs = StaticTransforms()
    msg = tf_message(bag_msg_types('mcap'), [('base_link', 'camera_link', T_B_CL, 5),
                                             ('camera_link', 'camera_optical', T_CL_CO, 5)])
    store = bag_typestore('mcap')
    msg = store.deserialize_cdr(store.serialize_cdr(msg, 'tf2_msgs/msg/TFMessage'),
                                'tf2_msgs/msg/TFMessage')
    assert tfs.add_message(msg) == 2
    tfs.set('/base_link', 'imu_link', T_B_IMU)  # a ROS 1 style leading slash is ignored
    return tfs


def test_chains_in_both_directions(tree):
    T_b_co = tree.lookup('base_link', 'camera_optical')
    np.testing.assert_allclose(T_b_co, T_B_CL @ T_CL_CO, atol=1e-12)
    np.testing.assert_allclose(tree.lookup('camera_optical', 'base_link'),
                               np.linalg.inv(T_B_CL @ T_CL_CO), atol=1e-12)
    # Across branches: optical <- imu goes up to base_link and down again.
    np.testing.assert_allclose(tree.lookup('camera_optical', 'imu_link'),
                               np.linalg.inv(T_B_CL @ T_CL_CO) @ T_B_IMU, atol=1e-12)
    np.testing.assert_array_equal(tree.lookup('imu_link', 'imu_link'), np.eye(4))
    assert tree.frames == ['base_link', 'camera_link', 'camera_optical', 'imu_link']


def test_later_transform_replaces_earlier(tree):
    tree.set('base_link', 'imu_link', np.eye(4))
    np.testing.assert_array_equal(tree.lookup('base_link', 'imu_link'), np.eye(4))
    assert len(tree) == 3


def test_no_path_names_the_frames(tree):
    tree.set('world', 'marker', np.eye(4))
    with pytest.raises(MessageError, match=r"no static transform chain from 'marker' to "
                                           r"'base_link'; frames known from /tf_static: "
                                           r'base_link, camera_link, camera_optical, imu_link, '
                                           r'marker, world'):
        tree.lookup('base_link', 'marker')
    assert not tree.can_transform('base_link', 'lidar')
    with pytest.raises(MessageError, match='two different frame names'):
        tree.set('a', 'a', np.eye(4))
