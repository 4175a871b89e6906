# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The map posterior q(M): occupancy and colour fields on a voxel grid.

Occupancy is parameterised through a signed distance to the nearest surface along the viewing
direction: ``logit(x) = -slope * sdf(x)``, a TSDF-like ramp. Each voxel's q(sdf) is Gaussian with
mean ``sdf`` and std ``sdf_noise / sqrt(weight)``; given the poses of the fused frames, that is the
exact posterior under Gaussian signed-distance observations and a flat prior, so the map update is
closed form (the fast path of PRISM) and map uncertainty exists per cell. Unobserved voxels hold
``sdf = +truncation`` and ``weight = 0``: rays pass through them (free for rendering), while the
cost-to-go treats them as unknown.

Queries are trilinear (``grid_sample``), so both fields are defined at every point of R^3; outside
the grid space is free and unknown.
"""

from __future__ import annotations

import math
from typing import Dict, Tuple

import torch
import torch.nn.functional as F

from vssm_ros.config import MapConfig
from vssm_ros.errors import StateError


class VoxelMap:
    """Occupancy (via signed distance) and colour grids with per-voxel observation weights.

    Grids are stored as (1, C, Z, Y, X) so ``grid_sample`` reads them directly.
    """

    def __init__(self, cfg: MapConfig, device: torch.device, dtype: torch.dtype):
        self.cfg = cfg
        self.device = torch.device(device)
        self.dtype = dtype
        lo = torch.tensor(cfg.bounds_min, dtype=torch.float64)
        hi = torch.tensor(cfg.bounds_max, dtype=torch.float64)
        dims = torch.ceil((hi - lo) / cfg.resolution).long() + 1
        self.dims = tuple(int(d) for d in dims)  # (X, Y, Z)
        self.origin = lo.to(device=self.device, dtype=dtype)  # centre of voxel (0, 0, 0)
        self.resolution = float(cfg.resolution)
        x, y, z = self.dims
        self.sdf = torch.full((1, 1, z, y, x), cfg.truncation, device=self.device, dtype=dtype)
        self.weight = torch.zeros_like(self.sdf)
        self.color = torch.zeros((1, 3, z, y, x), device=self.device, dtype=dtype)
        self.color_weight = torch.zeros_like(self.sdf)
        # Maps world points to grid_sample's [-1, 1] coordinates (align_corners=True).
        self._scale = 2.0 / (self.resolution * (torch.tensor(self.dims, device=self.device,
                                                             dtype=dtype) - 1))

    # ------------------------------------------------------------------ queries

    def normalised(self, points: torch.Tensor) -> torch.Tensor:
        """World points to grid_sample coordinates. Shape: (..., 3) -> (..., 3)."""
        return (points - self.origin) * self._scale - 1.0

    def _sample(self, grid: torch.Tensor, points: torch.Tensor, pad: float) -> torch.Tensor:
        """Trilinear read of a (1, C, Z, Y, X) grid at points (N, 3), ``pad`` outside.

        Returns: Shape (N, C).
        """
        g = self.normalised(points).reshape(1, 1, 1, -1, 3)
        # Zero padding on (grid - pad) then adding pad back gives a constant outside value with
        # exact interpolation towards it at the border.
        out = F.grid_sample(grid - pad if pad else grid, g, mode='bilinear',
                            padding_mode='zeros', align_corners=True)
        out = out.reshape(grid.shape[1], -1).t()
        return out + pad if pad else out

    def sdf_at(self, points: torch.Tensor) -> torch.Tensor:
        """Posterior mean signed distance. Shape: (N, 3) -> (N,)."""
        return self._sample(self.sdf, points, self.cfg.truncation)[:, 0]

    def logits_at(self, points: torch.Tensor) -> torch.Tensor:
        """Posterior mean occupancy logits. Shape: (N, 3) -> (N,)."""
        return -self.cfg.logit_slope * self.sdf_at(points)

    def color_at(self, points: torch.Tensor) -> torch.Tensor:
        """Colour in [0, 1]. Shape: (N, 3) -> (N, 3)."""
        return self._sample(self.color, points, 0.0)

    def weight_at(self, points: torch.Tensor) -> torch.Tensor:
        """Accumulated observation weight (0: never observed). Shape: (N, 3) -> (N,)."""
        return self._sample(self.weight, points, 0.0)[:, 0]

    def logit_std(self) -> torch.Tensor:
        """Std of q(logit) per voxel (inf where unobserved). Shape: (1, 1, Z, Y, X)."""
        sdf_std = self.cfg.sdf_noise / self.weight.sqrt()
        return self.cfg.logit_slope * sdf_std

    def voxel_centres(self, index: torch.Tensor) -> torch.Tensor:
        """World coordinates of voxels given (N, 3) integer (x, y, z) indices. Shape: (N, 3)."""
        return self.origin + index.to(self.dtype) * self.resolution

    # ------------------------------------------------------------------ update

    def fuse(self, depth: torch.Tensor, rgb: torch.Tensor | None, K: torch.Tensor,
             T_world_cam: torch.Tensor, weight: float = 1.0) -> int:
        """Closed-form posterior update with one depth image (projective signed distances).

        Args:
            depth: metres, NaN invalid. Shape: (H, W).
            rgb: colour in [0, 1] or None. Shape: (H, W, 3).
            K: intrinsics. Shape: (3, 3).
            T_world_cam: camera pose. Shape: (4, 4).
            weight: weight of this observation.
        Returns:
            The number of voxels updated.
        """
        cfg = self.cfg
        h, w = depth.shape
        valid = torch.isfinite(depth)
        if not bool(valid.any()):
            return 0
        dmax = float(depth[valid].max()) + cfg.truncation
        lo, hi = self._frustum_box(K, T_world_cam, w, h, dmax)
        if lo is None:
            return 0
        xs, ys, zs = (torch.arange(lo[i], hi[i] + 1, device=self.device) for i in range(3))
        zz, yy, xx = torch.meshgrid(zs, ys, xs, indexing='ij')  # (z, y, x) order of the grid
        idx = torch.stack((xx, yy, zz), dim=-1).reshape(-1, 3)
        pts = self.voxel_centres(idx)
        R, t = T_world_cam[:3, :3], T_world_cam[:3, 3]
        pc = (pts - t) @ R  # camera frame. (N, 3)
        z = pc[:, 2]
        zs_safe = torch.where(z > 1e-6, z, torch.ones_like(z))
        u = torch.round(K[0, 0] * pc[:, 0] / zs_safe + K[0, 2]).long()
        v = torch.round(K[1, 1] * pc[:, 1] / zs_safe + K[1, 2]).long()
        inside = (z > 1e-6) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
        pix = torch.where(inside, v * w + u, torch.zeros_like(u))
        d = depth.reshape(-1)[pix]
        sdf = d - z  # projective signed distance along the optical axis
        upd = inside & torch.isfinite(d) & (sdf > -cfg.truncation)
        sdf = sdf.clamp(max=cfg.truncation)
        flat = ((idx[:, 2] * self.dims[1] + idx[:, 1]) * self.dims[0] + idx[:, 0])
        flat = flat[upd]
        sdf = sdf[upd]
        W_old = self.weight.view(-1)[flat]
        s_old = self.sdf.view(-1)[flat]
        W_new = W_old + weight
        self.sdf.view(-1)[flat] = (s_old * W_old + sdf * weight) / W_new
        self.weight.view(-1)[flat] = W_new.clamp(max=cfg.max_weight)
        if rgb is not None:
            near = sdf.abs() < 0.5 * cfg.truncation
            cflat = flat[near]
            col = rgb.reshape(-1, 3)[pix[upd][near]]
            cw_old = self.color_weight.view(-1)[cflat]
            cw_new = cw_old + weight
            cview = self.color.view(3, -1)
            cview[:, cflat] = ((cview[:, cflat] * cw_old + col.t() * weight) / cw_new)
            self.color_weight.view(-1)[cflat] = cw_new.clamp(max=cfg.max_weight)
        return int(flat.numel())

    def _frustum_box(self, K: torch.Tensor, T_world_cam: torch.Tensor, w: int, h: int,
                     dmax: float) -> Tuple:
        """Integer voxel index box (inclusive) covering the camera frustum up to dmax."""
        corners = torch.tensor([[0, 0], [w, 0], [0, h], [w, h]], dtype=self.dtype,
                               device=self.device)
        rays = torch.stack(((corners[:, 0] - K[0, 2]) / K[0, 0],
                            (corners[:, 1] - K[1, 2]) / K[1, 1],
                            torch.ones(4, dtype=self.dtype, device=self.device)), dim=-1)
        pts = torch.cat((rays * dmax, torch.zeros(1, 3, dtype=self.dtype, device=self.device)))
        pw = pts @ T_world_cam[:3, :3].t() + T_world_cam[:3, 3]
        lo = torch.floor((pw.min(0).values - self.origin) / self.resolution).long()
        hi = torch.ceil((pw.max(0).values - self.origin) / self.resolution).long()
        dims = torch.tensor(self.dims, device=self.device)
        lo = lo.clamp(min=0)
        hi = torch.minimum(hi, dims - 1)
        if bool((hi < lo).any()):
            return None, None
        return lo.tolist(), hi.tolist()

    # ------------------------------------------------------------------ export

    def surface_points(self, min_weight: float = 1.0) -> Dict[str, torch.Tensor]:
        """Voxels near the surface (|sdf| < half a voxel + a margin), as a point cloud.

        Returns: dict with ``xyz`` (N, 3), ``rgb`` (N, 3) in [0, 1], ``occupancy`` (N,)
        probability, ``logit_std`` (N,).
        """
        cfg = self.cfg
        band = 0.75 * self.resolution
        mask = (self.weight >= min_weight) & (self.sdf.abs() < band)
        idx_zyx = mask[0, 0].nonzero()
        idx = idx_zyx.flip(-1)
        flat = (idx_zyx[:, 0] * self.dims[1] + idx_zyx[:, 1]) * self.dims[0] + idx_zyx[:, 2]
        sdf = self.sdf.view(-1)[flat]
        weight = self.weight.view(-1)[flat]
        logit = -cfg.logit_slope * sdf
        return {
            'xyz': self.voxel_centres(idx),
            'rgb': self.color.view(3, -1)[:, flat].t().clamp(0, 1),
            'occupancy': torch.sigmoid(logit),
            'logit_std': cfg.logit_slope * cfg.sdf_noise / weight.sqrt(),
        }

    def state_dict(self) -> Dict[str, torch.Tensor]:
        """The grids (everything needed to restore the map)."""
        return {'sdf': self.sdf, 'weight': self.weight, 'color': self.color,
                'color_weight': self.color_weight}

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        """Restore grids saved by ``state_dict`` (shapes must match this config)."""
        for name, cur in self.state_dict().items():
            new = state[name]
            if tuple(new.shape) != tuple(cur.shape):
                raise StateError(f'map grid {name!r} has shape {tuple(new.shape)}, '
                                 f'the config gives {tuple(cur.shape)}')
            cur.copy_(new.to(device=cur.device, dtype=cur.dtype))

    def reset(self) -> None:
        """Forget everything."""
        self.sdf.fill_(self.cfg.truncation)
        self.weight.zero_()
        self.color.zero_()
        self.color_weight.zero_()


def num_voxels(cfg: MapConfig) -> int:
    """Voxel count of a map config (for memory estimates)."""
    n = 1
    for a, b in zip(cfg.bounds_min, cfg.bounds_max):
        n *= int(math.ceil((b - a) / cfg.resolution)) + 1
    return n
