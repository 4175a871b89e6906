# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Message conversions with rosbags' classes (ROS 2 Jazzy and ROS 1 Noetic typestores) and a
duck-typed stand-in for rclpy's classes."""

import array
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from vssm_ros.data import messages as M
from vssm_ros.data.bags import bag_msg_types, bag_typestore
from vssm_ros.data.transforms import pose_to_matrix
from vssm_ros.errors import MessageError

STORES = ['mcap', 'ros1']  # Jazzy (CDR) and Noetic (ROS 1 serialisation)
STAMP = 1_700_000_123_456_789_012


def _round_trip(fmt, msg, msgtype):
    """Serialise and deserialise with the format's typestore."""
    store = bag_typestore(fmt)
    if fmt == 'ros1':
        return store.deserialize_ros1(store.serialize_ros1(msg, msgtype), msgtype)
    return store.deserialize_cdr(store.serialize_cdr(msg, msgtype), msgtype)


def _fake_image(pixels_bytes, encoding, h, w, step, big=0):
    header = SimpleNamespace(stamp=SimpleNamespace(sec=1, nanosec=2), frame_id='cam')
    return SimpleNamespace(header=header, height=h, width=w, encoding=encoding,
                           is_bigendian=big, step=step, data=pixels_bytes)


@pytest.mark.parametrize('fmt', STORES)
@pytest.mark.parametrize('encoding', list(M.IMAGE_ENCODINGS))
def test_image_round_trip_every_encoding(fmt, encoding):
    rng = np.random.default_rng(0)
    dtype, c = M.IMAGE_ENCODINGS[encoding]
    shape = (5, 7) if c == 1 else (5, 7, c)
    if dtype.kind == 'f':
        px = rng.uniform(0, 5, shape).astype(dtype)
    else:
        px = rng.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    types = bag_msg_types(fmt)
    msg = _round_trip(fmt, M.image_msg(types, px, encoding, STAMP, 'cam'),
                      'sensor_msgs/msg/Image')
    assert msg.encoding == encoding and msg.header.frame_id == 'cam'
    assert M.header_stamp_ns(msg) == STAMP
    out = M.image_to_numpy(msg)
    assert out.dtype == dtype and np.array_equal(out, px)


def test_image_row_padding_and_big_endian():
    px = np.array([[1, 256, 65535], [4000, 0, 7]], dtype=np.uint16)
    rows = [px[r].astype('>u2').tobytes() + b'\xff' * 4 for r in range(2)]  # 4 padding bytes
    msg = _fake_image(b''.join(rows), '16UC1', 2, 3, step=10, big=1)
    np.testing.assert_array_equal(M.image_to_numpy(msg), px)
    depth = M.depth_from_image(msg)
    np.testing.assert_allclose(depth, [[0.001, 0.256, 65.535], [4.0, np.nan, 0.007]], rtol=1e-6)


def test_colour_conversions():
    bgr = np.array([[[1, 2, 3], [4, 5, 6]]], dtype=np.uint8)
    msg = _fake_image(bgr.tobytes(), 'bgr8', 1, 2, 6)
    np.testing.assert_array_equal(M.rgb_from_image(msg), [[[3, 2, 1], [6, 5, 4]]])
    bgra = np.array([[[1, 2, 3, 9]]], dtype=np.uint8)
    np.testing.assert_array_equal(M.rgb_from_image(_fake_image(bgra.tobytes(), 'bgra8', 1, 1, 4)),
                                  [[[3, 2, 1]]])
    mono = _fake_image(bytes([7, 200]), 'mono8', 1, 2, 2)
    np.testing.assert_array_equal(M.rgb_from_image(mono), [[[7, 7, 7], [200, 200, 200]]])
    with pytest.raises(MessageError, match='expected a colour image, got depth encoding'):
        M.rgb_from_image(_fake_image(bytes(4), '16UC1', 1, 2, 4))


def test_depth_conventions():
    raw = np.array([[0, 1000, 2500, 65535]], dtype=np.uint16)
    msg = _fake_image(raw.astype('<u2').tobytes(), '16UC1', 1, 4, 8)
    np.testing.assert_allclose(M.depth_from_image(msg, max_depth=10.0),
                               [[np.nan, 1.0, 2.5, np.nan]])
    np.testing.assert_allclose(M.depth_from_image(msg, depth_scale=5000.0),
                               [[np.nan, 0.2, 0.5, 13.107]], rtol=1e-6)
    f = np.array([[1.5, np.nan, np.inf, 0.0, -1.0, 0.05]], dtype=np.float32)
    fmsg = _fake_image(f.astype('<f4').tobytes(), '32FC1', 1, 6, 24)
    out = M.depth_from_image(fmsg, min_depth=0.1)
    assert out.dtype == np.float32 and out[0, 0] == np.float32(1.5)
    assert np.isnan(out[0, 1:]).all()
    with pytest.raises(MessageError, match="expected a depth image .* got encoding 'rgb8'"):
        M.depth_from_image(_fake_image(bytes(3), 'rgb8', 1, 1, 3))


def test_bad_images_name_the_problem():
    with pytest.raises(MessageError, match="unsupported image encoding 'yuv422'"):
        M.image_to_numpy(_fake_image(bytes(8), 'yuv422', 2, 2, 4))
    with pytest.raises(MessageError, match=r'data has 11 bytes, expected step x height = 6 x 2'):
        M.image_to_numpy(_fake_image(bytes(11), 'rgb8', 2, 2, 6))
    with pytest.raises(MessageError, match='step 5 is smaller than width x bytes per pixel = 6'):
        M.image_to_numpy(_fake_image(bytes(10), 'rgb8', 2, 2, 5))
    with pytest.raises(MessageError, match='needs uint16 pixels, got float32'):
        M.image_msg(bag_msg_types('mcap'), np.zeros((2, 2), np.float32), '16UC1', 0, 'c')


@pytest.mark.parametrize('fmt', STORES)
def test_camera_info_round_trip_and_checks(fmt):
    types = bag_msg_types(fmt)
    K = np.array([[535.4, 0, 320.1], [0, 539.2, 247.6], [0, 0, 1]])
    msg = _round_trip(fmt, M.camera_info_msg(types, K, 640, 480, STAMP, 'cam'),
                      'sensor_msgs/msg/CameraInfo')
    K2, w, h = M.camera_info_to_K(msg)
    assert (w, h) == (640, 480) and np.array_equal(K2, K)
    zero = M.camera_info_msg(types, np.zeros((3, 3)), 640, 480, 0, 'cam')
    with pytest.raises(MessageError, match='all zero: the camera is not calibrated'):
        M.camera_info_to_K(zero)
    bad = M.camera_info_msg(types, np.diag([-1.0, 2.0, 1.0]), 640, 480, 0, 'cam')
    with pytest.raises(MessageError, match='fx=-1, fy=2; both must be > 0'):
        M.camera_info_to_K(bad)


@pytest.mark.parametrize('fmt', STORES)
def test_imu_pose_odometry_tf_round_trip(fmt):
    types = bag_msg_types(fmt)
    rng = np.random.default_rng(3)
    acc, gyro = rng.normal(size=3), rng.normal(size=3)
    imu = _round_trip(fmt, M.imu_msg(types, STAMP, 'imu', acc, gyro), 'sensor_msgs/msg/Imu')
    s = M.imu_from_msg(imu)
    assert s.stamp_ns == STAMP and np.array_equal(s.acc, acc) and np.array_equal(s.gyro, gyro)
    assert imu.orientation_covariance[0] == -1.0

    q = rng.normal(size=4)
    T = pose_to_matrix(rng.normal(size=3), q / np.linalg.norm(q))
    ps = _round_trip(fmt, M.pose_stamped_msg(types, STAMP, 'world', T),
                     'geometry_msgs/msg/PoseStamped')
    p = M.pose_from_msg(ps)
    assert p.stamp_ns == STAMP and p.v_world is None
    np.testing.assert_allclose(p.T_world_body, T, atol=1e-14)

    v = np.array([1.0, -2.0, 0.5])
    cov = np.diag(np.arange(1.0, 7.0))
    od = _round_trip(fmt, M.odometry_msg(types, STAMP, 'odom', 'base_link', T, cov, v),
                     'nav_msgs/msg/Odometry')
    p = M.pose_from_msg(od)
    np.testing.assert_allclose(p.T_world_body, T, atol=1e-14)
    np.testing.assert_allclose(p.v_world, v, atol=1e-14)
    np.testing.assert_array_equal(np.asarray(od.pose.covariance).reshape(6, 6), cov)
    # The twist is in the child frame, as nav_msgs/Odometry specifies.
    np.testing.assert_allclose([od.twist.twist.linear.x, od.twist.twist.linear.y,
                                od.twist.twist.linear.z], T[:3, :3].T @ v, atol=1e-14)

    tf = _round_trip(fmt, M.tf_message(types, [('base_link', 'cam', T, STAMP)]),
                     'tf2_msgs/msg/TFMessage')
    assert tf.transforms[0].child_frame_id == 'cam'
    p = M.pose_from_msg(tf.transforms[0])
    np.testing.assert_allclose(p.T_world_body, T, atol=1e-14)


@pytest.mark.parametrize('fmt', STORES)
def test_pointcloud2_round_trip(fmt):
    types = bag_msg_types(fmt)
    rng = np.random.default_rng(4)
    xyz = rng.normal(size=(50, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (50, 3)).astype(np.uint8)
    prob = rng.uniform(size=50).astype(np.float32)
    msg = _round_trip(fmt, M.pointcloud2_msg(types, xyz, rgb, prob, STAMP, 'map'),
                      'sensor_msgs/msg/PointCloud2')
    assert [f.name for f in msg.fields] == ['x', 'y', 'z', 'rgb', 'occupancy']
    assert msg.point_step == 20 and msg.width == 50 and msg.is_dense
    out = M.pointcloud2_to_numpy(msg)
    np.testing.assert_array_equal(out['xyz'], xyz)
    np.testing.assert_array_equal(out['rgb'], rgb)
    np.testing.assert_array_equal(out['occupancy'], prob)
    # RViz reads rgb as 0x00RRGGBB in the float's bits.
    assert M.pack_rgb(np.array([[255, 0, 1]], np.uint8)).view(np.uint32)[0] == 0xFF0001


def test_stamps():
    types = bag_msg_types('mcap')
    t = M.ns_to_stamp(types, STAMP)
    assert (t.sec, t.nanosec) == (1_700_000_123, 456_789_012)
    assert M.stamp_to_ns(t) == STAMP
    assert M.stamp_to_ns(SimpleNamespace(secs=2, nsecs=5)) == 2_000_000_005
    with pytest.raises(MessageError, match='negative'):
        M.ns_to_stamp(types, -1)


def test_ros1_classes_get_their_own_spellings():
    info = M.camera_info_msg(bag_msg_types('ros1'), np.eye(3), 4, 3, 0, 'c')
    assert hasattr(info, 'K') and info.header.seq == 0
    assert hasattr(M.camera_info_msg(bag_msg_types('mcap'), np.eye(3), 4, 3, 0, 'c'), 'k')


class _Strict:
    """Stands in for an rclpy message class: keyword construction with defaults, and the
    rclpy array types checked (uint8[] must be array.array('B'), float64[] a list of float)."""

    def __init__(self, **kw):
        for k, v in kw.items():
            if k == 'data':
                assert isinstance(v, array.array) and v.typecode == 'B', type(v)
            if k == 'd':
                assert isinstance(v, list) and all(isinstance(x, float) for x in v)
            if k in ('height', 'width', 'step', 'sec', 'nanosec'):
                assert type(v) is int, (k, type(v))
            setattr(self, k, v)


def test_rclpy_style_classes_via_from_modules():
    names = {name: type(name, (_Strict,), {}) for name in M.TYPE_NAMES}
    modules = {}
    for name, full in M.TYPE_NAMES.items():
        modules.setdefault(full.split('/')[0], SimpleNamespace())
        setattr(modules[full.split('/')[0]], full.split('/')[2], names[name])
    types = M.MsgTypes.from_modules(modules)
    assert types.backend == 'rclpy' and types.Image is names['Image']
    px = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    msg = M.image_msg(types, px, 'rgb8', STAMP, 'cam')
    assert msg.is_bigendian == int(sys.byteorder == 'big')
    np.testing.assert_array_equal(M.rgb_from_image(msg), px)
    info = M.camera_info_msg(types, np.eye(3) * 2 + np.diag([0, 0, -1]), 4, 2, STAMP, 'cam')
    assert M.camera_info_to_K(info)[1:] == (4, 2)
    cloud = M.pointcloud2_msg(types, np.zeros((3, 3)), None, None, STAMP, 'map')
    assert M.pointcloud2_to_numpy(cloud)['xyz'].shape == (3, 3)
    with pytest.raises(MessageError, match='tf2_msgs/msg/TFMessage is not available'):
        M.tf_message(M.MsgTypes.from_modules({}), [])
