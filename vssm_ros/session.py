# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""SlamSession: one SLAM run, the same for the ROS 2 node and the replay CLI (DESIGN section 3).

A session owns the ``SlamEngine`` and what both drivers need around it: the initial-pose
policy (``engine.init_pose``; 'ground_truth' from the poses it was given), IMU intake (samples
before the first frame are kept, a bounded tail, and handed to the new engine), bad-input
accounting (counts by reason, throttled log lines), the ``OutputSchedule`` (the messages to
publish for each frame, when message classes are given), statistics (step latencies, stage
times) and localisation mode (track against a loaded map without changing it).

The drivers only convert, feed and publish::

    session = SlamSession(cfg, types)
    for item in source:                       # Frames, ImuSamples, PoseSamples in stamp order
        step = session.feed(item)
        if step is not None:
            for name, msg in step.messages:
                publish(name, msg)

A session is not thread-safe, except ``bad`` (bad input may be reported from any thread): the
node calls it from its worker thread (and its services under the node's engine lock).
"""

from __future__ import annotations

import collections
import dataclasses
import math
import threading
import time
from typing import Any, Callable, Counter, Deque, Dict, List, Optional, Tuple

import numpy as np

from vssm_ros.config import VssmConfig, to_dict
from vssm_ros.core.engine import SlamEngine
from vssm_ros.core.state_layout import BIAS, DIM, POSE, V
from vssm_ros.data import messages as M
from vssm_ros.data import outputs
from vssm_ros.data.dynamics_io import dynamics_for_engine
from vssm_ros.data.export import load_checkpoint, save_checkpoint
from vssm_ros.data.map_swap import open_swap
from vssm_ros.data.trajectory import INIT_MAX_DIFF_S, initial_pose
from vssm_ros.errors import StateError, VssmError
from vssm_ros.output_worker import OutputWorker
from vssm_ros.types import TIMING_COUNTS, Estimate, Frame, ImuSample, PoseSample
from vssm_ros.warm_up import warm_up

PENDING_IMU = 256
"""IMU samples kept before the first frame (only the latest matter: the last is held until the
next one, a gravity initialisation averages a few)."""
GROUND_TRUTH_KEEP = 500
"""Ground-truth poses kept for the initial pose when they are fed one by one (the node)."""
LATENCY_KEEP = 100_000
"""Step latencies kept for the percentiles (a long run keeps the latest)."""
LOG_THROTTLE_S = 5.0
"""The same kind of warning is logged at most once per this many seconds."""
FIRST_ERRORS = 10
"""Error lines kept for the report."""
BAD_EXAMPLES = 3
"""Texts kept per bad-input reason (the first ones), for metrics.json and the diagnostics."""
IMU_MAX_ACC = 1000.0
"""Largest plausible specific force (m/s², about 100 g; IMUs saturate at 16-32 g): a larger
reading is garbage, and integrating it would wreck the state."""
IMU_MAX_GYRO = 100.0
"""Largest plausible angular rate (rad/s, about 5700 deg/s; gyroscopes saturate near 35)."""
LOCALIZATION_STEP_S = 1e-3
"""Seconds between a pose set in localisation mode and the next frame (the prior's dt)."""

Log = Callable[[str, str], None]


@dataclasses.dataclass
class Step:
    """What one frame gave.

    Attributes:
        frame: the frame fed.
        estimate: its posterior; None when the frame could not be processed.
        messages: (output name, message) to publish, in order (empty without message classes).
        step_s: seconds ``SlamEngine.step`` took.
    """

    frame: Frame
    estimate: Optional[Estimate]
    messages: List[Tuple[str, Any]]
    step_s: float = 0.0


def _quiet(level: str, text: str) -> None:
    pass


class SlamSession:
    """One SLAM run over a stream of Frames, ImuSamples and PoseSamples (see the module
    docstring).

    Args:
        cfg: the configuration (engine, outputs, frames; ``node.mode`` for localisation).
        types: message classes for the outputs; None: no messages (a replay without a bag).
        camera_frame: frame_id of the predicted images.
        log: called with (level 'info' | 'warn' | 'error', text).
        ground_truth: ground-truth poses known up front (a replay), sorted by stamp; more may
            be fed (``add_ground_truth``).
        odom_at: frames.standalone false: the external odometry's T_odom_body at a stamp
            (None: not known), for map -> odom.
        realtime: frames come live and may be dropped (the node, not in lockstep): keyframes
            are then fused beside tracking when ``node.async_mapping`` (and on the tracking
            thread otherwise, whatever ``engine.inference.async_mapping`` says), committed as
            soon as they are prepared (``engine.inference.mapping_wait`` false), without the
            noisy camera's window (``engine.inference.noisy_window``); tracking keeps to
            ``node.track_budget_s``; and the rate-limited outputs are rendered on their own
            thread (``vssm_ros.output_worker``) when ``node.async_outputs`` and ``publish``
            is given.
        publish: called with (output name, message) from the outputs' thread (real time).
    """

    def __init__(self, cfg: VssmConfig, types: Optional[M.MsgTypes] = None,
                 camera_frame: str = '', log: Optional[Log] = None,
                 ground_truth: Optional[List[PoseSample]] = None,
                 odom_at: Optional[Callable[[int], Optional[np.ndarray]]] = None,
                 realtime: bool = False,
                 publish: Optional[Callable[[str, Any], None]] = None) -> None:
        self.cfg = cfg
        self.realtime = realtime
        self.types = types
        self.log = log or _quiet
        self.odom_at = odom_at
        self.localization = cfg.node.mode == 'localization'
        # Loaded once, so a bad engine.motion.weights fails at start-up, not at a frame.
        self.dynamics = dynamics_for_engine(cfg.engine)
        self.engine: Optional[SlamEngine] = None
        self.counts: Counter[str] = collections.Counter()
        self.errors: Counter[str] = collections.Counter()
        self.first_errors: List[str] = []
        self.bad_examples: Dict[str, List[str]] = {}   # reason -> the first texts
        self.init_from_ground_truth = False
        self.last_estimate: Optional[Estimate] = None
        self.steps_s: Deque[float] = collections.deque(maxlen=LATENCY_KEEP)
        self.stage_sums: Counter[str] = collections.Counter()
        self._pending_imu: Deque[ImuSample] = collections.deque(maxlen=PENDING_IMU)
        self._imu_last: Optional[int] = None
        self._ground_truth: List[PoseSample] = list(ground_truth or [])
        self._gt_fed = ground_truth is None
        self._pose_request: Optional[Tuple[np.ndarray, Optional[np.ndarray]]] = None
        # Localisation: the loaded file's trajectory part and config, saved back unchanged.
        self._loaded: Optional[Tuple[Dict[str, Any], Dict[str, Any]]] = None
        self._last_log: Dict[str, float] = {}
        self._bad_lock = threading.Lock()
        self.schedule = (outputs.OutputSchedule(types, cfg.frames, cfg.outputs, camera_frame)
                         if types is not None else None)
        self.output_worker: Optional[OutputWorker] = None
        if self.schedule is not None and realtime and publish and cfg.node.async_outputs:
            self.output_worker = OutputWorker(self.schedule.for_frame, publish, self.log,
                                              cfg.node.torch_threads, cfg.node.output_cpu_share,
                                              nice=cfg.node.output_nice)
        # Standalone map -> odom: the relocalisation jumps so far, so that odom -> base_link
        # stays continuous (REP-105).
        self.T_map_odom = np.eye(4)

    # ------------------------------------------------------------------ intake

    def feed(self, item: Any, busy: Optional[Callable[[], bool]] = None) -> Optional[Step]:
        """Take one stream item: a Frame is processed (its ``Step`` returned), an ImuSample
        or a PoseSample (ground truth) is kept; anything else is ignored."""
        if isinstance(item, Frame):
            return self.step(item, busy)
        if isinstance(item, ImuSample):
            self.add_imu(item)
        elif isinstance(item, PoseSample):
            self.add_ground_truth(item)
        return None

    def add_imu(self, sample: ImuSample) -> bool:
        """One IMU sample (body frame); non-finite or implausible ones (beyond ``IMU_MAX_ACC``,
        ``IMU_MAX_GYRO``) and stamps not after the previous are counted as bad input and
        dropped. A gap longer than ``engine.motion.max_imu_gap``
        before a sample is counted too ('imu_gap'; the sample is kept). Returns whether it was
        kept."""
        self.counts['imu_received'] += 1
        if not (np.all(np.isfinite(sample.acc)) and np.all(np.isfinite(sample.gyro))):
            self.bad('imu_non_finite', f'non-finite IMU sample at {sample.stamp_ns} ns dropped')
            return False
        if np.abs(sample.acc).max() > IMU_MAX_ACC or np.abs(sample.gyro).max() > IMU_MAX_GYRO:
            self.bad('imu_out_of_range', f'IMU sample at {sample.stamp_ns} ns beyond '
                     f'{IMU_MAX_ACC:g} m/s^2 or {IMU_MAX_GYRO:g} rad/s (acc {sample.acc}, gyro '
                     f'{sample.gyro}); dropped')
            return False
        if self._imu_last is not None and sample.stamp_ns <= self._imu_last:
            self.bad('imu_stamp_repeated' if sample.stamp_ns == self._imu_last
                     else 'imu_time_backwards', f'IMU stamp {sample.stamp_ns} ns is not after '
                     f'the previous {self._imu_last} ns; dropped')
            return False
        gap_s = 0.0 if self._imu_last is None else (sample.stamp_ns - self._imu_last) * 1e-9
        if gap_s > self.cfg.engine.motion.max_imu_gap:
            self.bad('imu_gap', f'no IMU sample for {gap_s:.3f} s before {sample.stamp_ns} ns '
                     f'(more than engine.motion.max_imu_gap = '
                     f'{self.cfg.engine.motion.max_imu_gap} s)')
        self._imu_last = int(sample.stamp_ns)
        if self.engine is None:
            self._pending_imu.append(sample)
        else:
            self.engine.add_imu(sample)
        return True

    def add_ground_truth(self, pose: PoseSample) -> None:
        """A ground-truth pose of the body in the map frame (the initial pose only)."""
        self._ground_truth.append(pose)
        if self._gt_fed:
            del self._ground_truth[:-GROUND_TRUTH_KEEP]

    def has_ground_truth_after(self, stamp_ns: int) -> bool:
        """Whether a ground-truth pose at or after ``stamp_ns`` is known."""
        return any(p.stamp_ns >= stamp_ns for p in self._ground_truth)

    def bad(self, reason: str, text: str, n: int = 1) -> None:
        """Count ``n`` bad inputs of ``reason``, keep ``text`` among its first
        ``BAD_EXAMPLES`` and log it (throttled)."""
        if n <= 0:
            return
        with self._bad_lock:   # the node's callbacks report bad input from their threads
            self.counts[f'bad.{reason}'] += n
            examples = self.bad_examples.setdefault(reason, [])
            if len(examples) < BAD_EXAMPLES:
                examples.append(text)
            log = self._due(reason)
        if log:
            self._log_counted(reason, 'warn', text)

    def bad_counts(self) -> Dict[str, int]:
        """Bad input by reason since start."""
        return {k[4:]: v for k, v in sorted(self.counts.items()) if k.startswith('bad.')}

    def bad_input_examples(self) -> Dict[str, List[str]]:
        """The first ``BAD_EXAMPLES`` texts of each bad-input reason since start."""
        with self._bad_lock:
            return {k: list(v) for k, v in sorted(self.bad_examples.items())}

    # ------------------------------------------------------------------ frames

    def initial_pose(self, stamp_ns: int) -> Optional[np.ndarray]:
        """T_world_body0 of a new map (None: the engine's own policy) for a first frame at
        ``stamp_ns``: engine.init_pose 'ground_truth' takes the nearest ground-truth pose."""
        if getattr(self.cfg.engine, 'init_pose', 'identity') != 'ground_truth':
            return None
        gt = sorted(self._ground_truth, key=lambda p: p.stamp_ns)
        T0 = initial_pose(gt, stamp_ns)
        if T0 is None:
            self.log('warn', f'no ground-truth pose within {INIT_MAX_DIFF_S} s of the first '
                     f'frame ({stamp_ns} ns); the map frame is the first body frame')
        self.init_from_ground_truth = T0 is not None
        return T0

    def _new_engine(self, T0: Optional[np.ndarray] = None) -> SlamEngine:
        cfg = self.cfg.engine
        inf = cfg.inference
        if self.localization:   # no keyframe after the loaded map: nothing is fused
            inf = dataclasses.replace(inf, keyframe_translation=math.inf,
                                      keyframe_rotation_deg=math.inf, keyframe_every=2**62)
        if self.realtime:
            # A keyframe the window holds back is prepared on the tracking thread: live on
            # the 3x-noise demo flight the latency p50 went 0.8-1.2 -> 2.2-2.9 s (session 17).
            # Tracking waits for the mapping thread only at the end of the lag.
            inf = dataclasses.replace(inf, async_mapping=self.cfg.node.async_mapping,
                                      noisy_window=1, mapping_wait=False)
        cfg = dataclasses.replace(cfg, inference=inf)
        return SlamEngine(cfg, T0, dynamics=self.dynamics,
                          swap=open_swap(cfg.map, cfg.device))

    def warm_up(self) -> float:
        """Pay torch's first-call costs before the first real frame: a throwaway engine of
        this session's configuration over a few synthetic frames (``vssm_ros.warm_up``).
        Returns the seconds it took; a failure is logged and the run goes on cold."""
        t0 = time.perf_counter()
        engine = None
        try:
            engine = self._new_engine(np.eye(4))
            warm_up(engine)
        except Exception as err:   # noqa: BLE001 (a warm-up must never stop the node)
            self.log('warn', f'warm-up failed ({type(err).__name__}: {err}); the first frames '
                             'pay the first calls of torch')
        finally:
            if engine is not None:
                engine.close()
        return time.perf_counter() - t0

    def __enter__(self) -> 'SlamSession':
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """The run is over: the engine's mapping finishes and its evicted map regions (their
        temporary files) are given back."""
        self._replace_engine(None)
        if self.output_worker is not None:
            self.output_worker.close()

    def _replace_engine(self, engine: Optional[SlamEngine]) -> None:
        """Use ``engine`` from now on (after the outputs' render in progress, which reads the
        old one); the old one's evicted map regions are given back."""
        self._outputs_idle()
        if self.engine is not None and self.engine is not engine:
            self.engine.close()
        self.engine = engine

    def _outputs_idle(self) -> None:
        if self.output_worker is not None:
            self.output_worker.wait_idle()

    def step(self, frame: Frame, busy: Optional[Callable[[], bool]] = None) -> Step:
        """Process one frame: a new engine first when there is none (slam mode), the pending
        IMU samples, the engine step, the outputs due. Engine errors are counted and logged;
        the Step has no estimate then. ``busy()``, asked after the step: whether a newer frame
        waits (then rate-limited outputs are put off, see ``OutputSchedule.for_frame``)."""
        self.counts['frames_received'] += 1
        if self.engine is None:
            if self.localization:
                return self._failed(frame, 'NoMap', 'localization mode: no map loaded '
                                    '(node.map_path or ~/load_map)')
            self._replace_engine(self._new_engine(self.initial_pose(frame.stamp_ns)))
            for s in self._pending_imu:
                self.engine.add_imu(s)
            self._pending_imu.clear()
        if self._pose_request is not None:
            self._apply_pose(frame.stamp_ns)
        budget = self.cfg.node.track_budget_s
        t0 = time.perf_counter()
        try:
            est = self.engine.step(frame, budget if self.realtime and budget > 0 else None)
        except VssmError as err:
            return self._failed(frame, type(err).__name__, str(err))
        dt = time.perf_counter() - t0
        self.counts['frames_processed'] += 1
        self.counts[f'status.{est.status}'] += 1
        if est.T_jump is not None:
            # A relocalisation, or the map frame levelled once gravity was solved (init).
            self.T_map_odom = np.asarray(est.T_jump, float) @ self.T_map_odom
            reloc = est.status_reason == 'relocalised'
            self.counts['relocalisations' if reloc else 'map_frame_corrections'] += 1
            what = 'relocalised' if reloc else 'map frame levelled (gravity solved)'
            self.log('info', f'{what} at {est.stamp_ns} ns: a jump of '
                             f'{np.linalg.norm(est.T_jump[:3, 3]):.2f} m into map -> odom')
        if self.last_estimate is not None and est.status != self.last_estimate.status:
            self.throttled('status', 'warn' if est.status != 'OK' else 'info',
                           f'tracking {est.status}: {est.status_reason}')
        self.steps_s.append(dt)
        for k, v in est.timings.items():
            self.stage_sums[k] += float(v)
        self.last_estimate = est
        return Step(frame, est, self._messages(frame, est, bool(busy and busy())), dt)

    def _failed(self, frame: Frame, kind: str, text: str) -> Step:
        self.counts['frames_failed'] += 1
        self.errors[kind] += 1
        if len(self.first_errors) < FIRST_ERRORS:
            self.first_errors.append(f'frame {frame.stamp_ns} ns: {text}')
        self.throttled('engine_error', 'warn', f'frame {frame.stamp_ns} ns skipped: {kind}: '
                       f'{text}')
        return Step(frame, None, [])

    def _messages(self, frame: Frame, est: Estimate, defer: bool) -> List[Tuple[str, Any]]:
        if self.schedule is None:
            return []
        frames = self.cfg.frames
        T_map_odom, tf = self.T_map_odom, True
        if not frames.standalone:
            T_odom_body = self.odom_at(est.stamp_ns) if self.odom_at is not None else None
            if T_odom_body is None:
                tf = False
                self.bad('odom_tf_missing', f'no {frames.odom_frame} -> {frames.body_frame} '
                         f'on /tf around {est.stamp_ns} ns (frames.standalone is false: '
                         f'another node must publish it); {frames.map_frame} -> '
                         f'{frames.odom_frame} not published for this frame')
            else:
                T_map_odom = est.T_world_body @ np.linalg.inv(T_odom_body)
        out = self.schedule.for_estimate(est, T_map_odom, tf)
        if self.output_worker is not None:
            self.output_worker.offer(frame, est, self.engine, defer)   # published from there
        else:
            out += self.schedule.for_frame(frame, est, self.engine, defer)
        out.append((outputs.STATUS, self.status_msg(est)))
        return out

    def status(self, est: Optional[Estimate] = None) -> Tuple[int, str]:
        """(diagnostic level, text) of the tracking: OK, or WARN when the last frame had too
        few valid depth rays (the engine's own ``status`` when it reports one)."""
        est = est or self.last_estimate
        if est is None:
            return M.DIAG_WARN, 'no frame processed yet'
        if est.status == 'OK':
            return M.DIAG_OK, 'localizing' if self.localization else 'tracking'
        level = M.DIAG_WARN if est.status == 'DEGRADED' else M.DIAG_ERROR
        what = ('degraded (map not updated)' if est.status == 'DEGRADED'
                else 'lost (coasting on the motion prior, map not updated)')
        return level, f'{what}: {est.status_reason}'

    def status_msg(self, est: Estimate) -> Any:
        """diagnostic_msgs/DiagnosticStatus of one frame's tracking (``~/status``)."""
        level, text = self.status(est)
        values: Dict[str, Any] = {'stamp_ns': int(est.stamp_ns)}
        values.update({k: int(est.timings[k]) for k in TIMING_COUNTS if k in est.timings})
        values['position_std_m'] = position_std(est)
        values['tracking_status'] = est.status
        values.update({f'health.{k}': v for k, v in est.health.items()})
        values.update({f'bias_acc.{a}': float(v) for a, v in zip('xyz', est.b_a)})
        values.update({f'bias_gyro.{a}': float(v) for a, v in zip('xyz', est.b_g)})
        return M.diagnostic_status_msg(self.types, outputs.DIAGNOSTIC_NAME, level, text, values)

    def flush(self) -> bool:
        """Close the engine's open window (before the final map is read); whether the map
        changed."""
        return self.engine.flush() if self.engine is not None else False

    # ------------------------------------------------------------------ statistics

    def stats(self) -> Dict[str, Any]:
        """Counts, bad input by reason and timing figures for diagnostics and reports."""
        c = self.counts
        n = c['frames_processed']
        keys = ('frames_processed', 'frames_failed', 'imu_received', 'resets',
                'relocalisations', 'map_frame_corrections', 'status.OK', 'status.DEGRADED',
                'status.LOST')
        out: Dict[str, Any] = {k: c[k] for k in keys}
        out['imu_gaps'] = self.engine.n_imu_gaps if self.engine is not None else 0
        out.update({f'bad.{k}': v for k, v in self.bad_counts().items()})
        out.update({f'bad_examples.{k}': ' | '.join(v)
                    for k, v in self.bad_input_examples().items()})
        if self.steps_s:
            steps = np.asarray(self.steps_s)
            out['step_ms'] = 1e3 * float(steps[-1])
            out['step_p50_ms'] = 1e3 * float(np.median(steps))
        if n:
            out.update({f'{k}_mean_ms': 1e3 * v / n for k, v in self.stage_sums.items()
                        if k not in TIMING_COUNTS})
        if self.last_estimate is not None:
            out['position_std_m'] = position_std(self.last_estimate)
        if self.output_worker is not None:
            out['outputs_rendered'] = self.output_worker.rendered
            out['outputs_failed'] = self.output_worker.failures
            out['outputs_refused_cooling'] = self.output_worker.cooling
        map_stats = getattr(self.engine, 'map_stats', None)
        if callable(map_stats):
            out.update({f'map.{k}': v for k, v in map_stats().items()})
        return out

    # ------------------------------------------------------------------ services

    def reset(self, reason: str = 'reset requested') -> str:
        """Forget the map and the trajectory; the next frame starts a new map (slam mode)."""
        self._replace_engine(None)
        self.last_estimate = None
        self.T_map_odom = np.eye(4)
        self._pending_imu.clear()
        self._imu_last = None
        self._pose_request = None
        self._loaded = None
        if self.schedule is not None:
            self._outputs_idle()
            self.schedule.reset()
        self.counts['resets'] += 1
        text = f'map and trajectory reset ({reason})'
        self.log('info', text)
        return text

    def forget_stamps(self) -> None:
        """Input stamps jumped back (a bag played again): forget the IMU order and the ground
        truth (a ``reset`` follows)."""
        self._imu_last = None
        self._pending_imu.clear()
        if self._gt_fed:
            self._ground_truth.clear()

    def save_map(self, path: str) -> str:
        """Write the engine state (map, state, keyframes) and the config as a checkpoint.

        Raises:
            StateError: no frame processed since start or reset.
            VssmError, OSError: it could not be written.
        """
        if self.engine is None:
            raise StateError('no map to save: no frame processed since start or reset')
        # The map streamed: a region at a time, not a copy of the whole map in memory.
        state, config = self.engine.state_dict(stream=True), to_dict(self.cfg)
        if self.localization and self._loaded is not None:
            # Localisation changes no map: the file keeps the loaded pose, keyframes and
            # config, so an unchanged map is saved as the identical file (and a changed one
            # shows in its bytes).
            loaded, config = self._loaded
            state = {'meta': loaded['meta'], 'streams': state.get('streams', {}),
                     'tensors': {**{k: v for k, v in state['tensors'].items()
                                    if not _trajectory_key(k)},
                                 **{k: v for k, v in loaded['tensors'].items()
                                    if _trajectory_key(k)}}}
        save_checkpoint(path, state, config)
        return f'saved the map ({self.engine.n_frames} frames) to {path}'

    def load_map(self, path: str) -> str:
        """Replace the engine state by a checkpoint's (made with the same map config). On any
        error the current map and trajectory are kept, unchanged.

        Raises:
            VssmError: unreadable, or made with another map config.
        """
        state, config = load_checkpoint(path)
        engine = self._new_engine()
        try:
            engine.load_state_dict(state)
        except (VssmError, KeyError, ValueError, TypeError, IndexError, RuntimeError) as err:
            engine.close()   # the new engine's swap files; the current engine is untouched
            if isinstance(err, VssmError):
                raise StateError(f'cannot load {path}: {err}') from err
            # A well-formed checkpoint whose tensors are no engine state (another build's).
            what = (f'missing {err}' if isinstance(err, KeyError)
                    else f'{type(err).__name__}: {err}')
            raise StateError(f'cannot load {path}: malformed engine state ({what})') from err
        self._replace_engine(engine)
        self.last_estimate = None
        self._pending_imu.clear()
        self._pose_request = None
        if self.schedule is not None:
            self.schedule.reset()
        if self.localization:
            self._loaded = ({'meta': state['meta'],
                             'tensors': {k: v.clone() for k, v in state['tensors'].items()
                                         if _trajectory_key(k)}}, config)
            # Until a pose is set: from the saved one, at whatever stamps the new run has.
            try:
                self._pose_request = (engine.estimate().T_world_body, None)
            except StateError:   # a map saved before any frame: the pose must be set
                pass
        return f'loaded the map ({engine.n_frames} frames) from {path}'

    def set_pose(self, T_world_body: np.ndarray, cov: Optional[np.ndarray] = None,
                 planar: bool = False) -> str:
        """Set the pose the next frame is tracked from (localisation with a loaded map).
        ``planar``: a 2D pose (RViz's "2D Pose Estimate"): x, y and yaw from it, height, roll
        and pitch from the current estimate (gravity). ``cov``: (6, 6) x y z rx ry rz.

        Raises:
            StateError: no map loaded.
        """
        if self.engine is None:
            raise StateError('no map loaded: load one first (~/load_map)')
        T = np.array(T_world_body, dtype=np.float64)
        if planar:
            T = planar_pose(T, self.last_estimate.T_world_body if self.last_estimate
                            else None)
        self._pose_request = (T, None if cov is None else np.asarray(cov, float))
        return 'pose set; the next frame is tracked from it'

    def _apply_pose(self, stamp_ns: int) -> None:
        """Write the requested pose into the engine's state (its public state format), as the
        posterior of a moment just before ``stamp_ns``."""
        T, cov = self._pose_request
        self._pose_request = None
        import torch

        sd = self.engine.state_dict()
        # Copies: on the CPU state_dict's tensors may be the engine's own, which
        # load_state_dict resets before it reads them.
        t = sd['tensors'] = {k: v.clone() for k, v in sd['tensors'].items()}
        dtype = t['state.R'].dtype if 'state.R' in t else torch.float64
        full = torch.zeros(DIM, DIM, dtype=dtype)
        prior = np.diag([0.05 ** 2] * 3 + [np.deg2rad(2.0) ** 2] * 3)
        full[POSE, POSE] = torch.as_tensor(prior if cov is None else cov, dtype=dtype)
        # The velocity at a pose given by hand is unknown: tracking finds it.
        full[V, V] = torch.eye(3, dtype=dtype) * self.engine.cfg.init.moving_velocity_std ** 2
        # The IMU biases do not change with the pose: keep their estimate and covariance.
        mc = self.engine.cfg.motion
        full[BIAS, BIAS] = (t['state.cov'][BIAS, BIAS] if 'state.cov' in t else torch.diag(
            torch.tensor([mc.acc_bias_std ** 2] * 3 + [mc.gyro_bias_std ** 2] * 3,
                         dtype=dtype)))
        t.setdefault('state.b_a', torch.zeros(3, dtype=dtype))
        t.setdefault('state.b_g', torch.zeros(3, dtype=dtype))
        t['state.R'] = torch.as_tensor(T[:3, :3], dtype=dtype)
        t['state.p'] = torch.as_tensor(T[:3, 3], dtype=dtype)
        t['state.v'] = torch.zeros(3, dtype=dtype)
        t['state.omega'] = torch.zeros(3, dtype=dtype)
        t['state.cov'] = full
        t.setdefault('state.anchor_var', torch.zeros(2, dtype=dtype))
        sd['meta']['last_stamp_ns'] = int(stamp_ns - LOCALIZATION_STEP_S * 1e9)
        self.engine.load_state_dict(sd)
        self._imu_last = None

    # ------------------------------------------------------------------ helpers

    def throttled(self, key: str, level: str, text: str) -> None:
        """Log ``text`` unless the same ``key`` was logged less than ``LOG_THROTTLE_S`` ago."""
        with self._bad_lock:
            log = self._due(key)
        if log:
            self._log_counted(key, level, text)

    def _due(self, key: str) -> bool:
        now = time.monotonic()
        if now - self._last_log.get(key, -math.inf) < LOG_THROTTLE_S:
            return False
        self._last_log[key] = now
        return True

    def _log_counted(self, key: str, level: str, text: str) -> None:
        n = self.counts.get(f'bad.{key}')
        self.log(level, text + (f' ({n} so far)' if n and n > 1 else ''))


def _trajectory_key(name: str) -> bool:
    """A checkpoint tensor that belongs to the run (pose, keyframes), not to the map."""
    return name.startswith(('state.', 'keyframes.'))


def position_std(est: Estimate) -> float:
    """The estimate's position std (metres, the root of the covariance's trace)."""
    return float(np.sqrt(max(float(np.trace(np.asarray(est.cov)[:3, :3])), 0.0)))


def planar_pose(T_2d: np.ndarray, T_current: Optional[np.ndarray]) -> np.ndarray:
    """A full pose from a 2D one (x, y, yaw of ``T_2d``): height, roll and pitch from
    ``T_current`` (none: level, at the 2D pose's height).

    Shape: (4, 4), (4, 4) -> (4, 4).
    """
    T_2d = np.asarray(T_2d, float)
    yaw = math.atan2(T_2d[1, 0], T_2d[0, 0])
    Rz = np.array([[math.cos(yaw), -math.sin(yaw), 0.0],
                   [math.sin(yaw), math.cos(yaw), 0.0], [0.0, 0.0, 1.0]])
    out = np.eye(4)
    out[:2, 3] = T_2d[:2, 3]
    out[2, 3] = T_2d[2, 3]
    R = Rz
    if T_current is not None:
        Rc = np.asarray(T_current, float)[:3, :3]
        yaw_c = math.atan2(Rc[1, 0], Rc[0, 0])
        Rz_c = np.array([[math.cos(yaw_c), -math.sin(yaw_c), 0.0],
                         [math.sin(yaw_c), math.cos(yaw_c), 0.0], [0.0, 0.0, 1.0]])
        R = Rz @ Rz_c.T @ Rc   # the current tilt, the requested heading
        out[2, 3] = float(np.asarray(T_current)[2, 3])
    out[:3, :3] = R
    return out
