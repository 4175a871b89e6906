# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The poses of an external odometry (odom -> base_link on /tf) over time, for map -> odom
when another node is the odometry source (``frames.standalone`` false): kept in stamp order,
interpolated at image stamps."""

from __future__ import annotations

import collections
from typing import Any, Deque, Optional, Tuple

import numpy as np

from vssm_ros.config import FramesConfig
from vssm_ros.data import messages as M
from vssm_ros.data.transforms import matrix_to_quat, quat_to_matrix

ODOM_BUFFER = 2000
"""odom -> body transforms held."""
ODOM_MAX_GAP_S = 0.1
"""Interpolation needs two samples at most this far apart (seconds) around the stamp."""


def interpolate_pose(T0: np.ndarray, T1: np.ndarray, a: float) -> np.ndarray:
    """The pose a of the way from T0 to T1: translation linear, rotation along the geodesic
    (slerp).

    Shape: T0, T1 (4, 4) -> (4, 4).
    """
    q0, q1 = matrix_to_quat(T0[:3, :3]), matrix_to_quat(T1[:3, :3])
    if np.dot(q0, q1) < 0:
        q1 = -q1
    angle = np.arccos(np.clip(np.dot(q0, q1), -1.0, 1.0))
    if angle < 1e-9:
        q = q0
    else:
        q = (np.sin((1 - a) * angle) * q0 + np.sin(a * angle) * q1) / np.sin(angle)
    T = np.eye(4)
    T[:3, :3] = quat_to_matrix(q / np.linalg.norm(q))
    T[:3, 3] = (1 - a) * T0[:3, 3] + a * T1[:3, 3]
    return T


class OdomBuffer:
    """T_odom_body of an external odometry by stamp (not thread-safe: the caller locks).

    Args:
        frames: ``odom_frame`` and ``body_frame`` pick the transforms kept.
        slop_s: without two samples around a stamp, the nearest within this many seconds.
        time_jump_s: a stamp this much older than the newest (a bag played again) starts over.
    """

    def __init__(self, frames: FramesConfig, slop_s: float, time_jump_s: float) -> None:
        self.parent = frames.odom_frame.lstrip('/')
        self.child = frames.body_frame.lstrip('/')
        self.slop_ns = int(slop_s * 1e9)
        self.jump_ns = int(time_jump_s * 1e9)
        self._odom: Deque[Tuple[int, np.ndarray]] = collections.deque(maxlen=ODOM_BUFFER)

    def add_message(self, msg: Any) -> None:
        """Keep the odom -> body transforms of a tf2_msgs/TFMessage (others are ignored)."""
        for t in getattr(msg, 'transforms', []):
            if (str(t.header.frame_id).lstrip('/') == self.parent
                    and str(t.child_frame_id).lstrip('/') == self.child):
                self.add(M.header_stamp_ns(t), M.transform_to_matrix(t))

    def add(self, stamp_ns: int, T_odom_body: np.ndarray) -> None:
        if self._odom and stamp_ns <= self._odom[-1][0]:
            if self._odom[-1][0] - stamp_ns <= self.jump_ns:
                return   # out of order
            self._odom.clear()   # played again: start over
        self._odom.append((int(stamp_ns), np.asarray(T_odom_body, dtype=np.float64)))

    def at(self, stamp_ns: int) -> Optional[np.ndarray]:
        """T_odom_body at ``stamp_ns``: interpolated between the samples around it, else the
        nearest within the slop; None when there is none.

        Shape: (4, 4).
        """
        odom = list(self._odom)
        if not odom:
            return None
        stamps = np.array([s for s, _ in odom], dtype=np.int64)
        i = int(np.searchsorted(stamps, stamp_ns))
        if i < len(odom) and stamps[i] == stamp_ns:
            return odom[i][1]
        if 0 < i < len(odom) and stamps[i] - stamps[i - 1] <= ODOM_MAX_GAP_S * 1e9:
            a = (stamp_ns - stamps[i - 1]) / (stamps[i] - stamps[i - 1])
            return interpolate_pose(odom[i - 1][1], odom[i][1], float(a))
        j = int(np.argmin(np.abs(stamps - stamp_ns)))
        return odom[j][1] if abs(int(stamps[j]) - stamp_ns) <= self.slop_ns else None
