# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Propagate step: IMU integration against the synthetic flight's closed-form truth, covariance
growth, the bias columns of the transition's Jacobian against finite differences, the
constant-velocity prior and the state's boxplus/boxminus on the 15-vector."""

import math

import numpy as np
import pytest
import torch

from vssm_ros.config import MotionConfig, SyntheticConfig
from vssm_ros.core import lie
from vssm_ros.core.dynamics import (GaussianState, constant_velocity_transition, imu_transition,
                                    initial_state, preintegrated_transition,
                                    propagate_constant_velocity, propagate_imu)
from vssm_ros.core.imu import preintegrate
from vssm_ros.core.state_layout import BA, BG, BIAS, DIM, KIN, P, PHI, POSE, V
from vssm_ros.data.synthetic import generate_flight

F64 = torch.float64
CFG = MotionConfig()
# Bias variances tiny: the closed forms below are those of the kinematic part alone.
P0 = torch.diag(torch.tensor([1e-4] * 3 + [1e-5] * 3 + [1e-2] * 3 + [1e-14] * 6, dtype=F64))


@pytest.fixture(scope='module')
def flight():
    return generate_flight(SyntheticConfig(duration_s=3, width=32, height=24))


def _true_state(flight, i, cov=P0):
    T = torch.tensor(flight.gt_imu.T_world_body[i], dtype=F64)
    return GaussianState(T[:3, :3].clone(), T[:3, 3].clone(),
                         torch.tensor(flight.gt_imu.v_world[i], dtype=F64), cov.clone(),
                         torch.zeros(3, dtype=F64))


def _imu(flight, i0, n):
    """Noise-free IMU samples i0 .. i0+n-1, each held until the next stamp."""
    acc = torch.tensor(flight.imu.acc_true[i0:i0 + n], dtype=F64)
    gyro = torch.tensor(flight.imu.gyro_true[i0:i0 + n], dtype=F64)
    dt = torch.tensor(np.diff(flight.imu.stamps_ns[i0:i0 + n + 1]) * 1e-9, dtype=F64)
    return acc, gyro, dt


def _i0(flight, t=1.5):
    i0 = int(np.argmin(np.abs(flight.seconds(flight.imu.stamps_ns) - t)))
    assert flight.seconds(flight.imu.stamps_ns[i0]) == pytest.approx(t)
    return i0


def _rot_err_deg(Ra, Rb):
    return math.degrees(float(lie.so3_log(Ra.t() @ Rb).norm()))


def test_propagate_imu_reproduces_the_true_next_state(flight):
    i0 = _i0(flight)
    n = 10  # 0.05 s at 200 Hz
    s1 = propagate_imu(_true_state(flight, i0), *_imu(flight, i0, n), CFG)
    truth = _true_state(flight, i0 + n)
    assert float((s1.p - truth.p).norm()) < 1e-3
    assert _rot_err_deg(s1.R, truth.R) < 0.05
    assert float((s1.v - truth.v).norm()) < 5e-3
    assert torch.allclose(s1.R @ s1.R.t(), torch.eye(3, dtype=F64), atol=1e-12)
    # The flight really moves in that interval (the test would catch a missing term).
    assert float((truth.p - _true_state(flight, i0).p).norm()) > 2e-3
    # omega is the mean body rate over the interval.
    acc, gyro, dt = _imu(flight, i0, n)
    assert torch.allclose(s1.omega, gyro.mean(dim=0))


def test_propagate_imu_with_gravity_or_bias_wrong_is_far_off(flight):
    # Sensitivity: a 0.5 m/s^2 accelerometer bias error moves p by 0.5 * 0.5 * 0.05^2 = 0.6 mm
    # and v by 25 mm/s, well beyond the tolerances above. The bias is the state's.
    i0 = _i0(flight)
    truth = _true_state(flight, i0 + 10)
    s0 = _true_state(flight, i0)
    s0.b_a = torch.tensor([0.0, 0.0, 0.5], dtype=F64)
    s1 = propagate_imu(s0, *_imu(flight, i0, 10), CFG)
    assert float((s1.v - truth.v).norm()) == pytest.approx(0.025, rel=0.02)
    assert torch.equal(s1.b_a, s0.b_a) and torch.equal(s1.b_g, s0.b_g)   # random walk: kept


def test_biased_imu_with_the_true_biases_reproduces_the_true_next_state(flight):
    """Samples carrying a known bias, propagated from a state that holds that bias, land where
    the bias-free samples do; with the biases ignored they do not."""
    i0 = _i0(flight)
    acc, gyro, dt = _imu(flight, i0, 10)
    b_a = torch.tensor([0.3, -0.2, 0.4], dtype=F64)
    b_g = torch.tensor([0.02, -0.03, 0.01], dtype=F64)
    truth = _true_state(flight, i0 + 10)
    s0 = _true_state(flight, i0)
    s0.b_a, s0.b_g = b_a, b_g
    s1 = propagate_imu(s0, acc + b_a, gyro + b_g, dt, CFG)
    assert float((s1.p - truth.p).norm()) < 1e-3
    assert _rot_err_deg(s1.R, truth.R) < 0.05
    assert float((s1.v - truth.v).norm()) < 5e-3
    assert torch.allclose(s1.omega, gyro.mean(dim=0))
    blind = propagate_imu(_true_state(flight, i0), acc + b_a, gyro + b_g, dt, CFG)
    assert float((blind.v - truth.v).norm()) > 0.02
    assert _rot_err_deg(blind.R, truth.R) > 0.08


def test_propagated_covariance_grows_and_is_spd(flight):
    i0 = _i0(flight)
    acc, gyro, dt = _imu(flight, i0, 20)
    s0 = _true_state(flight, i0)
    prev = s0.cov
    for n in (5, 10, 20):
        s = propagate_imu(s0, acc[:n], gyro[:n], dt[:n], CFG)
        cov = s.cov
        T = float(dt[:n].sum())
        assert torch.equal(cov, cov.t())
        assert float(torch.linalg.eigvalsh(cov).min()) > 0.0
        d = torch.diagonal(cov)
        assert bool((d > torch.diagonal(prev)).all())
        assert float(torch.logdet(cov)) > float(torch.logdet(prev))
        # Closed forms for a slow flight: v var += q_a T, rot var += q_g T,
        # p var += var_v T^2 + q_a T^3 / 3 (to a few per cent: attitude couples into v).
        assert torch.allclose(d[PHI], torch.full((3,), 1e-5 + CFG.gyro_noise ** 2 * T,
                                                 dtype=F64), rtol=1e-3)
        assert torch.allclose(d[V], torch.full((3,), 1e-2 + CFG.acc_noise ** 2 * T,
                                               dtype=F64), rtol=2e-3)
        assert torch.allclose(d[P], torch.full((3,), 1e-4 + 1e-2 * T * T
                                               + CFG.acc_noise ** 2 * T ** 3 / 3, dtype=F64),
                              rtol=2e-3)
        # The biases random-walk: var += walk² T, exactly.
        assert torch.allclose(d[BA], torch.full((3,), 1e-14 + CFG.acc_bias_walk ** 2 * T,
                                                dtype=F64), rtol=1e-12)
        assert torch.allclose(d[BG], torch.full((3,), 1e-14 + CFG.gyro_bias_walk ** 2 * T,
                                                dtype=F64), rtol=1e-12)
        prev = cov


def test_bias_uncertainty_flows_into_the_pose(flight):
    """An uncertain bias makes the prediction uncertain: var(δv) grows by about
    var(b_a) T² and var(δφ) by var(b_g) T², and the pose becomes correlated with the bias."""
    i0 = _i0(flight)
    acc, gyro, dt = _imu(flight, i0, 20)
    T = float(dt.sum())
    sa, sg = 0.1, 0.01
    cov = P0.clone()
    cov[BA, BA] = torch.eye(3, dtype=F64) * sa ** 2
    cov[BG, BG] = torch.eye(3, dtype=F64) * sg ** 2
    base = propagate_imu(_true_state(flight, i0), acc, gyro, dt, CFG)
    s = propagate_imu(_true_state(flight, i0, cov), acc, gyro, dt, CFG)
    extra = torch.diagonal(s.cov) - torch.diagonal(base.cov)
    assert torch.allclose(extra[V], torch.full((3,), sa ** 2 * T * T, dtype=F64), rtol=0.02)
    assert torch.allclose(extra[PHI], torch.full((3,), sg ** 2 * T * T, dtype=F64), rtol=0.02)
    # Cross-covariance v-b_a: R d_v_d_ba P_ba = -R T sa² (to first order in the rotation).
    cross = s.cov[V, BA]
    expected = torch.full((3,), -sa ** 2 * T, dtype=F64)
    assert torch.allclose(torch.diagonal(s.R.t() @ cross), expected, rtol=0.05)
    assert float(torch.linalg.eigvalsh(s.cov).min()) > 0.0


def _perturbed(state, i, eps):
    d = torch.zeros(DIM, dtype=F64)
    d[i] = eps
    return state.boxplus(d)


@pytest.mark.parametrize('offset', [0.0, 1.0])
def test_imu_jacobian_matches_finite_differences(flight, offset):
    """F (15, 15) of the preintegrated transition against central differences of its mean,
    ``(f(z ⊞ ε e_i) ⊟ f(z ⊟ ε e_i)) / 2ε``, every column, the bias columns included. With
    ``offset`` the state's biases sit away from the ones the samples were integrated at (the
    engine's window relinearises states like this), so the bias correction and its right
    Jacobian are exercised too."""
    i0 = _i0(flight)
    acc, gyro, dt = _imu(flight, i0, 10)
    b_a0 = torch.tensor([0.05, -0.02, 0.03], dtype=F64)
    b_g0 = torch.tensor([0.004, 0.002, -0.003], dtype=F64)
    pre = preintegrate(acc, gyro, dt, b_a0, b_g0, acc_noise=CFG.acc_noise,
                       gyro_noise=CFG.gyro_noise)
    s0 = _true_state(flight, i0)
    s0.b_a = b_a0 + offset * torch.tensor([0.2, 0.1, -0.3], dtype=F64)
    s0.b_g = b_g0 + offset * torch.tensor([0.05, -0.08, 0.06], dtype=F64)
    omega = torch.zeros(3, dtype=F64)

    def f(s):
        return preintegrated_transition(s, pre, CFG, omega)[0]

    _, F = preintegrated_transition(s0, pre, CFG, omega)
    eps = 1e-6
    F_fd = torch.stack([f(_perturbed(s0, i, eps)).boxminus(f(_perturbed(s0, i, -eps)))
                        for i in range(DIM)], dim=1) / (2 * eps)
    torch.testing.assert_close(F, F_fd, rtol=0, atol=1e-7)
    # The bias blocks are not trivial: a missing column would fail above.
    assert float(F[V, BA].abs().max()) > 0.04 and float(F[PHI, BG].abs().max()) > 0.04
    assert float(F[P, BA].abs().max()) > 1e-3 and float(F[V, BG].abs().max()) > 1e-4
    assert torch.equal(F[BIAS, BIAS], torch.eye(6, dtype=F64))
    assert torch.equal(F[BIAS, KIN], torch.zeros(6, 9, dtype=F64))


def test_bias_correction_matches_reintegration(flight):
    """Samples integrated at one bias and applied at another (first-order correction) land
    where integrating at the other bias does, to second order in the difference."""
    i0 = _i0(flight)
    acc, gyro, dt = _imu(flight, i0, 10)
    s0 = _true_state(flight, i0)
    pre = preintegrate(acc, gyro, dt, acc_noise=CFG.acc_noise, gyro_noise=CFG.gyro_noise)
    s0.b_a = torch.tensor([0.1, -0.2, 0.05], dtype=F64)
    s0.b_g = torch.tensor([0.01, -0.005, 0.008], dtype=F64)
    corrected, _ = preintegrated_transition(s0, pre, CFG, torch.zeros(3, dtype=F64))
    exact, _ = imu_transition(s0, acc, gyro, dt, CFG)
    uncorrected = exact.clone()
    uncorrected.p = s0.p + s0.v * 0.05 + 0.5 * torch.tensor([0, 0, -CFG.gravity],
                                                            dtype=F64) * 0.05 ** 2 \
        + s0.R @ pre.delta_p
    # What is left is second order: mostly the b_a x b_g cross term of R(b_g) (a - b_a),
    # ~ |δb_a| T |δb_g| T = 0.23 * 0.05 * 6.7e-4 = 8e-6 m/s on v; 1e-2 m/s without correction.
    assert float((corrected.p - exact.p).norm()) < 1e-7
    assert float((corrected.v - exact.v).norm()) < 1e-5
    assert _rot_err_deg(corrected.R, exact.R) < 1e-5
    assert float((uncorrected.p - exact.p).norm()) > 2e-4   # the correction matters


def test_propagate_constant_velocity():
    omega = torch.tensor([0.1, -0.2, 0.3], dtype=F64)
    b_a, b_g = torch.tensor([0.1, 0.2, -0.3], dtype=F64), torch.tensor([0.01, 0, -0.02],
                                                                       dtype=F64)
    s0 = GaussianState(lie.so3_exp(torch.tensor([0.3, 0.2, -0.1], dtype=F64)),
                       torch.tensor([1.0, 2.0, 3.0], dtype=F64),
                       torch.tensor([0.5, -0.4, 0.2], dtype=F64), P0.clone(), omega, b_a, b_g)
    dt = 0.1
    s1 = propagate_constant_velocity(s0, dt, CFG)
    assert torch.allclose(s1.p, s0.p + s0.v * dt, atol=1e-15)
    assert torch.equal(s1.v, s0.v)
    assert torch.allclose(s1.R, s0.R @ lie.so3_exp(omega * dt), atol=1e-12)
    d = torch.diagonal(s1.cov)
    qa, qg = CFG.cv_acc_noise ** 2, CFG.cv_gyro_noise ** 2
    assert torch.allclose(d[P], torch.full((3,), 1e-4 + 1e-2 * dt ** 2 + qa * dt ** 3 / 3,
                                           dtype=F64))
    assert torch.allclose(d[PHI], torch.full((3,), 1e-5 + qg * dt ** 3 / 3, dtype=F64))
    assert torch.allclose(d[V], torch.full((3,), 1e-2 + qa * dt, dtype=F64))
    # Without IMU the biases are not observed: kept, with their random walk, uncoupled.
    assert torch.equal(s1.b_a, b_a) and torch.equal(s1.b_g, b_g)
    assert torch.allclose(d[BA], torch.full((3,), 1e-14 + CFG.acc_bias_walk ** 2 * dt,
                                            dtype=F64), rtol=1e-12)
    assert torch.allclose(d[BG], torch.full((3,), 1e-14 + CFG.gyro_bias_walk ** 2 * dt,
                                            dtype=F64), rtol=1e-12)
    assert torch.equal(s1.cov[BIAS, KIN], torch.zeros(6, 9, dtype=F64))
    _, F = constant_velocity_transition(s0, dt, CFG)
    assert F.shape == (DIM, DIM) and torch.equal(F[BIAS, :], torch.eye(DIM, dtype=F64)[BIAS])
    assert torch.equal(F[:, BIAS], torch.eye(DIM, dtype=F64)[:, BIAS])
    assert torch.equal(s1.cov, s1.cov.t())
    assert float(torch.linalg.eigvalsh(s1.cov).min()) > 0.0
    # Longer gaps grow the covariance more; the input state is untouched.
    s2 = propagate_constant_velocity(s0, 2 * dt, CFG)
    assert bool((torch.diagonal(s2.cov) > d).all())
    assert torch.equal(s0.cov, P0)


def test_initial_state_and_box_operators():
    T = lie.make_pose(lie.so3_exp(torch.tensor([0.1, 0.2, 0.3], dtype=F64)),
                      torch.tensor([1.0, 2.0, 3.0], dtype=F64))
    s = initial_state(T, acc_bias_std=0.2, gyro_bias_std=0.03)
    assert torch.equal(s.T, T)
    assert torch.allclose(torch.diagonal(s.cov),
                          torch.tensor([1e-8] * 6 + [0.25] * 3 + [0.04] * 3 + [9e-4] * 3,
                                       dtype=F64))
    assert torch.equal(s.b_a, torch.zeros(3, dtype=F64))
    assert torch.equal(s.b_g, torch.zeros(3, dtype=F64))
    delta = torch.tensor([0.01, -0.02, 0.03, 0.002, -0.001, 0.003, 0.1, 0.2, -0.3,
                          0.05, -0.04, 0.03, 0.002, -0.003, 0.001], dtype=F64)
    moved = s.boxplus(delta)
    assert torch.allclose(moved.boxminus(s), delta, atol=1e-12)
    assert torch.allclose(moved.R, s.R @ lie.so3_exp(delta[PHI]), atol=1e-12)
    assert torch.equal(moved.b_a, delta[BA]) and torch.equal(moved.b_g, delta[BG])
    assert torch.equal(moved.p, s.p + delta[P]) and torch.equal(moved.v, s.v + delta[V])
    # And back: s ⊞ (moved ⊟ s) is moved; the pose part alone leaves the rest alone.
    back = s.boxplus(moved.boxminus(s))
    assert torch.allclose(back.boxminus(moved), torch.zeros(DIM, dtype=F64), atol=1e-12)
    pose_only = torch.zeros(DIM, dtype=F64)
    pose_only[POSE] = delta[POSE]
    assert torch.equal(s.boxplus(pose_only).boxminus(s)[6:], torch.zeros(9, dtype=F64))
    with pytest.raises(ValueError, match=r'\(15, 15\)'):
        GaussianState(s.R, s.p, s.v, torch.eye(9, dtype=F64), s.omega)
    c = moved.clone()
    c.p += 1.0
    assert not torch.equal(c.p, moved.p)
