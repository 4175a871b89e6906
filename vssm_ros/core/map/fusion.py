# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Which voxels a keyframe updates, and with what: candidate voxels along the rays and their
projective signed distances (the closed-form map update itself is ``VoxelMap.fuse``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import torch

from vssm_ros.config import MapConfig
from vssm_ros.core.lie import rotate_rows
from vssm_ros.core.map.index import grid_coords


@dataclass
class Observation:
    """Signed-distance observations of voxels from one depth image.

    Attributes:
        vox: integer (x, y, z) voxel coordinates, unique. Shape: (M, 3).
        sdf: projective signed distance, clamped to ±truncation (metres). Shape: (M,).
        weight: observation weight. Shape: (M,).
        pix: flat index of the nearest pixel (for colour). Shape: (M,).
        color_band: colour goes to voxels within this distance of the surface (metres).
    """

    vox: torch.Tensor
    sdf: torch.Tensor
    weight: torch.Tensor
    pix: torch.Tensor
    color_band: float


def observe(depth: torch.Tensor, K: torch.Tensor, T_world_cam: torch.Tensor, cfg: MapConfig,
            depth_sigma: Optional[torch.Tensor], max_pixels: int,
            noise_scale: float = 1.0) -> Optional[Observation]:
    """Candidate voxels of one depth image and their projective signed distances.

    Candidates are voxels met by samples along the pixels' rays from ``2 truncation`` in front
    of the observed depth to ``truncation`` behind it, and their 26 neighbours (space further
    in front keeps its value: free unless observed otherwise). Each candidate's signed distance
    is computed exactly by projecting its centre into the image, with bilinear depth where the
    four neighbours agree.

    Args:
        depth: metres, NaN invalid. Shape: (H, W).
        K: intrinsics. Shape: (3, 3).
        T_world_cam: camera pose. Shape: (4, 4).
        depth_sigma: depth noise std per pixel; the observation weight is
            ``(sdf_noise / sigma)²`` capped at 1 (None: weight 1). Shape: (H, W).
        max_pixels: rays used to find candidate voxels (a regular subset beyond this).
        noise_scale: the camera's depth noise over the sensor model's, as tracking measures
            it: the colour band, half a truncation, widens by it (below 1: not at all).
    Returns:
        The observations, or None when the image has no valid depth.
    """
    h, w = depth.shape
    dev, dt = depth.device, depth.dtype
    res = cfg.resolution
    stride = max(1, int(math.ceil(math.sqrt(h * w / max_pixels))))
    d_sub = depth[::stride, ::stride]
    vv, uu = torch.meshgrid(torch.arange(0, h, stride, device=dev, dtype=dt),
                            torch.arange(0, w, stride, device=dev, dtype=dt), indexing='ij')
    ok = torch.isfinite(d_sub)
    if not bool(ok.any()):
        return None
    d_ok = d_sub[ok]
    dirs = torch.stack(((uu[ok] - K[0, 2]) / K[0, 0], (vv[ok] - K[1, 2]) / K[1, 1],
                        torch.ones_like(d_ok)), dim=-1)  # (P, 3)
    offs = torch.arange(-2 * cfg.truncation, cfg.truncation + 1e-9, 0.5 * res, device=dev,
                        dtype=dt)  # (S,)
    z = (d_ok[:, None] + offs).clamp(min=1e-3)  # (P, S)
    pts = (dirs[:, None, :] * z[..., None]).reshape(-1, 3)
    # Components first (rotate_rows' result is the transpose of a (3, N) tensor): the voxel
    # arithmetic below runs on contiguous rows.
    pts = rotate_rows(T_world_cam[:3, :3], pts).t() + T_world_cam[:3, 3, None]
    vox = dilated_voxels(torch.round(pts / res))
    pc = rotate_rows(T_world_cam[:3, :3].t(), vox.to(dt) * res - T_world_cam[:3, 3])
    zc = pc[:, 2]
    zsafe = torch.where(zc > 1e-6, zc, torch.ones_like(zc))
    u = K[0, 0] * pc[:, 0] / zsafe + K[0, 2]
    v = K[1, 1] * pc[:, 1] / zsafe + K[1, 2]
    d, pix = bilinear_depth(depth, u, v, cfg.truncation)
    sdf = d - zc
    # Only up to one truncation behind the surface: updating further (behind silhouettes)
    # fattens objects as seen from other views, which measured worse. (The tolerance keeps a
    # voxel exactly one truncation behind, e.g. behind a surface on a voxel centre, from being
    # skipped by rounding.)
    upd = ((zc > 1e-6) & torch.isfinite(d) & (sdf > -cfg.truncation - 1e-6)).nonzero()[:, 0]
    pix = pix.index_select(0, upd)
    sdf = sdf.index_select(0, upd).clamp(-cfg.truncation, cfg.truncation)
    if depth_sigma is None:
        wgt = torch.ones_like(sdf)
    else:
        wgt = (cfg.sdf_noise / depth_sigma.reshape(-1).index_select(0, pix)).pow(2).clamp(
            max=1.0)
    return Observation(vox=vox.index_select(0, upd), sdf=sdf, weight=wgt, pix=pix,
                       color_band=0.5 * cfg.truncation * max(1.0, noise_scale))


def dilated_voxels(idx: torch.Tensor) -> torch.Tensor:
    """The voxels within one voxel (26-neighbourhood) of the given ones, unique, in the order
    of their flat cells in the bounding box (x fastest).

    Rays are sparser than voxels at range (a 160 px wide image at 5 m spaces them ~4 cm
    apart): a voxel next to a surface that no ray met would stay free (+truncation) and pull
    rendered surfaces behind their true place through the trilinear queries. The dilation runs
    on a boolean grid over the candidates' bounding box, which is much cheaper than
    de-duplicating 27 offsets per voxel.

    Shape: (3, N) integer-valued (x, y, z) components, any dtype -> (M, 3) int64.
    """
    if idx.shape[1] == 0:
        return torch.zeros((0, 3), device=idx.device, dtype=torch.long)
    # Per component, on contiguous rows: int64 arithmetic on (N, 3) rows is several times
    # slower on the CPU.
    lo = (idx.amin(dim=1) - 1).long()
    ext = ((idx.amax(dim=1) + 1).long() - lo + 1).tolist()
    x, y, z = (c.long() - o for c, o in zip(idx, lo.tolist()))
    grid = torch.zeros((ext[2], ext[1], ext[0]), device=idx.device, dtype=torch.bool)
    grid.view(-1)[(z * ext[1] + y) * ext[0] + x] = True
    for axis in range(3):  # separable: dilate along z, y, x in turn
        n = grid.shape[axis]
        out = grid.clone()
        out.narrow(axis, 1, n - 1).logical_or_(grid.narrow(axis, 0, n - 1))
        out.narrow(axis, 0, n - 1).logical_or_(grid.narrow(axis, 1, n - 1))
        grid = out
    # Flat: nonzero over 3 dims, flipping its (z, y, x) columns and adding the corner cost a
    # few times more on (N, 3) int64 rows.
    return grid_coords(grid.view(-1).nonzero().squeeze(1), ext, lo)


def bilinear_depth(depth: torch.Tensor, u: torch.Tensor, v: torch.Tensor, tol: float
                   ) -> Tuple[torch.Tensor, torch.Tensor]:
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
    nearest = depth.reshape(-1).index_select(0, pix)   # (faster than indexing on the CPU)
    u0 = torch.floor(u).clamp(0, w - 2).long()
    v0 = torch.floor(v).clamp(0, h - 2).long()
    fu = (u - u0).clamp(0, 1)
    fv = (v - v0).clamp(0, 1)
    # Per pixel quad, once per image: its four depths and whether they agree. One row gather
    # per point then replaces four gathers and the comparisons per point.
    quads, smooth_quad = _depth_quads(depth, tol)
    i00 = v0 * w + u0
    quad = quads.index_select(0, i00)
    smooth = smooth_quad.index_select(0, i00)
    d00, d01, d10, d11 = quad.unbind(-1)
    bil = (d00 * (1 - fu) * (1 - fv) + d01 * fu * (1 - fv) + d10 * (1 - fu) * fv
           + d11 * fu * fv)
    d = torch.where(smooth, bil, nearest)
    return torch.where(inside, d, torch.full_like(d, float('nan'))), pix


def _depth_quads(depth: torch.Tensor, tol: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """The depths of each pixel's quad (itself, right, below, below right) and whether all
    four are valid and within ``tol`` of each other; the last row and column hold repeats
    (never a quad's top-left corner). Shape: (H, W) -> (H W, 4), (H W,) bool."""
    h, w = depth.shape
    right = torch.cat((depth[:, 1:], depth[:, -1:]), dim=1)
    quad = torch.stack((depth, right, torch.cat((depth[1:], depth[-1:])),
                        torch.cat((right[1:], right[-1:]))), dim=-1).reshape(h * w, 4)
    spread = quad.max(dim=-1).values - quad.min(dim=-1).values
    return quad, torch.isfinite(quad).all(dim=-1) & (spread < tol)
