# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""SlamEngine.predict: sampled rollouts from the posterior (held, given or no controls), the
rendered predictive images, the learned transition inside the engine, and the cost field."""

import dataclasses

import numpy as np
import pytest
import torch

from vssm_ros.config import (CostConfig, EngineConfig, InferenceConfig, MapConfig, MotionConfig,
                             PredictionConfig, SyntheticConfig)
from vssm_ros.core.cost import CostField
from vssm_ros.core.dynamics import initial_state
from vssm_ros.core.engine import SlamEngine
from vssm_ros.core.learned_dynamics import LearnedDynamics
from vssm_ros.core.prediction import combine_renders
from vssm_ros.data.synthetic import generate_flight
from vssm_ros.errors import StateError
from vssm_ros.types import Frame, ImuSample

SYN = SyntheticConfig(duration_s=2.0, width=40, height=30, camera_rate_hz=10.0)
# The rollouts spread with the IMU noise: the tolerances below are for a well-characterised
# IMU (the default's wider noise also covers rotor vibration).
CFG = EngineConfig(dtype='float64', motion=MotionConfig(acc_noise=0.05, gyro_noise=0.005),
                   map=MapConfig(resolution=0.1, truncation=0.3),
                   predict=PredictionConfig(samples=8), cost=CostConfig(max_distance=1.0))
FAST = dataclasses.replace(CFG, dtype='float32',
                           inference=InferenceConfig(rays=256, track_iters=4))
G = np.array([0.0, 0.0, 9.81])


@pytest.fixture(scope='module')
def flight():
    return generate_flight(SYN)


@pytest.fixture(scope='module')
def tracked(flight):
    """An engine after the first 1.2 s of the flight (the drone hovers for 1 s, then starts)."""
    eng = SlamEngine(FAST, T_world_body0=flight.gt_frames.T_world_body[0])
    last = None
    for item in flight.items(noise=False):
        if isinstance(item, ImuSample):
            eng.add_imu(item)
        elif isinstance(item, Frame):
            if item.stamp_ns - flight.t0_ns > 1.2e9:
                break
            eng.step(item)
            last = item
    return eng, last


def _hovering_engine(imu=True, acc_bias_std=1e-6):
    """An engine whose state is set directly: at rest at (1, 2, 1.5), level, biases zero and
    (by default) known."""
    eng = SlamEngine(CFG)
    T = np.eye(4)
    T[:3, 3] = (1.0, 2.0, 1.5)
    eng.state = initial_state(torch.tensor(T), pos_std=1e-3, rot_std=1e-4, vel_std=1e-3,
                              acc_bias_std=acc_bias_std, gyro_bias_std=1e-7)
    eng.last_stamp_ns = 10**9
    if imu:
        eng.add_imu(ImuSample(stamp_ns=10**9 + 5 * 10**6, acc=G.copy(), gyro=np.zeros(3)))
    return eng


def test_hovering_with_held_zero_mean_imu_stays_in_place_and_spreads():
    eng = _hovering_engine()
    out = eng.predict(horizon_s=1.0, n_samples=400, render=False)
    n = int(round(1.0 / CFG.predict.control_dt))
    assert out['t'].shape == (n,) and out['t'][-1] == pytest.approx(1.0)
    assert out['p'].shape == (400, n, 3) and out['R'].shape == (400, n, 3, 3)
    assert out['v'].shape == (400, n, 3)
    std = out['p'].std(axis=0)  # (n, 3)
    mean = out['p'].mean(axis=0)
    # Stays in place: the mean is within its own standard error of the start.
    assert np.all(np.abs(mean[-1] - (1.0, 2.0, 1.5)) < 4 * std[-1] / np.sqrt(400) + 1e-3)
    # The spread grows with the horizon: the held control is off by an unknown constant
    # (sigma_p = hold_acc_std T² / 2), plus the IMU's white noise (acc_noise sqrt(T³ / 3)) and
    # a little from the rate offset tilting gravity (horizontal axes).
    for a, b in ((9, 19), (19, 49), (49, 99)):
        assert np.all(std[b] > std[a])
    for T, k in ((0.5, 49), (1.0, 99)):
        expected = np.hypot(0.5 * CFG.predict.hold_acc_std * T ** 2,
                            CFG.motion.acc_noise * np.sqrt(T ** 3 / 3))
        assert std[k, 2] == pytest.approx(expected, rel=0.15)
        assert expected < std[k, :2].mean() < 2 * expected


def test_given_controls_are_followed_and_held():
    eng = _hovering_engine()
    # 0.5 s of 1 m/s² forward (body x) on top of hovering, then the last row is held.
    controls = np.tile(np.concatenate((G + (1.0, 0.0, 0.0), np.zeros(3))), (50, 1))
    out = eng.predict(controls, horizon_s=1.0, n_samples=64, control_dt=0.01, render=False)
    mean = out['p'].mean(axis=0)
    assert mean[-1, 0] - 1.0 == pytest.approx(0.5, abs=0.02)    # x = a t² / 2 over 1 s
    assert np.abs(mean[-1, 1:] - (2.0, 1.5)).max() < 0.02
    # Known controls: no hold noise, only the configured IMU noise (white acceleration:
    # sigma_p(1 s) = acc_noise sqrt(1/3)).
    expected = CFG.motion.acc_noise * np.sqrt(1.0 / 3.0)
    assert out['p'][:, -1].std(axis=0).mean() == pytest.approx(expected, rel=0.3)
    with pytest.raises(StateError, match='controls'):
        eng.predict(horizon_s=1.0, controls=np.zeros((5, 3)), render=False)


def test_rollouts_subtract_the_estimated_biases_and_spread_with_their_uncertainty():
    """Raw controls carry the IMU's bias: a state that knows it predicts the motion the
    bias-free controls give; an uncertain bias (std s) adds ``s T² / 2`` to the spread."""
    b_a, b_g = np.array([0.3, -0.2, 0.4]), np.array([0.0, 0.0, 0.05])
    eng = _hovering_engine()
    eng.state.b_a = torch.tensor(b_a)
    eng.state.b_g = torch.tensor(b_g)
    raw = np.tile(np.concatenate((G + b_a, b_g)), (100, 1))
    out = eng.predict(raw, horizon_s=1.0, n_samples=64, control_dt=0.01, render=False)
    assert np.abs(out['p'][:, -1].mean(axis=0) - (1.0, 2.0, 1.5)).max() < 0.02
    yaw = np.arctan2(out['R'][:, -1, 1, 0], out['R'][:, -1, 0, 0])
    # The gyro's white noise spreads the yaw by gyro_noise sqrt(T) = 0.005 rad; its mean is
    # good to 0.005 / 8: not subtracting the 0.05 rad/s bias would turn it 0.05 rad.
    assert abs(yaw.mean()) < 0.003
    blind = _hovering_engine().predict(raw, horizon_s=1.0, n_samples=64, control_dt=0.01,
                                       render=False)
    assert np.abs(blind['p'][:, -1].mean(axis=0) - (1.0, 2.0, 1.5)).max() > 0.15
    s = 0.2
    wide = _hovering_engine(acc_bias_std=s).predict(
        np.tile(np.concatenate((G, np.zeros(3))), (100, 1)), horizon_s=1.0, n_samples=2000,
        control_dt=0.01, render=False)
    expected = np.hypot(CFG.motion.acc_noise * np.sqrt(1.0 / 3.0), 0.5 * s)
    assert wide['p'][:, -1].std(axis=0).mean() == pytest.approx(expected, rel=0.1)


def test_without_imu_the_constant_velocity_model_predicts():
    eng = _hovering_engine(imu=False)
    eng.state.v = torch.tensor([0.5, 0.0, -0.2], dtype=torch.float64)
    out = eng.predict(horizon_s=0.5, n_samples=1000, render=False)
    mean = out['p'][:, -1].mean(axis=0)
    # Constant velocity; the velocity random walk (cv_acc_noise) spreads the position by
    # q sqrt(T^3 / 3) ~ 0.4 m, so the mean of 1000 samples is good to about 0.04 m.
    np.testing.assert_allclose(mean, (1.25, 2.0, 1.4), atol=0.08)
    std = out['p'].std(axis=0)
    assert np.all(std[-1] > std[len(std) // 2])
    expected = CFG.motion.cv_acc_noise * np.sqrt(0.5 ** 3 / 3)
    assert std[-1].mean() == pytest.approx(expected, rel=0.2)


def test_predict_needs_a_state_and_a_horizon():
    eng = SlamEngine(CFG)
    with pytest.raises(StateError, match='no frame'):
        eng.predict(horizon_s=0.5)
    eng = _hovering_engine()
    with pytest.raises(StateError, match='horizon'):
        eng.predict(horizon_s=0.0, render=False)
    # The default horizon comes from the config.
    assert eng.predict(render=False)['t'][-1] == pytest.approx(CFG.predict.horizon_s)
    with pytest.raises(StateError, match='camera'):
        eng.predict(horizon_s=0.5)


def test_rendered_prediction_matches_the_frame_that_arrives(tracked, flight):
    eng, last = tracked
    h, w = last.depth.shape
    out = eng.predict(horizon_s=0.3, times=(0.1, 0.3))
    assert out['depth'].shape == (2, h, w) and out['depth'].dtype == np.float32
    assert out['depth_std'].shape == (2, h, w) and out['color'].shape == (2, h, w, 3)
    assert out['color'].dtype == np.uint8
    assert np.all((out['hit_fraction'] >= 0) & (out['hit_fraction'] <= 1))
    assert np.array_equal(np.isfinite(out['depth']), np.isfinite(out['depth_std']))
    assert np.all(out['depth_std'][np.isfinite(out['depth_std'])] > 0)
    # The frame 0.3 s later: the prediction is close and calibrated.
    k = int(np.argmin(np.abs(flight.frame_stamps_ns - (last.stamp_ns + 300_000_000))))
    obs = flight.frame(k, noise=False).depth
    ok = np.isfinite(obs) & np.isfinite(out['depth'][1])
    err = np.abs(out['depth'][1] - obs)[ok]
    assert ok.mean() > 0.5
    assert np.median(err) < 0.1
    assert np.mean(err <= 2 * out['depth_std'][1][ok]) > 0.8


def test_combine_renders_statistics():
    depth = np.array([[[1.0, np.nan]], [[3.0, np.nan]], [[np.nan, 2.0]]], dtype=np.float32)
    std = np.full_like(depth, 0.5)
    color = np.zeros((3, 1, 2, 3), dtype=np.uint8)
    color[0] = 90
    out = combine_renders(depth, std, color, min_hit_fraction=0.5)
    assert out['depth'][0, 0] == pytest.approx(2.0)
    assert out['depth_std'][0, 0] == pytest.approx(np.sqrt(1.0 + 0.25))
    assert np.isnan(out['depth'][0, 1]) and np.isnan(out['depth_std'][0, 1])
    np.testing.assert_allclose(out['hit_fraction'], [[2 / 3, 1 / 3]])
    assert out['color'][0, 0, 0] == 30


def test_engine_with_an_untrained_learned_transition_tracks_like_the_default(flight):
    model = LearnedDynamics.engineered(CFG.motion.acc_noise, CFG.motion.gyro_noise)
    default = SlamEngine(FAST, T_world_body0=flight.gt_frames.T_world_body[0])
    learned = SlamEngine(FAST, T_world_body0=flight.gt_frames.T_world_body[0], dynamics=model)
    assert learned.dynamics.feat_mean.dtype == torch.float32
    assert not any(p.requires_grad for p in learned.dynamics.parameters())
    n = 0
    for item in flight.items(noise=False):
        if isinstance(item, ImuSample):
            default.add_imu(item)
            learned.add_imu(item)
        elif isinstance(item, Frame):
            a, b = default.step(item), learned.step(item)
            n += 1
            if n == 4:
                break
    np.testing.assert_allclose(b.T_world_body, a.T_world_body, atol=1e-4)
    np.testing.assert_allclose(b.cov, a.cov, rtol=1e-2, atol=1e-9)


def test_cost_field_of_the_engine_map(tracked):
    eng, _ = tracked
    field = eng.cost_field()
    assert isinstance(field, CostField)
    assert field.resolution == pytest.approx(0.1)
    assert float(field.cost.min()) >= 0.0 and float(field.cost.max()) == 1.0
    assert bool(field.known.any()) and not bool(field.known.all())
