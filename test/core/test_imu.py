# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""IMU Euler integration and preintegration: closed forms, consistency, bias Jacobians, noise."""

import math

import numpy as np
import pytest
import torch

from vssm_ros.core.imu import Preintegrated, hold_bounds_ns, integrate_imu, preintegrate
from vssm_ros.core.lie import hat, so3_exp, so3_log, so3_right_jacobian

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


def _preintegrate_loop(acc, gyro, dt, b_a=None, b_g=None, acc_noise=0.0, gyro_noise=0.0):
    """The sequential preintegration (one step per sample, as Forster et al. write it), kept
    as the oracle of the vectorised ``preintegrate``: the deltas, the bias Jacobians' linear
    recurrences and the covariance's ``cov <- A cov A^T + Q``, literally."""
    like = acc
    zeros3 = torch.zeros(3, dtype=like.dtype, device=like.device)
    b_a = zeros3 if b_a is None else b_a
    b_g = zeros3 if b_g is None else b_g
    batch = torch.broadcast_shapes(acc.shape[:-2], gyro.shape[:-2], dt.shape[:-1],
                                   b_a.shape[:-1], b_g.shape[:-1])
    eye = torch.eye(3, dtype=like.dtype, device=like.device).expand(batch + (3, 3))
    zero3 = torch.zeros(batch + (3, 3), dtype=like.dtype, device=like.device)
    var_a = torch.as_tensor(acc_noise, dtype=like.dtype, device=like.device) ** 2
    var_g = torch.as_tensor(gyro_noise, dtype=like.dtype, device=like.device) ** 2
    var_a = var_a.expand(torch.broadcast_shapes(var_a.shape, (3,)))
    var_g = var_g.expand(torch.broadcast_shapes(var_g.shape, (3,)))

    dR_acc = eye
    dv_acc = torch.zeros(batch + (3,), dtype=like.dtype, device=like.device)
    dp_acc = torch.zeros_like(dv_acc)
    d_R_d_bg, d_v_d_ba, d_v_d_bg, d_p_d_ba, d_p_d_bg = zero3, zero3, zero3, zero3, zero3
    cov = torch.zeros(batch + (9, 9), dtype=like.dtype, device=like.device)

    a_hat_all = acc - b_a[..., None, :]
    phi_all = (gyro - b_g[..., None, :]) * dt[..., None]
    step_R = so3_exp(phi_all)
    step_Jr = so3_right_jacobian(phi_all)
    for k in range(acc.shape[-2]):
        a_hat = a_hat_all[..., k, :]
        dtk = dt[..., k, None, None]
        dR, Jr = step_R[..., k, :, :], step_Jr[..., k, :, :]
        dRt = dR.transpose(-1, -2)
        Ra = (dR_acc @ a_hat[..., None])
        R_ahat = dR_acc @ hat(a_hat)
        A = torch.cat([torch.cat([dRt, zero3, zero3], dim=-1),
                       torch.cat([-R_ahat * dtk, eye, zero3], dim=-1),
                       torch.cat([-0.5 * R_ahat * dtk * dtk, eye * dtk, eye], dim=-1)],
                      dim=-2)
        Qa = (dR_acc * var_a[..., None, :]) @ dR_acc.transpose(-1, -2)
        Qg = (Jr * var_g[..., None, :]) @ Jr.transpose(-1, -2)
        Q = torch.cat([torch.cat([Qg * dtk, zero3, zero3], dim=-1),
                       torch.cat([zero3, Qa * dtk, 0.5 * Qa * dtk * dtk], dim=-1),
                       torch.cat([zero3, 0.5 * Qa * dtk * dtk, 0.25 * Qa * dtk ** 3], dim=-1)],
                      dim=-2)
        cov = A @ cov @ A.transpose(-1, -2) + Q
        d_p_d_ba = d_p_d_ba + d_v_d_ba * dtk - 0.5 * dR_acc * dtk * dtk
        d_p_d_bg = d_p_d_bg + d_v_d_bg * dtk - 0.5 * (R_ahat @ d_R_d_bg) * dtk * dtk
        d_v_d_ba = d_v_d_ba - dR_acc * dtk
        d_v_d_bg = d_v_d_bg - (R_ahat @ d_R_d_bg) * dtk
        d_R_d_bg = dRt @ d_R_d_bg - Jr * dtk
        dtv = dtk[..., 0]
        dp_acc = dp_acc + dv_acc * dtv + 0.5 * Ra[..., 0] * dtv * dtv
        dv_acc = dv_acc + Ra[..., 0] * dtv
        dR_acc = dR_acc @ dR

    cov = 0.5 * (cov + cov.transpose(-1, -2))
    return Preintegrated(
        delta_R=dR_acc, delta_v=dv_acc, delta_p=dp_acc, delta_t=dt.sum(-1).expand(batch),
        d_R_d_bg=d_R_d_bg, d_v_d_ba=d_v_d_ba, d_v_d_bg=d_v_d_bg, d_p_d_ba=d_p_d_ba,
        d_p_d_bg=d_p_d_bg, cov=cov, b_a=b_a.expand(batch + (3,)),
        b_g=b_g.expand(batch + (3,)))


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


_PRE_FIELDS = ('delta_R', 'delta_v', 'delta_p', 'delta_t', 'd_R_d_bg', 'd_v_d_ba', 'd_v_d_bg',
               'd_p_d_ba', 'd_p_d_bg', 'cov', 'b_a', 'b_g')


def _fast_imu(n, batch, seed, dtype=F64):
    """Hard inputs for the vectorised form: turns at up to ~5 rad/s plus jitter, 200 Hz with
    dt varying per sample and per batch element, per-axis noise densities."""
    g = _gen(seed)
    acc = torch.randn(batch + (n, 3), dtype=F64, generator=g) * 3.0 + torch.tensor(
        [0.0, 0.0, 9.81], dtype=F64)
    rate = torch.randn(batch + (1, 3), dtype=F64, generator=g) * 2.9  # |rate| ~ 5 rad/s
    gyro = rate + torch.randn(batch + (n, 3), dtype=F64, generator=g)
    dt = 0.005 * (0.8 + 0.4 * torch.rand(batch + (n,), dtype=F64, generator=g))
    noise = dict(acc_noise=torch.tensor([0.08, 0.1, 0.06], dtype=dtype),
                 gyro_noise=torch.tensor([0.01, 0.02, 0.015], dtype=dtype))
    return tuple(x.to(dtype) for x in (acc, gyro, dt)), noise


def _max_rel_errors(pre, ref):
    """Per field: max abs error over the field's largest magnitude (against a float64 ref);
    per 3x3 block for ``cov``, whose blocks differ by orders of magnitude."""
    out = {}
    for name in _PRE_FIELDS:
        a, b = getattr(pre, name).double(), getattr(ref, name).double()
        assert a.shape == b.shape, (name, a.shape, b.shape)
        if name == 'cov':
            a, b = (x.unflatten(-1, (3, 3)).unflatten(-3, (3, 3)) for x in (a, b))
            err = (a - b).abs().amax((-3, -1)) / b.abs().amax((-3, -1)).clamp_min(1e-300)
            out[name] = float(err.max())
            continue
        out[name] = float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))
    return out


@pytest.mark.parametrize('n', [1, 2, 17, 160])
@pytest.mark.parametrize('layout', ['batched', 'shared'])
def test_vectorised_preintegrate_matches_loop_float64(n, layout):
    """Batched measurements with their own biases, or shared measurements under a batch of
    biases (the engine's states): the closed forms reproduce the loop to rounding."""
    b_a, b_g = _biases()
    if layout == 'batched':
        (acc, gyro, dt), noise = _fast_imu(n, (2, 3), seed=n)
        b_a = b_a.expand(3, 3)  # broadcasts against (2, 3)
    else:
        (acc, gyro, dt), noise = _fast_imu(n, (), seed=n)
        b_g = b_g + 0.01 * torch.randn(4, 3, dtype=F64, generator=_gen(30))
    pre = preintegrate(acc, gyro, dt, b_a, b_g, **noise)
    ref = _preintegrate_loop(acc, gyro, dt, b_a, b_g, **noise)
    for name, err in _max_rel_errors(pre, ref).items():
        assert err < 1e-12, (name, err)


@pytest.mark.parametrize('n', [1, 2, 17, 160, 400])
def test_vectorised_preintegrate_float32_is_as_accurate_as_the_loop(n):
    """Against the float64 loop, float32 loses about as much as the float32 loop does (over a
    few seeds: the rounding of a single run is luck)."""
    ours, loops = [], []
    for seed in range(4):
        (acc, gyro, dt), noise = _fast_imu(n, (2,), seed=100 + seed)
        ref = _preintegrate_loop(acc, gyro, dt, **noise)
        f32 = [x.float() for x in (acc, gyro, dt)]
        noise32 = {k: v.float() for k, v in noise.items()}
        pre = preintegrate(*f32, **noise32)
        assert pre.cov.dtype == torch.float32
        ours.append(_max_rel_errors(pre, ref))
        loops.append(_max_rel_errors(_preintegrate_loop(*f32, **noise32), ref))
    for name in _PRE_FIELDS:
        ours_worst = max(e[name] for e in ours)
        loop_worst = max(e[name] for e in loops)
        assert ours_worst < 1e-5, (name, ours_worst)
        # A floor of a few float32 eps: a field the loop gets exactly right by chance.
        assert ours_worst <= 2.0 * loop_worst + 5e-7, (name, ours_worst, loop_worst)


def test_vectorised_preintegrate_zero_dt_padding_anywhere():
    """Zero-dt samples inside and after the sequence, with junk readings, change nothing; a
    batch of sequences of different lengths, padded, equals each sequence on its own."""
    (acc, gyro, dt), noise = _fast_imu(30, (), seed=40)
    junk = 50.0 * torch.randn(9, 3, dtype=F64, generator=_gen(41))
    idx = torch.tensor([0, 4, 4, 17, 29, 30, 30, 30, 30])  # insert before these samples
    keep = torch.ones(30 + 9, dtype=torch.bool)
    keep[idx + torch.arange(9)] = False
    acc_p, gyro_p = torch.empty(39, 3, dtype=F64), torch.empty(39, 3, dtype=F64)
    dt_p = torch.zeros(39, dtype=F64)
    acc_p[keep], gyro_p[keep], dt_p[keep] = acc, gyro, dt
    acc_p[~keep], gyro_p[~keep] = junk, -junk
    one, padded = preintegrate(acc, gyro, dt, **noise), preintegrate(acc_p, gyro_p, dt_p, **noise)
    for name, err in _max_rel_errors(padded, one).items():
        assert err < 1e-13, (name, err)

    lengths = (30, 21, 1)
    batch = [torch.cat([x[:m], torch.zeros((30 - m,) + x.shape[1:], dtype=F64)])
             for x in (acc, gyro, dt) for m in lengths]
    acc_b, gyro_b, dt_b = (torch.stack(batch[3 * i:3 * i + 3]) for i in range(3))
    acc_b[1:, 21:] = 7.0  # junk readings under the padding
    pre = preintegrate(acc_b, gyro_b, dt_b, **noise)
    for i, m in enumerate(lengths):
        alone = preintegrate(acc[:m], gyro[:m], dt[:m], **noise)
        for name in _PRE_FIELDS:
            a, b = getattr(pre, name)[i], getattr(alone, name)
            assert torch.allclose(a, b, rtol=1e-12, atol=1e-15 * float(b.abs().max())), name


def test_vectorised_preintegrate_no_samples_matches_loop():
    empty = torch.zeros(0, 3, dtype=F64), torch.zeros(0, 3, dtype=F64), torch.zeros(0, dtype=F64)
    b_a, b_g = _biases()
    pre = preintegrate(*empty, b_a, b_g, acc_noise=0.1, gyro_noise=0.01)
    ref = _preintegrate_loop(*empty, b_a, b_g, acc_noise=0.1, gyro_noise=0.01)
    for name in _PRE_FIELDS:
        assert torch.equal(getattr(pre, name), getattr(ref, name)), name


def test_gradcheck_preintegrate():
    """Differentiable in every input (the engine may differentiate through the deltas)."""
    (acc, gyro, dt), _ = _fast_imu(4, (), seed=50)
    b_a, b_g = _biases()
    inputs = tuple(x.clone().requires_grad_(True) for x in (acc, gyro, dt, b_a, b_g))

    def f(*args):
        pre = preintegrate(*args, acc_noise=0.1, gyro_noise=0.02)
        return torch.cat([getattr(pre, name).reshape(-1) for name in _PRE_FIELDS[:-2]])

    assert torch.autograd.gradcheck(f, inputs)


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
