# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The synthetic flight's trajectory: a closed loop p(theta) flown with a smooth time warp
theta(t), optionally spiralling out from the loop's centre first, with the quadrotor attitude
that follows the acceleration. Everything is closed-form up to the jerk, so the IMU is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

GRAVITY = np.array([0.0, 0.0, -9.81])
"""Gravity in the world frame (m/s²)."""


@dataclass
class FlightState:
    """Closed-form ground truth at times t (seconds since the flight start).

    Attributes:
        t: times (seconds since start). Shape: (N,).
        p: body position, world frame. Shape: (N, 3).
        v: linear velocity, world frame. Shape: (N, 3).
        a: linear acceleration, world frame. Shape: (N, 3).
        R: body orientation, world <- body (FLU). Shape: (N, 3, 3).
        omega: angular velocity in the body frame (rad/s). Shape: (N, 3).
        yaw: heading of the body x axis (radians). Shape: (N,).
    """

    t: np.ndarray
    p: np.ndarray
    v: np.ndarray
    a: np.ndarray
    R: np.ndarray
    omega: np.ndarray
    yaw: np.ndarray

    @property
    def T_world_body(self) -> np.ndarray:
        """Poses. Shape: (N, 4, 4)."""
        T = np.tile(np.eye(4), (len(self.t), 1, 1))
        T[:, :3, :3] = self.R
        T[:, :3, 3] = self.p
        return T


def _septic_step(t: np.ndarray, t0: float, T: float) -> Tuple[np.ndarray, ...]:
    """A step from 0 (before t0) to 1 (after t0 + T) whose first three derivatives vanish at
    both ends (35u⁴ - 84u⁵ + 70u⁶ - 20u⁷), so a jerk built from it stays continuous; the
    step and its first three time derivatives. Shape: (N,) -> 4 x (N,)."""
    u = np.clip((t - t0) / T, 0.0, 1.0)
    s = u ** 4 * (35 - 84 * u + 70 * u ** 2 - 20 * u ** 3)
    s1 = 140 * u ** 3 * (1 - u) ** 3 / T
    s2 = 420 * u ** 2 * (1 - u) ** 2 * (1 - 2 * u) / T ** 2
    s3 = 840 * u * (1 - u) * (1 - 5 * u + 5 * u ** 2) / T ** 3
    return s, s1, s2, s3


class _Trajectory:
    """The loop p(theta) (sums of cosines of integer harmonics of the loop angle theta) and the
    time warp theta(t) = w0 * Phi(t), with Phi' a smootherstep from 0 (hover) to 1.

    With ``moving`` the warp is theta = w0 * t from t = 0: the flight starts on the loop at full
    speed (no hover, no ramp).

    With ``out_s > 0`` the flight starts at ``center`` instead: p = center + s(t) (loop -
    center), s a septic step from 0 to 1 over ``out_s`` seconds after the hover (a spiral out
    onto the loop). Yaw: 'look_at' faces ``look_at`` from the loop point (plus ``yaw_offset``,
    pi: facing away) with a slow pan; 'travel' looks along the loop's direction of travel.
    """

    def __init__(self, center: np.ndarray, amp: np.ndarray, harm: np.ndarray, phase: np.ndarray,
                 pan_amp: float, pan_harm: int, pan_phase: float, look_at: np.ndarray,
                 hover_s: float, ramp_s: float, w0: float = 1.0, yaw_mode: str = 'look_at',
                 yaw_offset: float = 0.0, out_s: float = 0.0, moving: bool = False):
        self.center = center        # (3,)
        self.amp = amp              # (3, K)
        self.harm = harm            # (3, K) integer harmonics (sign = direction of travel)
        self.phase = phase          # (3, K)
        self.pan_amp, self.pan_harm, self.pan_phase = pan_amp, pan_harm, pan_phase
        self.look_at = look_at      # (2,)
        self.hover_s, self.ramp_s = hover_s, ramp_s
        self.w0 = w0
        self.yaw_mode, self.yaw_offset, self.out_s = yaw_mode, yaw_offset, out_s
        self.moving = moving

    def loop(self, theta: np.ndarray, order: int = 0) -> np.ndarray:
        """d^order p / d theta^order. Shape: (N,) -> (N, 3)."""
        theta = np.asarray(theta, dtype=float)
        out = np.zeros((len(theta), 3))
        # Loops over the few terms keep the arrays long (a (N, 3, K) broadcast is slower).
        for i in range(3):
            for k in range(self.amp.shape[1]):
                if self.amp[i, k]:
                    h = float(self.harm[i, k])
                    out[:, i] += self.amp[i, k] * h ** order * np.cos(
                        h * theta + (self.phase[i, k] + order * np.pi / 2))
        return out + self.center if order == 0 else out

    def warp(self, t: np.ndarray) -> Tuple[np.ndarray, ...]:
        """theta and its first three time derivatives. Shape: (N,) -> 4 x (N,)."""
        if self.moving:
            t = np.asarray(t, dtype=float)
            zero = np.zeros_like(t)
            return self.w0 * t, self.w0 + zero, zero, zero.copy()
        T = self.ramp_s
        u = np.clip((t - self.hover_s) / T, 0.0, 1.0)
        phi = T * (2.5 * u ** 4 - 3 * u ** 5 + u ** 6) + np.maximum(t - self.hover_s - T, 0.0)
        r = 10 * u ** 3 - 15 * u ** 4 + 6 * u ** 5
        r1 = 30 * u ** 2 * (1 - u) ** 2 / T
        r2 = (60 * u - 180 * u ** 2 + 120 * u ** 3) / T ** 2
        return self.w0 * phi, self.w0 * r, self.w0 * r1, self.w0 * r2

    def speed(self, t: np.ndarray) -> np.ndarray:
        """|velocity| at times t (cheaper than ``state``). Shape: (N,) -> (N,)."""
        th, th1, _, _ = self.warp(t)
        if not self.out_s:
            return np.linalg.norm(self.loop(th, 1), axis=-1) * th1
        s, s1, _, _ = _septic_step(t, self.hover_s, self.out_s)
        v = s1[:, None] * (self.loop(th) - self.center) + (s * th1)[:, None] * self.loop(th, 1)
        return np.linalg.norm(v, axis=-1)

    def state(self, t: np.ndarray) -> FlightState:
        t = np.atleast_1d(np.asarray(t, dtype=float))
        th, th1, th2, th3 = self.warp(t)
        f0, f1, f2, f3 = (self.loop(th, k) for k in range(4))
        c1, c2, c3 = th1[:, None], th2[:, None], th3[:, None]
        # The loop point's time derivatives (the flight itself when it starts on the loop).
        p = f0
        v = f1 * c1
        a = f2 * c1 ** 2 + f1 * c2
        j = f3 * c1 ** 3 + 3 * f2 * c1 * c2 + f1 * c3
        yaw, yaw_rate = self._yaw(th, th1, f0, f1, f2, v)
        if self.out_s:
            # p = center + s g: the product rule up to the third derivative.
            s, s1, s2, s3 = (x[:, None] for x in _septic_step(t, self.hover_s, self.out_s))
            g = f0 - self.center
            p, v, a, j = (self.center + s * g, s1 * g + s * v, s2 * g + 2 * s1 * v + s * a,
                          s3 * g + 3 * s2 * v + 3 * s1 * a + s * j)
        R, omega = _attitude(a, j, yaw, yaw_rate)
        return FlightState(t=t, p=p, v=v, a=a, R=R, omega=omega, yaw=yaw)

    def _yaw(self, th: np.ndarray, th1: np.ndarray, f0: np.ndarray, f1: np.ndarray,
             f2: np.ndarray, v: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Yaw and yaw rate from the loop point f0, its theta derivatives f1, f2 and its
        velocity v (functions of theta, so they are still while hovering).

        Shape: th, th1 (N,), f0, f1, f2, v (N, 3) -> (N,), (N,).
        """
        if self.yaw_mode == 'travel':
            yaw = np.arctan2(f1[:, 1], f1[:, 0])
            yaw_rate = ((f1[:, 0] * f2[:, 1] - f1[:, 1] * f2[:, 0])
                        / (f1[:, :2] ** 2).sum(-1) * th1)
            return yaw, yaw_rate
        # Towards the look-at point plus a slow pan.
        d = self.look_at - f0[:, :2]
        dd = -v[:, :2]
        pan_arg = self.pan_harm * th + self.pan_phase
        yaw = np.arctan2(d[:, 1], d[:, 0]) + self.pan_amp * np.sin(pan_arg)
        yaw_rate = ((d[:, 0] * dd[:, 1] - d[:, 1] * dd[:, 0]) / (d ** 2).sum(-1)
                    + self.pan_amp * self.pan_harm * np.cos(pan_arg) * th1)
        if self.yaw_offset:
            yaw = yaw + self.yaw_offset
        return yaw, yaw_rate


def _attitude(a: np.ndarray, j: np.ndarray, yaw: np.ndarray,
              yaw_rate: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Quadrotor attitude from acceleration and yaw (differential flatness), and its body
    angular velocity from the analytic derivatives.

    Shape: a, j (N, 3), yaw, yaw_rate (N,) -> R (N, 3, 3) world <- body, omega (N, 3).
    """
    f = a - GRAVITY
    fn = np.linalg.norm(f, axis=-1, keepdims=True)
    z = f / fn
    z_dot = (j - (z * j).sum(-1, keepdims=True) * z) / fn
    zero = np.zeros_like(yaw)
    xc = np.stack([np.cos(yaw), np.sin(yaw), zero], -1)
    xc_dot = yaw_rate[:, None] * np.stack([-np.sin(yaw), np.cos(yaw), zero], -1)
    u = np.cross(z, xc)
    u_dot = np.cross(z_dot, xc) + np.cross(z, xc_dot)
    un = np.linalg.norm(u, axis=-1, keepdims=True)
    y = u / un
    y_dot = (u_dot - (y * u_dot).sum(-1, keepdims=True) * y) / un
    x = np.cross(y, z)
    x_dot = np.cross(y_dot, z) + np.cross(y, z_dot)
    R = np.stack([x, y, z], -1)
    # R^T dR/dt = hat(omega): omega_x = z.y', omega_y = x.z', omega_z = y.x'.
    omega = np.stack([(z * y_dot).sum(-1), (x * z_dot).sum(-1), (y * x_dot).sum(-1)], -1)
    return R, omega
