# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""IMU Euler integration and preintegration: closed forms, consistency, bias Jacobians, noise."""

import math

import numpy as np
import pytest
import torch

from vssm_ros.core.imu import hold_bounds_ns, integrate_imu, preintegrate
from vssm_ros.core.lie import so3_exp, so3_log

F64 = torch.float64
G = torch.tensor([0.0, 0.0, -9.81], dtype=F64)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _random_imu(n, seed=0, batch=()):
    """A wobbly flight: acc around hover, gyro up to ~1 rad/s, 200 Hz with jitter."""
    g = _gen(seed)
    acc = torch.randn(batch + (n, 3), dtype=F64, generator=g) * 2.0 + torch.tensor(
        [0.0, 0.0, 9.81], dtype=F64)
    gyro = torch.randn(batch + (n, 3), dtype=F64, generator=g) * 0.7
    dt = 0.005 + 0.001 * torch.rand(batch + (n,), dtype=F64, generator=g)
    return acc, gyro, dt


def _state(seed=1):
    g = _gen(seed)
    R0 = so3_exp(torch.randn(3, dtype=F64, generator=g))
    v0 = torch.randn(3, dtype=F64, generator=g)
    p0 = torch.randn(3, dtype=F64, generator=g)
    return R0, v0, p0


def _reference_loop(R, v, p, acc, gyro, dt, b_a, b_g):
    """The design's Euler step written out literally, one sample at a time."""
    for k in range(acc.shape[-2]):
        a_w = R @ (acc[..., k, :] - b_a) + G
        p = p + v * dt[..., k] + 0.5 * a_w * dt[..., k] ** 2
        v = v + a_w * dt[..., k]
        R = R @ so3_exp((gyro[..., k, :] - b_g) * dt[..., k])
    return R, v, p


def test_matches_literal_step_loop():
    acc, gyro, dt = _random_imu(37)  # not a power of two: exercises the prefix scan
    R0, v0, p0 = _state()
    b_a = torch.tensor([0.1, -0.2, 0.05], dtype=F64)
    b_g = torch.tensor([0.01, 0.02, -0.03], dtype=F64)
    R, v, p = integrate_imu(R0, v0, p0, acc, gyro, dt, b_a, b_g)
    Rr, vr, pr = _reference_loop(R0, v0, p0, acc, gyro, dt, b_a, b_g)
    assert torch.allclose(R, Rr, atol=1e-13)
    assert torch.allclose(v, vr, atol=1e-12)
    assert torch.allclose(p, pr, atol=1e-12)


def test_constant_rate_reproduces_closed_form_rotation():
    n, dt = 100, 0.01
    w = torch.tensor([0.3, -0.2, 0.5], dtype=F64)
    R0, v0, p0 = _state()
    acc = torch.zeros(n, 3, dtype=F64)
    R, _, _ = integrate_imu(R0, v0, p0, acc, w.expand(n, 3), torch.full((n,), dt, dtype=F64))
    assert torch.allclose(R, R0 @ so3_exp(w * n * dt), atol=1e-13)


def test_constant_acceleration_straight_line():
    n, dt = 50, 0.02
    t = n * dt
    R0, v0, p0 = _state()
    a_world = torch.tensor([1.0, -0.5, 2.0], dtype=F64)
    b_a = torch.tensor([0.3, 0.1, -0.2], dtype=F64)
    b_g = torch.tensor([0.02, -0.01, 0.03], dtype=F64)
    # Specific force in the body frame plus bias; gyro reads only its bias (no rotation).
    acc = (R0.T @ (a_world - G) + b_a).expand(n, 3)
    gyro = b_g.expand(n, 3)
    R, v, p = integrate_imu(R0, v0, p0, acc, gyro, torch.full((n,), dt, dtype=F64), b_a, b_g)
    assert torch.allclose(R, R0, atol=1e-14)
    assert torch.allclose(v, v0 + a_world * t, atol=1e-12)
    assert torch.allclose(p, p0 + v0 * t + 0.5 * a_world * t * t, atol=1e-12)


@pytest.mark.parametrize('tilt', [0.0, 0.4])
def test_at_rest_gravity_cancels(tilt):
    n = 200
    R0 = so3_exp(torch.tensor([tilt, -0.5 * tilt, 1.0], dtype=F64))
    # Level body: acc = +9.81 z (body up); tilted: gravity's reaction seen in the body frame.
    acc = (R0.T @ torch.tensor([0.0, 0.0, 9.81], dtype=F64)).expand(n, 3)
    v0 = torch.zeros(3, dtype=F64)
    p0 = torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    R, v, p = integrate_imu(R0, v0, p0, acc, torch.zeros(n, 3, dtype=F64),
                            torch.full((n,), 0.005, dtype=F64))
    assert v.abs().max() < 1e-13
    assert torch.allclose(p, p0, atol=1e-13)
    assert torch.allclose(R, R0, atol=0)
    if tilt == 0.0:
        assert torch.allclose(acc[0], torch.tensor([0.0, 0.0, 9.81], dtype=F64))
    # Without the gravity term it would free-fall: check the sign convention bites.
    _, v_nog, _ = integrate_imu(R0, v0, p0, acc, torch.zeros(n, 3, dtype=F64),
                                torch.full((n,), 0.005, dtype=F64), gravity=(0.0, 0.0, 0.0))
    assert torch.allclose(v_nog, torch.tensor([0.0, 0.0, 9.81], dtype=F64), atol=1e-12)


def test_batched_rollouts_broadcast_and_return_all():
    S = 4
    acc, gyro, dt = _random_imu(10, seed=2)
    R0, v0, p0 = _state()
    b_a = 0.1 * torch.randn(S, 3, dtype=F64, generator=_gen(3))  # one bias sample each
    Rs, vs, ps = integrate_imu(R0, v0, p0, acc, gyro, dt, b_a, None, return_all=True)
    assert Rs.shape == (S, 10, 3, 3) and vs.shape == (S, 10, 3) and ps.shape == (S, 10, 3)
    for s in range(S):
        R, v, p = integrate_imu(R0, v0, p0, acc, gyro, dt, b_a[s])
        assert torch.allclose(Rs[s, -1], R, atol=1e-14)
        assert torch.allclose(ps[s, -1], p, atol=1e-14)
    # Intermediate states: integrating the first 4 samples gives the 4th entry.
    R4, v4, p4 = integrate_imu(R0, v0, p0, acc[:4], gyro[:4], dt[:4], b_a[0])
    assert torch.allclose(vs[0, 3], v4, atol=1e-14) and torch.allclose(ps[0, 3], p4, atol=1e-14)


def test_zero_dt_padding_is_a_no_op():
    acc, gyro, dt = _random_imu(12, seed=4)
    R0, v0, p0 = _state()
    pad = torch.randn(5, 3, dtype=F64, generator=_gen(5))
    acc_p, gyro_p = torch.cat([acc, pad]), torch.cat([gyro, pad])
    dt_p = torch.cat([dt, torch.zeros(5, dtype=F64)])
    for a, b in zip(integrate_imu(R0, v0, p0, acc, gyro, dt),
                    integrate_imu(R0, v0, p0, acc_p, gyro_p, dt_p)):
        assert torch.allclose(a, b, atol=1e-15)
    pre = preintegrate(acc, gyro, dt, acc_noise=0.1, gyro_noise=0.01)
    pre_p = preintegrate(acc_p, gyro_p, dt_p, acc_noise=0.1, gyro_noise=0.01)
    assert torch.allclose(pre.cov, pre_p.cov, atol=1e-18, rtol=1e-12)
    assert torch.allclose(pre.delta_p, pre_p.delta_p, atol=1e-15)
    assert torch.allclose(pre.d_p_d_bg, pre_p.d_p_d_bg, atol=1e-15)


def test_empty_sequence_returns_initial_state():
    R0, v0, p0 = _state()
    R, v, p = integrate_imu(R0, v0, p0, torch.zeros(0, 3, dtype=F64),
                            torch.zeros(0, 3, dtype=F64), torch.zeros(0, dtype=F64))
    assert torch.equal(R, R0) and torch.equal(v, v0) and torch.equal(p, p0)


def test_shape_errors_name_the_inputs():
    with pytest.raises(ValueError, match='number of samples'):
        integrate_imu(torch.eye(3), torch.zeros(3), torch.zeros(3), torch.zeros(5, 3),
                      torch.zeros(4, 3), torch.zeros(5))
    with pytest.raises(ValueError, match='gravity'):
        integrate_imu(torch.eye(3), torch.zeros(3), torch.zeros(3), torch.zeros(5, 3),
                      torch.zeros(5, 3), torch.zeros(5), gravity=(0.0, -9.81))


def test_gradcheck_integrate_imu():
    acc, gyro, dt = _random_imu(5, seed=6)
    R0, v0, p0 = _state()
    b_a = torch.tensor([0.1, 0.0, -0.1], dtype=F64)
    b_g = torch.tensor([0.0, 0.02, 0.01], dtype=F64)
    inputs = tuple(x.clone().requires_grad_(True) for x in (R0, v0, p0, acc, gyro, dt, b_a, b_g))

    def f(*args):
        return torch.cat([o.reshape(-1) for o in integrate_imu(*args)])

    assert torch.autograd.gradcheck(f, inputs)


# --------------------------------------------------------------------------------------- #
# Preintegration
# --------------------------------------------------------------------------------------- #

def _biases(seed=7):
    g = _gen(seed)
    return 0.2 * torch.randn(3, dtype=F64, generator=g), 0.05 * torch.randn(3, dtype=F64,
                                                                            generator=g)


def test_predict_equals_integrate_imu():
    acc, gyro, dt = _random_imu(40, seed=8)
    R0, v0, p0 = _state()
    b_a, b_g = _biases()
    pre = preintegrate(acc, gyro, dt, b_a, b_g)
    assert torch.allclose(pre.delta_t, dt.sum())
    pred = pre.predict(R0, v0, p0, b_a, b_g)
    ref = integrate_imu(R0, v0, p0, acc, gyro, dt, b_a, b_g)
    for a, b in zip(pred, ref):
        assert (a - b).abs().max() < 1e-9
    # Zero residual at the prediction; a known offset shows up where expected.
    r = pre.residual(R0, v0, p0, *pred, b_a, b_g)
    assert r.shape == (9,) and r.abs().max() < 1e-12
    d_phi = torch.tensor([0.01, -0.02, 0.005], dtype=F64)
    d_p = torch.tensor([0.1, 0.2, -0.3], dtype=F64)
    r = pre.residual(R0, v0, p0, pred[0] @ so3_exp(d_phi), pred[1], pred[2] + R0 @ d_p,
                     b_a, b_g)
    assert torch.allclose(r, torch.cat([d_phi, torch.zeros(3, dtype=F64), d_p]), atol=1e-12)


def test_preintegrate_batched_matches_single():
    acc, gyro, dt = _random_imu(15, seed=9, batch=(3,))
    b_a, b_g = _biases()
    pre = preintegrate(acc, gyro, dt, b_a, b_g, acc_noise=0.1, gyro_noise=0.01)
    assert pre.cov.shape == (3, 9, 9) and pre.delta_t.shape == (3,)
    one = preintegrate(acc[1], gyro[1], dt[1], b_a, b_g, acc_noise=0.1, gyro_noise=0.01)
    assert torch.allclose(pre.delta_p[1], one.delta_p, atol=1e-15)
    assert torch.allclose(pre.cov[1], one.cov, atol=1e-18, rtol=1e-12)


def test_bias_jacobians_equal_autograd():
    acc, gyro, dt = _random_imu(25, seed=10)
    b_a, b_g = _biases()
    pre = preintegrate(acc, gyro, dt, b_a, b_g)

    def deltas(ba, bg):
        p = preintegrate(acc, gyro, dt, ba, bg)
        return so3_log(pre.delta_R.T @ p.delta_R), p.delta_v, p.delta_p

    jac = torch.autograd.functional.jacobian(deltas, (b_a, b_g))
    (_, dR_dbg), (dv_dba, dv_dbg), (dp_dba, dp_dbg) = jac
    assert torch.allclose(pre.d_R_d_bg, dR_dbg, atol=1e-12)
    assert torch.allclose(pre.d_v_d_ba, dv_dba, atol=1e-12)
    assert torch.allclose(pre.d_v_d_bg, dv_dbg, atol=1e-12)
    assert torch.allclose(pre.d_p_d_ba, dp_dba, atol=1e-12)
    assert torch.allclose(pre.d_p_d_bg, dp_dbg, atol=1e-12)


def test_first_order_bias_correction_error_is_quadratic():
    acc, gyro, dt = _random_imu(60, seed=11)
    R0, v0, p0 = _state()
    b_a, b_g = _biases()
    pre = preintegrate(acc, gyro, dt, b_a, b_g)
    direction_a = torch.tensor([0.5, -0.3, 0.8], dtype=F64)
    direction_g = torch.tensor([0.2, 0.4, -0.3], dtype=F64)

    def errors(eps):
        ba, bg = b_a + eps * direction_a, b_g + eps * direction_g
        R, v, p = integrate_imu(R0, v0, p0, acc, gyro, dt, ba, bg)
        Rc, vc, pc = pre.predict(R0, v0, p0, ba, bg)  # corrected to first order
        Ru, vu, pu = pre.predict(R0, v0, p0, b_a, b_g)  # not corrected
        corrected = torch.cat([so3_log(R.T @ Rc), vc - v, pc - p]).norm()
        uncorrected = torch.cat([so3_log(R.T @ Ru), vu - v, pu - p]).norm()
        return corrected, uncorrected

    c1, u1 = errors(0.1)
    c2, _ = errors(0.05)
    assert c1 < 0.01 * u1  # the correction removes the first-order error
    assert 3.5 < c1 / c2 < 4.5  # and what is left halves twice when the bias change halves


def test_covariance_matches_monte_carlo():
    n, S = 40, 3000
    acc, gyro, dt = _random_imu(n, seed=12)
    b_a, b_g = _biases()
    sigma_a, sigma_g = 0.08, 0.01  # continuous-time densities
    pre = preintegrate(acc, gyro, dt, b_a, b_g, acc_noise=sigma_a, gyro_noise=sigma_g)
    g = _gen(13)
    # Discrete white noise: std = density / sqrt(dt) per sample.
    noise_a = torch.randn(S, n, 3, dtype=F64, generator=g) * sigma_a / dt.sqrt()[:, None]
    noise_g = torch.randn(S, n, 3, dtype=F64, generator=g) * sigma_g / dt.sqrt()[:, None]
    # The deltas are the integration from the identity state without gravity (batched, fast).
    dR, dv, dp = integrate_imu(torch.eye(3, dtype=F64), torch.zeros(3, dtype=F64),
                               torch.zeros(3, dtype=F64), acc + noise_a, gyro + noise_g, dt,
                               b_a, b_g, gravity=(0.0, 0.0, 0.0))  # (S, ...)
    err = torch.cat([so3_log(pre.delta_R.T @ dR), dv - pre.delta_v, dp - pre.delta_p],
                    dim=-1)  # (S, 9)
    err = err - err.mean(0)
    cov_mc = err.T @ err / (S - 1)
    ratio = cov_mc.diagonal() / pre.cov.diagonal()
    print('MC/propagated variance ratios', ratio)
    assert ((ratio > 0.9) & (ratio < 1.1)).all(), ratio
    # Cross terms (the rotation error feeds v and p) agree too, as correlations.
    std = pre.cov.diagonal().sqrt()
    assert ((cov_mc - pre.cov) / (std[:, None] * std[None, :])).abs().max() < 0.1


def test_covariance_single_step_closed_form():
    dt = torch.tensor([0.01], dtype=F64)
    pre = preintegrate(torch.tensor([[0.0, 0.0, 9.81]], dtype=F64), torch.zeros(1, 3, dtype=F64),
                       dt, acc_noise=0.2, gyro_noise=0.03)
    var_a, var_g, h = 0.04, 0.0009, 0.01
    expected = torch.zeros(9, 9, dtype=F64)
    eye = torch.eye(3, dtype=F64)
    expected[:3, :3] = var_g * h * eye
    expected[3:6, 3:6] = var_a * h * eye
    expected[3:6, 6:] = expected[6:, 3:6] = 0.5 * var_a * h * h * eye
    expected[6:, 6:] = 0.25 * var_a * h ** 3 * eye
    assert torch.allclose(pre.cov, expected, atol=1e-20, rtol=1e-12)


def test_dtype_follows_input():
    acc, gyro, dt = (x.float() for x in _random_imu(8))
    pre = preintegrate(acc, gyro, dt, acc_noise=0.1)
    assert pre.cov.dtype == torch.float32 and pre.delta_R.dtype == torch.float32
    R, v, p = integrate_imu(torch.eye(3), torch.zeros(3), torch.zeros(3), acc, gyro, dt)
    assert p.dtype == torch.float32 and math.isfinite(float(p.sum()))


def test_hold_bounds_centre_each_sample_on_its_stamp():
    """Samples at 0, 10, 20 ms over (3, 17] ms: the first is held to the midpoint 5 ms, the
    second from 5 to 15, the third from 15 to the end; the sample held over from the previous
    interval starts at t0."""
    ms = 1_000_000
    b = hold_bounds_ns([0, 10 * ms, 20 * ms], 3 * ms, 27 * ms, first_is_held=False)
    assert b.tolist() == [3 * ms, 5 * ms, 15 * ms, 27 * ms]
    b = hold_bounds_ns([-2 * ms, 8 * ms], 0, 12 * ms, first_is_held=True)
    assert b.tolist() == [0, 3 * ms, 12 * ms]
    # A midpoint before t0 is clipped: that sample holds nothing.
    b = hold_bounds_ns([-9 * ms, -1 * ms, 9 * ms], 0, 10 * ms, first_is_held=True)
    assert b.tolist() == [0, 0, 4 * ms, 10 * ms]


def test_centred_hold_integrates_a_ramping_turn_without_lag():
    """A turn rate ramping at 360 deg/s per second, sampled at 100 Hz, integrated over 30 Hz
    frame intervals as the engine holds the samples: the turn over 1 s is within 0.3 deg
    (0.22: an interval's last sample is held to its end, the next may not have arrived);
    holding each sample from its stamp on lags it by half a period (1.8 deg here)."""
    ms = 1_000_000
    ramp = 2 * math.pi
    stamps = np.arange(0, 1100 * ms, 10 * ms)
    rate = ramp * stamps * 1e-9
    frames = [3 * ms + j * 33_333_333 for j in range(31)]
    turn = lag = 0.0
    for t0, t1 in zip(frames[:-1], frames[1:]):
        last = np.flatnonzero(stamps <= t0)[-1]
        keep = np.flatnonzero((stamps > t0) & (stamps <= t1))
        idx = np.concatenate(([last], keep))
        turn += float(rate[idx] @ np.diff(hold_bounds_ns(stamps[idx], t0, t1, True)) * 1e-9)
        zoh = np.append(np.maximum(stamps[idx], t0), t1)
        lag += float(rate[idx] @ np.diff(zoh) * 1e-9)
    true = ramp / 2 * ((frames[-1] * 1e-9) ** 2 - (frames[0] * 1e-9) ** 2)
    assert abs(turn - true) < math.radians(0.3)
    assert true - lag > math.radians(1.5)
