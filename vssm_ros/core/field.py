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
the grid space is free and unknown. The signed-distance query averages over the observed corners
of a cell only (``MapConfig.observed_floor``): a surface at the edge of a fused view would
otherwise be pulled deeper by the free space assumed just beyond it.
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

    Grids are stored as (1, C, Z, Y, X) so ``grid_sample`` reads them directly. The signed
    distance is stored shifted by ``-truncation`` so that unobserved space is 0 and a query pads
    with 0 outside the grid without touching the whole grid.
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
        # Channel 0: shifted signed distance; channel 1: 1 where observed (for the
        # weight-normalised query).
        self._dist_seen = torch.zeros((1, 2, z, y, x), device=self.device, dtype=dtype)
        self._dist = self._dist_seen[:, 0:1]
        self._seen = self._dist_seen[:, 1:2]
        self.weight = torch.zeros_like(self._dist)
        # Channels 0-2: colour; channel 3: 1 where colour was observed (normalised queries).
        self._color_seen = torch.zeros((1, 4, z, y, x), device=self.device, dtype=dtype)
        self.color = self._color_seen[:, :3]
        self._color_obs = self._color_seen[:, 3:]
        self.color_weight = torch.zeros_like(self._dist)
        # Pose uncertainty the map was fused with, on a coarse grid (it varies slowly):
        # weighted sums of (position, rotation) variance and the weights.
        self.anchor_factor = max(1, int(round(cfg.anchor_cell / self.resolution)))
        cdims = [-(-d // self.anchor_factor) for d in self.dims]  # ceil
        self.anchor_dims = tuple(cdims)
        self.anchor_sum = torch.zeros((2, cdims[2] * cdims[1] * cdims[0]), device=self.device,
                                      dtype=dtype)
        self.anchor_weight = torch.zeros(cdims[2] * cdims[1] * cdims[0], device=self.device,
                                         dtype=dtype)
        # Maps world points to grid_sample's [-1, 1] coordinates (align_corners=True).
        self._scale = 2.0 / (self.resolution * (torch.tensor(self.dims, device=self.device,
                                                             dtype=dtype) - 1))

    # ------------------------------------------------------------------ queries

    @property
    def sdf(self) -> torch.Tensor:
        """Posterior mean signed distance per voxel (a new tensor). Shape: (1, 1, Z, Y, X)."""
        return self._dist + self.cfg.truncation

    def normalised(self, points: torch.Tensor) -> torch.Tensor:
        """World points to grid_sample coordinates. Shape: (..., 3) -> (..., 3)."""
        return (points - self.origin) * self._scale - 1.0

    def _sample(self, grid: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Trilinear read of a (1, C, Z, Y, X) grid at points (N, 3), 0 outside.

        Returns: Shape (N, C).
        """
        g = self.normalised(points).reshape(1, 1, 1, -1, 3)
        out = F.grid_sample(grid, g, mode='bilinear', padding_mode='zeros', align_corners=True)
        return out.reshape(grid.shape[1], -1).t()

    def sdf_at(self, points: torch.Tensor) -> torch.Tensor:
        """Posterior mean signed distance, interpolated over the observed corners of each
        point's cell (``MapConfig.observed_floor``). Shape: (N, 3) -> (N,).
        """
        floor = self.cfg.observed_floor
        if floor >= 1.0:
            return self._sample(self._dist, points)[:, 0] + self.cfg.truncation
        # Unobserved corners hold 0 in the shifted grid.
        return self._sample_observed(self._dist_seen, points, floor)[0][:, 0] + self.cfg.truncation

    def logits_at(self, points: torch.Tensor) -> torch.Tensor:
        """Posterior mean occupancy logits. Shape: (N, 3) -> (N,)."""
        return -self.cfg.logit_slope * self.sdf_at(points)

    def color_at(self, points: torch.Tensor) -> torch.Tensor:
        """Colour in [0, 1], interpolated over the corners whose colour was observed (0
        where none was). Shape: (N, 3) -> (N, 3)."""
        return self.color_and_share(points)[0]

    def color_and_share(self, points: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Colour interpolated over the colour-observed corners of each point's cell, and
        those corners' share of the trilinear weight (1: all observed).

        Returns:
            colour (N, 3) in [0, 1] and share (N,) in [0, 1].
        """
        return self._sample_observed(self._color_seen, points, 1e-6)

    def _sample_observed(self, grid: torch.Tensor, points: torch.Tensor, floor: float
                         ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Trilinear read over the observed corners only, of a grid whose last channel flags
        observed voxels and whose other channels hold 0 where unobserved: the plain sample is
        then the observed corners' weighted sum, and dividing by their weight share (clamped
        below at ``floor``) normalises it.

        Returns:
            values (N, C - 1) and the observed share (N,).
        """
        out = self._sample(grid, points)
        share = out[:, -1]
        return out[:, :-1] / share.clamp(min=floor)[:, None], share

    def weight_at(self, points: torch.Tensor) -> torch.Tensor:
        """Accumulated observation weight (0: never observed). Shape: (N, 3) -> (N,)."""
        return self._sample(self.weight, points)[:, 0]

    def _anchor_cells(self, vox: torch.Tensor) -> torch.Tensor:
        """Flat coarse-cell index of (N, 3) integer (x, y, z) voxel indices. Shape: (N,)."""
        c = torch.div(vox, self.anchor_factor, rounding_mode='floor')
        X, Y, _ = self.anchor_dims
        return (c[:, 2] * Y + c[:, 1]) * X + c[:, 0]

    def anchor_at(self, points: torch.Tensor) -> torch.Tensor:
        """Position and rotation variance (m², rad²) of the poses that fused the map near each
        point, weighted by their observation weights; NaN where nothing was fused.

        Shape: (N, 3) -> (N, 2).
        """
        vox = torch.round((points - self.origin) / self.resolution).long()
        dims = torch.tensor(self.dims, device=self.device)
        inside = ((vox >= 0) & (vox < dims)).all(dim=-1)
        cell = self._anchor_cells(torch.where(inside[:, None], vox, torch.zeros_like(vox)))
        w = torch.where(inside, self.anchor_weight[cell], torch.zeros_like(cell, dtype=self.dtype))
        var = self.anchor_sum[:, cell].t() / w.clamp(min=1e-12)[:, None]
        return torch.where((w > 0)[:, None], var, torch.full_like(var, float('nan')))

    def voxel_centres(self, index: torch.Tensor) -> torch.Tensor:
        """World coordinates of voxels given (N, 3) integer (x, y, z) indices. Shape: (N, 3)."""
        return self.origin + index.to(self.dtype) * self.resolution

    # ------------------------------------------------------------------ update

    def fuse(self, depth: torch.Tensor, rgb: torch.Tensor | None, K: torch.Tensor,
             T_world_cam: torch.Tensor, depth_sigma: torch.Tensor | None = None,
             max_pixels: int = 20000, pose_var: torch.Tensor | None = None) -> int:
        """Closed-form posterior update with one depth image (projective signed distances).

        Candidate voxels are those met by samples along the pixels' rays from ``2 truncation``
        in front of the observed depth to ``truncation`` behind it, and their 26 neighbours
        (space further in front keeps its value: free unless observed otherwise, the grid's
        initial value). Each candidate's signed distance is then computed exactly by projecting
        its centre into the image, with bilinear depth where the four neighbours agree.

        Args:
            depth: metres, NaN invalid. Shape: (H, W).
            rgb: colour in [0, 1] or None. Shape: (H, W, 3).
            K: intrinsics. Shape: (3, 3).
            T_world_cam: camera pose. Shape: (4, 4).
            depth_sigma: depth noise std per pixel; the observation weight is
                ``(sdf_noise / sigma)²`` capped at 1 (None: weight 1). Shape: (H, W).
            max_pixels: rays used to find candidate voxels (a regular subset beyond this).
            pose_var: position and rotation variance (m², rad²) of the camera pose in the
                world, remembered by the anchor cells of the updated voxels. Shape: (2,).
        Returns:
            The number of voxels updated.
        """
        cfg = self.cfg
        h, w = depth.shape
        dev, dt = self.device, self.dtype
        # 1. candidate voxels from samples along a subset of rays
        stride = max(1, int(math.ceil(math.sqrt(h * w / max_pixels))))
        d_sub = depth[::stride, ::stride]
        vv, uu = torch.meshgrid(torch.arange(0, h, stride, device=dev, dtype=dt),
                                torch.arange(0, w, stride, device=dev, dtype=dt), indexing='ij')
        ok = torch.isfinite(d_sub)
        if not bool(ok.any()):
            return 0
        d_ok = d_sub[ok]
        dirs = torch.stack(((uu[ok] - K[0, 2]) / K[0, 0], (vv[ok] - K[1, 2]) / K[1, 1],
                            torch.ones_like(d_ok)), dim=-1)  # (P, 3)
        offs = torch.arange(-2 * cfg.truncation, cfg.truncation + 1e-9, 0.5 * self.resolution,
                            device=dev, dtype=dt)  # (S,)
        z = (d_ok[:, None] + offs).clamp(min=1e-3)  # (P, S)
        pts = (dirs[:, None, :] * z[..., None]).reshape(-1, 3)
        pts = pts @ T_world_cam[:3, :3].t() + T_world_cam[:3, 3]
        X, Y = self.dims[0], self.dims[1]
        vox = self._dilated_voxels(torch.round((pts - self.origin) / self.resolution).long())
        flat = (vox[:, 2] * Y + vox[:, 1]) * X + vox[:, 0]
        # 2. exact projective signed distance of each candidate
        pc = (self.voxel_centres(vox) - T_world_cam[:3, 3]) @ T_world_cam[:3, :3]
        zc = pc[:, 2]
        zsafe = torch.where(zc > 1e-6, zc, torch.ones_like(zc))
        u = K[0, 0] * pc[:, 0] / zsafe + K[0, 2]
        v = K[1, 1] * pc[:, 1] / zsafe + K[1, 2]
        d, pix = _bilinear_depth(depth, u, v, cfg.truncation)
        sdf = d - zc
        # Only up to one truncation behind the surface: updating further (behind silhouettes)
        # fattens objects as seen from other views, which measured worse.
        # (The tolerance keeps a voxel exactly one truncation behind, e.g. behind a surface on
        # a voxel centre, from being skipped by rounding.)
        upd = (zc > 1e-6) & torch.isfinite(d) & (sdf > -cfg.truncation - 1e-6)
        flat, pix = flat[upd], pix[upd]
        sdf = sdf[upd].clamp(-cfg.truncation, cfg.truncation)
        if depth_sigma is None:
            wgt = torch.ones_like(sdf)
        else:
            wgt = (cfg.sdf_noise / depth_sigma.reshape(-1)[pix]).pow(2).clamp(max=1.0)
        W_old = self.weight.view(-1)[flat]
        if cfg.freeze_weight > 0:
            wgt = torch.where(W_old >= cfg.freeze_weight, torch.zeros_like(wgt), wgt)
        s_old = self._dist.view(-1)[flat] + cfg.truncation
        W_new = W_old + wgt
        W_safe = torch.where(W_new > 0, W_new, torch.ones_like(W_new))
        s_new = torch.where(W_new > 0, (s_old * W_old + sdf * wgt) / W_safe, s_old)
        self._dist.view(-1)[flat] = s_new - cfg.truncation
        self.weight.view(-1)[flat] = W_new.clamp(max=cfg.max_weight)
        self._seen.view(-1)[flat] = (W_new > 0).to(self.dtype)
        if pose_var is not None:
            cell = self._anchor_cells(vox[upd])
            self.anchor_weight.index_add_(0, cell, wgt)
            self.anchor_sum.index_add_(1, cell, pose_var.to(self.dtype)[:, None] * wgt[None])
        if rgb is not None:
            near = sdf.abs() < 0.5 * cfg.truncation
            cflat = flat[near]
            col = rgb.reshape(-1, 3)[pix[near]]
            cw = wgt[near]
            cw_old = self.color_weight.view(-1)[cflat]
            cw_new = cw_old + cw
            cw_safe = torch.where(cw_new > 0, cw_new, torch.ones_like(cw_new))
            cview = self.color.view(3, -1)
            cview[:, cflat] = (cview[:, cflat] * cw_old + col.t() * cw) / cw_safe
            self.color_weight.view(-1)[cflat] = cw_new.clamp(max=cfg.max_weight)
            self._color_obs.view(-1)[cflat] = (cw_new > 0).to(self.dtype)
        return int(flat.numel())

    def _dilated_voxels(self, idx: torch.Tensor) -> torch.Tensor:
        """The voxels in the grid within one voxel (26-neighbourhood) of the given ones.

        Rays are sparser than voxels at range (a 160 px wide image at 5 m spaces them ~4 cm
        apart): a voxel next to a surface that no ray met would stay free (+truncation) and
        pull rendered surfaces behind their true place through the trilinear queries. The
        dilation runs on a boolean grid over the candidates' bounding box, which is much
        cheaper than de-duplicating 27 offsets per voxel.

        Args:
            idx: integer (x, y, z) voxel indices, possibly outside the grid. Shape: (N, 3).
        Returns:
            Unique (x, y, z) indices inside the grid. Shape: (M, 3).
        """
        dims = torch.tensor(self.dims, device=self.device)
        idx = idx[((idx >= 0) & (idx < dims)).all(dim=-1)]
        if idx.shape[0] == 0:
            return idx
        lo = (idx.min(dim=0).values - 1).clamp(min=0)
        hi = torch.minimum(idx.max(dim=0).values + 1, dims - 1)
        ext = (hi - lo + 1).tolist()
        loc = idx - lo
        grid = torch.zeros((ext[2], ext[1], ext[0]), device=self.device, dtype=torch.bool)
        grid[loc[:, 2], loc[:, 1], loc[:, 0]] = True
        for axis in range(3):  # separable: dilate along z, y, x in turn
            n = grid.shape[axis]
            if n < 2:
                continue
            out = grid.clone()
            out.narrow(axis, 1, n - 1).logical_or_(grid.narrow(axis, 0, n - 1))
            out.narrow(axis, 0, n - 1).logical_or_(grid.narrow(axis, 1, n - 1))
            grid = out
        return grid.nonzero().flip(-1) + lo

    # ------------------------------------------------------------------ export

    def surface_points(self, min_weight: float = 1.0) -> Dict[str, torch.Tensor]:
        """Voxels near the surface (|sdf| < 0.75 voxel), as a point cloud.

        Returns: dict with ``xyz`` (N, 3), ``rgb`` (N, 3) in [0, 1], ``occupancy`` (N,)
        probability, ``logit_std`` (N,).
        """
        cfg = self.cfg
        sdf_grid = self.sdf
        mask = (self.weight >= min_weight) & (sdf_grid.abs() < 0.75 * self.resolution)
        idx_zyx = mask[0, 0].nonzero()
        flat = (idx_zyx[:, 0] * self.dims[1] + idx_zyx[:, 1]) * self.dims[0] + idx_zyx[:, 2]
        weight = self.weight.view(-1)[flat]
        return {
            'xyz': self.voxel_centres(idx_zyx.flip(-1)),
            'rgb': self.color.view(3, -1)[:, flat].t().clamp(0, 1),
            'occupancy': torch.sigmoid(-cfg.logit_slope * sdf_grid.view(-1)[flat]),
            'logit_std': cfg.logit_slope * cfg.sdf_noise / weight.sqrt(),
        }

    def _grids(self) -> Dict[str, torch.Tensor]:
        return {'dist': self._dist, 'weight': self.weight, 'color': self.color,
                'color_weight': self.color_weight, 'anchor_sum': self.anchor_sum,
                'anchor_weight': self.anchor_weight}

    def state_dict(self) -> Dict[str, torch.Tensor]:
        """The grids (everything needed to restore the map); 'sdf' in metres."""
        out = dict(self._grids())
        out['sdf'] = out.pop('dist') + self.cfg.truncation
        return out

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        """Restore grids saved by ``state_dict`` (shapes must match this config)."""
        for name, cur in self._grids().items():
            key = 'sdf' if name == 'dist' else name
            if key not in state:
                raise StateError(f'map grid {key!r} is missing from the saved state')
            new = state[key]
            if tuple(new.shape) != tuple(cur.shape):
                raise StateError(f'map grid {key!r} has shape {tuple(new.shape)}, '
                                 f'the config gives {tuple(cur.shape)}')
            new = new.to(device=cur.device, dtype=cur.dtype)
            cur.copy_(new - self.cfg.truncation if key == 'sdf' else new)
        self._seen.copy_((self.weight > 0).to(self.dtype))
        self._color_obs.copy_((self.color_weight > 0).to(self.dtype))

    def reset(self) -> None:
        """Forget everything."""
        for g in self._grids().values():
            g.zero_()
        self._seen.zero_()
        self._color_obs.zero_()


def _bilinear_depth(depth: torch.Tensor, u: torch.Tensor, v: torch.Tensor, tol: float):
    """Depth at sub-pixel positions: bilinear where the four neighbours are valid and agree
    within ``tol`` (a surface, not an edge), else the nearest pixel.

    Args:
        depth: Shape: (H, W), NaN invalid.
        u, v: pixel coordinates (pixel centres at integers). Shape: (N,).
    Returns:
        depth (N,) (NaN outside the image or invalid) and the nearest pixel's flat index (N,).
    """
    h, w = depth.shape
    inside = (u > -0.5) & (u < w - 0.5) & (v > -0.5) & (v < h - 0.5)
    pix = torch.round(v).clamp(0, h - 1).long() * w + torch.round(u).clamp(0, w - 1).long()
    flatd = depth.reshape(-1)
    nearest = flatd[pix]
    u0 = torch.floor(u).clamp(0, w - 2).long()
    v0 = torch.floor(v).clamp(0, h - 2).long()
    fu = (u - u0).clamp(0, 1)
    fv = (v - v0).clamp(0, 1)
    i00 = v0 * w + u0
    d00, d01, d10, d11 = flatd[i00], flatd[i00 + 1], flatd[i00 + w], flatd[i00 + w + 1]
    quad = torch.stack((d00, d01, d10, d11), dim=-1)
    spread = quad.max(dim=-1).values - quad.min(dim=-1).values
    smooth = torch.isfinite(quad).all(dim=-1) & (spread < tol)
    bil = (d00 * (1 - fu) * (1 - fv) + d01 * fu * (1 - fv) + d10 * (1 - fu) * fv
           + d11 * fu * fv)
    d = torch.where(smooth, bil, nearest)
    return torch.where(inside, d, torch.full_like(d, float('nan'))), pix


def num_voxels(cfg: MapConfig) -> int:
    """Voxel count of a map config (for memory estimates)."""
    n = 1
    for a, b in zip(cfg.bounds_min, cfg.bounds_max):
        n *= int(math.ceil((b - a) / cfg.resolution)) + 1
    return n
