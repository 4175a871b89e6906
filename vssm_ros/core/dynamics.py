# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Transition p(z_t+1 | z_t, u_t) applied to a Gaussian state posterior (the propagate step).

The state is z = (p, R, v, b_a, b_g): position (world), orientation (world <- body), velocity
(world), accelerometer and gyroscope biases (body). Its posterior is a mean on the manifold and a
covariance of the 15-vector error ``(δp, δφ, δv, δb_a, δb_g)`` laid out as in
``core.state_layout``: position and velocity errors in the world frame, the rotation error a
right perturbation ``R Exp(δφ)`` (body frame), the bias errors additive.

With IMU the mean follows the engineered Euler integrator f_T (DESIGN section 2) with the
bias-corrected samples, the covariance its linearisation with the preintegrated IMU noise, and
the biases a random walk. Without IMU the prior is constant velocity (linear and angular) with
white-acceleration noise; the biases are not observed then and only random-walk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

import torch

from vssm_ros.config import MotionConfig
from vssm_ros.core import lie
from vssm_ros.core.imu import Preintegrated, preintegrate
from vssm_ros.core.state_layout import BA, BG, DIM, KIN, P, PHI, V


@dataclass
class GaussianState:
    """Mean and covariance of one state.

    Attributes:
        R: orientation world <- body. Shape: (3, 3).
        p: position (world). Shape: (3,).
        v: velocity (world). Shape: (3,).
        cov: covariance of (δp, δφ, δv, δb_a, δb_g) (``core.state_layout``). Shape: (15, 15).
        omega: angular velocity estimate (body), for the constant-velocity prior. Shape: (3,).
        b_a: accelerometer bias (body, m/s²); None: zero. Shape: (3,).
        b_g: gyroscope bias (body, rad/s); None: zero. Shape: (3,).
    """

    R: torch.Tensor
    p: torch.Tensor
    v: torch.Tensor
    cov: torch.Tensor
    omega: torch.Tensor
    b_a: Optional[torch.Tensor] = field(default=None)
    b_g: Optional[torch.Tensor] = field(default=None)

    def __post_init__(self):
        if self.cov.shape != (DIM, DIM):
            raise ValueError(f'GaussianState: cov must be ({DIM}, {DIM}) over (δp, δφ, δv, '
                             f'δb_a, δb_g), got {tuple(self.cov.shape)}')
        if self.b_a is None:
            self.b_a = torch.zeros_like(self.p)
        if self.b_g is None:
            self.b_g = torch.zeros_like(self.p)

    def clone(self) -> 'GaussianState':
        return GaussianState(self.R.clone(), self.p.clone(), self.v.clone(), self.cov.clone(),
                             self.omega.clone(), self.b_a.clone(), self.b_g.clone())

    @property
    def T(self) -> torch.Tensor:
        """Pose world <- body. Shape: (4, 4)."""
        return lie.make_pose(self.R, self.p)

    def boxplus(self, delta: torch.Tensor) -> 'GaussianState':
        """The state moved by an error vector (δp, δφ, δv, δb_a, δb_g); covariance unchanged.

        Shape: delta (15,)."""
        R = lie.orthonormalize(self.R @ lie.so3_exp(delta[PHI]))
        return GaussianState(R, self.p + delta[P], self.v + delta[V], self.cov, self.omega,
                             self.b_a + delta[BA], self.b_g + delta[BG])

    def boxminus(self, other: 'GaussianState') -> torch.Tensor:
        """The error vector ``self ⊟ other``. Shape: (15,)."""
        return torch.cat((self.p - other.p, lie.so3_log(other.R.t() @ self.R), self.v - other.v,
                          self.b_a - other.b_a, self.b_g - other.b_g))


def initial_state(T_world_body: torch.Tensor, pos_std: float = 1e-4, rot_std: float = 1e-4,
                  vel_std: float = 0.5, acc_bias_std: float = 0.1,
                  gyro_bias_std: float = 0.01) -> GaussianState:
    """The first state: the map frame is anchored at the first body pose (gauge freedom); zero
    velocity and biases with the given prior stds (the engine passes ``MotionConfig``'s)."""
    dev, dt = T_world_body.device, T_world_body.dtype
    var = torch.tensor([pos_std ** 2] * 3 + [rot_std ** 2] * 3 + [vel_std ** 2] * 3
                       + [acc_bias_std ** 2] * 3 + [gyro_bias_std ** 2] * 3,
                       device=dev, dtype=dt)
    zero = torch.zeros(3, device=dev, dtype=dt)
    return GaussianState(T_world_body[:3, :3].clone(), T_world_body[:3, 3].clone(),
                         zero.clone(), torch.diag(var), zero.clone(), zero.clone(), zero.clone())


def white_acceleration_noise(q: float, dt: float, like: torch.Tensor) -> torch.Tensor:
    """Process noise of white acceleration with density ``q`` (m/s²/sqrt(Hz)) over ``dt``
    seconds on position and velocity (zero elsewhere): ``q² dt³/3``, ``q² dt²/2``, ``q² dt``.
    Shape: (DIM, DIM)."""
    Q = torch.zeros(DIM, DIM, device=like.device, dtype=like.dtype)
    eye = torch.eye(3, device=like.device, dtype=like.dtype) * q ** 2
    Q[P, P] = eye * dt ** 3 / 3
    Q[P, V] = Q[V, P] = eye * dt ** 2 / 2
    Q[V, V] = eye * dt
    return Q


def bias_walk_noise(dt: float | torch.Tensor, cfg: MotionConfig, like: torch.Tensor
                    ) -> torch.Tensor:
    """Process noise of the biases' random walk over ``dt`` seconds, on the whole error vector
    (zero outside the bias blocks): ``walk² dt`` per axis. Shape: (15, 15)."""
    Q = torch.zeros(DIM, DIM, device=like.device, dtype=like.dtype)
    eye = torch.eye(3, device=like.device, dtype=like.dtype)
    Q[BA, BA] = eye * (cfg.acc_bias_walk ** 2 * dt)
    Q[BG, BG] = eye * (cfg.gyro_bias_walk ** 2 * dt)
    return Q


def imu_transition(state: GaussianState, acc: torch.Tensor, gyro: torch.Tensor,
                   dt: torch.Tensor, cfg: MotionConfig) -> Tuple[GaussianState, torch.Tensor]:
    """f_T of a state's mean with IMU samples (body frame) between two frames, preintegrated
    at the state's biases.

    Args:
        acc: specific force. Shape: (N, 3).
        gyro: angular rate. Shape: (N, 3).
        dt: duration each sample is held. Shape: (N,).
    Returns:
        The predicted state, whose ``cov`` is the process noise Q alone, and the Jacobian F of
        the predicted error w.r.t. the state's error. Shape of F: (15, 15).
    """
    pre = preintegrate(acc, gyro, dt, state.b_a, state.b_g, acc_noise=cfg.acc_noise,
                       gyro_noise=cfg.gyro_noise)
    return preintegrated_transition(state, pre, cfg, (gyro - state.b_g).mean(dim=0))


def preintegrated_transition(state: GaussianState, pre: Preintegrated, cfg: MotionConfig,
                             omega: torch.Tensor) -> Tuple[GaussianState, torch.Tensor]:
    """``imu_transition`` with the samples already preintegrated (they do not depend on the
    state, so a transition applied to many states integrates them once).

    The deltas are corrected to first order from the biases they were integrated at
    (``pre.b_a``, ``pre.b_g``) to the state's (``Preintegrated.corrected``): exact in b_a
    (the deltas are linear in it), first order in b_g, so ``pre`` should be integrated near the
    biases it is applied with (the engine integrates at the current estimate every frame).

    Args:
        cfg: gravity and the biases' random walk.
        omega: angular velocity (body) to carry in the predicted state. Shape: (3,).
    """
    dev, dty = state.p.device, state.p.dtype
    g = torch.tensor([0.0, 0.0, -cfg.gravity], device=dev, dtype=dty)
    T = pre.delta_t
    Ri = state.R
    dR, dv, dp = pre.corrected(state.b_a, state.b_g)
    p = state.p + state.v * T + 0.5 * g * T * T + Ri @ dp
    v = state.v + g * T + Ri @ dv
    R = lie.orthonormalize(Ri @ dR)
    eye = torch.eye(3, device=dev, dtype=dty)
    F = torch.eye(DIM, device=dev, dtype=dty)
    F[P, PHI] = -Ri @ lie.hat(dp)
    F[P, V] = eye * T
    F[P, BA] = Ri @ pre.d_p_d_ba
    F[P, BG] = Ri @ pre.d_p_d_bg
    F[PHI, PHI] = dR.t()
    # dR(b_g + δ) = dR̄ Exp(J (b_g - b̄_g) + J δ) = dR(b_g) Exp(Jr(J (b_g - b̄_g)) J δ).
    F[PHI, BG] = lie.so3_right_jacobian(pre.d_R_d_bg @ (state.b_g - pre.b_g)) @ pre.d_R_d_bg
    F[V, PHI] = -Ri @ lie.hat(dv)
    F[V, BA] = Ri @ pre.d_v_d_ba
    F[V, BG] = Ri @ pre.d_v_d_bg
    # Preintegration noise is ordered (δφ, δv, δp) in the frame of state i.
    G = torch.zeros(9, 9, device=dev, dtype=dty)
    G[P, 6:9] = Ri
    G[PHI, 0:3] = eye
    G[V, 3:6] = Ri
    Q = bias_walk_noise(T, cfg, state.p)
    Q[KIN, KIN] = G @ pre.cov @ G.t()
    return GaussianState(R, p, v, Q, omega, state.b_a.clone(), state.b_g.clone()), F


def propagate_imu(state: GaussianState, acc: torch.Tensor, gyro: torch.Tensor, dt: torch.Tensor,
                  cfg: MotionConfig) -> GaussianState:
    """Predict the next state from IMU samples (body frame) between two frames, corrected by
    the state's biases.

    Args:
        acc: specific force. Shape: (N, 3).
        gyro: angular rate. Shape: (N, 3).
        dt: duration each sample is held. Shape: (N,).
    """
    pred, F = imu_transition(state, acc, gyro, dt, cfg)
    return with_propagated_cov(pred, F, state.cov)


def with_propagated_cov(pred: GaussianState, F: torch.Tensor,
                        P: torch.Tensor) -> GaussianState:
    """``pred`` (cov = Q) with cov ``F P F^T + Q``."""
    cov = F @ P @ F.t() + pred.cov
    pred.cov = 0.5 * (cov + cov.t())
    return pred


def constant_velocity_transition(state: GaussianState, dt: float, cfg: MotionConfig
                                 ) -> Tuple[GaussianState, torch.Tensor]:
    """Constant linear and angular velocity for ``dt`` seconds: the predicted state, whose
    ``cov`` is the white-acceleration process noise Q alone, and the Jacobian F (15, 15). The
    biases are not observed without IMU: they are kept, with their random walk in Q."""
    dev, dty = state.p.device, state.p.dtype
    eye = torch.eye(3, device=dev, dtype=dty)
    p = state.p + state.v * dt
    dR = lie.so3_exp(state.omega * dt)
    R = lie.orthonormalize(state.R @ dR)
    F = torch.eye(DIM, device=dev, dtype=dty)
    F[P, V] = eye * dt
    F[PHI, PHI] = dR.t()
    Q = bias_walk_noise(dt, cfg, state.p) + white_acceleration_noise(cfg.cv_acc_noise, dt,
                                                                     state.p)
    Q[PHI, PHI] = eye * cfg.cv_gyro_noise ** 2 * dt ** 3 / 3
    return GaussianState(R, p, state.v.clone(), Q, state.omega.clone(), state.b_a.clone(),
                         state.b_g.clone()), F


def propagate_constant_velocity(state: GaussianState, dt: float, cfg: MotionConfig
                                ) -> GaussianState:
    """Predict the next state with constant linear and angular velocity."""
    pred, F = constant_velocity_transition(state, dt, cfg)
    return with_propagated_cov(pred, F, state.cov)
