# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Reading and writing bags with rosbags: ROS 1 ``.bag`` files and ROS 2 bag directories
(sqlite3 and mcap), without ROS installed.

Reading streams (messages are deserialised one at a time, never all loaded). A damaged bag
(cut short, without its index or metadata.yaml) is read by ``bag_recovery`` when the reader is
asked to (``BagReader(path, recover=True)``, as the replay sources do). Writing goes to a
temporary name beside the target and is renamed on success, so a half-written bag never sits
under the final name.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from vssm_ros.data import messages as M
from vssm_ros.data.bag_recovery import RecoveredBag, RecoveryReport, recover_bag, storage_files
from vssm_ros.data.transforms import as_transform, invert
from vssm_ros.errors import BagError, MessageError
from vssm_ros.types import Frame, ImuSample, PoseSample

PathLike = Union[str, os.PathLike]

BAG_FORMATS = ('mcap', 'sqlite3', 'ros1')
"""What ``write_bag`` writes: ROS 2 with mcap or sqlite3 storage, or a ROS 1 (v2.0) bag."""

# tf2_msgs is not in rosbags' Noetic store; this is its definition (md5 94810edd...).
_TFMESSAGE_ROS1 = 'geometry_msgs/TransformStamped[] transforms'


@lru_cache(maxsize=None)
def bag_typestore(fmt: str) -> Any:
    """The rosbags typestore that messages for a bag of format ``fmt`` are built with:
    ROS 2 Jazzy for mcap/sqlite3, ROS 1 Noetic (plus tf2_msgs/TFMessage) for ros1."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore
    _check_format(fmt)
    if fmt == 'ros1':
        store = get_typestore(Stores.ROS1_NOETIC)
        store.register(get_types_from_msg(_TFMESSAGE_ROS1, 'tf2_msgs/msg/TFMessage'))
        return store
    return get_typestore(Stores.ROS2_JAZZY)


@lru_cache(maxsize=None)
def bag_msg_types(fmt: str) -> M.MsgTypes:
    """``MsgTypes`` over ``bag_typestore(fmt)``: what to build messages for ``write_bag`` with."""
    return M.MsgTypes.from_rosbags(bag_typestore(fmt))


def _check_format(fmt: str) -> None:
    if fmt not in BAG_FORMATS:
        raise BagError(f'unknown bag format {fmt!r}; expected one of {", ".join(BAG_FORMATS)}')


# ----------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class TopicInfo:
    """A topic of a bag."""

    name: str
    """Topic name."""
    msgtype: str
    """Message type, ROS 2 style ('sensor_msgs/msg/Image'), also for ROS 1 bags."""
    count: int
    """Number of messages."""


def is_ros1_bag(path: PathLike) -> bool:
    """A ROS 1 bag file (by suffix, as rosbags decides)."""
    p = Path(path)
    return p.suffix == '.bag' and p.is_file()


def is_ros2_bag(path: PathLike) -> bool:
    """A ROS 2 bag directory (has metadata.yaml)."""
    p = Path(path)
    return p.is_dir() and (p / 'metadata.yaml').is_file()


def is_ros2_storage_dir(path: PathLike) -> bool:
    """A directory without metadata.yaml that holds .mcap or .db3 files: a ROS 2 bag whose
    recorder died before writing metadata.yaml (readable with ``recover=True``)."""
    p = Path(path)
    try:
        return p.is_dir() and not (p / 'metadata.yaml').exists() and bool(storage_files(p))
    except (BagError, OSError):
        return False


class BagReader:
    """Streaming reader of one ROS 1 bag or one ROS 2 bag directory (a context manager).

    Args:
        path: the bag.
        recover: when the bag cannot be opened (cut short, no index, no metadata.yaml) or a
            read fails part way, read its intact messages without an index
            (``bag_recovery``); ``recovery`` then says what was recovered and lost.
        recovered: a bag recovered before by a reader of the same path (skips the scan).

    Attributes:
        recovery: the ``RecoveryReport`` of a recovered bag; None while the bag reads normally.

    Example::

        with BagReader(path) as bag:
            bag.require(['/imu/data'])
            for topic, log_ns, msg in bag.messages(['/imu/data']):
                ...
    """

    def __init__(self, path: PathLike, recover: bool = False,
                 recovered: Optional[RecoveredBag] = None) -> None:
        self.path = Path(path)
        self.recover = recover
        self.recovered = recovered
        self.recovery: Optional[RecoveryReport] = recovered.report if recovered else None
        if not self.path.exists():
            raise BagError(f'bag not found: {self.path}')
        if self.path.is_dir():
            if not (self.path / 'metadata.yaml').is_file() and not (
                    recover and is_ros2_storage_dir(self.path)):
                raise BagError(f'{self.path} is a directory without metadata.yaml: not a ROS 2 '
                               'bag')
        elif self.path.suffix != '.bag':
            raise BagError(f'{self.path}: expected a ROS 1 .bag file or a ROS 2 bag directory '
                           '(with metadata.yaml)')
        self.kind = 'ros2' if self.path.is_dir() else 'ros1'
        self._reader: Any = None
        self._topics: Dict[str, TopicInfo] = {}

    def open(self) -> 'BagReader':
        from rosbags.highlevel import AnyReader
        if self._reader is not None:
            return self
        if self.recovered is not None:
            return self._use(self.recovered)
        if self.path.is_dir() and not (self.path / 'metadata.yaml').is_file():
            return self._recover('no metadata.yaml: the recorder did not finish the bag')
        try:
            reader = AnyReader([self.path], default_typestore=bag_typestore('mcap'))
            reader.open()
        except Exception as err:  # rosbags raises several types for broken files
            if self.recover:
                return self._recover(f'{type(err).__name__}: {err}')
            raise BagError(f'cannot open bag {self.path} (truncated or corrupt?): '
                           f'{type(err).__name__}: {err}') from err
        return self._use(reader)

    def _use(self, reader: Any) -> 'BagReader':
        self._reader = reader
        self._topics = {name: TopicInfo(name, info.msgtype or '', int(info.msgcount))
                        for name, info in reader.topics.items()}
        return self

    def _recover(self, damage: str) -> 'BagReader':
        """Read the bag with ``recover_bag`` and log one warning line about it."""
        self.recovered = recover_bag(self.path, damage)
        self.recovery = self.recovered.report
        logging.getLogger(__name__).warning(self.recovery.warning_line())
        return self._use(self.recovered)

    def close(self) -> None:
        if self._reader is not None:
            reader, self._reader = self._reader, None
            with contextlib.suppress(Exception):
                reader.close()

    def __enter__(self) -> 'BagReader':
        return self.open()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _open_reader(self) -> Any:
        if self._reader is None:
            raise BagError(f'bag {self.path} is not open (use it as a context manager)')
        return self._reader

    @property
    def topics(self) -> Dict[str, TopicInfo]:
        """Topics by name, with message type and count."""
        self._open_reader()
        return dict(self._topics)

    @property
    def start_ns(self) -> int:
        """Log time (ns) of the first message."""
        return int(self._open_reader().start_time)

    @property
    def end_ns(self) -> int:
        """Log time (ns) just after the last message."""
        return int(self._open_reader().end_time)

    def topics_of_type(self, *msgtypes: str) -> List[str]:
        """Names of the topics whose type is one of ``msgtypes``, sorted."""
        return sorted(t.name for t in self.topics.values() if t.msgtype in msgtypes)

    def describe_topics(self) -> str:
        """One line listing every topic with its type and count (for error messages)."""
        if not self._topics:
            return '(no topics)'
        return ', '.join(f'{t.name} ({t.msgtype}, {t.count})'
                         for t in sorted(self._topics.values(), key=lambda t: t.name))

    def require(self, topics: Iterable[str], what: str = '') -> None:
        """BagError listing the bag's topics when any of ``topics`` is missing."""
        self._open_reader()
        missing = [t for t in topics if t and t not in self._topics]
        if missing:
            raise BagError(f'bag {self.path} lacks the {what + " " if what else ""}topic(s) '
                           f'{", ".join(missing)}; it has: {self.describe_topics()}')

    def messages(self, topics: Sequence[str], start_ns: Optional[int] = None,
                 stop_ns: Optional[int] = None) -> Iterator[Tuple[str, int, Any]]:
        """(topic, log time ns, message) of the given topics, in log-time order, streaming;
        only log times in [start_ns, stop_ns) when given.

        Raises:
            BagError: a topic the bag lacks; a message that cannot be read (truncated bag).
        """
        reader = self._open_reader()
        self.require(topics)
        wanted = set(topics)
        conns = [c for c in reader.connections if c.topic in wanted]
        if not conns:
            return
        it = reader.messages(connections=conns, start=start_ns, stop=stop_ns)
        topic, last_ns, at_last = '?', -1, 0
        while True:
            try:
                item = next(it)
            except StopIteration:
                return
            except Exception as err:
                if not self.recover or self.recovered is not None:
                    raise BagError(f'cannot read bag {self.path} after a message on {topic} '
                                   f'(truncated or corrupt?): {type(err).__name__}: {err}'
                                   ) from err
                # A damaged chunk in a bag whose index is intact: go on with what recovery
                # reads, after the messages already given.
                self.close()
                reader = self._recover(f'a read failed after a message on {topic} '
                                       f'({type(err).__name__}: {err})')._reader
                it = _after(reader.messages(
                    connections=[c for c in reader.connections if c.topic in wanted],
                    start=start_ns, stop=stop_ns), last_ns, at_last)
                continue
            conn, log_ns, raw = item
            topic = conn.topic
            last_ns, at_last = log_ns, (at_last + 1 if log_ns == last_ns else 1)
            try:
                msg = reader.deserialize(raw, conn.msgtype)
            except Exception as err:
                raise BagError(f'bag {self.path}: cannot decode a {conn.msgtype} message on '
                               f'{topic}: {type(err).__name__}: {err}') from err
            yield topic, int(log_ns), msg

    def first_message(self, topic: str) -> Optional[Tuple[int, Any]]:
        """(log time ns, message) of the first message on ``topic``, or None if it has none."""
        it = self.messages([topic])
        try:
            for _, log_ns, msg in it:
                return log_ns, msg
        finally:
            it.close()
        return None


def _after(items: Iterator[Tuple[Any, int, bytes]], last_ns: int,
           at_last: int) -> Iterator[Tuple[Any, int, bytes]]:
    """``items`` (in log-time order) without those up to the ``at_last``-th at ``last_ns``."""
    for item in items:
        if item[1] < last_ns:
            continue
        if item[1] == last_ns and at_last > 0:
            at_last -= 1
            continue
        yield item


# ----------------------------------------------------------------------------------------------
# Writing


def _latched_qos() -> list:
    """Transient-local QoS (as tf2_ros publishes /tf_static) so ``ros2 bag play`` latches it."""
    from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness,
                                    QosReliability, QosTime)
    return [Qos(QosHistory.KEEP_LAST, 100, QosReliability.RELIABLE,
                QosDurability.TRANSIENT_LOCAL, QosTime(0, 0), QosTime(0, 0),
                QosLiveliness.AUTOMATIC, QosTime(0, 0), False)]


class BagWriter:
    """Writes messages one at a time to a bag that appears under its name only when complete.

    The bag is written inside a hidden temporary directory beside ``path`` and renamed over
    it by ``close``; ``abort`` (or an exception inside the ``with`` block) removes it, so a
    failed or interrupted run never leaves a half-written bag under the final name.

    Args:
        path: the bag: a directory for mcap/sqlite3, a ``.bag`` file for ros1.
        fmt: 'mcap', 'sqlite3' or 'ros1'.
        overwrite: replace an existing bag at ``path`` (only once the new one is complete).
        typestore: the typestore the messages belong to; default ``bag_typestore(fmt)``.
        latched: topics recorded as transient-local (ROS 2 QoS) / latching (ROS 1), so that
            players re-deliver their last message to late subscribers.

    Example::

        with BagWriter(out / 'replay', 'mcap') as bag:
            bag.write('/tf', 'tf2_msgs/msg/TFMessage', stamp_ns, msg)
    """

    def __init__(self, path: PathLike, fmt: str, overwrite: bool = False, typestore: Any = None,
                 latched: Iterable[str] = ('/tf_static',)) -> None:
        _check_format(fmt)
        self.path = Path(path)
        if fmt == 'ros1' and self.path.suffix != '.bag':
            raise BagError(f'a ROS 1 bag needs the .bag suffix, got {self.path}')
        self.fmt = fmt
        self.overwrite = overwrite
        self.store = typestore if typestore is not None else bag_typestore(fmt)
        self.latched = frozenset(latched)
        self.counts: Dict[str, int] = {}
        self._tmpdir: Optional[Path] = None
        self._writer: Any = None
        self._conns: Dict[Tuple[str, str], Any] = {}

    def open(self) -> 'BagWriter':
        if self._writer is not None:
            return self
        if self.path.exists() and not self.overwrite:
            raise BagError(f'{self.path} exists already; not overwriting it')
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmpdir = Path(tempfile.mkdtemp(dir=self.path.parent, prefix=f'.{self.path.name}.',
                                             suffix='.tmp'))
        staged = self._tmpdir / self.path.name
        try:
            if self.fmt == 'ros1':
                from rosbags.rosbag1 import Writer as Writer1
                writer: Any = Writer1(staged)
            else:
                from rosbags.rosbag2 import StoragePlugin, Writer as Writer2
                plugin = StoragePlugin.MCAP if self.fmt == 'mcap' else StoragePlugin.SQLITE3
                writer = Writer2(staged, version=9, storage_plugin=plugin)
            writer.open()
        except Exception as err:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            raise BagError(f'cannot create bag {self.path}: {type(err).__name__}: {err}') from err
        self._writer = writer
        return self

    def write(self, topic: str, msgtype: str, stamp_ns: int, msg: Any) -> None:
        """Add one message (log time ``stamp_ns``), built from this writer's typestore.

        Raises:
            BagError: the writer is not open; the message cannot be serialised.
        """
        if self._writer is None:
            raise BagError(f'bag {self.path} is not open for writing')
        key = (topic, msgtype)
        conn = self._conns.get(key)
        if conn is None:
            conn = self._conns[key] = self._add_connection(topic, msgtype)
        try:
            if self.fmt == 'ros1':
                raw = self.store.serialize_ros1(msg, msgtype)
            else:
                raw = self.store.serialize_cdr(msg, msgtype)
        except Exception as err:
            raise BagError(f'cannot serialise a {msgtype} message for {topic} '
                           f'({self.fmt}): {type(err).__name__}: {err}') from err
        self._writer.write(conn, int(stamp_ns), raw)
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def _add_connection(self, topic: str, msgtype: str) -> Any:
        latched = topic in self.latched
        try:
            if self.fmt == 'ros1':
                return self._writer.add_connection(topic, msgtype, typestore=self.store,
                                                   latching=1 if latched else None)
            return self._writer.add_connection(topic, msgtype, typestore=self.store,
                                               offered_qos_profiles=_latched_qos() if latched
                                               else ())
        except Exception as err:
            raise BagError(f'cannot add topic {topic} of type {msgtype} to {self.path}: '
                           f'{type(err).__name__}: {err}') from err

    def close(self) -> Dict[str, int]:
        """Finish the bag and move it to ``path``. Returns the messages written per topic."""
        if self._writer is None:
            raise BagError(f'bag {self.path} is not open for writing')
        writer, self._writer = self._writer, None
        tmpdir = self._tmpdir
        try:
            writer.close()
            if self.path.exists():
                os.replace(self.path, tmpdir / (self.path.name + '.old'))
            os.replace(tmpdir / self.path.name, self.path)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
        return dict(self.counts)

    def abort(self) -> None:
        """Drop the bag being written; ``path`` stays as it was."""
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def __enter__(self) -> 'BagWriter':
        return self.open()

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_bag(path: PathLike, fmt: str, messages: Iterable[Tuple[str, str, int, Any]],
              overwrite: bool = False, typestore: Any = None) -> Dict[str, int]:
    """Write messages to a bag (``BagWriter`` over an iterable; /tf_static latched).

    Args:
        path: the bag: a directory for mcap/sqlite3, a ``.bag`` file for ros1.
        fmt: 'mcap', 'sqlite3' or 'ros1'.
        messages: (topic, message type e.g. 'sensor_msgs/msg/Image', log time ns, message)
            with messages built from ``bag_msg_types(fmt)`` (or ``typestore``).
        overwrite: replace an existing bag at ``path`` (only once the new one is complete).
        typestore: the typestore the messages belong to; default ``bag_typestore(fmt)``.

    Returns:
        Messages written per topic.

    Raises:
        BagError: unknown format, existing path, a message that cannot be serialised.
    """
    with BagWriter(path, fmt, overwrite, typestore) as bag:
        for topic, msgtype, stamp_ns, msg in messages:
            bag.write(topic, msgtype, stamp_ns, msg)
    return dict(bag.counts)


@dataclass(frozen=True, eq=False)
class BagLayout:
    """Topics, frames and extrinsics used by ``write_stream``."""

    rgb_topic: str = '/camera/color/image_raw'
    """Colour images (rgb8)."""
    depth_topic: str = '/camera/aligned_depth_to_color/image_raw'
    """Depth images registered to the colour camera."""
    rgb_info_topic: str = '/camera/color/camera_info'
    """Camera info beside the colour images ('' to leave out)."""
    depth_info_topic: str = '/camera/aligned_depth_to_color/camera_info'
    """Camera info beside the depth images ('' to leave out)."""
    imu_topic: str = '/imu/data'
    """IMU readings (sensor_msgs/Imu in imu_frame)."""
    ground_truth_topic: str = '/ground_truth/pose'
    """Ground truth of the body in world_frame."""
    ground_truth_type: str = 'pose'
    """'pose' (geometry_msgs/PoseStamped) or 'odometry' (nav_msgs/Odometry, with velocity)."""
    tf_static_topic: str = '/tf_static'
    """Static transforms."""
    world_frame: str = 'world'
    """Frame of the ground truth."""
    body_frame: str = 'base_link'
    """Body frame."""
    camera_frame: str = 'camera_color_optical_frame'
    """Optical frame of the (registered) camera."""
    imu_frame: str = 'imu_link'
    """IMU frame."""
    depth_encoding: str = '16UC1'
    """'16UC1' (millimetres, 0 invalid; depth is rounded to 1 mm) or '32FC1' (metres, NaN)."""
    T_body_cam: Optional[np.ndarray] = None
    """Camera in the body frame (4, 4); None: the first Frame's T_body_cam."""
    T_body_imu: np.ndarray = field(default_factory=lambda: np.eye(4))
    """IMU in the body frame (4, 4); readings are rotated into the IMU frame when written."""
    extra_static: Tuple[Tuple[str, str, Any], ...] = ()
    """More static transforms to publish: (parent, child, T_parent_child (4, 4))."""

    def __post_init__(self):
        if self.depth_encoding not in M.DEPTH_ENCODINGS:
            raise BagError(f"BagLayout.depth_encoding must be '16UC1' or '32FC1', got "
                           f'{self.depth_encoding!r}')
        if self.ground_truth_type not in ('pose', 'odometry'):
            raise BagError(f"BagLayout.ground_truth_type must be 'pose' or 'odometry', got "
                           f'{self.ground_truth_type!r}')

    def static_transforms(self, T_body_cam: np.ndarray) -> List[Tuple[str, str, np.ndarray]]:
        """(parent, child, T_parent_child) written on /tf_static."""
        return ([(self.body_frame, self.camera_frame, as_transform(T_body_cam, 'T_body_cam')),
                 (self.body_frame, self.imu_frame, as_transform(self.T_body_imu, 'T_body_imu'))]
                + [(p, c, as_transform(T, f'{p} <- {c}')) for p, c, T in self.extra_static])


def depth_to_raw(depth: np.ndarray, encoding: str) -> np.ndarray:
    """Metres (NaN invalid) to the raw pixels of a depth encoding: 16UC1 millimetres rounded
    (0 invalid; depth beyond 65.535 m is invalid too), 32FC1 metres unchanged.

    Shape: (H, W) -> (H, W).
    """
    depth = np.asarray(depth, dtype=np.float32)
    if encoding == '32FC1':
        return depth
    if encoding != '16UC1':
        raise MessageError(f'unsupported depth encoding {encoding!r}; expected 16UC1 or 32FC1')
    mm = np.rint(depth.astype(np.float64) * 1000.0)
    ok = np.isfinite(mm) & (mm > 0) & (mm <= 65535)
    return np.where(ok, mm, 0).astype(np.uint16)


def stream_messages(items: Iterable[Union[Frame, ImuSample, PoseSample]], layout: BagLayout,
                    types: M.MsgTypes) -> Iterator[Tuple[str, str, int, Any]]:
    """The (topic, type, log time ns, message) tuples ``write_stream`` writes; log time = stamp.

    /tf_static comes first, stamped with the first item's stamp.
    """
    it = iter(items)
    head: List[Any] = []
    T_body_cam = layout.T_body_cam
    if T_body_cam is None:
        # Peek up to the first frame for its extrinsics (IMU usually comes first).
        for item in it:
            head.append(item)
            if isinstance(item, Frame):
                T_body_cam = item.T_body_cam
                break
        if T_body_cam is None:
            T_body_cam = np.eye(4)
    T_body_cam = as_transform(T_body_cam, 'T_body_cam')
    R_imu_body = invert(as_transform(layout.T_body_imu, 'T_body_imu'))[:3, :3]
    first = True
    for item in itertools.chain(head, it):
        s = int(item.stamp_ns)
        if first:
            tfs = [(p, c, T, s) for p, c, T in layout.static_transforms(T_body_cam)]
            yield layout.tf_static_topic, 'tf2_msgs/msg/TFMessage', s, M.tf_message(types, tfs)
            first = False
        if isinstance(item, Frame):
            if not np.allclose(item.T_body_cam, T_body_cam, atol=1e-9):
                raise MessageError(f'frame at {s} ns has a T_body_cam different from the one '
                                   'written on /tf_static; all frames must share it')
            h, w = item.depth.shape[:2]
            if item.rgb.shape[:2] != (h, w):
                raise MessageError(f'frame at {s} ns: rgb {item.rgb.shape[1]}x'
                                   f'{item.rgb.shape[0]} and depth {w}x{h} differ in size')
            yield (layout.rgb_topic, 'sensor_msgs/msg/Image', s,
                   M.image_msg(types, np.asarray(item.rgb, np.uint8), 'rgb8', s,
                               layout.camera_frame))
            yield (layout.depth_topic, 'sensor_msgs/msg/Image', s,
                   M.image_msg(types, depth_to_raw(item.depth, layout.depth_encoding),
                               layout.depth_encoding, s, layout.camera_frame))
            for topic in (layout.rgb_info_topic, layout.depth_info_topic):
                if topic:
                    yield (topic, 'sensor_msgs/msg/CameraInfo', s,
                           M.camera_info_msg(types, item.K, w, h, s, layout.camera_frame))
        elif isinstance(item, ImuSample):
            yield (layout.imu_topic, 'sensor_msgs/msg/Imu', s,
                   M.imu_msg(types, s, layout.imu_frame, R_imu_body @ np.asarray(item.acc),
                             R_imu_body @ np.asarray(item.gyro)))
        elif isinstance(item, PoseSample):
            if layout.ground_truth_type == 'odometry':
                yield (layout.ground_truth_topic, 'nav_msgs/msg/Odometry', s,
                       M.odometry_msg(types, s, layout.world_frame, layout.body_frame,
                                      item.T_world_body, v_world=item.v_world))
            else:
                yield (layout.ground_truth_topic, 'geometry_msgs/msg/PoseStamped', s,
                       M.pose_stamped_msg(types, s, layout.world_frame, item.T_world_body))
        else:
            raise MessageError(f'cannot write a {type(item).__name__} to a bag; expected '
                               'Frame, ImuSample or PoseSample')


def write_stream(path: PathLike, fmt: str,
                 items: Iterable[Union[Frame, ImuSample, PoseSample]],
                 layout: Optional[BagLayout] = None, overwrite: bool = False) -> Dict[str, int]:
    """Write a stream of Frames, ImuSamples and PoseSamples (ground truth) as a bag, with the
    extrinsics on /tf_static; ``open_source`` reads it back.

    Frames become an rgb8 image, a depth image (``layout.depth_encoding``) and camera infos,
    all stamped with the frame's stamp, in ``layout.camera_frame``.

    Returns:
        Messages written per topic.
    """
    layout = layout or BagLayout()
    return write_bag(path, fmt, stream_messages(items, layout, bag_msg_types(fmt)),
                     overwrite=overwrite)
