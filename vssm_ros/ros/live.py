# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The node's logic without rclpy: message intake, the engine in a worker thread, outputs.

``LiveSlam`` is what ``vssm_ros.ros.node`` wraps. It takes ROS messages (rclpy's classes in the
node, rosbags' in tests: only attribute access is used) from subscription callbacks, which it
never blocks: they convert nothing heavier than an IMU sample and only hold a short lock. A
worker thread runs the ``SlamEngine`` and hands every output message to ``publish(name, msg)``
(names from ``vssm_ros.data.outputs``).

The same data-layer code as the replay CLI does the work: ``StampPairer`` pairs colour, depth
and camera_info (the colour image's stamp is the frame's); ``frame_from_messages`` converts
them; ``StaticTransforms`` resolves the camera and IMU extrinsics from /tf_static (falling
back to ``frames.T_body_cam`` / ``T_body_imu`` after ``node.startup_timeout_s``); the output
builders of ``vssm_ros.data.outputs`` make the messages.

Real-time policy: when frames arrive faster than the engine runs, the newest paired frame
wins (the ones it replaces are counted as dropped); every IMU sample is queued and integrated
in order. Bad input (unsupported encodings, size mismatches, stamps going backwards,
non-finite IMU) is counted by reason and logged (throttled), never raised.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from typing import Any, Callable, Counter, Deque, Dict, List, Optional, Tuple

import numpy as np
import torch

from vssm_ros.config import VssmConfig, to_dict
from vssm_ros.core.engine import SlamEngine
from vssm_ros.data import messages as M
from vssm_ros.data import outputs
from vssm_ros.data.dynamics_io import dynamics_for_engine
from vssm_ros.data.export import load_checkpoint, save_checkpoint
from vssm_ros.data.sources import frame_from_messages, resolve_extrinsic
from vssm_ros.data.sync import StampPairer
from vssm_ros.data.tf_static import StaticTransforms
from vssm_ros.data.trajectory import INIT_MAX_DIFF_S, initial_pose
from vssm_ros.data.transforms import invert, matrix_to_quat, quat_to_matrix, xyzquat_to_matrix
from vssm_ros.errors import ConfigError, MessageError, SyncError, VssmError
from vssm_ros.types import Estimate, ImuSample, PoseSample

DEFAULT_TOPICS = {
    'rgb': 'camera/color/image_raw',
    'depth': 'camera/aligned_depth_to_color/image_raw',
    'camera_info': 'camera/color/camera_info',
    'imu': 'camera/imu',
}
"""Input topics when ``topics.*`` is empty: relative names (they resolve in the node's
namespace and remap) of the realsense2_camera driver."""
IMU_BUFFER = 4000
"""IMU samples held between two frames (20 s at 200 Hz); more are dropped and counted."""
GROUND_TRUTH_BUFFER = 500
"""Ground-truth poses held for the initial pose (engine.init_pose 'ground_truth')."""
ODOM_BUFFER = 2000
"""odom -> body transforms of an external odometry held (frames.standalone false)."""
ODOM_MAX_GAP_S = 0.1
"""map -> odom needs two external odometry samples at most this far apart (seconds) around a
frame's stamp, or one within ``sync.slop_s`` of it."""
OUTPUT_DEFER = 4
"""While the engine lags, rate-limited outputs wait for an idle moment, at most this many
periods."""
LOG_THROTTLE_S = 5.0
"""The same kind of warning is logged at most once per this many seconds."""
LATENCY_WINDOW = 200
"""Latencies kept for the diagnostics' percentiles."""

Publish = Callable[[str, Any], None]
Log = Callable[[str, str], None]


def input_topics(cfg: VssmConfig) -> Dict[str, str]:
    """The node's input topics by role: the configured names, ``DEFAULT_TOPICS`` where empty.

    'camera_info' is '' when ``camera.fx``/``fy`` are set (the configured intrinsics are used
    and no camera_info is needed); 'ground_truth' is set only for ``engine.init_pose``
    'ground_truth'.

    Raises:
        ConfigError: init_pose 'ground_truth' without ``topics.ground_truth``.
    """
    t = cfg.topics
    out = {k: getattr(t, k) or v for k, v in DEFAULT_TOPICS.items()}
    if cfg.camera.has_intrinsics:
        out['camera_info'] = ''
    out['ground_truth'] = ''
    if cfg.engine.init_pose == 'ground_truth':
        if not t.ground_truth:
            raise ConfigError("engine.init_pose 'ground_truth' needs topics.ground_truth (a "
                              'geometry_msgs/PoseStamped topic of the body in the map frame)')
        out['ground_truth'] = t.ground_truth
    out['tf_static'] = t.tf_static
    return out


def interpolate_pose(T0: np.ndarray, T1: np.ndarray, a: float) -> np.ndarray:
    """The pose a of the way from T0 to T1: translation linear, rotation along the geodesic
    (slerp).

    Shape: T0, T1 (4, 4) -> (4, 4).
    """
    q0, q1 = matrix_to_quat(T0[:3, :3]), matrix_to_quat(T1[:3, :3])
    if np.dot(q0, q1) < 0:
        q1 = -q1
    angle = np.arccos(np.clip(np.dot(q0, q1), -1.0, 1.0))
    if angle < 1e-9:
        q = q0
    else:
        q = (np.sin((1 - a) * angle) * q0 + np.sin(a * angle) * q1) / np.sin(angle)
    T = np.eye(4)
    T[:3, :3] = quat_to_matrix(q / np.linalg.norm(q))
    T[:3, 3] = (1 - a) * T0[:3, 3] + a * T1[:3, 3]
    return T


class LiveSlam:
    """Online SLAM over live messages (see the module docstring).

    Args:
        cfg: the configuration (read once; the engine's is frozen).
        types: message classes for the outputs (``MsgTypes.from_modules`` in the node).
        publish: called from the worker thread with (output name, message).
        log: called with (level 'info' | 'warn' | 'error', text).
        clock_ns: the time in ns that latencies are measured against (the node's clock, which
            follows /clock under use_sim_time).
    """

    def __init__(self, cfg: VssmConfig, types: M.MsgTypes, publish: Publish, log: Log,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.cfg = cfg
        self.types = types
        self.publish = publish
        self.log = log
        self.clock_ns = clock_ns
        self.topics = input_topics(cfg)
        self.roles = [r for r in ('rgb', 'depth', 'camera_info') if self.topics[r]]
        self.counts: Counter[str] = collections.Counter()
        self._cond = threading.Condition()
        self._engine_lock = threading.RLock()
        self._stop = False
        self._thread: Optional[threading.Thread] = None
        self._last_log: Dict[str, float] = {}
        self._pairer = self._new_pairer()
        self._mailbox: Optional[Tuple[int, Tuple[Any, ...]]] = None
        self._imu: Deque[ImuSample] = collections.deque(maxlen=IMU_BUFFER)
        self._imu_last: Optional[int] = None
        self._imu_frame: Optional[str] = None
        self._ground_truth: Deque[PoseSample] = collections.deque(maxlen=GROUND_TRUTH_BUFFER)
        self._odom: Deque[Tuple[int, np.ndarray]] = collections.deque(maxlen=ODOM_BUFFER)
        self._static = StaticTransforms()
        self._reset_pending = ''
        self._startup_deadline: Optional[float] = None
        self._last_rx: Dict[str, float] = {}
        self.T_body_cam: Optional[np.ndarray] = None
        self.R_body_imu: Optional[np.ndarray] = None
        self.extrinsics: Dict[str, str] = {}
        self.engine: Optional[SlamEngine] = None
        # Loaded once, so a bad engine.motion.weights fails at start-up, not at the first frame.
        self.dynamics = dynamics_for_engine(cfg.engine)
        self.camera_frame = ''
        self.last_estimate: Optional[Estimate] = None
        self.latencies_s: Deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
        self.steps_s: Deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
        self.busy_s: Deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
        o = cfg.outputs
        self.path = outputs.PathAccumulator(types, cfg.frames.map_frame, o.path_max_poses)
        self._map_due = outputs.StampRateLimiter(o.map_cloud_period_s)
        self._predicted_due = outputs.StampRateLimiter(o.predicted_period_s)
        self._last_diag: Counter[str] = collections.Counter()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> 'LiveSlam':
        """Start the worker thread."""
        self._thread = threading.Thread(target=self._run, name='vssm-engine', daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the worker after the frame in progress."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)

    # ------------------------------------------------------------------ intake (callbacks)

    def on_camera(self, role: str, msg: Any) -> None:
        """A colour image, depth image or camera_info ('rgb', 'depth', 'camera_info')."""
        index = self.roles.index(role)
        try:
            stamp = M.header_stamp_ns(msg)
        except MessageError as err:
            self._bad(f'{role}_invalid', f'{role} message dropped: {err}')
            return
        with self._cond:
            self._count(f'{role}_received')
            self._last_rx[role] = time.monotonic()
            try:
                matches = self._pairer.push(index, stamp, msg)
            except SyncError as err:
                last = self._pairer.last_stamps[index] or stamp
                if last - stamp <= self.cfg.node.time_jump_s * 1e9:
                    self._bad(f'{role}_time_backwards', f'{self.topics[role]}: {err}; dropped')
                    return
                self._time_jump(f'{self.topics[role]} stamp jumped back '
                                f'{(last - stamp) * 1e-9:.3f} s')
                matches = self._pairer.push(index, stamp, msg)
            for m in matches:
                self._count('frames_received')
                if self._mailbox is not None:
                    self._count('frames_dropped')   # the engine lags: newest wins
                self._mailbox = (M.header_stamp_ns(m[0]), m)
            if matches:
                self._cond.notify_all()

    def on_imu(self, msg: Any) -> None:
        """A sensor_msgs/Imu (in its own frame; rotated into the body frame when used)."""
        try:
            stamp = M.header_stamp_ns(msg)
            sample = M.imu_from_msg(msg)
        except MessageError as err:
            self._bad('imu_invalid', f'IMU message dropped: {err}')
            return
        with self._cond:
            self._count('imu_received')
            self._last_rx['imu'] = time.monotonic()
            if not np.isfinite(sample.acc.sum() + sample.gyro.sum()):
                self._bad('imu_non_finite', f'{self.topics["imu"]}: non-finite IMU sample at '
                          f'{stamp} ns dropped')
                return
            if self._imu_last is not None and stamp <= self._imu_last:
                if self._imu_last - stamp <= self.cfg.node.time_jump_s * 1e9:
                    self._bad('imu_time_backwards', f'{self.topics["imu"]}: stamp {stamp} ns '
                              f'is not after the previous {self._imu_last} ns; dropped')
                    return
                self._time_jump(f'{self.topics["imu"]} stamp jumped back '
                                f'{(self._imu_last - stamp) * 1e-9:.3f} s')
            if self._imu_frame is None:
                self._imu_frame = str(msg.header.frame_id)
            if len(self._imu) == self._imu.maxlen and self.engine is not None:
                self._count('imu_overflow')
            self._imu_last = stamp
            self._imu.append(sample)
            self._cond.notify_all()

    def on_tf_static(self, msg: Any) -> None:
        """A tf2_msgs/TFMessage from /tf_static."""
        with self._cond:
            try:
                self._static.add_message(msg)
            except (MessageError, AttributeError) as err:
                self._bad('tf_static_invalid', f'/tf_static message ignored: {err}')
            self._cond.notify_all()

    def on_tf(self, msg: Any) -> None:
        """A tf2_msgs/TFMessage from /tf: keeps the external odometry's odom -> body
        transforms (frames.standalone false; others are ignored)."""
        frames = self.cfg.frames
        for t in getattr(msg, 'transforms', []):
            if (str(t.header.frame_id).lstrip('/') != frames.odom_frame.lstrip('/')
                    or str(t.child_frame_id).lstrip('/') != frames.body_frame.lstrip('/')):
                continue
            stamp = M.header_stamp_ns(t)
            with self._cond:
                if self._odom and stamp <= self._odom[-1][0]:
                    if self._odom[-1][0] - stamp > self.cfg.node.time_jump_s * 1e9:
                        self._odom.clear()   # played again: start over
                    else:
                        continue
                self._odom.append((stamp, M.transform_to_matrix(t)))

    def on_ground_truth(self, msg: Any) -> None:
        """A geometry_msgs/PoseStamped of the body in the map frame (initial pose only)."""
        try:
            pose = M.pose_from_msg(msg)
        except (MessageError, AttributeError) as err:
            self._bad('ground_truth_invalid', f'ground-truth message ignored: {err}')
            return
        with self._cond:
            self._ground_truth.append(pose)
            self._cond.notify_all()

    # ------------------------------------------------------------------ services

    def reset(self, reason: str = 'reset requested') -> Tuple[bool, str]:
        """Forget the map and the trajectory; the next frame starts a new map."""
        with self._engine_lock:
            self.engine = None
            self.last_estimate = None
            self.path.clear()
            self._map_due.reset()
            self._predicted_due.reset()
            self._count('resets')
        self.log('info', f'map and trajectory reset ({reason})')
        return True, f'map and trajectory reset ({reason})'

    def save_map(self, path: str) -> Tuple[bool, str]:
        """Write the engine state (map, state, keyframes) and the config as a checkpoint."""
        path = os.path.expanduser(path)
        with self._engine_lock:
            if self.engine is None:
                return False, 'no map to save: no frame processed since start or reset'
            try:
                save_checkpoint(path, self.engine.state_dict(), to_dict(self.cfg))
            except (VssmError, OSError) as err:
                return False, f'could not save the map to {path}: {err}'
            n = self.engine.n_frames
        return True, f'saved the map ({n} frames) to {path}'

    def load_map(self, path: str) -> Tuple[bool, str]:
        """Replace the engine state by a checkpoint's (same map grid as this config)."""
        path = os.path.expanduser(path)
        try:
            state, _ = load_checkpoint(path)
        except VssmError as err:
            return False, str(err)
        with self._engine_lock:
            engine = SlamEngine(self.cfg.engine, dynamics=self.dynamics)
            try:
                engine.load_state_dict(state)
            except (VssmError, KeyError) as err:
                return False, f'cannot load {path}: {err}'
            self.engine = engine
            self.path.clear()
            n = engine.n_frames
        return True, f'loaded the map ({n} frames) from {path}'

    # ------------------------------------------------------------------ diagnostics

    def diagnostics(self, stamp_ns: int) -> Any:
        """A diagnostic_msgs/DiagnosticArray of the node's state since start: frames
        received / processed / dropped, IMU, bad input by reason, step time and latency."""
        with self._cond:
            c = collections.Counter(self.counts)
            last_rx = dict(self._last_rx)
            unpaired = sum(self._pairer.dropped)
            waiting = self._startup_deadline is not None and self.T_body_cam is None
        new = c - self._last_diag
        self._last_diag = c
        values: Dict[str, Any] = {
            'frames_received': c['frames_received'], 'frames_processed': c['frames_processed'],
            'frames_dropped': c['frames_dropped'], 'frames_failed': c['frames_failed'],
            'unpaired_camera_messages': unpaired,
            'imu_received': c['imu_received'], 'imu_overflow': c['imu_overflow'],
            'imu_gaps': self.engine.n_imu_gaps if self.engine is not None else 0,
            'resets': c['resets'], 'time_jumps': c['time_jumps'],
        }
        bad = {k: v for k, v in c.items() if k.startswith('bad.')}
        values.update(sorted(bad.items()))
        if self.steps_s:
            values['step_ms'] = 1e3 * self.steps_s[-1]
            values['step_p50_ms'] = 1e3 * float(np.median(self.steps_s))
            # The worker's whole time per frame: conversion, IMU, step, outputs.
            values['frame_p50_ms'] = 1e3 * float(np.median(self.busy_s))
            values['frame_mean_ms'] = 1e3 * float(np.mean(self.busy_s))
        if self.latencies_s:
            lat = np.array(self.latencies_s)
            values['latency_p50_ms'] = 1e3 * float(np.percentile(lat, 50))
            values['latency_p95_ms'] = 1e3 * float(np.percentile(lat, 95))
        est = self.last_estimate
        if est is not None:
            values['position_std_m'] = float(np.sqrt(max(np.trace(est.cov[:3, :3]), 0.0)))
        values.update({f'extrinsic.{k}': v for k, v in self.extrinsics.items()})
        level, text = M.DIAG_OK, 'tracking'
        now = time.monotonic()
        missing = [self.topics[r] for r in self.roles if r not in last_rx]
        # Inputs silent for two periods while the colour images come: why nothing is paired.
        stale = [self.topics[r] for r in self.roles if r in last_rx and 'rgb' in last_rx
                 and last_rx['rgb'] - last_rx[r] > 2 * self.cfg.node.diagnostics_period_s]
        if c['frames_processed'] == 0:
            level = M.DIAG_WARN
            text = ('waiting for /tf_static extrinsics' if waiting else
                    f'no frame yet; nothing received on {", ".join(missing)}' if missing else
                    'no frame processed yet')
        elif (stale or missing) and now - last_rx.get('rgb', -np.inf) < 1.0:
            level = M.DIAG_WARN
            text = f'colour images arrive but nothing (recent) on {", ".join(missing + stale)}'
        elif new['frames_dropped']:
            level, text = M.DIAG_WARN, (f'engine lags: {new["frames_dropped"]} frames dropped '
                                        '(newest frame wins)')
        elif any(new[k] for k in bad):
            level, text = M.DIAG_WARN, 'bad input: ' + ', '.join(
                f'{k[4:]} x{new[k]}' for k in bad if new[k])
        return outputs.diagnostics_msg(self.types, stamp_ns, outputs.DIAGNOSTIC_NAME, level,
                                       text, values)

    # ------------------------------------------------------------------ worker

    def _run(self) -> None:
        if self.cfg.node.torch_threads > 0:   # from the thread that runs the engine
            torch.set_num_threads(self.cfg.node.torch_threads)
        while True:
            with self._cond:
                while self._mailbox is None and not self._stop:
                    self._cond.wait(0.5)
                if self._stop:
                    return
            self.process_pending()

    def process_pending(self) -> bool:
        """Process the frame waiting in the mailbox, if any (the worker's job; tests call it
        directly). Returns whether there was one."""
        with self._cond:
            if self._mailbox is None:
                return False
            stamp, msgs = self._mailbox
            self._mailbox = None
            reset_reason, self._reset_pending = self._reset_pending, ''
        if reset_reason:
            self.reset(reset_reason)
        t0 = time.perf_counter()
        try:
            self._process(stamp, msgs)
            self.busy_s.append(time.perf_counter() - t0)
        except VssmError as err:
            self._count('frames_failed')
            self._throttled('engine_error', 'warn',
                            f'frame {stamp} ns skipped: {type(err).__name__}: {err}')
        except Exception as err:   # a bug must not stop the node: log it and go on
            self._count('frames_failed')
            self._throttled('internal_error', 'error', f'frame {stamp} ns failed with an '
                            f'unexpected {type(err).__name__}: {err!r}')
        return True

    def _process(self, stamp: int, msgs: Tuple[Any, ...]) -> None:
        by_role = dict(zip(self.roles, msgs))
        self._resolve_extrinsics(str(by_role['depth'].header.frame_id))
        try:
            frame = frame_from_messages(stamp, by_role['rgb'], by_role['depth'],
                                        by_role.get('camera_info'), self.cfg.camera,
                                        self.T_body_cam, self.topics)
        except MessageError as err:
            self._bad('frame_invalid', f'frame {stamp} ns dropped: {err}')
            self._count('frames_failed')
            return
        self._wait_for_imu(stamp)
        with self._engine_lock:
            if self.engine is None:
                self.engine = SlamEngine(self.cfg.engine, self._initial_pose(stamp),
                                         dynamics=self.dynamics)
            for sample in self._take_imu():
                self.engine.add_imu(sample)
            t0 = time.perf_counter()
            est = self.engine.step(frame)
            self.steps_s.append(time.perf_counter() - t0)
            self._publish_pose(est)
            self.latencies_s.append((self.clock_ns() - stamp) * 1e-9)
            self._count('frames_processed')
            self.last_estimate = est
            if self._output_due(self._predicted_due, stamp):
                h, w = frame.depth.shape
                K, pw, ph, _ = outputs.prediction_camera(frame.K, w, h,
                                                         self.cfg.outputs.predicted_max_width)
                render = self.engine.render(est.T_world_body @ frame.T_body_cam, K, pw, ph)
                for name, msg in outputs.predicted_image_msgs(self.types, render, stamp,
                                                              self.camera_frame).items():
                    self.publish(name, msg)
            if self._output_due(self._map_due, stamp):
                pts = self.engine.map_points()
                self.publish(outputs.MAP_CLOUD, outputs.map_cloud_msg(
                    self.types, pts, stamp, self.cfg.frames.map_frame))

    def _output_due(self, limiter: outputs.StampRateLimiter, stamp: int) -> bool:
        """Whether a rate-limited output (a full render, the map cloud) is due. While a newer
        frame waits, tracking comes first: the output is put off to a later frame, for at most
        ``OUTPUT_DEFER`` periods."""
        with self._cond:
            waiting = self._mailbox is not None
        last = limiter.last_ns
        if (waiting and last is not None and limiter.period_ns > 0
                and 0 <= stamp - last < OUTPUT_DEFER * limiter.period_ns):
            return False
        return limiter.due(stamp)

    def _publish_pose(self, est: Estimate) -> None:
        t, frames = self.types, self.cfg.frames
        if frames.standalone:
            self.publish(outputs.TF, outputs.tf_message_for_estimate(t, est, frames))
        else:
            T_odom_body = self._odom_at(est.stamp_ns)
            if T_odom_body is None:
                self._bad('odom_tf_missing', f'no {frames.odom_frame} -> {frames.body_frame} on '
                          f'/tf around {est.stamp_ns} ns (frames.standalone is false: another '
                          f'node must publish it); {frames.map_frame} -> {frames.odom_frame} '
                          'not published for this frame')
            else:
                T_map_odom = est.T_world_body @ invert(T_odom_body)
                self.publish(outputs.TF, outputs.tf_message_for_estimate(t, est, frames,
                                                                         T_map_odom))
        self.publish(outputs.ODOMETRY, outputs.odometry_for_estimate(t, est, frames))
        self.publish(outputs.PATH, self.path.append(est))

    def _odom_at(self, stamp: int) -> Optional[np.ndarray]:
        """The external odometry's T_odom_body at ``stamp``, interpolated between the samples
        around it (or the nearest within sync.slop_s); None when there is none.

        Shape: (4, 4).
        """
        with self._cond:
            odom = list(self._odom)
        if not odom:
            return None
        stamps = np.array([s for s, _ in odom], dtype=np.int64)
        i = int(np.searchsorted(stamps, stamp))
        if i < len(odom) and stamps[i] == stamp:
            return odom[i][1]
        if 0 < i < len(odom) and stamps[i] - stamps[i - 1] <= ODOM_MAX_GAP_S * 1e9:
            a = (stamp - stamps[i - 1]) / (stamps[i] - stamps[i - 1])
            return interpolate_pose(odom[i - 1][1], odom[i][1], float(a))
        j = int(np.argmin(np.abs(stamps - stamp)))
        return odom[j][1] if abs(int(stamps[j]) - stamp) <= self.cfg.sync.slop_s * 1e9 else None

    # ------------------------------------------------------------------ start-up

    def _wait_startup(self, ready: Callable[[], bool], fresh: bool = False) -> bool:
        """Wait until ``ready()`` (evaluated with the intake lock held) or the start-up
        deadline: ``node.startup_timeout_s`` after the first frame (``fresh``: after now).
        Returns whether it got ready."""
        with self._cond:
            timeout = self.cfg.node.startup_timeout_s
            if self._startup_deadline is None:
                self._startup_deadline = time.monotonic() + timeout
            deadline = time.monotonic() + timeout if fresh else self._startup_deadline
            while not ready() and not self._stop:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
            return True

    def _chain_known(self, frame: str) -> bool:
        body = self.cfg.frames.body_frame
        return frame.lstrip('/') == body.lstrip('/') or self._static.can_transform(body, frame)

    def _resolve_extrinsics(self, camera_frame: str) -> None:
        """T_body_cam (and R_body_imu once an IMU frame is known) from /tf_static, waiting for
        it at start-up; the frames.* parameters when no chain came in time."""
        frames = self.cfg.frames
        want = []
        if self.T_body_cam is None:
            want.append(('camera', camera_frame, frames.T_body_cam, 'frames.T_body_cam'))
        if self.R_body_imu is None and self._imu_frame is not None:
            want.append(('imu', self._imu_frame, frames.T_body_imu, 'frames.T_body_imu'))
        if not want:
            return
        self._wait_startup(lambda: all(self._chain_known(f) for _, f, _, _ in want))
        body = frames.body_frame
        with self._cond:
            found = {name: self._chain_known(frame) for name, frame, _, _ in want}
            for name, frame, fallback, key in want:
                T, source = resolve_extrinsic(self._static, body, frame,
                                              xyzquat_to_matrix(fallback), key)
                self.extrinsics[name] = source
                if name == 'camera':
                    self.T_body_cam, self.camera_frame = T, camera_frame
                else:
                    self.R_body_imu = T[:3, :3].copy()
        for name, frame, _, _ in want:
            self.log('info' if found[name] else 'warn',
                     f'{name} extrinsics ({frame} in {body}): {self.extrinsics[name]}')

    def _initial_pose(self, stamp: int) -> Optional[np.ndarray]:
        """T_world_body0 of a new map (None: the identity). For init_pose 'ground_truth', the
        ground-truth pose nearest the frame, after waiting (at most ``node.startup_timeout_s``)
        for one at or after it: ground truth may arrive after the images."""
        if self.cfg.engine.init_pose != 'ground_truth':
            return None
        self._wait_startup(lambda: any(p.stamp_ns >= stamp for p in self._ground_truth),
                           fresh=True)
        with self._cond:
            gt = sorted(self._ground_truth, key=lambda p: p.stamp_ns)
        T0 = initial_pose(gt, stamp)
        if T0 is None:
            self.log('warn', f'no ground-truth pose on {self.topics["ground_truth"]} within '
                     f'{INIT_MAX_DIFF_S} s of the first frame ({stamp} ns); the map frame is '
                     'the first body frame')
        return T0

    # ------------------------------------------------------------------ IMU

    def _wait_for_imu(self, stamp: int) -> None:
        """Wait (at most ``node.imu_wait_s``) until IMU samples up to ``stamp`` arrived; not
        when the IMU has been silent for a second (it stopped, or there is none)."""
        deadline = time.monotonic() + self.cfg.node.imu_wait_s
        with self._cond:
            if time.monotonic() - self._last_rx.get('imu', -np.inf) > 1.0:
                return
            while (self._imu_last is not None and self._imu_last < stamp and not self._stop
                   and time.monotonic() < deadline):
                self._cond.wait(max(deadline - time.monotonic(), 0.0))

    def _take_imu(self) -> List[ImuSample]:
        """The queued IMU samples in the body frame (the queue is emptied)."""
        with self._cond:
            samples = list(self._imu)
            self._imu.clear()
        if samples and self.R_body_imu is None:
            self._resolve_extrinsics(self.camera_frame)
        R = self.R_body_imu if self.R_body_imu is not None else np.eye(3)
        return [ImuSample(s.stamp_ns, R @ s.acc, R @ s.gyro) for s in samples]

    # ------------------------------------------------------------------ helpers

    def _new_pairer(self) -> StampPairer:
        return StampPairer(len(self.roles), self.cfg.sync.slop_s, self.cfg.sync.queue_size)

    def _time_jump(self, what: str) -> None:
        """Stamps jumped back (a bag played again): drop what is queued, reset at the next
        frame. Called with ``_cond`` held."""
        self._pairer = self._new_pairer()
        self._mailbox = None
        self._imu.clear()
        self._imu_last = None
        self._ground_truth.clear()
        self._reset_pending = what
        self._count('time_jumps')
        self.log('warn', f'{what}: resetting the map and the trajectory')

    def _count(self, key: str) -> None:
        with self._cond:   # a re-entrant lock: callbacks already hold it
            self.counts[key] += 1

    def _bad(self, reason: str, text: str) -> None:
        self._count(f'bad.{reason}')
        self._throttled(reason, 'warn', text)

    def _throttled(self, key: str, level: str, text: str) -> None:
        now = time.monotonic()
        if now - self._last_log.get(key, -np.inf) >= LOG_THROTTLE_S:
            self._last_log[key] = now
            n = self.counts.get(f'bad.{key}')
            self.log(level, text + (f' ({n} so far)' if n and n > 1 else ''))
