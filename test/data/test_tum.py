# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""TUM RGB-D folders: the real fr3/teddy frames, and writing/reading our own."""

from pathlib import Path

import numpy as np
import pytest

from vssm_ros.config import CameraConfig, load_config
from vssm_ros.data.sync import associate
from vssm_ros.data.tum import (TumFolder, ns_to_seconds_text, read_tum_list, seconds_to_ns,
                               write_tum_folder)
from vssm_ros.data.transforms import pose_to_matrix
from vssm_ros.errors import ConfigError, MessageError, SourceError
from vssm_ros.types import Frame, ImuSample, PoseSample

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def tum_camera():
    return load_config([REPO / 'config' / 'tum.yaml']).camera


def test_real_teddy_frames_association_and_depth(tum_teddy_dir, tum_camera):
    folder = TumFolder(tum_teddy_dir, tum_camera)
    assert len(folder) == 100 and folder.skipped == 0
    rgb_stamps, _ = read_tum_list(tum_teddy_dir / 'rgb.txt')
    assert [e.stamp_ns for e in folder.entries] == sorted(rgb_stamps)
    # Associated rgb/depth differ by less than 20 ms (the data's README: up to ~20 ms).
    diffs = np.array([abs(e.stamp_ns - e.depth_stamp_ns) for e in folder.entries])
    assert diffs.max() <= 20_000_000
    np.testing.assert_allclose(folder.K, [[535.4, 0, 320.1], [0, 539.2, 247.6], [0, 0, 1]])
    assert folder.depth_scale == 5000.0

    gt = folder.ground_truth()
    assert len(gt) == 368
    pairs = associate([e.stamp_ns for e in folder.entries], [p.stamp_ns for p in gt],
                      20_000_000)
    assert len(pairs) == 96  # the first 4 frames precede the ground truth
    assert min(i for i, _ in pairs) == 4
    np.testing.assert_allclose(gt[0].T_world_body[:3, 3], [-2.1837, 0.6821, 1.4854])

    frame = folder.load(folder.entries[0])  # decoding all 100 would take seconds
    assert frame.rgb.shape == (480, 640, 3) and frame.rgb.dtype == np.uint8
    assert frame.depth.shape == (480, 640) and frame.depth.dtype == np.float32
    median = float(np.nanmedian(frame.depth))
    assert 0.5 < median < 3.0, median
    assert 0.1 < np.isnan(frame.depth).mean() < 0.5  # Kinect holes are NaN, not zero
    assert np.nanmin(frame.depth) >= tum_camera.min_depth
    np.testing.assert_array_equal(frame.T_body_cam, np.eye(4))


def test_missing_intrinsics_is_a_config_error(tum_teddy_dir):
    with pytest.raises(ConfigError, match='no intrinsics.yaml and the config sets no camera '
                                          'intrinsics: set camera.fx'):
        TumFolder(tum_teddy_dir, CameraConfig())


def test_seconds_text_is_exact():
    assert seconds_to_ns('1341841873.273798') == 1_341_841_873_273_798_000
    assert seconds_to_ns('5') == 5_000_000_000 and seconds_to_ns('0.0000000015') == 2
    assert ns_to_seconds_text(1_341_841_873_273_798_001) == '1341841873.273798001'
    with pytest.raises(ValueError):
        seconds_to_ns('12a.5')


def _stream(seed=0, n=4, h=6, w=8):
    rng = np.random.default_rng(seed)
    K = np.array([[40.0, 0, 3.5], [0, 41.0, 2.5], [0, 0, 1]])
    items = []
    for k in range(n):
        t = 1_000_000_000_123 + k * 33_333_333
        depth = rng.uniform(0.3, 4.0, (h, w)).astype(np.float32)
        depth[0, k] = np.nan
        items.append(ImuSample(t - 1, np.zeros(3), np.zeros(3)))
        items.append(Frame(t, rng.integers(0, 256, (h, w, 3), dtype=np.uint8), depth, K))
        q = rng.normal(size=4)
        items.append(PoseSample(t + 5, pose_to_matrix(rng.normal(size=3), q / np.linalg.norm(q))))
    return items


def test_write_and_read_back(tmp_path):
    items = _stream()
    counts = write_tum_folder(tmp_path / 'seq', items)
    assert counts == {'frames': 4, 'ground_truth': 4, 'skipped_imu': 4}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.')]  # no temp left over
    folder = TumFolder(tmp_path / 'seq')  # intrinsics.yaml: no config needed
    assert folder.intrinsics_source.endswith('intrinsics.yaml') and folder.depth_scale == 5000.0
    frames_in = [x for x in items if isinstance(x, Frame)]
    frames_out = list(folder.frames())
    assert [f.stamp_ns for f in frames_out] == [f.stamp_ns for f in frames_in]
    for a, b in zip(frames_in, frames_out):
        np.testing.assert_array_equal(b.rgb, a.rgb)
        np.testing.assert_array_equal(b.K, a.K)
        expect = (np.rint(a.depth.astype(np.float64) * 5000).astype(np.float32)
                  / np.float32(5000))
        np.testing.assert_array_equal(b.depth, expect)  # NaN where NaN went in
        assert np.nanmax(np.abs(b.depth - a.depth)) <= 1e-4  # half a 0.2 mm step
    gt_in = [x for x in items if isinstance(x, PoseSample)]
    gt_out = folder.ground_truth()
    assert [p.stamp_ns for p in gt_out] == [p.stamp_ns for p in gt_in]
    for a, b in zip(gt_in, gt_out):
        np.testing.assert_allclose(b.T_world_body, a.T_world_body, atol=1e-15)
    with pytest.raises(SourceError, match='exists already'):
        write_tum_folder(tmp_path / 'seq', items)


def test_rgb_depth_size_mismatch_is_refused(tmp_path):
    write_tum_folder(tmp_path / 'seq', _stream(n=1))
    folder = TumFolder(tmp_path / 'seq')
    from PIL import Image
    Image.fromarray(np.zeros((5, 8), np.uint16)).save(folder.entries[0].depth_path)
    with pytest.raises(MessageError, match=r'is 8x6 but depth .* is 8x5; they must have the '
                                           r'same size'):
        folder.load(folder.entries[0])


def test_not_a_tum_folder(tmp_path):
    with pytest.raises(SourceError, match='not a TUM RGB-D folder: no rgb.txt'):
        TumFolder(tmp_path)
