# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""IMU kinematics in torch: Euler integration and on-manifold preintegration.

State conventions (DESIGN.md §2): ``R`` is world<-body, ``v`` and ``p`` are in the world frame,
gravity ``g = (0, 0, -9.81)`` (z up). An accelerometer measures specific force in the body
frame, so a level IMU at rest reads ``acc = (0, 0, +9.81)``.

The discrete model (one step per IMU sample k, held constant over ``dt_k``) is::

    a_w   = R_k (a_k - b_a) + g          # rotation *before* the step
    p_k+1 = p_k + v_k dt_k + 1/2 a_w dt_k^2
    v_k+1 = v_k + a_w dt_k
    R_k+1 = R_k Exp((w_k - b_g) dt_k)

Using ``R_k`` (not ``R_k+1``) for the acceleration is the convention of Forster et al.'s
preintegration, so ``preintegrate(...).predict`` reproduces ``integrate_imu`` to rounding.
Steps with ``dt = 0`` are exact no-ops everywhere (including the noise covariance), so
variable-length sequences can be batched by padding with zero-``dt`` samples.

Reference: C. Forster, L. Carlone, F. Dellaert, D. Scaramuzza, "On-Manifold Preintegration for
Real-Time Visual-Inertial Odometry", IEEE T-RO 2017.
"""

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch

from vssm_ros.core.lie import broadcast_shapes, hat, so3_coeffs, so3_exp, so3_log

Tensor = torch.Tensor
GravityLike = Union[Sequence[float], Tensor]

GRAVITY = (0.0, 0.0, -9.81)
"""Default gravity in the world frame (m/s^2), REP-103 z up."""


def _constant(value: Union[float, Sequence[float], Tensor], like: Tensor) -> Tensor:
    """A tensor on ``like``'s device and dtype, built without a host-to-device copy.

    Copying a Python value to a CUDA device blocks the host; filling on the device does not.
    """
    if isinstance(value, torch.Tensor):
        return value.to(dtype=like.dtype, device=like.device)
    if isinstance(value, (int, float)):
        return torch.full((), float(value), dtype=like.dtype, device=like.device)
    return torch.stack([torch.full((), float(x), dtype=like.dtype, device=like.device)
                        for x in value])


def _gravity(gravity: GravityLike, like: Tensor) -> Tensor:
    g = _constant(gravity, like)
    if g.shape[-1:] != (3,):
        raise ValueError(f'gravity: expected a 3-vector, got shape {tuple(g.shape)}')
    return g


def _check_imu(acc: Tensor, gyro: Tensor, dt: Tensor, name: str) -> None:
    if acc.shape[-1:] != (3,) or gyro.shape[-1:] != (3,) or acc.dim() < 2 or gyro.dim() < 2:
        raise ValueError(f'{name}: acc and gyro must be (..., N, 3), got {tuple(acc.shape)} '
                         f'and {tuple(gyro.shape)}')
    n = acc.shape[-2]
    if gyro.shape[-2] != n or dt.dim() < 1 or dt.shape[-1] != n:
        raise ValueError(f'{name}: acc, gyro and dt disagree on the number of samples: acc '
                         f'{tuple(acc.shape)}, gyro {tuple(gyro.shape)}, dt {tuple(dt.shape)}')


def _bias(b: Optional[Tensor], like: Tensor) -> Tensor:
    if b is None:
        return torch.zeros(3, dtype=like.dtype, device=like.device)
    return b


def _prefix_products(M: Tensor) -> Tensor:
    """Inclusive left-to-right prefix products ``M_0 M_1 ... M_k`` along dim -3.

    Hillis-Steele scan: ceil(log2 N) batched matmuls instead of N sequential ones (the matrix
    product is associative), which matters for kernel-launch-bound GPU rollouts.

    Shape: M (..., N, 3, 3) -> (..., N, 3, 3).
    """
    n = M.shape[-3]
    off = 1
    while off < n:
        M = torch.cat([M[..., :off, :, :], M[..., :-off, :, :] @ M[..., off:, :, :]], dim=-3)
        off *= 2
    return M


def integrate_imu(R0: Tensor, v0: Tensor, p0: Tensor, acc: Tensor, gyro: Tensor, dt: Tensor,
                  b_a: Optional[Tensor] = None, b_g: Optional[Tensor] = None,
                  gravity: GravityLike = GRAVITY, return_all: bool = False
                  ) -> Tuple[Tensor, Tensor, Tensor]:
    """Euler-integrate IMU samples from an initial state (the model's ``f_T``).

    All leading dimensions broadcast, e.g. ``(S, ...)`` samples of the initial state and the
    biases for stochastic rollouts with shared measurements.

    Args:
        R0: initial orientation, world<-body. Shape: (..., 3, 3).
        v0: initial velocity, world frame (m/s). Shape: (..., 3).
        p0: initial position, world frame (m). Shape: (..., 3).
        acc: specific force, body frame (m/s^2). Shape: (..., N, 3).
        gyro: angular rate, body frame (rad/s). Shape: (..., N, 3).
        dt: duration each sample is held (s); 0 for padding. Shape: (..., N).
        b_a: accelerometer bias (None: zero). Shape: (..., 3).
        b_g: gyroscope bias (None: zero). Shape: (..., 3).
        gravity: gravity in the world frame. Shape: (3,).
        return_all: return the states after every step instead of only the last.

    Returns:
        ``(R, v, p)`` after the N steps. Shape: (..., 3, 3), (..., 3), (..., 3); with
        ``return_all``: (..., N, 3, 3), (..., N, 3), (..., N, 3).
    """
    _check_imu(acc, gyro, dt, 'integrate_imu')
    b_a, b_g = _bias(b_a, acc), _bias(b_g, acc)
    g = _gravity(gravity, acc)
    batch = broadcast_shapes(R0.shape[:-2], v0.shape[:-1], p0.shape[:-1],
                             acc.shape[:-2], gyro.shape[:-2], dt.shape[:-1],
                             b_a.shape[:-1], b_g.shape[:-1])
    n = acc.shape[-2]
    R0 = R0.expand(batch + (3, 3))
    v0 = v0.expand(batch + (3,))
    p0 = p0.expand(batch + (3,))
    if n == 0:
        if return_all:
            return R0[..., :0, :, :], v0[..., :0, :], p0[..., :0, :]
        return R0, v0, p0
    dt3 = dt[..., None]  # (..., N, 1)
    a_hat = acc - b_a[..., None, :]  # (..., N, 3)
    dR = so3_exp((gyro - b_g[..., None, :]) * dt3)  # (..., N, 3, 3)
    R_after = R0[..., None, :, :] @ _prefix_products(dR)  # (..., N, 3, 3)
    R_before = torch.cat([R0[..., None, :, :], R_after[..., :-1, :, :]], dim=-3)
    a_w = (R_before @ a_hat[..., None])[..., 0] + g  # (..., N, 3)
    v_after = v0[..., None, :] + torch.cumsum(a_w * dt3, dim=-2)
    v_before = torch.cat([v0[..., None, :], v_after[..., :-1, :]], dim=-2)
    p_after = p0[..., None, :] + torch.cumsum(v_before * dt3 + 0.5 * a_w * dt3 * dt3, dim=-2)
    if return_all:
        return R_after, v_after, p_after
    return R_after[..., -1, :, :], v_after[..., -1, :], p_after[..., -1, :]


@dataclass(frozen=True)
class Preintegrated:
    """Preintegrated IMU measurements between two states i and j (Forster et al. 2017).

    The deltas are expressed in the body frame of state i and exclude gravity and the initial
    velocity. The bias Jacobians give the first-order change of the deltas when the biases move
    away from the linearisation point ``(b_a, b_g)``; ``cov`` is the covariance of the
    preintegration error ``(d_phi, d_v, d_p)`` (measured = true Exp(d_phi), true + d_v,
    true + d_p) due to white measurement noise, in the order of ``residual``.

    Attributes (leading dimensions ``...`` are those of the measurements):
        delta_R: rotation body_i <- body_j. Shape: (..., 3, 3).
        delta_v: velocity increment (m/s). Shape: (..., 3).
        delta_p: position increment (m). Shape: (..., 3).
        delta_t: total duration (s). Shape: (...,).
        d_R_d_bg: Jacobian of Log(delta_R) (right perturbation) w.r.t. b_g. Shape: (..., 3, 3).
        d_v_d_ba, d_v_d_bg, d_p_d_ba, d_p_d_bg: bias Jacobians. Shape: (..., 3, 3).
        cov: covariance of (d_phi, d_v, d_p). Shape: (..., 9, 9).
        b_a, b_g: the biases the deltas were computed with. Shape: (..., 3).
    """

    delta_R: Tensor
    delta_v: Tensor
    delta_p: Tensor
    delta_t: Tensor
    d_R_d_bg: Tensor
    d_v_d_ba: Tensor
    d_v_d_bg: Tensor
    d_p_d_ba: Tensor
    d_p_d_bg: Tensor
    cov: Tensor
    b_a: Tensor
    b_g: Tensor

    def corrected(self, b_a: Tensor, b_g: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Deltas re-linearised to new biases to first order (no re-integration).

        Shape: b_a, b_g (..., 3) -> delta_R (..., 3, 3), delta_v (..., 3), delta_p (..., 3).
        """
        dba = (b_a - self.b_a)[..., None]  # (..., 3, 1)
        dbg = (b_g - self.b_g)[..., None]
        dR = self.delta_R @ so3_exp((self.d_R_d_bg @ dbg)[..., 0])
        dv = self.delta_v + (self.d_v_d_ba @ dba + self.d_v_d_bg @ dbg)[..., 0]
        dp = self.delta_p + (self.d_p_d_ba @ dba + self.d_p_d_bg @ dbg)[..., 0]
        return dR, dv, dp

    def predict(self, R_i: Tensor, v_i: Tensor, p_i: Tensor, b_a: Tensor, b_g: Tensor,
                gravity: GravityLike = GRAVITY) -> Tuple[Tensor, Tensor, Tensor]:
        """State j from state i with bias-corrected deltas (Forster eq. 44).

        Shape: R_i (..., 3, 3), v_i (..., 3), p_i (..., 3), b_a (..., 3), b_g (..., 3)
        -> R_j (..., 3, 3), v_j (..., 3), p_j (..., 3).
        """
        g = _gravity(gravity, self.delta_v)
        dR, dv, dp = self.corrected(b_a, b_g)
        T = self.delta_t[..., None]
        R_j = R_i @ dR
        v_j = v_i + g * T + (R_i @ dv[..., None])[..., 0]
        p_j = p_i + v_i * T + 0.5 * g * T * T + (R_i @ dp[..., None])[..., 0]
        return R_j, v_j, p_j

    def residual(self, R_i: Tensor, v_i: Tensor, p_i: Tensor, R_j: Tensor, v_j: Tensor,
                 p_j: Tensor, b_a: Tensor, b_g: Tensor,
                 gravity: GravityLike = GRAVITY) -> Tensor:
        """Preintegration residual ``(r_R, r_v, r_p)`` (Forster eq. 45), zero for ``predict``.

        ``r_R = Log(dR^T R_i^T R_j)``, ``r_v = R_i^T (v_j - v_i - g T) - dv``,
        ``r_p = R_i^T (p_j - p_i - v_i T - g T^2 / 2) - dp`` with the bias-corrected deltas;
        its covariance is ``cov`` (to first order), so ``r^T cov^-1 r`` is the transition's
        negative log-likelihood up to constants.

        Shape: R_i, R_j (..., 3, 3); v_i, p_i, v_j, p_j, b_a, b_g (..., 3) -> (..., 9).
        """
        g = _gravity(gravity, self.delta_v)
        dR, dv, dp = self.corrected(b_a, b_g)
        T = self.delta_t[..., None]
        Rt = R_i.transpose(-1, -2)
        r_R = so3_log(dR.transpose(-1, -2) @ Rt @ R_j)
        r_v = (Rt @ (v_j - v_i - g * T)[..., None])[..., 0] - dv
        r_p = (Rt @ (p_j - p_i - v_i * T - 0.5 * g * T * T)[..., None])[..., 0] - dp
        r_R, r_v, r_p = torch.broadcast_tensors(r_R, r_v, r_p)
        return torch.cat([r_R, r_v, r_p], dim=-1)


def _suffix_sums(x: Tensor, dim: int) -> Tensor:
    """Inclusive right-to-left cumulative sums ``x_k + ... + x_{N-1}`` along ``dim``.

    Summed from the end rather than as the total minus a prefix sum, so that the short tails
    of a long sequence keep their relative precision (float32 would lose it to cancellation).

    Shape: x (..., N, ...) -> the same.
    """
    return torch.flip(torch.cumsum(torch.flip(x, (dim,)), dim), (dim,))


def _noise_variances(acc_noise: Union[float, Tensor], gyro_noise: Union[float, Tensor],
                     like: Tensor) -> Tensor:
    """Per-axis continuous-time variances of the gyro then the accelerometer noise.

    Shape: scalars or (..., 3) -> (..., 6).
    """
    var_g = _constant(gyro_noise, like) ** 2
    var_a = _constant(acc_noise, like) ** 2
    shape = broadcast_shapes(var_g.shape, var_a.shape, (3,))
    return torch.cat([var_g.expand(shape), var_a.expand(shape)], dim=-1)


def _noise_gains(R_before: Tensor, R_after: Tensor, to_end: Tensor, Jr: Tensor, ce: Tensor,
                 s: Tensor) -> Tensor:
    """``Gamma_k``: the first-order change of the final ``(d_phi, d_v, d_p)`` per unit of
    ``(gyro, acc)`` error in sample k, divided by ``dt_k``.

    Unrolling the error-state recursion ``e_{k+1} = A_k e_k + (gyro, acc) terms`` from step k
    to the end gives the product ``A_{N-1} ... A_{k+1}`` in closed form: the rotation error is
    carried by ``R_N^T R_{k+1}``, and it tilts every later acceleration ``u_m = R_m a_m``, which
    integrates into ``-hat(c_{k+1}) R_{k+1}`` on v and ``-hat(e_{k+1}) R_{k+1}`` on p, with
    ``c_{k+1} = sum_{m>k} u_m dt_m`` and ``e_{k+1} = sum_{m>k} u_m dt_m s_m``. An acceleration
    error enters as ``R_k`` on v and ``s_k R_k`` on p, ``s_k`` being the time from the middle
    of sample k to the end. The bias Jacobians are then ``-sum_k Gamma_k dt_k`` and the
    covariance ``sum_k Gamma_k diag(var) dt_k Gamma_k^T``.

    Shape: R_before (R_k), R_after (R_{k+1}), to_end (R_N^T R_{k+1}), Jr (..., N, 3, 3);
    ce ((c_{k+1}, e_{k+1}) per step) (..., N, 2, 3); s (..., N) -> (..., N, 9, 6).
    """
    tilt = -hat(ce).flatten(-3, -2) @ R_after  # (..., N, 6, 3)
    gyro = torch.cat([to_end, tilt], dim=-2) @ Jr  # (..., N, 9, 3)
    weights = torch.stack([torch.zeros_like(s), torch.ones_like(s), s], dim=-1)  # (..., N, 3)
    acc = (weights[..., :, None, None] * R_before[..., None, :, :]).flatten(-3, -2)
    return torch.cat([gyro, acc], dim=-1)


def _exp_and_right_jacobian(phi: Tensor) -> Tuple[Tensor, Tensor]:
    """``so3_exp(phi)`` and ``so3_right_jacobian(phi)`` from one evaluation of their shared
    coefficients (evaluating them twice was a third of the fixed cost of ``preintegrate``).

    ``Exp = I + A W + B W^2`` and ``J_r = I - B W + C W^2`` with ``W = hat(phi)``.

    Shape: phi (..., N, 3) -> (..., N, 3, 3), (..., N, 3, 3).
    """
    A, B, C = (x[..., None, None] for x in so3_coeffs(phi))
    W = hat(phi)
    W2 = W @ W
    eye = torch.eye(3, dtype=phi.dtype, device=phi.device)
    return eye + A * W + B * W2, eye - B * W + C * W2


def _step_rotations(dR: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """The rotations before and after each step from the start, and from after it to the end.

    ``R_N^T R_{k+1}`` is the suffix product ``(dR_{k+1} ... dR_{N-1})^T`` rather than the
    product of two prefix products: its rounding then grows with N - k as in the sequential
    recursion, not with N (float32 drifts off orthogonality by about eps per product, which
    the nearly isotropic rate noise would pick up). Both scans run as one batched scan.

    Shape: dR (..., N, 3, 3) -> R_k, R_{k+1}, R_N^T R_{k+1}, each (..., N, 3, 3).
    """
    scans = _prefix_products(torch.stack([dR, dR.flip(-3).transpose(-1, -2)]))
    R_after, from_end = scans[0], scans[1].flip(-3)  # from_end[k] = R_N^T R_k
    eye = torch.eye(3, dtype=dR.dtype, device=dR.device).expand(dR.shape[:-3] + (1, 3, 3))
    R_before = torch.cat([eye, R_after[..., :-1, :, :]], dim=-3)
    to_end = torch.cat([from_end[..., 1:, :, :], eye], dim=-3)
    return R_before, R_after, to_end


def _no_samples(batch: torch.Size, dt: Tensor, b_a: Tensor, b_g: Tensor,
                like: Tensor) -> Preintegrated:
    """The preintegration of an empty sequence: identity deltas, zero Jacobians and cov."""
    zero3 = torch.zeros(batch + (3, 3), dtype=like.dtype, device=like.device)
    eye = torch.eye(3, dtype=like.dtype, device=like.device).expand(batch + (3, 3))
    zero = torch.zeros(batch + (3,), dtype=like.dtype, device=like.device)
    return Preintegrated(
        delta_R=eye, delta_v=zero, delta_p=zero, delta_t=dt.sum(-1).expand(batch),
        d_R_d_bg=zero3, d_v_d_ba=zero3, d_v_d_bg=zero3, d_p_d_ba=zero3, d_p_d_bg=zero3,
        cov=torch.zeros(batch + (9, 9), dtype=like.dtype, device=like.device),
        b_a=b_a.expand(batch + (3,)), b_g=b_g.expand(batch + (3,)))


def preintegrate(acc: Tensor, gyro: Tensor, dt: Tensor, b_a: Optional[Tensor] = None,
                 b_g: Optional[Tensor] = None, acc_noise: Union[float, Tensor] = 0.0,
                 gyro_noise: Union[float, Tensor] = 0.0) -> Preintegrated:
    """Preintegrate IMU samples between two states (Forster et al. 2017, with bias Jacobians).

    Equal (to rounding) to the sequential form, one step per sample: deltas, bias Jacobians by
    their linear recurrences, covariance by ``cov <- A cov A^T + Q`` with the error-state
    transition ``A_k`` and the noise of sample k held over ``dt_k`` (``_preintegrate_loop`` in
    test/core/test_imu.py, the oracle).
    Those recurrences are unrolled in closed form (``_noise_gains``) and evaluated for all
    samples at once with a prefix scan of the rotations and cumulative sums, so the cost
    hardly depends on N (a frame can carry many samples when the node falls behind).

    Args:
        acc: specific force, body frame (m/s^2). Shape: (..., N, 3).
        gyro: angular rate, body frame (rad/s). Shape: (..., N, 3).
        dt: duration each sample is held (s); 0 for padding. Shape: (..., N).
        b_a: accelerometer bias to linearise at (None: zero). Shape: (..., 3).
        b_g: gyroscope bias to linearise at (None: zero). Shape: (..., 3).
        acc_noise: accelerometer white-noise density (m/s^2/sqrt(Hz), continuous time); a
            sample held for dt has variance ``acc_noise^2 / dt``. Scalar or per axis (..., 3).
        gyro_noise: gyroscope white-noise density (rad/s/sqrt(Hz)). Scalar or (..., 3).

    Returns:
        ``Preintegrated`` with leading dimensions broadcast from the inputs.
    """
    _check_imu(acc, gyro, dt, 'preintegrate')
    b_a, b_g = _bias(b_a, acc), _bias(b_g, acc)
    batch = broadcast_shapes(acc.shape[:-2], gyro.shape[:-2], dt.shape[:-1],
                             b_a.shape[:-1], b_g.shape[:-1])
    n = acc.shape[-2]
    if n == 0:
        return _no_samples(batch, dt, b_a, b_g, acc)
    h = dt.expand(batch + (n,))
    a_hat = (acc - b_a[..., None, :]).expand(batch + (n, 3))
    phi = ((gyro - b_g[..., None, :]) * dt[..., None]).expand(batch + (n, 3))
    dR, Jr = _exp_and_right_jacobian(phi)  # (..., N, 3, 3)
    R_before, R_after, to_end = _step_rotations(dR)

    # u_k = R_k a_k: the acceleration of step k in the frame of state i. A dt = 0 sample
    # contributes exact zeros to every sum below, so padding is a no-op.
    uh = (R_before @ a_hat[..., None])[..., 0] * h[..., None]  # (..., N, 3)
    s = _suffix_sums(h, -1) - 0.5 * h  # (..., N): from the middle of sample k to the end
    # delta_p = sum_k u_k dt_k s_k is the loop's sum of v_k dt_k + u_k dt_k^2 / 2 regrouped.
    tails = _suffix_sums(torch.stack([uh, uh * s[..., None]], dim=-2), -3)  # (..., N, 2, 3)
    delta_v, delta_p = tails[..., 0, 0, :], tails[..., 0, 1, :]
    # The gains of sample k need the sums over the later samples only (m > k).
    later = torch.cat([tails[..., 1:, :, :], torch.zeros_like(tails[..., :1, :, :])], dim=-3)
    gain = _noise_gains(R_before, R_after, to_end, Jr, later, s)

    jac = -(gain * h[..., None, None]).sum(-3)  # (..., 9, 6): columns (b_g, b_a)
    # cov = sum_k gain_k diag(var dt_k) gain_k^T as one (9, 6N) x (6N, 9) product.
    flat = gain.transpose(-3, -2).flatten(-2)  # (..., 9, N * 6)
    var = _noise_variances(acc_noise, gyro_noise, acc)[..., None, :] * h[..., None]
    cov = (flat * var.flatten(-2)[..., None, :]) @ flat.transpose(-1, -2)
    cov = 0.5 * (cov + cov.transpose(-1, -2))
    return Preintegrated(
        delta_R=R_after[..., -1, :, :], delta_v=delta_v, delta_p=delta_p,
        delta_t=dt.sum(-1).expand(batch), d_R_d_bg=jac[..., :3, :3], d_v_d_ba=jac[..., 3:6, 3:],
        d_v_d_bg=jac[..., 3:6, :3], d_p_d_ba=jac[..., 6:, 3:], d_p_d_bg=jac[..., 6:, :3],
        cov=cov, b_a=b_a.expand(batch + (3,)), b_g=b_g.expand(batch + (3,)))


def hold_bounds_ns(stamps_ns: Sequence[int], t0: int, t1: int, first_is_held: bool) -> np.ndarray:
    """Where each IMU sample is held over the interval (t0, t1]: from the midpoint with the
    sample before it to the midpoint with the next (the last one to ``t1``), clipped to the
    interval. A sample measures the rate at its stamp, so holding it from its stamp on (a
    zero-order hold) lags the motion by half a sample period: 5 ms at 100 Hz, a degree at
    200 deg/s, which the images then contradict. The last sample is held to ``t1`` (the next
    one may not have arrived), which leaves an eighth of that lag on average.
    ``first_is_held``: the first sample is the one held over from the previous interval (from
    ``t0``). Shape: (N,) stamps -> (N + 1,) bounds."""
    s = np.asarray(stamps_ns, dtype=np.int64)
    starts = np.empty_like(s)
    starts[0] = t0 if first_is_held else max(int(s[0]), t0)
    starts[1:] = s[:-1] + (s[1:] - s[:-1]) // 2
    return np.append(np.maximum(starts, t0), t1)
