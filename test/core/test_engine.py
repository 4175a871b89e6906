# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""SlamEngine: stepping, stamp order, outputs, IMU handling and its gap fallback, reset."""

import dataclasses

import numpy as np
import pytest

from vssm_ros.config import EngineConfig, MapConfig, SyntheticConfig
from vssm_ros.core.engine import SlamEngine
from vssm_ros.data.synthetic import generate_flight
from vssm_ros.errors import StateError
from vssm_ros.types import Frame, ImuSample

SYN = SyntheticConfig(duration_s=3, width=32, height=24)
CFG = EngineConfig(map=MapConfig(resolution=0.1, truncation=0.3))
G = np.array([0.0, 0.0, 9.81])


@pytest.fixture(scope='module')
def flight():
    return generate_flight(SYN)


def _engine(flight):
    return SlamEngine(CFG, T_world_body0=flight.gt_frames.T_world_body[0])


def _blank(frame, stamp_ns):
    """A frame with no valid depth (the tracker keeps the prediction)."""
    return Frame(stamp_ns=stamp_ns, rgb=frame.rgb, depth=np.full_like(frame.depth, np.nan),
                 K=frame.K, T_body_cam=frame.T_body_cam)


def test_step_two_frames_and_stamp_order(flight):
    eng = _engine(flight)
    with pytest.raises(StateError, match='no frame'):
        eng.estimate()
    f0, f1 = flight.frame(0, noise=False), flight.frame(1, noise=False)
    e0 = eng.step(f0)
    assert e0.stamp_ns == f0.stamp_ns
    np.testing.assert_allclose(e0.T_world_body, flight.gt_frames.T_world_body[0], atol=1e-6)
    e1 = eng.step(f1)
    assert e1.stamp_ns == f1.stamp_ns and eng.n_frames == 2
    assert e1.T_world_body.shape == (4, 4) and e1.cov.shape == (6, 6)
    assert e1.v_world.shape == (3,)
    assert np.all(np.isfinite(e1.cov)) and np.allclose(e1.cov, e1.cov.T, atol=1e-9)
    assert np.linalg.eigvalsh(e1.cov).min() > 0
    # The drone hovers at the start: the second pose stays within a couple of cm of the truth.
    err = np.linalg.norm(e1.T_world_body[:3, 3] - flight.gt_frames.T_world_body[1][:3, 3])
    assert err < 0.03
    assert {'propagate', 'track', 'map', 'total'} <= set(e1.timings)
    for stamp in (f1.stamp_ns, f1.stamp_ns - 1):
        with pytest.raises(StateError, match='not after'):
            eng.step(_blank(f1, stamp))
    assert eng.n_frames == 2  # the rejected frames changed nothing
    assert eng.estimate().stamp_ns == f1.stamp_ns


def test_render_shapes_dtypes_and_misses(flight):
    eng = _engine(flight)
    f0 = flight.frame(0, noise=False)
    eng.step(f0)
    h, w = f0.depth.shape
    T = flight.T_world_cam(0)
    out = eng.render(T, f0.K, w, h)
    assert out['depth'].shape == (h, w) and out['depth'].dtype == np.float32
    assert out['depth_std'].shape == (h, w) and out['depth_std'].dtype == np.float32
    assert out['color'].shape == (h, w, 3) and out['color'].dtype == np.uint8
    assert out['hit'].shape == (h, w)
    seen = np.isfinite(out['depth'])
    assert seen.mean() > 0.9
    assert np.array_equal(seen, np.isfinite(out['depth_std']))
    assert np.array_equal(seen, out['hit'] > 0.5)
    err = np.abs(out['depth'] - f0.depth)[seen & np.isfinite(f0.depth)]
    assert np.median(err) < 0.03
    assert np.all(out['depth_std'][seen] > 0)
    # Looking out of the map (camera outside the grid, facing away): nothing is hit.
    T_out = np.eye(4)
    T_out[:3, 3] = (-5.0, -5.0, 1.0)
    T_out[:3, :3] = np.array([[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    miss = eng.render(T_out, f0.K, w, h)
    assert np.all(np.isnan(miss['depth'])) and np.all(np.isnan(miss['depth_std']))
    assert float(miss['hit'].max()) < 1e-3
    # reset forgets the map: the same view now hits nothing.
    eng.reset()
    assert np.all(np.isnan(eng.render(T, f0.K, w, h)['depth']))
    with pytest.raises(StateError):
        eng.estimate()
    assert eng.n_frames == 0 and not eng.keyframes and not eng.has_imu


def test_add_imu_ignores_non_finite_samples(flight):
    eng = _engine(flight)
    eng.add_imu(ImuSample(stamp_ns=10, acc=np.array([0.0, np.nan, 9.81]), gyro=np.zeros(3)))
    eng.add_imu(ImuSample(stamp_ns=11, acc=G.copy(), gyro=np.array([np.inf, 0.0, 0.0])))
    assert not eng.has_imu
    eng.add_imu(ImuSample(stamp_ns=12, acc=G.copy(), gyro=np.zeros(3)))
    assert eng.has_imu
    # Out-of-order and duplicate stamps are dropped too.
    eng.add_imu(ImuSample(stamp_ns=12, acc=np.zeros(3), gyro=np.zeros(3)))
    eng.add_imu(ImuSample(stamp_ns=5, acc=np.zeros(3), gyro=np.zeros(3)))
    assert [s.stamp_ns for s in eng._imu] == [12]


def _free_fall_run(flight, imu_offsets_s, gap_s=0.2):
    """First frame at t0, IMU samples reading free fall (specific force 0) at t0 + offsets, a
    second frame without valid depth at t0 + gap: returns the engine and the height change."""
    eng = _engine(flight)
    f0 = flight.frame(0, noise=False)
    t0 = f0.stamp_ns
    eng.step(f0)
    z0 = eng.estimate().T_world_body[2, 3]
    for off in imu_offsets_s:
        eng.add_imu(ImuSample(stamp_ns=t0 + int(round(off * 1e9)), acc=np.zeros(3),
                              gyro=np.zeros(3)))
    est = eng.step(_blank(f0, t0 + int(round(gap_s * 1e9))))
    return eng, est.T_world_body[2, 3] - z0


def test_imu_propagation_without_gap(flight):
    # Samples every 50 ms cover the 0.2 s interval: free fall drops 0.5 g t^2 = 0.196 m.
    eng, dz = _free_fall_run(flight, [0.0, 0.05, 0.1, 0.15, 0.2])
    assert eng.n_imu_gaps == 0
    assert dz == pytest.approx(-0.5 * 9.81 * 0.2 ** 2, abs=1e-4)
    assert eng.n_untracked == 1  # no valid depth: the prediction stands


def test_imu_gap_falls_back_to_constant_velocity(flight):
    # A 0.15 s hole in the IMU (> max_imu_gap = 0.1 s): constant velocity from rest, no drop.
    assert CFG.motion.max_imu_gap == pytest.approx(0.1)
    eng, dz = _free_fall_run(flight, [0.0, 0.05])
    assert eng.n_imu_gaps == 1
    assert abs(dz) < 1e-6
    # The constant-velocity prior's white acceleration (2 m/s^2/sqrt(Hz)) adds q T^3 / 3 to the
    # position variance; the IMU prior (0.05 m/s^2/sqrt(Hz)) almost nothing.
    with_imu, _ = _free_fall_run(flight, [0.0, 0.05, 0.1, 0.15, 0.2])
    extra = eng.estimate().cov[2, 2] - with_imu.estimate().cov[2, 2]
    assert extra == pytest.approx(CFG.motion.cv_acc_noise ** 2 * 0.2 ** 3 / 3, rel=0.01)


def test_imu_gap_spanning_several_frames_is_a_gap_in_each(flight):
    # Frames every 50 ms, IMU samples up to t0 + 0.05 s then none until t0 + 0.4 s: the last
    # sample is not held across the hole, whose frames all fall back to constant velocity.
    eng = _engine(flight)
    f0 = flight.frame(0, noise=False)
    t0 = f0.stamp_ns
    eng.step(f0)
    for off in (0.0, 0.025, 0.05):
        eng.add_imu(ImuSample(stamp_ns=t0 + int(off * 1e9), acc=np.zeros(3), gyro=np.zeros(3)))
    z0 = eng.estimate().T_world_body[2, 3]
    for k in range(1, 5):
        est = eng.step(_blank(f0, t0 + int(round(0.1 * k * 1e9))))
    # (0, 0.1]: the first 50 ms with samples, then a 50 ms hold is no gap; from 0.2 s the
    # hole exceeds max_imu_gap (0.1 s): 0.2, 0.3 and 0.4 s fall back.
    assert eng.n_imu_gaps == 3
    # Free fall for 0.1 s, then the velocity it reached carries on (held across the hole, the
    # free fall would go on: 0.5 g 0.4² = 0.78 m).
    g = 9.81
    assert est.T_world_body[2, 3] - z0 == pytest.approx(-(0.5 * g * 0.1 ** 2 + g * 0.1 * 0.3),
                                                        abs=2e-3)


def test_reported_covariance_includes_map_anchor(flight):
    """The Estimate's covariance is ``sensor.relative_cov_scale`` of the state's (relative to
    the map) while OK plus the anchor variance of the map where it was tracked, times the
    residuals' variance factor when above 1 to ``sensor.variance_factor_power``; keyframes
    hand their whole world variance to the map."""
    eng = _engine(flight)
    for i in range(12):
        est = eng.step(flight.frame(i))
    assert est.status == 'OK'
    rel = np.diag(eng.state.cov.numpy()[:6])
    anchor = eng.anchor_var.numpy()
    assert anchor[0] > 0 and anchor[1] > 0  # tracked against frames fused with uncertainty
    sensor = eng.cfg.sensor
    assert sensor.relative_cov_scale == 0.1 and sensor.variance_factor_power == 4.0
    f = max(1.0, eng.residual_var) ** 4   # the residuals' variance factor, to its power
    a = 0.1                               # the share of the relative covariance published
    np.testing.assert_allclose(np.diag(est.cov)[:3], f * (a * rel[:3] + anchor[0]), rtol=1e-5)
    np.testing.assert_allclose(np.trace(est.cov[3:, 3:]),
                               f * (a * rel[3:].sum() + 3 * anchor[1]), rtol=1e-5)
    # The anchor is a weighted mean of what keyframes fused the map with.
    sd = eng.map.state_dict()
    seen = sd['anchor_weight'] > 0
    cells = (sd['anchor_sum'][seen] / sd['anchor_weight'][seen, None]).numpy().T
    assert np.all(cells.min(axis=1) - 1e-12 <= anchor)
    assert np.all(anchor <= cells.max(axis=1) + 1e-12)
    # Saved and restored with the state.
    other = _engine(flight)
    other.load_state_dict(eng.state_dict())
    np.testing.assert_allclose(other.estimate().cov, est.cov, rtol=1e-6)


@pytest.mark.parametrize('tilt', [[0.3, -0.2, 0.1], [0.0, 0.0, 0.0], [np.pi, 0.0, 0.0]])
def test_init_pose_gravity_aligns_the_accelerometer_with_up(flight, tilt):
    from scipy.spatial.transform import Rotation

    R_world_body = Rotation.from_rotvec(tilt).as_matrix()
    acc = R_world_body.T @ G  # at rest the accelerometer reads gravity's reaction, body frame
    f0 = flight.frame(0, noise=False)
    eng = SlamEngine(dataclasses.replace(CFG, init_pose='gravity'))
    for k in range(5):
        eng.add_imu(ImuSample(stamp_ns=f0.stamp_ns - (5 - k) * 1_000_000, acc=acc,
                              gyro=np.zeros(3)))
    R = eng.step(f0).T_world_body[:3, :3]
    np.testing.assert_allclose(R @ acc / np.linalg.norm(acc), [0, 0, 1], atol=1e-6)
    # Without IMU, or with an explicit first pose, the first body frame stays as given.
    assert np.allclose(SlamEngine(dataclasses.replace(CFG, init_pose='gravity'))
                       .step(f0).T_world_body, np.eye(4))
