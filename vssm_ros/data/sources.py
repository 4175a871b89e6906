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
a topic, or later than the window) is skipped and counted in ``info['skipped']``.
"""

from __future__ import annotations

import heapq
import itertools
import os
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np

from vssm_ros.config import CameraConfig, VssmConfig
from vssm_ros.data import messages as M
from vssm_ros.data.bags import BagReader, is_ros2_bag
from vssm_ros.data.sync import StampPairer
from vssm_ros.data.tf_static import StaticTransforms
from vssm_ros.data.transforms import xyzquat_to_matrix
from vssm_ros.data.tum import TumFolder
from vssm_ros.errors import BagError, MessageError, SourceError, SyncError
from vssm_ros.types import Frame, ImuSample, PoseSample, StreamItem

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


class Source:
    """A stream of StreamItems in stamp order (iterable; each iteration reads afresh).

    Attributes:
        info: what was chosen and found: 'kind', 'path', 'topics' (role -> topic), 'counts',
            'T_body_cam_source', 'skipped' (reason -> count, for the last iteration), ...
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

    def ground_truth(self) -> List[PoseSample]:
        """All ground-truth poses, sorted by stamp (a separate pass; empty when none)."""
        raise NotImplementedError


def open_source(path: PathLike, cfg: Optional[VssmConfig] = None) -> Source:
    """A Source for ``path``: a ``.bag`` file (ROS 1), a directory with metadata.yaml (ROS 2
    bag, sqlite3 or mcap), a directory with rgb.txt (TUM RGB-D) or a directory with the camera
    folders of ``cfg.frames_folder`` (PNG frames + nSecTimestamps.txt: Blackbird).

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
    from vssm_ros.data.blackbird import FramesFolderSource, is_frames_folder  # imports this
    if is_frames_folder(p, cfg.frames_folder):
        return FramesFolderSource(p, cfg)
    ff = cfg.frames_folder
    raise SourceError(f'{p} is not a replayable input: expected a ROS 1 .bag file, a ROS 2 bag '
                      'directory (with metadata.yaml), a TUM RGB-D folder (with rgb.txt) or a '
                      f'frames folder (with {ff.rgb_dir}/ and {ff.depth_dir}/)')


# ----------------------------------------------------------------------------------------------
# Conversion shared with the ROS node (live and replayed runs behave the same)


def frame_from_messages(stamp_ns: int, rgb_msg: Any, depth_msg: Any, info_msg: Optional[Any],
                        camera: CameraConfig, T_body_cam: np.ndarray,
                        topics: Optional[Dict[str, str]] = None) -> Frame:
    """A Frame from a paired colour image, depth image and camera_info (None: the intrinsics
    of ``camera``), stamped ``stamp_ns``.

    Shape: T_body_cam (4, 4).

    Raises:
        MessageError: unsupported encodings, colour and depth of different sizes, or a
            camera_info for another image size (``topics`` names them in the message).
    """
    names = topics or {}
    rgb = M.rgb_from_image(rgb_msg)
    depth = M.depth_from_image(depth_msg, camera.depth_scale, camera.min_depth,
                               camera.max_depth)
    h, w = depth.shape
    if rgb.shape[:2] != (h, w):
        raise MessageError(
            f'colour image on {names.get("rgb", "?")} is {rgb.shape[1]}x{rgb.shape[0]} but '
            f'depth on {names.get("depth", "?")} is {w}x{h} (stamp {stamp_ns} ns); they must be '
            'registered to the same size (no resizing is done)')
    if info_msg is not None:
        K, iw, ih = M.camera_info_to_K(info_msg)
        if (iw, ih) != (w, h):
            raise MessageError(
                f'camera_info on {names.get("camera_info", "?")} is for {iw}x{ih} images but '
                f'the images are {w}x{h} (stamp {stamp_ns} ns)')
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


# ----------------------------------------------------------------------------------------------
# TUM


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
        self.info['skipped'] = {}
        gt = self.ground_truth()
        yield from self._merged(gt)

    def _merged(self, gt: List[PoseSample]) -> Iterator[StreamItem]:
        # Ground truth before a frame of equal stamp; frames load lazily.
        stream = heapq.merge(((p.stamp_ns, 0, i) for i, p in enumerate(gt)),
                             ((e.stamp_ns, 1, i) for i, e in enumerate(self.folder.entries)))
        for _, kind, i in stream:
            yield gt[i] if kind == 0 else self.folder.load(self.folder.entries[i])

    def ground_truth(self) -> List[PoseSample]:
        return sorted(self.folder.ground_truth(), key=lambda p: p.stamp_ns)


# ----------------------------------------------------------------------------------------------
# Bags


def _namespace(topic: str) -> str:
    return topic.rsplit('/', 1)[0]


def _only(candidates: List[str], role: str, key: str) -> str:
    if len(candidates) > 1:
        raise SourceError(f'cannot choose the {role} topic: candidates {", ".join(candidates)}; '
                          f'set {key} in the config to one of them')
    return candidates[0] if candidates else ''


class _TimeOrder:
    """Releases items in stamp order once no stream can still deliver an earlier one.

    Each stream reports a lower bound on its future stamps; a bound older than the newest
    stamp seen minus ``window_ns`` is ignored (a stalled stream does not hold the others).
    """

    def __init__(self, streams: Tuple[str, ...], window_ns: int) -> None:
        self._bound = {s: None for s in streams}
        self._heap: List[Tuple[int, int, Any]] = []
        self._seq = itertools.count()
        self.window_ns = window_ns
        self.newest: Optional[int] = None
        self.released: Optional[int] = None

    def bound(self, stream: str, stamp_ns: Optional[int]) -> None:
        self._bound[stream] = stamp_ns

    def push(self, stamp_ns: int, item: Any) -> bool:
        """Queue an item; False (not queued) if releasing it would break the order."""
        if self.released is not None and stamp_ns < self.released:
            return False
        heapq.heappush(self._heap, (stamp_ns, next(self._seq), item))
        self.newest = stamp_ns if self.newest is None else max(self.newest, stamp_ns)
        return True

    def ready(self) -> Iterator[Any]:
        if self.newest is None:
            return
        floor = self.newest - self.window_ns
        limit = min(floor if b is None else max(b, floor) for b in self._bound.values())
        while self._heap and self._heap[0][0] <= limit:
            stamp, _, item = heapq.heappop(self._heap)
            self.released = stamp
            yield item

    def flush(self) -> Iterator[Any]:
        while self._heap:
            stamp, _, item = heapq.heappop(self._heap)
            self.released = stamp
            yield item


class BagSource(Source):
    """A ROS 1 bag or ROS 2 bag directory as a stream (see the module docstring).

    Args:
        path: the bag.
        cfg: topics, frames (body frame, extrinsic fallbacks), camera (depth conventions,
            intrinsics when there is no camera_info) and sync (slop, queue size).
        reorder_window_s: the longest a frame may lag behind other data and still be emitted in
            order.
    """

    def __init__(self, path: Path, cfg: VssmConfig,
                 reorder_window_s: float = REORDER_WINDOW_S) -> None:
        super().__init__(path)
        self.cfg = cfg
        self.window_ns = int(reorder_window_s * 1e9)
        with BagReader(path) as bag:
            self.kind = f'{bag.kind} bag'
            self.info['kind'] = self.kind
            self._setup(bag)

    # Setup ------------------------------------------------------------------------------------

    def _setup(self, bag: BagReader) -> None:
        cfg = self.cfg.topics
        topics = bag.topics
        configured = {'topics.rgb': cfg.rgb, 'topics.depth': cfg.depth,
                      'topics.camera_info': cfg.camera_info, 'topics.imu': cfg.imu,
                      'topics.ground_truth': cfg.ground_truth}
        bag.require([t for t in configured.values() if t], 'configured')
        want = {'topics.rgb': (IMAGE,), 'topics.depth': (IMAGE,),
                'topics.camera_info': (CAMERA_INFO,), 'topics.imu': (IMU,),
                'topics.ground_truth': POSE_TYPES}
        for key, topic in configured.items():
            if topic and topics[topic].msgtype not in want[key]:
                raise BagError(f'{key} = {topic} has type {topics[topic].msgtype} in {bag.path}; '
                               f'expected {" or ".join(want[key])}')

        # Images: classify by the encoding of their first message.
        first: Dict[str, Any] = {}
        images = [cfg.rgb, cfg.depth] if cfg.rgb and cfg.depth else bag.topics_of_type(IMAGE)
        colour, depth, ignored = [], [], {}
        for topic in images:
            got = bag.first_message(topic)
            if got is None:
                continue
            first[topic] = got[1]
            enc = str(got[1].encoding)
            if enc in M.DEPTH_ENCODINGS:
                depth.append(topic)
            elif enc in M.COLOUR_ENCODINGS:
                colour.append(topic)
            else:
                ignored[topic] = enc
        for key, topic, ok, kind in (('topics.rgb', cfg.rgb, M.COLOUR_ENCODINGS, 'colour'),
                                     ('topics.depth', cfg.depth, M.DEPTH_ENCODINGS, 'depth')):
            if topic and topic in first and str(first[topic].encoding) not in ok:
                raise MessageError(f'{key} = {topic} has encoding {first[topic].encoding!r}, not '
                                   f'a supported {kind} encoding ({", ".join(ok)})')
        rgb = cfg.rgb or _only(colour, 'colour image', 'topics.rgb')
        dep = cfg.depth or _only(depth, 'depth image', 'topics.depth')
        if bool(rgb) != bool(dep):
            have, miss = ('colour', 'depth') if rgb else ('depth', 'colour')
            raise SourceError(f'bag {bag.path} has a {have} image topic ({rgb or dep}) but no '
                              f'{miss} image topic; image topics: '
                              f'{", ".join(bag.topics_of_type(IMAGE)) or "none"}'
                              + (f' (unsupported encodings: {ignored})' if ignored else ''))
        if rgb and rgb == dep:
            raise SourceError(f'topics.rgb and topics.depth are the same topic {rgb}')

        # Camera info: configured, beside depth, beside colour, or the only one.
        info = cfg.camera_info
        if rgb and not info:
            infos = bag.topics_of_type(CAMERA_INFO)
            for image in (dep, rgb):
                near = [t for t in infos if _namespace(t) == _namespace(image)]
                if len(near) == 1:
                    info = near[0]
                    break
            if not info and infos:
                info = _only(infos, 'camera_info', 'topics.camera_info')
        if rgb and not info and not self.cfg.camera.has_intrinsics:
            raise SourceError(f'bag {bag.path} has no sensor_msgs/CameraInfo topic; set '
                              'topics.camera_info, or camera.fx/fy/cx/cy for fixed intrinsics')

        imu = cfg.imu or _only(bag.topics_of_type(IMU), 'IMU', 'topics.imu')
        gt = cfg.ground_truth
        if not gt:
            cands = [t for t in bag.topics_of_type(*POSE_TYPES)
                     if any(h in t.lower() for h in GROUND_TRUTH_HINTS)]
            gt = cands[0] if len(cands) == 1 else ''
            if len(cands) > 1:
                self.info['ground_truth_candidates'] = cands

        self.topics = {'rgb': rgb, 'depth': dep, 'camera_info': info, 'imu': imu,
                       'ground_truth': gt}
        self.info['topics'] = {k: v for k, v in self.topics.items() if v}
        self.info['counts'] = {t: topics[t].count for t in self.info['topics'].values()}
        if ignored:
            self.info['ignored_image_topics'] = ignored

        # Extrinsics from /tf_static, with the config as fallback.
        tfs = StaticTransforms()
        tf_topic = cfg.tf_static
        if tf_topic and tf_topic in topics and topics[tf_topic].msgtype == TF:
            tfs.add_messages(msg for _, _, msg in bag.messages([tf_topic]))
        self.static_transforms = tfs
        frames = self.cfg.frames
        body = frames.body_frame
        self.T_body_cam = xyzquat_to_matrix(frames.T_body_cam)
        self.T_body_imu = xyzquat_to_matrix(frames.T_body_imu)
        if dep:
            cam_frame = str(first[dep].header.frame_id)
            self.info['camera_frame'] = cam_frame
            self.T_body_cam, self.info['T_body_cam_source'] = resolve_extrinsic(
                tfs, body, cam_frame, self.T_body_cam, 'frames.T_body_cam')
            self.info['T_body_cam'] = self.T_body_cam.tolist()
        if imu:
            got = bag.first_message(imu)
            if got is not None:
                imu_frame = str(got[1].header.frame_id)
                self.info['imu_frame'] = imu_frame
                self.T_body_imu, self.info['T_body_imu_source'] = resolve_extrinsic(
                    tfs, body, imu_frame, self.T_body_imu, 'frames.T_body_imu')
                self.info['T_body_imu'] = self.T_body_imu.tolist()

    @property
    def has_imu(self) -> bool:
        return bool(self.topics['imu'])

    @property
    def has_frames(self) -> bool:
        return bool(self.topics['rgb'])

    # Conversion -------------------------------------------------------------------------------

    @staticmethod
    def _stamp(msg: Any, log_ns: int) -> int:
        # Some recorders leave header stamps at zero; the log time is the best we have then.
        s = M.header_stamp_ns(msg)
        return s if s > 0 else log_ns

    def _frame(self, rgb: Tuple[int, Any], depth: Tuple[int, Any],
               info: Optional[Tuple[int, Any]] = None) -> Frame:
        """A Frame from paired (stamp, message) tuples; its stamp is the colour image's."""
        return frame_from_messages(rgb[0], rgb[1], depth[1], info[1] if info else None,
                                   self.cfg.camera, self.T_body_cam, self.topics)

    # Iteration --------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[StreamItem]:
        skipped: Counter = Counter()
        self.info['skipped'] = skipped
        t = self.topics
        cam_topics = [x for x in (t['rgb'], t['depth'], t['camera_info']) if x]
        index = {topic: i for i, topic in enumerate(cam_topics)}
        pairer = StampPairer(len(cam_topics), self.cfg.sync.slop_s,
                             self.cfg.sync.queue_size) if cam_topics else None
        streams = tuple(k for k, v in (('frames', cam_topics), ('imu', t['imu']),
                                       ('ground_truth', t['ground_truth'])) if v)
        order = _TimeOrder(streams, self.window_ns)
        R_body_imu = self.T_body_imu[:3, :3]
        last = {'imu': None, 'ground_truth': None}
        read = cam_topics + [x for x in (t['imu'], t['ground_truth']) if x]

        def queue(stamp: int, item: Any, what: str) -> None:
            if not order.push(stamp, item):
                skipped[f'{what}_out_of_order'] += 1

        with BagReader(self.path) as bag:
            for topic, log_ns, msg in bag.messages(read):
                stamp = self._stamp(msg, log_ns)
                if topic in index:
                    try:
                        matches = pairer.push(index[topic], stamp, (stamp, msg))
                    except SyncError:
                        role = next(k for k, v in t.items() if v == topic)
                        skipped[f'{role}_time_backwards'] += 1
                        continue
                    for m in matches:
                        frame = self._frame(*m)
                        queue(frame.stamp_ns, frame, 'frames')
                    pending = pairer.pending_pivot_stamp
                    order.bound('frames', pending if pending is not None
                                else pairer.last_stamps[0])
                elif topic == t['imu']:
                    if last['imu'] is not None and stamp <= last['imu']:
                        skipped['imu_time_backwards'] += 1
                        continue
                    s = M.imu_from_msg(msg)
                    if not np.isfinite(s.acc.sum() + s.gyro.sum()):  # NaN or inf anywhere
                        skipped['imu_non_finite'] += 1
                        continue
                    last['imu'] = stamp
                    queue(stamp, ImuSample(stamp, R_body_imu @ s.acc, R_body_imu @ s.gyro), 'imu')
                    order.bound('imu', stamp)
                else:
                    if last['ground_truth'] is not None and stamp <= last['ground_truth']:
                        skipped['ground_truth_time_backwards'] += 1
                        continue
                    last['ground_truth'] = stamp
                    p = M.pose_from_msg(msg)
                    queue(stamp, PoseSample(stamp, p.T_world_body, p.v_world), 'ground_truth')
                    order.bound('ground_truth', stamp)
                yield from order.ready()
            if pairer is not None:
                for m in pairer.flush():
                    frame = self._frame(*m)
                    queue(frame.stamp_ns, frame, 'frames')
                unpaired = sum(pairer.dropped)
                if unpaired:
                    skipped['unpaired_camera_messages'] += unpaired
            yield from order.flush()

    def ground_truth(self) -> List[PoseSample]:
        topic = self.topics['ground_truth']
        if not topic:
            return []
        out = []
        with BagReader(self.path) as bag:
            for _, log_ns, msg in bag.messages([topic]):
                p = M.pose_from_msg(msg)
                out.append(PoseSample(self._stamp(msg, log_ns), p.T_world_body, p.v_world))
        out.sort(key=lambda p: p.stamp_ns)
        return out
