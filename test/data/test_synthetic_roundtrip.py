# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""A synthetic flight written as ROS 2 mcap, ROS 2 sqlite3 and ROS 1 bags, read back.

Every format must give back the same stream: frames bit-identical to each other and to the
generator's after 16UC1 millimetre quantisation, stamps, IMU and ground truth exact, and the
camera extrinsics recovered from the /tf_static chain base_link -> camera_link -> optical frame.
"""

import numpy as np
import pytest

from vssm_ros.config import CameraConfig, SyntheticConfig
from vssm_ros.data.sources import open_source
from vssm_ros.data.synthetic import generate_flight, write_flight
from vssm_ros.types import Frame, ImuSample, PoseSample

FORMATS = ('mcap', 'sqlite3', 'ros1')
CFG = SyntheticConfig(duration_s=2.5, width=64, height=48)


@pytest.fixture(scope='module')
def flight():
    return generate_flight(CFG)


@pytest.fixture(scope='module')
def streams(flight, tmp_path_factory):
    """format -> (the Source, its items as lists by type)."""
    written = write_flight(flight, tmp_path_factory.mktemp('flight'), formats=FORMATS)
    out = {}
    for fmt in FORMATS:
        src = open_source(written[fmt])
        items = list(src)
        out[fmt] = (src, {kind: [x for x in items if isinstance(x, kind)]
                          for kind in (Frame, ImuSample, PoseSample)}, items)
    return out


def _quantised(depth, cam=CameraConfig()):
    """The generator's depth as a 16UC1 reader sees it: millimetres rounded to nearest, then
    metres in float32, NaN where 0 / out of range. Shape: (H, W) -> (H, W), float32."""
    mm = np.rint(depth.astype(np.float64) * 1000.0)
    with np.errstate(invalid='ignore'):
        metres = mm.astype(np.float32) / np.float32(1000.0)
        ok = np.isfinite(mm) & (mm > 0) & (mm <= 65535) & (metres >= cam.min_depth) \
            & (metres <= cam.max_depth)
    return np.where(ok, metres, np.float32(np.nan)).astype(np.float32)


def test_counts_and_order(flight, streams):
    # Stamps at 0, 1/rate, ..., duration inclusive.
    assert flight.n_frames == 51 and len(flight.imu.stamps_ns) == 501
    for fmt, (src, by_kind, items) in streams.items():
        assert src.has_frames and src.has_imu, fmt
        assert len(by_kind[Frame]) == flight.n_frames, fmt
        assert len(by_kind[ImuSample]) == len(flight.imu.stamps_ns), fmt
        assert len(by_kind[PoseSample]) == flight.n_frames, fmt
        stamps = [x.stamp_ns for x in items]
        assert stamps == sorted(stamps), f'{fmt}: stream not in stamp order'
        assert not sum(src.info['skipped'].values()), (fmt, src.info['skipped'])


def test_frames_identical_across_formats_and_to_the_generator(flight, streams):
    ref = streams['mcap'][1][Frame]
    for i, frame in enumerate(ref):
        truth = flight.frame(i)
        assert frame.stamp_ns == truth.stamp_ns == int(flight.frame_stamps_ns[i])
        assert frame.rgb.dtype == np.uint8 and np.array_equal(frame.rgb, truth.rgb)
        expected = _quantised(truth.depth)
        assert frame.depth.dtype == np.float32
        np.testing.assert_array_equal(frame.depth, expected)
        np.testing.assert_array_equal(frame.K, flight.K)
        for fmt in FORMATS[1:]:
            other = streams[fmt][1][Frame][i]
            assert other.stamp_ns == frame.stamp_ns, fmt
            assert other.rgb.tobytes() == frame.rgb.tobytes(), fmt
            assert other.depth.tobytes() == frame.depth.tobytes(), fmt
            assert other.K.tobytes() == frame.K.tobytes(), fmt
    # Quantisation is the only change: half a millimetre at most, and most pixels are valid.
    truth = flight.frame(10).depth
    got = ref[10].depth
    both = np.isfinite(truth) & np.isfinite(got)
    assert both.mean() > 0.9
    assert np.abs(got[both] - truth[both]).max() <= 0.0005 + 1e-6


def test_imu_exact(flight, streams):
    for fmt, (_, by_kind, _) in streams.items():
        imu = by_kind[ImuSample]
        np.testing.assert_array_equal([s.stamp_ns for s in imu], flight.imu.stamps_ns)
        np.testing.assert_array_equal(np.stack([s.acc for s in imu]), flight.imu.acc)
        np.testing.assert_array_equal(np.stack([s.gyro for s in imu]), flight.imu.gyro)


def test_ground_truth_exact(flight, streams):
    for fmt, (src, by_kind, _) in streams.items():
        gt = by_kind[PoseSample]
        np.testing.assert_array_equal([p.stamp_ns for p in gt], flight.gt_frames.stamps_ns)
        T = np.stack([p.T_world_body for p in gt])
        # Positions are stored as float64 (exact); rotations pass through a quaternion.
        np.testing.assert_array_equal(T[:, :3, 3], flight.gt_frames.T_world_body[:, :3, 3])
        np.testing.assert_allclose(T[:, :3, :3], flight.gt_frames.T_world_body[:, :3, :3],
                                   rtol=0, atol=1e-12)
        # The separate ground-truth pass gives the same poses.
        again = src.ground_truth()
        assert [p.stamp_ns for p in again] == [p.stamp_ns for p in gt]
        np.testing.assert_array_equal(np.stack([p.T_world_body for p in again]), T)


def test_extrinsics_from_tf_static_chain(flight, streams):
    for fmt, (src, by_kind, _) in streams.items():
        assert src.info['T_body_cam_source'].startswith('/tf_static'), (fmt, src.info)
        np.testing.assert_allclose(src.T_body_cam, flight.T_body_cam, rtol=0, atol=1e-9)
        for frame in by_kind[Frame]:
            np.testing.assert_allclose(frame.T_body_cam, flight.T_body_cam, rtol=0, atol=1e-9)
        # The synthetic camera is tilted 10 degrees down from the body's forward axis.
        optical_z = src.T_body_cam[:3, 2]
        tilt_deg = np.degrees(np.arcsin(-optical_z[2]))
        assert tilt_deg == pytest.approx(CFG.camera_tilt_deg, abs=1e-9)
