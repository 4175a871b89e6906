# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Data types at the seam between the data layer, the engine and the drivers.

Plain dataclasses over NumPy arrays; no torch, no ROS. Stamps are integer nanoseconds (so that
round trips through bags are exact); ``t`` gives seconds as float for arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Union

import numpy as np


def _seconds(stamp_ns: int) -> float:
    return stamp_ns * 1e-9


@dataclass
class Frame:
    """One RGB-D frame, already converted to SI units.

    Attributes:
        stamp_ns: image stamp (nanoseconds).
        rgb: colour image. Shape: (H, W, 3), uint8.
        depth: depth in metres, NaN where invalid. Shape: (H, W), float32.
        K: pinhole intrinsics of the (undistorted) image. Shape: (3, 3).
        T_body_cam: camera optical frame in the body frame. Shape: (4, 4).
    """

    stamp_ns: int
    rgb: np.ndarray
    depth: np.ndarray
    K: np.ndarray
    T_body_cam: np.ndarray = field(default_factory=lambda: np.eye(4))

    @property
    def t(self) -> float:
        return _seconds(self.stamp_ns)

    @property
    def size(self) -> tuple:
        """(height, width)."""
        return self.depth.shape[:2]


@dataclass
class ImuSample:
    """One IMU reading in the body frame.

    Attributes:
        stamp_ns: stamp (nanoseconds).
        acc: specific force (m/s²), body frame. Shape: (3,).
        gyro: angular rate (rad/s), body frame. Shape: (3,).
    """

    stamp_ns: int
    acc: np.ndarray
    gyro: np.ndarray

    @property
    def t(self) -> float:
        return _seconds(self.stamp_ns)


@dataclass
class PoseSample:
    """A ground-truth pose of the body in the world frame.

    Attributes:
        stamp_ns: stamp (nanoseconds).
        T_world_body: pose. Shape: (4, 4).
        v_world: linear velocity in the world frame when known. Shape: (3,).
    """

    stamp_ns: int
    T_world_body: np.ndarray
    v_world: Optional[np.ndarray] = None

    @property
    def t(self) -> float:
        return _seconds(self.stamp_ns)


TIMING_COUNTS = ('rays_used', 'track_iters')
"""Keys of ``Estimate.timings`` that are counts, not seconds: usable depth rays, and the
Gauss-Newton steps the tracker took."""


@dataclass
class Estimate:
    """The engine's posterior for one frame.

    Attributes:
        stamp_ns: stamp of the frame it belongs to (nanoseconds).
        T_world_body: posterior mean pose. Shape: (4, 4).
        cov: covariance of the pose in the tangent space, order (x, y, z, rx, ry, rz) as in
            nav_msgs/Odometry (translation and rotation both about the map frame's axes),
            including the uncertainty of the map the pose was tracked against. Shape: (6, 6).
        v_world: posterior mean linear velocity in the world frame. Shape: (3,).
        timings: seconds spent per stage ('propagate', 'track', 'map', 'total', ...), and
            the counts named in ``TIMING_COUNTS``.
        b_a: posterior mean accelerometer bias, body frame (m/s²); subtract it from raw
            accelerometer readings. Shape: (3,).
        b_g: posterior mean gyroscope bias, body frame (rad/s). Shape: (3,).
        status: tracking health, 'OK', 'DEGRADED' or 'LOST' (``core.health``): only OK
            frames update the map; a LOST estimate is the motion prior coasting.
        status_reason: why (e.g. 'inliers 12 % < 25 %').
        health: the signals the status came from (``core.health.TrackSignals.as_dict``).
        T_jump: when this frame relocalised, the jump ``T_new T_coasted^-1`` (world frame)
            that the drivers put into map -> odom so that odom -> base_link stays continuous
            (REP-105); None otherwise. Shape: (4, 4).
    """

    stamp_ns: int
    T_world_body: np.ndarray
    cov: np.ndarray
    v_world: np.ndarray
    timings: Dict[str, float] = field(default_factory=dict)
    b_a: np.ndarray = field(default_factory=lambda: np.zeros(3))
    b_g: np.ndarray = field(default_factory=lambda: np.zeros(3))
    status: str = 'OK'
    status_reason: str = ''
    health: Dict[str, float] = field(default_factory=dict)
    T_jump: Optional[np.ndarray] = None

    @property
    def t(self) -> float:
        return _seconds(self.stamp_ns)


StreamItem = Union[Frame, ImuSample, PoseSample]
"""What a data source yields, in time order."""
