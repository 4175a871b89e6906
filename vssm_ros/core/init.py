# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Initialisation: rest detection from the IMU, and gravity and velocity from the first frames.

A node may start (or restart) mid-flight. The accelerometer measures ``R^T (a - g)``: only at
rest is its mean the gravity direction, and only at rest is the velocity zero. So:

- ``is_at_rest`` tells rest from motion on the IMU samples before the first frame (small
  angular rate, specific force of constant magnitude ``|g|``). At rest the first state's
  velocity is zero with a small std; in motion it is unknown (a wide std), and tracking against
  the first keyframe pins the first poses.
- ``align_gravity`` then solves, by linear least squares over the first frames' tracked poses
  and the IMU preintegrated between them (the visual-inertial alignment of VINS-Mono and
  ORB-SLAM3, with metric depth so without scale), for gravity in the map frame and every
  frame's velocity::

      v_k+1 - v_k - g T_k          = R_k Δv_k
      - v_k T_k - 1/2 g T_k²       = R_k Δp_k - (p_k+1 - p_k)

  ``gravity_correction`` is the rotation that turns the estimated gravity onto -z; the engine
  restarts from the first frame with the map frame rotated by it and the velocity known.

Reference: T. Qin, P. Li, S. Shen, "VINS-Mono", IEEE T-RO 2018, section V (visual-inertial
alignment).
"""

from __future__ import annotations

import math
from typing import List, Tuple

import torch

from vssm_ros.core.lie import so3_exp


def is_at_rest(acc: torch.Tensor, gyro: torch.Tensor, gravity: float, max_gyro: float,
               max_acc_dev: float) -> bool:
    """Whether IMU samples were taken at rest: their mean angular rate below ``max_gyro``
    (rad/s) and their mean specific force's magnitude within ``max_acc_dev`` (m/s²) of
    ``gravity`` (means, so that white noise averages out).

    An IMU cannot tell rest from straight flight at constant velocity: the alignment after
    the first frames (``align_gravity``) solves the velocity and catches that case.

    Shape: acc (N, 3), gyro (N, 3).
    """
    if acc.shape[0] < 2:
        return False
    w = torch.linalg.norm(gyro.mean(dim=0))
    dev = (torch.linalg.norm(acc.mean(dim=0)) - gravity).abs()
    return bool(w < max_gyro) and bool(dev < max_acc_dev)


def align_gravity(R: torch.Tensor, p: torch.Tensor, dv: torch.Tensor, dp: torch.Tensor,
                  T: torch.Tensor, sigma_v: float, sigma_p: float
                  ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Gravity in the map frame and each frame's velocity from tracked poses and the IMU
    preintegrated between them (weighted linear least squares, float64).

    Args:
        R: tracked orientations of frames 0..N-1, world <- body. Shape: (N, 3, 3).
        p: tracked positions. Shape: (N, 3).
        dv, dp: preintegrated velocity and position increments from frame k to k+1, in the
            body frame of k (bias-free, gravity excluded). Shape: (N-1, 3).
        T: the intervals (seconds). Shape: (N-1,).
        sigma_v: std of a velocity equation (m/s): IMU noise over one interval.
        sigma_p: std of a position equation (m): the tracked positions' noise.
    Returns:
        ``g`` (3,) gravity (m/s²) in the map frame, ``v`` (N, 3) velocities.
    """
    f64 = torch.float64
    R, p, dv, dp, T = (x.to(f64) for x in (R, p, dv, dp, T))
    n = p.shape[0]
    m = n - 1
    A = torch.zeros(6 * m, 3 * n + 3, dtype=f64, device=p.device)
    b = torch.zeros(6 * m, dtype=f64, device=p.device)
    eye = torch.eye(3, dtype=f64, device=p.device)
    g = slice(3 * n, 3 * n + 3)
    for k in range(m):
        rv, rp = slice(6 * k, 6 * k + 3), slice(6 * k + 3, 6 * k + 6)
        vk, vk1 = slice(3 * k, 3 * k + 3), slice(3 * k + 3, 3 * k + 6)
        A[rv, vk1] = eye / sigma_v
        A[rv, vk] = -eye / sigma_v
        A[rv, g] = -eye * T[k] / sigma_v
        b[rv] = R[k] @ dv[k] / sigma_v
        A[rp, vk] = -eye * T[k] / sigma_p
        A[rp, g] = -0.5 * eye * T[k] ** 2 / sigma_p
        b[rp] = (R[k] @ dp[k] - (p[k + 1] - p[k])) / sigma_p
    x = torch.linalg.lstsq(A, b[:, None]).solution[:, 0]
    return x[g], x[:3 * n].reshape(n, 3)


def gravity_correction(g: torch.Tensor) -> torch.Tensor:
    """The smallest rotation that turns the direction of ``g`` onto world -z (a half turn
    about x when ``g`` points up). Shape: (3,) -> (3, 3)."""
    u = g / torch.linalg.norm(g)
    down = torch.tensor([0.0, 0.0, -1.0], dtype=g.dtype, device=g.device)
    axis = torch.linalg.cross(u, down)
    s, c = float(torch.linalg.norm(axis)), float(torch.dot(u, down))
    if s < 1e-12:   # already down, or straight up
        x = torch.tensor([1.0, 0.0, 0.0], dtype=g.dtype, device=g.device)
        return so3_exp(x * (0.0 if c > 0 else math.pi))
    return so3_exp(axis / s * math.atan2(s, c))


def correction_angle_deg(R_fix: torch.Tensor) -> float:
    """The rotation angle of ``R_fix`` (degrees)."""
    c = (float(torch.trace(R_fix)) - 1.0) / 2.0
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


__all__: List[str] = ['is_at_rest', 'align_gravity', 'gravity_correction',
                      'correction_angle_deg']
