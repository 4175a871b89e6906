# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Writing a synthetic flight as ROS bags with RealSense-like topics and/or a TUM RGB-D folder."""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import yaml

from vssm_ros.config import to_dict
from vssm_ros.data.atomic import atomic_write_bytes, atomic_write_text
from vssm_ros.data.bags import BagLayout, write_stream
from vssm_ros.data.synthetic.flight import R_FLU_OPT, SyntheticFlight
from vssm_ros.data.transforms import invert
from vssm_ros.data.tum import write_tum_folder
from vssm_ros.errors import ConfigError
from vssm_ros.types import Frame, PoseSample, StreamItem

FORMAT_PATHS = {'mcap': 'rosbag2_mcap', 'sqlite3': 'rosbag2_sqlite3', 'ros1': 'flight.bag',
                'tum': 'tum'}
"""Where ``write_flight`` puts each format inside its output directory."""


class RealSenseLayout(BagLayout):
    """A bag layout whose /tf_static has the chain the RealSense driver publishes:
    base_link -> camera_link (FLU, at the camera) -> camera_color_optical_frame, instead of one
    direct body -> optical transform; and base_link -> the IMU frame."""

    def static_transforms(self, T_body_cam: np.ndarray) -> List[Tuple[str, str, np.ndarray]]:
        T_link_opt = np.eye(4)
        T_link_opt[:3, :3] = R_FLU_OPT
        T_body_link = np.asarray(T_body_cam, dtype=float) @ invert(T_link_opt)
        return [(self.body_frame, 'camera_link', T_body_link),
                ('camera_link', self.camera_frame, T_link_opt),
                (self.body_frame, self.imu_frame, np.asarray(self.T_body_imu, dtype=float))]


def realsense_layout(flight: SyntheticFlight) -> RealSenseLayout:
    """Topics and frames of a RealSense D435i-like camera on a drone (the bags' layout)."""
    return RealSenseLayout(
        rgb_topic='/camera/color/image_raw',
        rgb_info_topic='/camera/color/camera_info',
        depth_topic='/camera/aligned_depth_to_color/image_raw',
        depth_info_topic='/camera/aligned_depth_to_color/camera_info',
        imu_topic='/camera/imu',
        ground_truth_topic='/ground_truth/pose',
        ground_truth_type='pose',
        world_frame='world',
        body_frame='base_link',
        camera_frame='camera_color_optical_frame',
        imu_frame='camera_imu_frame',
        depth_encoding='16UC1',
        T_body_cam=flight.T_body_cam,
        T_body_imu=flight.T_body_imu)


def write_flight(flight: SyntheticFlight, out_dir: Union[str, os.PathLike],
                 formats: Sequence[str] = ('mcap', 'tum'), overwrite: bool = False,
                 progress: Optional[Callable[[int], None]] = None) -> Dict[str, Path]:
    """Write a flight as ROS bags with RealSense-like topics and/or a TUM RGB-D folder.

    Layout of ``out_dir``: ``rosbag2_mcap/`` (ROS 2, mcap), ``rosbag2_sqlite3/``,
    ``flight.bag`` (ROS 1), ``tum/`` (the TUM convention: ground truth is the colour camera's
    optical frame in the world, and there is no IMU), plus ``synthetic.yaml`` (the config, a
    ``synthetic:`` section, so the flight can be regenerated) and ``truth.npz`` (stamps, true
    IMU biases and noise-free IMU readings).

    Bag topics: ``/camera/color/image_raw`` (rgb8), ``/camera/color/camera_info``,
    ``/camera/aligned_depth_to_color/image_raw`` (16UC1 mm), its ``camera_info``,
    ``/camera/imu`` (sensor_msgs/Imu in camera_imu_frame = base_link; for a Blackbird-style
    flight the recording's z-down IMU frame, its raw readings unchanged), ``/ground_truth/pose``
    (geometry_msgs/PoseStamped, base_link in world, at the frame stamps) and ``/tf_static``
    (base_link -> camera_link -> camera_color_optical_frame, base_link -> camera_imu_frame).

    Args:
        flight: the flight.
        out_dir: output directory (created).
        formats: any of 'mcap', 'sqlite3', 'ros1', 'tum'.
        overwrite: replace outputs that exist (else SourceError/BagError).
        progress: called with 1 after each frame written (e.g. a tqdm's ``update``).

    Returns:
        The path written for each format.
    """
    bad = [f for f in formats if f not in FORMAT_PATHS]
    if bad or not formats:
        raise ConfigError(f'unknown output format(s) {bad or list(formats)}; choose from '
                          f'{", ".join(FORMAT_PATHS)}')
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    layout = realsense_layout(flight)
    written: Dict[str, Path] = {}
    for fmt in dict.fromkeys(formats):   # unique, in order
        path = out / FORMAT_PATHS[fmt]
        items = _counting(flight.items(), progress)
        if fmt == 'tum':
            write_tum_folder(path, _tum_items(items, flight.T_body_cam), overwrite=overwrite)
        else:
            write_stream(path, fmt, items, layout=layout, overwrite=overwrite)
        written[fmt] = path
    atomic_write_text(out / 'synthetic.yaml', (
        '# The config of this synthetic flight (vssm-synth --config synthetic.yaml regenerates '
        'it)\n' + yaml.safe_dump({'synthetic': to_dict(flight.cfg)}, sort_keys=False)))
    imu = flight.imu
    buf = io.BytesIO()
    np.savez(buf, imu_stamps_ns=imu.stamps_ns, acc_bias=imu.acc_bias, gyro_bias=imu.gyro_bias,
             acc_true=imu.acc_true, gyro_true=imu.gyro_true, K=flight.K,
             T_body_cam=flight.T_body_cam, T_body_imu=flight.T_body_imu,
             frame_stamps_ns=flight.frame_stamps_ns,
             T_world_body=flight.gt_frames.T_world_body, v_world=flight.gt_frames.v_world)
    atomic_write_bytes(out / 'truth.npz', buf.getvalue())
    return written


def _counting(items: Iterator[StreamItem],
              progress: Optional[Callable[[int], None]]) -> Iterator[StreamItem]:
    for item in items:
        yield item
        if progress is not None and isinstance(item, Frame):
            progress(1)


def _tum_items(items: Iterator[StreamItem], T_body_cam: np.ndarray) -> Iterator[StreamItem]:
    # TUM's ground truth is the optical centre, and its reader treats the camera as the body.
    for item in items:
        if isinstance(item, PoseSample):
            yield PoseSample(item.stamp_ns, item.T_world_body @ T_body_cam)
        elif isinstance(item, Frame):
            yield dataclasses.replace(item, T_body_cam=np.eye(4))
        else:
            yield item
