# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""SlamEngine: online variational localisation and mapping (VSSM-LM), one frame at a time.

Per RGB-D frame (DESIGN section 2, online inference):

1. propagate q(z_t) from q(z_t-1) with the IMU samples since the last frame (or the
   constant-velocity prior without IMU);
2. track: Gauss-Newton on the new state with the map fixed, on sampled pixels; q(z_t) is the
   Laplace approximation at the optimum;
3. window and map: a keyframe opens a window; once ``inference.window - 1`` more frames are
   tracked (with IMU; without, the window is the keyframe alone), the window's states are
   refined jointly (``core.window``: rays and transitions, map fixed), then the closed-form
   map posterior q(M) given the states is updated with the keyframe at its refined pose (see
   ``VoxelMap``). Block-coordinate ascent on the joint: states given the map, then the map
   given the states. Keyframes are kept in a bounded buffer;
4. states leaving the window are frozen: their posterior stays as the estimate.

The drivers (ROS node, replay CLI) convert inputs to ``Frame`` / ``ImuSample`` and call
``add_imu`` and ``step``; ``render`` and ``map_points`` serve outputs.
"""

from __future__ import annotations

import collections
import functools
import math
import time
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from vssm_ros.config import EngineConfig
from vssm_ros.core import lie
from vssm_ros.core.camera import pixel_grid, pixel_rays, sample_pixels
from vssm_ros.core.cost import (CostField, FreeCells, FreeSpace, box_occupancy,
                                cost_from_occupancy)
from vssm_ros.core.dynamics import (GaussianState, constant_velocity_transition, initial_state,
                                    preintegrated_transition, white_acceleration_noise,
                                    with_propagated_cov)
from vssm_ros.core.health import LOST, OK, HealthMonitor, TrackSignals
from vssm_ros.core.imu import hold_bounds_ns, integrate_imu, preintegrate
from vssm_ros.core.init import (correction_angle_deg, gravity_correction, is_at_rest,
                                rest_after_all, solve_gravity)
from vssm_ros.core.learned_dynamics import (LearnedDynamics, learned_transition,
                                            propagate_learned)
from vssm_ros.core.map import BlockSwap, TensorStream, VoxelMap, integrate
from vssm_ros.core.mapping import KeyframeMapper
from vssm_ros.core.noise import DepthNoise
from vssm_ros.core.posterior import RayBatch, depth_sigma, make_rays, track
from vssm_ros.core.prediction import (combine_renders, sample_constant_velocity,
                                      sample_imu_rollouts)
from vssm_ros.core.relocalise import candidate_poses, choose_candidate, score_poses
from vssm_ros.core.render import march_rays, uniform_depths
from vssm_ros.core.state_layout import P, PHI, POSE, V
from vssm_ros.core.window import Transition, WindowFrame, refine_window
from vssm_ros.errors import StateError
from vssm_ros.types import Estimate, Frame, ImuSample

STATE_VERSION = 4
DRIFT_FLOOR_ROT, DRIFT_FLOOR_VEL, DRIFT_FLOOR_POS = 0.005, 0.05, 0.01
"""Stds (rad, m/s, m) added to the drift test's covariance for the errors of the two states
it compares (tracking's own noise, the biases' uncertainty over the window)."""
RENDER_SPACING = 0.85
"""Full renders sample rays at most this many truncations apart (see ``render``)."""
VARIANCE_FACTOR_RATE = 0.1
"""Weight of each tracked frame in the running mean of the squared normalised residual (a
time constant of ten frames)."""
RELOC_VELOCITY_FLOOR = 0.05
"""Least velocity std (m/s) of a relocalised state (``_velocity_after_jump``)."""
GRAVITY_SAMPLES = 50
"""IMU samples averaged for the initial gravity direction (engine.init_pose 'gravity')."""
INIT_IMU_BEFORE = 1000
"""IMU samples before the first frame kept for a restart after the gravity solve (the first
state uses the last ``GRAVITY_SAMPLES`` / ``init.rest_samples`` of them)."""


def _under_map_lock(method):
    """The method reads the map holding its read lock (keyframe commits write beside it)."""
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self.mapper.lock.read():
            return method(self, *args, **kwargs)
    return locked


class SlamEngine:
    """The engine shared by the ROS node and the replay CLI.

    Args:
        cfg: engine configuration.
        T_world_body0: pose of the first frame's body in the map frame (identity: the map frame
            is the first body frame). Shape: (4, 4).
        dynamics: the learned transition (``engine.motion.weights``, loaded by
            ``vssm_ros.data.dynamics_io.dynamics_for_engine``); None: the engineered integrator.
        swap: where map regions evicted beyond ``engine.map.memory_mb`` go (the drivers pass
            ``vssm_ros.data.map_swap.DiskSwap``); None: host memory.
    """

    def __init__(self, cfg: EngineConfig, T_world_body0: Optional[np.ndarray] = None,
                 dynamics: Optional[LearnedDynamics] = None, swap: Optional[BlockSwap] = None):
        self.cfg = cfg
        self.device = torch.device(cfg.device)
        if self.device.type == 'cuda' and not torch.cuda.is_available():
            raise StateError(f'engine.device is {cfg.device!r} but CUDA is not available')
        self.dtype = torch.float64 if cfg.dtype == 'float64' else torch.float32
        self.map = VoxelMap(cfg.map, self.device, self.dtype, swap)
        # Free space seen through by keyframe rays, for the collision cost (the map itself
        # only holds voxels near surfaces).
        self.free_space = FreeSpace(self.map, cfg.cost.resolution, cfg.cost.carve_range)
        # Keyframe fusion, here or beside tracking; its lock guards the map (core.mapping).
        self.mapper = KeyframeMapper(cfg.inference.async_mapping,
                                     cfg.inference.mapping_lag_frames,
                                     wait=cfg.inference.mapping_wait,
                                     on_wait=lambda s: self.map.add_stage_time(wait=s))
        self.T_world_body0 = np.eye(4) if T_world_body0 is None else np.asarray(T_world_body0)
        self._align_gravity = T_world_body0 is None and cfg.init_pose == 'gravity'
        self._gen = torch.Generator(device=self.device)
        self.health = HealthMonitor(cfg.health)
        self.dynamics = None
        if dynamics is not None:   # inference only: no autograd graph through the transition
            self.dynamics = dynamics.to(self.device, self.dtype).eval().requires_grad_(False)
        self.reset()

    # ------------------------------------------------------------------ lifecycle

    def reset(self) -> None:
        """Forget the map, the trajectory and buffered IMU samples."""
        self.mapper.drain()
        with self.mapper.lock.write():   # a render may read beside (the node's outputs)
            self.map.reset()
            self.free_space.reset()
        self._gen.manual_seed(self.cfg.inference.seed)
        self.state: Optional[GaussianState] = None
        self.last_stamp_ns: Optional[int] = None
        self._imu: Deque[ImuSample] = collections.deque()
        self._last_imu: Optional[ImuSample] = None
        self.keyframes: Deque[Dict] = collections.deque(maxlen=64)
        self._frames_since_kf = 0
        # The open window: the keyframe waiting to be fused (its images) and the frames from
        # it on (see core.window).
        self._window: List[WindowFrame] = []
        self._pending: Optional[Dict] = None
        self.n_frames = 0
        self.n_imu_gaps = 0
        self.n_untracked = 0
        # Where the memory budget was last kept (map frame, metres): _keep_budget.
        self._budget_at: Optional[np.ndarray] = None
        # Whether the IMU linked the last frame to the one before (_close_window).
        self._imu_linked = False
        self.n_relocalisations = 0
        self.health.reset()
        self._signals_last: Optional[TrackSignals] = None
        # Mean square of the tracked frames' normalised residuals (about 1 when the sensor
        # model holds): the a-posteriori variance factor (sensor.variance_factor).
        self.residual_var = 1.0
        # The camera's measured depth noise and the sensor model assumed from it.
        self.depth_noise = DepthNoise(self.cfg.sensor)
        self._imu_interval: Any = None
        # T_new T_coasted^-1 of a relocalisation in the last frame (the map -> odom jump).
        self._jump: Optional[np.ndarray] = None
        # Time (seconds) of the last well-tracked frame: how long a relocalisation was lost.
        self._last_good_t = -math.inf
        # Recent frames (time, the IMU since the frame before, the state) for the drift test.
        self._history: Deque[Tuple[float, Any, GaussianState]] = collections.deque(maxlen=400)
        # Initialisation (core.init): the inputs so far and the tracked poses with the IMU
        # between them, until gravity and velocity are solved (None: not aligning).
        align = self._align_gravity and self.cfg.init.align_frames > 0
        self._init_log: Optional[List[Any]] = [] if align else None
        self._init_track: List[Tuple[torch.Tensor, torch.Tensor, Any]] = []
        self._init_fix: Optional[Tuple[torch.Tensor, torch.Tensor]] = None
        # The map frame's rotation by the gravity solves so far (None: not solved yet).
        self._R_solved: Optional[torch.Tensor] = None
        self._early_tried = False
        self.started_moving: Optional[bool] = None
        self.gravity_correction_deg = 0.0
        # (K, T_body_cam, width, height) of the last frame: predict() renders with it.
        self._camera: Optional[Tuple[np.ndarray, np.ndarray, int, int]] = None
        # Position and rotation variance of the map frame the current state was tracked
        # against (see VoxelMap.anchor_at); the first frame anchors the map exactly.
        self.anchor_var = torch.zeros(2, device=self.device, dtype=self.dtype)

    def close(self) -> None:
        """Give back what the map's swap holds (its temporary files): the engine is done."""
        self.mapper.close()
        close = getattr(self.map.swap, 'close', None)
        if callable(close):
            close()

    def _t(self, x) -> torch.Tensor:
        # np.array copies: arrays from bag messages may be read-only views.
        return torch.as_tensor(np.array(x), device=self.device, dtype=self.dtype)

    # ------------------------------------------------------------------ inputs

    def add_imu(self, sample: ImuSample) -> None:
        """Queue one IMU sample (body frame); samples older than the last frame are ignored."""
        if self._init_log is not None:
            self._init_log.append(sample)
            if self.state is None and len(self._init_log) > max(INIT_IMU_BEFORE,
                                                                self.cfg.init.rest_samples):
                del self._init_log[0]   # before the first frame only the latest are used
        if self.last_stamp_ns is not None and sample.stamp_ns <= self.last_stamp_ns:
            self._last_imu = sample
            return
        if self._imu and sample.stamp_ns <= self._imu[-1].stamp_ns:
            return  # duplicate or out of order: the earlier sample stands
        if not (np.all(np.isfinite(sample.acc)) and np.all(np.isfinite(sample.gyro))):
            return
        self._imu.append(sample)

    @property
    def has_imu(self) -> bool:
        return self._last_imu is not None or bool(self._imu)

    def _imu_between(self, t0: int, t1: int):
        """Piecewise-constant IMU samples covering (t0, t1]: (acc, gyro, dt) tensors or None."""
        samples = [s for s in self._imu if s.stamp_ns <= t1]
        while self._imu and self._imu[0].stamp_ns <= t1:
            self._imu.popleft()
        if self._last_imu is not None:
            samples.insert(0, self._last_imu)
        if not samples:
            return None
        dts = np.diff(hold_bounds_ns([s.stamp_ns for s in samples], t0, t1,
                                     self._last_imu is not None)) * 1e-9
        # A gap is judged on the samples' own stamps: a hole spanning several frames holds
        # the sample before it across each of their (short) intervals.
        held = np.diff(np.array([s.stamp_ns for s in samples] + [t1], dtype=np.int64)) * 1e-9
        gap = max(held.max(initial=0.0), (samples[0].stamp_ns - t0) * 1e-9)
        self._last_imu = samples[-1]
        if gap > self.cfg.motion.max_imu_gap:
            self.n_imu_gaps += 1
            return None
        keep = dts > 0
        if not keep.any():
            return None
        acc = self._t(np.stack([s.acc for s in samples])[keep])
        gyro = self._t(np.stack([s.gyro for s in samples])[keep])
        return acc, gyro, self._t(dts[keep])

    # ------------------------------------------------------------------ step

    def step(self, frame: Frame, track_budget_s: Optional[float] = None) -> Estimate:
        """Process one RGB-D frame and return the posterior of its state.

        Args:
            track_budget_s: tracking takes no Gauss-Newton step after this many seconds
                (beyond ``posterior.MIN_STEPS``), as if converged: a real-time budget (the
                result then depends on timing). None: until converged or
                ``inference.track_iters``.
        Raises:
            StateError: if the frame's stamp is not after the previous frame's.
        """
        est = self._step(frame, track_budget_s)
        if self._init_log is not None:
            self._init_log.append(frame)
            if self.n_frames >= self._align_at():
                est = self._finish_init(est)
        return est

    def _align_at(self) -> int:
        """Frames after which gravity is solved next: ``init.moving_align_frames`` for the
        first solve after a start in motion (every frame tracked under the accelerometer's
        guess drifts), ``init.align_frames`` otherwise."""
        ic = self.cfg.init
        if self.started_moving and self._R_solved is None and not self._early_tried:
            return min(ic.moving_align_frames or ic.align_frames, ic.align_frames)
        return ic.align_frames

    def _step(self, frame: Frame, track_budget_s: Optional[float] = None) -> Estimate:
        inf = self.cfg.inference
        t_start = time.perf_counter()
        timings: Dict[str, float] = {}
        if self.last_stamp_ns is not None and frame.stamp_ns <= self.last_stamp_ns:
            raise StateError(f'frame stamp {frame.stamp_ns} ns is not after the previous frame '
                             f'({self.last_stamp_ns} ns): time went backwards or repeated')
        depth = self._t(frame.depth.astype(np.float32))
        K = self._t(frame.K)
        T_body_cam = self._t(frame.T_body_cam)
        rgb = self._t(frame.rgb.astype(np.float32) / 255.0)

        # 1. propagate
        t0 = time.perf_counter()
        dt = 0.0 if self.last_stamp_ns is None else (frame.stamp_ns - self.last_stamp_ns) * 1e-9
        if self.state is None:
            self.state = self._initial_state(frame.stamp_ns)
            prior = self.state
            first = True
        else:
            first = False
            imu = self._imu_between(self.last_stamp_ns, frame.stamp_ns)
            transition = self._transition(imu, dt)
            imu_of_interval = self._imu_interval = imu
            if imu is not None and self.dynamics is not None:
                prior = propagate_learned(self.state, *imu, self.dynamics, self.cfg.motion)
            else:
                pred, F = transition(self.state)
                prior = with_propagated_cov(pred, F, self.state.cov)
            if self.health.status == LOST:
                # What the IMU model leaves out when nothing corrects it (vibration, bias and
                # tilt errors): health.lost_acc_noise.
                prior.cov = prior.cov + white_acceleration_noise(
                    self.cfg.health.lost_acc_noise, dt, prior.cov)
        timings['propagate'] = time.perf_counter() - t0

        # 2. track, with the health of the result (and relocalisation when lost)
        t0 = time.perf_counter()
        rays: Optional[RayBatch] = None
        quality = 'good'
        if first:
            post = prior
        else:
            rays = self._sample_rays(depth, rgb, K, T_body_cam)
            with self.mapper.lock.read():
                stop_at = None if track_budget_s is None else t0 + track_budget_s
                post, quality, res = self._track(rays, prior, frame.t, dt, timings, stop_at)
                if quality != 'bad':
                    self.anchor_var = self._anchor_of(rays, res, post.T @ T_body_cam)
        timings['track'] = time.perf_counter() - t0
        if self._init_log is not None:
            self._init_track.append((post.R, post.p, None if first else imu_of_interval))

        # 3. window and map (closed form, keyframes)
        t0 = time.perf_counter()
        self._imu_linked = not first and imu_of_interval is not None
        self.mapper.step()   # a keyframe prepared beside the last frames goes in now
        if self.health.status != OK and self._pending is not None:
            post = self._close_window(post)   # its keyframe was taken while OK
        if self._pending is not None and rays is not None and quality != 'bad':
            n = inf.window_rays
            self._window.append(WindowFrame(frame.stamp_ns, post.clone(), rays.head(n),
                                            transition))
        # Only OK frames map: fusing weak ones let a drifting pose drag the map along with it
        # (3x depth noise: 12 m off in 13 s, every frame DEGRADED).
        # While a keyframe is prepared (real time), the next waits until the drone has moved
        # twice as far: then it commits the pending one first, waiting for it if need be,
        # so that the map never falls far behind a fast drone on a starved mapping thread.
        if first or (self.health.status == OK
                     and self._is_keyframe(post, 2.0 if self.mapper.busy else 1.0)):
            post = self._close_window(post)
            self.keyframes.append({'stamp_ns': frame.stamp_ns, 'T_world_body': post.T.clone()})
            self._frames_since_kf = 0
            self._pending = {'depth': depth, 'rgb': rgb, 'K': K, 'T_body_cam': T_body_cam,
                             'anchor_var': self.anchor_var,
                             # A camera noisier than the model widens the colour band.
                             'noise_scale': self.depth_noise.measured,
                             'sensor': self.depth_noise.sensor}
            self._window = [WindowFrame(frame.stamp_ns, post.clone(), None, None)]
            if first or self._window_size(imu_of_interval) <= 1:
                post = self._close_window(post)
        else:
            self._frames_since_kf += 1
            if len(self._window) >= self._window_size(imu_of_interval):
                post = self._close_window(post)
        self._keep_budget(post)
        timings['map'] = time.perf_counter() - t0

        # 4. freeze
        self.state = post
        self._history.append((frame.t, None if first else imu_of_interval, post))
        self.last_stamp_ns = frame.stamp_ns
        self._camera = (np.array(frame.K, dtype=np.float64),
                        np.array(frame.T_body_cam, dtype=np.float64),
                        int(frame.depth.shape[1]), int(frame.depth.shape[0]))
        self.n_frames += 1
        timings['total'] = time.perf_counter() - t_start
        return self.estimate(timings)

    def _initial_state(self, stamp_ns: int) -> GaussianState:
        """The first frame's state: the map frame's pose (``init_pose``, corrected by a
        gravity solve when restarting), zero velocity with a std for rest or motion (the
        solved velocity when restarting)."""
        ic, mc = self.cfg.init, self.cfg.motion
        T0 = self._gravity_aligned(stamp_ns) if self._align_gravity else self.T_world_body0
        T0 = self._t(T0)
        if self._init_fix is not None:
            R_fix, v0 = self._init_fix
            T0[:3, :3] = R_fix @ T0[:3, :3]
            vel_std = ic.rest_velocity_std
        else:
            self.started_moving = not self._at_rest(stamp_ns)
            vel_std = ic.moving_velocity_std if self.started_moving else ic.rest_velocity_std
        state = initial_state(T0, vel_std=vel_std, acc_bias_std=mc.acc_bias_std,
                              gyro_bias_std=mc.gyro_bias_std)
        if self._init_fix is not None:
            state.v = v0
        return state

    def _imu_until(self, stamp_ns: int) -> List[ImuSample]:
        """The queued IMU samples stamped up to ``stamp_ns``: the first state is judged on what
        was measured before its frame, not on samples that happened to arrive early (a live
        driver's topics are not ordered with each other)."""
        return [x for x in self._imu if x.stamp_ns <= stamp_ns]

    def _at_rest(self, stamp_ns: int) -> bool:
        """Whether the IMU samples before the first frame say the body is at rest (False
        without IMU: nothing says so)."""
        ic = self.cfg.init
        samples = self._imu_until(stamp_ns)[-ic.rest_samples:]
        if len(samples) < 2:
            return False
        acc = self._t(np.stack([x.acc for x in samples]))
        gyro = self._t(np.stack([x.gyro for x in samples]))
        return is_at_rest(acc, gyro, self.cfg.motion.gravity, ic.rest_max_gyro,
                          ic.rest_max_acc_dev)

    def _finish_init(self, est: Estimate) -> Estimate:
        """Solve gravity and velocity over the frames so far (``core.init``); when the map
        frame's gravity must turn (or the start was in motion), process them again from the
        corrected first state. After a start in motion the first solve comes early
        (``_align_at``) and the one at ``init.align_frames`` refines it. Returns the newest
        frame's estimate, with the change of map frame in ``T_jump``."""
        ic = self.cfg.init
        early = self._align_at() < ic.align_frames
        self._early_tried = self._early_tried or early
        rest = (rest_after_all(self._init_log, self._init_track, self.cfg, self._t) if early
                else None)
        fix = rest if rest is not None else solve_gravity(self._init_track, self.cfg,
                                                          self.dtype)
        if fix is None and early:
            return est   # keep the frames: the solve at align_frames tries again
        log = self._init_log
        self._init_log, self._init_track = None, []
        if fix is None:
            return est
        R_fix, v0 = fix
        angle = correction_angle_deg(R_fix)
        # A start at rest keeps its accelerometer gravity unless the solve disagrees; a start
        # in motion takes every solve (the early one is rough, the next refines it).
        rest_held = float(torch.linalg.norm(v0)) < 3 * ic.rest_velocity_std
        if not self.started_moving and angle < ic.min_correction_deg and rest_held:
            return est
        T_old = est.T_world_body
        moving, tried = self.started_moving and rest is None, self._early_tried
        R_solved = R_fix if self._R_solved is None else R_fix @ self._R_solved
        self.reset()
        self._init_log = [] if early else None   # early: the solve at align_frames follows
        self._init_fix = (R_solved, v0)
        self._R_solved, self._early_tried, self.started_moving = R_solved, tried, moving
        for item in log:
            if isinstance(item, Frame):
                est = self._step(item)
                if self._init_log is not None:
                    self._init_log.append(item)
            else:
                self.add_imu(item)
        self._init_fix = None
        self.started_moving = moving
        self.gravity_correction_deg = correction_angle_deg(R_solved)
        est.T_jump = est.T_world_body @ np.linalg.inv(T_old)
        return est

    def _sample_rays(self, depth: torch.Tensor, rgb: torch.Tensor, K: torch.Tensor,
                     T_body_cam: torch.Tensor) -> RayBatch:
        """The frame's rays for tracking: ``inference.rays`` pixels sampled among the valid
        ones (their band samples, observed depth and grey intensity)."""
        inf = self.cfg.inference
        idx, ok = sample_pixels(torch.isfinite(depth), inf.rays, self._gen)
        w = depth.shape[1]
        uv = torch.stack(((idx % w).to(self.dtype), (idx // w).to(self.dtype)), dim=-1)
        rgb_obs = rgb.reshape(-1, 3)[idx] if inf.track_color else None
        return make_rays(pixel_rays(K, uv), depth.reshape(-1)[idx], ok, T_body_cam,
                         self.cfg.render, rgb_obs)

    def _track(self, rays: RayBatch, prior: GaussianState, t: float, dt: float,
               timings: Dict[str, float], stop_at: Optional[float] = None
               ) -> Tuple[GaussianState, str, Dict]:
        """Track the frame from the propagated prior, judge the result (``core.health``) and
        act on it: a bad frame keeps the prior (coasting; its covariance grows); while LOST
        only a verified relocalisation is taken (tracking from the coasted prior is its first
        candidate), otherwise the engine coasts.

        Returns:
            The posterior, the frame's quality ('good', 'weak', 'bad') and ``track``'s result.
        """
        inf, hc = self.cfg.inference, self.cfg.health
        res = self._run_track(rays, prior, inf.track_iters, stop_at)
        post = res['state']
        sig = self._signals(rays, res, prior, post, self._drift(t, post))
        timings['rays_used'] = float(res['n_used'])
        timings['track_iters'] = float(res['iters'])
        self._jump = None
        was_lost = self.health.status == LOST
        self.health.update(sig, t)
        quality = self.health.last_quality
        if was_lost:
            found = (post, res, sig) if self._verified(sig) else None
            if found is None and hc.relocalise and sig.valid_fraction > 0:
                found = self._relocalise(rays, prior)
            if found is None:
                quality = 'bad'
            else:
                post, res, sig = found
                quality = 'good'
                post.cov = self._velocity_after_jump(post, prior, t - self._last_good_t)
                self._jump = (post.T @ torch.linalg.inv(prior.T)).cpu().double().numpy()
                self.health.relocalised(t)
                self.n_relocalisations += 1
        if quality == 'good':
            self._last_good_t = t
        if self._jump is not None:
            self._history.clear()   # the motion across a relocalisation is not the IMU's
        if quality == 'bad':
            self.n_untracked += 1
            post = prior.clone()
        elif dt > 0:
            post.omega = lie.so3_log(self.state.R.t() @ post.R) / dt
        self._signals_last = sig
        if sig.tracked and math.isfinite(sig.rmse):
            self.residual_var += VARIANCE_FACTOR_RATE * (sig.rmse ** 2 - self.residual_var)
            if quality == 'good':
                self.depth_noise.measure(sig.rmse)
        return post, quality, res

    def _velocity_after_jump(self, found: GaussianState, coasted: GaussianState,
                             lost_s: float) -> torch.Tensor:
        """The covariance of a relocalised state: its velocity known to the relocalisation's
        jump over the time lost (``RELOC_VELOCITY_FLOOR`` at least), uncorrelated. Shape:
        (15, 15).

        The coasted velocity's own covariance, grown with ``health.lost_acc_noise``, is far
        wider: the first frames' pose noise over 50 ms then set the velocity (a 2 s blackout
        came back at 1.4 m/s against a true 0.6, and the pose was 6.5 cm off when OK)."""
        speed = float(torch.linalg.norm(found.p - coasted.p)) / max(lost_s, 1e-3)
        cov = found.cov.clone()
        cov[V, :] = 0
        cov[:, V] = 0
        cov[V, V] = torch.eye(3, device=self.device, dtype=self.dtype) * (
            speed ** 2 + RELOC_VELOCITY_FLOOR ** 2)
        return cov

    def _drift(self, t: float, post: GaussianState) -> Optional[torch.Tensor]:
        """Chi-square of the motion from the frame ``health.drift_window_s`` ago to ``post``
        against the IMU integrated over it (9 dimensions: rotation, velocity, position, in
        the older state's body frame); 0 without IMU over the whole window.

        The IMU mean is integrated in one vectorised pass (``integrate_imu``) and its noise
        taken as white noise over the window (``gyro_noise² T``, ``acc_noise² T``,
        ``acc_noise² T³ / 3``), not preintegrated sample by sample: a per-frame cost of a
        few ms instead of tens. The two states' own covariances are added as if independent
        (conservative), with a floor for what they leave out. A 0-dim tensor (read back with
        the other signals), None without IMU over the whole window.
        """
        hc, mc = self.cfg.health, self.cfg.motion
        hist = list(self._history)
        k = len(hist) - 1
        while k >= 0 and t - hist[k][0] < hc.drift_window_s:
            k -= 1
        if k < 0 or self._imu_interval is None:
            return None
        chunks = [h[1] for h in hist[k + 1:]] + [self._imu_interval]
        if any(c is None for c in chunks):
            return None
        acc, gyro, dts = (torch.cat([c[i] for c in chunks]) for i in range(3))
        s0 = hist[k][2]
        R1, v1, p1 = integrate_imu(s0.R, s0.v, s0.p, acc, gyro, dts, s0.b_a, s0.b_g,
                                   (0.0, 0.0, -mc.gravity))
        Rt = s0.R.t()
        r = torch.cat((lie.so3_log(R1.t() @ post.R), Rt @ (post.v - v1), Rt @ (post.p - p1)))
        T = dts.sum()   # stays on the device: read back with the other signals
        # Gyro noise tilts the integrated gravity: g * (a random walk of angle) in accel.
        tilt = (mc.gravity * mc.gyro_noise) ** 2
        var = (mc.gyro_noise ** 2 * T + DRIFT_FLOOR_ROT ** 2,
               mc.acc_noise ** 2 * T + tilt * T ** 3 / 3 + DRIFT_FLOOR_VEL ** 2,
               mc.acc_noise ** 2 * T ** 3 / 3 + tilt * T ** 5 / 20 + DRIFT_FLOOR_POS ** 2)
        eye = torch.eye(3, device=self.device, dtype=self.dtype)
        S = torch.block_diag(*(eye * v for v in var))
        S[0:3, 0:3] += s0.cov[PHI, PHI] + post.cov[PHI, PHI]
        S[3:6, 3:6] += Rt @ (s0.cov[V, V] + post.cov[V, V]) @ Rt.t()
        S[6:9, 6:9] += Rt @ (s0.cov[P, P] + post.cov[P, P] + T * T * s0.cov[V, V]) @ Rt.t()
        # The map frame's gravity is known to a tilt: a constant horizontal acceleration error
        # of g sin(tilt), whose velocity and position errors grow together over the window.
        sg2 = (mc.gravity * math.sin(math.radians(self._gravity_std_deg()))) ** 2
        H = Rt[:, :2] @ Rt[:, :2].t() * sg2   # Rt diag(1, 1, 0) Rt^T: no host tensor per frame
        S[3:6, 3:6] += H * T ** 2
        S[3:6, 6:9] += H * T ** 3 / 2
        S[6:9, 3:6] += H * T ** 3 / 2
        S[6:9, 6:9] += H * T ** 4 / 4
        r = r.to(torch.float64)
        return r @ torch.linalg.solve(S.to(torch.float64), r)

    def _verified(self, sig: TrackSignals) -> bool:
        """Whether a pose found while LOST is taken: it passes the OK tests with at least
        ``health.reloc_min_inlier_fraction`` of the rays on the map."""
        return (self.health.quality(sig) == 'good'
                and sig.inlier_fraction >= self.cfg.health.reloc_min_inlier_fraction)

    def _run_track(self, rays: RayBatch, prior: GaussianState, iters: int,
                   stop_at: Optional[float] = None) -> Dict:
        inf = self.cfg.inference
        return track(self.map, rays, prior, iters, self.cfg.render, self.depth_noise.sensor,
                     inf.max_step_translation, inf.max_step_rotation_deg, inf.min_valid_rays,
                     self.cfg.sensor.ray_info_scale, inf.track_stop_translation,
                     inf.track_stop_rotation_deg, stop_at, inf.track_stop_chi2)

    def _signals(self, rays: RayBatch, res: Dict, prior: GaussianState, post: GaussianState,
                 drift: Optional[torch.Tensor] = None) -> TrackSignals:
        """The health signals of one tracking result, with the drift test's chi-square when
        given (one host sync for all of them)."""
        rc = self.cfg.render
        # Rays beyond the render range never hit the map: they say nothing either way.
        valid = rays.valid & (rays.d_obs < rc.far - rc.band)
        n_valid = valid.sum()
        hit = (valid & (res['hit'] > 0.5)).sum()
        inl = (valid & (res['w'] > 0)).sum()
        e = post.boxminus(prior)[POSE].to(torch.float64)
        chi2 = e @ torch.linalg.solve(prior.cov[POSE, POSE].to(torch.float64), e)
        info = res['info']
        if info is None:
            weakest = torch.full((), float('inf'), device=self.device, dtype=torch.float64)
        else:
            cov = torch.linalg.inv(info.to(torch.float64)
                                   + 1e-9 * torch.eye(6, dtype=torch.float64,
                                                      device=self.device))
            weakest = torch.maximum(torch.linalg.eigvalsh(cov[P, P])[-1],
                                    torch.linalg.eigvalsh(cov[PHI, PHI])[-1]).clamp(min=0)
            weakest = weakest.sqrt()
        if drift is None:
            drift = torch.zeros((), device=self.device)
        vals = torch.stack([x.to(torch.float64)
                            for x in (n_valid, hit, inl, chi2, weakest, drift)])
        nv, nh, ni, chi2, weakest, drift = vals.tolist()
        return TrackSignals(tracked=res['n_used'] >= self.cfg.inference.min_valid_rays,
                            valid_fraction=nv / max(1, rays.valid.numel()),
                            hit_fraction=nh / max(1.0, nv), inlier_fraction=ni / max(1.0, nv),
                            rmse=float(res['rmse']), innovation=chi2, min_info_std=weakest,
                            drift=drift)

    def _relocalise(self, rays: RayBatch, coasted: GaussianState
                    ) -> Optional[Tuple[GaussianState, Dict, TrackSignals]]:
        """Search poses around the coasted one and the last keyframes (``core.relocalise``),
        refine the best-scoring by tracking, and return the refined pose with the most
        inliers if it is verified (``_verified``) and unambiguous (no verified pose elsewhere
        nearly as good: repetitive structure). None: not found; the caller keeps coasting."""
        hc, inf = self.cfg.health, self.cfg.inference
        sel = torch.nonzero(rays.valid)[:, 0]
        if sel.numel() < inf.min_valid_rays:
            return None
        pick = torch.randperm(sel.numel(), generator=self._gen, device=self.device)
        sel = sel[pick[:hc.reloc_rays]]
        pos_std = float(torch.sqrt(torch.linalg.eigvalsh(coasted.cov[P, P])[-1]))
        radius = min(max(hc.reloc_radius, 3.0 * pos_std), hc.reloc_max_radius)
        step = max(hc.reloc_step, radius / 4)
        n_xy = 2 * int(math.ceil(radius / step - 1e-9)) + 1
        n_yaw = 2 * int(math.ceil(hc.reloc_yaw_deg / hc.reloc_yaw_step_deg - 1e-9)) + 1
        centres = [(coasted.R, coasted.p)]
        for kf in list(self.keyframes)[-2:]:
            T = kf['T_world_body']
            if float(torch.linalg.norm(T[:3, 3] - coasted.p)) < 2 * radius:
                centres.append((T[:3, :3], T[:3, 3]))
        Rc, pc = candidate_poses(centres, radius, hc.reloc_yaw_deg, n_xy, n_xy // 2 + 1,
                                 n_yaw)
        # Inliers within half a grid step: the true pose is at most that far from one.
        scores = score_poses(self.map, rays.q_obs[sel], Rc, pc, max(0.5 * step, 0.05))
        best = torch.topk(scores, min(hc.reloc_candidates, scores.numel())).indices.tolist()
        step_r = math.radians(hc.reloc_yaw_step_deg)
        found: List[Tuple[GaussianState, Dict, TrackSignals]] = []
        eye = torch.eye(3, device=self.device, dtype=self.dtype)
        for k in best:
            prior = coasted.clone()
            prior.R, prior.p = Rc[k], pc[k]
            # The candidate is only known to within its grid cell.
            cov = prior.cov.clone()
            cov[POSE, :] = 0
            cov[:, POSE] = 0
            cov[P, P] = eye * step ** 2
            cov[PHI, PHI] = eye * step_r ** 2
            prior.cov = cov
            res = self._run_track(rays, prior, 3 * inf.track_iters)
            sig = self._signals(rays, res, prior, res['state'])
            sig.innovation = 0.0   # a jump is what relocalisation is for
            if self._verified(sig):
                found.append((res['state'], res, sig))
        return choose_candidate(found, coasted.p, coasted.cov[P, P], 2 * step, 2 * step_r)

    def flush(self) -> bool:
        """Close the open window now: refine its states and fuse its keyframe into the map
        (``step`` does this once the window is full; call it before reading the final map).

        Returns:
            Whether a keyframe was fused (the map changed).
        """
        if self.state is None or self._pending is None:
            self.mapper.drain()
            return False
        self.state = self._close_window(self.state)
        self.mapper.drain()
        return True

    def _close_window(self, newest: GaussianState) -> GaussianState:
        """Refine the window's states, fuse its keyframe into the map at the refined pose, and
        freeze them.

        Args:
            newest: the posterior of the newest frame, the window's last.
        Returns:
            The newest state's posterior after refinement (``newest`` itself when the window
            holds the keyframe alone or none is open).
        """
        pending, window = self._pending, self._window
        self._pending, self._window = None, []
        if pending is None:
            return newest
        inf = self.cfg.inference
        kf = window[0].filtered
        if len(window) > 1:
            with self.mapper.lock.read():
                refined = refine_window(self.map, window, inf.window_iters, self.cfg.render,
                                        self.depth_noise.sensor,
                                        self.cfg.sensor.ray_info_scale,
                                        inf.max_step_translation, inf.max_step_rotation_deg,
                                        inf.window_refresh)
            kf, newest = refined[0], refined[-1]
            self.keyframes[-1]['T_world_body'] = kf.T.clone()
        T_world_cam = kf.T @ pending['T_body_cam']
        pose_var = self._world_var(kf, pending['anchor_var'])
        position = newest.p.detach().cpu().double().numpy()
        # A map's first keyframe goes in before the next frame is tracked: the frames after
        # it would otherwise be tracked against nothing (and a start in motion lost). So does
        # every keyframe without IMU: from a constant-velocity prior, tracking misses a
        # keyframe held back from the map (TUM teddy 1.89 -> 3.05 cm, mapping 6 frames behind).
        # And a keyframe the window held back already: asynchronous mapping's lag on top of
        # the window's lost the Blackbird-style flights (bb-train-28s 591 m with a window of 4
        # and a lag of 4, 1.11 cm asynchronous alone, 1.24 with a window of 8 alone).
        self.mapper.fuse(lambda: self._prepare_keyframe(pending, T_world_cam, pose_var),
                         lambda job: self._commit_keyframe(job, position),
                         now=(self.map.n_fused == 0 or not self._imu_linked
                              or len(window) > 1))
        return newest

    def _prepare_keyframe(self, pending: Dict, T_world_cam: torch.Tensor,
                          pose_var: torch.Tensor) -> Tuple[Optional[integrate.FusionJob],
                                                           Optional[FreeCells], float]:
        """A keyframe's update, read-only (on the mapping thread when asynchronous): its voxel
        update, the free-space cells it saw (grouped for marking), and the seconds they
        took."""
        job = integrate.prepare(self.map, pending['depth'], pending['rgb'], pending['K'],
                                T_world_cam, depth_sigma(pending['depth'], pending['sensor']),
                                self.cfg.map.fuse_pixels, pose_var, pending['noise_scale'])
        t0 = time.perf_counter()
        cells = self.free_space.group(self.free_space.free_cells(
            pending['depth'], pending['K'], T_world_cam, self.cfg.render.near))
        return job, cells, time.perf_counter() - t0

    def _commit_keyframe(self, prepared: Tuple[Optional[integrate.FusionJob],
                                               Optional[FreeCells], float],
                         position: np.ndarray) -> None:
        """A keyframe's writes (under the map's write lock): its free space, its prepared
        voxel updates, then the memory budget around ``position`` (metres)."""
        job, cells, cells_s = prepared
        t0 = time.perf_counter()
        self.free_space.mark(cells)
        free_space_s = cells_s + time.perf_counter() - t0
        if job is not None:
            integrate.commit(self.map, job)
        # The budget is kept per keyframe (it needs host-side decisions, not per frame); the
        # regions around the drone come back before it sees them (keep_radius > range).
        t2 = time.perf_counter()
        self.map.restore_near(position)
        self.map.enforce_budget(position)
        self._budget_at = position
        self.map.add_stage_time(free_space=free_space_s, budget=time.perf_counter() - t2)

    def _keep_budget(self, state: GaussianState) -> None:
        """The memory budget between keyframes: where regions are on disk or the map is over
        budget, regions come back and go as at a keyframe's commit, each time the drone has
        moved a region's edge since the budget was last kept. Without it a map loaded for
        localisation (no keyframes) would never take its far regions back."""
        if self.mapper.pending or (not self.map.has_evicted()
                                   and len(self.map.atlas) <= self.map.budget_blocks):
            return
        position = state.p.detach().cpu().double().numpy()
        if (self._budget_at is not None
                and np.linalg.norm(position - self._budget_at) < self.map.region_edge()):
            return
        with self.mapper.lock.write():
            self.map.restore_near(position)
            self.map.enforce_budget(position)
        self._budget_at = position

    def _transition(self, imu, dt: float) -> Transition:
        """The transition from the current state to the next frame (the propagate step, and
        the window's factor between the two). The IMU samples are preintegrated once, at the
        current bias estimate: the window's states apply them corrected to first order in
        their own biases, which stay close to it."""
        mc = self.cfg.motion
        if imu is not None and self.dynamics is not None:
            return lambda s: learned_transition(s, *imu, self.dynamics, mc)
        if imu is not None:
            acc, gyro, dts = imu
            b_a, b_g = self.state.b_a.clone(), self.state.b_g.clone()
            pre = preintegrate(acc, gyro, dts, b_a, b_g, acc_noise=self._acc_noise(dt),
                               gyro_noise=mc.gyro_noise)
            omega = (gyro - b_g).mean(dim=0)
            return lambda s: preintegrated_transition(s, pre, mc, omega)
        return lambda s: constant_velocity_transition(s, dt, mc)

    def _guessing_gravity(self) -> bool:
        """Whether the map frame's gravity is still a guess after a start in motion: the
        accelerometer's, then the early solve's (rough, ``init.moving_align_frames``), until
        the solve at ``init.align_frames``."""
        return self._init_log is not None and bool(self.started_moving)

    def _gravity_std_deg(self) -> float:
        """How well the map frame's gravity direction is known (degrees)."""
        ic = self.cfg.init
        return ic.moving_gravity_std_deg if self._guessing_gravity() else ic.gravity_std_deg

    def _acc_noise(self, dt: float) -> float:
        """The accelerometer noise density the IMU is preintegrated with. While gravity is a
        guess after a start in motion (the mean specific force before the first frame, which
        flight accelerations turn by tens of degrees), that error
        (``g sin(init.moving_gravity_std_deg)``) is added as white noise over the interval, so
        that tracking takes the first poses from the images and not from an IMU prior that
        pulls them off, and the solves see the true motion (kept after the early solve too:
        an IMU held to its rough gravity biases the next solve towards it)."""
        mc = self.cfg.motion
        if not self._guessing_gravity() or dt <= 0:
            return mc.acc_noise
        sigma_g = mc.gravity * math.sin(math.radians(self.cfg.init.moving_gravity_std_deg))
        return math.sqrt(mc.acc_noise ** 2 + sigma_g ** 2 * dt)

    def _gravity_aligned(self, stamp_ns: int) -> np.ndarray:
        """``T_world_body0`` turned by the smallest rotation that takes the mean specific force
        of the latest queued IMU samples to world +z (at rest it points up); unchanged without
        IMU. Shape: (4, 4)."""
        samples = self._imu_until(stamp_ns)[-GRAVITY_SAMPLES:] or (
            [self._last_imu] if self._last_imu is not None else [])
        T = self.T_world_body0.copy()
        if not samples:
            return T
        a = np.mean([s.acc for s in samples], axis=0)
        norm = float(np.linalg.norm(a))
        if not np.isfinite(norm) or norm < 1e-6:
            return T
        # Gravity is opposite to the specific force at rest.
        R_fix = gravity_correction(-torch.as_tensor(a, dtype=torch.float64))
        T[:3, :3] = R_fix.numpy() @ T[:3, :3]
        return T

    def _anchor_of(self, rays, res: Dict, T_world_cam: torch.Tensor) -> torch.Tensor:
        """Pose variance (position, rotation) of the map where the used rays hit it: the
        uncertainty of the map frame the new pose was tracked against. Shape: (2,)."""
        # Masks, not boolean indexing: no host sync or dynamic shapes in the per-frame loop.
        pts = T_world_cam[:3, 3] + (rays.dirs * rays.d_obs[:, None]) @ T_world_cam[:3, :3].t()
        var = self.map.anchor_at(pts)
        w = torch.where(torch.isfinite(var).all(dim=-1), res['w'], torch.zeros_like(res['w']))
        total = w.sum()
        mean = (torch.nan_to_num(var) * w[:, None]).sum(0) / total.clamp(min=1e-12)
        return torch.where(total > 0, mean, self.anchor_var)

    def _world_var(self, state: GaussianState, anchor_var: torch.Tensor) -> torch.Tensor:
        """Isotropic position and rotation variance of a state in the world (m², rad²): its
        covariance relative to the map plus the anchor of the map it was tracked against.
        Shape: (2,)."""
        rel = torch.diagonal(state.cov)
        return torch.stack((rel[P].mean(), rel[PHI].mean())) + anchor_var

    def _window_size(self, imu) -> int:
        """Frames in the window now: ``inference.window`` while the IMU links the frames
        (``inference.noisy_window`` at least while the camera measures noisier than
        ``inference.noisy_window_noise``), 1 without it (the
        keyframe is fused at once). The window holds a keyframe back from the map; with an
        IMU prior tracking does not miss it, without one (a constant-velocity prior) it does:
        TUM teddy 1.87 -> 3.01 cm with a window of 8, as with mapping 6 frames behind
        (docs/scenarios.md)."""
        if imu is None:
            return 1
        inf = self.cfg.inference
        if self.depth_noise.measured > inf.noisy_window_noise:
            return max(inf.window, inf.noisy_window)
        return inf.window

    def _is_keyframe(self, state: GaussianState, scale: float = 1.0) -> bool:
        """Whether the state is a keyframe: moved or turned ``scale`` times the keyframe
        thresholds since the last keyframe, or ``keyframe_every`` frames after it."""
        inf = self.cfg.inference
        if not self.keyframes or self._frames_since_kf + 1 >= inf.keyframe_every:
            return True
        T_kf = self.keyframes[-1]['T_world_body']
        dt = float(torch.linalg.norm(state.p - T_kf[:3, 3]))
        dr = float(torch.linalg.norm(lie.so3_log(T_kf[:3, :3].t() @ state.R)))
        return (dt > scale * inf.keyframe_translation
                or math.degrees(dr) > scale * inf.keyframe_rotation_deg)

    def estimate(self, timings: Optional[Dict[str, float]] = None) -> Estimate:
        """The current state as an ``Estimate`` (covariance in the ROS convention: translation
        and rotation both about the map frame's axes): the state's covariance relative to the
        map (``sensor.relative_cov_scale`` of it while OK) plus the map's anchor uncertainty
        where it was tracked, times the residuals' variance factor to
        ``sensor.variance_factor_power``."""
        if self.state is None:
            raise StateError('no frame processed yet')
        s, sensor = self.state, self.cfg.sensor
        A = torch.zeros(6, 6, device=self.device, dtype=self.dtype)
        A[:3, :3] = torch.eye(3, device=self.device, dtype=self.dtype)
        A[3:, 3:] = s.R  # body-frame rotation error -> world-frame rotation error
        anchor = torch.repeat_interleave(self.anchor_var, 3)
        rel_scale = sensor.relative_cov_scale if self.health.status == OK else 1.0
        cov = rel_scale * (A @ s.cov[POSE, POSE] @ A.t()) + torch.diag(anchor)
        if sensor.variance_factor:
            cov = cov * max(1.0, self.residual_var) ** sensor.variance_factor_power
        return Estimate(stamp_ns=int(self.last_stamp_ns),
                        T_world_body=s.T.detach().cpu().double().numpy(),
                        cov=cov.detach().cpu().double().numpy(),
                        v_world=s.v.detach().cpu().double().numpy(),
                        timings=dict(timings or {}),
                        b_a=s.b_a.detach().cpu().double().numpy(),
                        b_g=s.b_g.detach().cpu().double().numpy(),
                        status=self.health.status, status_reason=self.health.reason,
                        health=({} if self._signals_last is None
                                else self._signals_last.as_dict()),
                        T_jump=self._jump)

    # ------------------------------------------------------------------ outputs

    @torch.no_grad()
    def render(self, T_world_cam: np.ndarray, K: np.ndarray, width: int, height: int,
               chunk: int = 2048) -> Dict[str, np.ndarray]:
        """Predicted depth (mean and std) and colour of a whole image from the map posterior.

        The std combines the first-hit spread, the map's signed-distance std at the hit and the
        sensor noise: it is the predictive std of a depth measurement. Each ``chunk`` of rays
        reads the map under its read lock, so that a keyframe's commit waits for one chunk
        only (it lands in the later chunks of a render in progress).

        Returns:
            ``depth`` (H, W) metres, NaN where nothing is hit; ``depth_std`` (H, W);
            ``color`` (H, W, 3) uint8; ``hit`` (H, W) hit probability.
        """
        T = self._t(T_world_cam)
        Kt = self._t(K)
        dirs = pixel_rays(Kt, pixel_grid(height, width, self.device, self.dtype))
        outs = {'depth': [], 'depth_std': [], 'color': [], 'hit': []}
        rc = self.cfg.render
        # The occupied band behind a surface is one truncation thick: samples further apart
        # step over it on some rays (holes in stripes across walls and floors).
        spacing = RENDER_SPACING * self.cfg.map.truncation
        for s in range(0, dirs.shape[0], chunk):
            d = dirs[s:s + chunk]
            depths = uniform_depths(d.shape[0], rc, self.device, self.dtype, spacing)
            with self.mapper.lock.read():
                out = march_rays(self.map, T, d, depths, rc)
                hit_pts = T[:3, 3] + (d * out['depth'][:, None]) @ T[:3, :3].t()
                wgt = self.map.weight_at(hit_pts).clamp(min=1e-3)
            map_var = self.cfg.map.sdf_noise ** 2 / wgt
            sens = depth_sigma(out['depth'], self.depth_noise.sensor)
            std = torch.sqrt(out['depth_var'] + map_var + sens ** 2)
            is_hit = out['hit'] > 0.5
            nan = torch.full_like(out['depth'], float('nan'))
            outs['depth'].append(torch.where(is_hit, out['depth'], nan))
            outs['depth_std'].append(torch.where(is_hit, std, nan))
            outs['color'].append(out['color'])
            outs['hit'].append(out['hit'])
        res = {k: torch.cat(v).reshape(height, width, -1).squeeze(-1).cpu().numpy()
               for k, v in outs.items()}
        res['color'] = (np.clip(res['color'], 0, 1) * 255 + 0.5).astype(np.uint8)
        res['depth'] = res['depth'].astype(np.float32)
        res['depth_std'] = res['depth_std'].astype(np.float32)
        return res

    @torch.no_grad()
    def map_points(self, min_weight: float = 1.0, radius: Optional[float] = None,
                   whole_map: bool = False) -> Dict[str, np.ndarray]:
        """The map as a point cloud: ``xyz`` (N, 3) float32, ``rgb`` (N, 3) uint8,
        ``occupancy`` (N,) float32 probability, ``logit_std`` (N,) float32. The map is read
        a part at a time under its read lock (``VoxelMap.read_voxels``): a keyframe's commit
        waits for one part, not for the whole cloud (the commit may land between parts).

        Args:
            min_weight: least observation weight of a point.
            radius: only the blocks within this distance (metres) of the current position
                (a bounded cost per call, whatever the map's size); None: every active block.
            whole_map: also the regions evicted beyond the memory budget (for exports).
        """
        centre = None if self.state is None or radius is None else self.state.p
        pts = self.map.surface_points(min_weight, centre, radius if centre is not None else None,
                                      evicted=whole_map, section=self.mapper.lock.read)
        return {'xyz': pts['xyz'].cpu().numpy().astype(np.float32),
                'rgb': (pts['rgb'].cpu().numpy() * 255 + 0.5).astype(np.uint8),
                'occupancy': pts['occupancy'].cpu().numpy().astype(np.float32),
                'logit_std': pts['logit_std'].cpu().numpy().astype(np.float32)}

    @_under_map_lock
    def map_stats(self) -> Dict[str, float]:
        """Map memory (active / evicted / total blocks and bytes, free-space bytes), evictions
        and restores, and the time per keyframe of each map-update stage
        (``keyframe_ms.<stage>``). A flat dict of numbers."""
        out = dict(self.map.stats())
        out.update({f'keyframe_ms.{k}': v for k, v in out.pop('ms_per_keyframe').items()})
        out['free_space_bytes'] = self.free_space.nbytes()
        return out

    # ------------------------------------------------------------------ prediction, cost

    @_under_map_lock
    @torch.no_grad()
    def predict(self, controls: Optional[np.ndarray] = None, horizon_s: Optional[float] = None,
                n_samples: Optional[int] = None, times: Optional[Sequence[float]] = None,
                control_dt: Optional[float] = None, render: bool = True,
                camera: Optional[Tuple[np.ndarray, np.ndarray, int, int]] = None
                ) -> Dict[str, Any]:
        """Where the drone goes and what it will see: the transition rolled out from the
        current posterior, sampled, and rendered at chosen future times.

        Samples start from q(z_t) of the last frame and follow the learned transition when the
        engine has one, else the engineered integrator with the configured IMU noise, driven by
        ``controls``. Without controls the most recent IMU sample is held (at
        ``predict.control_dt`` steps), and how far the future controls depart from it is an
        unknown constant per sample, with stds ``predict.hold_acc_std`` / ``hold_gyro_std``;
        without any IMU the constant-velocity model predicts.

        Args:
            controls: future ``(acc, gyro)`` IMU samples, body frame, one per ``control_dt``;
                fewer than the horizon needs: the last is held. None: hold the most recent
                IMU sample. Shape: (N, 6).
            horizon_s: how far ahead (seconds; default ``predict.horizon_s``).
            n_samples: trajectory samples (default ``predict.samples``).
            times: future times (seconds after the last frame) to render (default: the
                horizon).
            control_dt: spacing of the controls (seconds; default ``predict.control_dt``).
            render: render images at ``times``.
            camera: ``(K (3, 3), T_body_cam (4, 4), width, height)``; default: the last
                frame's.

        Returns:
            ``t`` (N,) seconds after the last frame; trajectory samples ``R`` (S, N, 3, 3),
            ``p`` (S, N, 3), ``v`` (S, N, 3); with ``render``: ``times`` (T,), ``depth``
            (T, H, W) mean (NaN: no surface), ``depth_std`` (T, H, W), ``color``
            (T, H, W, 3) uint8, ``hit_fraction`` (T, H, W) (see ``core.prediction``).

        Raises:
            StateError: no frame processed yet, a bad horizon or controls, or no camera.
        """
        if self.state is None:
            raise StateError('predict: no frame processed yet')
        pc, mc = self.cfg.predict, self.cfg.motion
        horizon_s = pc.horizon_s if horizon_s is None else float(horizon_s)
        if not horizon_s > 0:
            raise StateError(f'predict: horizon_s must be > 0, got {horizon_s}')
        dt = float(control_dt or pc.control_dt)
        n = max(1, int(math.ceil(horizon_s / dt - 1e-9)))
        S = int(n_samples or pc.samples)
        if controls is not None:
            u = self._t(controls)
            if u.dim() != 2 or u.shape[1] != 6 or u.shape[0] < 1:
                raise StateError(f'predict: controls must be (N, 6) acc + gyro rows, got '
                                 f'{tuple(u.shape)}')
            u = torch.cat((u, u[-1:].expand(max(0, n - len(u)), 6)))[:n]
            offset = (0.0, 0.0)
        elif self._imu or self._last_imu is not None:
            last = self._imu[-1] if self._imu else self._last_imu
            u = self._t(np.concatenate((last.acc, last.gyro))).expand(n, 6)
            offset = (pc.hold_acc_std, pc.hold_gyro_std)
        else:
            u = None
        if u is None:
            smp = sample_constant_velocity(self.state, n, dt, S, mc.cv_acc_noise,
                                           mc.cv_gyro_noise, self._gen)
        else:
            learned = self.dynamics is not None
            model = self.dynamics if learned else LearnedDynamics.engineered(
                mc.acc_noise, mc.gyro_noise, mc.gravity).to(self.device, self.dtype)
            smp = sample_imu_rollouts(self.state, model, u, dt, S, self._gen, offset,
                                      residual=learned)
        out: Dict[str, Any] = {'t': dt * np.arange(1, n + 1)}
        out.update({k: v.cpu().numpy() for k, v in smp.items()})
        if not render:
            return out
        camera = camera or self._camera
        if camera is None:
            raise StateError('predict: no camera to render with (no frame seen, none given)')
        K, T_body_cam, width, height = camera
        times = [horizon_s] if times is None else list(times)
        T_wb = np.tile(np.eye(4), (S, 1, 1))
        frames = []
        for tau in times:
            k = min(max(int(round(tau / dt)) - 1, 0), n - 1)
            T_wb[:, :3, :3], T_wb[:, :3, 3] = out['R'][:, k], out['p'][:, k]
            r = [self.render(T @ T_body_cam, K, width, height) for T in T_wb]
            frames.append(combine_renders(np.stack([x['depth'] for x in r]),
                                          np.stack([x['depth_std'] for x in r]),
                                          np.stack([x['color'] for x in r]),
                                          pc.min_hit_fraction))
        out['times'] = np.array(times, dtype=np.float64)
        for key in ('depth', 'depth_std', 'color', 'hit_fraction'):
            out[key] = np.stack([f[key] for f in frames])
        return out

    @torch.no_grad()
    def cost_field(self) -> CostField:
        """The collision cost-to-go of the current map posterior (``engine.cost``) over the
        box of ``engine.cost.extent`` around the current position (the map origin before the
        first frame). Only the occupancy's reads hold the map's read lock, a part of the map
        at a time: a keyframe's commit waits for one part, not for the whole box
        (``VoxelMap.read_voxels``), nor for the distance transform."""
        centre = None if self.state is None else self.state.p
        occupancy = box_occupancy(self.map, self.cfg.cost, self.free_space, centre,
                                  section=self.mapper.lock.read)
        return cost_from_occupancy(*occupancy, self.free_space, self.cfg.cost)

    # ------------------------------------------------------------------ state I/O

    def state_dict(self, stream: bool = False) -> Dict:
        """Everything needed to resume: tensors (by name) and JSON-able metadata. The open
        window is closed first (``flush``): its keyframe is in the saved map. The whole map is
        saved, evicted regions included.

        Args:
            stream: leave the map's tensors out of ``tensors`` and give them as
                ``streams``: ``{'map.': TensorStream}``, read a part at a time (under the map's
                read lock) when iterated, so that saving (``data.export.save_checkpoint``)
                holds one part of the map in memory, not all of it.
        """
        self.flush()   # not under the map lock: it waits for asynchronous updates
        with self.mapper.lock.read():
            return self._state_dict(stream)

    def _state_dict(self, stream: bool) -> Dict:
        streams = {}
        if stream:
            streams['map.'] = self._locked(self.map.state_stream())
            tensors = {}
        else:
            tensors = {f'map.{k}': v.detach().cpu() for k, v in self.map.state_dict().items()}
        tensors.update({f'cost.free_space.{k}': v for k, v in self.free_space.state_dict()
                        .items()})
        meta = {'version': STATE_VERSION, 'n_frames': self.n_frames,
                'last_stamp_ns': self.last_stamp_ns, 'map_format': 'blocks',
                'block_size': self.map.B, 'resolution': self.map.resolution,
                'residual_var': self.residual_var, **self.depth_noise.state()}
        if self.state is not None:
            for k in ('R', 'p', 'v', 'cov', 'omega', 'b_a', 'b_g'):
                tensors[f'state.{k}'] = getattr(self.state, k).detach().cpu()
            tensors['state.anchor_var'] = self.anchor_var.detach().cpu()
        kf = list(self.keyframes)
        if kf:
            tensors['keyframes.T_world_body'] = torch.stack([k['T_world_body'] for k in kf]).cpu()
            meta['keyframe_stamps_ns'] = [int(k['stamp_ns']) for k in kf]
        return {'tensors': tensors, 'meta': meta, **({'streams': streams} if stream else {})}

    def _locked(self, stream: TensorStream) -> TensorStream:
        """A stream whose parts are read under the map's read lock (no commit between them)."""
        def parts():
            with self.mapper.lock.read():
                yield from stream.parts()
        return TensorStream(stream.spec, parts)

    def load_state_dict(self, sd: Dict) -> None:
        """Restore a state saved by ``state_dict`` (same map resolution and block size)."""
        meta, tensors = sd['meta'], sd['tensors']
        version = meta.get('version')
        if version != STATE_VERSION:
            why = ''
            if isinstance(version, int) and version < 3:
                why = ' (a dense-grid map from before map v2: rebuild it by replaying the data)'
            elif isinstance(version, int) and version < STATE_VERSION:
                why = (' (a state without IMU biases, from before state v4: rebuild it by '
                       'replaying the data)')
            raise StateError(f'engine state version {version} is not supported (this build '
                             f'reads version {STATE_VERSION}){why}')
        for key, mine in (('resolution', self.map.resolution), ('block_size', self.map.B)):
            if meta.get(key) != mine:
                raise StateError(f'saved map has {key} {meta.get(key)}, the config gives '
                                 f'{mine}: load it with the config it was made with')
        self.reset()
        self._init_log = None   # a saved state is past its initialisation
        pre = 'cost.free_space.'
        # A map over the budget is loaded within it, around the saved position.
        position = tensors['state.p'].double().numpy() if 'state.p' in tensors else None
        with self.mapper.lock.write():
            self.map.load_state_dict({k[4:]: v for k, v in tensors.items()
                                      if k.startswith('map.')}, position)
            self._budget_at = position
            self.free_space.load_state_dict({k[len(pre):]: v for k, v in tensors.items()
                                             if k.startswith(pre)})
        if 'state.R' in tensors:
            self.state = GaussianState(*(self._t(tensors[f'state.{k}'].numpy())
                                         for k in ('R', 'p', 'v', 'cov', 'omega', 'b_a',
                                                   'b_g')))
            self.anchor_var = self._t(tensors['state.anchor_var'].numpy())
        self.last_stamp_ns = meta.get('last_stamp_ns')
        self.n_frames = int(meta.get('n_frames', 0))
        self.residual_var = float(meta.get('residual_var', 1.0))
        self.depth_noise.load(meta)
        if 'keyframes.T_world_body' in tensors:
            for s, T in zip(meta['keyframe_stamps_ns'], tensors['keyframes.T_world_body']):
                self.keyframes.append({'stamp_ns': s, 'T_world_body': self._t(T.numpy())})
