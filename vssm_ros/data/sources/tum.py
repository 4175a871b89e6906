# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""A TUM RGB-D folder as a replay source."""

from __future__ import annotations

import heapq
from pathlib import Path
from typing import Iterator, List

import numpy as np

from vssm_ros.config import VssmConfig
from vssm_ros.data.sources.base import Source
from vssm_ros.data.tum import TumFolder
from vssm_ros.errors import MessageError, SourceError
from vssm_ros.types import PoseSample, StreamItem


class TumSource(Source):
    """A TUM RGB-D folder: frames (rgb/depth associated within 0.02 s) and ground truth."""

    kind = 'tum'

    def __init__(self, path: Path, cfg: VssmConfig) -> None:
        super().__init__(path)
        self.folder = TumFolder(path, cfg.camera)
        self.info.update({
            'topics': {},
            'counts': {'frames': len(self.folder), 'rgb_without_depth': self.folder.skipped},
            'intrinsics_source': self.folder.intrinsics_source,
            'depth_scale': self.folder.depth_scale,
            'T_body_cam_source': 'identity (TUM: the body is the colour camera)',
            'T_body_cam': np.eye(4).tolist(),
        })

    @property
    def has_imu(self) -> bool:
        return False

    @property
    def has_frames(self) -> bool:
        return len(self.folder) > 0

    def __iter__(self) -> Iterator[StreamItem]:
        skipped = self._start_skips()
        gt = self.ground_truth()
        # Ground truth before a frame of equal stamp; frames load lazily. (Decoding the next
        # frames on a thread ahead of the engine was slower on two cores: 16.4 -> 15.2
        # frames/s on TUM teddy, the engine's threads and the reader's sharing them.)
        stream = heapq.merge(((p.stamp_ns, 0, i) for i, p in enumerate(gt)),
                             ((e.stamp_ns, 1, i) for i, e in enumerate(self.folder.entries)))
        for _, kind, i in stream:
            if kind == 0:
                yield gt[i]
                continue
            entry = self.folder.entries[i]
            try:
                frame = self.folder.load(entry)
            except (MessageError, SourceError) as err:
                self._skip(skipped, 'tum_frame_unreadable',
                           f'frame {entry.stamp_ns} ns skipped: {err}')
                continue
            yield frame

    def ground_truth(self) -> List[PoseSample]:
        return sorted(self.folder.ground_truth(), key=lambda p: p.stamp_ns)
