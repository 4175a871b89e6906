# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""What the node publishes, built once for both drivers: the ROS 2 node (rclpy classes) and
``vssm-replay --out-bag`` (rosbags classes), so a replayed bag shows exactly what a live run
publishes.

Builders take a ``MsgTypes`` namespace (``vssm_ros.data.messages``) and plain NumPy data: an
``Estimate``, the dict of ``SlamEngine.map_points()`` or of ``SlamEngine.render()``. Topic names
are node-relative (``'odometry'`` is ``~/odometry`` in the node) except the absolute ``/tf``,
``/tf_static`` and ``/diagnostics``; ``topic_name`` resolves them under a namespace (the bag
uses ``/vssm``). Every stamp is an image stamp, never the wall clock (DESIGN section 4).

Frames (REP-105): odometry and path are the pose of ``frames.body_frame`` in
``frames.map_frame``; /tf carries map -> odom always and odom -> base_link in standalone mode.
"""

from __future__ import annotations

import array
from collections import deque
from typing import Any, Deque, Dict, List, Mapping, Optional, Tuple

import numpy as np

from vssm_ros.config import FramesConfig, OutputsConfig
from vssm_ros.data import messages as M
from vssm_ros.data.transforms import as_transform, invert
from vssm_ros.errors import MessageError
from vssm_ros.types import Estimate, Frame

ODOMETRY = 'odometry'
PATH = 'path'
MAP_CLOUD = 'map_cloud'
PREDICTED_DEPTH = 'predicted/depth'
PREDICTED_DEPTH_STD = 'predicted/depth_std'
PREDICTED_COLOR = 'predicted/color'
PREDICTED_PATH = 'predicted/path'
PREDICTED_POSE = 'predicted/pose'
COST_SLICE = 'cost_slice'
STATUS = 'status'
DIAGNOSTICS = '/diagnostics'
TF = '/tf'
TF_STATIC = '/tf_static'

BAG_NAMESPACE = '/vssm'
"""Namespace of the node-relative topics in a replay's output bag (the node's name)."""
DIAGNOSTIC_NAME = 'vssm_ros: slam'
"""``name`` of the node's DiagnosticStatus (``node name: what``, as diagnostic_updater does)."""

MSG_TYPES: Dict[str, str] = {
    ODOMETRY: 'nav_msgs/msg/Odometry',
    PATH: 'nav_msgs/msg/Path',
    MAP_CLOUD: 'sensor_msgs/msg/PointCloud2',
    PREDICTED_DEPTH: 'sensor_msgs/msg/Image',
    PREDICTED_DEPTH_STD: 'sensor_msgs/msg/Image',
    PREDICTED_COLOR: 'sensor_msgs/msg/Image',
    PREDICTED_PATH: 'nav_msgs/msg/Path',
    PREDICTED_POSE: 'geometry_msgs/msg/PoseWithCovarianceStamped',
    COST_SLICE: 'nav_msgs/msg/OccupancyGrid',
    STATUS: 'diagnostic_msgs/msg/DiagnosticStatus',
    DIAGNOSTICS: 'diagnostic_msgs/msg/DiagnosticArray',
    TF: 'tf2_msgs/msg/TFMessage',
    TF_STATIC: 'tf2_msgs/msg/TFMessage',
}
"""Every published topic (node-relative or absolute name) with its ROS 2 message type."""

LATCHED = (MAP_CLOUD, COST_SLICE, TF_STATIC)
"""Topics published transient-local (late subscribers get the last message)."""


def topic_name(name: str, namespace: str = BAG_NAMESPACE) -> str:
    """The absolute name of a published topic: absolute names unchanged, node-relative ones
    under ``namespace`` ('odometry' -> '/vssm/odometry')."""
    if name.startswith('/'):
        return name
    return f'{namespace.rstrip("/")}/{name}'


# ----------------------------------------------------------------------------------------------
# Pose outputs


def tf_msgs_for_estimate(types: M.MsgTypes, est: Estimate, frames: FramesConfig,
                         T_map_odom: Optional[np.ndarray] = None) -> List[Any]:
    """The /tf transforms of one estimate, stamped with its image stamp: map -> odom always,
    odom -> base_link (``T_odom_map T_map_body``) when ``frames.standalone``.

    In standalone mode ``T_map_odom`` is the identity (the engine is the odometry); with an
    external odometry source the caller passes ``T_map_body inv(T_odom_body)`` for the
    odometry's pose at the same stamp.

    Shape: T_map_odom (4, 4).
    """
    T_map_odom = np.eye(4) if T_map_odom is None else as_transform(T_map_odom, 'T_map_odom')
    stamp = int(est.stamp_ns)
    out = [M.transform_stamped_msg(types, frames.map_frame, frames.odom_frame, T_map_odom,
                                   stamp)]
    if frames.standalone:
        T_odom_body = invert(T_map_odom) @ as_transform(est.T_world_body, 'T_world_body')
        out.append(M.transform_stamped_msg(types, frames.odom_frame, frames.body_frame,
                                           T_odom_body, stamp))
    return out


def tf_message_for_estimate(types: M.MsgTypes, est: Estimate, frames: FramesConfig,
                            T_map_odom: Optional[np.ndarray] = None) -> Any:
    """``tf_msgs_for_estimate`` as one tf2_msgs/TFMessage (what /tf carries)."""
    return types.new('TFMessage', transforms=tf_msgs_for_estimate(types, est, frames, T_map_odom))


def angular_rate(T_prev: np.ndarray, T: np.ndarray, dt_s: float) -> np.ndarray:
    """The body-frame angular rate that turns ``T_prev`` into ``T`` in ``dt_s`` seconds
    (``log(R_prev^T R) / dt``); zero for ``dt_s <= 0``.

    Shape: T_prev, T (4, 4) -> (3,).
    """
    if not dt_s > 0:
        return np.zeros(3)
    R = np.asarray(T_prev, float)[:3, :3].T @ np.asarray(T, float)[:3, :3]
    cos = np.clip(0.5 * (np.trace(R) - 1.0), -1.0, 1.0)
    angle = float(np.arccos(cos))
    axis = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    s = np.sin(angle)
    if s < 1e-9:   # tiny angles (and, rarely, pi: then any axis is as good)
        return 0.5 * axis / dt_s
    return angle * axis / (2.0 * s) / dt_s


def twist_of(est: Estimate, previous: Optional[Estimate]) -> Tuple[np.ndarray, np.ndarray]:
    """The body-frame angular rate of ``est`` and its twist covariance (vx vy vz wx wy wz, body
    frame), from the previous estimate when the estimate has none of its own
    (``est.omega`` / ``est.twist_cov`` when the engine provides them).

    The finite-difference covariance treats the two poses as independent: an upper bound (the
    linear part: the position covariances' sum over dt², rotated into the body).

    Shape: -> (3,), (6, 6).
    """
    w = getattr(est, 'omega', None)
    cov = getattr(est, 'twist_cov', None)
    if previous is None or previous.stamp_ns >= est.stamp_ns:
        return (np.zeros(3) if w is None else np.asarray(w, float),
                np.zeros((6, 6)) if cov is None else np.asarray(cov, float))
    dt = (int(est.stamp_ns) - int(previous.stamp_ns)) * 1e-9
    if w is None:
        w = angular_rate(previous.T_world_body, est.T_world_body, dt)
    if cov is None:
        R = np.asarray(est.T_world_body, float)[:3, :3]
        c = (np.asarray(est.cov, float) + np.asarray(previous.cov, float)) / dt ** 2
        cov = np.zeros((6, 6))
        cov[:3, :3] = R.T @ c[:3, :3] @ R
        cov[3:, 3:] = R.T @ c[3:, 3:] @ R
    return np.asarray(w, float), np.asarray(cov, float)


def odometry_for_estimate(types: M.MsgTypes, est: Estimate, frames: FramesConfig,
                          previous: Optional[Estimate] = None) -> Any:
    """nav_msgs/Odometry of one estimate: pose of ``body_frame`` in ``map_frame`` with the
    engine's covariance (x y z rx ry rz, row-major 36, as the Estimate gives it), twist in
    ``body_frame`` (REP-105: the world-frame velocity rotated into the body; the angular rate
    and the twist covariance from ``twist_of`` with the ``previous`` estimate)."""
    w_body, twist_cov = twist_of(est, previous)
    return M.odometry_msg(types, int(est.stamp_ns), frames.map_frame, frames.body_frame,
                          est.T_world_body, cov6x6=est.cov, v_world=est.v_world,
                          w_body=w_body, twist_cov6x6=twist_cov)


class PathAccumulator:
    """The estimated trajectory as a nav_msgs/Path in ``frame_id``, at most ``max_poses`` long
    (the oldest poses drop out). Each pose message is built once, so a long path costs one
    list copy per publication.

    Example::

        path = PathAccumulator(types, cfg.frames.map_frame, cfg.outputs.path_max_poses)
        publisher.publish(path.append(est))
    """

    def __init__(self, types: M.MsgTypes, frame_id: str, max_poses: int) -> None:
        if int(max_poses) < 1:
            raise MessageError(f'a path keeps at least 1 pose, got max_poses={max_poses}')
        self.types = types
        self.frame_id = str(frame_id)
        self._poses: Deque[Any] = deque(maxlen=int(max_poses))
        self._stamp_ns = 0

    def __len__(self) -> int:
        return len(self._poses)

    def append(self, est: Estimate) -> Any:
        """Add the estimate's pose; the path up to it, stamped with its stamp."""
        self.add(est)
        return self.msg()

    def add(self, est: Estimate) -> None:
        """Add the estimate's pose (no message built)."""
        self._stamp_ns = int(est.stamp_ns)
        self._poses.append(M.pose_stamped_msg(self.types, self._stamp_ns, self.frame_id,
                                              est.T_world_body))

    def msg(self) -> Any:
        """The current path, stamped with the last pose's stamp (0 when empty)."""
        return M.path_msg(self.types, self._stamp_ns, self.frame_id, list(self._poses))

    def clear(self) -> None:
        """Forget every pose (after ``~/reset``)."""
        self._poses.clear()
        self._stamp_ns = 0


# ----------------------------------------------------------------------------------------------
# Map and predictions


def _require(data: Mapping[str, Any], keys: Tuple[str, ...], what: str, source: str) -> None:
    missing = [k for k in keys if k not in data]
    if missing:
        raise MessageError(f'{what} lacks {missing}; expected the dict of {source} '
                           f'({", ".join(keys)})')


def map_cloud_msg(types: M.MsgTypes, points: Mapping[str, np.ndarray], stamp_ns: int,
                  frame_id: str) -> Any:
    """sensor_msgs/PointCloud2 of ``SlamEngine.map_points()``: float32 fields x y z, rgb
    (packed 0x00RRGGBB, as RViz colours by) and occupancy (probability).

    Shape: points['xyz'] (N, 3), points['rgb'] (N, 3) uint8, points['occupancy'] (N,).
    """
    _require(points, ('xyz', 'rgb', 'occupancy'), 'map points', 'SlamEngine.map_points()')
    return M.pointcloud2_msg(types, points['xyz'], points['rgb'], points['occupancy'], stamp_ns,
                             frame_id)


def predicted_image_msgs(types: M.MsgTypes, render: Mapping[str, np.ndarray], stamp_ns: int,
                         camera_frame: str) -> Dict[str, Any]:
    """The predicted images of ``SlamEngine.render()`` by topic: PREDICTED_DEPTH (32FC1 metres,
    NaN where nothing is hit), PREDICTED_DEPTH_STD (32FC1 metres, NaN there too) and
    PREDICTED_COLOR (rgb8), all in ``camera_frame`` (the optical frame they were rendered in).

    Shape: render['depth'] (H, W), render['depth_std'] (H, W), render['color'] (H, W, 3).
    """
    _require(render, ('depth', 'depth_std', 'color'), 'render', 'SlamEngine.render()')
    return {
        PREDICTED_DEPTH: M.image_msg(types, np.asarray(render['depth'], np.float32), '32FC1',
                                     stamp_ns, camera_frame),
        PREDICTED_DEPTH_STD: M.image_msg(types, np.asarray(render['depth_std'], np.float32),
                                         '32FC1', stamp_ns, camera_frame),
        PREDICTED_COLOR: M.image_msg(types, np.asarray(render['color'], np.uint8), 'rgb8',
                                     stamp_ns, camera_frame),
    }


def mean_rotation(R: np.ndarray) -> np.ndarray:
    """The chordal mean of rotation matrices: their average projected back onto SO(3).

    Shape: (S, 3, 3) -> (3, 3).
    """
    U, _, Vt = np.linalg.svd(np.asarray(R, float).mean(axis=0))
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    return U @ D @ Vt


def predicted_path_msgs(types: M.MsgTypes, rollout: Mapping[str, np.ndarray], stamp_ns: int,
                        frame_id: str) -> Dict[str, Any]:
    """The predicted motion of ``SlamEngine.predict(render=False)``: PREDICTED_PATH
    (nav_msgs/Path of the mean rollout, one pose per control step, stamped at its future time)
    and PREDICTED_POSE (geometry_msgs/PoseWithCovarianceStamped at the horizon: the samples'
    mean and their spread as the covariance, x y z rx ry rz), both in ``frame_id``.

    Shape: rollout['t'] (N,) seconds after ``stamp_ns``, rollout['p'] (S, N, 3),
    rollout['R'] (S, N, 3, 3).
    """
    _require(rollout, ('t', 'p', 'R'), 'rollout', 'SlamEngine.predict()')
    t = np.asarray(rollout['t'], float)
    p = np.asarray(rollout['p'], float)
    R = np.asarray(rollout['R'], float)
    if p.ndim != 3 or p.shape[1] != len(t) or R.shape[:2] != p.shape[:2]:
        raise MessageError(f'rollout shapes do not match: t {t.shape}, p {p.shape}, '
                           f'R {R.shape}')
    poses = []
    for k in range(len(t)):
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = mean_rotation(R[:, k]), p[:, k].mean(axis=0)
        poses.append(M.pose_stamped_msg(types, int(stamp_ns + round(t[k] * 1e9)), frame_id, T))
    end = int(stamp_ns + round(t[-1] * 1e9))
    cov = np.zeros((6, 6))
    if p.shape[0] > 1:
        cov[:3, :3] = np.cov(p[:, -1].T)
        T_end = np.eye(4)
        T_end[:3, :3] = mean_rotation(R[:, -1])
        # Rotation spread about the map axes: the small angles of R_mean^T R_s, in the map.
        rot = np.stack([T_end[:3, :3] @ angular_rate(T_end, _rt(r), 1.0) for r in R[:, -1]])
        cov[3:, 3:] = np.cov(rot.T)
    T_end = np.eye(4)
    T_end[:3, :3], T_end[:3, 3] = mean_rotation(R[:, -1]), p[:, -1].mean(axis=0)
    pose = types.new('PoseWithCovarianceStamped', header=M._header(types, end, frame_id),
                     pose=types.new('PoseWithCovariance', pose=M._pose(types, T_end),
                                    covariance=types.f64_fixed(cov, 36, 'predicted covariance')))
    return {PREDICTED_PATH: M.path_msg(types, end, frame_id, poses), PREDICTED_POSE: pose}


def _rt(R: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R
    return T


def cost_slice_msg(types: M.MsgTypes, grid: Mapping[str, Any], stamp_ns: int,
                   frame_id: str) -> Any:
    """nav_msgs/OccupancyGrid of a collision cost slice (``CostField.slice``): 0..100 the cost,
    -1 unknown; the grid's origin is its cell (0, 0) corner at the layer's height.

    Shape: grid['data'] (Y, X) int8, grid['origin_xy'] (2,).
    """
    _require(grid, ('data', 'origin_xy', 'resolution', 'height'), 'cost slice',
             'CostField.slice()')
    data = np.ascontiguousarray(np.asarray(grid['data']).astype(np.int8))
    if data.ndim != 2:
        raise MessageError(f'cost slice data must be 2-D, got shape {data.shape}')
    T = np.eye(4)
    T[:2, 3] = np.asarray(grid['origin_xy'], float)
    T[2, 3] = float(grid['height'])
    info = types.new('MapMetaData', map_load_time=M.ns_to_stamp(types, stamp_ns),
                     resolution=float(grid['resolution']), width=int(data.shape[1]),
                     height=int(data.shape[0]), origin=M._pose(types, T))
    values = (data.reshape(-1) if types.backend == 'rosbags'
              else array.array('b', data.tobytes()))
    return types.new('OccupancyGrid', header=M._header(types, stamp_ns, frame_id), info=info,
                     data=values)


def prediction_camera(K: np.ndarray, width: int, height: int, max_width: int
                      ) -> Tuple[np.ndarray, int, int, int]:
    """The camera to render a predicted image with: the input camera subsampled by the smallest
    integer step ``s`` that makes it at most ``max_width`` wide (0: no limit). Pixel (s u, s v)
    of the input becomes (u, v), and ``K`` is scaled by 1/s so every pixel keeps its ray; the
    size is that of ``image[::s, ::s]``.

    Shape: K (3, 3) -> (3, 3).

    Returns:
        (K_s, width_s, height_s, s).
    """
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise MessageError(f'K must be 3x3, got shape {K.shape}')
    s = max(1, -(-int(width) // int(max_width))) if max_width > 0 else 1   # ceil
    if s == 1:
        return K.copy(), int(width), int(height), 1
    K_s = np.diag([1.0 / s, 1.0 / s, 1.0]) @ K
    return K_s, -(-int(width) // s), -(-int(height) // s), s


def diagnostics_msg(types: M.MsgTypes, stamp_ns: int, name: str, level: int, message: str,
                    values: Mapping[str, Any], hardware_id: str = '') -> Any:
    """diagnostic_msgs/DiagnosticArray with one status (level ``messages.DIAG_OK`` .. ``STALE``;
    ``values`` as key/value text pairs, e.g. frames received/processed/dropped, latency)."""
    return M.diagnostic_array_msg(types, stamp_ns, [
        M.diagnostic_status_msg(types, name, level, message, values, hardware_id)])


# ----------------------------------------------------------------------------------------------
# Rates


class StampRateLimiter:
    """Decides whether an output is due, by image stamps (so a replay and a live run at any
    speed publish at the same frames).

    ``period_s`` 0: every frame; < 0: never; else the first frame and then every frame at
    least ``period_s`` after the last one published. A stamp earlier than the last one (a
    reset, a bag played again) starts over.
    """

    def __init__(self, period_s: float) -> None:
        if not np.isfinite(period_s):
            raise MessageError(f'output period must be finite, got {period_s}')
        self.period_ns = int(round(float(period_s) * 1e9))
        self.last_ns: Optional[int] = None

    def due(self, stamp_ns: int) -> bool:
        """Whether to publish at ``stamp_ns``; if so it counts as published."""
        if self.period_ns < 0:
            return False
        stamp_ns = int(stamp_ns)
        if (self.last_ns is None or stamp_ns < self.last_ns
                or stamp_ns - self.last_ns >= self.period_ns):
            self.last_ns = stamp_ns
            return True
        return False

    def reset(self) -> None:
        self.last_ns = None


# ----------------------------------------------------------------------------------------------
# The schedule


OUTPUT_DEFER = 4
"""While the driver has a newer frame waiting (the node lags), rate-limited outputs wait for
an idle moment, at most this many periods (counted from the last one published, or from the
schedule's first frame before the first: at start-up the engine's first keyframe leaves
frames waiting, and the first renders, all of them due at once, would delay them further)."""


class OutputSchedule:
    """What to publish for each processed frame, and when: the one schedule of the node and of
    ``vssm-replay --out-bag`` (both through ``vssm_ros.session.SlamSession``). Per estimate:
    /tf, odometry, and the path when due by image stamps. Per frame, when due by image
    stamps: the predicted images (rendered from the estimate at ``prediction_camera``), the
    predicted motion, the collision cost slice at flight height and the map cloud.

    ``engine`` arguments are duck-typed ``SlamEngine``s (``render``, ``predict``,
    ``cost_field``, ``map_points``).

    Args:
        types: the message classes.
        frames: TF frame names.
        cfg: rates, path length, predicted image size.
        camera_frame: frame_id of the predicted images (the input images' optical frame).
    """

    def __init__(self, types: M.MsgTypes, frames: FramesConfig, cfg: OutputsConfig,
                 camera_frame: str) -> None:
        self.types, self.frames, self.cfg = types, frames, cfg
        self.camera_frame = camera_frame
        self.path = PathAccumulator(types, frames.map_frame, cfg.path_max_poses)
        self.path_due = StampRateLimiter(cfg.path_period_s)
        self.map_due = StampRateLimiter(cfg.map_cloud_period_s)
        self.predicted_due = StampRateLimiter(cfg.predicted_period_s)
        self.predicted_path_due = StampRateLimiter(cfg.predicted_path_period_s)
        self.cost_due = StampRateLimiter(cfg.cost_slice_period_s)
        self.last_map_ns: Optional[int] = None
        self.previous: Optional[Estimate] = None
        self.first_ns: Optional[int] = None   # the first frame's stamp offered to for_frame

    def for_estimate(self, est: Estimate, T_map_odom: Optional[np.ndarray] = None,
                     tf: bool = True) -> List[Tuple[str, Any]]:
        """(topic, message) of TF (unless ``tf`` is false), ODOMETRY and, when due
        (``outputs.path_period_s``), PATH for one estimate; ``T_map_odom`` as
        ``tf_message_for_estimate`` takes it."""
        t, frames = self.types, self.frames
        out = [(TF, tf_message_for_estimate(t, est, frames, T_map_odom))] if tf else []
        out.append((ODOMETRY, odometry_for_estimate(t, est, frames, self.previous)))
        self.path.add(est)
        if self.path_due.due(int(est.stamp_ns)):
            out.append((PATH, self.path.msg()))
        self.previous = est
        return out

    def _due(self, limiter: StampRateLimiter, stamp_ns: int, defer: bool) -> bool:
        since = limiter.last_ns if limiter.last_ns is not None else self.first_ns
        if (defer and since is not None and limiter.period_ns > 0
                and 0 <= stamp_ns - since < OUTPUT_DEFER * limiter.period_ns):
            return False
        return limiter.due(stamp_ns)

    def for_frame(self, frame: Frame, est: Estimate, engine: Any,
                  defer: bool = False) -> List[Tuple[str, Any]]:
        """(topic, message) of the rate-limited outputs that are due at the estimate's stamp.
        ``defer``: a newer frame waits, so tracking comes first: each output is put off to a
        later frame, for at most ``OUTPUT_DEFER`` periods."""
        s = int(est.stamp_ns)
        if self.first_ns is None or s < self.first_ns:
            self.first_ns = s
        out: List[Tuple[str, Any]] = []
        if self._due(self.predicted_due, s, defer):
            h, w = frame.depth.shape
            K, pw, ph, _ = prediction_camera(frame.K, w, h, self.cfg.predicted_max_width)
            render = engine.render(est.T_world_body @ frame.T_body_cam, K, pw, ph)
            out += list(predicted_image_msgs(self.types, render, s, self.camera_frame).items())
        if self._due(self.predicted_path_due, s, defer):
            rollout = engine.predict(render=False)
            out += list(predicted_path_msgs(self.types, rollout, s,
                                            self.frames.map_frame).items())
        if self._due(self.cost_due, s, defer):
            grid = engine.cost_field().slice(float(est.T_world_body[2, 3]))
            out.append((COST_SLICE, cost_slice_msg(self.types, grid, s, self.frames.map_frame)))
        if self._due(self.map_due, s, defer):
            out.append(self.map_cloud(engine, s, est))
        return out

    def map_points_args(self, est: Optional[Estimate]) -> Dict[str, Any]:
        """Keyword arguments of ``engine.map_points`` for the cloud published at ``est``: the
        blocks within ``outputs.map_cloud_radius`` of the drone (bounded cost)."""
        return {'radius': self.cfg.map_cloud_radius}

    def map_cloud(self, engine: Any, stamp_ns: int,
                  est: Optional[Estimate] = None) -> Tuple[str, Any]:
        """(MAP_CLOUD, the engine's map now, stamped ``stamp_ns``)."""
        self.last_map_ns = int(stamp_ns)
        points = engine.map_points(**self.map_points_args(est))
        return MAP_CLOUD, map_cloud_msg(self.types, points, stamp_ns, self.frames.map_frame)

    def reset(self) -> None:
        """Forget the path and the rate limits (after ``~/reset``)."""
        self.path.clear()
        for limiter in (self.path_due, self.map_due, self.predicted_due,
                        self.predicted_path_due, self.cost_due):
            limiter.reset()
        self.last_map_ns = None
        self.previous = None
        self.first_ns = None
