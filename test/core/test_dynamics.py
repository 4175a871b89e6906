# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Propagate step: IMU integration against the synthetic flight's closed-form truth, covariance
growth, the constant-velocity prior and the state's boxplus/boxminus."""

import math

import numpy as np
import pytest
import torch

from vssm_ros.config import MotionConfig, SyntheticConfig
from vssm_ros.core import lie
from vssm_ros.core.dynamics import (GaussianState, initial_state, propagate_constant_velocity,
                                    propagate_imu)
from vssm_ros.data.synthetic import generate_flight

F64 = torch.float64
CFG = MotionConfig()
P0 = torch.diag(torch.tensor([1e-4] * 3 + [1e-5] * 3 + [1e-2] * 3, dtype=F64))


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
    # and v by 25 mm/s, well beyond the tolerances above.
    i0 = _i0(flight)
    truth = _true_state(flight, i0 + 10)
    s1 = propagate_imu(_true_state(flight, i0), *_imu(flight, i0, 10), CFG,
                       b_a=torch.tensor([0.0, 0.0, 0.5], dtype=F64))
    assert float((s1.v - truth.v).norm()) == pytest.approx(0.025, rel=0.02)


def test_propagated_covariance_grows_and_is_spd(flight):
    i0 = _i0(flight)
    acc, gyro, dt = _imu(flight, i0, 20)
    s0 = _true_state(flight, i0)
    prev = s0.cov
    for n in (5, 10, 20):
        s = propagate_imu(s0, acc[:n], gyro[:n], dt[:n], CFG)
        P = s.cov
        T = float(dt[:n].sum())
        assert torch.equal(P, P.t())
        assert float(torch.linalg.eigvalsh(P).min()) > 0.0
        d = torch.diagonal(P)
        assert bool((d > torch.diagonal(prev)).all())
        assert float(torch.logdet(P)) > float(torch.logdet(prev))
        # Closed forms for a slow flight: v var += q_a T, rot var += q_g T,
        # p var += var_v T^2 + q_a T^3 / 3 (to a few per cent: attitude couples into v).
        assert torch.allclose(d[3:6], torch.full((3,), 1e-5 + CFG.gyro_noise ** 2 * T,
                                                 dtype=F64), rtol=1e-3)
        assert torch.allclose(d[6:9], torch.full((3,), 1e-2 + CFG.acc_noise ** 2 * T,
                                                 dtype=F64), rtol=2e-3)
        assert torch.allclose(d[0:3], torch.full((3,), 1e-4 + 1e-2 * T * T
                                                 + CFG.acc_noise ** 2 * T ** 3 / 3, dtype=F64),
                              rtol=2e-3)
        prev = P


def test_propagate_constant_velocity():
    omega = torch.tensor([0.1, -0.2, 0.3], dtype=F64)
    s0 = GaussianState(lie.so3_exp(torch.tensor([0.3, 0.2, -0.1], dtype=F64)),
                       torch.tensor([1.0, 2.0, 3.0], dtype=F64),
                       torch.tensor([0.5, -0.4, 0.2], dtype=F64), P0.clone(), omega)
    dt = 0.1
    s1 = propagate_constant_velocity(s0, dt, CFG)
    assert torch.allclose(s1.p, s0.p + s0.v * dt, atol=1e-15)
    assert torch.equal(s1.v, s0.v)
    assert torch.allclose(s1.R, s0.R @ lie.so3_exp(omega * dt), atol=1e-12)
    d = torch.diagonal(s1.cov)
    qa, qg = CFG.cv_acc_noise ** 2, CFG.cv_gyro_noise ** 2
    assert torch.allclose(d[0:3], torch.full((3,), 1e-4 + 1e-2 * dt ** 2 + qa * dt ** 3 / 3,
                                             dtype=F64))
    assert torch.allclose(d[3:6], torch.full((3,), 1e-5 + qg * dt ** 3 / 3, dtype=F64))
    assert torch.allclose(d[6:9], torch.full((3,), 1e-2 + qa * dt, dtype=F64))
    assert torch.equal(s1.cov, s1.cov.t())
    assert float(torch.linalg.eigvalsh(s1.cov).min()) > 0.0
    # Longer gaps grow the covariance more; the input state is untouched.
    s2 = propagate_constant_velocity(s0, 2 * dt, CFG)
    assert bool((torch.diagonal(s2.cov) > d).all())
    assert torch.equal(s0.cov, P0)


def test_initial_state_and_box_operators():
    T = lie.make_pose(lie.so3_exp(torch.tensor([0.1, 0.2, 0.3], dtype=F64)),
                      torch.tensor([1.0, 2.0, 3.0], dtype=F64))
    s = initial_state(T)
    assert torch.equal(s.T, T)
    assert torch.allclose(torch.diagonal(s.cov),
                          torch.tensor([1e-8] * 6 + [0.25] * 3, dtype=F64))
    delta = torch.tensor([0.01, -0.02, 0.03, 0.002, -0.001, 0.003, 0.1, 0.2, -0.3], dtype=F64)
    moved = s.boxplus(delta)
    assert torch.allclose(moved.boxminus(s), delta, atol=1e-12)
    assert torch.allclose(moved.R, s.R @ lie.so3_exp(delta[3:6]), atol=1e-12)
    c = moved.clone()
    c.p += 1.0
    assert not torch.equal(c.p, moved.p)
