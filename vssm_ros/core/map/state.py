# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The map as tensors and back: every block, active and evicted, without its apron (the
apron is rebuilt from the neighbouring blocks on loading). Checked on loading: the fields, their
shapes for the config's block size, and no block twice."""

from __future__ import annotations

from typing import Dict, Optional

import torch

from vssm_ros.core.map.blocks import CHANNELS
from vssm_ros.core.map.index import MISSING, pack, unpack
from vssm_ros.errors import StateError


def map_state(vmap) -> Dict[str, torch.Tensor]:
    """Every block, active and evicted, without aprons: ``blocks`` (N, 3) int64
    coordinates, ``sdf`` (N, B, B, B) metres and ``weight``, ``color`` (N, 3, B, B, B),
    ``color_weight``, ``anchor_sum`` (N, 2), ``anchor_weight`` (N,); arrays z, y, x;
    ``slot`` (N,): the atlas slot of an active block (-1: evicted), kept on loading so
    that the map renders bit-identically."""
    parts = []
    keys, slots = vmap.atlas.index.items()
    active = vmap.atlas.read_blocks(slots)
    active.update(keys=keys, anchor_sum=vmap.atlas.anchor_sum[slots],
                  anchor_weight=vmap.atlas.anchor_weight[slots], slot=slots)
    parts.append({k: v.cpu() for k, v in active.items()})
    for r in vmap.evicted_regions():
        p = dict(vmap.swap.get(r))
        p['slot'] = torch.full_like(p['keys'], MISSING)
        parts.append(p)
    B = vmap.B
    cat = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    core = {k: v[:, :, :B, :B, :B] for k, v in cat.items() if k in CHANNELS}
    return {'blocks': unpack(cat['keys']), 'slot': cat['slot'],
            'sdf': core['dist_seen'][:, 0] + vmap.cfg.truncation,
            'weight': core['weight'][:, 0].clone(),
            'color': core['color_seen'][:, :3].clone(),
            'color_weight': core['color_weight'][:, 0].clone(),
            'anchor_sum': cat['anchor_sum'].clone(), 'anchor_weight': cat['anchor_weight']
            .clone()}


def load_map_state(vmap, state: Dict[str, torch.Tensor]) -> None:
    """Restore blocks saved by ``state_dict`` (everything becomes active; the budget is
    enforced at the next keyframe)."""
    B = vmap.B
    shapes = {'blocks': (3,), 'sdf': (B, B, B), 'weight': (B, B, B), 'color': (3, B, B, B),
              'color_weight': (B, B, B), 'anchor_sum': (2,), 'anchor_weight': ()}
    n = None
    for k, shape in shapes.items():
        if k not in state:
            raise StateError(f'map field {k!r} is missing from the saved state')
        t = state[k]
        if tuple(t.shape[1:]) != shape or (n is not None and t.shape[0] != n):
            raise StateError(f'map field {k!r} has shape {tuple(t.shape)}, expected '
                             f'(N, {", ".join(map(str, shape))}) with block_size {B}: '
                             f'load it with the config it was made with')
        n = t.shape[0]
    vmap.reset()
    coords = state['blocks'].to(vmap.device, torch.long)
    keys = pack(coords)
    if torch.unique(keys).numel() != keys.numel():
        raise StateError('the saved map lists a block twice')
    slots = _place(vmap, keys, state.get('slot'))
    A = B + 1
    z = dict(device=vmap.device, dtype=vmap.dtype)
    data = {k: torch.zeros((n, c, A, A, A), **z) for k, c in CHANNELS.items()}
    sdf = state['sdf'].to(**z) - vmap.cfg.truncation
    w, cw = state['weight'].to(**z), state['color_weight'].to(**z)
    data['dist_seen'][:, 0, :B, :B, :B] = sdf
    data['dist_seen'][:, 1, :B, :B, :B] = (w > 0).to(vmap.dtype)
    data['weight'][:, 0, :B, :B, :B] = w
    data['color_seen'][:, :3, :B, :B, :B] = state['color'].to(**z)
    data['color_seen'][:, 3, :B, :B, :B] = (cw > 0).to(vmap.dtype)
    data['color_weight'][:, 0, :B, :B, :B] = cw
    vmap.atlas.write_blocks(slots, data, state['anchor_sum'], state['anchor_weight'])
    vmap.atlas.refresh_apron(coords, slots)


def _place(vmap, keys: torch.Tensor, saved: Optional[torch.Tensor]) -> torch.Tensor:
    """Slots for loaded blocks: their saved slots where valid, free ones otherwise."""
    slots = torch.full_like(keys, MISSING)
    if saved is not None and saved.shape == keys.shape:
        saved = saved.to(keys.device, torch.long)
        keep = saved > 0
        if torch.unique(saved[keep]).numel() == int(keep.sum()):
            vmap.atlas.allocate_at(keys[keep], saved[keep])
            slots[keep] = saved[keep]
    rest = slots == MISSING
    slots[rest] = vmap.atlas.allocate(keys[rest])
    return slots
