# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Where evicted map regions go: the protocol, and a host-memory store.

The map moves regions (cubes of blocks) out of its active atlas when it exceeds its memory
budget and takes them back when the drone returns. On a GPU, host memory is the first place
to put them (``HostSwap``); on the CPU only a disk store frees memory
(``vssm_ros.data.map_swap.DiskSwap``, injected by the drivers: the core does no file I/O).
A payload is a dict of CPU tensors (``VoxelMap`` defines its names); stores return them
unchanged, so an evicted region comes back bit-identical.
"""

from __future__ import annotations

from typing import Dict, List, Protocol

import torch

Payload = Dict[str, torch.Tensor]


class BlockSwap(Protocol):
    """A store of evicted regions, keyed by an int64 region key."""

    def put(self, region: int, payload: Payload) -> None:
        """Store a region (replacing nothing: the region must not be stored already)."""

    def get(self, region: int) -> Payload:
        """The payload of a stored region (it stays stored)."""

    def drop(self, region: int) -> None:
        """Forget a stored region."""

    def regions(self) -> List[int]:
        """Keys of the stored regions."""

    def nbytes(self) -> int:
        """Bytes the stored regions take."""

    def clear(self) -> None:
        """Forget everything."""


class HostSwap:
    """Evicted regions kept in host (CPU) memory."""

    def __init__(self):
        self._store: Dict[int, Payload] = {}

    def put(self, region: int, payload: Payload) -> None:
        self._store[int(region)] = {k: v.detach().to('cpu', copy=True) for k, v in payload.items()}

    def get(self, region: int) -> Payload:
        return self._store[int(region)]

    def drop(self, region: int) -> None:
        self._store.pop(int(region), None)

    def regions(self) -> List[int]:
        return list(self._store)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for p in self._store.values() for t in p.values())

    def clear(self) -> None:
        self._store.clear()
