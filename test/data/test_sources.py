# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Replay sources: round trips through every bag format, auto-detection, bad inputs."""

import re

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vssm_ros.config import TopicsConfig, VssmConfig, load_config
from vssm_ros.data import messages as M
from vssm_ros.data.bags import (BAG_FORMATS, BagLayout, bag_msg_types, stream_messages,
                                write_bag, write_stream)
from vssm_ros.data.sources import BagSource, TumSource, open_source
from vssm_ros.data.tum import write_tum_folder
from vssm_ros.errors import BagError, MessageError, SourceError
from vssm_ros.types import Frame, ImuSample, PoseSample

H, W = 12, 16
K = np.array([[20.0, 0, 7.5], [0, 21.0, 5.5], [0, 0, 1]])
T0 = 1_600_000_000_000_000_000


def _T(rotvec, xyz):
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    T[:3, 3] = xyz
    return T


T_BODY_CAM = _T([-1.2, 0.1, -1.5], [0.1, 0.02, -0.03])


def _stream(n_frames=6, seed=0, T_body_cam=T_BODY_CAM):
    """Frames at 20 Hz (rgb8 + depth in whole millimetres, some NaN), IMU at 200 Hz, ground
    truth at 100 Hz, in stamp order."""
    rng = np.random.default_rng(seed)
    items = []
    for k in range(n_frames * 10):
        t = T0 + k * 5_000_000
        items.append(ImuSample(t + 1, rng.normal(size=3), rng.normal(size=3)))
        if k % 2 == 0:
            items.append(PoseSample(t + 2, _T(rng.normal(size=3), rng.normal(size=3))))
        if k % 10 == 0:
            depth = (rng.integers(200, 5000, (H, W)) / 1000.0).astype(np.float32)
            depth[rng.uniform(size=(H, W)) < 0.1] = np.nan
            rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
            items.append(Frame(t, rgb, depth, K.copy(), T_body_cam.copy()))
    return items


def _path(tmp_path, fmt, name='seq'):
    return tmp_path / (f'{name}.bag' if fmt == 'ros1' else name)


def _split(items):
    return tuple([x for x in items if isinstance(x, c)] for c in (Frame, ImuSample, PoseSample))


@pytest.mark.parametrize('fmt', BAG_FORMATS)
def test_round_trip_every_format(tmp_path, fmt):
    items = _stream()
    path = _path(tmp_path, fmt)
    write_stream(path, fmt, items)
    src = open_source(path)
    assert isinstance(src, BagSource) and src.has_imu and src.has_frames
    assert src.info['kind'] == ('ros1 bag' if fmt == 'ros1' else 'ros2 bag')
    assert src.info['topics'] == {
        'rgb': '/camera/color/image_raw', 'depth': '/camera/aligned_depth_to_color/image_raw',
        'camera_info': '/camera/aligned_depth_to_color/camera_info', 'imu': '/imu/data',
        'ground_truth': '/ground_truth/pose'}
    assert src.info['T_body_cam_source'] == \
        '/tf_static: base_link <- camera_color_optical_frame'
    out = list(src)
    assert dict(src.info['skipped']) == {}
    stamps = [x.stamp_ns for x in out]
    assert stamps == sorted(stamps)  # time order
    fr_in, imu_in, gt_in = _split(items)
    fr_out, imu_out, gt_out = _split(out)
    assert [f.stamp_ns for f in fr_out] == [f.stamp_ns for f in fr_in]
    for a, b in zip(fr_in, fr_out):
        assert b.rgb.dtype == np.uint8 and np.array_equal(b.rgb, a.rgb)
        # Whole millimetres survive 16UC1 exactly, as mm / 1000 in float32; NaN stays NaN.
        mm = np.where(np.isnan(a.depth), 0, np.rint(a.depth * 1000)).astype(np.uint16)
        expect = np.where(mm > 0, mm.astype(np.float32) / np.float32(1000), np.nan)
        assert b.depth.dtype == np.float32 and np.array_equal(b.depth, expect, equal_nan=True)
        assert np.array_equal(b.K, K)
        np.testing.assert_allclose(b.T_body_cam, T_BODY_CAM, atol=1e-15)
    assert len(imu_out) == len(imu_in) == 60
    for a, b in zip(imu_in, imu_out):
        assert a.stamp_ns == b.stamp_ns
        assert np.array_equal(a.acc, b.acc) and np.array_equal(a.gyro, b.gyro)  # bit-exact
    assert [p.stamp_ns for p in gt_out] == [p.stamp_ns for p in gt_in]
    for a, b in zip(gt_in, gt_out):
        np.testing.assert_allclose(b.T_world_body, a.T_world_body, atol=1e-14)
    assert [p.stamp_ns for p in src.ground_truth()] == [p.stamp_ns for p in gt_in]
    assert len(list(src)) == len(out)  # iterable again


def test_32fc1_depth_and_rotated_imu(tmp_path):
    T_body_imu = _T([0.3, -0.2, 2.0], [0.01, 0.0, 0.0])
    layout = BagLayout(depth_encoding='32FC1', T_body_imu=T_body_imu, rgb_info_topic='',
                       ground_truth_type='odometry')
    items = _stream(n_frames=3)
    for x in items:
        if isinstance(x, PoseSample):
            x.v_world = np.array([1.0, 2.0, 3.0])
    write_stream(tmp_path / 'seq', 'mcap', items, layout)
    src = open_source(tmp_path / 'seq')
    assert src.info['T_body_imu_source'] == '/tf_static: base_link <- imu_link'
    fr_in, imu_in, gt_in = _split(items)
    fr_out, imu_out, gt_out = _split(list(src))
    for a, b in zip(fr_in, fr_out):
        assert np.array_equal(b.depth, a.depth, equal_nan=True)  # float32 metres, exact
    for a, b in zip(imu_in, imu_out):  # rotated into imu_link when written, back when read
        np.testing.assert_allclose(b.acc, a.acc, atol=1e-14)
        np.testing.assert_allclose(b.gyro, a.gyro, atol=1e-14)
    for a, b in zip(gt_in, gt_out):
        np.testing.assert_allclose(b.v_world, [1.0, 2.0, 3.0], atol=1e-13)


def _camera_messages(fmt, n=5, size_info=(W, H), size_depth=(W, H), jitter_ms=0.0,
                     rgb_encoding='rgb8', extra_depth=False, seed=0, info=True):
    """Hand-made camera topics: rgb, depth, camera_info; optional jitter in the stamps."""
    types = bag_msg_types(fmt)
    rng = np.random.default_rng(seed)
    msgs = []
    for k in range(n):
        t = T0 + k * 50_000_000
        st = [t + int(rng.uniform(-jitter_ms, jitter_ms) * 1e6) for _ in range(3)]
        rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        image = M.image_msg(types, rgb, 'rgb8', st[0], 'cam')
        image.encoding = rgb_encoding
        msgs.append(('/cam/rgb/image', 'sensor_msgs/msg/Image', st[0], image))
        depth = np.full(size_depth[::-1], 1500, np.uint16)
        msgs.append(('/cam/depth/image', 'sensor_msgs/msg/Image', st[1],
                     M.image_msg(types, depth, '16UC1', st[1], 'cam')))
        if extra_depth:
            msgs.append(('/cam/depth2/image', 'sensor_msgs/msg/Image', st[1],
                         M.image_msg(types, depth, '16UC1', st[1], 'cam')))
        if info:
            msgs.append(('/cam/depth/camera_info', 'sensor_msgs/msg/CameraInfo', st[2],
                         M.camera_info_msg(types, K, *size_info, st[2], 'cam')))
    msgs.sort(key=lambda m: m[2])
    return msgs


def test_jittered_camera_stamps_are_paired(tmp_path):
    write_bag(tmp_path / 'b', 'sqlite3', _camera_messages('sqlite3', n=8, jitter_ms=6))
    src = open_source(tmp_path / 'b')
    assert src.info['topics'] == {'rgb': '/cam/rgb/image', 'depth': '/cam/depth/image',
                                  'camera_info': '/cam/depth/camera_info'}
    assert not src.has_imu and src.ground_truth() == []
    assert src.info['T_body_cam_source'].startswith('config frames.T_body_cam (no /tf_static')
    frames = list(src)
    assert len(frames) == 8 and all(np.allclose(f.depth, 1.5) for f in frames)


def _skipped_frames(path, reason):
    """Reading a bag whose frames cannot be converted: no frame, each counted by its reason and
    explained (a bad message is skipped, as the node skips it, not the end of the replay)."""
    source = open_source(path)
    items = list(source)
    assert not [x for x in items if isinstance(x, Frame)]
    assert dict(source.info['skipped']) == {reason: 5}
    assert len(source.info['skip_examples'][reason]) == 3
    return source.info['skip_notes'][reason]


def test_image_and_camera_info_size_mismatch(tmp_path):
    write_bag(tmp_path / 'b', 'mcap', _camera_messages('mcap', size_info=(40, 30)))
    assert re.search(r'camera_info on /cam/depth/camera_info is for 40x30 images but the images '
                     r'are 16x12', _skipped_frames(tmp_path / 'b', 'camera_info_size_mismatch'))


def test_rgb_and_depth_size_mismatch(tmp_path):
    write_bag(tmp_path / 'b', 'mcap', _camera_messages('mcap', size_depth=(8, 6),
                                                       size_info=(8, 6)))
    assert re.search(r'colour image on /cam/rgb/image is 16x12 but depth on /cam/depth/image is '
                     r'8x6', _skipped_frames(tmp_path / 'b', 'frame_size_mismatch'))


def test_unknown_encoding(tmp_path):
    write_bag(tmp_path / 'b', 'mcap', _camera_messages('mcap', rgb_encoding='yuv422'))
    cfg = VssmConfig(topics=TopicsConfig(rgb='/cam/rgb/image', depth='/cam/depth/image'))
    with pytest.raises(MessageError, match="topics.rgb = /cam/rgb/image has encoding 'yuv422'"):
        open_source(tmp_path / 'b', cfg)
    # Auto-detection sets it aside and says why.
    with pytest.raises(SourceError, match=r'no colour image topic; .*unsupported encodings: '
                                          r"\{'/cam/rgb/image': 'yuv422'\}"):
        open_source(tmp_path / 'b')


def test_ambiguous_depth_topics(tmp_path):
    write_bag(tmp_path / 'b', 'mcap', _camera_messages('mcap', extra_depth=True))
    with pytest.raises(SourceError, match=r'cannot choose the depth image topic: candidates '
                                          r'/cam/depth/image, /cam/depth2/image; set '
                                          r'topics.depth'):
        open_source(tmp_path / 'b')
    cfg = VssmConfig(topics=TopicsConfig(depth='/cam/depth2/image'))
    src = open_source(tmp_path / 'b', cfg)
    assert src.info['topics']['depth'] == '/cam/depth2/image'
    assert len(list(src)) == 5


def test_configured_topics_missing(tmp_path):
    write_bag(tmp_path / 'b', 'mcap', _camera_messages('mcap', n=2))
    cfg = VssmConfig(topics=TopicsConfig(imu='/imu/data'))
    with pytest.raises(BagError, match=r'lacks the configured topic\(s\) /imu/data; it has: '
                                       r'/cam/depth/camera_info \(sensor_msgs/msg/CameraInfo, '
                                       r'2\), /cam/depth/image'):
        open_source(tmp_path / 'b', cfg)


def test_no_camera_info_uses_config_intrinsics(tmp_path):
    write_bag(tmp_path / 'b', 'mcap', _camera_messages('mcap', n=2, info=False))
    with pytest.raises(SourceError, match='no sensor_msgs/CameraInfo topic; set '
                                          'topics.camera_info, or camera.fx'):
        open_source(tmp_path / 'b')
    cfg = load_config(overrides={'camera': {'fx': 30.0, 'fy': 31.0, 'cx': 7.0, 'cy': 5.0}})
    frames = list(open_source(tmp_path / 'b', cfg))
    assert len(frames) == 2 and frames[0].K[0, 0] == 30.0 and frames[0].K[1, 2] == 5.0


def test_backwards_frames_and_bad_imu_are_skipped_and_counted(tmp_path):
    types = bag_msg_types('mcap')
    msgs = _camera_messages('mcap', n=4)
    # A late duplicate of frame 1 (header stamps back in time) logged after frame 3.
    late = [m for m in msgs if m[2] == T0 + 50_000_000]
    msgs += [(topic, typ, T0 + 400_000_000, msg) for topic, typ, _, msg in late]
    for k, acc in enumerate([[0.0, 0.0, 9.8], [np.nan, 0.0, 9.8], [0.0, np.inf, 9.8]]):
        t = T0 + k * 1_000_000
        msgs.append(('/imu', 'sensor_msgs/msg/Imu', t, M.imu_msg(types, t, 'imu', acc, [0, 0, 0])))
    msgs.sort(key=lambda m: m[2])
    write_bag(tmp_path / 'b', 'mcap', msgs)
    src = open_source(tmp_path / 'b')
    out = list(src)
    frames, imu, _ = _split(out)
    assert [f.stamp_ns for f in frames] == [T0 + k * 50_000_000 for k in range(4)]
    assert len(imu) == 1
    assert dict(src.info['skipped']) == {'rgb_time_backwards': 1, 'depth_time_backwards': 1,
                                         'camera_info_time_backwards': 1, 'imu_non_finite': 2}


def test_open_source_dispatch(tmp_path):
    with pytest.raises(SourceError, match=f'input not found: {tmp_path / "x"}'):
        open_source(tmp_path / 'x')
    with pytest.raises(BagError, match='input not found'):
        open_source(tmp_path / 'x.bag')
    with pytest.raises(SourceError, match=r'is not a replayable input: expected a ROS 1 .bag '
                                          r'file, a ROS 2 bag directory \(with metadata.yaml\), '
                                          r'a TUM RGB-D folder \(with rgb.txt\) or a frames '
                                          r'folder \(with Camera_Left_RGB/ and '
                                          r'Camera_Left_Depth/\)'):
        open_source(tmp_path)
    items = _stream(n_frames=2, T_body_cam=np.eye(4))
    write_tum_folder(tmp_path / 'tum', items)
    src = open_source(tmp_path / 'tum')
    assert isinstance(src, TumSource) and not src.has_imu
    out = list(src)
    fr_in, _, gt_in = _split(items)
    fr_out, imu_out, gt_out = _split(out)
    assert imu_out == [] and len(fr_out) == 2 and len(gt_out) == len(gt_in)
    assert [x.stamp_ns for x in out] == sorted(x.stamp_ns for x in out)
    assert np.array_equal(fr_out[1].rgb, fr_in[1].rgb)


def test_an_unreadable_tum_frame_is_skipped_and_counted(tmp_path):
    """An unreadable PNG, or colour and depth of different sizes, is a skipped, counted frame
    (the replay goes on, as the node's stream does with a bad message), not the end."""
    items = _stream(n_frames=6, T_body_cam=np.eye(4))
    write_tum_folder(tmp_path / 'tum', items)
    src = open_source(tmp_path / 'tum')
    (src.folder.entries[2].depth_path).write_bytes(b'not a png')
    from PIL import Image
    Image.fromarray(np.zeros((3, 4), np.uint16)).save(src.folder.entries[4].depth_path)
    fr_in, _, gt_in = _split(items)
    for _ in range(2):   # each iteration reads afresh, with its own counts
        out = list(src)
        fr_out, _, gt_out = _split(out)
        assert [f.stamp_ns for f in fr_out] == [fr_in[i].stamp_ns for i in (0, 1, 3, 5)]
        assert all(np.array_equal(a.rgb, fr_in[i].rgb) for a, i in zip(fr_out, (0, 1, 3, 5)))
        assert len(gt_out) == len(gt_in)
        assert [x.stamp_ns for x in out] == sorted(x.stamp_ns for x in out)
        assert src.info['skipped'] == {'tum_frame_unreadable': 2}
        notes = src.info['skip_examples']['tum_frame_unreadable']
        assert f'frame {fr_in[2].stamp_ns} ns skipped: cannot read image' in notes[0]
        assert 'they must have the same size' in notes[1]


def test_real_tum_folder_as_source(tum_teddy_dir):
    cfg = load_config(overrides={'camera': {'fx': 535.4, 'fy': 539.2, 'cx': 320.1,
                                            'cy': 247.6, 'depth_scale': 5000.0}})
    src = open_source(tum_teddy_dir, cfg)
    assert src.info['counts'] == {'frames': 100, 'rgb_without_depth': 0}
    it = iter(src)
    first = [next(it) for _ in range(3)]  # the first 4 frames precede the ground truth
    assert all(isinstance(x, Frame) for x in first)
    assert first[0].stamp_ns == 1_341_841_873_273_798_000


def test_real_ros1_bag_as_source(ros1_imu_bag):
    src = open_source(ros1_imu_bag)
    assert src.has_imu and not src.has_frames
    assert src.info['topics'] == {'imu': '/imu/data'}  # odom is not ground truth by its name
    assert src.info['counts'] == {'/imu/data': 11865}
    assert src.info['imu_frame'] == 'imu_link'
    assert src.info['T_body_imu_source'].startswith('config frames.T_body_imu')
    it = iter(src)
    imu = [next(it) for _ in range(30)]
    assert all(isinstance(x, ImuSample) for x in imu)
    assert abs(np.mean([np.linalg.norm(x.acc) for x in imu]) - 9.81) < 0.2
    it.close()


def test_layout_is_validated():
    with pytest.raises(BagError, match="depth_encoding must be '16UC1' or '32FC1'"):
        BagLayout(depth_encoding='mono8')


def test_late_camera_messages_still_come_out_in_stamp_order(tmp_path):
    # Camera messages logged 30 ms after their stamps (transport latency), IMU on time: the
    # reorder buffer must hold IMU back until the frame is paired.
    items = _stream(n_frames=4)
    msgs = []
    for topic, typ, log_ns, msg in stream_messages(items, BagLayout(), bag_msg_types('mcap')):
        msgs.append((topic, typ, log_ns + (30_000_000 if '/camera/' in topic else 0), msg))
    msgs.sort(key=lambda m: m[2])
    write_bag(tmp_path / 'b', 'mcap', msgs)
    src = open_source(tmp_path / 'b')
    out = list(src)
    assert [x.stamp_ns for x in out] == sorted(x.stamp_ns for x in items)
    assert len(_split(out)[0]) == 4 and dict(src.info['skipped']) == {}
    # With no time to wait, the IMU already released makes the frames too late to be in order.
    src = BagSource(tmp_path / 'b', VssmConfig(), reorder_window_s=0.01)
    out = list(src)
    assert [x.stamp_ns for x in out] == sorted(x.stamp_ns for x in out)
    assert src.info['skipped']['frames_out_of_order'] >= 1
