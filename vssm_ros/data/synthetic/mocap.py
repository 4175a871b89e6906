# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Blackbird-style flights (``synthetic.trajectory: blackbird``): a segment of a real Blackbird
flight, its motion-capture trajectory flown through a generated room and its real IMU.

The input is a split of the Blackbird flights as pre-processed by Cioffi et al.
(``vssm_ros.data.flight_log``): 100 Hz stamps, raw accelerometer and gyroscope in the IMU
frame, and the IMU's pose in a z-up world. That IMU frame is z-down with its x axis to the
drone's right and y backwards (measured on the clover flight, yaw forward: the velocity lies
along -y in it, the mean specific force in the world is +9.74 m/s² up; the gyroscope matches
the derivative of the motion-capture attitude to a correlation of 0.99 on every axis). The body
frame here is FLU (x forward, z up) at the IMU; ``R_BODY_IMU`` maps between them.

Poses between the 100 Hz samples: positions by a cubic Hermite spline with central-difference
slopes (C1), rotations by the geodesic between neighbouring samples (constant body angular rate
over each 10 ms).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vssm_ros.config import SyntheticConfig
from vssm_ros.data.synthetic.trajectory import FlightState
from vssm_ros.data.transforms import matrix_to_quat, quat_to_matrix
from vssm_ros.errors import ConfigError

R_BODY_IMU = np.array([[0.0, -1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
"""The Blackbird IMU frame (x right, y back, z down) in the FLU body frame. Shape: (3, 3)."""
SCENE_MARGIN = 1.5
"""Distance (metres) from the segment's horizontal bounding box to the room's walls."""
SCENE_HEADROOM = 1.3
"""Distance (metres) from the segment's highest point to the ceiling (at least 3 m high)."""


@dataclass
class MocapSegment:
    """A segment of a real flight, moved into the generated room.

    Attributes:
        t: seconds since the segment's start. Shape: (N,).
        p_world: IMU (= body) positions in the room's world. Shape: (N, 3).
        R_world_body: body (FLU) orientations. Shape: (N, 3, 3).
        acc_imu: raw accelerometer, IMU frame (m/s²). Shape: (N, 3).
        gyro_imu: raw gyroscope, IMU frame (rad/s). Shape: (N, 3).
        offset: added to the recording's positions to place them in the room. Shape: (3,).
        room_size: the room enclosing the segment with margins. Shape: (3,).
    """

    t: np.ndarray
    p_world: np.ndarray
    R_world_body: np.ndarray
    acc_imu: np.ndarray
    gyro_imu: np.ndarray
    offset: np.ndarray
    room_size: np.ndarray


def load_segment(cfg: SyntheticConfig) -> MocapSegment:
    """The segment ``[blackbird_start_s, blackbird_start_s + duration_s]`` of the flight in
    ``cfg.blackbird_path``.

    Raises:
        ConfigError: the segment does not lie inside the recording.
        SourceError: the folder is not a readable flight (``load_blackbird_split``).
    """
    from vssm_ros.data.flight_log import load_blackbird_split

    log = load_blackbird_split(cfg.blackbird_path, calibrated=False)
    t_all = log.t - log.t[0]
    # A resampled clock (Blackbird's: 100 Hz) stored as float epoch seconds steps by 9.99999 ms
    # (the float's resolution at 1.5e9 s): back to its exact 10 µs-multiple period.
    dt = float(np.round(np.median(np.diff(t_all)) * 1e5) / 1e5)
    if dt > 0 and np.abs(np.diff(t_all) - dt).max() < 1e-6:
        t_all = np.arange(len(t_all)) * dt
    end = cfg.blackbird_start_s + cfg.duration_s
    if end > t_all[-1] + 1e-3:
        raise ConfigError(f'synthetic: the Blackbird segment [{cfg.blackbird_start_s:g}, {end:g}] '
                          f's ends after the recording in {cfg.blackbird_path} '
                          f'({t_all[-1]:.2f} s)')
    i0 = int(np.searchsorted(t_all, cfg.blackbird_start_s - 1e-6))
    i1 = int(np.searchsorted(t_all, end + 1e-6, side='right'))
    if i1 - i0 < 4:
        raise ConfigError(f'synthetic: the Blackbird segment holds {i1 - i0} samples; use a '
                          'longer duration_s')
    t = t_all[i0:i1] - t_all[i0]
    R_world_body = quat_to_matrix(log.q[i0:i1]) @ R_BODY_IMU.T
    p = log.p[i0:i1]
    lo, hi = p.min(axis=0), p.max(axis=0)
    offset = np.array([SCENE_MARGIN - lo[0], SCENE_MARGIN - lo[1], 0.0])
    room = np.array([hi[0] - lo[0] + 2 * SCENE_MARGIN, hi[1] - lo[1] + 2 * SCENE_MARGIN,
                     max(3.0, hi[2] + SCENE_HEADROOM)])
    return MocapSegment(t=t, p_world=p + offset, R_world_body=R_world_body,
                        acc_imu=log.acc[i0:i1].copy(), gyro_imu=log.gyro[i0:i1].copy(),
                        offset=offset, room_size=room)


def _so3_exp(w: np.ndarray) -> np.ndarray:
    """Rodrigues. Shape: (N, 3) -> (N, 3, 3)."""
    th = np.linalg.norm(w, axis=-1)[:, None, None]
    K = np.zeros((len(w), 3, 3))
    K[:, 0, 1], K[:, 0, 2], K[:, 1, 2] = -w[:, 2], w[:, 1], -w[:, 0]
    K = K - np.transpose(K, (0, 2, 1))
    small = th < 1e-8
    a = np.where(small, 1.0, np.sin(th) / np.where(small, 1.0, th))
    b = np.where(small, 0.5, (1 - np.cos(th)) / np.where(small, 1.0, th) ** 2)
    return np.eye(3) + a * K + b * K @ K


def _so3_log(R: np.ndarray) -> np.ndarray:
    """Rotation vectors (through quaternions, accurate near 0 and pi). Shape: (N, 3, 3) ->
    (N, 3)."""
    q = matrix_to_quat(R)   # w >= 0
    s = np.linalg.norm(q[:, :3], axis=-1)
    angle = 2 * np.arctan2(s, q[:, 3])
    scale = np.where(s > 1e-12, angle / np.where(s > 1e-12, s, 1.0), 2.0)
    return q[:, :3] * scale[:, None]


class MocapTrajectory:
    """The motion-capture samples as a continuous trajectory with ``state(t)`` like the loop's:
    positions by a cubic Hermite spline (C1), rotations geodesic between samples.

    Args:
        t: sample times (seconds), increasing. Shape: (N,).
        p: positions. Shape: (N, 3).
        R: orientations world <- body. Shape: (N, 3, 3).
    """

    def __init__(self, t: np.ndarray, p: np.ndarray, R: np.ndarray):
        self.t = np.asarray(t, dtype=float)
        self.p = np.asarray(p, dtype=float)
        self.R = np.asarray(R, dtype=float)
        dp = np.gradient(self.p, self.t, axis=0)   # central differences, one-sided at the ends
        self.m = dp
        self.w = _so3_log(np.einsum('nji,njk->nik', self.R[:-1], self.R[1:]))   # (N-1, 3)

    def state(self, t) -> FlightState:
        t = np.atleast_1d(np.asarray(t, dtype=float))
        tk = self.t
        tc = np.clip(t, tk[0], tk[-1])
        i = np.clip(np.searchsorted(tk, tc, side='right') - 1, 0, len(tk) - 2)
        h = (tk[i + 1] - tk[i])[:, None]
        u = (tc - tk[i])[:, None] / h
        p0, p1, m0, m1 = self.p[i], self.p[i + 1], self.m[i] * h, self.m[i + 1] * h
        p = ((2 * u ** 3 - 3 * u ** 2 + 1) * p0 + (u ** 3 - 2 * u ** 2 + u) * m0
             + (-2 * u ** 3 + 3 * u ** 2) * p1 + (u ** 3 - u ** 2) * m1)
        v = ((6 * u ** 2 - 6 * u) * p0 + (3 * u ** 2 - 4 * u + 1) * m0
             + (6 * u - 6 * u ** 2) * p1 + (3 * u ** 2 - 2 * u) * m1) / h
        a = ((12 * u - 6) * p0 + (6 * u - 4) * m0 + (6 - 12 * u) * p1 + (6 * u - 2) * m1) / h ** 2
        R = self.R[i] @ _so3_exp(self.w[i] * u)
        omega = self.w[i] / h
        yaw = np.arctan2(R[:, 1, 0], R[:, 0, 0])
        return FlightState(t=t, p=p, v=v, a=a, R=R, omega=omega, yaw=yaw)

    def speed(self, t) -> np.ndarray:
        """|velocity| at times t. Shape: (N,) -> (N,)."""
        return np.linalg.norm(self.state(t).v, axis=-1)
