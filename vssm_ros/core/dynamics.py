# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Transition p(z_t+1 | z_t, u_t) applied to a Gaussian state posterior (the propagate step).

The state is z = (p, R, v): position (world), orientation (world <- body), velocity (world).
Its posterior is a mean on the manifold and a covariance of the 9-vector error
``(δp, δφ, δv)``: position and velocity errors in the world frame, the rotation error a right
perturbation ``R Exp(δφ)`` (body frame).

With IMU the mean follows the engineered Euler integrator f_T (DESIGN section 2) and the
covariance follows its linearisation with the preintegrated IMU noise. Without IMU the prior is
constant velocity (linear and angular) with white-acceleration noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch

from vssm_ros.config import MotionConfig
from vssm_ros.core import lie
from vssm_ros.core.imu import Preintegrated, preintegrate


@dataclass
class GaussianState:
    """Mean and covariance of one state.

    Attributes:
        R: orientation world <- body. Shape: (3, 3).
        p: position (world). Shape: (3,).
        v: velocity (world). Shape: (3,).
        cov: covariance of (δp, δφ, δv). Shape: (9, 9).
        omega: angular velocity estimate (body), for the constant-velocity prior. Shape: (3,).
    """

    R: torch.Tensor
    p: torch.Tensor
    v: torch.Tensor
    cov: torch.Tensor
    omega: torch.Tensor

    def clone(self) -> 'GaussianState':
        return GaussianState(self.R.clone(), self.p.clone(), self.v.clone(), self.cov.clone(),
                             self.omega.clone())

    @property
    def T(self) -> torch.Tensor:
        """Pose world <- body. Shape: (4, 4)."""
        return lie.make_pose(self.R, self.p)

    def boxplus(self, delta: torch.Tensor) -> 'GaussianState':
        """The state moved by a 9-vector (δp, δφ, δv); covariance unchanged."""
        R = lie.orthonormalize(self.R @ lie.so3_exp(delta[3:6]))
        return GaussianState(R, self.p + delta[:3], self.v + delta[6:9], self.cov, self.omega)

    def boxminus(self, other: 'GaussianState') -> torch.Tensor:
        """The 9-vector error ``self ⊟ other``. Shape: (9,)."""
        return torch.cat((self.p - other.p, lie.so3_log(other.R.t() @ self.R), self.v - other.v))


def initial_state(T_world_body: torch.Tensor, pos_std: float = 1e-4, rot_std: float = 1e-4,
                  vel_std: float = 0.5) -> GaussianState:
    """The first state: the map frame is anchored at the first body pose (gauge freedom)."""
    dev, dt = T_world_body.device, T_world_body.dtype
    var = torch.tensor([pos_std ** 2] * 3 + [rot_std ** 2] * 3 + [vel_std ** 2] * 3,
                       device=dev, dtype=dt)
    return GaussianState(T_world_body[:3, :3].clone(), T_world_body[:3, 3].clone(),
                         torch.zeros(3, device=dev, dtype=dt), torch.diag(var),
                         torch.zeros(3, device=dev, dtype=dt))


def imu_transition(state: GaussianState, acc: torch.Tensor, gyro: torch.Tensor,
                   dt: torch.Tensor, cfg: MotionConfig, b_a: torch.Tensor | None = None,
                   b_g: torch.Tensor | None = None) -> Tuple[GaussianState, torch.Tensor]:
    """f_T of a state's mean with IMU samples (body frame) between two frames.

    Args:
        acc: specific force. Shape: (N, 3).
        gyro: angular rate. Shape: (N, 3).
        dt: duration each sample is held. Shape: (N,).
    Returns:
        The predicted state, whose ``cov`` is the process noise Q alone, and the Jacobian F of
        the predicted error w.r.t. the state's error. Shape of F: (9, 9).
    """
    zeros = torch.zeros(3, device=acc.device, dtype=acc.dtype)
    b_a = zeros if b_a is None else b_a
    b_g = zeros if b_g is None else b_g
    pre = preintegrate(acc, gyro, dt, b_a, b_g, acc_noise=cfg.acc_noise,
                       gyro_noise=cfg.gyro_noise)
    return preintegrated_transition(state, pre, cfg.gravity, (gyro - b_g).mean(dim=0))


def preintegrated_transition(state: GaussianState, pre: Preintegrated, gravity: float,
                             omega: torch.Tensor) -> Tuple[GaussianState, torch.Tensor]:
    """``imu_transition`` with the samples already preintegrated (they do not depend on the
    state, so a transition applied to many states integrates them once).

    Args:
        omega: angular velocity (body) to carry in the predicted state. Shape: (3,).
    """
    dev, dty = state.p.device, state.p.dtype
    g = torch.tensor([0.0, 0.0, -gravity], device=dev, dtype=dty)
    T = pre.delta_t
    Ri = state.R
    p = state.p + state.v * T + 0.5 * g * T * T + Ri @ pre.delta_p
    v = state.v + g * T + Ri @ pre.delta_v
    R = lie.orthonormalize(Ri @ pre.delta_R)
    eye = torch.eye(3, device=dev, dtype=dty)
    F = torch.zeros(9, 9, device=dev, dtype=dty)
    F[0:3, 0:3] = eye
    F[0:3, 3:6] = -Ri @ lie.hat(pre.delta_p)
    F[0:3, 6:9] = eye * T
    F[3:6, 3:6] = pre.delta_R.t()
    F[6:9, 3:6] = -Ri @ lie.hat(pre.delta_v)
    F[6:9, 6:9] = eye
    # Preintegration noise is ordered (δφ, δv, δp) in the frame of state i.
    G = torch.zeros(9, 9, device=dev, dtype=dty)
    G[0:3, 6:9] = Ri
    G[3:6, 0:3] = eye
    G[6:9, 3:6] = Ri
    return GaussianState(R, p, v, G @ pre.cov @ G.t(), omega), F


def propagate_imu(state: GaussianState, acc: torch.Tensor, gyro: torch.Tensor, dt: torch.Tensor,
                  cfg: MotionConfig, b_a: torch.Tensor | None = None,
                  b_g: torch.Tensor | None = None) -> GaussianState:
    """Predict the next state from IMU samples (body frame) between two frames.

    Args:
        acc: specific force. Shape: (N, 3).
        gyro: angular rate. Shape: (N, 3).
        dt: duration each sample is held. Shape: (N,).
    """
    pred, F = imu_transition(state, acc, gyro, dt, cfg, b_a, b_g)
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
    ``cov`` is the white-acceleration process noise Q alone, and the Jacobian F (9, 9)."""
    dev, dty = state.p.device, state.p.dtype
    eye = torch.eye(3, device=dev, dtype=dty)
    p = state.p + state.v * dt
    dR = lie.so3_exp(state.omega * dt)
    R = lie.orthonormalize(state.R @ dR)
    F = torch.eye(9, device=dev, dtype=dty)
    F[0:3, 6:9] = eye * dt
    F[3:6, 3:6] = dR.t()
    qa, qg = cfg.cv_acc_noise ** 2, cfg.cv_gyro_noise ** 2
    Q = torch.zeros(9, 9, device=dev, dtype=dty)
    Q[0:3, 0:3] = eye * qa * dt ** 3 / 3
    Q[0:3, 6:9] = eye * qa * dt ** 2 / 2
    Q[6:9, 0:3] = eye * qa * dt ** 2 / 2
    Q[6:9, 6:9] = eye * qa * dt
    Q[3:6, 3:6] = eye * qg * dt ** 3 / 3
    return GaussianState(R, p, state.v.clone(), Q, state.omega.clone()), F


def propagate_constant_velocity(state: GaussianState, dt: float, cfg: MotionConfig
                                ) -> GaussianState:
    """Predict the next state with constant linear and angular velocity."""
    pred, F = constant_velocity_transition(state, dt, cfg)
    return with_propagated_cov(pred, F, state.cov)
