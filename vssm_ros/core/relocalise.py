# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Relocalisation: find the pose of a frame against the map when tracking has lost it.

A search over candidate poses, then verification by the likelihood (the way dense systems
recover, e.g. KinectFusion's and ElasticFusion's pose graph-free relocalisers, but against our
map's signed distance instead of keyframe images):

1. Candidates: a grid of positions and yaws around each centre (the pose coasted on the IMU
   and the most recent keyframes). Roll and pitch are kept: the IMU's gravity keeps them.
2. Score: a subset of the frame's observed points moved by each candidate pose, counted as
   inliers where the map has been observed and its signed distance there is within ``tol``
   of zero (a point-to-surface test, one map query per point; no rendering).
3. The best candidates are refined by Gauss-Newton tracking from each (``posterior.track``,
   the prior centred on the candidate with a wide covariance) and the refined pose with the
   most inliers is returned; the caller verifies it with the health tests.
4. Among the verified ones the coasted prior decides (``choose_candidate``).
"""

from __future__ import annotations

import math
from typing import Any, List, Optional, Tuple

import torch

from vssm_ros.core.lie import so3_log


def yaw_rotations(yaws: torch.Tensor) -> torch.Tensor:
    """Rotations about the world z axis. Shape: (Y,) -> (Y, 3, 3)."""
    c, s = torch.cos(yaws), torch.sin(yaws)
    z, o = torch.zeros_like(yaws), torch.ones_like(yaws)
    return torch.stack((torch.stack((c, -s, z), -1), torch.stack((s, c, z), -1),
                        torch.stack((z, z, o), -1)), -2)


def candidate_poses(centres: List[Tuple[torch.Tensor, torch.Tensor]], radius: float,
                    yaw_deg: float, n_xy: int = 5, n_z: int = 3, n_yaw: int = 7
                    ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Grids of poses around each centre: positions offset on an ``n_xy x n_xy x n_z`` grid
    spanning ``±radius`` (``±radius / 2`` in height), each turned by ``n_yaw`` yaws in
    ``±yaw_deg`` about the world z axis through the centre's position. The centres themselves
    come first.

    Args:
        centres: ``(R (3, 3), p (3,))`` pairs, world <- body.
    Returns:
        ``R`` (C, 3, 3), ``p`` (C, 3).
    """
    R0 = centres[0][0]
    dev, dt = R0.device, R0.dtype
    lin = torch.linspace(-radius, radius, n_xy, device=dev, dtype=dt)
    lz = torch.linspace(-radius / 2, radius / 2, n_z, device=dev, dtype=dt)
    off = torch.stack(torch.meshgrid(lin, lin, lz, indexing='ij'), -1).reshape(-1, 3)
    yaws = torch.linspace(-math.radians(yaw_deg), math.radians(yaw_deg), n_yaw, device=dev,
                          dtype=dt)
    Rz = yaw_rotations(yaws)  # (Y, 3, 3)
    Rs, ps = [torch.stack([R for R, _ in centres])], [torch.stack([p for _, p in centres])]
    for R, p in centres:
        Rs.append((Rz @ R).repeat(off.shape[0], 1, 1))
        ps.append((p + off).repeat_interleave(Rz.shape[0], dim=0))
    return torch.cat(Rs), torch.cat(ps)


@torch.no_grad()
def score_poses(field, q_obs: torch.Tensor, R: torch.Tensor, p: torch.Tensor, tol: float,
                chunk: int = 65536) -> torch.Tensor:
    """Inliers of each candidate pose: observed points that land on an observed surface of
    the map (``|sdf| < tol`` where the map's weight is positive).

    Args:
        field: the map (``sdf_at``, ``weight_at``).
        q_obs: observed points in the body frame. Shape: (N, 3).
        R, p: candidate poses, world <- body. Shape: (C, 3, 3), (C, 3).
    Returns:
        Inlier counts. Shape: (C,).
    """
    x = (q_obs[None] @ R.transpose(-1, -2) + p[:, None, :]).reshape(-1, 3)  # (C N, 3)
    hits = []
    for s in range(0, x.shape[0], chunk):
        xs = x[s:s + chunk]
        ok = (field.weight_at(xs) > 0) & (field.sdf_at(xs).abs() < tol)
        hits.append(ok)
    return torch.cat(hits).reshape(R.shape[0], -1).sum(dim=1)


RELOC_TIE = 0.02
"""Relocalisation candidates whose inlier fractions differ by less than this fit the image
equally well."""
RELOC_PRIOR_CHI2 = 11.34
"""Chi-square (3 dof, 99 %) of a position inside the coasted prior's region."""


def choose_candidate(found: List[Tuple[Any, Any, Any]], p_prior: torch.Tensor,
                     cov_prior: torch.Tensor, min_apart_m: float, min_apart_rad: float
                     ) -> Optional[Tuple[Any, Any, Any]]:
    """The verified relocalisation to take among ``found`` (``(state, track result,
    signals)``, with ``state.R``, ``state.p`` and ``signals.inlier_fraction``), or None when
    the choice would be a guess.

    The coasted prior comes first: the IMU says where the body can be, with a covariance that
    grew while it coasted, and a flat wall or a floor fits a pose shifted along it as well as
    the true one. So the candidates inside the prior's 99 % region are the choice when there
    are any (all of them otherwise), and the one that fits the image best is taken, unless
    another one of the choice that lies apart fits about as well (``RELOC_TIE``: repetitive
    structure, or a prior too wide to tell): then do not guess.

    Args:
        p_prior, cov_prior: the coasted position and its covariance. Shape: (3,), (3, 3).
        min_apart_m, min_apart_rad: candidates farther apart than this are different places.
    """
    cov = cov_prior.to(torch.float64)

    def inside(f) -> bool:
        e = (f[0].p - p_prior).to(torch.float64)
        return float(e @ torch.linalg.solve(cov, e)) <= RELOC_PRIOR_CHI2

    pool = [f for f in found if inside(f)] or found
    if not pool:
        return None
    top = max(pool, key=lambda f: f[2].inlier_fraction)
    for other in pool:
        apart = float(torch.linalg.norm(other[0].p - top[0].p)) > min_apart_m or float(
            torch.linalg.norm(so3_log(top[0].R.t() @ other[0].R))) > min_apart_rad
        if apart and other[2].inlier_fraction > top[2].inlier_fraction - RELOC_TIE:
            return None
    return top
