# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""ROS message <-> NumPy conversions, duck-typed.

The same functions work with rosbags' message dataclasses (ROS 1 and ROS 2 typestores) and with
rclpy's generated message classes: readers only use attribute access on the standard field
names; builders take a ``MsgTypes`` namespace holding the message classes, made either from a
rosbags typestore (``MsgTypes.from_rosbags``) or, in the node, from the imported rclpy message
modules (``MsgTypes.from_modules``). No ROS package is imported here.

Conventions: stamps are int nanoseconds; quaternions are (x, y, z, w); depth is float32 metres
with NaN where invalid (REP-118: ``16UC1`` millimetres with 0 invalid, ``32FC1`` metres).
"""

from __future__ import annotations

import array
import dataclasses
import sys
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Sequence, Tuple

import numpy as np

from vssm_ros.data.transforms import as_transform, matrix_to_pose, pose_to_matrix
from vssm_ros.errors import MessageError
from vssm_ros.types import ImuSample, PoseSample

# ----------------------------------------------------------------------------------------------
# Message classes

#: The classes a MsgTypes namespace holds: attribute name -> full ROS type name.
TYPE_NAMES: Dict[str, str] = {
    'Time': 'builtin_interfaces/msg/Time',
    'Header': 'std_msgs/msg/Header',
    'Image': 'sensor_msgs/msg/Image',
    'CameraInfo': 'sensor_msgs/msg/CameraInfo',
    'RegionOfInterest': 'sensor_msgs/msg/RegionOfInterest',
    'Imu': 'sensor_msgs/msg/Imu',
    'PointCloud2': 'sensor_msgs/msg/PointCloud2',
    'PointField': 'sensor_msgs/msg/PointField',
    'Point': 'geometry_msgs/msg/Point',
    'Quaternion': 'geometry_msgs/msg/Quaternion',
    'Vector3': 'geometry_msgs/msg/Vector3',
    'Pose': 'geometry_msgs/msg/Pose',
    'PoseStamped': 'geometry_msgs/msg/PoseStamped',
    'PoseWithCovariance': 'geometry_msgs/msg/PoseWithCovariance',
    'PoseWithCovarianceStamped': 'geometry_msgs/msg/PoseWithCovarianceStamped',
    'Twist': 'geometry_msgs/msg/Twist',
    'TwistWithCovariance': 'geometry_msgs/msg/TwistWithCovariance',
    'Transform': 'geometry_msgs/msg/Transform',
    'TransformStamped': 'geometry_msgs/msg/TransformStamped',
    'Odometry': 'nav_msgs/msg/Odometry',
    'TFMessage': 'tf2_msgs/msg/TFMessage',
    'Path': 'nav_msgs/msg/Path',
    'MapMetaData': 'nav_msgs/msg/MapMetaData',
    'OccupancyGrid': 'nav_msgs/msg/OccupancyGrid',
    'KeyValue': 'diagnostic_msgs/msg/KeyValue',
    'DiagnosticStatus': 'diagnostic_msgs/msg/DiagnosticStatus',
    'DiagnosticArray': 'diagnostic_msgs/msg/DiagnosticArray',
}


class MsgTypes:
    """The message classes the builders instantiate, and how their array fields are filled.

    Attributes:
        backend: 'rosbags' (dataclasses: every field must be given; arrays as NumPy) or 'rclpy'
            (keyword construction with type checks; ``uint8[]`` as ``array.array('B')``,
            ``float64[]`` as a list of float).
        Time, Header, Image, ...: the classes named in ``TYPE_NAMES`` (None when unavailable).
    """

    Time: Any
    Header: Any
    Image: Any
    CameraInfo: Any
    RegionOfInterest: Any
    Imu: Any
    PointCloud2: Any
    PointField: Any
    Point: Any
    Quaternion: Any
    Vector3: Any
    Pose: Any
    PoseStamped: Any
    PoseWithCovariance: Any
    PoseWithCovarianceStamped: Any
    Twist: Any
    TwistWithCovariance: Any
    Transform: Any
    TransformStamped: Any
    Odometry: Any
    TFMessage: Any
    Path: Any
    MapMetaData: Any
    OccupancyGrid: Any
    KeyValue: Any
    DiagnosticStatus: Any
    DiagnosticArray: Any

    def __init__(self, classes: Mapping[str, Any], backend: str) -> None:
        if backend not in ('rosbags', 'rclpy'):
            raise MessageError(f"MsgTypes backend must be 'rosbags' or 'rclpy', got {backend!r}")
        unknown = sorted(set(classes) - set(TYPE_NAMES))
        if unknown:
            raise MessageError(f'unknown message class name(s) {unknown}; known: '
                               f'{sorted(TYPE_NAMES)}')
        self.backend = backend
        for name in TYPE_NAMES:
            setattr(self, name, classes.get(name))

    @classmethod
    def from_rosbags(cls, typestore: Any) -> 'MsgTypes':
        """The classes of a rosbags typestore (``get_typestore(Stores.ROS2_JAZZY)``, ...)."""
        types = typestore.types
        return cls({k: types.get(v) for k, v in TYPE_NAMES.items()}, 'rosbags')

    @classmethod
    def from_modules(cls, modules: Mapping[str, Any]) -> 'MsgTypes':
        """The classes of imported message modules, by package name, e.g.
        ``{'sensor_msgs': sensor_msgs.msg, 'std_msgs': std_msgs.msg, ...}`` (rclpy).
        """
        classes = {}
        for name, full in TYPE_NAMES.items():
            pkg, _, short = full.split('/')
            mod = modules.get(pkg)
            classes[name] = getattr(mod, short, None) if mod is not None else None
        return cls(classes, 'rclpy')

    # Array fields ---------------------------------------------------------------------------

    def u8(self, data: bytes) -> Any:
        """A ``uint8[]`` field value from raw bytes."""
        if self.backend == 'rosbags':
            return np.frombuffer(bytes(data), dtype=np.uint8).copy()
        return array.array('B', bytes(data))

    def f64_seq(self, values: Iterable[float]) -> Any:
        """A variable-length ``float64[]`` field value."""
        values = np.asarray(list(values), dtype=np.float64).reshape(-1)
        if self.backend == 'rosbags':
            return values
        return [float(v) for v in values]

    def byte(self, value: int) -> Any:
        """A ``byte`` field value (rclpy wants a one-byte ``bytes``, rosbags an int)."""
        value = int(value)
        if not 0 <= value <= 255:
            raise MessageError(f'a byte field holds 0..255, got {value}')
        return value if self.backend == 'rosbags' else bytes([value])

    @staticmethod
    def f64_fixed(values: Any, n: int, what: str) -> np.ndarray:
        """A fixed-size ``float64[n]`` field value (NumPy works for both backends)."""
        out = np.asarray(values, dtype=np.float64).reshape(-1)
        if out.size != n:
            raise MessageError(f'{what} needs {n} numbers, got {out.size}')
        return np.ascontiguousarray(out)

    def new(self, name: str, /, **fields: Any) -> Any:
        """Instantiate class ``name`` with ``fields``.

        For rosbags dataclasses, ROS 1 spellings are filled in: ``seq`` of std_msgs/Header
        (0) and the upper-case ``D K R P`` of sensor_msgs/CameraInfo.
        """
        cls = getattr(self, name, None)
        if cls is None:
            raise MessageError(f'message type {TYPE_NAMES.get(name, name)} is not available in '
                               f'these message classes ({self.backend})')
        if self.backend == 'rclpy' or not dataclasses.is_dataclass(cls):
            return cls(**fields)
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name in fields:
                kwargs[f.name] = fields.pop(f.name)
            elif f.name.lower() in fields:
                kwargs[f.name] = fields.pop(f.name.lower())
            elif f.name == 'seq':
                kwargs[f.name] = 0
            elif f.default is not dataclasses.MISSING:
                continue  # constants such as __msgtype__ and PointField.FLOAT32
            else:
                raise MessageError(f'{TYPE_NAMES[name]}: no value given for field {f.name!r}')
        if fields:
            raise MessageError(f'{TYPE_NAMES[name]} has no field(s) {sorted(fields)}')
        return cls(**kwargs)


# ----------------------------------------------------------------------------------------------
# Bad messages

MAX_STAMP_SEC = 2**32 - 1
"""The largest ``sec`` of a stamp (ROS 1's unsigned 32 bits; ROS 2's are signed, smaller)."""
MAX_STAMP_AHEAD_S = 10.0
"""How far a message's stamp may lie ahead of the clock that receives it (the node's clock,
a bag's log time), for clocks a little out of step; beyond, the message is dropped."""
MALFORMED = (TypeError, ValueError, AttributeError, OverflowError, IndexError)
"""What reading a field of the wrong type or value raises (a message built by hand or by a
broken driver; rclpy's classes check types, rosbags' do not)."""


class BadMessage(MessageError):
    """A message that cannot be converted, with a short ``reason`` key for the bad-input counts
    ('encoding', 'data_size', 'k', ...; prefixed with the input, 'depth_data_size', by
    ``converted``)."""

    def __init__(self, text: str, reason: str = 'invalid') -> None:
        super().__init__(text)
        self.reason = reason


def reason_of(err: BaseException, default: str = 'invalid') -> str:
    """The bad-input reason key of a conversion error (``default`` when it carries none)."""
    return getattr(err, 'reason', default)


def converted(role: str, topic: str, convert: Callable[..., Any], *args: Any) -> Any:
    """``convert(*args)`` on the message of input ``role`` ('rgb', 'depth', 'camera_info',
    'imu') from ``topic``; any failure, a field of the wrong type included, becomes a
    BadMessage whose reason names the input: '{role}_{reason}' ('{role}_malformed' for a
    field of the wrong type) and whose text names the topic."""
    try:
        return convert(*args)
    except MessageError as err:
        raise BadMessage(f'{topic or role}: {err}', f'{role}_{reason_of(err)}') from err
    except MALFORMED as err:
        raise BadMessage(f'{topic or role}: message is malformed: {type(err).__name__}: {err}',
                         f'{role}_malformed') from err


# ----------------------------------------------------------------------------------------------
# Stamps and small helpers


def stamp_to_ns(stamp: Any) -> int:
    """Nanoseconds of a builtin_interfaces/Time (``sec``/``nanosec``; rospy's ``secs``/``nsecs``
    also accepted).

    Raises:
        BadMessage ('stamp'): no such fields, not integers, nanoseconds outside [0, 1e9) or
            seconds outside [0, MAX_STAMP_SEC].
    """
    try:
        if hasattr(stamp, 'nanosec'):
            sec, nsec = int(stamp.sec), int(stamp.nanosec)
        elif hasattr(stamp, 'nsecs'):
            sec, nsec = int(stamp.secs), int(stamp.nsecs)
        else:
            raise BadMessage(f'{type(stamp).__name__} is not a time stamp (no sec/nanosec '
                             'fields)', 'stamp')
    except MALFORMED as err:
        raise BadMessage(f'time stamp fields are not integers: {type(err).__name__}: {err}',
                         'stamp') from err
    if not 0 <= nsec < 1_000_000_000 or not 0 <= sec <= MAX_STAMP_SEC:
        raise BadMessage(f'invalid time stamp sec={sec}, nanosec={nsec} (nanosec must be in '
                         f'[0, 1e9), sec in [0, {MAX_STAMP_SEC}])', 'stamp')
    return sec * 1_000_000_000 + nsec


def stamp_ahead_s(stamp_ns: int, now_ns: int) -> Optional[float]:
    """How far (seconds) ``stamp_ns`` lies ahead of a receiving clock ``now_ns`` when that is
    more than ``MAX_STAMP_AHEAD_S`` (a sensor clock gone wrong: such a stamp would hold back
    every later message, or jump the engine decades ahead); None otherwise, and when the clock
    is not running (0: simulated time before the first /clock)."""
    ahead = (int(stamp_ns) - int(now_ns)) * 1e-9
    return ahead if now_ns > 0 and ahead > MAX_STAMP_AHEAD_S else None


def ns_to_stamp(types: MsgTypes, ns: int) -> Any:
    """builtin_interfaces/Time of ``ns`` nanoseconds (>= 0)."""
    ns = int(ns)
    if ns < 0:
        raise MessageError(f'stamp {ns} ns is negative; ROS time stamps cannot be')
    return types.new('Time', sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def header_stamp_ns(msg: Any) -> int:
    """Stamp (ns) of a message's header.

    Raises:
        BadMessage ('stamp'): no header stamp, or an invalid one.
    """
    try:
        stamp = msg.header.stamp
    except AttributeError as err:
        raise BadMessage(f'{type(msg).__name__} has no header stamp', 'stamp') from err
    return stamp_to_ns(stamp)


def _header(types: MsgTypes, stamp_ns: int, frame_id: str) -> Any:
    return types.new('Header', stamp=ns_to_stamp(types, stamp_ns), frame_id=str(frame_id))


def _field(msg: Any, *names: str) -> Any:
    """The first of ``names`` that ``msg`` has (ROS 1 and ROS 2 spell some fields differently)."""
    for n in names:
        if hasattr(msg, n):
            return getattr(msg, n)
    raise MessageError(f'{type(msg).__name__} has none of the fields {names}')


def _u8_view(data: Any) -> np.ndarray:
    """A flat uint8 view of a ``uint8[]`` field (NumPy, bytes, array.array or list)."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype.itemsize == 1 else \
            np.frombuffer(data.tobytes(), dtype=np.uint8)
    if isinstance(data, (bytes, bytearray, memoryview, array.array)):
        return np.frombuffer(data, dtype=np.uint8)
    return np.asarray(list(data), dtype=np.uint8)


def _vec3(v: Any) -> np.ndarray:
    return np.array([float(v.x), float(v.y), float(v.z)])


def _quat(q: Any) -> np.ndarray:
    return np.array([float(q.x), float(q.y), float(q.z), float(q.w)])


# ----------------------------------------------------------------------------------------------
# Images

#: encoding -> (dtype, channels)
IMAGE_ENCODINGS: Dict[str, Tuple[np.dtype, int]] = {
    'rgb8': (np.dtype(np.uint8), 3),
    'bgr8': (np.dtype(np.uint8), 3),
    'rgba8': (np.dtype(np.uint8), 4),
    'bgra8': (np.dtype(np.uint8), 4),
    'mono8': (np.dtype(np.uint8), 1),
    'mono16': (np.dtype(np.uint16), 1),
    '16UC1': (np.dtype(np.uint16), 1),
    '32FC1': (np.dtype(np.float32), 1),
}
COLOUR_ENCODINGS = ('rgb8', 'bgr8', 'rgba8', 'bgra8', 'mono8', 'mono16')
DEPTH_ENCODINGS = ('16UC1', '32FC1')


def _encoding_info(encoding: str) -> Tuple[np.dtype, int]:
    try:
        return IMAGE_ENCODINGS[encoding]
    except KeyError:
        raise BadMessage(f'unsupported image encoding {encoding!r}; supported: '
                         f'{", ".join(IMAGE_ENCODINGS)}', 'encoding') from None


def image_to_numpy(msg: Any) -> np.ndarray:
    """The pixels of a sensor_msgs/Image, honouring ``step`` (row padding) and
    ``is_bigendian``. Returns a native-endian copy.

    Shape: (H, W) for one-channel encodings, (H, W, C) otherwise.

    Raises:
        BadMessage: unsupported encoding ('encoding'), empty image ('empty'), step ('step') or
            data length ('data_size') inconsistent with the size.
    """
    encoding = str(msg.encoding)
    dtype, channels = _encoding_info(encoding)
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise BadMessage(f'{encoding} image has size {w}x{h}; expected a non-empty image',
                         'empty')
    row = w * channels * dtype.itemsize
    if step < row:
        raise BadMessage(f'{encoding} image {w}x{h}: step {step} is smaller than width x bytes '
                         f'per pixel = {row}', 'step')
    data = _u8_view(msg.data)
    if data.size != step * h:
        raise BadMessage(f'{encoding} image {w}x{h}: data has {data.size} bytes, expected '
                         f'step x height = {step} x {h} = {step * h}', 'data_size')
    rows = data.reshape(h, step)[:, :row]
    order = '>' if int(msg.is_bigendian) else '<'
    pixels = np.ascontiguousarray(rows).view(dtype.newbyteorder(order))
    shape = (h, w) if channels == 1 else (h, w, channels)
    return pixels.reshape(shape).astype(dtype, copy=True)


def rgb_from_image(msg: Any) -> np.ndarray:
    """A colour image as RGB uint8 (BGR swapped, alpha dropped, grey replicated; mono16 scaled
    to 8 bits).

    Shape: (H, W, 3), uint8.
    """
    encoding = str(msg.encoding)
    if encoding in DEPTH_ENCODINGS:
        raise BadMessage(f'expected a colour image, got depth encoding {encoding!r}',
                         'encoding')
    px = image_to_numpy(msg)
    if encoding == 'rgb8':
        out = px
    elif encoding == 'bgr8':
        out = px[..., ::-1]
    elif encoding == 'rgba8':
        out = px[..., :3]
    elif encoding == 'bgra8':
        out = px[..., 2::-1]
    elif encoding == 'mono8':
        out = np.repeat(px[..., None], 3, axis=-1)
    else:  # mono16
        out = np.repeat((px >> 8).astype(np.uint8)[..., None], 3, axis=-1)
    return np.ascontiguousarray(out, dtype=np.uint8)


def depth_to_metres(raw: np.ndarray, scale: float, min_depth: float = 0.0,
                    max_depth: float = float('inf')) -> np.ndarray:
    """Raw depth divided by ``scale`` (units per metre), NaN where invalid (0, non-finite,
    outside [min_depth, max_depth]).

    Shape: (H, W) -> (H, W), float32.
    """
    if not scale > 0:
        raise MessageError(f'depth scale must be > 0, got {scale}')
    # Any bytes are pixels: signalling NaNs and overflows are invalid depth, not warnings.
    with np.errstate(invalid='ignore', over='ignore'):
        d = np.asarray(raw).astype(np.float32) / np.float32(scale)
        bad = ~np.isfinite(d) | (d <= 0) | (d < min_depth) | (d > max_depth)
    d[bad] = np.nan
    return d


def depth_from_image(msg: Any, depth_scale: float = 0.0, min_depth: float = 0.0,
                     max_depth: float = float('inf')) -> np.ndarray:
    """A depth image in metres, NaN where invalid.

    ``16UC1``/``mono16`` are millimetres unless ``depth_scale`` (units per metre, e.g. 5000 for
    TUM) is given; ``32FC1`` is metres, divided by ``depth_scale`` when given. Zero, NaN, inf
    and depths outside [min_depth, max_depth] become NaN.

    Shape: (H, W), float32.
    """
    encoding = str(msg.encoding)
    if encoding in ('16UC1', 'mono16'):
        scale = depth_scale if depth_scale > 0 else 1000.0
    elif encoding == '32FC1':
        scale = depth_scale if depth_scale > 0 else 1.0
    else:
        raise BadMessage(f'expected a depth image (16UC1 or 32FC1), got encoding {encoding!r}',
                         'encoding')
    return depth_to_metres(image_to_numpy(msg), scale, min_depth, max_depth)


def image_msg(types: MsgTypes, pixels: np.ndarray, encoding: str, stamp_ns: int,
              frame_id: str) -> Any:
    """A sensor_msgs/Image from an array (native byte order, no row padding).

    Shape: pixels (H, W) for one-channel encodings, (H, W, C) otherwise; dtype as the encoding
    (uint8, uint16, float32; float64 is accepted for 32FC1).
    """
    dtype, channels = _encoding_info(encoding)
    a = np.asarray(pixels)
    if a.dtype != dtype:
        if dtype.kind == 'f' and a.dtype.kind == 'f':
            a = a.astype(dtype)
        else:
            raise MessageError(f'{encoding} image needs {dtype} pixels, got {a.dtype}')
    expect = 2 if channels == 1 else 3
    if a.ndim != expect or (channels > 1 and a.shape[2] != channels) or a.size == 0:
        want = '(H, W)' if channels == 1 else f'(H, W, {channels})'
        raise MessageError(f'{encoding} image needs shape {want} with H, W > 0, got {a.shape}')
    h, w = a.shape[:2]
    return types.new(
        'Image', header=_header(types, stamp_ns, frame_id), height=int(h), width=int(w),
        encoding=str(encoding), is_bigendian=int(sys.byteorder == 'big'),
        step=int(w * channels * dtype.itemsize), data=types.u8(np.ascontiguousarray(a).tobytes()))


# ----------------------------------------------------------------------------------------------
# Camera info


def camera_info_to_K(msg: Any) -> Tuple[np.ndarray, int, int]:
    """Intrinsics of a sensor_msgs/CameraInfo.

    Returns:
        K (3, 3) float64, width, height.

    Raises:
        BadMessage: an uncalibrated (all zero) or invalid K ('k'), or a zero image size
            ('size').
    """
    K = np.asarray(_field(msg, 'k', 'K'), dtype=np.float64).reshape(-1)
    w, h = int(msg.width), int(msg.height)
    if K.size != 9:
        raise BadMessage(f'camera_info K has {K.size} numbers, expected 9', 'k')
    K = K.reshape(3, 3)
    if not np.all(np.isfinite(K)):
        raise BadMessage(f'camera_info K has non-finite values: {K.tolist()}', 'k')
    if not np.any(K):
        raise BadMessage('camera_info K is all zero: the camera is not calibrated', 'k')
    fx, fy = K[0, 0], K[1, 1]
    if fx <= 0 or fy <= 0:
        raise BadMessage(f'camera_info K has fx={fx:g}, fy={fy:g}; both must be > 0', 'k')
    if not np.allclose(K[2], [0.0, 0.0, 1.0]) or K[1, 0] != 0:
        raise BadMessage(f'camera_info K is not a pinhole matrix: {K.tolist()}', 'k')
    if w <= 0 or h <= 0:
        raise BadMessage(f'camera_info has image size {w}x{h}; expected width, height > 0',
                         'size')
    return K, w, h


def camera_info_msg(types: MsgTypes, K: np.ndarray, width: int, height: int, stamp_ns: int,
                    frame_id: str, D: Optional[Sequence[float]] = None) -> Any:
    """A sensor_msgs/CameraInfo of a pinhole camera (plumb_bob, zero distortion unless ``D``).

    Shape: K (3, 3).
    """
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise MessageError(f'K must be 3x3, got shape {K.shape}')
    P = np.zeros((3, 4))
    P[:, :3] = K
    roi = types.new('RegionOfInterest', x_offset=0, y_offset=0, height=0, width=0,
                    do_rectify=False)
    return types.new(
        'CameraInfo', header=_header(types, stamp_ns, frame_id), height=int(height),
        width=int(width), distortion_model='plumb_bob',
        d=types.f64_seq(np.zeros(5) if D is None else D),
        k=types.f64_fixed(K, 9, 'K'), r=types.f64_fixed(np.eye(3), 9, 'R'),
        p=types.f64_fixed(P, 12, 'P'), binning_x=0, binning_y=0, roi=roi)


# ----------------------------------------------------------------------------------------------
# IMU, poses, transforms


def _vector3(types: MsgTypes, v: Any, what: str) -> Any:
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    if v.size != 3:
        raise MessageError(f'{what} needs 3 numbers, got {v.size}')
    return types.new('Vector3', x=float(v[0]), y=float(v[1]), z=float(v[2]))


def _quaternion(types: MsgTypes, q: np.ndarray) -> Any:
    return types.new('Quaternion', x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3]))


def _pose(types: MsgTypes, T: np.ndarray) -> Any:
    xyz, q = matrix_to_pose(T)
    return types.new('Pose', position=types.new('Point', x=float(xyz[0]), y=float(xyz[1]),
                                                z=float(xyz[2])),
                     orientation=_quaternion(types, q))


def imu_msg(types: MsgTypes, stamp_ns: int, frame_id: str, acc: np.ndarray, gyro: np.ndarray,
            acc_cov: Optional[np.ndarray] = None, gyro_cov: Optional[np.ndarray] = None) -> Any:
    """A sensor_msgs/Imu without orientation (orientation_covariance[0] = -1, as REP-145 says).

    Shape: acc (3,) m/s², gyro (3,) rad/s, acc_cov/gyro_cov (3, 3) (zero: unknown).
    """
    ocov = np.zeros(9)
    ocov[0] = -1.0
    return types.new(
        'Imu', header=_header(types, stamp_ns, frame_id),
        orientation=types.new('Quaternion', x=0.0, y=0.0, z=0.0, w=1.0),
        orientation_covariance=types.f64_fixed(ocov, 9, 'orientation_covariance'),
        angular_velocity=_vector3(types, gyro, 'gyro'),
        angular_velocity_covariance=types.f64_fixed(
            np.zeros(9) if gyro_cov is None else gyro_cov, 9, 'gyro_cov'),
        linear_acceleration=_vector3(types, acc, 'acc'),
        linear_acceleration_covariance=types.f64_fixed(
            np.zeros(9) if acc_cov is None else acc_cov, 9, 'acc_cov'))


def imu_from_msg(msg: Any) -> ImuSample:
    """An ImuSample in the IMU's own frame (header.frame_id); rotating it into the body frame
    is the caller's job (it needs the extrinsics). Non-finite readings are kept (the caller
    counts them).

    Raises:
        BadMessage: an invalid stamp ('stamp'), vectors that are not numbers ('malformed').
    """
    stamp = header_stamp_ns(msg)
    try:
        acc, gyro = _vec3(msg.linear_acceleration), _vec3(msg.angular_velocity)
    except MALFORMED as err:
        raise BadMessage(f'IMU message is malformed: {type(err).__name__}: {err}',
                         'malformed') from err
    return ImuSample(stamp_ns=stamp, acc=acc, gyro=gyro)


def pose_stamped_msg(types: MsgTypes, stamp_ns: int, frame_id: str, T: np.ndarray) -> Any:
    """A geometry_msgs/PoseStamped of ``T`` (the pose of the body in ``frame_id``).

    Shape: T (4, 4).
    """
    return types.new('PoseStamped', header=_header(types, stamp_ns, frame_id),
                     pose=_pose(types, as_transform(T, 'pose')))


def odometry_msg(types: MsgTypes, stamp_ns: int, frame_id: str, child_frame_id: str,
                 T: np.ndarray, cov6x6: Optional[np.ndarray] = None,
                 v_world: Optional[np.ndarray] = None,
                 w_body: Optional[np.ndarray] = None,
                 twist_cov6x6: Optional[np.ndarray] = None) -> Any:
    """A nav_msgs/Odometry: pose of ``child_frame_id`` in ``frame_id`` with covariance (order
    x y z rx ry rz), and the twist in the child frame as nav_msgs/Odometry specifies (the
    world-frame velocity is rotated into the body frame here) with its covariance (order vx vy
    vz wx wy wz, body frame).

    Shape: T (4, 4), cov6x6 (6, 6), v_world (3,), w_body (3,), twist_cov6x6 (6, 6).
    """
    T = as_transform(T, 'odometry pose')
    v_body = np.zeros(3) if v_world is None else T[:3, :3].T @ np.asarray(v_world, float)
    twist = types.new('Twist', linear=_vector3(types, v_body, 'v_world'),
                      angular=_vector3(types, np.zeros(3) if w_body is None else w_body,
                                       'w_body'))
    cov = np.zeros((6, 6)) if cov6x6 is None else cov6x6
    return types.new(
        'Odometry', header=_header(types, stamp_ns, frame_id), child_frame_id=str(child_frame_id),
        pose=types.new('PoseWithCovariance', pose=_pose(types, T),
                       covariance=types.f64_fixed(cov, 36, 'pose covariance')),
        twist=types.new('TwistWithCovariance', twist=twist,
                        covariance=types.f64_fixed(
                            np.zeros(36) if twist_cov6x6 is None else twist_cov6x6, 36,
                            'twist covariance')))


def transform_stamped_msg(types: MsgTypes, parent: str, child: str, T_parent_child: np.ndarray,
                          stamp_ns: int) -> Any:
    """A geometry_msgs/TransformStamped: the pose of ``child`` in ``parent``.

    Shape: T_parent_child (4, 4).
    """
    xyz, q = matrix_to_pose(as_transform(T_parent_child, f'transform {parent} <- {child}'))
    tf = types.new('Transform', translation=_vector3(types, xyz, 'translation'),
                   rotation=_quaternion(types, q))
    return types.new('TransformStamped', header=_header(types, stamp_ns, parent),
                     child_frame_id=str(child), transform=tf)


def tf_message(types: MsgTypes,
               transforms: Iterable[Tuple[str, str, np.ndarray, int]]) -> Any:
    """A tf2_msgs/TFMessage from (parent, child, T_parent_child (4, 4), stamp_ns) tuples."""
    return types.new('TFMessage', transforms=[
        transform_stamped_msg(types, p, c, T, s) for p, c, T, s in transforms])


def transform_to_matrix(msg: Any) -> np.ndarray:
    """T_parent_child of a geometry_msgs/TransformStamped (or Transform).

    Shape: (4, 4).
    """
    tf = getattr(msg, 'transform', msg)
    return pose_to_matrix(_vec3(tf.translation), _quat(tf.rotation))


def pose_from_msg(msg: Any) -> PoseSample:
    """A PoseSample from a geometry_msgs/PoseStamped, PoseWithCovarianceStamped,
    TransformStamped or nav_msgs/Odometry (whose body-frame linear twist becomes v_world)."""
    stamp = header_stamp_ns(msg)
    if hasattr(msg, 'transform'):
        return PoseSample(stamp, transform_to_matrix(msg))
    pose = msg.pose
    if hasattr(pose, 'pose'):  # PoseWithCovariance
        pose = pose.pose
    if not hasattr(pose, 'position'):
        raise MessageError(f'{type(msg).__name__} is not a pose message')
    T = pose_to_matrix(_vec3(pose.position), _quat(pose.orientation))
    v_world = None
    if hasattr(msg, 'twist'):
        v_world = T[:3, :3] @ _vec3(msg.twist.twist.linear)
    return PoseSample(stamp, T, v_world)


def path_msg(types: MsgTypes, stamp_ns: int, frame_id: str, poses: Sequence[Any]) -> Any:
    """A nav_msgs/Path of already built geometry_msgs/PoseStamped messages (``pose_stamped_msg``)
    in ``frame_id``."""
    return types.new('Path', header=_header(types, stamp_ns, frame_id), poses=list(poses))


# ----------------------------------------------------------------------------------------------
# Diagnostics

#: diagnostic_msgs/DiagnosticStatus levels
DIAG_OK, DIAG_WARN, DIAG_ERROR, DIAG_STALE = 0, 1, 2, 3


def diagnostic_status_msg(types: MsgTypes, name: str, level: int, message: str,
                          values: Mapping[str, Any], hardware_id: str = '') -> Any:
    """A diagnostic_msgs/DiagnosticStatus; ``values`` become KeyValue pairs (values as text,
    floats with 6 significant digits), in the mapping's order."""
    if int(level) not in (DIAG_OK, DIAG_WARN, DIAG_ERROR, DIAG_STALE):
        raise MessageError(f'diagnostic level must be 0 (OK), 1 (WARN), 2 (ERROR) or 3 (STALE), '
                           f'got {level}')
    kv = [types.new('KeyValue', key=str(k), value=_diag_text(v)) for k, v in values.items()]
    return types.new('DiagnosticStatus', level=types.byte(level), name=str(name),
                     message=str(message), hardware_id=str(hardware_id), values=kv)


def diagnostic_array_msg(types: MsgTypes, stamp_ns: int, statuses: Sequence[Any]) -> Any:
    """A diagnostic_msgs/DiagnosticArray of DiagnosticStatus messages."""
    return types.new('DiagnosticArray', header=_header(types, stamp_ns, ''),
                     status=list(statuses))


def _diag_text(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return 'true' if v else 'false'
    if isinstance(v, (float, np.floating)):
        return f'{float(v):.6g}'
    return str(v)


# ----------------------------------------------------------------------------------------------
# Point clouds

# sensor_msgs/PointField datatypes
_PF_DTYPES = {1: np.int8, 2: np.uint8, 3: np.int16, 4: np.uint16, 5: np.int32, 6: np.uint32,
              7: np.float32, 8: np.float64}
_PF_FLOAT32 = 7


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """Colours packed as RViz/PCL expect: 0x00RRGGBB in a uint32 reinterpreted as float32.

    Shape: (N, 3) uint8 -> (N,) float32.
    """
    rgb = np.asarray(rgb, dtype=np.uint8).reshape(-1, 3).astype(np.uint32)
    packed = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
    return packed.view(np.float32)


def unpack_rgb(packed: np.ndarray) -> np.ndarray:
    """Inverse of ``pack_rgb``. Shape: (N,) float32 or uint32 -> (N, 3) uint8."""
    u = np.ascontiguousarray(packed).view(np.uint32).reshape(-1)
    return np.stack([(u >> 16) & 255, (u >> 8) & 255, u & 255], axis=-1).astype(np.uint8)


def pointcloud2_msg(types: MsgTypes, xyz: np.ndarray, rgb: Optional[np.ndarray],
                    prob: Optional[np.ndarray], stamp_ns: int, frame_id: str) -> Any:
    """An unorganised sensor_msgs/PointCloud2 with float32 fields x y z, rgb (packed, when
    given) and occupancy (when given).

    Shape: xyz (N, 3), rgb (N, 3) uint8, prob (N,).
    """
    xyz = np.asarray(xyz, dtype=np.float32)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise MessageError(f'point cloud xyz needs shape (N, 3), got {xyz.shape}')
    n = xyz.shape[0]
    cols = [('x', xyz[:, 0]), ('y', xyz[:, 1]), ('z', xyz[:, 2])]
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.shape != (n, 3):
            raise MessageError(f'point cloud rgb needs shape ({n}, 3), got {rgb.shape}')
        cols.append(('rgb', pack_rgb(rgb)))
    if prob is not None:
        prob = np.asarray(prob, dtype=np.float32).reshape(-1)
        if prob.shape != (n,):
            raise MessageError(f'point cloud occupancy needs shape ({n},), got {prob.shape}')
        cols.append(('occupancy', prob))
    dtype = np.dtype([(name, '<f4') for name, _ in cols])
    rec = np.empty(n, dtype=dtype)
    for name, col in cols:
        rec[name] = col
    fields = [types.new('PointField', name=name, offset=int(dtype.fields[name][1]),
                        datatype=_PF_FLOAT32, count=1) for name, _ in cols]
    return types.new(
        'PointCloud2', header=_header(types, stamp_ns, frame_id), height=1, width=int(n),
        fields=fields, is_bigendian=False, point_step=int(dtype.itemsize),
        row_step=int(dtype.itemsize * n), data=types.u8(rec.tobytes()),
        is_dense=bool(np.all(np.isfinite(xyz))))


def pointcloud2_to_numpy(msg: Any) -> Dict[str, np.ndarray]:
    """The fields of a sensor_msgs/PointCloud2 as arrays of length N = width x height.

    Every field comes back by name with its own dtype (shape (N,), or (N, count)); in addition
    'xyz' (N, 3) float64 when x, y, z exist, and a field named 'rgb' or 'rgba' of 4 bytes is
    unpacked to 'rgb' (N, 3) uint8.
    """
    n = int(msg.width) * int(msg.height)
    step = int(msg.point_step)
    order = '>' if bool(msg.is_bigendian) else '<'
    names, formats, offsets = [], [], []
    for f in msg.fields:
        dt = _PF_DTYPES.get(int(f.datatype))
        if dt is None:
            raise MessageError(f'point field {f.name!r} has unknown datatype {f.datatype}')
        count = max(int(f.count), 1)
        names.append(str(f.name))
        base = np.dtype(dt).newbyteorder(order)
        formats.append(base if count == 1 else (base, (count,)))
        offsets.append(int(f.offset))
    dtype = np.dtype({'names': names, 'formats': formats, 'offsets': offsets,
                      'itemsize': step})
    data = _u8_view(msg.data)
    row_step = int(msg.row_step)
    if int(msg.height) > 1 and row_step != step * int(msg.width):
        data = data.reshape(int(msg.height), row_step)[:, :step * int(msg.width)].reshape(-1)
    if data.size < n * step:
        raise MessageError(f'point cloud data has {data.size} bytes, expected {n} x {step}')
    rec = np.frombuffer(np.ascontiguousarray(data[:n * step]).tobytes(), dtype=dtype, count=n)
    out = {name: rec[name].astype(rec[name].dtype.newbyteorder('='), copy=True)
           for name in names}
    if all(k in out for k in ('x', 'y', 'z')):
        out['xyz'] = np.stack([out['x'], out['y'], out['z']], axis=-1).astype(np.float64)
    for key in ('rgb', 'rgba'):
        if key in out and out[key].dtype.itemsize == 4 and out[key].ndim == 1:
            out['rgb'] = unpack_rgb(out.pop(key))
            break
    return out
