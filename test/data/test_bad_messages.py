# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Conversion of bad messages (vssm_ros/data/messages.py, frame_from_messages): every failure
is a MessageError with the bad-input reason the replay and the node count it under (issue
17), also for fields of the wrong type and stamps out of range, never another exception."""

import warnings

import numpy as np
import pytest

from vssm_ros.config import CameraConfig
from vssm_ros.data import messages as M
from vssm_ros.data.bags import bag_msg_types
from vssm_ros.data.sources import frame_from_messages
from vssm_ros.errors import MessageError

TYPES = bag_msg_types('mcap')
S = 1_700_000_000_123_456_789
K = np.array([[40.0, 0.0, 16.0], [0.0, 40.0, 12.0], [0.0, 0.0, 1.0]])
TOPICS = {'rgb': '/cam/rgb', 'depth': '/cam/depth', 'camera_info': '/cam/info'}


def _triple(w=32, h=24):
    rgb = M.image_msg(TYPES, np.full((h, w, 3), 100, np.uint8), 'rgb8', S, 'cam')
    depth = M.image_msg(TYPES, np.full((h, w), 1500, np.uint16), '16UC1', S, 'cam')
    return rgb, depth, M.camera_info_msg(TYPES, K, w, h, S, 'cam')


def _reason(rgb, depth, info):
    with pytest.raises(M.BadMessage) as err:
        frame_from_messages(S, rgb, depth, info, CameraConfig(), np.eye(4), TOPICS)
    return err.value.reason, str(err.value)


def test_a_valid_triple_converts():
    frame = frame_from_messages(S, *_triple(), CameraConfig(), np.eye(4), TOPICS)
    assert frame.stamp_ns == S and np.allclose(frame.depth, 1.5) and frame.rgb[0, 0, 0] == 100


@pytest.mark.parametrize('damage, reason, text', [
    (lambda r, d, i: setattr(r, 'encoding', 'yuv422'), 'rgb_encoding',
     "/cam/rgb: unsupported image encoding 'yuv422'"),
    (lambda r, d, i: setattr(d, 'encoding', 'rgb8'), 'depth_encoding',
     "/cam/depth: expected a depth image (16UC1 or 32FC1), got encoding 'rgb8'"),
    (lambda r, d, i: setattr(d, 'data', d.data[:100]), 'depth_data_size',
     '/cam/depth: 16UC1 image 32x24: data has 100 bytes, expected step x height = 64 x 24'),
    (lambda r, d, i: setattr(r, 'step', 10), 'rgb_step', 'step 10 is smaller than'),
    (lambda r, d, i: setattr(r, 'width', 0), 'rgb_empty', 'rgb8 image has size 0x24'),
    (lambda r, d, i: setattr(i, 'k', np.zeros(9)), 'camera_info_k',
     '/cam/info: camera_info K is all zero'),
    (lambda r, d, i: setattr(i, 'k', np.full(9, np.nan)), 'camera_info_k', 'non-finite'),
    (lambda r, d, i: setattr(i, 'width', 0), 'camera_info_size', 'image size 0x24'),
    (lambda r, d, i: setattr(i, 'width', 64), 'camera_info_size_mismatch',
     'camera_info on /cam/info is for 64x24 images but the images are 32x24'),
    (lambda r, d, i: setattr(r, 'data', None), 'rgb_malformed',
     '/cam/rgb: message is malformed: TypeError'),
    (lambda r, d, i: setattr(r, 'height', 'twenty'), 'rgb_malformed', 'ValueError'),
    (lambda r, d, i: setattr(i, 'k', ['a'] * 9), 'camera_info_malformed', 'ValueError'),
    (lambda r, d, i: setattr(r, 'step', float('nan')), 'rgb_malformed', 'ValueError'),
])
def test_each_failure_has_its_reason(damage, reason, text):
    msgs = _triple()
    damage(*msgs)
    got, message = _reason(*msgs)
    assert got == reason and text in message


def test_colour_and_depth_of_different_sizes():
    rgb, _, info = _triple()
    _, depth, _ = _triple(16, 12)
    assert _reason(rgb, depth, info)[0] == 'frame_size_mismatch'


@pytest.mark.parametrize('sec, nanosec', [(1, 10**9), (1, 2**32 - 1), (-5, 0), (2**40, 0),
                                          (None, 0), (1.5e9, float('nan'))])
def test_invalid_stamps_are_bad_messages(sec, nanosec):
    msg = M.imu_msg(TYPES, S, 'imu', np.zeros(3), np.zeros(3))
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
    with pytest.raises(M.BadMessage) as err:
        M.header_stamp_ns(msg)
    assert err.value.reason == 'stamp'
    with pytest.raises(M.BadMessage):
        M.imu_from_msg(msg)


def test_valid_stamps_up_to_unsigned_32_bit_seconds():
    stamp = M.ns_to_stamp(TYPES, 0)
    stamp.sec = 2**32 - 1
    assert M.stamp_to_ns(stamp) == (2**32 - 1) * 10**9 < 2**63


def test_a_header_less_message_and_a_malformed_imu():
    with pytest.raises(M.BadMessage, match='has no header stamp'):
        M.header_stamp_ns(object())
    msg = M.imu_msg(TYPES, S, 'imu', np.zeros(3), np.zeros(3))
    msg.angular_velocity = None
    with pytest.raises(M.BadMessage) as err:
        M.imu_from_msg(msg)
    assert err.value.reason == 'malformed' and isinstance(err.value, MessageError)


def test_reason_of_and_stamp_ahead():
    assert M.reason_of(MessageError('x'), 'frame_invalid') == 'frame_invalid'
    assert M.reason_of(M.BadMessage('x', 'k')) == 'k'
    assert M.stamp_ahead_s(S + 11 * 10**9, S) == pytest.approx(11.0)
    assert M.stamp_ahead_s(S + 9 * 10**9, S) is None
    assert M.stamp_ahead_s(S, 0) is None   # simulated time before the first /clock


def test_any_bytes_as_float_depth_convert_without_warnings():
    # Random bytes hold signalling NaNs and huge values: invalid depth, not a RuntimeWarning.
    raw = np.random.default_rng(0).integers(0, 256, 24 * 32 * 4, dtype=np.uint8)
    msg = M.image_msg(TYPES, np.zeros((24, 32), np.float32), '32FC1', S, 'cam')
    msg.data = raw
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        d = M.depth_from_image(msg, depth_scale=0.001)
    assert d.shape == (24, 32) and (np.isnan(d) | (d > 0)).all()


def test_the_bag_reader_skips_future_and_repeated_stamps(tmp_path):
    # The replay's intake (sources/bag.py): a frame stamped decades after its log time would
    # hold back every later frame; a repeated IMU stamp is counted apart from one going back.
    from vssm_ros.data.bags import write_bag
    from vssm_ros.data.sources import open_source
    from vssm_ros.types import Frame

    msgs = []
    for k in range(4):
        t = S + k * 50_000_000
        stamp = t + (10 * 365 * 86400 * 10**9 if k == 1 else 0)   # ten years ahead
        for topic, msg in zip(('/cam/rgb/image', '/cam/depth/image', '/cam/depth/camera_info'),
                              _triple()):
            msg.header.stamp = M.ns_to_stamp(TYPES, stamp)
            typ = 'sensor_msgs/msg/CameraInfo' if topic.endswith('info') else \
                'sensor_msgs/msg/Image'
            msgs.append((topic, typ, t, msg))
        for j in range(1 + (k == 3)):   # the last IMU sample arrives twice
            msgs.append(('/imu', 'sensor_msgs/msg/Imu', t + 1000 + j,
                         M.imu_msg(TYPES, t + 1000, 'imu', [0, 0, 9.8], [0, 0, 0])))
    msgs.sort(key=lambda m: m[2])
    write_bag(tmp_path / 'b', 'mcap', msgs)
    src = open_source(tmp_path / 'b')
    frames = [x for x in src if isinstance(x, Frame)]
    assert [f.stamp_ns for f in frames] == [S, S + 100_000_000, S + 150_000_000]
    assert dict(src.info['skipped']) == {'rgb_stamp_future': 1, 'depth_stamp_future': 1,
                                         'camera_info_stamp_future': 1,
                                         'imu_stamp_repeated': 1}
    assert 'after its log time' in src.info['skip_examples']['rgb_stamp_future'][0]
