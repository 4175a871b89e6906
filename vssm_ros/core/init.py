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
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from vssm_ros.config import EngineConfig
from vssm_ros.core.imu import preintegrate
from vssm_ros.core.lie import so3_exp
from vssm_ros.types import Frame, ImuSample


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


def solve_gravity(track: Sequence[Tuple[torch.Tensor, torch.Tensor, Any]], cfg: EngineConfig,
                  dtype: torch.dtype) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """The rotation that levels the map frame and the first frame's velocity in the levelled
    frame (``align_gravity`` over the tracked poses and the IMU between them).

    Args:
        track: per frame the tracked ``R`` (3, 3) and ``p`` (3,) and the IMU samples
            ``(acc, gyro, dt)`` since the frame before (None for the first frame).
        cfg: the engine's (``init``, ``motion``, ``sensor``).
        dtype: of the results.
    Returns:
        ``R_fix`` (3, 3) and ``v0`` (3,); None when an interval has no IMU or the solved
        gravity's magnitude is off by more than ``init.max_gravity_error``.
    """
    ic, mc = cfg.init, cfg.motion
    if any(imu is None for _, _, imu in track[1:]):
        return None   # an interval without IMU says nothing about gravity
    pre = [preintegrate(*imu) for _, _, imu in track[1:]]
    R = torch.stack([r for r, _, _ in track])
    p = torch.stack([x for _, x, _ in track])
    T = torch.stack([q.delta_t for q in pre])
    g, v = align_gravity(R, p, torch.stack([q.delta_v for q in pre]),
                         torch.stack([q.delta_p for q in pre]), T,
                         sigma_v=mc.acc_noise * math.sqrt(float(T.mean())),
                         sigma_p=cfg.sensor.depth_sigma_a + 0.003)
    if abs(float(torch.linalg.norm(g)) / mc.gravity - 1.0) > ic.max_gravity_error:
        return None
    R_fix = gravity_correction(g).to(dtype)
    return R_fix, R_fix @ v[0].to(dtype)


def rest_after_all(log: Sequence[Any], track: Sequence[Tuple[torch.Tensor, torch.Tensor, Any]],
                   cfg: EngineConfig, as_tensor: Callable[[Any], torch.Tensor]
                   ) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """A start judged in motion that was a hover after all: the IMU since the first frame at
    rest (``is_at_rest``) and the tracked poses still, within ``3 init.rest_velocity_std`` on
    average. (A bag or a driver often has only a sample or two of IMU before the first frame,
    too few to tell.)

    Args:
        log: the inputs since before the first frame (``Frame`` and ``ImuSample``, in order).
        track: as ``solve_gravity``'s.
        as_tensor: turns an array into a tensor of the engine's device and dtype.
    Returns:
        The rotation that levels the map frame by the mean specific force since the first
        frame (at rest, gravity to the accelerometer's bias) and a zero velocity; None: not at
        rest.
    """
    ic = cfg.init
    t0 = next(x.stamp_ns for x in log if isinstance(x, Frame))
    imu = [x for x in log if isinstance(x, ImuSample) and x.stamp_ns >= t0]
    if len(imu) < 2 or len(track) < 2:
        return None
    acc = as_tensor(np.stack([x.acc for x in imu]))
    gyro = as_tensor(np.stack([x.gyro for x in imu]))
    if not is_at_rest(acc, gyro, cfg.motion.gravity, ic.rest_max_gyro, ic.rest_max_acc_dev):
        return None
    span = (imu[-1].stamp_ns - t0) * 1e-9
    if float(torch.linalg.norm(track[-1][1] - track[0][1])) > 3 * ic.rest_velocity_std * span:
        return None
    up = track[0][0] @ acc.mean(dim=0)   # the specific force at rest points up
    return gravity_correction(-up).to(acc.dtype), torch.zeros_like(up)


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


__all__: List[str] = ['is_at_rest', 'align_gravity', 'solve_gravity', 'rest_after_all',
                      'gravity_correction', 'correction_angle_deg']
