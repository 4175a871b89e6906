# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""``open_source``: the replay source for a path, by what the path is."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from vssm_ros.config import VssmConfig
from vssm_ros.data.bags import is_ros2_bag, is_ros2_storage_dir
from vssm_ros.data.blackbird import FramesFolderSource, is_frames_folder
from vssm_ros.data.sources.bag import BagSource
from vssm_ros.data.sources.base import PathLike, Source
from vssm_ros.data.sources.tum import TumSource
from vssm_ros.errors import BagError, SourceError


def open_source(path: PathLike, cfg: Optional[VssmConfig] = None) -> Source:
    """A Source for ``path``: a ``.bag`` file (ROS 1), a directory with metadata.yaml (ROS 2
    bag, sqlite3 or mcap), a directory with rgb.txt (TUM RGB-D), a directory with the camera
    folders of ``cfg.frames_folder`` (PNG frames + nSecTimestamps.txt: Blackbird), or a
    directory with .mcap or .db3 files but no metadata.yaml (a ROS 2 bag whose recorder died).

    A bag that cannot be opened normally (cut short, no index, no metadata.yaml) is recovered:
    the source's ``recovery`` then says what was read and lost (see ``BagSource``).

    Raises:
        SourceError: a missing path or one that is none of these (BagError for bags).
    """
    cfg = cfg or VssmConfig()
    p = Path(path)
    if not p.exists():
        err = BagError if p.suffix == '.bag' else SourceError
        raise err(f'input not found: {p}')
    if p.is_file() and p.suffix == '.bag':
        return BagSource(p, cfg)
    if is_ros2_bag(p):
        return BagSource(p, cfg)
    if p.is_dir() and (p / 'rgb.txt').is_file():
        return TumSource(p, cfg)
    if is_frames_folder(p, cfg.frames_folder):
        return FramesFolderSource(p, cfg)
    if is_ros2_storage_dir(p):
        return BagSource(p, cfg)
    ff = cfg.frames_folder
    raise SourceError(f'{p} is not a replayable input: expected a ROS 1 .bag file, a ROS 2 bag '
                      'directory (with metadata.yaml), a TUM RGB-D folder (with rgb.txt) or a '
                      f'frames folder (with {ff.rgb_dir}/ and {ff.depth_dir}/)')
