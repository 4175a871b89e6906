# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""``vssm-replay --out-bag``: a ROS 2 bag (mcap) of what the node would have published during a
replay, plus the input camera stream, so that RViz (``ros2 bag play``) or Foxglove shows the
estimate over the images without running the node.

Topics (node-relative ones under ``/vssm``, as the node named ``vssm`` publishes them):
``/tf``, ``/tf_static`` (base_link -> camera, latched), ``/vssm/odometry``, ``/vssm/path``,
``/vssm/map_cloud`` (latched; every ``outputs.map_cloud_period_s`` and once at the end),
``/vssm/predicted/{depth,depth_std,color}`` (every ``outputs.predicted_period_s``),
``/diagnostics`` (every ``DIAGNOSTICS_PERIOD_S``), and the input colour (rgb8), depth (32FC1
metres) and camera_info under the input's topic names. Every message is stamped, and logged,
at its image stamp. Messages come from ``vssm_ros.data.outputs``, the node's own builders.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from vssm_ros.config import VssmConfig
from vssm_ros.data import messages as M
from vssm_ros.data import outputs
from vssm_ros.data.bags import BagLayout, BagWriter, bag_msg_types
from vssm_ros.types import TIMING_COUNTS, Estimate, Frame

PathLike = Union[str, os.PathLike]

DEFAULT_CAMERA_FRAME = 'camera_optical_frame'
"""Frame of the images when the input does not name one (TUM and Blackbird folders)."""
DIAGNOSTICS_PERIOD_S = 1.0
"""Least time (seconds of image stamps) between two /diagnostics messages."""
_IMAGE = 'sensor_msgs/msg/Image'
_CAMERA_INFO = 'sensor_msgs/msg/CameraInfo'


class ReplayBag:
    """Records one replay as a bag; the bag appears at ``path`` only when ``finish`` succeeds.

    Args:
        path: the bag directory to write.
        cfg: frames (TF names), outputs (rates, path length, predicted image size) and the
            engine's ``min_valid_rays`` (a frame below it is reported as WARN).
        camera_frame: frame_id of the images ('' or the body frame: ``DEFAULT_CAMERA_FRAME``).
        input_topics: 'rgb', 'depth', 'camera_info' names for the input stream (missing or
            empty: the RealSense-style names of ``BagLayout``).
        overwrite: replace an existing bag at ``path`` once the new one is complete.
        namespace: namespace of the node-relative topics.
    """

    def __init__(self, path: PathLike, cfg: VssmConfig, camera_frame: str = '',
                 input_topics: Optional[Mapping[str, str]] = None, overwrite: bool = True,
                 namespace: str = outputs.BAG_NAMESPACE) -> None:
        self.cfg = cfg
        self.types = bag_msg_types('mcap')
        self.namespace = namespace
        body = cfg.frames.body_frame
        self.camera_frame = (camera_frame if camera_frame and camera_frame.lstrip('/') != body
                             else DEFAULT_CAMERA_FRAME)
        layout = BagLayout()
        given = dict(input_topics or {})
        self.input_topics = {
            'rgb': given.get('rgb') or layout.rgb_topic,
            'depth': given.get('depth') or layout.depth_topic,
            'camera_info': given.get('camera_info') or layout.rgb_info_topic,
        }
        latched = [outputs.topic_name(t, namespace) for t in outputs.LATCHED]
        self.writer = BagWriter(path, 'mcap', overwrite=overwrite, latched=latched)
        self.diagnostics_due = outputs.StampRateLimiter(DIAGNOSTICS_PERIOD_S)
        self.n_frames = 0
        self.last_stamp_ns: Optional[int] = None

    @property
    def path(self):
        return self.writer.path

    def open(self) -> 'ReplayBag':
        self.writer.open()
        return self

    def _write(self, name: str, stamp_ns: int, msg: Any) -> None:
        self.writer.write(outputs.topic_name(name, self.namespace), outputs.MSG_TYPES[name],
                          stamp_ns, msg)

    def add(self, frame: Frame, est: Estimate, messages: List[Tuple[str, Any]],
            stats: Optional[Mapping[str, Any]] = None) -> None:
        """Record one processed frame: its input images and the ``messages`` the session made
        for it (``SlamSession.step``, built with ``self.types``); /diagnostics from ``stats``
        (``SlamSession.stats``) when due."""
        t, s = self.types, int(est.stamp_ns)
        frames = self.cfg.frames
        if self.n_frames == 0:
            static = [(frames.body_frame, self.camera_frame, frame.T_body_cam, s)]
            self._write(outputs.TF_STATIC, s, M.tf_message(t, static))
        self.n_frames += 1
        self.last_stamp_ns = s
        h, w = frame.depth.shape
        cam, inputs = self.camera_frame, self.input_topics
        self.writer.write(inputs['rgb'], _IMAGE, s, M.image_msg(t, frame.rgb, 'rgb8', s, cam))
        self.writer.write(inputs['depth'], _IMAGE, s,
                          M.image_msg(t, frame.depth, '32FC1', s, cam))
        self.writer.write(inputs['camera_info'], _CAMERA_INFO, s,
                          M.camera_info_msg(t, frame.K, w, h, s, cam))
        status = None
        for name, msg in messages:
            if name == outputs.STATUS:
                status = msg
            self._write(name, s, msg)
        if self.diagnostics_due.due(s):
            self._write(outputs.DIAGNOSTICS, s, self._diagnostics(est, status, stats or {}))

    def _diagnostics(self, est: Estimate, status: Any, stats: Mapping[str, Any]) -> Any:
        values: Dict[str, Any] = dict(stats)
        values['frames_processed'] = self.n_frames
        values.update({f'{k}_ms': 1e3 * v for k, v in est.timings.items()
                       if k not in TIMING_COUNTS})
        values.update({k: int(est.timings[k]) for k in TIMING_COUNTS if k in est.timings})
        pos_std = np.sqrt(np.clip(np.diag(est.cov)[:3], 0.0, None))
        values['position_std_m'] = float(np.linalg.norm(pos_std))
        level, text = (M.DIAG_OK, 'tracking') if status is None else (
            int.from_bytes(status.level, 'little') if isinstance(status.level, bytes)
            else int(status.level), str(status.message))
        return outputs.diagnostics_msg(self.types, int(est.stamp_ns), outputs.DIAGNOSTIC_NAME,
                                       level, text, values)

    def finish(self, engine: Any, schedule: outputs.OutputSchedule,
               map_changed: bool = False) -> Dict[str, int]:
        """Record the final map (unless just recorded and not changed since, or map clouds are
        off) and move the bag into place.

        Args:
            schedule: the session's output schedule (the last map cloud it published).
            map_changed: the map changed after the last frame (``SlamEngine.flush``).

        Returns:
            Messages written per topic.
        """
        try:
            sched, last = schedule, self.last_stamp_ns
            if sched.map_due.period_ns >= 0 and last is not None and (
                    map_changed or sched.last_map_ns != last):
                name, msg = sched.map_cloud(engine, last, sched.previous)
                self._write(name, last, msg)
        except BaseException:
            self.abort()
            raise
        return self.writer.close()

    def abort(self) -> None:
        """Drop the bag (nothing appears at ``path``)."""
        self.writer.abort()
