# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Trajectory files in the TUM format: one pose per line, ``t x y z qx qy qz qw``.

``t`` is in seconds, the position in metres and the orientation a unit quaternion in ROS
order (xyzw). Lines starting with ``#`` and blank lines are ignored. This is the format of the
TUM RGB-D ground truth and of ``trajectory.tum`` written by the replay CLI, and the one evo
reads with ``evo_ape tum``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from vssm_ros.data.atomic import atomic_write_text
from vssm_ros.data.transforms import matrix_to_quat, quat_to_matrix
from vssm_ros.errors import SourceError
from vssm_ros.types import PoseSample

PathLike = Union[str, os.PathLike]

__all__ = ['read_tum_trajectory', 'write_tum_trajectory']

# A quaternion shorter than this cannot be normalised meaningfully (it is a zero written by
# mistake, not a rounding of a unit quaternion).
_MIN_QUAT_NORM = 1e-6


def read_tum_trajectory(path: PathLike) -> Tuple[np.ndarray, np.ndarray]:
    """Read a TUM trajectory file.

    Quaternions that are not of unit length (files often store 4 decimals) are normalised; a
    (near-)zero quaternion is an error. An empty file (or one with only comments) gives empty
    arrays.

    Args:
        path: the file.

    Returns:
        ``(stamps_s, T)``: stamps in seconds, float64, Shape: (N,); the poses as homogeneous
        matrices (the pose of the tracked frame in the file's world frame), float64,
        Shape: (N, 4, 4).

    Raises:
        SourceError: the file is missing or unreadable, or a line is malformed (the message
            names the file and the line number).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding='utf-8')
    except (OSError, UnicodeDecodeError) as err:
        raise SourceError(f'cannot read trajectory file {path}: {err}') from err

    rows: List[List[float]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith('#'):
            continue
        fields = stripped.split()
        if len(fields) != 8:
            raise SourceError(
                f'{path}:{lineno}: expected 8 values "t x y z qx qy qz qw", got {len(fields)}: '
                f'{stripped[:80]!r}')
        try:
            values = [float(f) for f in fields]
        except ValueError as err:
            raise SourceError(f'{path}:{lineno}: not a number in {stripped[:80]!r}') from err
        if not all(math.isfinite(v) for v in values):
            raise SourceError(f'{path}:{lineno}: non-finite value in {stripped[:80]!r}')
        qnorm = math.sqrt(sum(v * v for v in values[4:]))
        if qnorm < _MIN_QUAT_NORM:
            raise SourceError(
                f'{path}:{lineno}: zero quaternion (norm {qnorm:.3g}), cannot make a rotation')
        rows.append(values)

    if not rows:
        return np.zeros(0), np.zeros((0, 4, 4))
    data = np.asarray(rows, dtype=np.float64)  # (N, 8)
    T = np.tile(np.eye(4), (len(data), 1, 1))  # (N, 4, 4)
    T[:, :3, :3] = quat_to_matrix(data[:, 4:8])
    T[:, :3, 3] = data[:, 1:4]
    return data[:, 0].copy(), T


def write_tum_trajectory(path: PathLike, stamps: np.ndarray, T: np.ndarray) -> None:
    """Write poses to a TUM trajectory file, atomically.

    Stamps of an integer dtype are nanoseconds (written exactly); floating stamps are seconds.
    Either way they are written with 9 decimals. Positions and quaternions get 12 decimals, so
    a read back reproduces the matrices to about 1e-12. Quaternions are written with
    ``qw >= 0``.

    Args:
        path: the file (its folder is created).
        stamps: nanoseconds (int) or seconds (float). Shape: (N,).
        T: poses, rotation parts orthonormal. Shape: (N, 4, 4).

    Raises:
        ValueError: shapes do not match, or values are not finite.
    """
    stamps = np.asarray(stamps)
    T = np.asarray(T, dtype=np.float64)
    if T.ndim != 3 or T.shape[1:] != (4, 4):
        raise ValueError(f'poses must have shape (N, 4, 4), got {T.shape}')
    if stamps.shape != (T.shape[0],):
        raise ValueError(f'expected {T.shape[0]} stamps for {T.shape[0]} poses, got stamps of '
                         f'shape {stamps.shape}')
    if not np.all(np.isfinite(T)):
        raise ValueError('poses contain non-finite values')
    if np.issubdtype(stamps.dtype, np.integer):
        stamp_txt = [_format_ns(int(s)) for s in stamps]
    elif np.issubdtype(stamps.dtype, np.floating):
        if not np.all(np.isfinite(stamps)):
            raise ValueError('stamps contain non-finite values')
        stamp_txt = [f'{float(s):.9f}' for s in stamps]
    else:
        raise ValueError(f'stamps must be integer nanoseconds or float seconds, got dtype '
                         f'{stamps.dtype}')

    q = matrix_to_quat(T[:, :3, :3])  # (N, 4) xyzw
    p = T[:, :3, 3]  # (N, 3)
    lines = ['# timestamp tx ty tz qx qy qz qw']
    for s, pi, qi in zip(stamp_txt, p, q):
        nums = ' '.join(f'{v:.12f}' for v in (*pi, *qi))
        lines.append(f'{s} {nums}')
    atomic_write_text(path, '\n'.join(lines) + '\n')


def _format_ns(stamp_ns: int) -> str:
    """Nanoseconds as seconds with 9 decimals, exactly (no float rounding)."""
    sign = '-' if stamp_ns < 0 else ''
    sec, nsec = divmod(abs(stamp_ns), 1_000_000_000)
    return f'{sign}{sec}.{nsec:09d}'


INIT_MAX_DIFF_S = 0.1
"""Largest stamp difference (seconds) between the first frame and the pose it starts from."""


def initial_pose(ground_truth: Sequence[PoseSample], stamp_ns: int,
                 max_diff_s: float = INIT_MAX_DIFF_S) -> Optional[np.ndarray]:
    """The ground-truth pose nearest in time to ``stamp_ns`` (within ``max_diff_s``), else None.

    Shape: (4, 4).
    """
    if not ground_truth:
        return None
    stamps = np.array([p.stamp_ns for p in ground_truth], dtype=np.int64)
    i = int(np.argmin(np.abs(stamps - stamp_ns)))
    if abs(int(stamps[i]) - stamp_ns) > max_diff_s * 1e9:
        return None
    return np.asarray(ground_truth[i].T_world_body, dtype=np.float64).copy()
