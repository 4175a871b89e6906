# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Evicted map regions on disk (``core.map.swap.BlockSwap``): one safetensors file per region;
from a GPU, host memory first (``TieredSwap``). ``open_swap`` picks the store for a config.

The map moves regions it cannot keep within ``engine.map.memory_mb`` here; the drivers (replay,
demo, bench, node) give the engine this store so that memory stays bounded on the CPU too.
Files are written atomically and read back bit-identical; a temporary directory (the default)
is removed when the store is closed or the process exits.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List

import torch
from safetensors.torch import load, save

from vssm_ros.config import MapConfig
from vssm_ros.core.map import HostSwap
from vssm_ros.data.atomic import atomic_write_bytes
from vssm_ros.errors import StateError


class DiskSwap:
    """Evicted regions as files ``region_<key>.safetensors`` in a directory.

    Args:
        directory: where to put them ('' or None: a new temporary directory, removed at exit).
    """

    def __init__(self, directory: str | os.PathLike | None = None):
        self._own = not directory
        if self._own:
            self.dir = Path(tempfile.mkdtemp(prefix='vssm_map_swap_'))
            atexit.register(self.close)
        else:
            self.dir = Path(directory)
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise StateError(f'cannot create the map swap directory {self.dir}: {err}') \
                    from err
        self._sizes: Dict[int, int] = {}

    def _path(self, region: int) -> Path:
        return self.dir / f'region_{int(region)}.safetensors'

    def put(self, region: int, payload: Dict[str, torch.Tensor]) -> None:
        data = save({k: v.detach().cpu().contiguous() for k, v in payload.items()})
        try:
            atomic_write_bytes(self._path(region), data)
        except OSError as err:
            raise StateError(f'cannot write an evicted map region to {self.dir}: {err}') from err
        self._sizes[int(region)] = len(data)

    def get(self, region: int) -> Dict[str, torch.Tensor]:
        try:
            return load(self._path(region).read_bytes())
        except (OSError, ValueError) as err:
            raise StateError(f'cannot read evicted map region {region} from {self.dir}: '
                             f'{err}') from err

    def drop(self, region: int) -> None:
        self._sizes.pop(int(region), None)
        try:
            self._path(region).unlink()
        except FileNotFoundError:
            pass

    def regions(self) -> List[int]:
        return list(self._sizes)

    def nbytes(self) -> int:
        return sum(self._sizes.values())

    def clear(self) -> None:
        for r in list(self._sizes):
            self.drop(r)

    def close(self) -> None:
        """Remove the files (and the directory if this store made it)."""
        self.clear()
        if self._own:
            shutil.rmtree(self.dir, ignore_errors=True)


class TieredSwap:
    """Host memory first, disk beyond ``host_mb``: for a map on a GPU, evicted regions stay in
    host RAM (fast to take back) until that fills, then the oldest spill to disk.

    Args:
        host_mb: host memory for evicted regions (MiB).
        disk: where the rest goes.
    """

    def __init__(self, host_mb: float, disk: DiskSwap):
        self.host = HostSwap()
        self.disk = disk
        self.host_bytes = int(host_mb * 2**20)
        self._order: List[int] = []   # regions in host memory, oldest first

    def put(self, region: int, payload: Dict[str, torch.Tensor]) -> None:
        self.host.put(region, payload)
        self._order.append(int(region))
        while self.host.nbytes() > self.host_bytes and self._order:
            old = self._order.pop(0)
            self.disk.put(old, self.host.get(old))
            self.host.drop(old)

    def get(self, region: int) -> Dict[str, torch.Tensor]:
        if int(region) in self._order:
            return self.host.get(region)
        return self.disk.get(region)

    def drop(self, region: int) -> None:
        if int(region) in self._order:
            self._order.remove(int(region))
            self.host.drop(region)
        else:
            self.disk.drop(region)

    def regions(self) -> List[int]:
        return self._order + self.disk.regions()

    def nbytes(self) -> int:
        return self.host.nbytes() + self.disk.nbytes()

    def clear(self) -> None:
        self.host.clear()
        self._order.clear()
        self.disk.clear()

    def close(self) -> None:
        """Give back host memory and the disk store's files (its directory if it made it)."""
        self.clear()
        self.disk.close()


def open_swap(map_cfg: MapConfig, device: str):
    """The store for evicted regions that the drivers give the engine: disk on the CPU; on a
    GPU, host memory up to ``memory_mb`` and disk beyond (``map.swap_dir``, '' a temporary
    directory)."""
    disk = DiskSwap(map_cfg.swap_dir or None)
    if str(device).startswith('cuda'):
        return TieredSwap(map_cfg.memory_mb, disk)
    return disk
