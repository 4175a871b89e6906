# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Collision cost-to-go from the occupancy posterior q(M).

1. **Occupancy probability** per map voxel: its signed distance has the posterior
   N(sdf, (sdf_noise / sqrt(weight))²) (``VoxelMap``), so ``P(occupied) = P(sdf <= 0) =
   Φ(-sdf / std)``. The map only holds voxels near surfaces, so the free space that depth rays
   passed through is recorded beside it (``FreeSpace``, carved with each keyframe); voxels in
   such space are free, voxels neither near a surface nor seen through get
   ``unknown_occupancy``.
2. **Cost grid**: voxels are pooled into cells of about ``resolution`` metres, each cell taking
   its most occupied voxel (conservative). Cells with ``P >= occupied_threshold`` are obstacles
   (by default this includes unknown space). The Euclidean distance ``d`` of every cell to the
   nearest obstacle (an exact separable distance transform, up to ``max_distance``) gives the
   cost ``exp(-max(d - robot_radius, 0) / decay)``: 1 inside obstacles and within the robot's
   radius of them, strictly decreasing with distance through free space beyond.
3. **Slice**: the cost at one height as a nav_msgs/OccupancyGrid-style array (int8, 0..100,
   -1 where no voxel of the cell was ever observed).
4. **Collision probability** of a candidate trajectory for a spherical robot: the cells a sphere
   of ``robot_radius`` sweeps along the densely resampled trajectory, combined as independent
   events, ``1 - Π (1 - P_cell)``; cells below ``free_below`` count as free (their tiny
   probabilities are correlated evidence of the same free space, not independent risks).
   Space outside the grid is unknown.

The cost grid covers a box of ``CostConfig.extent`` around a centre (the drone), not the whole
map: its cost does not grow with the map.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, ContextManager, Dict, Optional, Tuple

import torch
import torch.nn.functional as F

from vssm_ros.config import CostConfig
from vssm_ros.core.lie import rotate_rows
from vssm_ros.core.map import VoxelMap
from vssm_ros.core.map.index import SortedIndex, pack, unpack
from vssm_ros.errors import StateError

Tensor = torch.Tensor
# Cells of the free space read per part by ``occupancy_probability`` (a few ms on a CPU: a
# keyframe's commit waiting for the map's lock waits for one part).
READ_PART_CELLS = 32768


@dataclass
class FreeCells:
    """Cells seen free in one depth image, grouped by chunk (``FreeSpace.group``).

    Attributes:
        chunks: the packed keys of the chunks they lie in, sorted, unique. Shape: (U,).
        chunk_of: each cell's chunk, an index into ``chunks``. Shape: (N,).
        loc: each cell's flat index in its chunk. Shape: (N,).
    """

    chunks: Tensor
    chunk_of: Tensor
    loc: Tensor


class FreeSpace:
    """Cells (of the cost grid) seen to be free: in front of a measured surface, in view.

    The cells pool ``factor`` map voxels per axis, as ``cost_field`` does: cell c pools voxels
    ``c f .. c f + f - 1``. A keyframe's depth image marks every cell whose centre projects
    into the image in front of the measured depth (by more than a truncation plus a cell: the
    map's surface band decides there). Projecting cells (rather than marching rays) leaves no
    gaps between diverging rays at range. Like the map, the record is sparse and unbounded:
    chunks of ``CHUNK³`` cells, allocated where something was seen free.

    Args:
        vmap: the map whose voxels the cells pool.
        resolution: the wanted cell size (metres; rounded to whole voxels).
        max_range: cells are carved up to this range from the camera (metres).
    """

    CHUNK = 16

    def __init__(self, vmap: VoxelMap, resolution: float, max_range: float = math.inf):
        self.factor = max(1, int(round(resolution / vmap.resolution)))
        self.resolution = self.factor * vmap.resolution
        # Cell (0, 0, 0) pools voxels 0 .. f-1: its centre is (f - 1) / 2 voxels from voxel 0.
        self.offset = 0.5 * (self.factor - 1) * vmap.resolution
        self.device, self.dtype = vmap.device, vmap.dtype
        self.margin = vmap.cfg.truncation + self.resolution
        self.max_range = max_range
        self.index = SortedIndex(self.device)
        self.chunks = torch.zeros((1,) + (self.CHUNK,) * 3, dtype=torch.bool, device=self.device)

    def reset(self) -> None:
        self.index.clear()
        self.chunks = self.chunks[:1].zero_()   # chunk 0: never seen

    def nbytes(self) -> int:
        return int(self.chunks.numel())

    def centres(self, cells: Tensor) -> Tensor:
        """Map-frame centres of integer (x, y, z) cells. Shape: (..., 3) -> (..., 3)."""
        return cells.to(self.dtype) * self.resolution + self.offset

    def _split(self, cells: Tensor) -> Tuple[Tensor, Tensor]:
        """The packed key of each cell's chunk, and the cell's flat index in it.
        Shape: (..., 3) -> (...), (...)."""
        n = self.CHUNK
        chunk = torch.div(cells, n, rounding_mode='floor')
        loc = cells - chunk * n
        return pack(chunk), (loc[..., 2] * n + loc[..., 1]) * n + loc[..., 0]

    def _where(self, cells: Tensor) -> Tuple[Tensor, Tensor]:
        key, loc = self._split(cells)
        return self.index.lookup(key), loc

    def seen_at(self, cells: Tensor) -> Tensor:
        """Whether each integer (x, y, z) cell was seen free. Shape: (..., 3) -> (...) bool."""
        slot, loc = self._where(cells)
        flat = torch.where(slot < 0, torch.zeros_like(slot), slot) * self.CHUNK ** 3 + loc
        return self.chunks.view(-1)[flat]

    def carve(self, depth: Tensor, K: Tensor, T_world_cam: Tensor, near: float = 0.1) -> None:
        """Mark the cells seen free in one depth image.

        Shape: depth (H, W) metres, NaN invalid; K (3, 3); T_world_cam (4, 4).
        """
        self.mark(self.group(self.free_cells(depth, K, T_world_cam, near)))

    def group(self, cells: Optional[Tensor]) -> Optional[FreeCells]:
        """Cells (``free_cells``) grouped by chunk for ``mark``, without marking them: the
        sorting is most of the marking's cost, and a keyframe's mapping thread does it beside
        tracking, outside the map's write lock. Shape: (N, 3) integer (x, y, z), or None."""
        if cells is None:
            return None
        key, loc = self._split(cells)
        chunks, chunk_of = torch.unique(key, return_inverse=True)
        return FreeCells(chunks, chunk_of, loc)

    def mark(self, cells: Optional[FreeCells]) -> None:
        """Mark cells (``group``) seen free."""
        if cells is None:
            return
        slots = self.index.lookup(cells.chunks)
        missing = slots < 0
        new = cells.chunks[missing]
        if new.numel():
            start = self.chunks.shape[0]
            self.chunks = torch.cat((self.chunks, torch.zeros(
                (new.numel(),) + (self.CHUNK,) * 3, dtype=torch.bool, device=self.device)))
            slots[missing] = taken = torch.arange(start, start + new.numel(), device=self.device)
            self.index.insert(new, taken)
        flat = slots.index_select(0, cells.chunk_of) * self.CHUNK ** 3 + cells.loc
        self.chunks.view(-1)[flat] = True

    def free_cells(self, depth: Tensor, K: Tensor, T_world_cam: Tensor, near: float = 0.1
                   ) -> Optional[Tensor]:
        """The cells seen free in one depth image, without marking them (it reads nothing of
        the record: a keyframe's mapping thread computes them beside tracking); None when
        none are.

        Shape: depth (H, W) metres, NaN invalid; K (3, 3); T_world_cam (4, 4) -> (N, 3).
        """
        h, w = depth.shape
        valid = torch.isfinite(depth)
        if not bool(valid.any()):
            return None
        reach = min(float(depth[valid].max()) - self.margin, self.max_range)
        if reach <= near:
            return None
        # Only the cells in the bounding box of the frustum up to the farthest depth.
        corners = torch.tensor([[0.0, 0.0], [w - 1.0, 0.0], [0.0, h - 1.0], [w - 1.0, h - 1.0]],
                               dtype=depth.dtype, device=depth.device)
        rays = torch.stack(((corners[:, 0] - K[0, 2]) / K[0, 0],
                            (corners[:, 1] - K[1, 2]) / K[1, 1],
                            torch.ones(4, dtype=depth.dtype, device=depth.device)), dim=-1)
        ends = torch.cat((rays * reach, torch.zeros(1, 3, dtype=depth.dtype,
                                                    device=depth.device)))
        ends = ends @ T_world_cam[:3, :3].t() + T_world_cam[:3, 3]
        lo = torch.floor((ends.min(0).values - self.offset) / self.resolution).long()
        hi = torch.ceil((ends.max(0).values - self.offset) / self.resolution).long() + 1
        axes = [torch.arange(int(a), int(b), device=depth.device) for a, b in zip(lo, hi)]
        zz, yy, xx = torch.meshgrid(axes[2], axes[1], axes[0], indexing='ij')
        cells = torch.stack((xx, yy, zz), dim=-1).reshape(-1, 3)
        pc = rotate_rows(T_world_cam[:3, :3].t(), self.centres(cells) - T_world_cam[:3, 3])
        z = pc[:, 2]
        zs = torch.where(z > near, z, torch.ones_like(z))
        u = torch.round(K[0, 0] * pc[:, 0] / zs + K[0, 2])
        v = torch.round(K[1, 1] * pc[:, 1] / zs + K[1, 2])
        inside = (z > near) & (u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1)
        pix = (v.clamp(0, h - 1) * w + u.clamp(0, w - 1)).long()
        d = depth.reshape(-1)[pix]
        free = inside & torch.isfinite(d) & (z < d - self.margin) & (z <= reach)
        return cells[free]

    def state_dict(self) -> Dict[str, Tensor]:
        """``chunks`` (N, 3) chunk coordinates and ``seen`` (N, C, C, C) bool (z, y, x)."""
        keys, slots = self.index.items()
        return {'chunks': unpack(keys).cpu(), 'seen': self.chunks[slots].cpu()}

    def load_state_dict(self, state: Dict[str, Tensor]) -> None:
        n = self.CHUNK
        seen, coords = state.get('seen'), state.get('chunks')
        if seen is None or coords is None or tuple(seen.shape[1:]) != (n, n, n) \
                or tuple(coords.shape) != (seen.shape[0], 3):
            raise StateError('the saved free space (cost.free_space.*) is malformed')
        self.reset()
        self.chunks = torch.cat((self.chunks, seen.to(self.device, torch.bool)))
        self.index.insert(pack(coords.to(self.device, torch.long)),
                          torch.arange(1, 1 + seen.shape[0], device=self.device))


def occupancy_probability(vmap: VoxelMap, unknown_occupancy: float, free: FreeSpace,
                          lo: Tensor, dims: Tuple[int, int, int],
                          section: Callable[[], ContextManager] = contextlib.nullcontext
                          ) -> Tuple[Tensor, Tensor]:
    """P(occupied) of the cells of a box (each its most occupied voxel) and whether any voxel
    of the cell was observed (near a surface, or in free space that rays passed through).

    A voxel near a surface (weight > 0) has its posterior probability; others are free in cells
    seen free, else ``unknown_occupancy``.

    Args:
        lo: the box's first cell (x, y, z). Shape: (3,).
        dims: cells (X, Y, Z).
        section: the map and the free space are read inside ``section()`` (the engine's map
            read lock), the map a part at a time (``VoxelMap.read_voxels``).
    Returns: ``p`` (Z, Y, X) and ``known`` (Z, Y, X) bool.
    """
    f = free.factor
    X, Y, Z = dims
    dev, dt = vmap.device, vmap.dtype
    size = torch.tensor(dims, device=dev)
    mid = free.centres(lo) + 0.5 * (size - 1).to(dt) * free.resolution
    reach = 0.5 * float(torch.linalg.norm(size.double())) * free.resolution

    def read(vox: Tensor, flat: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        w = vmap.atlas.view('weight')[0, flat]
        seen_vox = w > 0   # most voxels of the blocks were never observed: drop them first
        vox, flat, w = vox[seen_vox], flat[seen_vox], w[seen_vox]
        cell = torch.div(vox, f, rounding_mode='floor') - lo
        keep = ((cell >= 0) & (cell < size)).all(dim=-1)
        return cell[keep], w[keep], vmap.atlas.view('dist_seen')[0, flat[keep]]

    parts = vmap.read_voxels(read, mid, reach + vmap.B * vmap.resolution, section)
    cell, w, mu = (torch.cat(t) for t in zip(*parts))
    mu = mu + vmap.cfg.truncation
    std = vmap.cfg.sdf_noise / torch.sqrt(w)
    p_vox = 0.5 * torch.erfc(mu / (std * math.sqrt(2.0)))
    idx = (cell[:, 2] * Y + cell[:, 1]) * X + cell[:, 0]
    n = X * Y * Z
    p_max = torch.zeros(n, device=dev, dtype=dt).scatter_reduce(0, idx, p_vox, 'amax')
    count = torch.zeros(n, device=dev, dtype=torch.long).index_add_(
        0, idx, torch.ones_like(idx))
    zz, yy, xx = torch.meshgrid(*(torch.arange(k, device=dev) for k in (Z, Y, X)), indexing='ij')
    cells = torch.stack((xx, yy, zz), dim=-1).reshape(-1, 3) + lo
    seen = torch.cat([_seen_at(free, part, section) for part in cells.split(READ_PART_CELLS)])
    # Cells whose voxels are not all near a surface hold free or unknown voxels too.
    rest = torch.where(seen | (count == f ** 3), torch.zeros_like(p_max),
                       torch.full_like(p_max, unknown_occupancy))
    p = torch.maximum(p_max, rest)
    return p.reshape(Z, Y, X), (seen | (count > 0)).reshape(Z, Y, X)


def _seen_at(free: FreeSpace, cells: Tensor, section: Callable[[], ContextManager]) -> Tensor:
    with section():
        return free.seen_at(cells)


def distance_transform(obstacle: Tensor, resolution: float, max_distance: float) -> Tensor:
    """Euclidean distance (metres) from every cell centre to the nearest obstacle cell centre,
    exact up to ``max_distance`` and clamped there.

    Separable: the squared distance is a min-plus convolution with ``(k res)²`` along each axis
    in turn, here over offsets ``|k| <= max_distance / res`` only (a distance within that bound
    has every axis component within it, so it comes out exactly).

    Shape: obstacle (Z, Y, X) bool -> (Z, Y, X).
    """
    K = int(math.ceil(max_distance / resolution))
    f = torch.where(obstacle, torch.zeros((), dtype=torch.float32, device=obstacle.device),
                    torch.full((), math.inf, dtype=torch.float32, device=obstacle.device))
    for dim in range(f.dim()):
        n = f.shape[dim]
        out = f.clone()
        for k in range(1, min(K, n - 1) + 1):
            add = (k * resolution) ** 2
            # In place (out=): a copy back per offset was a third of the transform's time.
            head = out.narrow(dim, 0, n - k)   # x gets f(x + k)
            torch.minimum(head, f.narrow(dim, k, n - k) + add, out=head)
            tail = out.narrow(dim, k, n - k)   # x gets f(x - k)
            torch.minimum(tail, f.narrow(dim, 0, n - k) + add, out=tail)
        f = out
    return torch.sqrt(f).clamp(max=max_distance)


@dataclass
class CostField:
    """The cost grid and what it was computed from (see the module docstring).

    Attributes:
        origin: centre of cell (0, 0, 0), map frame. Shape: (3,).
        resolution: cell edge (metres).
        occupancy: P(occupied) per cell. Shape: (Z, Y, X).
        known: a voxel of the cell was observed. Shape: (Z, Y, X) bool.
        distance: distance to the nearest obstacle (metres, clamped). Shape: (Z, Y, X).
        cost: cost in [0, 1]. Shape: (Z, Y, X).
        cfg: the parameters.
    """

    origin: Tensor
    resolution: float
    occupancy: Tensor
    known: Tensor
    distance: Tensor
    cost: Tensor
    cfg: CostConfig

    @property
    def dims(self) -> Tuple[int, int, int]:
        """(X, Y, Z) cell counts."""
        z, y, x = self.cost.shape
        return x, y, z

    def cost_at(self, points: Tensor) -> Tensor:
        """Trilinear cost at points (the outermost half cell reads the edge cells); 1 outside
        the grid (unknown). Shape: (N, 3) -> (N,)."""
        pts = points.to(self.cost.dtype)
        size = torch.tensor(self.dims, dtype=pts.dtype, device=pts.device)
        half = 0.5 * self.resolution
        inside = ((pts >= self.origin - half)
                  & (pts <= self.origin + (size - 1) * self.resolution + half)).all(dim=-1)
        g = (pts - self.origin) / (self.resolution * (size - 1).clamp(min=1)) * 2.0 - 1.0
        out = F.grid_sample(self.cost[None, None], g.reshape(1, 1, 1, -1, 3), mode='bilinear',
                            padding_mode='border', align_corners=True).reshape(-1)
        # Interpolating costs in [0, 1] stays in [0, 1]; float32 weights can overshoot by an ulp.
        out = out.clamp(0.0, 1.0)
        return torch.where(inside, out, torch.ones_like(out))

    def slice(self, height: float) -> Dict:
        """The cost at the cell layer nearest ``height`` as an occupancy grid.

        Returns:
            ``data`` (Y, X) int8 (row-major from the corner at ``origin_xy``, x along a row:
            nav_msgs/OccupancyGrid order): round(100 cost), -1 where unknown; ``origin_xy``
            (2,) corner of cell (0, 0); ``resolution``; ``height`` of the layer's centre.
        """
        k = int(round((height - float(self.origin[2])) / self.resolution))
        k = min(max(k, 0), self.cost.shape[0] - 1)
        val = torch.round(self.cost[k] * 100.0).to(torch.int8)
        data = torch.where(self.known[k], val, torch.full_like(val, -1))
        corner = (self.origin[:2] - 0.5 * self.resolution).cpu().double().numpy()
        return {'data': data.cpu().numpy(), 'origin_xy': corner, 'resolution': self.resolution,
                'height': float(self.origin[2]) + k * self.resolution}

    def collision_probability(self, trajectory: Tensor) -> Tensor:
        """P(collision) of a robot sphere of ``robot_radius`` moving along waypoints.

        Args:
            trajectory: waypoints (map frame), straight segments between them.
                Shape: (M, 3) or (S, M, 3) for S candidate (e.g. sampled) trajectories.
        Returns:
            Shape: () or (S,).
        """
        if trajectory.dim() == 3:
            return torch.stack([self.collision_probability(t) for t in trajectory])
        if trajectory.dim() != 2 or trajectory.shape[-1] != 3 or trajectory.shape[0] < 1:
            raise StateError(f'collision_probability needs waypoints (M, 3), got '
                             f'{tuple(trajectory.shape)}')
        pts = _resample(trajectory.to(self.cost.dtype), 0.5 * self.resolution)
        res = self.resolution
        reach = self.cfg.robot_radius + 0.5 * math.sqrt(3.0) * res  # sphere meets the cell
        m = int(math.ceil(reach / res))
        r = torch.arange(-m, m + 1, device=pts.device)
        offs = torch.stack(torch.meshgrid(r, r, r, indexing='ij'), dim=-1).reshape(-1, 3)
        base = torch.round((pts - self.origin) / res).long()  # (P, 3) x, y, z
        cells = base[:, None, :] + offs  # (P, O, 3)
        centres = self.origin + cells.to(pts.dtype) * res
        near = ((centres - pts[:, None, :]) ** 2).sum(-1) <= reach * reach
        cells = cells[near]
        dims = torch.tensor(self.dims, device=pts.device)
        inside = ((cells >= 0) & (cells < dims)).all(dim=-1)
        X, Y, _ = self.dims
        flat = torch.unique((cells[inside, 2] * Y + cells[inside, 1]) * X + cells[inside, 0])
        p = self.occupancy.reshape(-1)[flat]
        p = torch.where(p < self.cfg.free_below, torch.zeros_like(p), p)
        log_free = torch.log1p(-p.clamp(max=1.0 - 1e-7)).sum()
        if bool((~inside).any()):
            log_free = log_free + math.log1p(-min(self.cfg.unknown_occupancy, 1.0 - 1e-7))
        return 1.0 - torch.exp(log_free)


def _resample(waypoints: Tensor, step: float) -> Tensor:
    """Points along the polyline at most ``step`` apart, waypoints included.

    Shape: (M, 3) -> (P, 3).
    """
    if waypoints.shape[0] == 1:
        return waypoints
    seg = waypoints[1:] - waypoints[:-1]
    n = torch.ceil(torch.linalg.norm(seg, dim=-1) / step).clamp(min=1).long()  # (M-1,)
    idx = torch.repeat_interleave(torch.arange(len(seg), device=waypoints.device), n)
    start = torch.repeat_interleave(torch.cumsum(n, 0) - n, n)
    frac = (torch.arange(int(n.sum()), device=waypoints.device) - start).to(waypoints.dtype)
    frac = frac / n[idx].to(waypoints.dtype)
    pts = waypoints[idx] + frac[:, None] * seg[idx]
    return torch.cat((pts, waypoints[-1:]))


def cost_field(vmap: VoxelMap, cfg: CostConfig, free: FreeSpace,
               centre: Optional[Tensor] = None,
               box: Optional[Tuple[Tensor, Tuple[int, int, int]]] = None) -> CostField:
    """The cost field of a map posterior and the free space seen, over the box of
    ``cfg.extent`` centred on ``centre`` (map frame; default the origin), or over ``box``:
    (first cell (x, y, z) (3,), cell counts (X, Y, Z)). See the module docstring."""
    return cost_from_occupancy(*box_occupancy(vmap, cfg, free, centre, box), free, cfg)


def box_occupancy(vmap: VoxelMap, cfg: CostConfig, free: FreeSpace,
                  centre: Optional[Tensor] = None,
                  box: Optional[Tuple[Tensor, Tuple[int, int, int]]] = None,
                  section: Callable[[], ContextManager] = contextlib.nullcontext
                  ) -> Tuple[Tensor, Tensor, Tensor]:
    """The part of ``cost_field`` that reads the map and the free space: ``p`` and ``known``
    (``occupancy_probability``, its reads inside ``section()``) over the box, and its first
    cell (3,)."""
    res = free.resolution
    if box is None:
        if centre is None:
            centre = torch.zeros(3, device=vmap.device, dtype=vmap.dtype)
        ext = torch.tensor(cfg.extent, device=vmap.device, dtype=vmap.dtype)
        dims = tuple(int(math.ceil(float(e) / res)) for e in cfg.extent)
        lo = torch.round((centre.to(vmap.dtype) - 0.5 * ext - free.offset) / res).long()
    else:
        lo, dims = box[0].to(vmap.device), tuple(int(d) for d in box[1])
    p, known = occupancy_probability(vmap, cfg.unknown_occupancy, free, lo, dims, section)
    return p, known, lo


def cost_from_occupancy(p: Tensor, known: Tensor, lo: Tensor, free: FreeSpace,
                        cfg: CostConfig) -> CostField:
    """The rest of ``cost_field``, from ``box_occupancy``: the distance transform and the
    cost (it reads neither the map nor the free space)."""
    res = free.resolution
    obstacle = p >= cfg.occupied_threshold
    dist = distance_transform(obstacle, res, cfg.max_distance).to(p.dtype)
    cost = torch.exp(-(dist - cfg.robot_radius).clamp(min=0.0) / cfg.decay)
    cost = torch.where(obstacle, torch.ones_like(cost), cost)
    return CostField(origin=free.centres(lo), resolution=res, occupancy=p, known=known,
                     distance=dist, cost=cost, cfg=cfg)
