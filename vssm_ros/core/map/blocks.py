# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Sparse voxel-block storage: blocks allocated on demand, packed in one atlas per channel group.

A block holds ``B³`` voxels (``MapConfig.block_size``). Its data is stored with a one-voxel
apron on the + side of each axis, ``(B + 1)³`` cells, a copy of the first voxels of the
neighbouring blocks. A trilinear query then never needs two blocks: the cell of a point lies in
one padded block, and one ``grid_sample`` over the atlas (all padded blocks tiled in a 3D
texture, ``T × T`` blocks per layer, layers added as the map grows) reads it, with the
gradient. Values and gradients equal a dense grid's, across block seams too.

The apron is kept exact by writing every voxel to each padded block that contains it (up to 8),
which must therefore exist: allocating a block allocates those (``containing_blocks``). Slot 0
is never allocated and stays zero: it stands for every unallocated block, which reads as
never observed.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from vssm_ros.core.map.index import (MISSING, SortedIndex, grid_cells, grid_coords, pack,
                                     unpack)

CHANNELS: Dict[str, int] = {'dist_seen': 2, 'color_seen': 4, 'weight': 1, 'color_weight': 1}
"""Channel groups: shifted signed distance + observed flag; colour (3) + observed flag; the
signed-distance observation weight; the colour observation weight."""


def block_bytes(block_size: int, dtype: torch.dtype) -> int:
    """Bytes one padded block takes in the atlas, with its anchor and key."""
    elem = torch.empty((), dtype=dtype).element_size()
    return sum(CHANNELS.values()) * (block_size + 1) ** 3 * elem + 3 * elem + 8


CORNERS = torch.tensor([[i, j, k] for k in (0, 1) for j in (0, 1) for i in (0, 1)])
"""The 8 corner offsets (x, y, z) of a cell: the blocks a voxel's copies can be in."""


def containing_blocks(vox: torch.Tensor, B: int
                      ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The padded blocks that hold each voxel (its own block, and the blocks before it whose
    apron it is in: only where it is first in its block along an axis) and its local cell.

    Args:
        vox: integer (x, y, z) voxel coordinates. Shape: (N, 3).
    Returns:
        block coordinates (M, 3), local cells (M, 3) in [0, B], and the voxel row of each
        (M,); the first N rows are the voxels' own blocks, in order.
    """
    shift = B.bit_length() - 1
    if B == 1 << shift:   # shifts and masks: several times cheaper than int64 division
        home, local = vox >> shift, vox & (B - 1)
    else:
        home = torch.div(vox, B, rounding_mode='floor')
        local = vox - home * B
    first = (local == 0).long()                               # (N, 3)
    # Bit a of ``code``: first in its block along axis a. Only those voxels have more copies.
    code = first[:, 0] + 2 * first[:, 1] + 4 * first[:, 2]
    some = (code != 0).nonzero().squeeze(1)
    code = code[some]
    blks, locs, rows = [home], [local], [torch.arange(vox.shape[0], device=vox.device)]
    for d in CORNERS[1:].tolist():
        bits = d[0] + 2 * d[1] + 4 * d[2]
        r = some[(code & bits) == bits]
        step = torch.tensor(d, device=vox.device)
        blks.append(home.index_select(0, r) - step)   # (index_select: faster than indexing)
        locs.append(local.index_select(0, r) + step * B)
        rows.append(r)
    return torch.cat(blks), torch.cat(locs), torch.cat(rows)


class BlockAtlas:
    """Padded voxel blocks in atlas textures, found through a sorted key index.

    Args:
        block_size: voxels per block edge (B).
        device, dtype: where and how the data lives.
        layer: blocks per atlas row and column (a layer holds ``layer²`` blocks).
    """

    def __init__(self, block_size: int, device: torch.device, dtype: torch.dtype,
                 capacity: int, layer: int = 32):
        self.B = int(block_size)
        self.A = self.B + 1
        self.T = int(layer)
        self.device = torch.device(device)
        self.dtype = dtype
        self.index = SortedIndex(self.device)
        self.layers = 0
        # Uninitialised memory: a slot is zeroed when it is allocated, so untouched layers
        # cost no resident memory on the CPU (and the atlas is not copied as the map grows).
        self.tensors: Dict[str, torch.Tensor] = {
            n: torch.empty((1, c, 0, self.T * self.A, self.T * self.A), device=self.device,
                           dtype=dtype) for n, c in CHANNELS.items()}
        self.anchor_sum = torch.zeros((0, 2), device=self.device, dtype=dtype)
        self.anchor_weight = torch.zeros(0, device=self.device, dtype=dtype)
        self._free: List[int] = []
        # Flat-index steps from a cell's first corner to its eight, (z, y, x) order: layers
        # grow along z, the slowest axis, so the steps never change.
        side = self.T * self.A
        z, y, x = torch.meshgrid(*(torch.arange(2, device=self.device),) * 3, indexing='ij')
        self._corner_steps = ((z * side + y) * side + x).reshape(-1)
        self._grow(-(-(int(capacity) + 1) // (self.T * self.T)))
        self.clear()

    # ------------------------------------------------------------------ bookkeeping

    @property
    def capacity(self) -> int:
        """Slots, including the reserved empty slot 0."""
        return self.layers * self.T * self.T

    def __len__(self) -> int:
        return len(self.index)

    def bytes_per_block(self) -> int:
        return block_bytes(self.B, self.dtype)

    def nbytes(self) -> int:
        """Bytes reserved by the atlas (allocated or free slots)."""
        return self.capacity * self.bytes_per_block()

    def clear(self) -> None:
        """Forget every block (the memory stays reserved)."""
        self.index.clear()
        self._free = list(range(self.capacity - 1, 0, -1))   # slot 0: the empty block
        self._zero(torch.zeros(1, dtype=torch.long, device=self.device))

    def _grow(self, layers: int) -> None:
        old = self.capacity
        for n, t in self.tensors.items():
            add = torch.empty((1, t.shape[1], layers * self.A, t.shape[3], t.shape[4]),
                              device=self.device, dtype=self.dtype)
            # (A copy only when the reserved capacity runs out: cat would touch every page.)
            self.tensors[n] = torch.cat((t, add), dim=2) if t.shape[2] else add
        self.layers += layers
        # Atlas coordinates (x, y, z) to grid_sample's [-1, 1] (align_corners), kept on the
        # device so that a query copies nothing from the host.
        t = next(iter(self.tensors.values()))
        self._scale = 2.0 / (torch.tensor((t.shape[4], t.shape[3], t.shape[2]),
                                          dtype=torch.float64, device=self.device) - 1)
        extra = self.capacity - old
        # Each slot's first atlas cell (x, y, z): a gather per query instead of the divisions.
        self._origin = self._slot_xyz(torch.arange(self.capacity, device=self.device)) * self.A
        side = self.T * self.A
        self._origin_flat = grid_cells(self._origin, (side, side))
        z = dict(device=self.device, dtype=self.dtype)
        self.anchor_sum = torch.cat((self.anchor_sum, torch.zeros((extra, 2), **z)))
        self.anchor_weight = torch.cat((self.anchor_weight, torch.zeros(extra, **z)))
        self._free[:0] = range(self.capacity - 1, old - 1, -1)

    def _zero(self, slots: torch.Tensor) -> None:
        # A scalar fill, not a write of zero blocks: half the memory traffic (a first keyframe's
        # 1,200 blocks: 31 -> 17 ms, one thread).
        index = self._block_index(slots)
        for n in CHANNELS:
            self._block_view(n)[index] = 0.0
        self.anchor_sum[slots] = 0.0
        self.anchor_weight[slots] = 0.0

    def prepare_new(self, blocks: torch.Tensor) -> Optional[torch.Tensor]:
        """Ready, ahead of ``allocate``, the free slots it will take for these new blocks:
        zeroed, with their aprons filled from the blocks after them (``refresh_apron``, new
        ones reading as zeros). A keyframe's preparation does this on the mapping thread (the
        slots are free, so no reader sees them); its commit then skips both where its
        allocation took exactly these slots and nothing was written meanwhile. Returns the
        slots in allocation order (None: the atlas would have to grow first). The caller
        must hold the map against writes.

        Shape: (N, 3) -> (N,).
        """
        n = blocks.shape[0]
        if n > len(self._free):
            return None
        slots = self._next_free(n)
        if n == 0:
            return slots
        self._zero(slots)
        self.refresh_apron(blocks, slots)
        return slots

    def _next_free(self, n: int) -> torch.Tensor:
        """The ``n`` free slots the next allocation takes, in its order (n <= free slots).
        Shape: (n,)."""
        return torch.tensor(self._free[len(self._free) - n:][::-1], dtype=torch.long,
                            device=self.device)

    def allocate(self, keys: torch.Tensor, ready: Optional[torch.Tensor] = None
                 ) -> torch.Tensor:
        """Zeroed slots for new (unique, absent) block keys; the atlas grows (a copy) only
        when the reserved capacity is exhausted. ``ready``: the slots ``prepare_new``
        readied for them: where exactly these are taken, they are not zeroed again (their
        aprons are filled). Shape: (N,)."""
        n = int(keys.numel())
        if n > len(self._free):
            need = n - len(self._free)
            self._grow(-(-need // (self.T * self.T)))
        slots = self._next_free(n)
        del self._free[len(self._free) - n:]
        if ready is None or not torch.equal(ready, slots):
            self._zero(slots)
        self.index.insert(keys, slots)
        return slots

    def allocate_at(self, keys: torch.Tensor, slots: torch.Tensor) -> None:
        """Allocate new (unique, absent) block keys at chosen free slots (a saved map keeps
        its layout, so it renders bit-identically after loading). Shape: (N,), (N,)."""
        if slots.numel() == 0:
            return
        top = int(slots.max())
        if top >= self.capacity:
            self._grow(-(-(top + 1 - self.capacity) // (self.T * self.T)))
        chosen = set(slots.tolist())
        if len(chosen) != slots.numel() or 0 in chosen or not chosen <= set(self._free):
            raise ValueError('slots are taken, repeated or reserved')
        self._free = [f for f in self._free if f not in chosen]
        slots = slots.to(self.device)
        self._zero(slots)
        self.index.insert(keys, slots)

    def release(self, keys: torch.Tensor) -> None:
        """Drop blocks (read their data out first); their slots are zeroed when reused."""
        slots = self.index.remove(keys)
        self._free.extend(slots.tolist())

    def slots_of(self, blocks: torch.Tensor) -> torch.Tensor:
        """Slot of each (x, y, z) block coordinate, 0 (the empty block) where unallocated.
        Shape: (..., 3) -> (...)."""
        s = self.index.lookup(pack(blocks))
        return torch.where(s == MISSING, torch.zeros_like(s), s)

    def blocks(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """(block coordinates (N, 3), slots (N,)) of every allocated block."""
        keys, slots = self.index.items()
        return unpack(keys), slots

    # ------------------------------------------------------------------ cells

    def _slot_xyz(self, slots: torch.Tensor) -> torch.Tensor:
        return grid_coords(slots, (self.T, self.T))

    def flat_cells(self, slots: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
        """Flat atlas index of local cells (x, y, z in [0, B]) of slots. Shape: (N,), (N, 3)
        -> (N,)."""
        return self._flat(slots, local[..., 0], local[..., 1], local[..., 2])

    def _flat(self, slots: torch.Tensor, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor
              ) -> torch.Tensor:
        """``flat_cells`` from the cells' components. Shape: (...) each -> (...)."""
        side = self.T * self.A
        # index_select: several times faster than advanced indexing on the CPU.
        first = self._origin_flat.index_select(0, slots.reshape(-1)).reshape(slots.shape)
        return first + (z * side + y) * side + x

    def view(self, name: str) -> torch.Tensor:
        """A channel group as (C, cells): flat views for ``flat_cells`` indices."""
        t = self.tensors[name]
        return t.view(t.shape[1], -1)

    def coordinate_eps(self) -> float:
        """A few ulps of the largest atlas coordinate (voxels): the rounding of a coordinate
        on its way through grid_sample's normalisation is below this."""
        t = next(iter(self.tensors.values()))
        return 8.0 * torch.finfo(self.dtype).eps * max(t.shape[2:])

    def sample(self, name: str, slots: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
        """Trilinear read of a channel group at continuous local coordinates in [0, B] of the
        given slots (differentiable in ``local``).

        Shape: slots (N,), local (N, 3) -> (N, C).
        """
        t = self.tensors[name]
        a = self._origin[slots].to(local.dtype) + local
        g = a * self._scale.to(local.dtype) - 1.0
        out = F.grid_sample(t, g.reshape(1, 1, 1, -1, 3), mode='bilinear', padding_mode='zeros',
                            align_corners=True)
        return out.reshape(t.shape[1], -1).t()

    def sample_with_grad(self, name: str, slots: torch.Tensor, local: torch.Tensor
                         ) -> Tuple[torch.Tensor, torch.Tensor]:
        """``sample``'s trilinear read and its gradient w.r.t. ``local``, from the cell's eight
        corners gathered directly: no autograd graph, and on the CPU less than half the time
        of ``grid_sample``'s forward and backward passes (the 3D sampler is not vectorised
        there). Coordinates are components first (structure of arrays: the arithmetic runs
        on contiguous rows). ``local`` must lie in [0, B) (``VoxelMap._locate_nograd`` keeps
        it there).

        Shape: slots (N,), local (3, N) -> (C, N), (C, 3, N) (d/dx, d/dy, d/dz).
        """
        i0 = local.floor()
        f = local - i0
        cell = i0.long()   # on contiguous rows (float32 would not hold 32-voxel blocks' cells)
        base = self._flat(slots, cell[0], cell[1], cell[2])
        # Gathered point by point (the eight corners of a point lie close together), then
        # laid out corner by corner for the arithmetic. Row by row: index_select of a
        # contiguous row is several times faster on the CPU than a gather across channels.
        idx = (base[:, None] + self._corner_steps).reshape(-1)
        flat = self.view(name)
        c, n = flat.shape[0], base.shape[0]
        v = torch.empty((c, n * 8), device=flat.device, dtype=flat.dtype)
        for row, out in zip(flat, v):
            torch.index_select(row, 0, idx, out=out)
        v = v.view(c, n, 8).transpose(1, 2).contiguous().view(c, 2, 2, 2, n)  # (C, z, y, x, N)
        fx, fy, fz = f[0], f[1], f[2]
        ex = v[:, :, :, 1] - v[:, :, :, 0]                   # (C, z, y, N)
        lx = v[:, :, :, 0] + fx * ex
        ey = lx[:, :, 1] - lx[:, :, 0]                       # (C, z, N)
        ly = lx[:, :, 0] + fy * ey
        ez = ly[:, 1] - ly[:, 0]                             # (C, N)
        exy = ex[:, :, 0] + fy * (ex[:, :, 1] - ex[:, :, 0])
        gx = exy[:, 0] + fz * (exy[:, 1] - exy[:, 0])
        gy = ey[:, 0] + fz * (ey[:, 1] - ey[:, 0])
        return ly[:, 0] + fz * ez, torch.stack((gx, gy, ez), dim=1)

    def _block_view(self, name: str) -> torch.Tensor:
        t = self.tensors[name]
        T, A = self.T, self.A
        return t.view(t.shape[1], self.layers, A, T, A, T, A)

    def _block_index(self, slots: torch.Tensor) -> Tuple:
        """The index of the slots' whole padded blocks in a ``_block_view`` (the slots'
        coordinates are advanced indices: reads give (N, C, A, A, A) copies, writes take
        that shape or a scalar)."""
        s = self._slot_xyz(slots)
        every = slice(None)
        return every, s[:, 2], every, s[:, 1], every, s[:, 0], every

    def read_blocks(self, slots: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Whole padded blocks: name -> (N, C, A, A, A) (z, y, x order) copies."""
        index = self._block_index(slots)
        return {n: self._block_view(n)[index].contiguous() for n in CHANNELS}

    def write_blocks(self, slots: torch.Tensor, data: Dict[str, torch.Tensor],
                     anchor_sum: torch.Tensor, anchor_weight: torch.Tensor) -> None:
        """Overwrite whole padded blocks (as ``read_blocks`` returns them) and their anchors."""
        index = self._block_index(slots)
        for n in CHANNELS:
            self._block_view(n)[index] = data[n].to(device=self.device, dtype=self.dtype)
        self.anchor_sum[slots] = anchor_sum.to(device=self.device, dtype=self.dtype)
        self.anchor_weight[slots] = anchor_weight.to(device=self.device, dtype=self.dtype)

    def refresh_apron(self, blocks: torch.Tensor, slots: torch.Tensor) -> None:
        """Copy into the aprons of the given blocks the first voxels of the blocks after them
        (zero where those are unallocated). Shape: (N, 3), (N,)."""
        if slots.numel() == 0:
            return
        B, A, dev = self.B, self.A, self.device
        r = torch.arange(A, device=dev)
        cells = torch.stack(torch.meshgrid(r, r, r, indexing='ij'), -1).reshape(-1, 3).flip(-1)
        cells = cells[(cells == B).any(dim=-1)]                     # apron cells (x, y, z)
        step = (cells == B).long()                                  # which neighbour
        home = blocks[:, None, :] + step                            # (N, M, 3)
        src = self.flat_cells(self.slots_of(home), cells - step * B)
        dst = self.flat_cells(slots[:, None].expand(-1, cells.shape[0]), cells)
        for n in CHANNELS:
            v = self.view(n)
            v[:, dst.reshape(-1)] = v[:, src.reshape(-1)]
