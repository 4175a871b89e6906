# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The learned transition: f_T exactly at initialisation, agreement with the engineered
propagation, calibrated sampling, and fitting on a short clip."""

import numpy as np
import pytest
import torch

from vssm_ros.config import DynamicsTrainConfig, MotionConfig, SyntheticConfig
from vssm_ros.core import lie
from vssm_ros.core.dynamics import GaussianState, propagate_imu
from vssm_ros.core.dynamics_fit import (StateSequence, fit, initial_covariance, window_nll,
                                        window_starts)
from vssm_ros.core.imu import integrate_imu
from vssm_ros.core.learned_dynamics import (LearnedDynamics, error_nll, learned_transition,
                                            propagate_learned, so3_exp_step)
from vssm_ros.core.state_layout import BA, BG, DIM
from vssm_ros.data.synthetic import generate_flight
from vssm_ros.errors import StateError

F64 = torch.float64


@pytest.fixture(scope='module', autouse=True)
def one_thread():
    """Rollouts are hundreds of tiny sequential operations: a second thread only adds
    synchronisation (several times slower on a busy 2-core machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope='module')
def flight():
    return generate_flight(SyntheticConfig(duration_s=6.0, width=16, height=12,
                                           imu_rate_hz=100.0, peak_speed=1.5))


def _sequence(flight, bias=(0.0, 0.0, 0.0), dtype=F64):
    """Ground truth at the IMU stamps and the (noisy) IMU, with an extra accelerometer bias."""
    gt = flight.gt_imu
    q = lie.matrix_to_quat(torch.tensor(gt.T_world_body[:, :3, :3]))
    u = np.concatenate((flight.imu.acc + np.asarray(bias), flight.imu.gyro), axis=1)
    return StateSequence.from_arrays(gt.stamps_ns * 1e-9, gt.T_world_body[:, :3, 3], q,
                                     gt.v_world, u, dtype=dtype)


def _random_model(seed=0, dtype=F64):
    torch.manual_seed(seed)
    m = LearnedDynamics(hidden=16, layers=2).to(dtype)
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return m


def test_at_initialisation_the_model_is_f_T_exactly(flight):
    seq = _sequence(flight)
    model = LearnedDynamics().to(F64)
    model.set_normalisation(torch.randn(18, dtype=F64), torch.rand(18, dtype=F64) + 0.5)
    mean, q = model.residual(seq.R[:50], seq.v[:50], seq.u[:50], seq.u[1:51])
    assert torch.equal(mean, torch.zeros_like(mean))
    torch.testing.assert_close(q, model.noise_scale.expand(50, 6), rtol=1e-6, atol=2e-6)
    s, n = 10, 120
    learned = model.rollout(seq.R[s], seq.p[s], seq.v[s], seq.u[s:s + n], seq.dt[s:s + n],
                            return_all=True)
    f_T = model.rollout(seq.R[s], seq.p[s], seq.v[s], seq.u[s:s + n], seq.dt[s:s + n],
                        residual=False, return_all=True)
    for k in ('R', 'p', 'v'):
        assert torch.equal(learned[k], f_T[k]), k
    # f_T is the Euler integrator of core.imu (same convention, to rounding).
    R, v, p = integrate_imu(seq.R[s], seq.v[s], seq.p[s], seq.u[s:s + n, :3],
                            seq.u[s:s + n, 3:], seq.dt[s:s + n])
    torch.testing.assert_close(f_T['R'][-1], R, rtol=0, atol=1e-12)
    torch.testing.assert_close(f_T['v'][-1], v, rtol=0, atol=1e-12)
    torch.testing.assert_close(f_T['p'][-1], p, rtol=0, atol=1e-12)
    # The residual is a real correction once the output layer is not zero.
    with torch.no_grad():
        model.mean_head.bias.fill_(0.5)
        moved = model.rollout(seq.R[s], seq.p[s], seq.v[s], seq.u[s:s + n], seq.dt[s:s + n])
    assert float(torch.linalg.norm(moved['p'] - f_T['p'][-1])) > 0.05


def test_so3_exp_step_is_so3_exp():
    torch.manual_seed(0)
    scale = torch.logspace(-9, 0.4, 200, dtype=F64)[:, None]
    w = torch.cat((torch.randn(200, 3, dtype=F64) * scale, torch.zeros(1, 3, dtype=F64)))
    torch.testing.assert_close(so3_exp_step(w), lie.so3_exp(w), rtol=0, atol=1e-14)
    w.requires_grad_(True)
    so3_exp_step(w).sum().backward()
    assert torch.isfinite(w.grad).all()


def test_covariance_matches_the_engineered_propagation(flight):
    """At initialisation, with the configured IMU noise, the learned propagate step is the
    engineered one (mean and covariance, up to the first-order rate-noise Jacobian)."""
    seq = _sequence(flight)
    cfg = MotionConfig()
    model = LearnedDynamics.engineered(cfg.acc_noise, cfg.gyro_noise).to(F64)
    P0 = torch.diag(torch.tensor([1e-4] * 3 + [1e-5] * 3 + [1e-3] * 3 + [1e-2] * 3
                                 + [1e-4] * 3, dtype=F64))
    s, n = 200, 10
    # The state's biases are subtracted from the samples, in both.
    b_a = torch.tensor([0.2, -0.1, 0.3], dtype=F64)
    b_g = torch.tensor([0.01, 0.02, -0.01], dtype=F64)
    state = GaussianState(seq.R[s], seq.p[s], seq.v[s], P0, torch.zeros(3, dtype=F64),
                          b_a, b_g)
    acc, gyro, dt = seq.u[s:s + n, :3] + b_a, seq.u[s:s + n, 3:] + b_g, seq.dt[s:s + n]
    ref = propagate_imu(state, acc, gyro, dt, cfg)
    new = propagate_learned(state, acc, gyro, dt, model, cfg)
    torch.testing.assert_close(new.p, ref.p, rtol=0, atol=1e-10)
    torch.testing.assert_close(new.v, ref.v, rtol=0, atol=1e-10)
    torch.testing.assert_close(new.R, ref.R, rtol=0, atol=1e-10)
    torch.testing.assert_close(new.cov, ref.cov, rtol=2e-3, atol=1e-9)
    torch.testing.assert_close(new.omega, ref.omega, rtol=0, atol=1e-12)
    assert torch.equal(new.b_a, b_a) and torch.equal(new.b_g, b_g)
    # Ignoring the biases would be off by about |b_a| T = 0.037 m/s in velocity.
    blind = propagate_learned(GaussianState(seq.R[s], seq.p[s], seq.v[s], P0,
                                            torch.zeros(3, dtype=F64)), acc, gyro, dt, model)
    assert float((blind.v - new.v).detach().norm()) > 0.03
    # The transition's process noise: the model's on the kinematics, the walk on the biases.
    pred, F = learned_transition(state, acc, gyro, dt, model, cfg)
    T = float(dt.sum())
    assert F.shape == (DIM, DIM) and pred.cov.shape == (DIM, DIM)
    torch.testing.assert_close(torch.diagonal(pred.cov)[BA],
                               torch.full((3,), cfg.acc_bias_walk ** 2 * T, dtype=F64))
    torch.testing.assert_close(torch.diagonal(pred.cov)[BG],
                               torch.full((3,), cfg.gyro_bias_walk ** 2 * T, dtype=F64))


def test_sampling_draws_the_biases_with_the_state():
    """``sample`` with the whole state's covariance: each rollout's controls are corrected by
    its own bias draw; the mean bias is subtracted. A hovering IMU, level: after T seconds the
    position spread from an accelerometer bias std s is s T² / 2 (the model's own noise and
    the tilt from the gyro bias are made negligible here)."""
    model = LearnedDynamics.engineered(1e-6, 1e-8).to(F64)
    n, dt, s = 50, 0.02, 0.2
    u = torch.tensor([[0.0, 0.0, 9.81, 0.0, 0.0, 0.0]], dtype=F64).expand(n, 6)
    b_a = torch.tensor([0.5, 0.0, 0.0], dtype=F64)
    P0 = torch.zeros(DIM, DIM, dtype=F64)
    P0[BA, BA] = torch.eye(3, dtype=F64) * s ** 2
    P0[BG, BG] = torch.eye(3, dtype=F64) * 1e-12
    R0, p0, v0 = torch.eye(3, dtype=F64), torch.zeros(3, dtype=F64), torch.zeros(3, dtype=F64)
    smp = model.sample(R0, p0, v0, P0, u + torch.cat((b_a, torch.zeros(3, dtype=F64))), dt,
                       4000, generator=torch.Generator().manual_seed(3), residual=False,
                       b_a=b_a)
    T = n * dt
    p_end = smp['p'][:, -1]
    assert float(p_end.mean(0).abs().max()) < 4 * 0.5 * s * T * T / 60   # bias subtracted
    std = p_end.std(0)
    torch.testing.assert_close(std, torch.full((3,), 0.5 * s * T * T, dtype=F64), rtol=0.06,
                               atol=0)
    with pytest.raises(StateError, match='P0'):
        model.sample(R0, p0, v0, torch.eye(6, dtype=F64), u, dt, 4)


def test_sampled_rollouts_match_the_linearised_covariance(flight):
    seq = _sequence(flight)
    model = _random_model()
    model.set_normalisation(torch.zeros(18, dtype=F64), torch.full((18,), 3.0, dtype=F64))
    P0 = initial_covariance(DynamicsTrainConfig(), F64)
    s, n = 100, 50
    args = (seq.R[s], seq.p[s], seq.v[s])
    lin = model.rollout(*args, seq.u[s:s + n], seq.dt[s:s + n], P0=P0)
    smp = model.sample(*args, P0, seq.u[s:s + n], seq.dt[s:s + n], 4000,
                       generator=torch.Generator().manual_seed(1))
    assert smp['p'].shape == (4000, n, 3) and smp['R'].shape == (4000, n, 3, 3)
    p_end = smp['p'][:, -1]
    tol = 3 * float(lin['cov'][:3, :3].diagonal().max().detach().sqrt()) / 60
    torch.testing.assert_close(p_end.mean(0), lin['p'], rtol=0, atol=tol)
    emp = torch.cov(p_end.t())
    ratio = emp.diagonal() / lin['cov'][:3, :3].diagonal()
    assert torch.all((ratio > 0.85) & (ratio < 1.15)), ratio


def test_state_round_trip_and_bad_states():
    model = _random_model(dtype=torch.float32)
    model.set_normalisation(torch.randn(18), torch.rand(18) + 0.5)
    tensors, meta = model.state()
    back = LearnedDynamics.from_state(tensors, meta)
    R = lie.so3_exp(torch.randn(5, 3))
    v, u = torch.randn(5, 3), torch.randn(5, 6)
    for a, b in zip(model.residual(R, v, u, u), back.residual(R, v, u, u)):
        assert torch.equal(a, b)
    with pytest.raises(StateError, match='format version'):
        LearnedDynamics.from_state(tensors, {**meta, 'format_version': 99})
    with pytest.raises(StateError, match='features'):
        LearnedDynamics.from_state(tensors, {**meta, 'features': ['x']})
    with pytest.raises(StateError, match='do not fit'):
        LearnedDynamics.from_state(tensors, {**meta, 'hidden': 7})
    with pytest.raises(StateError, match="'imu' or 'thrust'"):
        LearnedDynamics(controls='rpm')


def test_error_nll_is_the_gaussian_density():
    torch.manual_seed(2)
    A = torch.randn(9, 9, dtype=F64)
    cov = A @ A.t() + 0.1 * torch.eye(9, dtype=F64)
    R, p, v = lie.so3_exp(torch.randn(3, dtype=F64)), torch.randn(3, dtype=F64), \
        torch.randn(3, dtype=F64)
    d = torch.randn(9, dtype=F64) * 0.1
    nll = error_nll(R, p, v, cov, R @ lie.so3_exp(d[3:6]), p + d[:3], v + d[6:])
    ref = -torch.distributions.MultivariateNormal(torch.zeros(9, dtype=F64), cov).log_prob(d)
    torch.testing.assert_close(nll, ref, rtol=1e-9, atol=1e-9)


def test_fitting_a_short_clip_reduces_the_validation_error():
    """An accelerometer bias the integrator does not know about: a few epochs of the rollout
    likelihood on one short flight learn it, and the error on another flight drops."""
    torch.manual_seed(0)

    def clip(seed):
        return _sequence(generate_flight(SyntheticConfig(
            seed=seed, duration_s=4.0, width=16, height=12, imu_rate_hz=100.0, peak_speed=1.5,
            hover_s=0.2, ramp_s=0.5)), bias=(0.4, -0.3, 0.2), dtype=torch.float32)

    train, val = clip(0), clip(1)
    cfg = DynamicsTrainConfig(hidden=16, layers=1, window_s=0.4, stride_s=0.1,
                              score_every_s=0.1, epochs=3, patience=3, batch=8, lr=0.02,
                              init_acc_noise=0.1, init_gyro_noise=0.01)
    model = LearnedDynamics(hidden=cfg.hidden, layers=cfg.layers, acc_noise=cfg.init_acc_noise,
                            gyro_noise=cfg.init_gyro_noise)
    starts = window_starts(len(val), 40, 10)

    def val_rmse():
        with torch.no_grad():
            rows = starts[:, None] + torch.arange(41)
            out = model.rollout(val.R[starts], val.p[starts], val.v[starts], val.u[rows],
                                val.dt[rows], steps=40)
            return float(torch.linalg.norm(out['p'] - val.p[starts + 40], dim=-1)
                         .pow(2).mean().sqrt())

    before = val_rmse()
    hist = fit(model, train, val, cfg)
    after = val_rmse()
    assert hist['best_val_nll'] < hist['init_val_nll'] - 2.0
    assert after < 0.5 * before, (before, after)
    with torch.no_grad():
        nll = window_nll(model, val, starts, 40, 10, initial_covariance(cfg)).mean()
    assert abs(float(nll) - hist['best_val_nll']) < 5.0
