# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The map posterior q(M): occupancy and colour fields on a sparse, unbounded voxel-block map.

Occupancy is parameterised through a signed distance to the nearest surface along the viewing
direction: ``logit(x) = -slope * sdf(x)``, a TSDF-like ramp. Each voxel's q(sdf) is Gaussian with
mean ``sdf`` and std ``sdf_noise / sqrt(weight)``; given the poses of the fused frames, that is the
exact posterior under Gaussian signed-distance observations and a flat prior, so the map update is
closed form (the fast path of PRISM) and map uncertainty exists per cell. Unobserved voxels hold
``sdf = +truncation`` and ``weight = 0``: rays pass through them (free for rendering), while the
cost-to-go treats them as unknown.

Storage is sparse (``core.map.blocks``): blocks of ``block_size³`` voxels are allocated where a
keyframe updates voxels, anywhere in R³; voxel (i, j, k) has its centre at ``(i, j, k) *
resolution`` in the map frame. Queries are trilinear, exactly as a dense grid's (block seams
included), so both fields are defined at every point; space without blocks is free and unknown.
The signed-distance query averages over the observed corners of a cell only
(``MapConfig.observed_floor``): a surface at the edge of a fused view would otherwise be pulled
deeper by the free space assumed just beyond it.

Memory: past ``memory_mb`` of active blocks, whole regions (cubes of ``REGION`` blocks) farthest
from the drone move to a ``BlockSwap`` (disk, or host memory from a GPU) and come back,
bit-identical, when the drone is within ``keep_radius`` of them again (nearest first, as far as
the budget allows) or a keyframe updates them: the budget holds the regions nearest the drone.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, ContextManager, Dict, List, NamedTuple, Optional, Tuple, TypeVar

import numpy as np
import torch

from vssm_ros.config import MapConfig
from vssm_ros.core.map.blocks import CORNERS, BlockAtlas, block_bytes
from vssm_ros.core.map import integrate
from vssm_ros.core.map.index import LIMIT, MISSING, grid_cells, grid_coords, pack, unpack
from vssm_ros.core.map.state import TensorStream, load_map_state, map_state, map_stream
from vssm_ros.core.map.swap import BlockSwap, HostSwap
from vssm_ros.errors import StateError

Part = TypeVar('Part')
# Blocks read per part by ``read_voxels`` (the voxels of 512 blocks of 8³: a few ms of
# gathers on a CPU; a commit waiting for the map's lock waits for one part).
READ_PART_BLOCKS = 512

REGION = 4
"""Blocks per region edge: the unit of eviction (0.96 m at the default 3 cm voxels)."""


class VoxelMap:
    """Signed-distance, weight and colour fields on sparse voxel blocks.

    Args:
        cfg: the map parameters.
        device, dtype: where and how the active blocks live.
        swap: where evicted regions go (default: host memory).
    """

    def __init__(self, cfg: MapConfig, device: torch.device, dtype: torch.dtype,
                 swap: Optional[BlockSwap] = None):
        self.cfg = cfg
        self.device = torch.device(device)
        self.dtype = dtype
        self.resolution = float(cfg.resolution)
        self.B = int(cfg.block_size)
        self.budget_blocks = max(64, int(cfg.memory_mb * 2**20 // block_bytes(self.B, dtype)))
        self.region_blocks = REGION
        # Room for the budget and one keyframe's new blocks beyond it.
        self.atlas = BlockAtlas(self.B, self.device, dtype, int(self.budget_blocks * 1.25))
        self.swap = HostSwap() if swap is None else swap
        # region key -> (centre (metres), blocks)
        self._evicted: Dict[int, Tuple[np.ndarray, int]] = {}
        self.n_evictions = 0
        self.n_restores = 0
        # Distance (metres) within which every region was in memory at the last budget check.
        self.held_radius = float(cfg.keep_radius)
        # Seconds spent per fusion stage, summed over keyframes (``stats``).
        self.stage_s: Dict[str, float] = {}
        self.n_fused = 0
        # The dense grid of block slots (_block_slots), with the index's keys it was built from.
        self._block_grid: Optional[_SlotGrid] = None
        self.swap.clear()

    # ------------------------------------------------------------------ queries

    def _locate(self, points: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Slot and local continuous voxel coordinates in [0, B) of the block holding each
        point's cell. Shape: (N, 3) -> (N,), (N, 3)."""
        v = points / self.resolution
        blk = self._locate_blocks(points)
        local = v - blk.to(v.dtype) * self.B
        # Keep the atlas coordinate off the block's faces by a few ulps, so that its rounding
        # in grid_sample cannot pick a cell of the neighbouring slot (whose values would enter
        # the gradient); the gradient passes through unchanged.
        eps = self.atlas.coordinate_eps()
        inside = local.detach().clamp(eps, self.B - eps)
        return self._block_slots(blk), local + (inside - local.detach())

    def _locate_nograd(self, points: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``_locate`` for points given components first, without the straight-through
        gradient, its block arithmetic in floating point (block coordinates and grid cells
        are integers far below 2^24; int64 ops on (N, 3) are slow on the CPU): the tracker's
        hot path. Shape: (3, N) -> (N,), (3, N)."""
        v = points / self.resolution
        blk = torch.floor(v / self.B)
        eps = self.atlas.coordinate_eps()
        local = (v - blk * self.B).clamp_(eps, self.B - eps)
        return self._block_slots(blk, dim=0), local

    def _block_slots(self, blk: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """Slot of each block, 0 where unallocated (``BlockAtlas.slots_of``), read from a
        dense grid of slots over the allocated blocks' bounding box (rebuilt when the index
        changes): a gather instead of the index's search, which was about a tenth of a
        linearisation. The arithmetic is in floating point (block coordinates and grid cells
        are integers far below 2^24; int64 ops on (N, 3) are slow on the CPU).

        Shape: (N, 3) (or (3, N) with ``dim`` 0) integer-valued -> (N,) long.
        """
        keys = self.atlas.index.keys
        g = self._block_grid
        if g is None or g.keys is not keys:
            base, last, grid, stride = _block_grid(*self.atlas.index.items(), self.device)
            f = (lambda t: None if t is None else t.to(self.dtype))  # noqa: E731
            g = self._block_grid = _SlotGrid(keys, f(base), f(last), grid, f(stride))
        if g.grid is None:   # no block, or a bounding box too large for a dense grid
            return self.atlas.slots_of(blk.movedim(dim, -1).long())
        shape = [1] * blk.dim()
        shape[dim] = 3
        # The grid has an empty border: blocks beyond the box clamp onto it.
        b = torch.minimum((blk.to(self.dtype) - g.base.view(shape)).clamp_(min=0),
                          g.last.view(shape))
        cell = (b * g.stride.view(shape)).sum(dim=dim).long()
        return g.grid.index_select(0, cell.reshape(-1)).reshape(cell.shape)

    def _in_allocated_block(self, points: torch.Tensor) -> torch.Tensor:
        """Whether each point's block (as ``_locate`` finds it) is allocated. Shape: (N, 3) ->
        (N,) bool."""
        return self._block_slots(self._locate_blocks(points)) != 0

    def _locate_blocks(self, points: torch.Tensor) -> torch.Tensor:
        """The block of each point, as ``_locate`` finds it. Shape: (N, 3) -> (N, 3) long."""
        return torch.floor(points.detach() / self.resolution / self.B).long()

    def sdf_at(self, points: torch.Tensor, skip_empty: bool = False) -> torch.Tensor:
        """Posterior mean signed distance, interpolated over the observed corners of each
        point's cell (``MapConfig.observed_floor``). Shape: (N, 3) -> (N,).

        ``skip_empty``: interpolate only the points in allocated blocks (the others read the
        empty block's zeros, which is exact): much cheaper where most points lie in free
        space, as a full render's do, but it reads the count back to the host (renders, not
        the tracking loop).
        """
        if skip_empty:
            live = self._in_allocated_block(points).nonzero().squeeze(1)
            out = torch.zeros((points.shape[0], 2), device=points.device, dtype=points.dtype)
            slots, local = self._locate(points[live])
            out[live] = self.atlas.sample('dist_seen', slots, local).to(out.dtype)
        else:
            out = self.atlas.sample('dist_seen', *self._locate(points))
        floor = self.cfg.observed_floor
        if floor >= 1.0:
            return out[:, 0] + self.cfg.truncation
        # Unobserved corners hold 0 in the shifted field.
        return out[:, 0] / out[:, 1].clamp(min=floor) + self.cfg.truncation

    def logits_at(self, points: torch.Tensor, skip_empty: bool = False) -> torch.Tensor:
        """Posterior mean occupancy logits (``skip_empty``: see ``sdf_at``). Shape: (N, 3) ->
        (N,)."""
        return -self.cfg.logit_slope * self.sdf_at(points, skip_empty)

    def logits_and_grad(self, points: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``logits_at`` and its gradient w.r.t. the points, without autograd (the tracker's
        Jacobians), components first. Shape: (3, N) -> (N,), (3, N)."""
        slots, local = self._locate_nograd(points.detach())
        k = -self.cfg.logit_slope
        if self.device.type != 'cpu':
            return self._logits_and_grad_at(slots, local)
        # On the CPU, only the points in allocated blocks: about 40 % of a tracking frame's
        # samples (most of the coarse ones) lie in the empty block, whose logit is that of an
        # unobserved cell and whose gradient is 0. (On a GPU the compaction would read the
        # count back to the host every iteration.)
        live = (slots != 0).nonzero().squeeze(1)
        logits = torch.full_like(local[0], k * self.cfg.truncation)
        grad = torch.zeros_like(local)
        live_logits, live_grad = self._logits_and_grad_at(slots.index_select(0, live),
                                                          local.index_select(1, live))
        logits.index_copy_(0, live, live_logits)
        grad.index_copy_(1, live, live_grad)
        return logits, grad

    def _logits_and_grad_at(self, slots: torch.Tensor, local: torch.Tensor
                            ) -> Tuple[torch.Tensor, torch.Tensor]:
        """``logits_and_grad`` at located points. Shape: (N,), (3, N) -> (N,), (3, N)."""
        out, d = self.atlas.sample_with_grad('dist_seen', slots, local)
        k = -self.cfg.logit_slope
        floor = self.cfg.observed_floor
        if floor >= 1.0:
            return k * (out[0] + self.cfg.truncation), (k / self.resolution) * d[0]
        seen = out[1].clamp(min=floor)
        sdf = out[0] / seen
        # d(a / max(s, f)) = da / max(s, f) - a / max(s, f)² ds where s >= f (clamp's gradient)
        ds = d[1] * (out[1] >= floor).to(d.dtype)
        grad = (d[0] - sdf * ds) * ((k / self.resolution) / seen)
        return k * (sdf + self.cfg.truncation), grad

    def intensity_and_grad(self, points: torch.Tensor
                           ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Grey intensity (the mean of ``color_at``'s channels), its gradient w.r.t. the
        points without autograd, and the colour-observed share (``color_and_share``),
        components first.

        Shape: (3, N) -> (N,), (3, N), (N,).
        """
        slots, local = self._locate_nograd(points.detach())
        out, d = self.atlas.sample_with_grad('color_seen', slots, local)
        share = out[3]
        s = share.clamp(min=1e-6)
        inten = out[:3].mean(dim=0) / s
        ds = d[3] * (share >= 1e-6).to(d.dtype)
        grad = (d[:3].mean(dim=0) - inten * ds) / (s * self.resolution)
        return inten, grad, share

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
        slots, local = self._locate(points)
        out = self.atlas.sample('color_seen', slots, local)
        share = out[:, 3]
        return out[:, :3] / share.clamp(min=1e-6)[:, None], share

    def weight_at(self, points: torch.Tensor) -> torch.Tensor:
        """Accumulated observation weight (0: never observed). Shape: (N, 3) -> (N,)."""
        slots, local = self._locate(points)
        return self.atlas.sample('weight', slots, local)[:, 0]

    def anchor_at(self, points: torch.Tensor) -> torch.Tensor:
        """Position and rotation variance (m², rad²) of the poses that fused the map near each
        point (per block), weighted by their observation weights; NaN where nothing was fused.

        Shape: (N, 3) -> (N, 2).
        """
        vox = torch.round(points / self.resolution).long()
        slot = self.atlas.slots_of(torch.div(vox, self.B, rounding_mode='floor'))
        w = self.atlas.anchor_weight[slot]
        var = self.atlas.anchor_sum[slot] / w.clamp(min=1e-12)[:, None]
        return torch.where((w > 0)[:, None], var, torch.full_like(var, float('nan')))

    # ------------------------------------------------------------------ update

    def fuse(self, depth: torch.Tensor, rgb: Optional[torch.Tensor], K: torch.Tensor,
             T_world_cam: torch.Tensor, depth_sigma: Optional[torch.Tensor] = None,
             max_pixels: int = 20000, pose_var: Optional[torch.Tensor] = None,
             noise_scale: float = 1.0) -> int:
        """Closed-form posterior update with one depth image (projective signed distances,
        see ``core.map.fusion.observe``): each voxel's weighted mean of its observations.

        Args:
            depth: metres, NaN invalid. Shape: (H, W).
            rgb: colour in [0, 1] or None. Shape: (H, W, 3).
            K: intrinsics. Shape: (3, 3).
            T_world_cam: camera pose. Shape: (4, 4).
            depth_sigma: depth noise std per pixel (None: weight 1). Shape: (H, W).
            max_pixels: rays used to find candidate voxels.
            pose_var: position and rotation variance (m², rad²) of the camera pose in the
                world, remembered by the blocks of the updated voxels. Shape: (2,).
            noise_scale: the camera's depth noise over ``depth_sigma``'s, as measured
                (widens the colour band; see ``fusion.observe``).
        Returns:
            The number of voxels updated.
        """
        job = integrate.prepare(self, depth, rgb, K, T_world_cam, depth_sigma, max_pixels,
                                pose_var, noise_scale)
        return 0 if job is None else integrate.commit(self, job)

    def add_stage_time(self, **seconds: float) -> None:
        """Add to the per-stage time sums of map updates (``stats`` reports per keyframe)."""
        for k, v in seconds.items():
            self.stage_s[k] = self.stage_s.get(k, 0.0) + v

    def plan_blocks(self, blk: torch.Tensor) -> BlockPlan:
        """The distinct blocks of a keyframe's voxel copies and their slots as the map is now
        (read-only: the mapping thread plans beside tracking; ``activate_blocks`` writes).

        Shape: blk (M, 3) block coordinates.
        """
        # De-duplicate on a boolean grid over the blocks' bounding box (a keyframe's blocks
        # span a few metres): cheaper than sorting M keys, and it maps rows back for free.
        lo = blk.min(dim=0).values
        ext = blk.max(dim=0).values - lo + 1
        rel = blk - lo
        cell = grid_cells(rel, ext)
        n_cells = int(ext.prod())
        mark = torch.zeros(n_cells, dtype=torch.bool, device=blk.device)
        mark[cell] = True
        ucell = mark.nonzero().squeeze(1)
        coords = grid_coords(ucell, ext, lo)
        row = torch.zeros(n_cells, dtype=torch.long, device=blk.device)
        row[ucell] = torch.arange(ucell.shape[0], device=blk.device)
        return BlockPlan(coords, row.index_select(0, cell), self.atlas.slots_of(coords))

    def activate_blocks(self, plan: BlockPlan, ready: Optional[torch.Tensor] = None
                        ) -> torch.Tensor:
        """Make active the blocks of a plan: take back evicted regions (also those of the next
        blocks, whose first voxels fill new aprons) and allocate missing blocks. ``ready``:
        the slots ``BlockAtlas.prepare_new`` readied for the plan's missing blocks (zeroed,
        aprons filled), used as they are where nothing was taken back meanwhile. Returns
        their slots now (U,)."""
        coords = plan.coords
        keys = pack(coords)
        if self._evicted:
            near = (coords[:, None, :] + CORNERS.to(coords.device)).reshape(-1, 3)
            regions = torch.unique(pack(torch.div(near, REGION, rounding_mode='floor')))
            back = [r for r in regions.tolist() if r in self._evicted]
            if back:
                self._restore(back)
                ready = None   # the blocks their aprons were filled from may have changed
        slots = self.atlas.index.lookup(keys)
        new = slots == MISSING
        _check_range(coords[new])
        slots[new] = taken = self.atlas.allocate(keys[new], ready)
        if ready is None or not torch.equal(taken, ready):
            self.atlas.refresh_apron(coords[new], taken)
        return slots

    # ------------------------------------------------------------------ memory budget

    def restore_near(self, position: np.ndarray) -> int:
        """Take back the evicted regions within ``keep_radius`` of a position (map frame,
        metres), nearest first, as long as the budget holds them, making room by evicting
        active regions farther away (by more than a region: no back and forth). The budget
        thus holds the regions nearest the drone. Returns the number of regions restored."""
        near = sorted((float(np.linalg.norm(c - position)), k, n)
                      for k, (c, n) in self._evicted.items())
        near = [x for x in near if x[0] <= self.cfg.keep_radius]
        active = self._active_regions(position) if near else []   # farthest first
        taken = []
        for dist, key, n in near:
            room = self.budget_blocks - len(self.atlas)
            out = []
            while room < n and active and active[0][0] > dist + self.region_edge():
                d_far, k_far, n_far = active.pop(0)
                out.append(k_far)
                room += n_far
            if out:
                self._evict(out)
            if room < n:
                break
            self._restore([key])
            taken.append(key)
        # The nearest region left on disk bounds what the budget holds.
        rest = near[len(taken):]
        self.held_radius = rest[0][0] if rest else float(self.cfg.keep_radius)
        return len(taken)

    def enforce_budget(self, position: np.ndarray) -> int:
        """Evict the regions farthest from a position while the active blocks exceed the
        budget, down to 80 % of it; the regions within two region edges of the position (where
        the next keyframes fuse) stay. Returns the blocks evicted."""
        if len(self.atlas) <= self.budget_blocks:
            return 0
        excess = len(self.atlas) - int(0.8 * self.budget_blocks)
        chosen, freed = [], 0
        for dist, key, n in self._active_regions(position):
            if freed >= excess or dist <= 2 * self.region_edge():
                break
            chosen.append(key)
            freed += n
        self._evict(chosen)
        return freed

    def _active_regions(self, position: np.ndarray) -> List[Tuple[float, int, int]]:
        """(distance of the centre, region key, blocks) of the regions in the atlas, farthest
        first."""
        coords, _ = self.atlas.blocks()
        region = torch.div(coords, REGION, rounding_mode='floor')
        rkeys, counts = torch.unique(pack(region), return_counts=True)
        centres = (unpack(rkeys).double() + 0.5).cpu().numpy() * self.region_edge()
        dist = np.linalg.norm(centres - np.asarray(position, dtype=np.float64), axis=1)
        order = np.argsort(-dist)
        return [(float(dist[i]), int(rkeys[i]), int(counts[i])) for i in order]

    def region_edge(self) -> float:
        """A region's edge (metres)."""
        return REGION * self.B * self.resolution

    def _evict(self, regions: List[int]) -> None:
        if not regions:
            return
        keys_all, slots_all = self.atlas.index.items()
        region_keys = pack(torch.div(unpack(keys_all), REGION, rounding_mode='floor'))
        for r in regions:
            sel = region_keys == r
            keys, slots = keys_all[sel], slots_all[sel]
            payload = self.atlas.read_blocks(slots)
            payload['keys'] = keys
            payload['anchor_sum'] = self.atlas.anchor_sum[slots]
            payload['anchor_weight'] = self.atlas.anchor_weight[slots]
            self.put_evicted(r, {k: v.cpu() for k, v in payload.items()})
        for r in regions:
            self.atlas.release(keys_all[region_keys == r])
        self.n_evictions += len(regions)

    def put_evicted(self, region: int, payload: Dict[str, torch.Tensor]) -> None:
        """Put a region in the swap: its padded blocks (``BlockAtlas.read_blocks``), ``keys``
        and anchors, as CPU tensors; it is then one of the map's evicted regions."""
        self.swap.put(region, payload)
        centre = (unpack(torch.tensor(region)).double().numpy() + 0.5) * self.region_edge()
        self._evicted[region] = (centre, int(payload['keys'].numel()))

    def _restore(self, regions) -> None:
        for r in regions:
            p = self.swap.get(r)
            slots = self.atlas.allocate(p['keys'].to(self.device))
            self.atlas.write_blocks(slots, p, p['anchor_sum'], p['anchor_weight'])
            self.swap.drop(r)
            del self._evicted[r]
        self.n_restores += len(regions)

    def stats(self) -> Dict[str, float]:
        """Block counts and bytes: active (in the atlas), evicted (in the swap), total; and
        ``held_radius_m``, the distance from the drone within which every mapped region was in
        memory at the last keyframe (below ``keep_radius`` when the budget cannot hold it)."""
        bpb = self.atlas.bytes_per_block()
        active = len(self.atlas)
        evicted = self.evicted_blocks()
        return {'active_blocks': active, 'evicted_blocks': evicted,
                'total_blocks': active + evicted, 'active_bytes': active * bpb,
                'evicted_bytes': self.swap.nbytes(), 'reserved_bytes': self.atlas.nbytes(),
                'budget_blocks': self.budget_blocks, 'evicted_regions': len(self._evicted),
                'evictions': self.n_evictions, 'restores': self.n_restores,
                'keyframes_fused': self.n_fused, 'held_radius_m': self.held_radius,
                'ms_per_keyframe': {k: 1e3 * v / max(self.n_fused, 1)
                                    for k, v in self.stage_s.items()}}

    # ------------------------------------------------------------------ export

    def read_voxels(self, read: Callable[[torch.Tensor, torch.Tensor], Part],
                    centre: Optional[torch.Tensor] = None, radius: Optional[float] = None,
                    section: Callable[[], ContextManager] = contextlib.nullcontext
                    ) -> List[Part]:
        """``read(vox, flat)`` over the voxels of the active blocks (of those within
        ``radius`` of ``centre`` if given): their (x, y, z) coordinates (N, 3) and flat atlas
        cells (N,), ``READ_PART_BLOCKS`` blocks at a time, each part inside ``section()`` (the
        engine's map read lock: a keyframe's commit then waits for one part, not for the
        whole read). A block released between two parts reads as the empty block (zeros).
        Returns the parts' results in block order."""
        with section():
            coords = self._near_blocks(centre, radius)
        parts = []
        for blocks in coords.split(READ_PART_BLOCKS):
            with section():
                parts.append(read(*self._block_voxels(blocks, self.atlas.slots_of(blocks))))
        return parts

    def _near_blocks(self, centre: Optional[torch.Tensor], radius: Optional[float]
                     ) -> torch.Tensor:
        """The active blocks (within ``radius`` of ``centre`` if given). Shape: (N, 3)."""
        coords, _ = self.atlas.blocks()
        if centre is not None and radius is not None:
            mid = (coords.to(self.dtype) + 0.5) * (self.B * self.resolution)
            coords = coords[torch.linalg.norm(mid - centre.to(self.dtype), dim=-1) <= radius]
        return coords

    def _block_voxels(self, coords: torch.Tensor, slots: torch.Tensor
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The voxels of blocks at their slots: coordinates (N B³, 3), flat cells (N B³,)."""
        r = torch.arange(self.B, device=self.device)
        local = torch.stack(torch.meshgrid(r, r, r, indexing='ij'), -1).reshape(-1, 3).flip(-1)
        vox = (coords[:, None, :] * self.B + local).reshape(-1, 3)
        # A flat atlas index is affine in the local cell: a block's corner plus the cell's
        # offset (the slot arithmetic once per block, not once per voxel).
        corner = self.atlas.flat_cells(slots, torch.zeros_like(coords))
        offset = self.atlas.flat_cells(torch.zeros_like(local[:, 0]), local)
        return vox, (corner[:, None] + offset[None, :]).reshape(-1)

    def surface_points(self, min_weight: float = 1.0, centre: Optional[torch.Tensor] = None,
                       radius: Optional[float] = None, evicted: bool = False,
                       section: Callable[[], ContextManager] = contextlib.nullcontext
                       ) -> Dict[str, torch.Tensor]:
        """Voxels near the surface (|sdf| < 0.75 voxel) as a point cloud: of the active blocks
        (those within ``radius`` of ``centre`` if given; read in parts, each inside
        ``section()``: ``read_voxels``), and of the evicted ones too with ``evicted`` (read
        back one region at a time, the active set unchanged; inside one ``section()``).

        Returns: dict with ``xyz`` (N, 3), ``rgb`` (N, 3) in [0, 1], ``occupancy`` (N,)
        probability, ``logit_std`` (N,).
        """
        parts = self.read_voxels(
            lambda vox, flat: self._surface(vox, self.atlas.view('dist_seen')[0, flat],
                                            self.atlas.view('weight')[0, flat],
                                            self.atlas.view('color_seen')[:3, flat].t(),
                                            min_weight), centre, radius, section)
        if evicted:
            with section():
                parts += self._evicted_surface(min_weight)
        return {k: torch.cat([q[k] for q in parts]) for k in parts[0]}

    def _evicted_surface(self, min_weight: float) -> List[Dict[str, torch.Tensor]]:
        """``surface_points``' parts of the evicted regions."""
        parts = []
        for r in self.evicted_regions():
            p = self.swap.get(r)
            B = self.B
            r_ = torch.arange(B)
            local = torch.stack(torch.meshgrid(r_, r_, r_, indexing='ij'), -1).flip(-1)
            v = (unpack(p['keys'])[:, None, None, None, :] * B + local).reshape(-1, 3)
            col = p['color_seen'][:, :3, :B, :B, :B].permute(0, 2, 3, 4, 1).reshape(-1, 3)
            parts.append(self._surface(v.to(self.device),
                                       p['dist_seen'][:, 0, :B, :B, :B].reshape(-1).to(
                                           self.device, self.dtype),
                                       p['weight'][:, 0, :B, :B, :B].reshape(-1).to(
                                           self.device, self.dtype),
                                       col.to(self.device, self.dtype), min_weight))
        return parts

    def _surface(self, vox: torch.Tensor, dist: torch.Tensor, weight: torch.Tensor,
                 color: torch.Tensor, min_weight: float) -> Dict[str, torch.Tensor]:
        """Surface points among voxels (N, 3) with shifted distance (N,), weight (N,) and
        colour (N, 3)."""
        cfg = self.cfg
        sdf = dist + cfg.truncation
        keep = (weight >= min_weight) & (sdf.abs() < 0.75 * self.resolution)
        weight, sdf = weight[keep], sdf[keep]
        return {
            'xyz': vox[keep].to(self.dtype) * self.resolution,
            'rgb': color[keep].clamp(0, 1),
            'occupancy': torch.sigmoid(-cfg.logit_slope * sdf),
            'logit_std': cfg.logit_slope * cfg.sdf_noise / weight.sqrt(),
        }

    def evicted_regions(self) -> List[int]:
        """Keys of the regions now in the swap."""
        return list(self._evicted)

    def has_evicted(self) -> bool:
        """Whether any region is in the swap (no list built: asked every frame)."""
        return bool(self._evicted)

    def evicted_blocks(self) -> int:
        """Blocks in the swap."""
        return sum(n for _, n in self._evicted.values())

    def restore_all(self) -> None:
        """Take back every evicted region (before a whole-map export)."""
        self._restore(self.evicted_regions())

    def state_dict(self) -> Dict[str, torch.Tensor]:
        """Every block, active and evicted, without aprons (``core.map.state.map_state``)."""
        return map_state(self)

    def state_stream(self) -> TensorStream:
        """``state_dict``'s tensors a part at a time (``core.map.state.map_stream``): for
        saving a map whose regions are on disk without holding all of it in memory."""
        return map_stream(self)

    def load_state_dict(self, state: Dict[str, torch.Tensor],
                        position: Optional[np.ndarray] = None) -> None:
        """Restore blocks saved by ``state_dict``; a map over the budget, with the drone's
        ``position`` (metres), is loaded within it (``core.map.state.load_map_state``)."""
        load_map_state(self, state, position)

    def reset(self) -> None:
        """Forget everything."""
        self.stage_s.clear()
        self.n_fused = 0
        self._block_grid = None
        self.atlas.clear()
        self.swap.clear()
        self._evicted.clear()
        self.held_radius = float(self.cfg.keep_radius)


@dataclass
class BlockPlan:
    """The blocks a keyframe writes (``VoxelMap.plan_blocks``).

    Attributes:
        coords: the distinct blocks. Shape: (U, 3).
        rows: each voxel copy's block, an index into ``coords``. Shape: (M,).
        slots: the blocks' slots when planned, 0 where not active. Shape: (U,).
    """

    coords: torch.Tensor
    rows: torch.Tensor
    slots: torch.Tensor


class _SlotGrid(NamedTuple):
    """``_block_grid``'s grid of slots, built from the index's ``keys``, with its base, last
    cell and strides in the map's floating point dtype (``VoxelMap._block_slots``)."""

    keys: torch.Tensor
    base: Optional[torch.Tensor]
    last: Optional[torch.Tensor]
    grid: Optional[torch.Tensor]
    stride: Optional[torch.Tensor]


BLOCK_GRID_CELLS = 1 << 21
"""Largest dense grid of block slots (cells, 16 MB) that queries build; a larger bounding box
of the allocated blocks is searched in the index instead."""


def _block_grid(keys: torch.Tensor, slots: torch.Tensor, device: torch.device) -> Tuple:
    """(the border's first block (3,), the last cell (3,), the flat slot grid ((Z + 2) (Y + 2)
    (X + 2),) of the allocated blocks with 0 elsewhere, its strides (3,)) over their bounding
    box and an empty border around it; the grid is None when there is no block or the box
    exceeds ``BLOCK_GRID_CELLS``. Shapes and strides are computed here once, not per query."""
    if keys.shape[0] == 0:
        return None, None, None, None
    coords = unpack(keys)
    base = coords.min(dim=0).values - 1
    side = coords.max(dim=0).values - base + 2
    if int(side.prod()) > BLOCK_GRID_CELLS:
        return base, side - 1, None, None
    stride = torch.stack((torch.ones_like(side[0]), side[0], side[0] * side[1]))
    grid = torch.zeros(int(side.prod()), dtype=torch.long, device=device)
    grid[((coords - base) * stride).sum(dim=-1)] = slots
    return base, side - 1, grid, stride


def _check_range(coords: torch.Tensor) -> None:
    if coords.numel() and bool((coords.abs() > LIMIT).any()):
        raise StateError('the map would grow beyond ±250 km at this resolution: the pose has '
                         'diverged')
