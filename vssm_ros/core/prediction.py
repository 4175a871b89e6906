# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Prediction ahead: future trajectories sampled from the current posterior, and the statistics
of the images rendered along them (DESIGN §2, prediction and planning support).

A sample starts from a state drawn from the posterior q(z_t) = N(mean, cov) and follows the
transition with its process noise: the learned or engineered IMU transition driven by given (or
held) controls corrected by the sample's IMU biases (drawn with the state, constant over the
horizon: their random walk is negligible over a few seconds), or, without any IMU, the
constant-velocity model (velocity and angular velocity random walks with the configured
densities; the biases play no part).

Rendered depth over S samples: a pixel is valid where at least ``min_hit_fraction`` of the
samples hit a surface; its mean is the mean over those, its std combines the spread over the
samples (where the drone may be) with the mean of the map's own predictive variance (what the
sensor would read from a known pose): ``std² = Var_s[d] + E_s[std_map²]``.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np
import torch

from vssm_ros.core import lie
from vssm_ros.core.dynamics import GaussianState
from vssm_ros.core.learned_dynamics import LearnedDynamics, so3_exp_step
from vssm_ros.core.state_layout import KIN, P, PHI, V

Tensor = torch.Tensor


def sample_imu_rollouts(state: GaussianState, transition: LearnedDynamics, controls: Tensor,
                        dt: float, n_samples: int, generator: Optional[torch.Generator] = None,
                        offset_std: Sequence[float] = (0.0, 0.0), residual: bool = True
                        ) -> Dict[str, Tensor]:
    """Sampled rollouts of an IMU-driven transition from a state posterior.

    Args:
        controls: raw ``(acc, gyro)`` IMU samples, body frame, one row per step: each rollout
            subtracts its sampled biases. Shape: (N, 6).
        dt: step (seconds).
        residual: False: the transition's f_T with its initial noise (the engineered model).
    Returns:
        ``R`` (S, N, 3, 3), ``p`` (S, N, 3), ``v`` (S, N, 3) after each step.
    """
    return transition.sample(state.R, state.p, state.v, state.cov, controls, dt, n_samples,
                             generator=generator, offset_std=offset_std, residual=residual,
                             b_a=state.b_a, b_g=state.b_g)


def sample_constant_velocity(state: GaussianState, n_steps: int, dt: float, n_samples: int,
                             acc_noise: float, gyro_noise: float,
                             generator: Optional[torch.Generator] = None) -> Dict[str, Tensor]:
    """Sampled constant-velocity rollouts: white linear and angular accelerations with densities
    ``acc_noise`` (m/s²/√Hz, world) and ``gyro_noise`` (rad/s²/√Hz, body) integrate into the
    velocity and the angular velocity (``state.omega``, body).

    Returns: ``R`` (S, N, 3, 3), ``p`` (S, N, 3), ``v`` (S, N, 3) after each step.
    """
    dev, dty = state.p.device, state.p.dtype
    cov = state.cov[KIN, KIN]  # the marginal of (δp, δφ, δv): the biases play no part
    L = torch.linalg.cholesky(0.5 * (cov + cov.t())
                              + 1e-12 * torch.eye(9, dtype=dty, device=dev))
    d0 = torch.randn(n_samples, 9, generator=generator, dtype=dty, device=dev) @ L.t()
    R = state.R @ lie.so3_exp(d0[:, PHI])
    p = state.p + d0[:, P]
    v = state.v + d0[:, V]
    w = state.omega.expand(n_samples, 3)
    eps = torch.randn(n_steps, n_samples, 6, generator=generator, dtype=dty, device=dev)
    sa, sg = acc_noise * dt ** 0.5, gyro_noise * dt ** 0.5   # random-walk increments
    Rs, ps, vs = [], [], []
    for k in range(n_steps):
        p = p + v * dt
        v = v + sa * eps[k, :, :3]
        R = R @ so3_exp_step(w * dt)
        w = w + sg * eps[k, :, 3:]
        Rs.append(R)
        ps.append(p)
        vs.append(v)
    return {'R': torch.stack(Rs, dim=1), 'p': torch.stack(ps, dim=1),
            'v': torch.stack(vs, dim=1)}


def combine_renders(depth: np.ndarray, depth_std: np.ndarray, color: np.ndarray,
                    min_hit_fraction: float) -> Dict[str, np.ndarray]:
    """Per-pixel statistics of the images rendered from S sampled poses.

    Args:
        depth: rendered depth, NaN where nothing is hit. Shape: (S, H, W).
        depth_std: the map's predictive depth std per render. Shape: (S, H, W).
        color: rendered colour. Shape: (S, H, W, 3) uint8.
        min_hit_fraction: pixels hit by fewer samples than this fraction are NaN.

    Returns:
        ``depth`` (H, W) mean, ``depth_std`` (H, W), ``color`` (H, W, 3) uint8 mean,
        ``hit_fraction`` (H, W).
    """
    hit = np.isfinite(depth)
    n_hit = hit.sum(axis=0)
    frac = n_hit / depth.shape[0]
    valid = (frac >= min_hit_fraction) & (n_hit > 0)
    safe_n = np.maximum(n_hit, 1)
    d = np.where(hit, depth, 0.0)
    mean = d.sum(axis=0) / safe_n
    var_s = (np.where(hit, depth - mean, 0.0) ** 2).sum(axis=0) / safe_n
    var_map = np.where(hit, np.nan_to_num(depth_std) ** 2, 0.0).sum(axis=0) / safe_n
    nan = np.float32(np.nan)
    col = color.astype(np.float64).mean(axis=0)
    return {'depth': np.where(valid, mean, nan).astype(np.float32),
            'depth_std': np.where(valid, np.sqrt(var_s + var_map), nan).astype(np.float32),
            'color': np.clip(col + 0.5, 0, 255).astype(np.uint8),
            'hit_fraction': frac.astype(np.float32)}
