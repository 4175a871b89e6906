# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The synthetic flight with its sensors (an IMU and a lazily rendered RGB-D camera), and its
generation from a config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Tuple, Union

import numpy as np

from vssm_ros.config import SyntheticConfig
from vssm_ros.data.synthetic.layouts import make_room_around, make_scene, make_trajectory
from vssm_ros.data.synthetic.mocap import R_BODY_IMU, MocapSegment, MocapTrajectory, load_segment
from vssm_ros.data.synthetic.scene import Scene, _rot_y
from vssm_ros.data.synthetic.trajectory import GRAVITY, FlightState, _Trajectory
from vssm_ros.errors import ConfigError
from vssm_ros.types import Frame, ImuSample, PoseSample, StreamItem

EPOCH_NS = 1_700_000_000 * 10**9
"""Stamp of the flight's start (nanoseconds); IMU and camera share this clock."""
# Optical axes in an FLU frame: x right = -y, y down = -z, z forward = x.
R_FLU_OPT = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
# The peak speed is searched over at most this many stamps (a long flight's IMU stamps are
# thinned; the speed is smooth, so the peak moves by far less than the 5 % tolerance).
_SPEED_SAMPLES = 20_000


@dataclass
class GroundTruth:
    """Ground-truth body states at a set of stamps.

    Attributes:
        stamps_ns: stamps (nanoseconds). Shape: (N,).
        T_world_body: poses. Shape: (N, 4, 4).
        v_world: linear velocities, world frame. Shape: (N, 3).
    """

    stamps_ns: np.ndarray
    T_world_body: np.ndarray
    v_world: np.ndarray


@dataclass
class ImuData:
    """IMU readings in the body frame (the IMU frame of the loop flights; the writer turns
    them into ``T_body_imu``'s IMU frame) and what produced them. For a Blackbird-style flight
    the readings are the real ones, the true values those of the interpolated trajectory and
    the biases their mean difference (an estimate).

    Attributes:
        stamps_ns: stamps (nanoseconds). Shape: (N,).
        acc: measured specific force (m/s²). Shape: (N, 3).
        gyro: measured angular rate (rad/s). Shape: (N, 3).
        acc_true: noise- and bias-free specific force ``R^T (a - g)``. Shape: (N, 3).
        gyro_true: noise- and bias-free angular rate. Shape: (N, 3).
        acc_bias: true accelerometer bias at each sample. Shape: (N, 3).
        gyro_bias: true gyroscope bias at each sample. Shape: (N, 3).
    """

    stamps_ns: np.ndarray
    acc: np.ndarray
    gyro: np.ndarray
    acc_true: np.ndarray
    gyro_true: np.ndarray
    acc_bias: np.ndarray
    gyro_bias: np.ndarray


def _stamps(rate_hz: float, duration_s: float) -> np.ndarray:
    n = int(np.floor(duration_s * rate_hz + 1e-9)) + 1
    return EPOCH_NS + np.round(np.arange(n) * (1e9 / rate_hz)).astype(np.int64)


def _pinhole(cfg: SyntheticConfig) -> np.ndarray:
    f = (cfg.width / 2) / np.tan(np.deg2rad(cfg.fov_deg) / 2)
    # Pixel centres at integer coordinates (ROS/OpenCV): the image centre is (W-1)/2.
    return np.array([[f, 0.0, (cfg.width - 1) / 2],
                     [0.0, f, (cfg.height - 1) / 2],
                     [0.0, 0.0, 1.0]])


def _body_cam(tilt_deg: float) -> np.ndarray:
    # The camera pitched down by the tilt (a positive rotation about the body's y (left) axis).
    T = np.eye(4)
    T[:3, :3] = _rot_y(np.deg2rad(tilt_deg)) @ R_FLU_OPT
    T[:3, 3] = (0.05, 0.0, 0.02)
    return T


class SyntheticFlight:
    """A generated flight: scene, ground truth, IMU data and a lazily rendered camera.

    Attributes:
        cfg: the config it was generated from.
        scene: the scene.
        K: camera intrinsics. Shape: (3, 3).
        T_body_cam: camera optical frame in the body frame. Shape: (4, 4).
        T_body_imu: IMU frame in the body frame (identity; Blackbird: its z-down IMU).
            Shape: (4, 4).
        imu: IMU readings, true values and biases.
        frame_stamps_ns: RGB-D frame stamps (camera clock: exposure + time_offset_s).
            Shape: (F,).
        exposure_stamps_ns: the frames' exposure times (IMU clock). Shape: (F,).
        frame_index: each frame's index among all the camera's frames, dropped ones included
            (seeds its noise). Shape: (F,).
        gt_imu: ground truth at the IMU stamps.
        gt_frames: ground truth at the frame stamps.
        t0_ns: stamp of the flight's start (t = 0).
    """

    def __init__(self, cfg: SyntheticConfig, scene: Scene,
                 traj: Union[_Trajectory, MocapTrajectory], mocap: Optional[MocapSegment] = None):
        self.cfg = cfg
        self.scene = scene
        self._traj = traj
        self.t0_ns = EPOCH_NS
        self.K = _pinhole(cfg)
        self.T_body_cam = _body_cam(cfg.camera_tilt_deg)
        self.T_body_imu = np.eye(4)
        if mocap is None:
            duration = cfg.duration_s
            imu_stamps = _stamps(cfg.imu_rate_hz, cfg.duration_s)
        else:
            self.T_body_imu[:3, :3] = R_BODY_IMU
            duration = float(mocap.t[-1])
            imu_stamps = EPOCH_NS + np.round(mocap.t * 1e9).astype(np.int64)
        self._make_frame_stamps(_stamps(cfg.camera_rate_hz, duration), imu_stamps)
        self.gt_frames = self._ground_truth(self.frame_stamps_ns)
        self.gt_imu = self._ground_truth(imu_stamps)
        self.imu = self._make_imu(imu_stamps) if mocap is None else self._real_imu(mocap)
        # Camera-frame ray directions with unit z, so the ray parameter is the z-depth. (HW, 3)
        u, v = np.meshgrid(np.arange(cfg.width, dtype=float), np.arange(cfg.height, dtype=float))
        self._rays_cam = np.stack([(u.ravel() - self.K[0, 2]) / self.K[0, 0],
                                   (v.ravel() - self.K[1, 2]) / self.K[1, 1],
                                   np.ones(u.size)], -1)

    # -- time and ground truth

    def seconds(self, stamps_ns: Union[int, np.ndarray]) -> np.ndarray:
        """Seconds since the flight start of stamps. Shape: (N,) -> (N,)."""
        return (np.asarray(stamps_ns, dtype=np.int64) - self.t0_ns) * 1e-9

    def state_at(self, t: Union[float, np.ndarray]) -> FlightState:
        """Closed-form ground truth at times t (seconds since the flight start; not stamps).

        Shape: t scalar or (N,) -> fields with a leading N (1 for a scalar).
        """
        return self._traj.state(t)

    def _make_frame_stamps(self, exposure_ns: np.ndarray, imu_stamps: np.ndarray) -> None:
        """The frames kept (``frame_drop``, and the stamps inside the IMU's span), their
        exposures and their stamps (shifted by ``time_offset_s``)."""
        cfg = self.cfg
        keep = np.ones(len(exposure_ns), dtype=bool)
        if cfg.frame_drop > 0:
            keep &= np.random.default_rng([cfg.seed, 6]).random(len(keep)) >= cfg.frame_drop
        self._offset_ns = int(round(cfg.time_offset_s * 1e9))
        stamps = exposure_ns + self._offset_ns
        if self._offset_ns:
            keep &= (stamps >= imu_stamps[0]) & (stamps <= imu_stamps[-1])
        self.frame_index = np.flatnonzero(keep)
        self.exposure_stamps_ns = exposure_ns[keep]
        self.frame_stamps_ns = stamps[keep]

    def _ground_truth(self, stamps_ns: np.ndarray) -> GroundTruth:
        s = self.state_at(self.seconds(stamps_ns))
        return GroundTruth(stamps_ns=stamps_ns, T_world_body=s.T_world_body, v_world=s.v)

    def _make_imu(self, stamps_ns: np.ndarray) -> ImuData:
        cfg = self.cfg
        s = self.state_at(self.seconds(stamps_ns))
        acc_true = np.einsum('nji,nj->ni', s.R, s.a - GRAVITY)
        gyro_true = s.omega
        n = len(stamps_ns)
        dt = 1.0 / cfg.imu_rate_hz
        rng = np.random.default_rng([cfg.seed, 2])
        k = cfg.noise_scale
        # Bias: a random initial value, then a random walk (density * sqrt(dt) per step).
        acc_bias = (rng.normal(0, cfg.acc_bias_init, 3)
                    + np.cumsum(np.vstack([np.zeros(3), rng.normal(
                        0, k * cfg.acc_bias_walk * np.sqrt(dt), (n - 1, 3))]), axis=0))
        gyro_bias = (rng.normal(0, cfg.gyro_bias_init, 3)
                     + np.cumsum(np.vstack([np.zeros(3), rng.normal(
                         0, k * cfg.gyro_bias_walk * np.sqrt(dt), (n - 1, 3))]), axis=0))
        # White noise: a density over a sample period dt has std density / sqrt(dt).
        acc = acc_true + acc_bias + rng.normal(0, k * cfg.acc_noise / np.sqrt(dt), (n, 3))
        gyro = gyro_true + gyro_bias + rng.normal(0, k * cfg.gyro_noise / np.sqrt(dt), (n, 3))
        return ImuData(stamps_ns=stamps_ns, acc=acc, gyro=gyro, acc_true=acc_true,
                       gyro_true=gyro_true, acc_bias=acc_bias, gyro_bias=gyro_bias)

    def _real_imu(self, mocap: MocapSegment) -> ImuData:
        """The recording's IMU in the body frame, with the interpolated trajectory's true values
        and the readings' mean difference from them as the (constant) biases."""
        s = self.state_at(mocap.t)
        acc_true = np.einsum('nji,nj->ni', s.R, s.a - GRAVITY)
        acc = mocap.acc_imu @ R_BODY_IMU.T   # a signed permutation: exact
        gyro = mocap.gyro_imu @ R_BODY_IMU.T
        n = len(mocap.t)
        return ImuData(stamps_ns=self.gt_imu.stamps_ns, acc=acc, gyro=gyro, acc_true=acc_true,
                       gyro_true=s.omega,
                       acc_bias=np.tile((acc - acc_true).mean(axis=0), (n, 1)),
                       gyro_bias=np.tile((gyro - s.omega).mean(axis=0), (n, 1)))

    @property
    def n_frames(self) -> int:
        return len(self.frame_stamps_ns)

    # -- camera

    def render(self, T_world_cam: np.ndarray, noise: bool = False,
               rng: Optional[np.random.Generator] = None, gain: float = 1.0,
               rgb_clean: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
        """Render the scene from an arbitrary camera pose with this flight's camera model.

        Args:
            T_world_cam: camera optical frame in the world. Shape: (4, 4).
            noise: add the sensor model (depth noise and dropouts, colour noise).
            rng: random generator for the noise (default: seeded from the config seed).
            gain: the colours are multiplied by it (an exposure change) before the noise.
            rgb_clean: noise-free colours (0-255 float, (H, W, 3)) to use instead of this
                pose's (a motion-blurred image).

        Returns:
            rgb: colour image. Shape: (H, W, 3), uint8.
            depth: z-depth in metres (along the optical axis), NaN where invalid (no hit,
                beyond ``depth_max``, dropped). Shape: (H, W), float32.
        """
        cfg = self.cfg
        T = np.asarray(T_world_cam, dtype=float)
        if T.shape != (4, 4):
            raise ValueError(f'T_world_cam must be 4x4, got shape {T.shape}')
        dirs = self._rays_cam @ T[:3, :3].T
        z, _, rgb = self.scene.raycast(T[:3, 3], dirs)
        z = z.reshape(cfg.height, cfg.width)
        rgb = rgb.reshape(cfg.height, cfg.width, 3) * 255.0
        if rgb_clean is not None:
            rgb = np.asarray(rgb_clean, dtype=float).reshape(rgb.shape)
        if gain != 1.0:
            rgb = rgb * gain
        valid = np.isfinite(z) & (z <= cfg.depth_max)
        if noise:
            if rng is None:
                rng = np.random.default_rng([cfg.seed, 3])
            sigma = cfg.depth_noise_a + cfg.depth_noise_b * np.where(valid, z, 0.0) ** 2
            if cfg.noise_scale != 1.0:
                sigma = sigma * cfg.noise_scale
            z = z + sigma * rng.standard_normal(z.shape)
            valid &= rng.random(z.shape) >= cfg.depth_dropout
            rgb = rgb + cfg.noise_scale * cfg.rgb_noise * rng.standard_normal(rgb.shape)
        depth = np.where(valid, z, np.nan).astype(np.float32)
        rgb8 = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
        return rgb8, depth

    def T_world_cam(self, index: int) -> np.ndarray:
        """Camera pose at frame ``index`` (at its exposure). Shape: (4, 4)."""
        if not self._offset_ns:
            return self.gt_frames.T_world_body[index] @ self.T_body_cam
        t = self.seconds(self.exposure_stamps_ns[index])
        return self.state_at(t).T_world_body[0] @ self.T_body_cam

    def blacked_out(self, index: int) -> bool:
        """Whether frame ``index`` is exposed during the covered-lens span."""
        start, span = self.cfg.blackout_start_s, self.cfg.blackout_s
        t = float(self.seconds(self.exposure_stamps_ns[index]))
        return span > 0 and start <= t < start + span

    def frame(self, index: int, noise: bool = True) -> Frame:
        """Render frame ``index`` (its noise is seeded by the config seed and the frame's
        index among all the camera's frames, so frames are reproducible in any order and do not
        change when others are dropped)."""
        if not 0 <= index < self.n_frames:
            raise IndexError(f'frame index {index} out of range [0, {self.n_frames})')
        cfg = self.cfg
        nominal = int(self.frame_index[index])
        if self.blacked_out(index):
            rgb = np.zeros((cfg.height, cfg.width, 3), dtype=np.uint8)
            depth = np.full((cfg.height, cfg.width), np.nan, dtype=np.float32)
        else:
            gain = 1.0
            if cfg.exposure_std > 0:
                gain = float(np.exp(cfg.exposure_std * np.random.default_rng(
                    [cfg.seed, 5, nominal]).standard_normal()))
            rng = np.random.default_rng([cfg.seed, 4, nominal])
            blurred = self._blurred_rgb(index) if cfg.motion_blur_s > 0 else None
            rgb, depth = self.render(self.T_world_cam(index), noise=noise, rng=rng, gain=gain,
                                     rgb_clean=blurred)
        return Frame(stamp_ns=int(self.frame_stamps_ns[index]), rgb=rgb, depth=depth,
                     K=self.K.copy(), T_body_cam=self.T_body_cam.copy())

    def _blurred_rgb(self, index: int, n: int = 5) -> np.ndarray:
        """Noise-free colours of frame ``index`` averaged over ``n`` poses spread evenly over
        the exposure time, centred on the exposure. Shape: (H, W, 3), 0-255 float."""
        cfg = self.cfg
        t = float(self.seconds(self.exposure_stamps_ns[index]))
        times = t + cfg.motion_blur_s * (np.arange(n) / (n - 1) - 0.5)
        poses = self.state_at(times).T_world_body @ self.T_body_cam
        acc = np.zeros((cfg.height * cfg.width, 3))
        for T in poses:
            _, _, rgb = self.scene.raycast(T[:3, 3], self._rays_cam @ T[:3, :3].T)
            acc += rgb
        return acc.reshape(cfg.height, cfg.width, 3) * (255.0 / n)

    # -- streams

    def items(self, noise: bool = True, start_ns: Optional[int] = None,
              end_ns: Optional[int] = None) -> Iterator[StreamItem]:
        """ImuSample, Frame and ground-truth PoseSample (camera rate, with v_world) in time
        order; at equal stamps IMU first, then the frame, then its pose. Frames are rendered
        as they are reached. ``start_ns`` / ``end_ns``: only the items stamped in
        [start_ns, end_ns) (None: unbounded), the others not even rendered (a long flight
        played in chunks)."""
        lo = -np.inf if start_ns is None else start_ns
        hi = np.inf if end_ns is None else end_ns
        events = [(int(s), kind, i)
                  for kind, stamps in enumerate((self.imu.stamps_ns, self.frame_stamps_ns,
                                                 self.gt_frames.stamps_ns))
                  for i, s in enumerate(stamps) if lo <= s < hi]
        events.sort()
        for stamp, kind, i in events:
            if kind == 0:
                yield ImuSample(stamp_ns=stamp, acc=self.imu.acc[i].copy(),
                                gyro=self.imu.gyro[i].copy())
            elif kind == 1:
                yield self.frame(i, noise=noise)
            else:
                yield PoseSample(stamp_ns=stamp,
                                 T_world_body=self.gt_frames.T_world_body[i].copy(),
                                 v_world=self.gt_frames.v_world[i].copy())


# ----------------------------------------------------------------------------------------------
# Generation


def _scale_speed(traj: _Trajectory, cfg: SyntheticConfig) -> None:
    """Set the loop rate w0 so that the peak speed over the IMU stamps is cfg.peak_speed."""
    t = (_stamps(cfg.imu_rate_hz, cfg.duration_s) - EPOCH_NS) * 1e-9
    if cfg.layout != 'room' or cfg.start != 'loop':   # today's flight: every stamp, as ever
        t = t[::-(-len(t) // _SPEED_SAMPLES)]

    def peak(w0: float) -> float:
        traj.w0 = w0
        return float(np.max(traj.speed(t)))

    if peak(1.0) <= 0:
        raise ConfigError(f'synthetic: the flight never moves (duration_s={cfg.duration_s} '
                          f'<= hover_s={cfg.hover_s})')
    # The peak is continuous in w0 but not proportional to it (which part of the loop is flown
    # depends on w0 too), so bisect on log w0 rather than rescale.
    lo = hi = 1.0
    for _ in range(60):   # bracket the target within a factor of 2
        if peak(hi) < cfg.peak_speed:
            lo, hi = hi, hi * 2
        elif peak(lo) >= cfg.peak_speed:
            lo, hi = lo / 2, lo
        else:
            break
    for _ in range(40):
        mid = np.sqrt(lo * hi)
        lo, hi = (mid, hi) if peak(mid) < cfg.peak_speed else (lo, mid)
    traj.w0 = np.sqrt(lo * hi)


def generate_flight(cfg: SyntheticConfig = SyntheticConfig()) -> SyntheticFlight:
    """Generate the synthetic flight of a config (deterministic for a given config).

    Raises:
        ConfigError: the room or hall is too small for the flight, the obstacles do not fit,
            or the flight would pass too close to a wall; a Blackbird segment outside its
            recording.
        SourceError: ``blackbird_path`` is not a readable flight.
    """
    rng = np.random.default_rng([cfg.seed, 1])
    if cfg.trajectory == 'blackbird':
        seg = load_segment(cfg)
        mocap = MocapTrajectory(seg.t, seg.p_world, seg.R_world_body)
        scene = make_room_around(cfg, seg.room_size, seg.p_world, rng)
        return SyntheticFlight(cfg, scene, mocap, mocap=seg)
    traj = make_trajectory(cfg, rng)
    _scale_speed(traj, cfg)
    scene = make_scene(cfg, traj, rng)
    return SyntheticFlight(cfg, scene, traj)
