# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The Blackbird dataset (Antonini et al., IJRR 2020) as a replay source: a folder of rendered
PNG frames with nanosecond timestamp files (``vssm_ros.data.frames_folder``), with IMU and
ground truth from the flight's ROS 1 bag, converted at the edge from Blackbird's NED world and
forward-right-down body frames to the z-up, forward-left-up frames the engine uses.

Blackbird's layout (``sequenceDownloader.py`` of the dataset's tools)::

    <trajectory>/<yaw>/<speed>/rosbag.bag                      /blackbird/imu, /blackbird/state,
                                                               /camera_l/camera_info, ...
    <trajectory>/<yaw>/<speed>/<environment>/Camera_Left_RGB/   lossless.mov, nSecTimestamps.txt
    <trajectory>/<yaw>/<speed>/<environment>/Camera_Left_Depth/ images/*.png, nSecTimestamps.txt

The replay input is the ``<environment>`` folder once the RGB video is extracted to
``Camera_Left_RGB/images/`` (docs/blackbird.md); the bag is found one level up.
"""

from __future__ import annotations

import dataclasses
import heapq
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, List, Optional, Tuple, Union

import numpy as np

from vssm_ros.config import FramesFolderConfig, VssmConfig
from vssm_ros.data import messages as M
from vssm_ros.data.atomic import atomic_dir
from vssm_ros.data.bags import BagReader, bag_msg_types, write_bag
from vssm_ros.data.frames_folder import FramesFolder, write_frames_folder
from vssm_ros.data.sources import CAMERA_INFO, BagSource, Source
from vssm_ros.data.transforms import frd_to_flu, ned_pose_to_zup, xyzquat_to_matrix
from vssm_ros.errors import ConfigError, SourceError
from vssm_ros.types import Frame, ImuSample, PoseSample, StreamItem

PathLike = Union[str, os.PathLike]

BAG_NAME = 'rosbag.bag'
"""The flight's bag in Blackbird's layout (beside the environment folders)."""
IMU_TOPIC = '/blackbird/imu'
STATE_TOPIC = '/blackbird/state'
CAMERA_INFO_TOPIC = '/camera_l/camera_info'
_ORDER = {ImuSample: 0, Frame: 1, PoseSample: 2}
"""At equal stamps: the IMU sample first (the engine integrates up to the frame), then the
frame, then its ground truth."""


def is_frames_folder(path: PathLike, cfg: FramesFolderConfig) -> bool:
    """A directory holding the colour or the depth camera folder of ``cfg``."""
    p = Path(path)
    return p.is_dir() and ((p / cfg.rgb_dir).is_dir() or (p / cfg.depth_dir).is_dir())


def find_bag(folder: Path, cfg: FramesFolderConfig) -> Optional[Path]:
    """The bag with IMU and ground truth: ``cfg.bag`` (relative to ``folder``) or rosbag.bag in
    the folder or its parent; None when there is none.

    Raises:
        SourceError: ``cfg.bag`` is set but does not exist.
    """
    if cfg.bag:
        bag = folder / Path(cfg.bag).expanduser()
        if not bag.exists():
            raise SourceError(f'frames_folder.bag = {cfg.bag} not found (looked for {bag})')
        return bag
    for cand in (folder / BAG_NAME, folder.parent / BAG_NAME):
        if cand.is_file():
            return cand
    return None


def zup_from_ned(item: StreamItem) -> StreamItem:
    """An ImuSample or PoseSample from NED / forward-right-down frames in z-up /
    forward-left-up frames."""
    if isinstance(item, ImuSample):
        return ImuSample(item.stamp_ns, frd_to_flu(item.acc), frd_to_flu(item.gyro))
    if isinstance(item, PoseSample):
        v = None if item.v_world is None else frd_to_flu(item.v_world)
        return PoseSample(item.stamp_ns, ned_pose_to_zup(item.T_world_body), v)
    return item


class FramesFolderSource(Source):
    """A frames folder (Blackbird's rendered cameras) plus the flight's bag, as one stream.

    Intrinsics: camera.fx/fy/cx/cy when set, else the first camera_info of the bag
    (topics.camera_info, or its only CameraInfo topic). Extrinsics: frames.T_body_cam (no
    /tf_static reaches the frames). IMU and ground truth: the bag's, read as ``BagSource``
    reads them (topics.imu, topics.ground_truth, frames.T_body_imu), then turned from NED into
    z-up frames when ``frames_folder.ned``.
    """

    kind = 'frames folder'

    def __init__(self, path: Path, cfg: VssmConfig) -> None:
        super().__init__(path)
        self.cfg = cfg
        ff = cfg.frames_folder
        self.folder = FramesFolder(path, ff, cfg.sync.slop_s)
        self.bag_path = find_bag(path, ff)
        self.bag: Optional[BagSource] = None
        if self.bag_path is not None:
            # The bag carries no images here; its camera_info is read below, not paired.
            topics = dataclasses.replace(cfg.topics, rgb='', depth='', camera_info='')
            self.bag = BagSource(self.bag_path, dataclasses.replace(cfg, topics=topics))
        self.K, self.info['intrinsics_source'] = self._intrinsics()
        self.T_body_cam = xyzquat_to_matrix(cfg.frames.T_body_cam)
        bag_info = self.bag.info if self.bag is not None else {}
        self.info.update({
            'topics': {k: v for k, v in (bag_info.get('topics') or {}).items() if v},
            'counts': {'frames': len(self.folder), 'rgb_unpaired': self.folder.unpaired['rgb'],
                       'depth_unpaired': self.folder.unpaired['depth'],
                       **(bag_info.get('counts') or {})},
            'bag': str(self.bag_path) if self.bag_path else None,
            'ned': ff.ned,
            'T_body_cam_source': 'config frames.T_body_cam',
            'T_body_cam': self.T_body_cam.tolist(),
            'depth_scale': cfg.camera.depth_scale or None,
        })

    def _intrinsics(self) -> Tuple[np.ndarray, str]:
        cam = self.cfg.camera
        if cam.has_intrinsics:
            K = np.array([[cam.fx, 0.0, cam.cx], [0.0, cam.fy, cam.cy], [0.0, 0.0, 1.0]])
            return K, 'config camera.fx/fy/cx/cy'
        hint = ('set camera.fx, camera.fy, camera.cx, camera.cy, or topics.camera_info to a '
                'CameraInfo topic of the flight bag (Blackbird: /camera_l/camera_info, in '
                'config/blackbird.yaml)')
        if self.bag_path is None:
            raise ConfigError(f'{self.path}: no camera intrinsics: the config has none and '
                              f'there is no flight bag ({BAG_NAME} here or one level up); {hint}')
        with BagReader(self.bag_path) as bag:
            topic = self.cfg.topics.camera_info
            if topic:
                bag.require([topic], 'topics.camera_info')
            else:
                infos = bag.topics_of_type(CAMERA_INFO)
                if len(infos) != 1:
                    raise ConfigError(f'{self.bag_path} has {len(infos)} CameraInfo topics '
                                      f'({", ".join(infos) or "none"}); {hint}')
                topic = infos[0]
            got = bag.first_message(topic)
        if got is None:
            raise SourceError(f'{topic} in {self.bag_path} has no messages; {hint}')
        K, w, h = M.camera_info_to_K(got[1])
        size = self.folder.image_size()
        if (w, h) != size:
            raise SourceError(f'camera_info on {topic} is for {w}x{h} images but the frames in '
                              f'{self.folder.rgb.folder} are {size[0]}x{size[1]}')
        return K, f'{self.bag_path}: {topic}'

    @property
    def has_imu(self) -> bool:
        return self.bag is not None and self.bag.has_imu

    @property
    def has_frames(self) -> bool:
        return len(self.folder) > 0

    def _frames(self) -> Iterator[Frame]:
        for i in range(len(self.folder)):
            yield self.folder.load(i, self.K, self.T_body_cam, self.cfg.camera)

    def _bag_items(self) -> Iterator[StreamItem]:
        if self.bag is None:
            return
        convert = zup_from_ned if self.cfg.frames_folder.ned else (lambda x: x)
        for item in self.bag:
            if isinstance(item, (ImuSample, PoseSample)):
                yield convert(item)
        self.info['skipped'] = self.bag.info.get('skipped', {})

    def __iter__(self) -> Iterator[StreamItem]:
        self.info['skipped'] = {}
        yield from heapq.merge(self._frames(), self._bag_items(),
                               key=lambda x: (x.stamp_ns, _ORDER[type(x)]))

    def ground_truth(self) -> List[PoseSample]:
        if self.bag is None:
            return []
        gt = self.bag.ground_truth()
        return [zup_from_ned(p) for p in gt] if self.cfg.frames_folder.ned else gt


# ----------------------------------------------------------------------------------------------
# Writing (tests, examples)


@dataclasses.dataclass(frozen=True)
class _CameraInfo:
    """What the bag keeps of a frame: its camera_info."""

    stamp_ns: int
    K: np.ndarray
    width: int
    height: int


def _bag_messages(items: List[Any], ned: bool) -> Iterator[Tuple[str, str, int, Any]]:
    """/blackbird/imu, /blackbird/state and /camera_l/camera_info messages of ImuSamples,
    PoseSamples and _CameraInfos (turned into NED / forward-right-down frames when ``ned``: the
    conversion is its own inverse), in the order given."""
    types = bag_msg_types('ros1')
    for item in items:
        s = int(item.stamp_ns)
        if isinstance(item, ImuSample):
            acc, gyro = (frd_to_flu(item.acc), frd_to_flu(item.gyro)) if ned else \
                (item.acc, item.gyro)
            yield IMU_TOPIC, 'sensor_msgs/msg/Imu', s, M.imu_msg(types, s, 'body', acc, gyro)
        elif isinstance(item, PoseSample):
            T = ned_pose_to_zup(item.T_world_body) if ned else item.T_world_body
            yield (STATE_TOPIC, 'geometry_msgs/msg/PoseStamped', s,
                   M.pose_stamped_msg(types, s, 'world', T))
        else:
            yield (CAMERA_INFO_TOPIC, 'sensor_msgs/msg/CameraInfo', s,
                   M.camera_info_msg(types, item.K, item.width, item.height, s, 'camera_l'))


def write_blackbird_folder(out: PathLike, items: Iterable[StreamItem],
                           environment: str = 'Synthetic_Room',
                           cfg: FramesFolderConfig = FramesFolderConfig(), ned: bool = True,
                           depth_scale: float = 1000.0, overwrite: bool = False) -> Path:
    """Write a stream in Blackbird's layout: ``out/rosbag.bag`` (ROS 1: IMU on
    /blackbird/imu, ground truth on /blackbird/state, the frames' camera_info on
    /camera_l/camera_info; in NED / forward-right-down frames when ``ned``, like Blackbird's)
    and the frames under ``out/<environment>/`` (``write_frames_folder``). The whole of
    ``out`` appears at once when complete.

    Returns:
        The environment folder: the replay input.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise SourceError(f'{out} exists already; not overwriting it')
    bag_items: List[Any] = []

    def frames() -> Iterator[Frame]:
        for item in items:
            if isinstance(item, Frame):
                h, w = item.depth.shape
                bag_items.append(_CameraInfo(item.stamp_ns, item.K, w, h))
                yield item
            else:
                bag_items.append(item)

    with atomic_dir(out) as tmp:
        write_frames_folder(tmp / environment, frames(), cfg, depth_scale)
        write_bag(tmp / BAG_NAME, 'ros1', _bag_messages(bag_items, ned))
    return out / environment
