# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Replay sources: a ROS 1 bag, a ROS 2 bag directory or a TUM RGB-D folder as one time-ordered
stream of Frames, ImuSamples and PoseSamples (ground truth).

``open_source`` decides by what the path is. Bag sources pick their topics from the config or,
where the config names none, by message type (image topics are told apart by the encoding of
their first message, each paired with the camera_info in its namespace), and refuse to guess
when that is ambiguous. Colour, depth and camera_info are paired with the shared
``StampPairer``; extrinsics come from /tf_static with the config as fallback.

Ordering: items come out sorted by stamp. Frames are emitted when their partners have arrived,
so a short reorder buffer holds other items until no earlier frame can still come (at most
``reorder_window_s`` of stamps). Anything that would break the order (stamps going backwards on
a topic, or later than the window) is skipped and counted in ``info['skipped']``; so is a
frame whose messages cannot be converted, by the reason of its conversion error
('rgb_encoding', 'depth_data_size', 'camera_info_k', ...: the node drops it the same way), and
a message stamped far after its log time; the first texts of each are in
``info['skip_examples']``.

Modules: ``base`` (the ``Source`` interface and the message conversion shared with the node),
``bag`` (ROS 1 and ROS 2 bags), ``tum`` (TUM RGB-D folders), ``open`` (``open_source``, the
factory; the Blackbird frames folder source lives in ``vssm_ros.data.blackbird``, which
imports this package, so ``open`` is loaded on first use).
"""

from typing import Any

from vssm_ros.data.sources.bag import BagSource
from vssm_ros.data.sources.base import (CAMERA_INFO, GROUND_TRUTH_HINTS, IMAGE, IMU, POSE_TYPES,
                                        REORDER_WINDOW_S, TF, PathLike, Source,
                                        frame_from_messages, resolve_extrinsic)
from vssm_ros.data.sources.tum import TumSource

__all__ = ['BagSource', 'CAMERA_INFO', 'GROUND_TRUTH_HINTS', 'IMAGE', 'IMU', 'POSE_TYPES',
           'PathLike', 'REORDER_WINDOW_S', 'Source', 'TF', 'TumSource', 'frame_from_messages',
           'open_source', 'resolve_extrinsic']


def __getattr__(name: str) -> Any:
    if name == 'open_source':
        from vssm_ros.data.sources.open import open_source

        return open_source
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
