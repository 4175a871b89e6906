# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The Blackbird frames-folder source: a synthetic flight written in Blackbird's layout (PNG
frames + nSecTimestamps.txt, a ROS 1 bag in NED frames) reads back as the flight, in z-up
frames and stamp order; broken folders fail with specific errors."""

import shutil

import numpy as np
import pytest

from vssm_ros.cli import replay
from vssm_ros.cli.paths import config_path
from vssm_ros.config import FramesFolderConfig, SyntheticConfig, load_config
from vssm_ros.data.bags import BagReader
from vssm_ros.data.blackbird import FramesFolderSource, write_blackbird_folder
from vssm_ros.data.frames_folder import (CameraFrames, FramesFolder, frame_files,
                                         read_timestamps)
from vssm_ros.data.sources import open_source
from vssm_ros.data.synthetic import generate_flight
from vssm_ros.data.transforms import frd_to_flu, matrix_to_pose, ned_pose_to_zup, pose_to_matrix
from vssm_ros.errors import ConfigError, MessageError, SourceError
from vssm_ros.types import Frame, ImuSample, PoseSample

# 0.5 s at 10 Hz: 6 frames of 40x30; 200 Hz IMU.
SMALL = SyntheticConfig(duration_s=0.5, width=40, height=30, camera_rate_hz=10.0, hover_s=0.0,
                        ramp_s=0.3)
RGB, DEPTH = 'Camera_Left_RGB', 'Camera_Left_Depth'


@pytest.fixture(scope='module')
def flight():
    return generate_flight(SMALL)


def _cfg(flight, **over):
    xyz, q = matrix_to_pose(flight.T_body_cam)
    overrides = {'frames': {'T_body_cam': [*xyz, *q]}}
    overrides.update(over)
    return load_config([config_path('vssm.yaml'), config_path('blackbird.yaml')],
                       overrides=overrides)


@pytest.fixture(scope='module')
def written(flight, tmp_path_factory):
    root = tmp_path_factory.mktemp('bb')
    env = write_blackbird_folder(root / 'clover', flight.items())
    return env


@pytest.fixture
def copy(written, tmp_path):
    """A private copy of the written flight (for tests that break it)."""
    dst = tmp_path / 'clover'
    shutil.copytree(written.parent, dst)
    return dst / written.name


def test_layout_is_blackbirds(written, flight):
    assert written.name == 'Synthetic_Room' and (written.parent / 'rosbag.bag').is_file()
    for cam in (RGB, DEPTH):
        np.testing.assert_array_equal(read_timestamps(written / cam / 'nSecTimestamps.txt'),
                                      flight.frame_stamps_ns)
    assert [p.name for p in frame_files(written / RGB)][:2] == ['000000.png', '000001.png']
    assert frame_files(written / DEPTH)[0].name == f'{flight.frame_stamps_ns[0]}.png'
    # The bag is in NED / forward-right-down, as Blackbird's: the IMU reads about -9.8 on z
    # while the flight (z-up) reads +9.8, and the altitude is negative.
    with BagReader(written.parent / 'rosbag.bag') as bag:
        assert set(bag.topics) == {'/blackbird/imu', '/blackbird/state', '/camera_l/camera_info'}
        _, imu = bag.first_message('/blackbird/imu')
        _, state = bag.first_message('/blackbird/state')
    assert imu.linear_acceleration.z < -9.0 < 9.0 < flight.imu.acc[0, 2]
    assert state.pose.position.z == pytest.approx(-flight.gt_frames.T_world_body[0, 2, 3])


def test_source_yields_the_flight_in_order(written, flight):
    src = open_source(written, _cfg(flight))
    assert isinstance(src, FramesFolderSource) and src.has_frames and src.has_imu
    assert src.info['counts']['frames'] == 6 and src.info['topics']['imu'] == '/blackbird/imu'
    assert src.info['intrinsics_source'].endswith('/camera_l/camera_info')
    items = list(src)
    stamps = [i.stamp_ns for i in items]
    assert stamps == sorted(stamps)
    frames = [i for i in items if isinstance(i, Frame)]
    imu = [i for i in items if isinstance(i, ImuSample)]
    gt = [i for i in items if isinstance(i, PoseSample)]
    assert [f.stamp_ns for f in frames] == [int(s) for s in flight.frame_stamps_ns]
    assert len(imu) == len(flight.imu.stamps_ns) == 101 and len(gt) == 6
    for i, f in enumerate(frames):
        ref = flight.frame(i)
        np.testing.assert_array_equal(f.rgb, ref.rgb)
        # Depth went through 16-bit millimetres: equal to rounding, invalid where it was.
        np.testing.assert_array_equal(np.isnan(f.depth), np.isnan(ref.depth))
        np.testing.assert_allclose(f.depth, ref.depth, atol=5e-4 + 1e-6, equal_nan=True)
        np.testing.assert_allclose(f.K, flight.K, rtol=1e-12)
        np.testing.assert_allclose(f.T_body_cam, flight.T_body_cam, atol=1e-12)
    # IMU and ground truth are back in the flight's z-up frames.
    np.testing.assert_allclose([s.acc for s in imu], flight.imu.acc, atol=1e-12)
    np.testing.assert_allclose([s.gyro for s in imu], flight.imu.gyro, atol=1e-12)
    np.testing.assert_allclose([p.T_world_body for p in gt], flight.gt_frames.T_world_body,
                               atol=1e-12)
    # At equal stamps the IMU sample comes before the frame, the frame before its pose.
    k = stamps.index(frames[1].stamp_ns)
    assert [type(x) for x in items[k:k + 3]] == [ImuSample, Frame, PoseSample]
    np.testing.assert_allclose([p.T_world_body for p in src.ground_truth()],
                               flight.gt_frames.T_world_body, atol=1e-12)


def test_without_conversion_the_bag_is_read_as_is(written, flight):
    src = open_source(written, _cfg(flight, frames_folder={'ned': False}))
    imu = [i for i in src if isinstance(i, ImuSample)]
    np.testing.assert_allclose(imu[0].acc, frd_to_flu(flight.imu.acc[0]), atol=1e-12)


def test_ned_conversion():
    # Hovering 1.5 m up, nose north-east: NED z = -1.5, yaw +45 deg about down.
    c, s = np.cos(np.pi / 8), np.sin(np.pi / 8)
    T = ned_pose_to_zup(pose_to_matrix([2.0, 1.0, -1.5], [0.0, 0.0, s, c]))
    np.testing.assert_allclose(T[:3, 3], [2.0, -1.0, 1.5])
    # Forward (body x) still points north-east, i.e. yaw -45 deg about up.
    np.testing.assert_allclose(T[:3, 0], [np.sqrt(0.5), -np.sqrt(0.5), 0.0], atol=1e-15)
    np.testing.assert_allclose(np.linalg.det(T[:3, :3]), 1.0)
    np.testing.assert_allclose(frd_to_flu([0.1, 0.2, -9.81]), [0.1, -0.2, 9.81])
    np.testing.assert_allclose(ned_pose_to_zup(T), pose_to_matrix(
        [2.0, 1.0, -1.5], [0.0, 0.0, s, c]), atol=1e-15)   # its own inverse


def test_intrinsics_from_config_and_without_a_bag(copy, flight):
    (copy.parent / 'rosbag.bag').unlink()
    K = flight.K
    cfg = _cfg(flight, camera={'fx': float(K[0, 0]), 'fy': float(K[1, 1]),
                               'cx': float(K[0, 2]), 'cy': float(K[1, 2])})
    src = open_source(copy, cfg)
    assert not src.has_imu and src.ground_truth() == [] and src.info['bag'] is None
    assert src.info['intrinsics_source'] == 'config camera.fx/fy/cx/cy'
    assert [type(i) for i in src] == [Frame] * 6
    with pytest.raises(ConfigError, match='no camera intrinsics'):
        open_source(copy, _cfg(flight))
    with pytest.raises(SourceError, match='frames_folder.bag = elsewhere.bag not found'):
        open_source(copy, _cfg(flight, frames_folder={'bag': 'elsewhere.bag'}))


def test_missing_timestamps_file(copy, flight):
    (copy / DEPTH / 'nSecTimestamps.txt').unlink()
    with pytest.raises(SourceError, match=r'timestamps file not found: .*Camera_Left_Depth/'
                                          r'nSecTimestamps.txt'):
        open_source(copy, _cfg(flight))


def test_count_mismatch(copy, flight):
    frame_files(copy / RGB)[-1].unlink()
    with pytest.raises(SourceError, match='6 stamps in nSecTimestamps.txt but 5 PNG frames'):
        open_source(copy, _cfg(flight))


def test_unsorted_and_malformed_stamps(copy, flight):
    path = copy / RGB / 'nSecTimestamps.txt'
    lines = path.read_text().split()
    lines[2], lines[3] = lines[3], lines[2]
    path.write_text('\n'.join(lines) + '\n')
    with pytest.raises(SourceError, match=rf'nSecTimestamps.txt:4: stamp {lines[3]} is not '
                                          rf'after the previous one \({lines[2]}\)'):
        open_source(copy, _cfg(flight))
    path.write_text('# stamps\n\n' + '\n'.join(lines[:2]) + '\n1.5e9\n')
    with pytest.raises(SourceError, match='nSecTimestamps.txt:5: expected a stamp in integer '
                                          "nanoseconds, got '1.5e9'"):
        read_timestamps(path)


def test_unreadable_and_wrong_pngs(copy, flight):
    bad = frame_files(copy / RGB)[2]
    bad.write_bytes(b'not a png')
    src = open_source(copy, _cfg(flight))
    with pytest.raises(SourceError, match=f'cannot read image {bad}'):
        list(src)
    from PIL import Image
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(frame_files(copy / DEPTH)[0])
    with pytest.raises(MessageError, match='expected a 16-bit single-channel depth PNG'):
        src.folder.load(0, flight.K, np.eye(4), src.cfg.camera)
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).resize((20, 15)).save(
        frame_files(copy / RGB)[0])
    with pytest.raises(SourceError, match='camera_info on /camera_l/camera_info is for 40x30 '
                                          'images but the frames .* are 20x15'):
        open_source(copy, _cfg(flight))


def test_pairing_by_stamp_and_natural_order(tmp_path):
    from PIL import Image
    cfg = FramesFolderConfig(rgb_dir='rgb', depth_dir='depth')
    for cam, names, stamps in (('rgb', ['2.png', '10.png', '9.png'], [100, 200, 300]),
                               ('depth', ['a.png', 'b.png'], [205_000_000, 290_000_000])):
        (tmp_path / cam).mkdir()
        for n in names:
            Image.fromarray(np.zeros((4, 4), np.uint16 if cam == 'depth' else np.uint8)).save(
                tmp_path / cam / n)
        (tmp_path / cam / 'nSecTimestamps.txt').write_text(''.join(f'{s}\n' for s in stamps))
    assert [p.name for p in CameraFrames.open(tmp_path / 'rgb', 'colour').files] == [
        '2.png', '9.png', '10.png']
    (tmp_path / 'rgb' / 'nSecTimestamps.txt').write_text('100\n200_000_000\n300_000_000\n'
                                                         .replace('_', ''))
    folder = FramesFolder(tmp_path, cfg, slop_s=0.02)
    # rgb 200 ms <-> depth 205 ms, rgb 300 ms <-> depth 290 ms; rgb 100 ns has no partner.
    assert folder.pairs == [(1, 0), (2, 1)] and folder.unpaired == {'rgb': 1, 'depth': 0}
    assert [folder.stamp(i) for i in range(2)] == [200_000_000, 300_000_000]
    assert len(FramesFolder(tmp_path, cfg, slop_s=0.001)) == 0


def test_replay_of_a_blackbird_folder(written, flight, tmp_path):
    # The map in the ground truth's world frame, around the synthetic room (a smaller grid
    # than blackbird.yaml's, for speed).
    small_map = {'inference': {'rays': 256}}
    m = replay.run_replay(written, _cfg(flight, engine=small_map), tmp_path, progress=False,
                          plots=False, init_pose='ground_truth')
    assert m['input']['kind'] == 'frames folder'
    assert m['frames']['processed'] == 6 and m['imu_samples'] == 101
    assert m['ate']['n'] == 6 and m['ate']['rmse'] < 0.05
