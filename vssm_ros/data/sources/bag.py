# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""A ROS 1 bag or a ROS 2 bag directory as a replay source (see the package docstring).

A damaged bag (cut short, without its index or metadata.yaml, a chunk that fails its CRC) is
read by recovery (``vssm_ros.data.bag_recovery``): the source then has ``recovery``, the
report of what was recovered and lost (None for an intact bag), also in ``info['recovery']``
as a dict, and one warning line is logged.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from vssm_ros.config import VssmConfig
from vssm_ros.data import messages as M
from vssm_ros.data.bag_recovery import RecoveredBag, RecoveryReport
from vssm_ros.data.bags import BagReader
from vssm_ros.data.sources.base import (CAMERA_INFO, GROUND_TRUTH_HINTS, IMAGE, IMU,
                                        POSE_TYPES, REORDER_WINDOW_S, TF,
                                        Source, frame_from_messages, resolve_extrinsic)
from vssm_ros.data.sync import StampPairer
from vssm_ros.data.tf_static import StaticTransforms
from vssm_ros.data.transforms import xyzquat_to_matrix
from vssm_ros.errors import BagError, MessageError, SourceError, SyncError
from vssm_ros.types import Frame, ImuSample, PoseSample, StreamItem


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

    Attributes:
        recovery: what recovery read of a damaged bag (``RecoveryReport``; ``to_dict()`` for
            metrics), None for an intact bag. Set on opening, or during an iteration when a
            read fails part way.
    """

    def __init__(self, path: Path, cfg: VssmConfig,
                 reorder_window_s: float = REORDER_WINDOW_S) -> None:
        super().__init__(path)
        self.cfg = cfg
        self.window_ns = int(reorder_window_s * 1e9)
        self.recovery: Optional[RecoveryReport] = None
        self._recovered: Optional[RecoveredBag] = None
        with self._reader() as bag:
            self.kind = f'{bag.kind} bag'
            self.info['kind'] = self.kind
            self._setup(bag)
            self._note_recovery(bag)

    def _reader(self) -> BagReader:
        """A reader of the bag that recovers it when damaged (once: the scan is shared)."""
        return BagReader(self.path, recover=True, recovered=self._recovered)

    def _note_recovery(self, bag: BagReader) -> None:
        if bag.recovered is not None and self._recovered is None:
            self._recovered = bag.recovered
            self.recovery = bag.recovery
            self.info['recovery'] = bag.recovery.to_dict()

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

    def _frame_or_skip(self, matched: Tuple[Any, ...], skipped: Counter) -> Optional[Frame]:
        """The Frame of paired messages; None (counted by the reason of the conversion error,
        'rgb_encoding', 'depth_data_size', ...) when they cannot be converted: a bad message is
        skipped, as the node skips it, not the end of the replay."""
        try:
            return self._frame(*matched)
        except MessageError as err:
            self._skip(skipped, M.reason_of(err, 'frame_invalid'),
                       f'frame {matched[0][0]} ns skipped: {err}')
            return None

    # Iteration --------------------------------------------------------------------------------

    def _messages(self, bag: BagReader, topics: List[str]) -> Iterator[Tuple[str, int, Any]]:
        """``bag.messages(topics)``, noting a recovery that a failed read started."""
        try:
            yield from bag.messages(topics)
        finally:
            self._note_recovery(bag)

    def __iter__(self) -> Iterator[StreamItem]:
        skipped = self._start_skips()
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

        with self._reader() as bag:
            for topic, log_ns, msg in self._messages(bag, read):
                role = next(k for k, v in t.items() if v == topic)
                try:
                    stamp = self._stamp(msg, log_ns)
                except MessageError as err:
                    self._skip(skipped, f'{role}_{M.reason_of(err)}', f'{topic}: {err}')
                    continue
                ahead = M.stamp_ahead_s(stamp, log_ns)
                if ahead is not None:   # it would hold back every later message of its topic
                    self._skip(skipped, f'{role}_stamp_future', f'{topic}: stamp {stamp} ns is '
                               f'{ahead:.3g} s after its log time; skipped')
                    continue
                if topic in index:
                    try:
                        matches = pairer.push(index[topic], stamp, (stamp, msg))
                    except SyncError as err:
                        repeated = stamp == pairer.last_stamps[index[topic]]
                        self._skip(skipped, f'{role}_stamp_repeated' if repeated
                                   else f'{role}_time_backwards', f'{topic}: {err}; skipped')
                        continue
                    for m in matches:
                        frame = self._frame_or_skip(m, skipped)
                        if frame is not None:
                            queue(frame.stamp_ns, frame, 'frames')
                    pending = pairer.pending_pivot_stamp
                    order.bound('frames', pending if pending is not None
                                else pairer.last_stamps[0])
                elif topic == t['imu']:
                    if last['imu'] is not None and stamp <= last['imu']:
                        self._skip(skipped, 'imu_stamp_repeated' if stamp == last['imu']
                                   else 'imu_time_backwards', f'{topic}: stamp {stamp} ns is '
                                   f'not after the previous {last["imu"]} ns; skipped')
                        continue
                    s = M.imu_from_msg(msg)
                    if not np.isfinite(s.acc.sum() + s.gyro.sum()):  # NaN or inf anywhere
                        self._skip(skipped, 'imu_non_finite', f'{topic}: non-finite IMU sample '
                                   f'at {stamp} ns skipped')
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
                    frame = self._frame_or_skip(m, skipped)
                    if frame is not None:
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
        with self._reader() as bag:
            for _, log_ns, msg in self._messages(bag, [topic]):
                p = M.pose_from_msg(msg)
                out.append(PoseSample(self._stamp(msg, log_ns), p.T_world_body, p.v_world))
        out.sort(key=lambda p: p.stamp_ns)
        return out
