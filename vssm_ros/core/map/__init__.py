# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The map posterior q(M) on sparse voxel blocks: storage (``blocks``, ``index``), evicted
regions (``swap``), fusion inputs (``fusion``) and the fields (``voxel_map``)."""

from vssm_ros.core.map.state import TensorStream
from vssm_ros.core.map.swap import BlockSwap, HostSwap
from vssm_ros.core.map.voxel_map import REGION, VoxelMap

__all__ = ['BlockSwap', 'HostSwap', 'REGION', 'TensorStream', 'VoxelMap']
