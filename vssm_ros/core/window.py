# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Sliding-window refinement: the states of the last few frames jointly, the map fixed.

The window is ``z_0 .. z_{W-1}``. Its objective is the negative log joint of what the window
sees, the map held fixed (DESIGN section 2, online inference, step 3):

    E = 1/2 |z_0 ⊟ z_0^filt|²_{P_0^-1}                        (everything before: q(z_0))
      + sum_k 1/2 |z_k+1 ⊟ f(z_k, u_k)|²_{Q_k^-1}             (transition)
      + sum_{k>=1} 1/2 sum_i rho((d_ik - E[d_ik | z_k, M]) / sigma_ik)   (rays)

``z_0^filt, P_0`` is the oldest state's filtered posterior, which already holds its own rays, so
they are not counted again. Gauss-Newton on the stacked tangent errors of the W states
(``state_layout.DIM`` each, biases included: the transitions tie them to the motion, the rays
touch the pose only); the posterior of each state is its block of ``H^-1`` (Laplace). In a
linear-Gaussian model the newest state's smoothed posterior equals the filtered one: what the
window buys is the OLDER states, seen again with the frames after them (and
relinearisation). The engine refines before a keyframe
is fused, with the keyframe oldest, so the map is built from smoothed poses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import torch

from vssm_ros.config import RenderConfig, SensorConfig
from vssm_ros.core import lie
from vssm_ros.core.dynamics import GaussianState
from vssm_ros.core.posterior import RayBatch, clamp_step, linearise, normal_equations
from vssm_ros.core.state_layout import DIM, KIN, POSE, block

Transition = Callable[[GaussianState], Tuple[GaussianState, torch.Tensor]]
"""The transition from the previous frame: state -> (predicted state whose ``cov`` is the
process noise Q, Jacobian F (15, 15)), e.g. ``dynamics.imu_transition`` with its samples bound."""


@dataclass
class WindowFrame:
    """One frame of the window.

    Attributes:
        stamp_ns: image stamp.
        filtered: the state's posterior from tracking (past information only).
        rays: rays kept for refinement (a subset of those tracked).
        transition: the transition from the previous frame; None for the oldest.
    """

    stamp_ns: int
    filtered: GaussianState
    rays: RayBatch
    transition: Optional[Transition]


def refine_window(field, frames: List[WindowFrame], iters: int, rcfg: RenderConfig,
                  scfg: SensorConfig, info_scale: float, max_step_t: float,
                  max_step_r_deg: float, refresh: bool = True) -> List[GaussianState]:
    """Jointly refine the window's states (map fixed).

    Args:
        frames: oldest first; every frame but the first has a transition.
        iters: Gauss-Newton iterations.
        refresh: linearise once more at the refined states for their covariance; False: the
            covariance is the last iteration's (one pass over the window's rays fewer).
        info_scale: scale on the rays' information (``SensorConfig.ray_info_scale``).
        max_step_t, max_step_r_deg: clamp on each state's step (metres, degrees).
    Returns:
        The refined posteriors, oldest first, each with its marginal covariance. Shape of each
        ``cov``: (15, 15).
    """
    W = len(frames)
    dev, dtype = frames[0].filtered.p.device, frames[0].filtered.p.dtype
    # The DIM*W system is small, and transition information (1/Q ~ 1e7 for 50 ms of IMU) next to
    # ray information needs double precision.
    f64 = torch.float64
    states = [f.filtered.clone() for f in frames]
    P0_inv = torch.linalg.inv(frames[0].filtered.cov.to(f64))
    eye = torch.eye(DIM, device=dev, dtype=f64)
    Q_inv: List[torch.Tensor] = []
    A: List[torch.Tensor] = []
    H = None
    for it in range(iters + 1):
        H = torch.zeros(DIM * W, DIM * W, device=dev, dtype=f64)
        b = torch.zeros(DIM * W, device=dev, dtype=f64)
        s0 = block(0)
        H[s0, s0] += P0_inv
        b[s0] += P0_inv @ states[0].boxminus(frames[0].filtered).to(f64)
        for k in range(1, W):
            pred, F = frames[k].transition(states[k - 1])
            if it == 0:
                # Q and F stay at the filtered states: steps between frames are close to
                # linear. The floor on Q keeps a single held IMU sample (rank-deficient δp/δv
                # noise) invertible; the biases' random walk is never zero (MotionConfig).
                Q = pred.cov.to(f64).clone()
                Q[KIN, KIN] += 1e-10 * eye[KIN, KIN]
                Q_inv.append(torch.linalg.inv(Q))
                A.append(F.to(f64))
            e = states[k].boxminus(pred).to(f64)
            J = torch.cat((-A[k - 1], eye), dim=1)  # d e / d (δz_k-1, δz_k)
            s = slice(block(k - 1).start, block(k).stop)
            H[s, s] += J.t() @ Q_inv[k - 1] @ J
            b[s] += J.t() @ (Q_inv[k - 1] @ e)
            lin = linearise(field, frames[k].rays, states[k].R, states[k].p, rcfg, scfg)
            JtJ, Jtr = normal_equations(lin, info_scale, f64)
            pose = block(k, POSE)
            H[pose, pose] += JtJ
            b[pose] += Jtr
        if it == iters:
            break
        H_d = H + 1e-6 * torch.diag(torch.diagonal(H))
        delta = clamp_step(-torch.linalg.solve(H_d, b).reshape(W, DIM), max_step_t,
                           max_step_r_deg).to(dtype)
        states = [s.boxplus(d) for s, d in zip(states, delta)]
        if not refresh and it == iters - 1:
            break
    cov = torch.linalg.inv(H)
    out = []
    for k, s in enumerate(states):
        c = cov[block(k), block(k)]
        s.cov = (0.5 * (c + c.t())).to(dtype)
        s.R = lie.orthonormalize(s.R)
        out.append(s)
    return out
