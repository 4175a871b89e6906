# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The node's threads and mailbox, without rclpy: message intake, a worker thread feeding a
``SlamSession``, outputs handed to ``publish(name, msg)``.

``LiveSlam`` is what ``vssm_ros.ros.node`` wraps. Its ``Intake`` takes ROS messages (rclpy's
classes in the node, rosbags' in tests: only attribute access is used) from subscription
callbacks, which it never blocks: they convert nothing heavier than an IMU sample and only hold
a short lock. The worker thread converts the paired frame (``frame_from_messages``, as the
replay's sources do) and feeds it, with the IMU samples and ground truth received since, to the
``SlamSession`` that the replay CLI drives too: the engine, initial pose, bad-input accounting,
output schedule and statistics live there.

Real-time policy: the first ``node.startup_frames`` paired frames after start-up or a reset
are processed in order (the velocity and gravity are estimated from consecutive frames;
``node.startup_frames_known_pose`` when the initial pose is given: the velocity alone); after
them, when frames arrive faster than the engine runs, it catches up by skipping frames (counted
as dropped) but never more than ``node.max_frame_gap_s`` of motion (or 1.5x its recent mean
step when slower) between two processed frames; the queue keeps at most two frames per
``node.max_frame_gap_s`` and none older than ``node.max_lag_s``. Every IMU sample is queued
and integrated in order.
``node.lockstep``: every frame is queued and processed in order, each after the IMU up to its
stamp, as the deterministic replay does. Stamps jumping back by more than
``node.time_jump_s`` (a bag played again) reset the map.
"""

from __future__ import annotations

import collections
import os
import sys
import threading
import time
from typing import Any, Callable, Counter, Deque, Dict, List, Optional, Tuple

import numpy as np
import torch

from vssm_ros.config import VssmConfig
from vssm_ros.data import messages as M
from vssm_ros.data import outputs
from vssm_ros.data.odom_buffer import OdomBuffer
from vssm_ros.data.sources import frame_from_messages, resolve_extrinsic
from vssm_ros.data.sync import StampPairer
from vssm_ros.data.tf_static import StaticTransforms
from vssm_ros.data.transforms import xyzquat_to_matrix
from vssm_ros.errors import ConfigError, MessageError, SyncError, VssmError
from vssm_ros.ros.autosave import Autosave
from vssm_ros.session import SlamSession
from vssm_ros.types import ImuSample

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
LOCKSTEP_FRAMES = 1000
"""Frames the queue holds at most (lockstep; in real time ``node.max_lag_s`` and the catch-up's
thinning bound it first); more are dropped and counted."""
INTAKE_COUNTS = ('frames_received', 'frames_dropped', 'imu_overflow', 'time_jumps')
"""Intake counts the diagnostics always show (0 until they happen)."""
LATENCY_WINDOW = 200
"""Latencies kept for the diagnostics' percentiles."""
CATCH_UP_STEPS = 8
"""Recent steps whose mean, the longest left out, sets the catch-up's least gap between frames
(``Intake.pop_next``): the mean, because keyframe steps are rare and long (live: median 95 ms,
mean 186 ms; gaps of 1.5x the median let the lag grow); the longest out, so that one slow step
(a gravity solve) does not stretch the next gaps."""
CATCH_UP_FACTOR = 1.5
"""The catch-up skips at least this many times the recent mean step: it gains on the camera by
a third of a step per step even when the engine is slower than ``node.max_frame_gap_s``."""

Publish = Callable[[str, Any], None]
Log = Callable[[str, str], None]


def startup_frames(cfg: VssmConfig) -> int:
    """The frames taken in order after a start: ``node.startup_frames``, or at most
    ``node.startup_frames_known_pose`` where the engine does not solve gravity on its first
    frames (``engine.init_pose`` other than 'gravity': only the velocity needs them)."""
    n = cfg.node
    if cfg.engine.init_pose == 'gravity':
        return n.startup_frames
    return min(n.startup_frames, n.startup_frames_known_pose)


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


class Intake:
    """What the subscription callbacks hand over, under one lock (``cond``): camera messages
    paired by stamp into the frame mailbox, IMU samples and ground truth queued, /tf_static
    and the external odometry kept; stamps jumping back reset (``take`` reports it).

    Args:
        cfg: the configuration.
        topics: input topics by role (``input_topics``).
        bad: called with (reason, text) for bad input.
        log: called with (level, text).
        clock_ns: the receiving clock: messages stamped more than
            ``messages.MAX_STAMP_AHEAD_S`` ahead of it are dropped ('{role}_stamp_future').
    """

    def __init__(self, cfg: VssmConfig, topics: Dict[str, str],
                 bad: Callable[[str, str], None], log: Log,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.cfg, self.topics, self.bad, self.log = cfg, topics, bad, log
        self.clock_ns = clock_ns
        self.roles = [r for r in ('rgb', 'depth', 'camera_info') if topics[r]]
        self.cond = threading.Condition(threading.RLock())
        self.counts: Counter[str] = collections.Counter()   # received, dropped, time jumps
        self.frames: Deque[Tuple[int, Dict[str, Any]]] = collections.deque(
            maxlen=LOCKSTEP_FRAMES)
        # Real time: frames still to be taken in order after a start (``node.startup_frames``);
        # beyond them the queue is thinned for the catch-up (``_drop_lagging``, ``pop_next``).
        self.startup_left = 0
        self.last_taken: Optional[int] = None
        self.restart_startup()
        self.imu: Deque[ImuSample] = collections.deque(maxlen=IMU_BUFFER)
        self.ground_truth: List[Any] = []
        self.imu_last: Optional[int] = None
        self.imu_frame: Optional[str] = None
        self.static = StaticTransforms()
        self.odom = OdomBuffer(cfg.frames, cfg.sync.slop_s, cfg.node.time_jump_s)
        self.last_rx: Dict[str, float] = {}
        self.reset_pending = ''
        self.stopping = False
        self.pairer = self._new_pairer()

    def restart_startup(self) -> None:
        """A new start (start-up, reset, time jump): its first frames are taken in order."""
        self.startup_left = startup_frames(self.cfg)
        self.last_taken = None

    def _new_pairer(self) -> StampPairer:
        return StampPairer(len(self.roles), self.cfg.sync.slop_s, self.cfg.sync.queue_size)

    def on_camera(self, role: str, msg: Any) -> None:
        """A colour image, depth image or camera_info ('rgb', 'depth', 'camera_info')."""
        try:
            stamp = M.header_stamp_ns(msg)
        except MessageError as err:
            return self.bad(f'{role}_{M.reason_of(err)}', f'{self.topics[role]}: message '
                            f'dropped: {err}')
        if self._stamp_refused(role, self.topics[role], stamp):
            return
        backwards = reason = ''
        with self.cond:
            self.counts[f'{role}_received'] += 1
            self.last_rx[role] = time.monotonic()
            index = self.roles.index(role)
            try:
                matches = self.pairer.push(index, stamp, msg)
            except SyncError as err:
                last = self.pairer.last_stamps[index] or stamp
                if not self._jumped(last, stamp, self.topics[role]):
                    matches, backwards = [], str(err)
                    reason = 'stamp_repeated' if stamp == last else 'time_backwards'
                else:
                    matches = self.pairer.push(index, stamp, msg)
            for m in matches:
                self.counts['frames_received'] += 1
                if len(self.frames) == self.frames.maxlen:
                    self.counts['frames_dropped'] += 1   # queue full: the oldest goes
                self.frames.append((M.header_stamp_ns(m[0]), dict(zip(self.roles, m))))
            if matches and not self.cfg.node.lockstep:
                self._drop_lagging()
            self.cond.notify_all()
        if backwards:   # reported outside the lock (the session's lock is taken)
            self.bad(f'{role}_{reason}', f'{self.topics[role]}: {backwards}; dropped')

    def _drop_lagging(self) -> None:
        """Bound the queue (lock held): a frame that the catch-up would skip anyway goes (the
        one before the newest, when the newest lies within ``node.max_frame_gap_s`` of the
        one before it, or of the frame last taken), so that at most two frames per gap wait;
        frames more than ``node.max_lag_s`` older than the newest go too. Start-up frames are
        kept."""
        f, keep = self.frames, self.startup_left
        if len(f) >= keep + 2:   # the one before the newest is no start-up frame
            before = f[-3][0] if len(f) >= 3 else self.last_taken
            if before is not None and f[-1][0] - before <= self.cfg.node.max_frame_gap_s * 1e9:
                del f[-2]
                self.counts['frames_dropped'] += 1
        oldest = f[-1][0] - int(self.cfg.node.max_lag_s * 1e9)
        while len(f) > keep + 1 and f[keep][0] < oldest:
            del f[keep]
            self.counts['frames_dropped'] += 1

    def pop_next(self, gap_s: float) -> Optional[Tuple[int, Dict[str, Any]]]:
        """The next frame to process, None when none waits (lock held). In order in lockstep
        and for start-up frames; else the newest frame at most ``gap_s`` after the last one
        taken (the oldest waiting when none is), the frames before it dropped and counted."""
        if not self.frames:
            return None
        if not (self.cfg.node.lockstep or self.startup_left or self.last_taken is None):
            limit = self.last_taken + int(gap_s * 1e9)
            skip = sum(1 for s, _ in self.frames if s <= limit) - 1
            for _ in range(max(skip, 0)):
                self.frames.popleft()
                self.counts['frames_dropped'] += 1
        stamp, msgs = self.frames.popleft()
        self.last_taken = stamp
        return stamp, msgs

    def on_imu(self, msg: Any) -> None:
        """A sensor_msgs/Imu (in its own frame; rotated into the body frame when used)."""
        try:
            stamp, sample = M.header_stamp_ns(msg), M.imu_from_msg(msg)
        except MessageError as err:
            return self.bad(f'imu_{M.reason_of(err)}', f'{self.topics["imu"]}: message '
                            f'dropped: {err}')
        topic = self.topics['imu']
        if self._stamp_refused('imu', topic, stamp):
            return
        if not np.isfinite(sample.acc.sum() + sample.gyro.sum()):
            return self.bad('imu_non_finite', f'{topic}: non-finite IMU sample at {stamp} ns '
                            'dropped')
        with self.cond:
            self.last_rx['imu'] = time.monotonic()
            last = self.imu_last
            backwards = (last is not None and stamp <= last
                         and not self._jumped(last, stamp, topic))
            if not backwards:
                self.imu_frame = self.imu_frame or str(msg.header.frame_id)
                if len(self.imu) == self.imu.maxlen:
                    self.counts['imu_overflow'] += 1
                self.imu_last = stamp
                self.imu.append(sample)
                self.cond.notify_all()
        if backwards:   # reported outside the lock (the session's lock is taken)
            self.bad('imu_stamp_repeated' if stamp == last else 'imu_time_backwards',
                     f'{topic}: stamp {stamp} ns is not after the previous {last} ns; dropped')

    def _stamp_refused(self, role: str, topic: str, stamp: int) -> bool:
        """Whether ``stamp`` is unset (0: it would start a map in 1970, decades before the
        next frame) or lies too far ahead of the node's clock; such a message is counted."""
        if stamp == 0:
            self.bad(f'{role}_stamp', f'{topic}: header stamp not set (0); dropped')
            return True
        ahead = M.stamp_ahead_s(stamp, self.clock_ns())
        if ahead is not None:
            self.bad(f'{role}_stamp_future', f'{topic}: stamp {stamp} ns is {ahead:.3g} s ahead '
                     f'of the node clock (more than {M.MAX_STAMP_AHEAD_S:g} s); dropped')
        return ahead is not None

    def on_tf_static(self, msg: Any) -> None:
        """A tf2_msgs/TFMessage from /tf_static."""
        try:
            with self.cond:
                self.static.add_message(msg)
                self.cond.notify_all()
        except (MessageError, AttributeError) as err:
            self.bad('tf_static_invalid', f'/tf_static message ignored: {err}')

    def on_tf(self, msg: Any) -> None:
        """A tf2_msgs/TFMessage from /tf: the external odometry's odom -> body transforms."""
        with self.cond:
            self.odom.add_message(msg)

    def on_ground_truth(self, msg: Any) -> None:
        """A geometry_msgs/PoseStamped of the body in the map frame (initial pose only)."""
        try:
            pose = M.pose_from_msg(msg)
        except (MessageError, AttributeError) as err:
            return self.bad('ground_truth_invalid', f'ground-truth message ignored: {err}')
        with self.cond:
            self.ground_truth.append(pose)
            self.cond.notify_all()

    def take(self) -> Tuple[List[ImuSample], List[Any]]:
        """The IMU samples and ground-truth poses received since the last call."""
        with self.cond:
            imu, self.imu = list(self.imu), collections.deque(maxlen=IMU_BUFFER)
            gt, self.ground_truth = self.ground_truth, []
        return imu, gt

    def wait(self, ready: Callable[[], bool], deadline: float) -> bool:
        """Wait until ``ready()`` (evaluated with the lock held), a stop or ``deadline``
        (``time.monotonic``)."""
        with self.cond:
            while not ready() and not self.stopping and time.monotonic() < deadline:
                self.cond.wait(min(deadline - time.monotonic(), 0.1))
            return ready()

    def odom_at(self, stamp_ns: int) -> Optional[np.ndarray]:
        """The external odometry's T_odom_body at a stamp (None: not known)."""
        with self.cond:
            return self.odom.at(stamp_ns)

    def wait_for_imu(self, stamp: int, wait_s: float) -> None:
        """Wait until IMU samples up to ``stamp`` arrived, at most ``wait_s`` (lockstep: inf);
        not when the IMU has been silent for a second."""
        self.wait(lambda: (self.imu_last is None or self.imu_last >= stamp
                           or time.monotonic() - self.last_rx.get('imu', -np.inf) > 1.0),
                  time.monotonic() + wait_s)

    def chain_known(self, frame: str) -> bool:
        body = self.cfg.frames.body_frame
        return frame.lstrip('/') == body.lstrip('/') or self.static.can_transform(body, frame)

    def extrinsic(self, frame: str, fallback: Any, key: str) -> Tuple[np.ndarray, str, bool]:
        """T_body_frame from /tf_static, else ``fallback`` (config ``key``): (T, where from,
        whether /tf_static had it)."""
        with self.cond:
            T, source = resolve_extrinsic(self.static, self.cfg.frames.body_frame, frame,
                                          xyzquat_to_matrix(fallback), key)
            return T, source, self.chain_known(frame)

    def _jumped(self, last: int, stamp: int, topic: str) -> bool:
        """Whether ``stamp`` jumped back from ``last`` by more than ``node.time_jump_s`` (a bag
        played again): then drop what is queued; the worker resets at the next frame. Called
        with the lock held."""
        if last - stamp <= self.cfg.node.time_jump_s * 1e9:
            return False
        what = f'{topic} stamp jumped back {(last - stamp) * 1e-9:.3f} s'
        self.pairer = self._new_pairer()
        self.frames.clear()
        self.restart_startup()
        self.imu.clear()
        self.imu_last = None
        self.ground_truth = []
        self.reset_pending = what
        self.counts['time_jumps'] += 1
        self.log('warn', f'{what}: resetting the map and the trajectory')
        return True


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
        self.cfg, self.types, self.publish, self.log = cfg, types, publish, log
        self.clock_ns = clock_ns
        self.topics = input_topics(cfg)
        self.engine_lock = threading.RLock()
        self.intake = Intake(cfg, self.topics, self._bad, log, clock_ns)
        self.session = SlamSession(cfg, types, '', log, odom_at=self.intake.odom_at,
                                   realtime=not cfg.node.lockstep, publish=publish)
        self._thread: Optional[threading.Thread] = None
        self.startup_deadline: Optional[float] = None
        self.T_body_cam: Optional[np.ndarray] = None
        self.R_body_imu: Optional[np.ndarray] = None
        self.extrinsics: Dict[str, str] = {}
        # The input process's state for the diagnostics (the node sets it; None: no process).
        self.input_state: Optional[Callable[[], str]] = None
        self.latencies_s: Deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
        self.busy_s: Deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
        self.diag_counts: Counter[str] = collections.Counter()
        # The session's figures for diagnostics (``session_snapshot``), and whether the
        # diagnostics want the worker to refresh them after its frame.
        self.diag_session: Optional[Tuple[Dict[str, Any], Dict[str, Any], Tuple[int, str]]] = None
        self.diag_wanted = False
        self.map_path = cfg.node.map_path   # the node changes it with its parameter
        self.autosave = Autosave(cfg.node.autosave_period_s, self.session.localization, log)

    engine = property(lambda self: self.session.engine)
    path = property(lambda self: self.session.schedule.path)
    counts = property(lambda self: self.intake.counts)

    def start(self) -> 'LiveSlam':
        """Start the worker thread (and set the process's GIL switch interval,
        ``node.gil_switch_interval_s``)."""
        if self.cfg.node.gil_switch_interval_s > 0:
            sys.setswitchinterval(self.cfg.node.gil_switch_interval_s)
        self._thread = threading.Thread(target=self._run, name='vssm-engine', daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop the worker after the frame in progress; whether it stopped in time."""
        with self.intake.cond:
            self.intake.stopping = True
            self.intake.cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)
            return not self._thread.is_alive()
        return True

    # ------------------------------------------------------------------ services

    def service(self, call: Callable[[], str]) -> Tuple[bool, str]:
        """Run a session service (reset, save_map, ...) under the engine lock: (ok, text).

        The worker holds the same lock for each frame (and its autosave), so a service runs
        between two frames, never beside one; a failed service leaves the session as it was.
        """
        with self.engine_lock:
            try:
                return True, call()
            except (VssmError, OSError) as err:
                return False, str(err)

    def reset(self, reason: str = 'reset requested') -> Tuple[bool, str]:
        def run() -> str:
            text = self.session.reset(reason)
            with self.intake.cond:
                self.intake.restart_startup()
            return text
        return self.service(run)

    def save_map(self, path: str) -> Tuple[bool, str]:
        """Save the map to ``path`` (atomically: the previous file survives a failed save)."""
        return self.service(lambda: self.session.save_map(os.path.expanduser(path)))

    def load_map(self, path: str) -> Tuple[bool, str]:
        """Replace the map by the one in ``path``; a bad file leaves the current map."""
        return self.service(lambda: self.session.load_map(os.path.expanduser(path)))

    def set_pose(self, msg: Any, planar: bool) -> Tuple[bool, str]:
        """geometry_msgs/PoseWithCovarianceStamped from /initialpose (``planar``) or
        ~/set_pose: the pose the next frame is tracked from."""
        cov = np.asarray(msg.pose.covariance, dtype=np.float64).reshape(6, 6)
        T = M.pose_from_msg(msg).T_world_body
        return self.service(lambda: self.session.set_pose(T, cov if cov.any() else None,
                                                          planar))

    def diagnostics(self, stamp_ns: int) -> Any:
        """A diagnostic_msgs/DiagnosticArray of the node's state (``node_diagnostics``)."""
        return node_diagnostics(self, stamp_ns)

    # ------------------------------------------------------------------ worker

    def _run(self) -> None:
        if self.cfg.node.torch_threads > 0:   # from the thread that runs the engine
            torch.set_num_threads(self.cfg.node.torch_threads)
        if self.cfg.node.warm_up:
            with self.engine_lock:
                seconds = self.session.warm_up()
            self.log('info', f'engine warmed up in {seconds:.2f} s')
        intake = self.intake
        while True:
            with intake.cond:
                if not intake.frames and not intake.stopping:
                    intake.cond.wait(0.5)   # woken by a frame, else to check the autosave
                if intake.stopping:
                    return
            self.process_pending()
            self.autosave_if_due()

    def autosave_if_due(self) -> None:
        """``Autosave.save_if_due`` (the worker, between frames; tests call it)."""
        self.autosave.save_if_due(self.engine_lock, self.session, self.map_path)

    def process_pending(self) -> bool:
        """Process the next frame waiting, if any (the worker's job; tests call it directly).
        Returns whether there was one."""
        with self.intake.cond:
            item = self.intake.pop_next(self._catch_up_gap_s())
            if item is None:
                return False
            stamp, msgs = item
            reset_reason, self.intake.reset_pending = self.intake.reset_pending, ''
        if reset_reason:
            with self.engine_lock:
                self.session.forget_stamps()
            self.reset(reset_reason)
        with self.intake.cond:   # after a reset's restart: this frame is its first
            self.intake.startup_left = max(0, self.intake.startup_left - 1)
        t0 = time.perf_counter()
        try:
            self._process(stamp, msgs)
        except Exception as err:   # a bug must not stop the node: log it and go on
            self.session.counts['frames_failed'] += 1
            self.session.throttled('internal_error', 'error', f'frame {stamp} ns failed with '
                                   f'an unexpected {type(err).__name__}: {err!r}')
        self.busy_s.append(time.perf_counter() - t0)
        if self.diag_wanted:   # the diagnostics found the engine busy: their figures now
            with self.engine_lock:
                self.session_snapshot()
        return True

    def session_snapshot(self) -> Tuple[Dict[str, Any], Dict[str, Any], Tuple[int, str]]:
        """The session's and the autosave's figures and status for diagnostics (under the
        engine lock), kept in ``diag_session``."""
        self.diag_session = (self.session.stats(), self.autosave.stats(),
                             self.session.status())
        self.diag_wanted = False
        return self.diag_session

    def _catch_up_gap_s(self) -> float:
        """The most time between two processed frames while catching up: ``node.max_frame_gap_s``,
        or ``CATCH_UP_FACTOR`` x the recent steps' mean (``CATCH_UP_STEPS``) when more."""
        recent = list(self.busy_s)[-CATCH_UP_STEPS:]
        if len(recent) > 2:
            recent.remove(max(recent))
        slow = CATCH_UP_FACTOR * float(np.mean(recent)) if recent else 0.0
        return max(self.cfg.node.max_frame_gap_s, slow)

    def _process(self, stamp: int, msgs: Dict[str, Any]) -> None:
        self._resolve_extrinsics(str(msgs['depth'].header.frame_id))
        try:
            frame = frame_from_messages(stamp, msgs['rgb'], msgs['depth'],
                                        msgs.get('camera_info'), self.cfg.camera,
                                        self.T_body_cam, self.topics)
        except MessageError as err:
            self.session.counts['frames_failed'] += 1
            return self._bad(M.reason_of(err, 'frame_invalid'), f'frame {stamp} ns dropped: '
                             f'{err}')
        self.intake.wait_for_imu(stamp, np.inf if self.cfg.node.lockstep
                                 else self.cfg.node.imu_wait_s)
        if self.session.engine is None and self.topics['ground_truth']:
            self.intake.wait(lambda: any(p.stamp_ns >= stamp
                                         for p in self.intake.ground_truth),
                             time.monotonic() + self.cfg.node.startup_timeout_s)
        imu, gt = self.intake.take()
        R = self._imu_rotation() if imu else np.eye(3)
        with self.engine_lock:
            for pose in gt:
                self.session.add_ground_truth(pose)
            for s in imu:
                self.session.add_imu(ImuSample(s.stamp_ns, R @ s.acc, R @ s.gyro))
            step = self.session.step(frame, self._busy)
            if step.estimate is None:
                return
            self.latencies_s.append((self.clock_ns() - stamp) * 1e-9)
            for name, msg in step.messages:
                self.publish(name, msg)

    def _resolve_extrinsics(self, camera_frame: str) -> None:
        """T_body_cam (and R_body_imu once an IMU frame is known) from /tf_static, waiting for
        it at start-up (``node.startup_timeout_s`` after the first frame); the frames.*
        parameters when no chain came in time."""
        f, intake = self.cfg.frames, self.intake
        want = [('camera', camera_frame, f.T_body_cam, 'frames.T_body_cam')] * (
            self.T_body_cam is None)
        if self.R_body_imu is None and intake.imu_frame is not None:
            want.append(('imu', intake.imu_frame, f.T_body_imu, 'frames.T_body_imu'))
        if not want:
            return
        if self.startup_deadline is None:
            self.startup_deadline = time.monotonic() + self.cfg.node.startup_timeout_s
        intake.wait(lambda: all(intake.chain_known(fr) for _, fr, _, _ in want),
                    self.startup_deadline)
        for name, frame, fallback, key in want:
            T, self.extrinsics[name], found = intake.extrinsic(frame, fallback, key)
            if name == 'camera':
                self.T_body_cam = T
                self.session.schedule.camera_frame = camera_frame
            else:
                self.R_body_imu = T[:3, :3].copy()
            self.log('info' if found else 'warn', f'{name} extrinsics ({frame} in '
                     f'{f.body_frame}): {self.extrinsics[name]}')

    def _imu_rotation(self) -> np.ndarray:
        if self.R_body_imu is None:
            self._resolve_extrinsics(self.session.schedule.camera_frame)
        return self.R_body_imu if self.R_body_imu is not None else np.eye(3)

    def _busy(self) -> bool:
        """Whether a newer frame waits (real-time mode: tracking comes first)."""
        with self.intake.cond:
            return bool(self.intake.frames) and not self.cfg.node.lockstep

    def _bad(self, reason: str, text: str) -> None:
        self.session.bad(reason, text)   # thread-safe, and never under the intake's lock


def input_health(live: LiveSlam, values: Dict[str, Any], new: Counter[str],
                 last_rx: Dict[str, float], waiting: bool, level: int,
                 text: str) -> Tuple[int, str]:
    """The diagnostics' level and text: the session's tracking status, unless the inputs
    explain better what is wrong (nothing received, an input silent, frames dropped, bad
    input with its first example: ``new`` counts since the last diagnostics)."""
    topics, roles = live.topics, live.intake.roles
    missing = [topics[r] for r in roles if r not in last_rx]
    # Inputs silent for two periods while the colour images come: why nothing is paired.
    stale = [topics[r] for r in roles if r in last_rx and 'rgb' in last_rx
             and last_rx['rgb'] - last_rx[r] > 2 * live.cfg.node.diagnostics_period_s]
    bad_so_far = {k[4:]: v for k, v in values.items() if k.startswith('bad.') and v}
    if not values.get('frames_processed'):
        if waiting:
            return M.DIAG_WARN, 'waiting for /tf_static extrinsics'
        if missing:
            return M.DIAG_WARN, f'no frame yet; nothing received on {", ".join(missing)}'
        # Everything that came was refused (no intrinsics ever, say): say why.
        return M.DIAG_WARN, 'no frame processed yet' + (
            '; ' + _bad_input_text(bad_so_far, values) if bad_so_far else '')
    if (stale or missing) and time.monotonic() - last_rx.get('rgb', -np.inf) < 1.0:
        return M.DIAG_WARN, ('colour images arrive but nothing (recent) on '
                             f'{", ".join(missing + stale)}')
    if new['frames_dropped']:
        return M.DIAG_WARN, (f'engine lags: {new["frames_dropped"]} frames dropped (catching '
                             'up)')
    bad = {k[4:]: new[k] for k in new if k.startswith('bad.') and new[k]}
    if bad:
        return M.DIAG_WARN, _bad_input_text(bad, values)
    return level, text


def _bad_input_text(counts: Dict[str, int], values: Dict[str, Any]) -> str:
    """'bad input: reason xN, ...' with the first example of the most frequent reason (the
    session's ``bad_examples.*`` values)."""
    top = max(counts, key=lambda k: counts[k])
    example = str(values.get(f'bad_examples.{top}', '')).split(' | ')[0]
    return ('bad input: ' + ', '.join(f'{k} x{n}' for k, n in counts.items())
            + (f' (e.g. {example})' if example else ''))


def node_diagnostics(live: LiveSlam, stamp_ns: int) -> Any:
    """A diagnostic_msgs/DiagnosticArray of the node's state: intake, the session's
    counts and timings, why nothing is tracked when nothing is."""
    with live.intake.cond:
        values: Dict[str, Any] = dict.fromkeys(INTAKE_COUNTS, 0)
        values.update(live.intake.counts)
        values['unpaired_camera_messages'] = sum(live.intake.pairer.dropped)
        last_rx = dict(live.intake.last_rx)
    waiting = live.startup_deadline is not None and live.T_body_cam is None
    # Never wait for the engine's frame on the executor's thread (its callbacks would wait
    # too): while the engine is busy, the figures of the last snapshot, refreshed by the
    # worker after its frame.
    if live.engine_lock.acquire(blocking=live.diag_session is None):
        try:
            snapshot = live.session_snapshot()
        finally:
            live.engine_lock.release()
    else:
        live.diag_wanted = True
        snapshot = live.diag_session
    session_stats, autosave_stats, (level, text) = snapshot
    values.update(session_stats)
    values.update(autosave_stats)
    if live.busy_s:
        values['frame_p50_ms'] = 1e3 * float(np.median(live.busy_s))
        values['frame_mean_ms'] = 1e3 * float(np.mean(live.busy_s))
    if live.latencies_s:
        lat = np.asarray(live.latencies_s)
        values['latency_p50_ms'] = 1e3 * float(np.percentile(lat, 50))
        values['latency_p95_ms'] = 1e3 * float(np.percentile(lat, 95))
    values.update({f'extrinsic.{k}': v for k, v in live.extrinsics.items()})
    if live.input_state is not None:
        values['input_process'] = live.input_state()
    counts = collections.Counter({k: v for k, v in values.items() if isinstance(v, int)})
    new, live.diag_counts = counts - live.diag_counts, counts
    level, text = input_health(live, values, new, last_rx, waiting, level, text)
    if new['autosave_failures'] and level < M.DIAG_WARN:
        level, text = M.DIAG_WARN, f'map autosave failed: {live.autosave.last_error}'
    keep = live.cfg.engine.map.keep_radius
    held = values.get('map.held_radius_m', keep)
    if held < keep and level < M.DIAG_WARN:
        # Regions the camera may see are on disk: predicted images and returns miss them.
        level, text = M.DIAG_WARN, (f'map memory budget holds only {held:.1f} m of the '
                                    f'{keep:.1f} m keep_radius: raise engine.map.memory_mb')
    return outputs.diagnostics_msg(live.types, stamp_ns, outputs.DIAGNOSTIC_NAME, level,
                                   text, values)
