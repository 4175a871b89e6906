# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Tracking health: the status machine (``core.health``), a forced loss through the engine
(a covered lens), and relocalisation against a known map (``core.relocalise``)."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from vssm_ros.config import EngineConfig, HealthConfig, MapConfig, SyntheticConfig
from vssm_ros.core.dynamics import initial_state
from vssm_ros.core.engine import RELOC_VELOCITY_FLOOR, SlamEngine
from vssm_ros.core.health import DEGRADED, LOST, OK, HealthMonitor, TrackSignals
from vssm_ros.core.lie import so3_exp
from vssm_ros.core.noise import NOISE_MODEL_SLACK
from vssm_ros.core.relocalise import candidate_poses, choose_candidate, yaw_rotations
from vssm_ros.core.state_layout import POSE, V
from vssm_ros.data.synthetic import generate_flight
from vssm_ros.types import Frame, ImuSample

GOOD = TrackSignals(True, 1.0, 0.98, 0.97, 0.9, 1.0, 0.01)
WEAK = TrackSignals(True, 1.0, 0.6, 0.4, 1.0, 1.0, 0.01)      # 2 in 3 agree with the map
EXPLORING = TrackSignals(True, 1.0, 0.35, 0.34, 1.0, 1.0, 0.01)  # most of the view new
BLIND = TrackSignals(False, 0.0)
CFG = EngineConfig(map=MapConfig(resolution=0.1, truncation=0.3))


def test_status_machine_goes_through_lost_and_back():
    cfg = HealthConfig(lost_after_s=0.1, ok_after_s=0.3)
    m = HealthMonitor(cfg)
    assert m.update(GOOD, 0.0) == OK
    assert m.update(EXPLORING, 0.03) == OK
    assert m.update(WEAK, 0.05) == DEGRADED and 'disagree' in m.reason
    assert m.update(GOOD, 0.1) == DEGRADED       # good again, not yet for ok_after_s
    assert m.update(GOOD, 0.4) == OK
    assert m.update(BLIND, 0.45) == DEGRADED     # bad, not yet for lost_after_s
    assert m.update(BLIND, 0.5) == DEGRADED
    assert m.update(BLIND, 0.55) == LOST and 'usable rays' in m.reason
    # A good frame does not end LOST by itself: only a verified relocalisation does.
    assert m.update(GOOD, 0.6) == LOST
    m.relocalised(0.65)
    assert m.status == DEGRADED
    assert m.update(GOOD, 0.8) == DEGRADED
    assert m.update(GOOD, 0.95) == OK


def test_quality_reasons():
    m = HealthMonitor(HealthConfig())
    assert m.quality(GOOD) == 'good'
    assert m.quality(dataclasses.replace(GOOD, innovation=1e4)) == 'bad'
    assert 'motion prior' in m.reason
    assert m.quality(dataclasses.replace(GOOD, drift=1e3)) == 'bad'
    assert 'disagrees with the IMU' in m.reason
    assert m.quality(dataclasses.replace(GOOD, inlier_fraction=0.1)) == 'bad'
    assert m.quality(dataclasses.replace(GOOD, rmse=9.0)) == 'weak'
    assert m.quality(dataclasses.replace(GOOD, min_info_std=1.0)) == 'weak'
    assert 'constrains' in m.reason


def test_candidate_poses_cover_the_grid():
    R = torch.eye(3, dtype=torch.float64)
    p = torch.tensor([1.0, 2.0, 1.5], dtype=torch.float64)
    Rc, pc = candidate_poses([(R, p)], 0.5, 10.0, n_xy=5, n_z=3, n_yaw=3)
    assert Rc.shape == (1 + 75 * 3, 3, 3) and pc.shape == (1 + 75 * 3, 3)
    assert torch.allclose(pc[0], p) and torch.allclose(Rc[0], R)
    off = pc[1:] - p
    assert off[:, :2].abs().max() == pytest.approx(0.5) and off[:, 2].abs().max() == 0.25
    yaws = {round(math.degrees(math.atan2(float(r[1, 0]), float(r[0, 0]))), 6) for r in Rc}
    assert yaws == {-10.0, 0.0, 10.0}
    assert torch.allclose(yaw_rotations(torch.zeros(1, dtype=torch.float64))[0], R)


@pytest.fixture(scope='module')
def flight():
    return generate_flight(SyntheticConfig(duration_s=6, width=48, height=36, hover_s=2.0))


def _black(frame):
    return Frame(frame.stamp_ns, np.zeros_like(frame.rgb), np.full_like(frame.depth, np.nan),
                 frame.K, frame.T_body_cam)


def _fly(flight, black):
    """The flight through an engine with the frames in ``black`` covered: the engine and
    per frame the status, position error, position std, map blocks and keyframes."""
    eng = SlamEngine(CFG, T_world_body0=flight.gt_frames.T_world_body[0])
    status, err, std, blocks, kfs = [], [], [], [], []
    for item in flight.items():
        if isinstance(item, ImuSample):
            eng.add_imu(item)
        if not isinstance(item, Frame):
            continue
        i = len(status)
        e = eng.step(_black(item) if i in black else item)
        status.append(e.status)
        err.append(np.linalg.norm(e.T_world_body[:3, 3]
                                  - flight.gt_frames.T_world_body[i][:3, 3]))
        std.append(math.sqrt(np.trace(e.cov[:3, :3])))
        blocks.append(eng.map_stats()['total_blocks'])
        kfs.append(len(eng.keyframes))
    return eng, status, err, std, blocks, kfs


def test_only_an_ok_estimate_publishes_a_share_of_the_relative_covariance(flight):
    """While OK the published covariance holds ``sensor.relative_cov_scale`` of the tracker's
    covariance relative to the map; once the lens is covered (LOST, coasting on the IMU) it
    holds all of it."""
    eng = SlamEngine(CFG, T_world_body0=flight.gt_frames.T_world_body[0])
    n, statuses = 0, []
    for item in flight.items():
        if isinstance(item, ImuSample):
            eng.add_imu(item)
        if not isinstance(item, Frame):
            continue
        est = eng.step(_black(item) if n >= 15 else item)
        n += 1
        share = 0.1 if est.status == OK else 1.0
        rel = np.diag(eng.state.cov.numpy())[:3]
        f = max(1.0, eng.residual_var) ** eng.cfg.sensor.variance_factor_power
        np.testing.assert_allclose(np.diag(est.cov)[:3],
                                   f * (share * rel + eng.anchor_var[0].item()), rtol=1e-5)
        statuses.append(est.status)
        if est.status == LOST:
            break
    assert statuses[:15] == [OK] * 15 and statuses[-1] == LOST


def test_covered_lens_goes_lost_keeps_the_map_and_recovers(flight):
    """Frames 20-59 black (2 s from the end of the hover, the IMU goes on): LOST within
    0.2 s, no keyframe and no map change while lost, the coasted covariance grows; once the
    view returns (mostly onto mapped walls), relocalised, and OK within 1 s at an error
    below 5 cm (these 48 x 36 images track to 1.5-4.5 cm)."""
    eng, status, err, std, blocks, kfs = _fly(flight, range(20, 60))
    dt = 1.0 / flight.cfg.camera_rate_hz
    first_lost = status.index(LOST)
    assert status[:20] == [OK] * 20
    assert 20 <= first_lost and (first_lost - 20) * dt <= 0.2
    assert all(s == LOST for s in status[first_lost:60])
    assert blocks[first_lost:60] == [blocks[first_lost - 1]] * (60 - first_lost)
    assert kfs[first_lost:60] == [kfs[first_lost - 1]] * (60 - first_lost)
    assert std[59] > 3 * std[19]   # coasting: the covariance grows honestly
    assert err[59] > 0.1           # ... as the error does
    back = next(i for i in range(60, len(status)) if status[i] == OK)
    assert (back - 60) * dt <= 1.0
    assert err[back] < 0.05
    assert eng.n_relocalisations >= 1
    # Afterwards as good as the same flight without the blackout (which drifts to 8 cm on
    # these tiny images).
    _, status0, err0, _, _, _ = _fly(flight, ())
    assert status0 == [OK] * len(status0)   # no false alarm (drift test included)
    assert max(err[back:]) < max(err0[back:]) + 0.03


def test_a_relocalised_velocity_is_known_to_the_jump_over_the_time_lost():
    """After 2 s lost, a relocalisation 0.3 m from the coasted pose: the velocity's std is
    0.3 / 2 m/s (with the floor in quadrature), uncorrelated with the rest; the pose block
    stays the relocalisation's."""
    eng = SlamEngine(CFG)
    coasted = initial_state(torch.eye(4, dtype=torch.float32), 0.5, 0.2, 2.0, 0.1, 0.01)
    found = coasted.clone()
    found.p = found.p + torch.tensor([0.3, 0.0, 0.0])
    found.cov = found.cov.clone()
    found.cov[POSE, POSE] = torch.eye(6) * 1e-4
    found.cov[V, POSE] = 0.05
    found.cov[POSE, V] = 0.05
    cov = eng._velocity_after_jump(found, coasted, 2.0)
    assert torch.allclose(torch.diagonal(cov)[V],
                          torch.full((3,), 0.15 ** 2 + RELOC_VELOCITY_FLOOR ** 2))
    assert torch.count_nonzero(cov[V, POSE]) == 0 and torch.count_nonzero(cov[POSE, V]) == 0
    assert torch.equal(cov[POSE, POSE], found.cov[POSE, POSE])
    # A jump of nothing: the floor.
    cov = eng._velocity_after_jump(coasted, coasted, 2.0)
    assert torch.allclose(torch.diagonal(cov)[V], torch.full((3,), RELOC_VELOCITY_FLOOR ** 2))


def test_relocalises_from_half_a_metre_and_20_degrees(flight):
    """The map of the first 30 frames; then the state is thrown 0.5 m and 20 deg (yaw) off
    and marked LOST: the next frame relocalises to within 3 cm and 0.5 deg of where
    tracking puts it without the throw (which has the IMU prior too: on these 48 x 36 images
    the two optima differ by 1-2 cm), and says so."""
    cfg = dataclasses.replace(CFG, health=dataclasses.replace(CFG.health, reloc_yaw_deg=25.0))
    frames = [x for x in flight.items() if isinstance(x, Frame)]
    engines = [SlamEngine(cfg, T_world_body0=flight.gt_frames.T_world_body[0])
               for _ in range(2)]
    for eng in engines:
        for f in frames[:30]:
            eng.step(f)
    eng, twin = engines
    T_ref = twin.step(frames[30]).T_world_body
    assert eng.health.status == OK
    s = eng.state
    s.p = s.p + torch.tensor([0.3, -0.4, 0.0], dtype=s.p.dtype)
    s.R = so3_exp(torch.tensor([0.0, 0.0, math.radians(20.0)], dtype=s.R.dtype)) @ s.R
    eng.health.status = LOST
    e = eng.step(frames[30])
    assert e.status == DEGRADED and e.status_reason == 'relocalised'
    assert e.T_jump is not None and np.linalg.norm(e.T_jump[:3, 3]) > 0.3
    assert np.linalg.norm(e.T_world_body[:3, 3] - T_ref[:3, 3]) < 0.03
    dR = e.T_world_body[:3, :3].T @ T_ref[:3, :3]
    assert math.degrees(math.acos(min(1.0, (np.trace(dR) - 1) / 2))) < 0.5


def test_relocalisation_refuses_a_view_the_map_cannot_explain(flight):
    """Lost, and the view returns as depth the map cannot explain (random ranges: a scene
    changed beyond recognition): no pose is accepted, the engine keeps coasting, LOST."""
    eng = SlamEngine(CFG, T_world_body0=flight.gt_frames.T_world_body[0])
    frames = [x for x in flight.items() if isinstance(x, Frame)]
    for f in frames[:10]:
        eng.step(f)
    eng.health.status = LOST
    f = frames[10]
    rng = np.random.default_rng(0)
    noise = rng.uniform(0.5, 5.0, f.depth.shape).astype(np.float32)
    e = eng.step(Frame(f.stamp_ns, f.rgb, noise, f.K, f.T_body_cam))
    assert e.status == LOST and e.T_jump is None
    assert eng.n_relocalisations == 0


def test_motion_that_the_imu_contradicts_is_not_ok(flight):
    """The camera flies (after a 2 s hover) while the IMU keeps reading rest: every frame's
    update stays small, but over a second the estimated motion and the IMU disagree (the
    drift test), so the status leaves OK and keyframes stop."""
    eng = SlamEngine(CFG, T_world_body0=flight.gt_frames.T_world_body[0])
    status, reasons, drift = [], [], []
    for item in flight.items():
        if isinstance(item, ImuSample):
            eng.add_imu(ImuSample(item.stamp_ns, np.array([0.0, 0.0, 9.81]), np.zeros(3)))
        if not isinstance(item, Frame):
            continue
        e = eng.step(item)
        status.append(e.status)
        reasons.append(e.status_reason)
        drift.append(e.health.get('drift', 0.0))
    speed = np.linalg.norm(flight.gt_frames.v_world, axis=1)
    moving = int(np.argmax(speed > 0.01))   # the hover ends at 2 s
    assert status[:moving] == [OK] * moving and max(drift[:moving]) < 80   # measured 64
    flagged = [i for i, r in enumerate(reasons) if 'disagrees with the IMU' in r]
    assert flagged and moving < flagged[0] < moving + 30   # within 1.5 s of moving
    assert status[flagged[0]] != OK and status[-1] != OK


def _candidate(x: float, inliers: float):
    state = dataclasses.make_dataclass('S', ['R', 'p'])(torch.eye(3, dtype=torch.float64),
                                                        torch.tensor([x, 0.0, 0.0],
                                                                     dtype=torch.float64))
    return state, {}, TrackSignals(tracked=True, valid_fraction=1.0, hit_fraction=1.0,
                                   inlier_fraction=inliers)


def test_relocalisation_choice_lets_the_coasted_prior_tell_tied_places_apart():
    """A floor or a flat wall fits a pose shifted along it as well as the true one (seen on a
    Blackbird-style flight: 0.9 m away with inliers 1.0 against 0.999). With the coasted pose
    known to 10 cm, the candidate inside its region is taken, even against a slightly better
    fit outside it; without one inside, two places that fit alike are refused."""
    prior_p = torch.zeros(3, dtype=torch.float64)
    cov = torch.eye(3, dtype=torch.float64) * 0.1 ** 2
    near, far = _candidate(0.03, 0.999), _candidate(0.9, 1.0)
    assert choose_candidate([far, near], prior_p, cov, 0.3, 0.2) is near
    assert choose_candidate([_candidate(0.9, 0.95), _candidate(0.05, 0.97)], prior_p, cov,
                            0.3, 0.2)[0].p[0] == 0.05
    wide_apart = [_candidate(0.9, 1.0), _candidate(-0.9, 0.995)]
    assert choose_candidate(wide_apart, prior_p, cov, 0.3, 0.2) is None
    # Both inside a wide prior: the IMU cannot tell either.
    assert choose_candidate([far, near], prior_p, cov * 100, 0.3, 0.2) is None
    # One clear winner outside the prior (the coasted pose ran off): taken.
    assert choose_candidate([_candidate(0.9, 0.9), _candidate(-0.9, 0.7)], prior_p, cov,
                            0.3, 0.2)[0].p[0] == 0.9
    assert choose_candidate([], prior_p, cov, 0.3, 0.2) is None


def _fly_noise(noise_scale: float, variance_factor: bool, adapt_noise: bool = False):
    fl = generate_flight(SyntheticConfig(duration_s=1.5, width=48, height=36,
                                         noise_scale=noise_scale))
    sensor = dataclasses.replace(CFG.sensor, variance_factor=variance_factor,
                                 adapt_noise=adapt_noise)
    eng = SlamEngine(EngineConfig(sensor=sensor), T_world_body0=fl.gt_frames.T_world_body[0])
    for item in fl.items():
        if isinstance(item, ImuSample):
            eng.add_imu(item)
        elif isinstance(item, Frame):
            est = eng.step(item)
    return eng, est


def test_published_covariance_grows_with_the_residuals_of_a_noisier_camera():
    """Depth 4x noisier than the generator's default (twice what ``engine.sensor`` assumes at
    2-3 m): the tracked rays' normalised residuals say so (their mean square more than twice
    the default camera's), and the published covariance is the filter's times that mean
    square when above 1, to ``sensor.variance_factor_power``; the pose is the same as with
    ``sensor.variance_factor: false``."""
    factors = []
    for noise_scale in (1.0, 4.0):
        (eng, est), (_, plain) = _fly_noise(noise_scale, True), _fly_noise(noise_scale, False)
        np.testing.assert_allclose(est.T_world_body, plain.T_world_body)
        np.testing.assert_allclose(est.cov, plain.cov * max(1.0, eng.residual_var) ** 4)
        factors.append(eng.residual_var)
    assert factors[1] > 2 * factors[0] and factors[1] > 1.5


def test_tracking_assumes_the_measured_depth_noise_of_a_noisier_camera():
    """``sensor.adapt_noise``: at 4x the generator's depth noise the engine measures the
    camera's noise from the tracked residuals and tracks, refines and fuses with the
    configured depth noise scaled up to it; the residuals against the scaled noise are then
    about what the model expects. The default camera (less noisy than configured; the
    residuals grow a little once it moves) keeps the configured noise."""
    scales = []
    for noise_scale in (1.0, 4.0):
        eng, est = _fly_noise(noise_scale, True, True)
        noise = eng.depth_noise
        scale = noise.sensor.depth_sigma_a / CFG.sensor.depth_sigma_a
        assert noise.scale == pytest.approx(scale)
        assert noise.sensor.depth_sigma_b / CFG.sensor.depth_sigma_b == pytest.approx(scale)
        measured = np.sqrt(noise.var)
        assert scale == pytest.approx(max(1.0, measured / NOISE_MODEL_SLACK), rel=0.05)
        assert 0.5 < eng.residual_var < 1.5 * NOISE_MODEL_SLACK ** 2   # the variance factor
        scales.append((measured, scale))
    # The default camera's residuals stay within what the model allows for; 4x the
    # generator's noise is about twice the configured one at this range, and the residuals
    # also carry the error of a map fused from that noise.
    assert scales[0][0] < NOISE_MODEL_SLACK and scales[0][1] == 1.0
    assert 2.5 < scales[1][0] < 4.0 and 2.0 < scales[1][1] < 3.0
    # Saved and restored with the state.
    again = SlamEngine(EngineConfig(sensor=eng.cfg.sensor))
    again.load_state_dict(eng.state_dict())
    assert again.depth_noise.sensor == eng.depth_noise.sensor
    assert again.depth_noise.var == eng.depth_noise.var
