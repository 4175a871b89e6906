# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""SO(3) of one rotation in Python floats: ``core.lie``'s path for a single CPU tensor.

The engine's per-frame state arithmetic (``GaussianState.boxplus`` / ``boxminus``, the
angular rate, the drift test) works on one 3x3 rotation at a time. In torch each of those
functions is 50-80 ops on nine numbers, a few microseconds of dispatch each: ``so3_log`` took
260 us, ``orthonormalize`` 300 us and ``boxplus`` 470 us on the 2-core CPU, about 5 ms of a
40 ms frame. On the CPU a tensor's values are read without a device sync, so ``core.lie``
computes single rotations here, in double precision, with the same formulas, regimes and
thresholds as its batched torch path (tested against it), and returns a tensor of the input's
dtype. Batches, GPU tensors and tensors that need gradients keep the torch path.

Rotations are row-major nested lists ``[[r00, r01, r02], ...]``; vectors are 3-lists.
"""

from __future__ import annotations

import math
from typing import List, Sequence

Vec = List[float]
Mat = List[List[float]]


def so3_exp(w: Sequence[float], small_angle2: float) -> Mat:
    """Rodrigues' formula ``I + A hat(w) + B hat(w)²`` with ``core.lie.so3_coeffs``'s A, B
    (their series below ``small_angle2``)."""
    x, y, z = w
    t2 = x * x + y * y + z * z
    if t2 < small_angle2:
        a = 1.0 - t2 / 6.0 + t2 * t2 / 120.0
        b = 0.5 - t2 / 24.0 + t2 * t2 / 720.0
    else:
        t = math.sqrt(t2)
        h = math.sin(0.5 * t)
        a = math.sin(t) / t
        b = 2.0 * h * h / t2
    # hat(w)² = w wᵀ - |w|² I
    return [[1.0 + b * (x * x - t2), -a * z + b * x * y, a * y + b * x * z],
            [a * z + b * x * y, 1.0 + b * (y * y - t2), -a * x + b * y * z],
            [-a * y + b * x * z, a * x + b * y * z, 1.0 + b * (z * z - t2)]]


def so3_log(R: Mat, small_angle2: float, near_pi_cos: float, tiny: float) -> Vec:
    """``core.lie.so3_log``'s three regimes: the skew part times a series near 0, times
    theta / sin(theta) in general, the symmetric part's dominant column near pi."""
    s = [0.5 * (R[2][1] - R[1][2]), 0.5 * (R[0][2] - R[2][0]), 0.5 * (R[1][0] - R[0][1])]
    s2 = s[0] * s[0] + s[1] * s[1] + s[2] * s[2]
    cos = min(1.0, max(-1.0, (R[0][0] + R[1][1] + R[2][2] - 1.0) * 0.5))
    near_pi = cos < near_pi_cos
    if s2 < small_angle2 and not near_pi:
        k = 1.0 + s2 / 6.0 + 0.075 * s2 * s2
        return [v * k for v in s]
    sin = math.sqrt(max(s2, tiny))
    theta = math.atan2(sin, cos)
    if not near_pi:
        return [v * (theta / sin) for v in s]
    sym = [[0.5 * (R[i][j] + R[j][i]) - (cos if i == j else 0.0) for j in range(3)]
           for i in range(3)]
    k = max(range(3), key=lambda i: sym[i][i])   # the first of equal maxima, as argmax
    col = [sym[i][k] for i in range(3)]
    norm = math.sqrt(max(col[0] * col[0] + col[1] * col[1] + col[2] * col[2], tiny))
    sign = -1.0 if (col[0] * s[0] + col[1] * s[1] + col[2] * s[2]) / norm < 0 else 1.0
    return [c / norm * sign * theta for c in col]


def orthonormalize(R: Mat, iters: int, tiny: float) -> Mat:
    """``core.lie.orthonormalize``'s scaled Newton iteration towards the polar factor."""
    X = [list(row) for row in R]
    for _ in range(iters):
        c0 = [X[0][0], X[1][0], X[2][0]]
        c1 = [X[0][1], X[1][1], X[2][1]]
        c2 = [X[0][2], X[1][2], X[2][2]]
        cof = (_cross(c1, c2), _cross(c2, c0), _cross(c0, c1))   # columns of cof(X)
        det = c0[0] * cof[0][0] + c0[1] * cof[0][1] + c0[2] * cof[0][2]
        g = max(abs(det), tiny) ** (-1.0 / 3.0)
        X = [[0.5 * (g * X[i][j] + cof[j][i] / (g * det)) for j in range(3)]
             for i in range(3)]
    return X


def _cross(a: Vec, b: Vec) -> Vec:
    return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
