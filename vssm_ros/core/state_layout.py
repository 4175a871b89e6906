# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Layout of the state's tangent-space error vector (DESIGN §2: z = (p, R, v, b_a, b_g)).

A state's posterior is a mean on the manifold and a covariance of the error

    δz = (δp, δφ, δv, δb_a, δb_g)    Shape: (DIM,) = (15,)

with ``δp``, ``δv`` in the world frame, ``δφ`` the right perturbation ``R Exp(δφ)`` (body frame)
and the IMU biases' errors in the body frame. Code indexes it by these names, never by literals::

    cov[POSE, POSE]       # the 6x6 pose block
    delta[BA]             # the accelerometer bias step
    H[k * DIM + V]        # velocity rows of state k in a window's stacked system (use ``block``)
"""

from __future__ import annotations

P = slice(0, 3)
"""Position error δp (world, metres)."""
PHI = slice(3, 6)
"""Rotation error δφ (body, right perturbation, radians)."""
V = slice(6, 9)
"""Velocity error δv (world, m/s)."""
BA = slice(9, 12)
"""Accelerometer bias error δb_a (body, m/s²)."""
BG = slice(12, 15)
"""Gyroscope bias error δb_g (body, rad/s)."""
POSE = slice(0, 6)
"""(δp, δφ): what the vision terms observe directly."""
KIN = slice(0, 9)
"""(δp, δφ, δv): the kinematic part, the error of the IMU preintegration's (9, 9) noise."""
BIAS = slice(9, 15)
"""(δb_a, δb_g)."""
DIM = 15
"""Length of the error vector."""


def block(k: int, part: slice = slice(0, DIM)) -> slice:
    """The indices of ``part`` of state ``k`` in a vector that stacks states (a window's
    ``DIM * W`` system), e.g. ``H[block(k, POSE), block(k, POSE)]``."""
    return slice(k * DIM + part.start, k * DIM + part.stop)
