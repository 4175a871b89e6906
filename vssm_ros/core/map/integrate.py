# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""One keyframe into the map in two steps (``VoxelMap.fuse`` runs them back to back).

- ``prepare`` reads the map and writes nothing: the candidate voxels and their projective
  signed distances (``core.map.fusion.observe``), the padded blocks that hold them and the
  atlas cells of every copy, and each voxel's new posterior (the closed-form update of its
  mean, weight and colour) against the map as it is. A voxel whose block does not exist yet
  reads the empty block's zeros, which is what its new block holds once allocated, so the
  result is the same as reading after the allocation.
- ``commit`` changes the map: takes back evicted regions the keyframe touches, allocates the
  missing blocks with their aprons (in the free slots that ``prepare`` zeroed and filled the
  aprons of, where those are still the ones it takes), finds the cells of the copies in those
  blocks and writes the new values into every copy of each voxel (the colour only where it
  changes). The map must not change between the two (the engine commits a keyframe before
  it prepares the next).

The split lets the engine's asynchronous mapping (``core.mapping``) run ``prepare`` beside
tracking and lock the map only for ``commit``. Where the keyframe touches an evicted region,
``prepare`` leaves the values to ``commit`` (the region must be taken back first).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, Optional, Tuple

import torch

from vssm_ros.core.map.blocks import CORNERS, containing_blocks
from vssm_ros.core.map.fusion import Observation, observe
from vssm_ros.core.map.index import pack

if TYPE_CHECKING:   # voxel_map imports this module
    from vssm_ros.core.map.voxel_map import BlockPlan

Values = Dict[str, torch.Tensor]
COLOR_CHANNELS = ('color_seen', 'color_weight')
"""The channel groups a voxel's colour update writes (only where its colour changes)."""


@dataclass
class FusionJob:
    """A prepared keyframe update.

    Attributes:
        obs: the voxels' observations. Shape: (M, ...).
        local: the copy's cell in its padded block. Shape: (C, 3).
        rows: the voxel of each copy. Shape: (C,).
        plan: the copies' blocks, and their slots when prepared (``VoxelMap.plan_blocks``).
        slots: the slots ``flat`` is in: the plan's, and for its missing blocks those
            readied for them (``BlockAtlas.prepare_new``), or the empty block. Shape: (U,).
        ready: the slots readied for the missing blocks, or None. Shape: (U',).
        flat: each copy's flat atlas cell when prepared. Shape: (C,).
        rgb: the keyframe's colour in [0, 1], or None. Shape: (H, W, 3).
        pose_var: position and rotation variance of the keyframe pose, or None. Shape: (2,).
        values: new channel values per copy (name -> (channels, C)), the colour channels'
            only for the copies in ``color_copies``; None: computed at commit.
        weight: the observations' weights after freezing (M,); None with ``values``.
        color_copies: the copies whose colour changes (the others keep theirs, so their
            colour is not written: about a third of a keyframe's voxels are near the
            surface). Shape: (C',).
        seconds: time spent so far per stage (observe, allocate, update).
    """

    obs: Observation
    local: torch.Tensor
    rows: torch.Tensor
    plan: BlockPlan
    slots: torch.Tensor
    ready: Optional[torch.Tensor]
    flat: torch.Tensor
    rgb: Optional[torch.Tensor]
    pose_var: Optional[torch.Tensor]
    values: Optional[Values] = None
    weight: Optional[torch.Tensor] = None
    color_copies: Optional[torch.Tensor] = None
    seconds: Tuple[float, float, float] = (0.0, 0.0, 0.0)


def prepare(vmap, depth: torch.Tensor, rgb: Optional[torch.Tensor], K: torch.Tensor,
            T_world_cam: torch.Tensor, depth_sigma: Optional[torch.Tensor], max_pixels: int,
            pose_var: Optional[torch.Tensor], noise_scale: float = 1.0
            ) -> Optional[FusionJob]:
    """The update of ``vmap`` (a ``VoxelMap``) with one keyframe, read-only (see the module
    docstring; the arguments are ``VoxelMap.fuse``'s). None when the image has no valid
    depth."""
    t0 = time.perf_counter()
    obs = observe(depth, K, T_world_cam, vmap.cfg, depth_sigma, max_pixels, noise_scale)
    if obs is None or obs.vox.shape[0] == 0:
        return None
    blk, local, rows = containing_blocks(obs.vox, vmap.B)
    t1 = time.perf_counter()
    plan = vmap.plan_blocks(blk)
    # The free slots the commit will take for the missing blocks, zeroed and their aprons
    # filled here, beside tracking; a voxel of a new block reads zeros there as well.
    new = (plan.slots == 0).nonzero().squeeze(1)
    ready = vmap.atlas.prepare_new(plan.coords.index_select(0, new))
    slots = plan.slots if ready is None else plan.slots.index_copy(0, new, ready)
    flat = vmap.atlas.flat_cells(slots[plan.rows], local)
    job = FusionJob(obs, local, rows, plan, slots, ready, flat, rgb, pose_var)
    t2 = time.perf_counter()
    if not _touches_evicted(vmap, plan.coords):
        values, job.weight, changed = new_values(vmap, obs, flat[:obs.vox.shape[0]], rgb)
        job.values, job.color_copies = _per_copy(values, rows, changed)
    job.seconds = (t1 - t0, t2 - t1, time.perf_counter() - t2)
    return job


def commit(vmap, job: FusionJob) -> int:
    """Write a prepared update into ``vmap``; returns the number of voxels updated."""
    t0 = time.perf_counter()
    n = job.obs.vox.shape[0]
    atlas, plan = vmap.atlas, job.plan
    slots = vmap.activate_blocks(plan, job.ready)
    flat = job.flat
    if not torch.equal(slots, job.slots):   # blocks not where prepared: their cells again
        moved = (slots != job.slots)[plan.rows].nonzero().squeeze(1)
        flat = flat.clone()
        flat[moved] = atlas.flat_cells(slots[plan.rows[moved]], job.local[moved])
    t1 = time.perf_counter()
    values, wgt, copies = job.values, job.weight, job.color_copies
    if values is None:
        values, wgt, changed = new_values(vmap, job.obs, flat[:n], job.rgb)
        values, copies = _per_copy(values, job.rows, changed)
    if job.pose_var is not None:
        slot = slots[plan.rows[:n]]
        atlas.anchor_weight.index_add_(0, slot, wgt)
        pose_var = job.pose_var.to(vmap.dtype)
        # Column by column: the same sums, a third of the time of rows of two on the CPU.
        for i in range(pose_var.shape[0]):
            atlas.anchor_sum[:, i].index_add_(0, slot, wgt * pose_var[i])
    color_flat = None if copies is None else flat.index_select(0, copies)
    for name, val in values.items():
        cells = color_flat if name in COLOR_CHANNELS and copies is not None else flat
        atlas.view(name).index_copy_(1, cells, val)   # (index_put is slower on CPU)
    observe_s, allocate_s, update_s = job.seconds
    vmap.add_stage_time(fuse_observe=observe_s, fuse_allocate=allocate_s + t1 - t0,
                        fuse_update=update_s + time.perf_counter() - t1)
    vmap.n_fused += 1
    return int(n)


def new_values(vmap, obs: Observation, home: torch.Tensor, rgb: Optional[torch.Tensor]
               ) -> Tuple[Values, torch.Tensor, Optional[torch.Tensor]]:
    """Each voxel's posterior after the observations (its weighted mean of signed distances,
    weight, and colour near the surface), from its current values at the flat atlas cells
    ``home`` (M,). Returns the channel values (name -> (channels, M)), the observation
    weights after freezing (M,) and whether each voxel's colour changes (M,) (None without
    colour: the colour channels are then not among the values)."""
    cfg, atlas = vmap.cfg, vmap.atlas
    wgt = obs.weight
    W_old = atlas.view('weight')[0].index_select(0, home)
    if cfg.freeze_weight > 0:
        wgt = torch.where(W_old >= cfg.freeze_weight, torch.zeros_like(wgt), wgt)
    s_old = atlas.view('dist_seen')[0].index_select(0, home) + cfg.truncation
    W_new = W_old + wgt
    W_safe = torch.where(W_new > 0, W_new, torch.ones_like(W_new))
    s_new = torch.where(W_new > 0, (s_old * W_old + obs.sdf * wgt) / W_safe, s_old)
    seen = (W_new > 0).to(vmap.dtype)
    values = {'dist_seen': torch.stack((s_new - cfg.truncation, seen)),
              'weight': W_new.clamp(max=cfg.max_weight)[None]}
    if rgb is not None:
        # Colour only near the surface, as this image sees it or as the map now places it;
        # other voxels keep theirs. (With depth noise near the band, the image alone leaves
        # voxels on the surface without colour more often than not.)
        near = (obs.sdf.abs() < obs.color_band) | (s_new.abs() < obs.color_band)
        cw = torch.where(near, wgt, torch.zeros_like(wgt))
        col = rgb.reshape(-1, 3).index_select(0, obs.pix).to(vmap.dtype)
        cw_old = atlas.view('color_weight')[0].index_select(0, home)
        cw_new = cw_old + cw
        cw_safe = torch.where(cw_new > 0, cw_new, torch.ones_like(cw_new))
        c_old = atlas.view('color_seen')[:3].index_select(1, home)
        c_new = torch.where(cw > 0, (c_old * cw_old + col.t() * cw) / cw_safe, c_old)
        values['color_seen'] = torch.cat((c_new, (cw_new > 0)[None].to(vmap.dtype)))
        values['color_weight'] = cw_new.clamp(max=cfg.max_weight)[None]
        return values, wgt, cw > 0
    return values, wgt, None


def _per_copy(values: Values, rows: torch.Tensor, color_changed: Optional[torch.Tensor]
              ) -> Tuple[Values, Optional[torch.Tensor]]:
    """The voxels' values per copy (``rows``: the voxel of each copy), the colour channels
    only for the copies whose colour changes; returns them and those copies (None: no colour
    channels). Shape: (C,), (M,) -> name -> (channels, C or C'), (C',)."""
    out = {name: val.index_select(1, rows) for name, val in values.items()
           if name not in COLOR_CHANNELS}
    if color_changed is None:
        return out, None
    copies = color_changed.index_select(0, rows).nonzero().squeeze(1)
    color_rows = rows.index_select(0, copies)
    for name in COLOR_CHANNELS:
        out[name] = values[name].index_select(1, color_rows)
    return out, copies


def _touches_evicted(vmap, blk: torch.Tensor) -> bool:
    """Whether any block (or the blocks whose apron it fills) is in an evicted region."""
    if not vmap.has_evicted():
        return False
    coords = torch.unique(blk, dim=0)
    near = (coords[:, None, :] + CORNERS.to(coords.device)).reshape(-1, 3)
    regions = torch.unique(pack(torch.div(near, vmap.region_blocks, rounding_mode='floor')))
    evicted = set(vmap.evicted_regions())
    return any(r in evicted for r in regions.tolist())
