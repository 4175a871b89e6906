# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The replay source interface and the conversion shared with the ROS node (live and replayed
runs behave the same): ``Source``, ``frame_from_messages``, ``resolve_extrinsic``."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np

from vssm_ros.config import CameraConfig
from vssm_ros.data import messages as M
from vssm_ros.data.tf_static import StaticTransforms
from vssm_ros.types import Frame, PoseSample, StreamItem

PathLike = Union[str, os.PathLike]

IMAGE = 'sensor_msgs/msg/Image'
CAMERA_INFO = 'sensor_msgs/msg/CameraInfo'
IMU = 'sensor_msgs/msg/Imu'
TF = 'tf2_msgs/msg/TFMessage'
POSE_TYPES = ('geometry_msgs/msg/PoseStamped', 'nav_msgs/msg/Odometry',
              'geometry_msgs/msg/TransformStamped', 'geometry_msgs/msg/PoseWithCovarianceStamped')
GROUND_TRUTH_HINTS = ('ground_truth', 'groundtruth', 'mocap', 'vicon', 'optitrack', '/gt')
"""Substrings of a pose topic name that mark it as ground truth for auto-detection."""
REORDER_WINDOW_S = 1.0
SKIP_EXAMPLES = 3
"""Texts kept per skip reason in ``Source.info['skip_examples']``."""


class Source:
    """A stream of StreamItems in stamp order (iterable; each iteration reads afresh).

    Attributes:
        info: what was chosen and found: 'kind', 'path', 'topics' (role -> topic), 'counts',
            'T_body_cam_source', 'skipped' (reason -> count, for the last iteration),
            'skip_notes' (reason -> the first skip's explanation, where there is one),
            'skip_examples' (reason -> the first ``SKIP_EXAMPLES`` explanations), ...
    """

    kind = ''

    def __init__(self, path: Path) -> None:
        self.path = path
        self.info: Dict[str, Any] = {'kind': self.kind, 'path': str(path), 'skipped': {}}

    @property
    def has_imu(self) -> bool:
        """Whether the stream contains ImuSamples."""
        raise NotImplementedError

    @property
    def has_frames(self) -> bool:
        """Whether the stream contains Frames."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[StreamItem]:
        raise NotImplementedError

    def _start_skips(self) -> Counter:
        """Fresh skip accounting for a new iteration: the ``info['skipped']`` counter."""
        skipped: Counter = Counter()
        self.info.update(skipped=skipped, skip_notes={}, skip_examples={})
        return skipped

    def _skip(self, skipped: Counter, reason: str, text: str) -> None:
        """Count one skipped message; keep the first texts of each reason ('skip_notes': the
        first, 'skip_examples': the first SKIP_EXAMPLES)."""
        skipped[reason] += 1
        self.info['skip_notes'].setdefault(reason, text)
        examples = self.info['skip_examples'].setdefault(reason, [])
        if len(examples) < SKIP_EXAMPLES:
            examples.append(text)

    def ground_truth(self) -> List[PoseSample]:
        """All ground-truth poses, sorted by stamp (a separate pass; empty when none)."""
        raise NotImplementedError


def frame_from_messages(stamp_ns: int, rgb_msg: Any, depth_msg: Any, info_msg: Optional[Any],
                        camera: CameraConfig, T_body_cam: np.ndarray,
                        topics: Optional[Dict[str, str]] = None) -> Frame:
    """A Frame from a paired colour image, depth image and camera_info (None: the intrinsics
    of ``camera``), stamped ``stamp_ns``.

    Shape: T_body_cam (4, 4).

    Raises:
        BadMessage: unsupported encodings, colour and depth of different sizes, or a
            camera_info for another image size (``topics`` names them in the message); its
            ``reason`` is the bad-input key: '{role}_{why}' ('rgb_encoding', 'depth_data_size',
            'camera_info_k', ...), 'frame_size_mismatch', 'camera_info_size_mismatch'.
    """
    names = topics or {}
    rgb = M.converted('rgb', names.get('rgb', ''), M.rgb_from_image, rgb_msg)
    depth = M.converted('depth', names.get('depth', ''), M.depth_from_image, depth_msg,
                        camera.depth_scale, camera.min_depth, camera.max_depth)
    h, w = depth.shape
    if rgb.shape[:2] != (h, w):
        raise M.BadMessage(
            f'colour image on {names.get("rgb", "?")} is {rgb.shape[1]}x{rgb.shape[0]} but '
            f'depth on {names.get("depth", "?")} is {w}x{h} (stamp {stamp_ns} ns); they must be '
            'registered to the same size (no resizing is done)', 'frame_size_mismatch')
    if info_msg is not None:
        K, iw, ih = M.converted('camera_info', names.get('camera_info', ''),
                                M.camera_info_to_K, info_msg)
        if (iw, ih) != (w, h):
            raise M.BadMessage(
                f'camera_info on {names.get("camera_info", "?")} is for {iw}x{ih} images but '
                f'the images are {w}x{h} (stamp {stamp_ns} ns)', 'camera_info_size_mismatch')
    else:
        K = np.array([[camera.fx, 0.0, camera.cx], [0.0, camera.fy, camera.cy],
                      [0.0, 0.0, 1.0]])
    return Frame(int(stamp_ns), rgb, depth, K, np.array(T_body_cam, dtype=np.float64))


def resolve_extrinsic(tfs: StaticTransforms, body: str, frame: str, fallback: np.ndarray,
                      key: str) -> Tuple[np.ndarray, str]:
    """T_body_frame from static transforms, else ``fallback`` (the config value ``key``).

    Returns:
        (T_body_frame (4, 4), where it came from, in words).
    """
    if frame.lstrip('/') == body.lstrip('/'):
        return np.eye(4), f'identity ({frame} is the body frame)'
    if frame and tfs.can_transform(body, frame):
        return tfs.lookup(body, frame), f'/tf_static: {body} <- {frame}'
    return fallback, (f'config {key} (no /tf_static chain {body} <- {frame or "?"}; '
                      f'frames known: {", ".join(tfs.frames) or "none"})')
