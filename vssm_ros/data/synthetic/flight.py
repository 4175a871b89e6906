# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The synthetic flight with its sensors (an IMU and a lazily rendered RGB-D camera), and its
generation from a config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Tuple, Union

import numpy as np

from vssm_ros.config import SyntheticConfig
from vssm_ros.data.synthetic.layouts import make_scene, make_trajectory
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
    """IMU readings in the body frame (= IMU frame) and what produced them.

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
        T_body_imu: IMU frame in the body frame (identity). Shape: (4, 4).
        imu: IMU readings, true values and biases.
        frame_stamps_ns: RGB-D frame stamps. Shape: (F,).
        gt_imu: ground truth at the IMU stamps.
        gt_frames: ground truth at the frame stamps.
        t0_ns: stamp of the flight's start (t = 0).
    """

    def __init__(self, cfg: SyntheticConfig, scene: Scene, traj: _Trajectory):
        self.cfg = cfg
        self.scene = scene
        self._traj = traj
        self.t0_ns = EPOCH_NS
        self.K = _pinhole(cfg)
        self.T_body_cam = _body_cam(cfg.camera_tilt_deg)
        self.T_body_imu = np.eye(4)
        self.frame_stamps_ns = _stamps(cfg.camera_rate_hz, cfg.duration_s)
        self.gt_frames = self._ground_truth(self.frame_stamps_ns)
        imu_stamps = _stamps(cfg.imu_rate_hz, cfg.duration_s)
        self.gt_imu = self._ground_truth(imu_stamps)
        self.imu = self._make_imu(imu_stamps)
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
        # Bias: a random initial value, then a random walk (density * sqrt(dt) per step).
        acc_bias = (rng.normal(0, cfg.acc_bias_init, 3)
                    + np.cumsum(np.vstack([np.zeros(3), rng.normal(
                        0, cfg.acc_bias_walk * np.sqrt(dt), (n - 1, 3))]), axis=0))
        gyro_bias = (rng.normal(0, cfg.gyro_bias_init, 3)
                     + np.cumsum(np.vstack([np.zeros(3), rng.normal(
                         0, cfg.gyro_bias_walk * np.sqrt(dt), (n - 1, 3))]), axis=0))
        # White noise: a density over a sample period dt has std density / sqrt(dt).
        acc = acc_true + acc_bias + rng.normal(0, cfg.acc_noise / np.sqrt(dt), (n, 3))
        gyro = gyro_true + gyro_bias + rng.normal(0, cfg.gyro_noise / np.sqrt(dt), (n, 3))
        return ImuData(stamps_ns=stamps_ns, acc=acc, gyro=gyro, acc_true=acc_true,
                       gyro_true=gyro_true, acc_bias=acc_bias, gyro_bias=gyro_bias)

    @property
    def n_frames(self) -> int:
        return len(self.frame_stamps_ns)

    # -- camera

    def render(self, T_world_cam: np.ndarray, noise: bool = False,
               rng: Optional[np.random.Generator] = None) -> Tuple[np.ndarray, np.ndarray]:
        """Render the scene from an arbitrary camera pose with this flight's camera model.

        Args:
            T_world_cam: camera optical frame in the world. Shape: (4, 4).
            noise: add the sensor model (depth noise and dropouts, colour noise).
            rng: random generator for the noise (default: seeded from the config seed).

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
        valid = np.isfinite(z) & (z <= cfg.depth_max)
        if noise:
            if rng is None:
                rng = np.random.default_rng([cfg.seed, 3])
            sigma = cfg.depth_noise_a + cfg.depth_noise_b * np.where(valid, z, 0.0) ** 2
            z = z + sigma * rng.standard_normal(z.shape)
            valid &= rng.random(z.shape) >= cfg.depth_dropout
            rgb = rgb + cfg.rgb_noise * rng.standard_normal(rgb.shape)
        depth = np.where(valid, z, np.nan).astype(np.float32)
        rgb8 = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
        return rgb8, depth

    def T_world_cam(self, index: int) -> np.ndarray:
        """Camera pose at frame ``index``. Shape: (4, 4)."""
        return self.gt_frames.T_world_body[index] @ self.T_body_cam

    def frame(self, index: int, noise: bool = True) -> Frame:
        """Render frame ``index`` (its noise is seeded by the config seed and the index, so
        frames are reproducible in any order)."""
        if not 0 <= index < self.n_frames:
            raise IndexError(f'frame index {index} out of range [0, {self.n_frames})')
        rng = np.random.default_rng([self.cfg.seed, 4, index])
        rgb, depth = self.render(self.T_world_cam(index), noise=noise, rng=rng)
        return Frame(stamp_ns=int(self.frame_stamps_ns[index]), rgb=rgb, depth=depth,
                     K=self.K.copy(), T_body_cam=self.T_body_cam.copy())

    # -- streams

    def items(self, noise: bool = True) -> Iterator[StreamItem]:
        """ImuSample, Frame and ground-truth PoseSample (camera rate, with v_world) in time
        order; at equal stamps IMU first, then the frame, then its pose. Frames are rendered
        as they are reached."""
        events = ([(int(s), 0, i) for i, s in enumerate(self.imu.stamps_ns)]
                  + [(int(s), 1, i) for i, s in enumerate(self.frame_stamps_ns)]
                  + [(int(s), 2, i) for i, s in enumerate(self.gt_frames.stamps_ns)])
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
            or the flight would pass too close to a wall.
    """
    rng = np.random.default_rng([cfg.seed, 1])
    traj = make_trajectory(cfg, rng)
    _scale_speed(traj, cfg)
    scene = make_scene(cfg, traj, rng)
    return SyntheticFlight(cfg, scene, traj)
