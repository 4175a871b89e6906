# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The map as tensors and back: every block, active and evicted, without its apron (the
apron is rebuilt from the neighbouring blocks on loading). Checked on loading: the fields, their
shapes for the config's block size, and no block twice.

Saving streams: ``map_stream`` describes the tensors (names, dtypes, shapes) and yields them a
part at a time (a chunk of the active blocks, then one evicted region), so that a map whose
regions are on disk is written with one region in memory at a time instead of all of it
(a map of 6,464 blocks, 92 MB of them on disk, took 385 MB more RSS to save as one dict).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch

from vssm_ros.core.map.blocks import CHANNELS, CORNERS, BlockAtlas
from vssm_ros.core.map.index import MISSING, pack, unpack
from vssm_ros.errors import StateError


ACTIVE_CHUNK = 2048
"""Active blocks per streamed part (about 25 MB at the default 8³ blocks in float32)."""


@dataclass
class TensorStream:
    """Tensors produced a part at a time: each is the concatenation, along its first axis,
    of its piece in every part, in order.

    Attributes:
        spec: name -> (dtype, shape) of the whole tensors.
        parts: a new iterator over the parts (name -> piece); pieces are CPU tensors.
    """

    spec: Dict[str, Tuple[torch.dtype, Tuple[int, ...]]]
    parts: Callable[[], Iterator[Dict[str, torch.Tensor]]]

    def materialise(self) -> Dict[str, torch.Tensor]:
        """The whole tensors (every part in memory at once)."""
        pieces: Dict[str, list] = {k: [] for k in self.spec}
        for part in self.parts():
            for k, v in part.items():
                pieces[k].append(v)
        return {k: torch.cat(v) if v else torch.empty(self.spec[k][1], dtype=self.spec[k][0])
                for k, v in pieces.items()}


def map_state(vmap) -> Dict[str, torch.Tensor]:
    """Every block, active and evicted, without aprons: ``blocks`` (N, 3) int64
    coordinates, ``sdf`` (N, B, B, B) metres and ``weight``, ``color`` (N, 3, B, B, B),
    ``color_weight``, ``anchor_sum`` (N, 2), ``anchor_weight`` (N,); arrays z, y, x;
    ``slot`` (N,): the atlas slot of an active block (-1: evicted), kept on loading so
    that the map renders bit-identically. The active blocks come first, then each evicted
    region."""
    return map_stream(vmap).materialise()


def map_stream(vmap, chunk: int = ACTIVE_CHUNK) -> TensorStream:
    """``map_state``'s tensors as a ``TensorStream``: parts of at most ``chunk`` active
    blocks, then one part per evicted region, read from the swap when iterated. The map must
    not change while the parts are iterated."""
    B = vmap.B
    n = len(vmap.atlas) + vmap.evicted_blocks()
    cube = (n, B, B, B)
    spec = {'blocks': (torch.int64, (n, 3)), 'slot': (torch.int64, (n,)),
            'sdf': (vmap.dtype, cube), 'weight': (vmap.dtype, cube),
            'color': (vmap.dtype, (n, 3, B, B, B)), 'color_weight': (vmap.dtype, cube),
            'anchor_sum': (vmap.dtype, (n, 2)), 'anchor_weight': (vmap.dtype, (n,))}

    def parts() -> Iterator[Dict[str, torch.Tensor]]:
        keys, slots = vmap.atlas.index.items()
        for k, s in zip(torch.split(keys, chunk), torch.split(slots, chunk)):
            active = vmap.atlas.read_blocks(s)
            active.update(keys=k, anchor_sum=vmap.atlas.anchor_sum[s],
                          anchor_weight=vmap.atlas.anchor_weight[s], slot=s)
            yield _saved_part(vmap, {name: v.cpu() for name, v in active.items()})
        for r in vmap.evicted_regions():
            p = dict(vmap.swap.get(r))
            p['slot'] = torch.full_like(p['keys'], MISSING)
            yield _saved_part(vmap, p)

    return TensorStream(spec, parts)


def _saved_part(vmap, p: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Padded blocks as the atlas holds them (``read_blocks`` plus keys, anchors and slots)
    to the saved fields: no aprons, the signed distance in metres."""
    B = vmap.B
    core = {k: v[:, :, :B, :B, :B] for k, v in p.items() if k in CHANNELS}
    return {'blocks': unpack(p['keys']), 'slot': p['slot'],
            'sdf': core['dist_seen'][:, 0] + vmap.cfg.truncation,
            'weight': core['weight'][:, 0].contiguous(),
            'color': core['color_seen'][:, :3].contiguous(),
            'color_weight': core['color_weight'][:, 0].contiguous(),
            'anchor_sum': p['anchor_sum'].clone(), 'anchor_weight': p['anchor_weight'].clone()}


def load_map_state(vmap, state: Dict[str, torch.Tensor],
                   position: Optional[np.ndarray] = None) -> None:
    """Restore blocks saved by ``state_dict``.

    A map larger than the memory budget, loaded with the drone's ``position`` (map frame,
    metres), is loaded a part at a time: the regions nearest the position become active, up
    to the 80 % of the budget that ``enforce_budget`` leaves, and the others go to the swap
    directly, each with the aprons its saved neighbours give it; the atlas never holds more
    than that, as if the whole map had been loaded and the budget kept. Otherwise every
    block becomes active (the budget is kept at the next keyframe)."""
    n = _check_fields(state, vmap.B)
    vmap.reset()
    coords = state['blocks'].to(vmap.device, torch.long)
    keys = pack(coords)
    if torch.unique(keys).numel() != keys.numel():
        raise StateError('the saved map lists a block twice')
    if position is None or n <= int(0.8 * vmap.budget_blocks):
        slots = _place(vmap, keys, state.get('slot'))
        vmap.atlas.write_blocks(slots, *_padded(vmap, state, torch.arange(n)))
        vmap.atlas.refresh_apron(coords, slots)
        return
    rkeys, rows_of, n_active = _regions_nearest_first(vmap, coords, position)
    scratch = _Neighbourhood(vmap, state, coords, keys)
    active = torch.cat(rows_of[:n_active])
    saved = state.get('slot')
    for rows in torch.split(active, ACTIVE_CHUNK):
        data, anchor_sum, anchor_weight = scratch.padded(rows)
        slots = _place(vmap, keys[rows], None if saved is None else saved[rows.cpu()])
        vmap.atlas.write_blocks(slots, data, anchor_sum, anchor_weight)
    for key, rows in zip(rkeys[n_active:], rows_of[n_active:]):
        data, anchor_sum, anchor_weight = scratch.padded(rows)
        vmap.put_evicted(key, {**{k: v.cpu() for k, v in data.items()},
                               'keys': keys[rows].cpu(), 'anchor_sum': anchor_sum.cpu(),
                               'anchor_weight': anchor_weight.cpu()})


def _regions_nearest_first(vmap, coords: torch.Tensor, position: np.ndarray
                           ) -> Tuple[List[int], Tuple[torch.Tensor, ...], int]:
    """The saved blocks' regions, nearest ``position`` first: their keys, the rows of each,
    and how many of the first fill 80 % of the budget (at least one)."""
    region = pack(torch.div(coords, vmap.region_blocks, rounding_mode='floor'))
    rkeys, inverse, counts = torch.unique(region, return_inverse=True, return_counts=True)
    centres = (unpack(rkeys).double() + 0.5).cpu().numpy() * vmap.region_edge()
    dist = np.linalg.norm(centres - np.asarray(position, np.float64), axis=1)
    order = np.argsort(dist, kind='stable')
    sizes = counts.cpu().numpy()[order]
    n_active = max(1, int(np.searchsorted(np.cumsum(sizes), int(0.8 * vmap.budget_blocks),
                                          'right')))
    rank = torch.empty_like(rkeys)
    rank[torch.as_tensor(order, device=rkeys.device)] = torch.arange(len(order),
                                                                     device=rkeys.device)
    rows = torch.argsort(rank[inverse], stable=True)   # grouped by region, nearest first
    return rkeys[torch.as_tensor(order, device=rkeys.device)].tolist(), \
        torch.split(rows, sizes.tolist()), n_active


def _check_fields(state: Dict[str, torch.Tensor], B: int) -> int:
    """The number of saved blocks; a clear error for a missing field or a wrong shape."""
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
    return int(n)


def _padded(vmap, state: Dict[str, torch.Tensor], rows: torch.Tensor
            ) -> Tuple[Dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Saved blocks as the atlas holds them, their aprons zero: (name -> (N, C, A, A, A),
    anchor sums (N, 2), anchor weights (N,))."""
    B, A = vmap.B, vmap.B + 1
    z = dict(device=vmap.device, dtype=vmap.dtype)
    rows = rows.to(state['sdf'].device)
    n = rows.numel()
    data = {k: torch.zeros((n, c, A, A, A), **z) for k, c in CHANNELS.items()}
    w, cw = state['weight'][rows].to(**z), state['color_weight'][rows].to(**z)
    data['dist_seen'][:, 0, :B, :B, :B] = state['sdf'][rows].to(**z) - vmap.cfg.truncation
    data['dist_seen'][:, 1, :B, :B, :B] = (w > 0).to(vmap.dtype)
    data['weight'][:, 0, :B, :B, :B] = w
    data['color_seen'][:, :3, :B, :B, :B] = state['color'][rows].to(**z)
    data['color_seen'][:, 3, :B, :B, :B] = (cw > 0).to(vmap.dtype)
    data['color_weight'][:, 0, :B, :B, :B] = cw
    return data, state['anchor_sum'][rows], state['anchor_weight'][rows]


class _Neighbourhood:
    """Saved blocks with their aprons, from a scratch atlas holding them and the saved
    blocks after them (whose first voxels the aprons copy)."""

    def __init__(self, vmap, state: Dict[str, torch.Tensor], coords: torch.Tensor,
                 keys: torch.Tensor):
        self.vmap, self.state, self.coords, self.keys = vmap, state, coords, keys
        self.sorter = torch.argsort(keys)
        self.sorted = keys[self.sorter]
        self.atlas = BlockAtlas(vmap.B, vmap.device, vmap.dtype, ACTIVE_CHUNK)

    def padded(self, rows: torch.Tensor
               ) -> Tuple[Dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """``_padded`` of the rows, their aprons filled. Shape: rows (N,)."""
        after = pack((self.coords[rows][:, None, :] + CORNERS.to(rows.device)).reshape(-1, 3))
        at = torch.searchsorted(self.sorted, after).clamp(max=self.sorted.numel() - 1)
        found = self.sorter[at[self.sorted[at] == after]]
        both = torch.unique(torch.cat((rows, found)))
        self.atlas.clear()
        slots = self.atlas.allocate(self.keys[both])
        self.atlas.write_blocks(slots, *_padded(self.vmap, self.state, both))
        mine = self.atlas.index.lookup(self.keys[rows])
        self.atlas.refresh_apron(self.coords[rows], mine)
        on = rows.to(self.state['anchor_sum'].device)
        return (self.atlas.read_blocks(mine), self.state['anchor_sum'][on],
                self.state['anchor_weight'][on])


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
