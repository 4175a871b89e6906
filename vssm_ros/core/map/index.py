# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Integer 3D keys and a sorted key -> slot index, in pure torch.

Blocks (and free-space chunks) are found by their integer coordinates. The coordinates are
packed into one int64 key (21 bits per axis, about ±250 km at 0.24 m blocks), and the index
keeps the allocated keys sorted: a lookup is one ``torch.searchsorted`` and one gather, the
same code on CPU and GPU, with no host synchronisation and no Python loop per query. Inserting
re-sorts the keys; that happens once per keyframe, not per query (nvblox and Open3D use GPU
hash tables for the same job; a sorted array needs no custom kernel).
"""

from __future__ import annotations

from typing import Tuple

import torch

_BITS = 21
_OFFSET = 1 << (_BITS - 1)
_MASK = (1 << _BITS) - 1
LIMIT = _OFFSET - 1
"""Largest |coordinate| a key can hold."""
MISSING = -1
"""Slot reported for keys that are not in the index."""


def pack(ijk: torch.Tensor) -> torch.Tensor:
    """Integer (i, j, k) coordinates, each within ±LIMIT, to int64 keys. Shape: (..., 3) -> (...).
    """
    u = ijk.long() + _OFFSET
    return (u[..., 2] << (2 * _BITS)) | (u[..., 1] << _BITS) | u[..., 0]


def unpack(keys: torch.Tensor) -> torch.Tensor:
    """Inverse of ``pack``. Shape: (...) -> (..., 3)."""
    return torch.stack((keys & _MASK, (keys >> _BITS) & _MASK, (keys >> (2 * _BITS)) & _MASK),
                       dim=-1) - _OFFSET


def grid_cells(xyz: torch.Tensor, ext) -> torch.Tensor:
    """Flat index of integer (x, y, z) cells in a dense grid of extent (X, Y, ...), x
    fastest. Shape: (..., 3) -> (...)."""
    return (xyz[..., 2] * ext[1] + xyz[..., 1]) * ext[0] + xyz[..., 0]


def grid_coords(cell: torch.Tensor, ext, origin=(0, 0, 0)) -> torch.Tensor:
    """Inverse of ``grid_cells``, plus ``origin`` (added per component: an (N, 3) + (3,)
    int64 broadcast is several times slower on the CPU). Shape: (...) -> (..., 3)."""
    ex, ey = ext[0], ext[1]
    return torch.stack((cell % ex + origin[0], (cell // ex) % ey + origin[1],
                        cell // (ex * ey) + origin[2]), dim=-1)


class SortedIndex:
    """int64 keys -> int64 slots, kept sorted by key.

    Args:
        device: where the keys live (the device of the queries).
    """

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        self.keys = torch.empty(0, dtype=torch.long, device=self.device)
        self.slots = torch.empty(0, dtype=torch.long, device=self.device)

    def __len__(self) -> int:
        return int(self.keys.numel())

    def lookup(self, keys: torch.Tensor) -> torch.Tensor:
        """Slot of each key, ``MISSING`` where absent. Shape: (...) -> (...)."""
        if self.keys.numel() == 0:
            return torch.full_like(keys, MISSING)
        pos = torch.searchsorted(self.keys, keys).clamp(max=self.keys.numel() - 1)
        found = self.keys[pos] == keys
        return torch.where(found, self.slots[pos], torch.full_like(keys, MISSING))

    def insert(self, keys: torch.Tensor, slots: torch.Tensor) -> None:
        """Add keys that are not in the index yet (unique). Shape: (N,), (N,)."""
        if keys.numel() == 0:
            return
        allk = torch.cat((self.keys, keys))
        order = torch.argsort(allk)
        self.keys = allk[order]
        self.slots = torch.cat((self.slots, slots))[order]

    def remove(self, keys: torch.Tensor) -> torch.Tensor:
        """Drop keys (absent ones are ignored) and return the slots they had. Shape: (N,)."""
        keep = ~torch.isin(self.keys, keys)
        gone = self.slots[~keep]
        self.keys, self.slots = self.keys[keep], self.slots[keep]
        return gone

    def clear(self) -> None:
        self.keys = self.keys[:0]
        self.slots = self.slots[:0]

    def items(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """All (keys, slots), sorted by key."""
        return self.keys, self.slots
