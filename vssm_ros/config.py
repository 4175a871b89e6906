# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Configuration: one frozen dataclass per component, loaded from the node's YAML.

Each field is documented by the docstring right under it; ``field_docs`` reads those docstrings
so that the node can declare its parameters with them as descriptions (docs, YAML and code
cannot drift). A YAML file may be a plain mapping or a ROS 2 parameter file
(``node_name: {ros__parameters: {...}}`` or ``/**: {ros__parameters: {...}}``); nested mappings
are the nested dataclasses, as ROS 2 turns them into dotted parameter names.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import math
import os
import textwrap
import typing
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Dict, List, Sequence, Tuple, Type, TypeVar

from vssm_ros.errors import ConfigError

C = TypeVar('C')


def _check(cond: bool, name: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f'{name}: {msg}')


@dataclass(frozen=True)
class TopicsConfig:
    """Input topic names. An empty name means: auto-detect (replay) or the default (node)."""

    rgb: str = ''
    """Colour image topic (sensor_msgs/Image, rgb8/bgr8/mono8)."""
    depth: str = ''
    """Depth image topic (sensor_msgs/Image, 16UC1 millimetres or 32FC1 metres)."""
    camera_info: str = ''
    """Camera info topic; empty: the camera_info beside the depth (or colour) topic."""
    imu: str = ''
    """IMU topic (sensor_msgs/Imu); empty with no IMU in the input: run without IMU."""
    ground_truth: str = ''
    """Ground-truth pose topic for evaluation (geometry_msgs/PoseStamped or nav_msgs/Odometry)."""
    tf_static: str = '/tf_static'
    """Static transforms (tf2_msgs/TFMessage) for camera and IMU extrinsics."""


@dataclass(frozen=True)
class FramesConfig:
    """TF frame names (REP-105) and extrinsic fallbacks."""

    map_frame: str = 'map'
    """Global frame of the map and the trajectory."""
    odom_frame: str = 'odom'
    """Odometry frame; map->odom is published, and odom->base_link when standalone."""
    body_frame: str = 'base_link'
    """The robot body frame whose pose is estimated."""
    standalone: bool = True
    """Publish odom->base_link too (False when another node provides odometry)."""
    T_body_cam: Tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    """Fallback camera optical frame in the body frame, x y z qx qy qz qw, used when
    /tf_static has no chain from body_frame to the camera frame."""
    T_body_imu: Tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    """Fallback IMU frame in the body frame, x y z qx qy qz qw."""

    def __post_init__(self):
        for name in ('T_body_cam', 'T_body_imu'):
            v = getattr(self, name)
            _check(len(v) == 7, f'frames.{name}',
                   f'needs 7 numbers (x y z qx qy qz qw), got {len(v)}')
            n = math.sqrt(sum(q * q for q in v[3:]))
            _check(abs(n - 1.0) < 1e-3, f'frames.{name}', f'quaternion norm is {n:.4f}, not 1')


@dataclass(frozen=True)
class CameraConfig:
    """Camera model and depth conventions."""

    fx: float = 0.0
    """Focal length x (pixels); used only when the input has no camera_info (TUM folders)."""
    fy: float = 0.0
    """Focal length y (pixels); as fx."""
    cx: float = 0.0
    """Principal point x (pixels); as fx."""
    cy: float = 0.0
    """Principal point y (pixels); as fx."""
    depth_scale: float = 0.0
    """Raw depth units per metre for integer depth (TUM: 5000). 0: by encoding
    (16UC1 -> 1000, 32FC1 -> 1)."""
    min_depth: float = 0.1
    """Depth below this (metres) is treated as invalid."""
    max_depth: float = 10.0
    """Depth above this (metres) is treated as invalid."""

    def __post_init__(self):
        _check(self.depth_scale >= 0, 'camera.depth_scale',
               f'must be >= 0, got {self.depth_scale}')
        _check(0 <= self.min_depth < self.max_depth, 'camera.min_depth/max_depth',
               f'need 0 <= min_depth < max_depth, got {self.min_depth}, {self.max_depth}')
        for n in ('fx', 'fy', 'cx', 'cy'):
            _check(getattr(self, n) >= 0, f'camera.{n}', 'must be >= 0')

    @property
    def has_intrinsics(self) -> bool:
        return self.fx > 0 and self.fy > 0


@dataclass(frozen=True)
class SyncConfig:
    """Approximate-time pairing of colour, depth and camera_info (like message_filters)."""

    slop_s: float = 0.02
    """Largest stamp difference (seconds) between messages paired into one frame."""
    queue_size: int = 30
    """Messages kept per topic while waiting for partners; the oldest are dropped beyond."""

    def __post_init__(self):
        _check(self.slop_s >= 0, 'sync.slop_s', f'must be >= 0, got {self.slop_s}')
        _check(self.queue_size >= 1, 'sync.queue_size', f'must be >= 1, got {self.queue_size}')


@dataclass(frozen=True)
class SyntheticConfig:
    """The built-in synthetic drone flight (scene, trajectory, sensors)."""

    seed: int = 0
    """Random seed; the whole sequence is a deterministic function of the config."""
    duration_s: float = 16.0
    """Flight duration (seconds)."""
    peak_speed: float = 1.0
    """Peak speed of the flight (m/s)."""
    width: int = 160
    """Image width (pixels)."""
    height: int = 120
    """Image height (pixels)."""
    fov_deg: float = 70.0
    """Horizontal field of view (degrees)."""
    camera_rate_hz: float = 20.0
    """RGB-D frame rate (Hz)."""
    imu_rate_hz: float = 200.0
    """IMU rate (Hz)."""
    room_size: Tuple[float, ...] = (8.0, 6.0, 3.0)
    """Room extent x, y, z (metres); the room spans [0, size] on each axis."""
    n_obstacles: int = 6
    """Number of box and cylinder obstacles: in the room (layout 'room'); 4 x this many along
    the walls (layout 'hall'); half this many, rounded up, in each room (layout 'rooms')."""
    acc_noise: float = 0.02
    """Accelerometer white noise density (m/s²/sqrt(Hz))."""
    gyro_noise: float = 0.002
    """Gyroscope white noise density (rad/s/sqrt(Hz))."""
    acc_bias_walk: float = 0.001
    """Accelerometer bias random walk (m/s³/sqrt(Hz))."""
    gyro_bias_walk: float = 0.0001
    """Gyroscope bias random walk (rad/s²/sqrt(Hz))."""
    acc_bias_init: float = 0.05
    """Standard deviation of the initial accelerometer bias (m/s²)."""
    gyro_bias_init: float = 0.002
    """Standard deviation of the initial gyroscope bias (rad/s)."""
    depth_noise_a: float = 0.001
    """Depth noise std at zero range (metres): sigma(z) = a + b z²."""
    depth_noise_b: float = 0.0015
    """Depth noise growth with range (1/metre): sigma(z) = a + b z²."""
    depth_dropout: float = 0.02
    """Fraction of depth pixels dropped at random (set to invalid)."""
    rgb_noise: float = 2.0
    """Colour noise std (intensity levels of 255)."""
    depth_max: float = 10.0
    """Depth beyond this range (metres) is reported invalid, like a real RGB-D sensor."""
    camera_tilt_deg: float = 10.0
    """Downward pitch of the camera on the body (degrees), so the floor stays in view."""
    hover_s: float = 1.0
    """Time (seconds) the drone hovers at rest before it starts to move."""
    ramp_s: float = 2.0
    """Time (seconds) over which the flight speeds up smoothly from rest to full speed."""
    layout: str = 'room'
    """Scene and flight: 'room' (one room of room_size, a loop around its centre, the camera
    facing the centre with a slow pan); 'hall' (one hall of hall_size, shelves, crates and
    pillars along its walls, a large loop through its open middle 3.5 m from the walls, the
    camera facing the walls with a pan); 'rooms' (four rooms of room_size each in a 2 x 2 grid,
    joined by 1.8 m doorways in thin walls; the loop starts in one room and passes through the
    others in turn and back, the camera looking along the direction of travel)."""
    start: str = 'loop'
    """Where the flight starts: 'loop' (hovering on the loop) or 'centre' (hovering at the
    middle of the room or hall at 1.5 m, then spiralling out smoothly onto the loop, the radial
    speed below 0.8 x peak_speed) or 'moving' (already on the loop at full speed, tilted as it
    flies: no hover, no ramp). 'centre' not with layout 'rooms' (its middle is a wall
    junction)."""
    hall_size: Tuple[float, ...] = (32.0, 24.0, 4.0)
    """Hall extent x, y, z (metres) of layout 'hall' (room_size is the room's for 'room' and
    each room's for 'rooms')."""
    yaw: str = 'centre'
    """Heading of the loop flights: 'centre' (the layout's own: facing the room's centre with a
    slow pan, the hall's walls, or along the travel through the rooms) or 'velocity' (the body
    x axis along the direction of travel on the loop)."""
    trajectory: str = 'loop'
    """Where the flight comes from: 'loop' (the closed-form loop of the layout, with the
    synthetic IMU) or 'blackbird' (a segment of a real Blackbird flight: its motion-capture
    trajectory and its real raw IMU at 100 Hz, published in the IMU's own z-down frame with
    T_body_imu on /tf_static, inside a room sized from the segment; room_size, peak_speed,
    imu_rate_hz, start, hover_s, ramp_s and the IMU noise fields do not apply)."""
    blackbird_path: str = ''
    """trajectory 'blackbird': a folder with data.hdf5 and stamped_groundtruth_imu.txt (the
    Blackbird flights as pre-processed by Cioffi et al., e.g. blackbird_clover_5p0/train)."""
    blackbird_start_s: float = 0.0
    """trajectory 'blackbird': start of the segment (seconds after the recording's first
    sample); the segment is duration_s long."""
    frame_drop: float = 0.0
    """Fraction of the camera frames dropped at random (neither written nor rendered)."""
    time_offset_s: float = 0.0
    """Camera stamps minus the true exposure times (seconds, |offset| < 0.1): the images are
    rendered at the exposure, stamped this much later, ground truth at the stamps; frames
    stamped outside the IMU's span are left out."""
    noise_scale: float = 1.0
    """Multiplies the depth noise (a and b), the colour noise and the IMU white noise and bias
    walks (trajectory 'blackbird': the camera noise only; its IMU is real)."""
    exposure_std: float = 0.0
    """Per-frame exposure change: each frame's colours are multiplied by exp(N(0, std²))."""
    motion_blur_s: float = 0.0
    """Exposure time (seconds) of the colour image: the mean of 5 renders spread over it,
    centred on the exposure (0: sharp). Depth stays sharp."""
    blackout_start_s: float = 0.0
    """Start (seconds since the flight start) of a covered lens: black colour and all-invalid
    depth for blackout_s while the IMU goes on."""
    blackout_s: float = 0.0
    """Length of the covered-lens span (seconds; 0: none)."""
    texture: str = 'default'
    """Surface textures: 'default' (each surface its own sum of sinusoids in three wavelength
    bands), 'low_contrast' (the same at a fifth of the contrast) or 'repetitive' (one tiled
    pattern of 0.3 m period on every surface)."""

    def __post_init__(self):
        _check(self.layout in ('room', 'hall', 'rooms'), 'synthetic.layout',
               f"must be 'room', 'hall' or 'rooms', got {self.layout!r}")
        _check(self.start in ('loop', 'centre', 'moving'), 'synthetic.start',
               f"must be 'loop', 'centre' or 'moving', got {self.start!r}")
        _check(self.yaw in ('centre', 'velocity'), 'synthetic.yaw',
               f"must be 'centre' or 'velocity', got {self.yaw!r}")
        _check(self.trajectory in ('loop', 'blackbird'), 'synthetic.trajectory',
               f"must be 'loop' or 'blackbird', got {self.trajectory!r}")
        _check(self.trajectory != 'blackbird' or bool(self.blackbird_path),
               'synthetic.blackbird_path', "is needed with trajectory 'blackbird'")
        _check(self.trajectory != 'blackbird' or self.layout == 'room', 'synthetic.layout',
               "must be 'room' with trajectory 'blackbird' (the room is sized from the segment)")
        _check(self.blackbird_start_s >= 0, 'synthetic.blackbird_start_s', 'must be >= 0')
        _check(0 <= self.frame_drop < 1, 'synthetic.frame_drop', 'must be in [0, 1)')
        _check(abs(self.time_offset_s) < 0.1, 'synthetic.time_offset_s',
               'must be within (-0.1, 0.1) seconds')
        _check(self.noise_scale >= 0, 'synthetic.noise_scale', 'must be >= 0')
        _check(self.exposure_std >= 0, 'synthetic.exposure_std', 'must be >= 0')
        _check(0 <= self.motion_blur_s < 0.1, 'synthetic.motion_blur_s', 'must be in [0, 0.1)')
        _check(self.blackout_start_s >= 0 and self.blackout_s >= 0,
               'synthetic.blackout_start_s/blackout_s', 'must be >= 0')
        _check(self.texture in ('default', 'low_contrast', 'repetitive'), 'synthetic.texture',
               f"must be 'default', 'low_contrast' or 'repetitive', got {self.texture!r}")
        _check(not (self.layout == 'rooms' and self.start == 'centre'), 'synthetic.start',
               "'centre' is not available with layout 'rooms' (its middle is a wall junction); "
               "use start 'loop'")
        _check(len(self.hall_size) == 3 and min(self.hall_size) > 1.0, 'synthetic.hall_size',
               'needs 3 extents > 1 m')
        _check(self.n_obstacles >= 0, 'synthetic.n_obstacles', 'must be >= 0')
        for n in ('duration_s', 'peak_speed', 'fov_deg', 'camera_rate_hz', 'imu_rate_hz'):
            _check(getattr(self, n) > 0, f'synthetic.{n}', 'must be > 0')
        _check(self.width >= 8 and self.height >= 8, 'synthetic.width/height', 'must be >= 8')
        _check(len(self.room_size) == 3 and min(self.room_size) > 1.0, 'synthetic.room_size',
               'needs 3 extents > 1 m')
        _check(0 <= self.depth_dropout < 1, 'synthetic.depth_dropout', 'must be in [0, 1)')
        _check(self.fov_deg < 170, 'synthetic.fov_deg', 'must be < 170')
        _check(self.depth_max > 0, 'synthetic.depth_max', 'must be > 0')
        _check(self.hover_s >= 0 and self.ramp_s > 0, 'synthetic.hover_s/ramp_s',
               f'need hover_s >= 0 and ramp_s > 0, got {self.hover_s}, {self.ramp_s}')


@dataclass(frozen=True)
class DynamicsTrainConfig:
    """vssm-train-dynamics: fitting the residual transition to flights with ground truth
    (section ``train_dynamics:`` of a YAML file)."""

    controls: str = 'imu'
    """Controls u_t: 'imu' (accelerometer + gyroscope) or 'thrust' (collective thrust + gyro)."""
    calibrated: bool = False
    """Read the dataset's calibrated IMU (accel_calib / gyro_calib) instead of the raw one."""
    hidden: int = 64
    """Width of the residual MLP's hidden layers."""
    layers: int = 2
    """Hidden layers of the residual MLP."""
    acc_scale: float = 1.0
    """Scale (m/s²) of the MLP's acceleration correction output."""
    gyro_scale: float = 0.1
    """Scale (rad/s) of the MLP's angular-rate correction output."""
    init_acc_noise: float = 0.5
    """Initial acceleration noise density (m/s²/sqrt(Hz)) of the learned noise head."""
    init_gyro_noise: float = 0.05
    """Initial angular-rate noise density (rad/s/sqrt(Hz)) of the learned noise head."""
    window_s: float = 2.0
    """Length (seconds) of the multi-step rollouts whose likelihood is maximised."""
    stride_s: float = 0.2
    """Spacing (seconds) of the rollout windows' start points."""
    score_every_s: float = 0.1
    """The rollout's likelihood is scored against the ground truth at this spacing (seconds)."""
    init_pos_std: float = 0.002
    """Std (metres) of the ground-truth position a rollout starts from; also the initial value
    of the fitted noise of the ground truth it is scored against."""
    init_rot_std: float = 0.002
    """Std (radians) of the ground-truth orientation a rollout starts from (and initial value
    of the fitted ground-truth noise)."""
    init_vel_std: float = 0.01
    """Std (m/s) of the ground-truth velocity a rollout starts from (and initial value of the
    fitted ground-truth noise)."""
    batch: int = 64
    """Rollout windows per gradient step."""
    lr: float = 0.003
    """Adam learning rate."""
    weight_decay: float = 0.0001
    """Adam (decoupled) weight decay."""
    epochs: int = 60
    """Most passes over the training windows."""
    patience: int = 10
    """Stop after this many epochs without a better validation likelihood."""
    seed: int = 0
    """Seed of the initialisation and the window order."""
    gravity: float = 9.81
    """Gravity magnitude (m/s²); the world z axis points up."""
    eval_every_s: float = 0.5
    """Evaluation: an open-loop rollout from the ground-truth state every this many seconds."""
    eval_horizons_s: Tuple[float, ...] = (0.5, 1.0, 2.0)
    """Evaluation horizons (seconds)."""
    eval_samples: int = 256
    """Evaluation: sampled rollouts per start for the sampled coverage."""
    euler_acc_noise: float = 0.05
    """Noise density (m/s²/sqrt(Hz)) that the engineered baseline's covariance assumes (as
    engine.motion.acc_noise)."""
    euler_gyro_noise: float = 0.005
    """Noise density (rad/s/sqrt(Hz)) that the engineered baseline's covariance assumes (as
    engine.motion.gyro_noise)."""

    def __post_init__(self):
        _check(self.controls in ('imu', 'thrust'), 'train_dynamics.controls',
               f"must be 'imu' or 'thrust', got {self.controls!r}")
        for k in ('hidden', 'layers', 'batch', 'epochs', 'patience', 'eval_samples'):
            _check(getattr(self, k) >= 1, f'train_dynamics.{k}', 'must be >= 1')
        for k in ('acc_scale', 'gyro_scale', 'init_acc_noise', 'init_gyro_noise', 'window_s',
                  'stride_s', 'score_every_s', 'init_pos_std', 'init_rot_std', 'init_vel_std',
                  'lr', 'gravity', 'eval_every_s', 'euler_acc_noise', 'euler_gyro_noise'):
            _check(getattr(self, k) > 0, f'train_dynamics.{k}', 'must be > 0')
        _check(self.weight_decay >= 0, 'train_dynamics.weight_decay', 'must be >= 0')
        _check(self.score_every_s <= self.window_s, 'train_dynamics.score_every_s',
               'must not exceed window_s')
        _check(len(self.eval_horizons_s) >= 1 and min(self.eval_horizons_s) > 0,
               'train_dynamics.eval_horizons_s', 'needs at least one horizon > 0')


@dataclass(frozen=True)
class MapConfig:
    """The map posterior q(M): occupancy (signed-distance backed) and colour on sparse voxel
    blocks, unbounded: blocks are allocated wherever keyframes observe surfaces."""

    resolution: float = 0.03
    """Voxel edge length (metres)."""
    truncation: float = 0.09
    """Signed distances are clamped to +-truncation (metres); beyond it space is free/unknown."""
    logit_slope: float = 100.0
    """Occupancy logit per metre of signed distance: logit = -slope * sdf (a TSDF-like ramp)."""
    sdf_noise: float = 0.02
    """Std (metres) of one signed-distance observation; q(M) std = sdf_noise / sqrt(weight)."""
    max_weight: float = 1000.0
    """Cap on the accumulated observation weight per voxel (keeps the map adaptable)."""
    freeze_weight: float = 3.0
    """Voxels whose weight reached this are no longer updated (0: never frozen). Freezing
    keeps later keyframes, whose poses carry accumulated drift, from dragging surfaces that
    earlier keyframes established, so revisits snap back to them."""
    block_size: int = 8
    """Voxels per block edge: the unit of allocation (a block is allocated where a keyframe
    updates a voxel). Blocks also remember how uncertain the poses were that fused them: a pose
    tracked against the map is only as certain in the world as the map it was tracked against,
    so the reported covariance grows with drift while exploring and shrinks on revisits."""
    memory_mb: float = 512.0
    """Budget (MiB) of the active map blocks, a hard limit once the blocks around the drone
    fit. Beyond it, the regions farthest from the drone move to disk (or host memory from a
    GPU) and come back when the drone returns; nothing is dropped, and saving writes the
    whole map."""
    keep_radius: float = 10.0
    """Evicted map regions within this distance (metres) of the drone come back, nearest
    first, as far as the budget allows (making room by evicting farther ones). Keep it above
    the camera's range."""
    swap_dir: str = ''
    """Directory for evicted map regions ('' : a temporary directory removed at exit)."""
    observed_floor: float = 0.5
    """Signed-distance queries interpolate over the observed corners of their cell only, so
    that never-observed voxels (free by default) next to a fused surface, at the edge of a
    fused view or behind it, do not pull the surface deeper; where the observed corners' share
    of the trilinear weight is below this floor, the value fades to free (+truncation). 1:
    plain trilinear (unobserved corners count as free); lower values extrapolate further. On
    the synthetic flights 0.5 cut seed 1's ATE from ~5.3 to ~3.4 cm (0.25: 3.7 cm)."""

    fuse_pixels: int = 20000
    """Depth pixels whose rays find a keyframe's candidate voxels (a regular subset of the
    image beyond this). Each candidate's signed distance is then computed from the whole
    image, and the candidates are dilated by one voxel, so rays about a voxel apart at the
    working range miss none; fusion's cost grows with the candidates."""

    def __post_init__(self):
        _check(self.resolution > 0, 'map.resolution', f'must be > 0, got {self.resolution}')
        _check(self.fuse_pixels >= 100, 'map.fuse_pixels',
               f'must be >= 100, got {self.fuse_pixels}')
        _check(self.truncation >= 2 * self.resolution, 'map.truncation',
               'must be at least two voxels')
        _check(2 <= self.block_size <= 32, 'map.block_size',
               f'must be in [2, 32] voxels, got {self.block_size}')
        _check(self.memory_mb >= 16, 'map.memory_mb', f'must be >= 16 MiB, got {self.memory_mb}')
        _check(self.keep_radius > 0, 'map.keep_radius', 'must be > 0')
        _check(self.freeze_weight >= 0, 'map.freeze_weight', 'must be >= 0')
        _check(0 < self.observed_floor <= 1, 'map.observed_floor',
               f'must be in (0, 1], got {self.observed_floor}')
        for k in ('logit_slope', 'sdf_noise', 'max_weight'):
            _check(getattr(self, k) > 0, f'map.{k}', 'must be > 0')


@dataclass(frozen=True)
class RenderConfig:
    """First-hit rendering along camera rays."""

    near: float = 0.1
    """Closest sample depth (metres)."""
    far: float = 8.0
    """Farthest sample depth (metres); rays that hit nothing report this depth."""
    samples: int = 64
    """Samples per ray for full-image renders (outputs, prediction); more where needed to
    keep them 0.85 map truncations apart, else rays step over thin surfaces (104 at the
    default 9 cm truncation and 8 m range)."""
    band_samples: int = 16
    """Samples per ray inside the band around the observed depth (inference)."""
    coarse_samples: int = 8
    """Samples per ray between near and the band (inference; catches occluders)."""
    band: float = 0.3
    """Half-width of the band around the observed depth (metres)."""
    hit_sharpness: float = 2.0
    """Scale on the logits in the hit probability sigmoid(sharpness * logit)."""

    def __post_init__(self):
        _check(0 < self.near < self.far, 'render.near/far', 'need 0 < near < far')
        _check(self.samples >= 4 and self.band_samples >= 2 and self.coarse_samples >= 1,
               'render.samples', 'too few samples')
        _check(self.band > 0 and self.hit_sharpness > 0, 'render.band/hit_sharpness',
               'must be > 0')


@dataclass(frozen=True)
class SensorConfig:
    """Likelihood p(x_t | m_t): depth noise sigma(z) = a + b z², colour noise."""

    depth_sigma_a: float = 0.002
    """Depth noise at zero range (metres)."""
    depth_sigma_b: float = 0.002
    """Depth noise growth (1/metre): sigma(z) = a + b z²."""
    model_sigma: float = 0.004
    """Extra depth std (metres) for map discretisation error, added in quadrature."""
    color_sigma: float = 0.02
    """Std (grey intensity in [0, 1]) of the colour likelihood that tracking uses
    (``inference.track_color``): camera noise plus the map's colour error (a voxel averages
    the texture it covers). The synthetic camera (noise 2/255) takes 0.005 (config/demo.yaml)."""
    color_affine: bool = False
    """The colour likelihood fits each frame's brightness to the map's as a gain and an
    offset (profiled out at every Gauss-Newton step), for auto exposure and lighting changes.
    Off by default: on the tune scenario families (docs/scenarios.md) it measured worse on 4
    of 5 (exposure changes 3.59 against 3.41 cm, start in motion 1.73 against 1.30, hall 5.28
    against 4.49), on the demo flight 0.339 against 0.348 cm, on TUM teddy with colour
    tracking 1.85 against 2.0 cm (colour off there: 1.77)."""
    color_observed_floor: float = 0.5
    """The colour likelihood uses a ray only where the colour-observed corners of its cell
    hold at least this share of the trilinear weight (the colour is interpolated over them, as
    ``map.observed_floor`` does for the signed distance). 1: all eight corners. Noisy depth
    leaves some voxels near a surface without colour: at 3x the synthetic camera's depth
    noise, requiring all eight left so few colour rays that tracking slid along the walls
    (39 m on the flight noise3x-room11x7; 13 cm with 0.5, 28 m with 0.75). On the demo
    flight 0.25 against 0.34 cm (docs/scenarios.md, session 13)."""
    variance_factor: bool = True
    """Scale the published pose covariance (``Estimate.cov``, odometry) by the running mean
    square of the tracked rays' normalised residual when it is above 1 (the a-posteriori
    variance factor of least squares), to the power ``variance_factor_power``: a camera
    noisier than ``depth_sigma_a/b`` says so in its residuals (TUM's Kinect: 1.9), and a
    covariance from the assumed noise is over-confident. With ``adapt_noise`` the filter's
    depth noise follows the measured noise, and this factor is what remains above it."""
    variance_factor_power: float = 4.0
    """The power of the variance factor that scales the published covariance (1: the least
    squares factor itself). On real images, residuals above the noise model come with pose
    errors far above what the factor itself allows for: on TUM teddy (factor 1.9, seeds 0-4,
    ``relative_cov_scale`` 0.1) 33-45 % of the true positions fell inside the 95 % ellipsoid
    with 1, 70-77 % with 3 and 81-88 % with 4. Chosen on TUM alone, the only real RGB-D data
    here: on the synthetic flights the factor is 1 except at 3x noise (1.7), where 1-4 give
    84.5-88 % on the tune flight (docs/scenarios.md, session 18)."""
    relative_cov_scale: float = 0.1
    """Share of the tracker's covariance relative to the map (the Laplace posterior, rays
    counted with ``ray_info_scale``) that goes into the published covariance while tracking
    is OK; the map's anchor variance goes in whole. ``ray_info_scale`` weights the images
    against the IMU, and as an uncertainty the posterior it gives is 2-3x too wide in std on
    clean flights (errors of 0.2-0.3 cm per axis against 0.45-0.7 cm). Chosen on the tune
    scenario flights: 0.05-0.175 put all seven inside 80-99 % coverage, 0.1 farthest from
    the band's edges (docs/scenarios.md, session 18). DEGRADED and LOST states publish the
    whole covariance."""
    adapt_noise: bool = True
    """Scale the depth noise that tracking, the window, fusion and the predicted depth std
    assume (``depth_sigma_a/b``) by the camera's measured noise: the running root mean square
    of well-tracked frames' normalised depth residuals, in units of the configured noise.
    Only the excess over 1.3 scales it (the residuals also carry the map's own error and what
    the model leaves out: TUM's Kinect measures 1.26, and tracking it with a wider noise was
    worse), never down, at most 4x. At 3x the synthetic camera's noise (flight
    noise3x-room11x7: 3.3 measured) the configured noise over-weighted single noisy rays
    against the colour term and the IMU: 2.48 cm, 2.09 adapted (docs/scenarios.md)."""
    huber: float = 2.0
    """Huber threshold on normalised depth and colour residuals (robust to outliers and
    dynamics)."""
    ray_info_scale: float = 0.02
    """Fraction of the sampled rays' depth and colour information counted as independent.
    Neighbouring rays see the same voxels, so their errors are correlated and counting every
    ray makes the posterior over-confident; 1 / (rays per independent error) calibrates it."""

    def __post_init__(self):
        for k in ('depth_sigma_a', 'model_sigma', 'color_sigma', 'huber'):
            _check(getattr(self, k) > 0, f'sensor.{k}', 'must be > 0')
        _check(0 < self.color_observed_floor <= 1, 'sensor.color_observed_floor',
               f'must be in (0, 1], got {self.color_observed_floor}')
        _check(0 < self.ray_info_scale <= 1, 'sensor.ray_info_scale',
               f'must be in (0, 1], got {self.ray_info_scale}')
        _check(0 < self.relative_cov_scale <= 1, 'sensor.relative_cov_scale',
               f'must be in (0, 1], got {self.relative_cov_scale}')
        _check(self.variance_factor_power >= 0, 'sensor.variance_factor_power',
               f'must be >= 0, got {self.variance_factor_power}')
        _check(self.depth_sigma_b >= 0, 'sensor.depth_sigma_b', 'must be >= 0')


@dataclass(frozen=True)
class MotionConfig:
    """Transition p(z_t+1 | z_t, u_t): IMU Euler integration, or constant velocity without IMU."""

    gravity: float = 9.81
    """Gravity magnitude (m/s²); the world z axis points up."""
    acc_noise: float = 0.15
    """Accelerometer white-noise density (m/s²/sqrt(Hz)); the bias is estimated in the state
    (``acc_bias_walk``). Far above a datasheet's (BMI055: 0.0015), near VINS-Mono's RealSense
    configs (0.1): it also covers rotor vibration, the zero-order hold between samples and a
    camera-IMU time offset. Chosen on the tune scenario flights (docs/scenarios.md, session
    14): 0.05 / 0.1 / 0.15 / 0.25 gave a tune mean ATE of 1.89 / 1.30 / 1.06 / 0.97 cm, the
    tune Blackbird flight (a real IMU) 1.26 / 1.33 / 1.40 / 1.58 cm; the held-out flights
    improved with it (mean 3.25 -> 1.69 cm at 0.15, with ``sensor.adapt_noise``)."""
    gyro_noise: float = 0.015
    """Gyroscope white-noise density (rad/s/sqrt(Hz)); the bias is estimated in the state
    (``gyro_bias_walk``). Far above a datasheet's (BMI055: 0.00024) for the same reasons
    (VINS-Mono's RealSense configs: 0.01); chosen with ``acc_noise``, 1/10 of it."""
    acc_bias_walk: float = 0.001
    """Accelerometer bias random walk (m/s³/sqrt(Hz)): the bias drifts by this times
    sqrt(seconds). Allan-variance fits of a RealSense D435i's BMI055 give 6e-5 to 8e-4; 1e-3
    (as VINS-Mono's RealSense configs) leaves room for temperature drift."""
    gyro_bias_walk: float = 0.0001
    """Gyroscope bias random walk (rad/s²/sqrt(Hz)). Allan-variance fits of a BMI055 give
    2e-6 to 2e-5; 1e-4 (as VINS-Mono's RealSense configs) leaves room for temperature drift."""
    acc_bias_std: float = 0.1
    """Prior std of the accelerometer bias at the first frame (m/s², per axis, mean 0): a
    calibrated consumer MEMS IMU's residual offset (uncalibrated BMI055 units read up to
    ~0.4)."""
    gyro_bias_std: float = 0.01
    """Prior std of the gyroscope bias at the first frame (rad/s, per axis, mean 0): a
    consumer MEMS gyro's turn-on offset (BMI055: up to 1 °/s = 0.017 rad/s)."""
    cv_acc_noise: float = 2.0
    """Constant-velocity model (no IMU): white acceleration density (m/s²/sqrt(Hz))."""
    cv_gyro_noise: float = 1.0
    """Constant-velocity model (no IMU): white angular acceleration density (rad/s²/sqrt(Hz))."""
    max_imu_gap: float = 0.1
    """Largest gap between IMU samples (seconds) that is integrated; larger gaps fall back to
    the constant-velocity model for that interval."""
    weights: str = ''
    """Learned residual dynamics written by vssm-train-dynamics (a .safetensors path, or the
    bare name of weights shipped in the package, e.g. 'blackbird_clover_imu'); used for the
    propagate step and predict(). Empty: the engineered integrator alone."""

    def __post_init__(self):
        for k in ('gravity', 'acc_noise', 'gyro_noise', 'cv_acc_noise', 'cv_gyro_noise',
                  'max_imu_gap', 'acc_bias_walk', 'gyro_bias_walk', 'acc_bias_std',
                  'gyro_bias_std'):
            _check(getattr(self, k) > 0, f'motion.{k}', 'must be > 0')


@dataclass(frozen=True)
class InferenceConfig:
    """Online inference: propagate, track (Gauss-Newton), refine the window (Gauss-Newton), map
    (closed form on keyframes)."""

    rays: int = 1024
    """Rays (pixels) sampled per frame for tracking."""
    track_iters: int = 8
    """Most Gauss-Newton iterations for the new state (map fixed)."""
    track_stop_translation: float = 2e-4
    """Tracking stops early once a step moves the pose less than this (metres) and less than
    ``track_stop_rotation_deg``; 0 disables early stopping. At 0.2 mm / 0.012 deg the demo
    flight takes 2.5 steps per frame (tracking 30 ms on the 2-core CPU) against 4.5 at
    0.05 mm / 0.003 deg (50 ms), with the scenario families, TUM teddy over five ray seeds
    and the demo within +10 % of the tighter stop (docs/performance.md)."""
    track_stop_rotation_deg: float = 0.012
    """Rotation threshold of the early stop (degrees); 0 disables early stopping."""
    track_stop_chi2: float = 0.1
    """Tracking also stops once a step is this short under the frame's posterior information
    (``delta^T H delta``, the step's squared length in standard deviations: 0.1 is a third of
    one) and moves less than 2.5 times ``track_stop_translation`` and
    ``track_stop_rotation_deg`` (``core.posterior.CHI2_STOP_SPAN``), as if converged. Near
    the optimum the steps bounce at 0.2-0.5 mm, above ``track_stop_translation``, in frames
    far from their prior (the node's after a dropped frame): the demo flight at every 2nd
    frame took 4.4 steps a frame, 5 % of them ``track_iters``, against 3.5 with this stop
    (3.4 against 2.9 at every frame); TUM teddy 27.0 -> 33.7 frames/s. Accuracy within the
    bars (tune / held-out scenario means 0.99 / 1.51 -> 1.03 / 1.47 cm, TUM teddy over five
    ray seeds 2.04 -> 2.13 cm, the demo 0.28 both; docs/performance.md, session 25).
    0: only the metric stop."""
    async_mapping: bool = True
    """Prepare each keyframe's fusion (its candidate voxels and their new values, most of its
    cost) on a second thread while the next ``mapping_lag_frames`` frames are tracked against
    the map without it; the engine thread then commits it (PTAM's split; ``core.mapping``).
    Deterministic: which frames see a keyframe depends on the data only, so the replay and
    the bench keep it. On the idle 2-core CPU the demo flight ran 26.7 frames/s against
    18.7 synchronous (session 19); the scenario families' means went 0.95 / 1.48 cm (tune /
    held out) against 1.01 / 1.65 with session 18's synchronous code, every flight within
    +0.2 cm but the 32 m hall's (1.06 -> 1.33; docs/scenarios.md, session 19); the map is
    ``mapping_lag_frames`` behind the camera, predicted images too. Without IMU each keyframe is
    fused before the next frame whatever this says (TUM teddy over five seeds got 3.05 cm
    against 1.89 with the lag: from a constant-velocity prior a frame tracked without the
    newest keyframe is worse), and the tracking thread keeps every core; so is a keyframe
    the window held back (``window`` > 1), as its window closes, without this lag on top:
    the two together lost the Blackbird-style flights (bb-train-28s 591 m at a window of 4
    and a lag of 4). Once a keyframe goes to the second thread, the tracking thread leaves
    it a core (torch threads). The node in real time follows ``node.async_mapping``
    instead. False: a keyframe is fused before the next frame is tracked."""
    mapping_lag_frames: int = 6
    """With ``async_mapping``: frames tracked while a keyframe is prepared beside them; its
    commit waits for the preparation at the end of the last of them (>= 1). At most one
    keyframe is pending: the next one commits it first."""
    mapping_wait: bool = True
    """With ``async_mapping``: a keyframe is committed after ``mapping_lag_frames`` frames,
    the engine waiting for its preparation if need be (deterministic: the replay and the
    bench). False (the node in real time, whatever this says): the mapping thread commits
    it as soon as it is prepared, between two of tracking's reads of the map (the tracking
    thread waits for it only at the end of the lag), and while one is pending the next
    keyframe waits until the drone has moved or turned twice the keyframe thresholds (then
    the pending one is committed first, waited for if need be), so that tracking seldom
    waits for the mapping thread and the map never falls far behind (which frames see a
    keyframe then depends on timing)."""
    track_color: bool = True
    """Tracking uses the colour likelihood too: each ray's observed grey intensity against
    the map's colour at its observed point (``sensor.color_sigma``). Depth alone leaves motion
    along flat surfaces (a wall, the floor) to the IMU; texture constrains it."""
    keyframe_translation: float = 0.3
    """A new keyframe when the body moved this far (metres) since the last one."""
    keyframe_rotation_deg: float = 15.0
    """A new keyframe when the body turned this much (degrees) since the last one."""
    keyframe_every: int = 100
    """A new keyframe at least every this many frames."""
    max_step_translation: float = 0.05
    """Clamp on one Gauss-Newton translation step (metres)."""
    max_step_rotation_deg: float = 3.0
    """Clamp on one Gauss-Newton rotation step (degrees)."""
    min_valid_rays: int = 50
    """Below this many usable rays the frame is not tracked (prediction kept, covariance grows)."""
    window: int = 1
    """Frames in the sliding window: a keyframe is fused into the map only after the frames up
    to ``window - 1`` after it have been tracked, and its state is refined jointly with theirs
    (rays and IMU transitions, map fixed) first, so the map is built from smoothed poses.
    Without IMU the window is 1 whatever this says (the keyframe is fused at its tracked pose
    at once): held back from the map, it was missed by tracking on a constant-velocity prior
    (TUM teddy 1.87 -> 3.01 cm at 8). 1 (the default): no refinement. With IMU, 8 against 1 on
    the scenario families (docs/scenarios.md, session 15): held-out mean ATE 1.69 -> 1.38 cm
    (3x noise with dropped frames 2.26 -> 1.71, 3 m/s 0.82 -> 0.41, bb-val-5s 3.55 -> 2.11),
    tune mean 1.06 -> 1.02; but the map then lags the camera by 7 frames more (the predicted
    depth of a 10 Hz flight's last view covered 66 % of its pixels against over 80 %, and the
    cost-to-go misses what the newest frames see), and the demo ran 18.2-18.9 -> 13.4-14.5
    frames/s. With ``window_iters: 1, window_refresh: false``, a third of the cost (session
    17): held-out mean 1.50, tune 1.02 cm, every 1 m/s flight within 2 cm, the demo 17.5-18.2
    against 19.2-19.7 frames/s; but live a keyframe held back by the window is prepared on the
    tracking thread (see ``async_mapping``), and the node processed 122-127 of the demo's 321
    frames against 165-166 without it. Not the default until those are weighed (issues 14,
    15)."""
    noisy_window: int = 8
    """Frames in the window while the camera's measured depth noise (``sensor.adapt_noise``'s
    measurement, in units of the configured noise) is above ``noisy_window_noise``, with IMU,
    in the replay (and the node in lockstep): where single frames' poses are noisy, the
    frames after a keyframe refine it most (the 3x-noise flights 2.09 / 2.26 -> 1.86 / 1.73
    cm), and a clean camera keeps the window of ``window`` and its speed. Not in the node in
    real time: a keyframe the window holds back is prepared on the tracking thread, and live
    on the 3x-noise demo flight the latency p50 went 0.8-1.2 -> 2.2-2.9 s at the same ATE
    (docs/scenarios.md, session 17). 1: never."""
    noisy_window_noise: float = 2.0
    """Measured depth noise over the configured one above which ``noisy_window`` holds (the
    synthetic camera at 1x measures below 1, TUM's Kinect 1.26, at 3x 3.3). The measurement
    holds the map's own error too: with 10 cm voxels the 1x camera measures 3.9 and the
    window holds (the Blackbird-style flights with ``config/blackbird.yaml``'s 10 cm map:
    3.72 and 9.18 cm either way)."""
    window_rays: int = 512
    """Rays per frame (of those tracked) kept for the window refinement. With a window of 8,
    256 with one iteration measured the same on two tune flights but worse held out (mean
    1.54 against 1.38 cm; the covered lens 5.6 cm off after relocalising against 3.4)."""
    window_iters: int = 2
    """Gauss-Newton iterations of the window refinement."""
    window_refresh: bool = True
    """Linearise the window once more at its refined states for their covariance (the
    keyframe's pose variance in the map, the newest state's). False: the last iteration's
    Hessian stands for it, one pass over the window's rays fewer (as tracking's early stop
    does)."""
    seed: int = 0
    """Seed of the ray sampler."""

    def __post_init__(self):
        for k in ('rays', 'keyframe_every', 'min_valid_rays', 'window', 'noisy_window',
                  'window_rays', 'mapping_lag_frames'):
            _check(getattr(self, k) >= 1, f'inference.{k}', 'must be >= 1')
        for k in ('track_iters', 'window_iters'):
            _check(getattr(self, k) >= 0, f'inference.{k}', 'must be >= 0')
        for k in ('track_stop_translation', 'track_stop_rotation_deg', 'track_stop_chi2'):
            _check(getattr(self, k) >= 0, f'inference.{k}', 'must be >= 0')
        _check(self.noisy_window_noise > 0, 'inference.noisy_window_noise',
               f'must be > 0, got {self.noisy_window_noise}')


@dataclass(frozen=True)
class InitConfig:
    """Initialisation (``core.init``): rest or motion at the first frame, and gravity and
    velocity from the first frames (with ``engine.init_pose: gravity`` and IMU)."""

    rest_max_gyro: float = 0.05
    """At rest when the IMU samples before the first frame turn slower than this on average
    (rad/s) ..."""
    rest_max_acc_dev: float = 0.3
    """... and their specific force stays within this of gravity's magnitude (m/s²)."""
    rest_samples: int = 40
    """IMU samples before the first frame judged for rest (and averaged for gravity)."""
    rest_velocity_std: float = 0.05
    """Std (m/s) of the first velocity (zero) at rest."""
    moving_velocity_std: float = 4.0
    """Std (m/s) of the first velocity (zero) in motion or without IMU: tracking against the
    first keyframe finds it."""
    align_frames: int = 20
    """Frames after which gravity and velocity are solved from the tracked poses and the IMU
    (``core.init.align_gravity``); when the map frame's gravity direction moves by more than
    ``min_correction_deg``, the start was in motion, or the velocity was not zero after all,
    the engine restarts from the first frame with both corrected (once). 0: never (gravity
    from the accelerometer alone). With 3 mm of tracking noise, 20 frames at 20 Hz give
    gravity's direction to 0.23 deg (median; 8 frames: 1.6 deg)."""
    moving_align_frames: int = 8
    """After a start in motion, frames after which gravity is solved first, roughly, and the
    engine restarts (then it solves and restarts again at ``align_frames``): the
    accelerometer's guess can be tens of degrees off, and the frames tracked under it drift
    (on the Blackbird training flight 25 cm in 20 frames at 30 Hz). Here too a hover judged
    in motion (too few IMU samples before the first frame) is found at rest, by the IMU
    since the first frame and the tracked poses. 0: only at ``align_frames``."""
    min_correction_deg: float = 1.0
    """Smallest gravity correction (degrees) worth a restart from a start at rest. At rest
    the accelerometer already gives gravity to its bias (0.05 m/s²: 0.3 deg), which the solve
    over the first second does not beat (it scatters by 0.2-0.6 deg); a larger disagreement
    means the rest was not one."""
    moving_gravity_std_deg: float = 20.0
    """Std (degrees) of the first gravity direction after a start in motion, until the solve
    after ``align_frames``: the accelerometer's mean over the last ``rest_samples`` measures
    flight accelerations too (18 and 39 deg off at the starts of two segments of the
    Blackbird training flight). The IMU's translation prior is widened by it over those
    frames; 0: trust the accelerometer."""
    gravity_std_deg: float = 1.0
    """Std (degrees) of the map frame's gravity direction once initialised: at rest, the
    accelerometer's bias (0.3 deg at 0.05 m/s²); after the solve, its scatter (0.2-0.6 deg
    on our synthetic flights, 0.6-1.3 deg over the first 0.3-2 s of the Blackbird training
    flight's real IMU). The drift test (``health.max_drift``) allows for the constant
    horizontal acceleration error it causes."""
    max_gravity_error: float = 0.15
    """The solve is rejected (kept as it was) when its gravity's magnitude is off by more
    than this fraction (too little motion or bad tracking to tell)."""

    def __post_init__(self):
        for k in ('rest_max_gyro', 'rest_max_acc_dev', 'rest_velocity_std',
                  'moving_velocity_std', 'max_gravity_error'):
            _check(getattr(self, k) > 0, f'init.{k}', 'must be > 0')
        _check(self.rest_samples >= 2, 'init.rest_samples', 'must be >= 2')
        _check(self.align_frames == 0 or self.align_frames >= 3, 'init.align_frames',
               'must be 0 (off) or >= 3')
        _check(self.min_correction_deg >= 0, 'init.min_correction_deg', 'must be >= 0')
        _check(self.moving_align_frames == 0 or self.moving_align_frames >= 3,
               'init.moving_align_frames', 'must be 0 (off) or >= 3')
        for k in ('moving_gravity_std_deg', 'gravity_std_deg'):
            _check(0 <= getattr(self, k) < 90, f'init.{k}', 'must be in [0, 90)')


@dataclass(frozen=True)
class HealthConfig:
    """Tracking health (``core.health``): when the estimate is OK, DEGRADED or LOST, and how
    the engine relocalises. Thresholds were set on the 1 m/s synthetic flights and checked on
    held-out families (docs/scenarios.md)."""

    lost_inlier_fraction: float = 0.25
    """A frame is bad when fewer of its valid rays than this fraction land on the map within
    the band around their measured depth."""
    min_agreement: float = 0.8
    """Below this fraction of inliers among the rays that hit the map, a tracked frame is
    weak (DEGRADED): the map is seen but does not match (0.95-1 when tracking)."""
    max_rmse: float = 5.0
    """Above this robust normalised depth residual a tracked frame is weak (DEGRADED): the
    depth noise model is off by that factor (0.8-1 on the synthetic flights at 160 x 120,
    1.5-2.5 at 48 x 36)."""
    max_innovation: float = 200.0
    """A frame is bad when its pose update's chi-square against the propagated prior (6
    degrees of freedom) exceeds this: the rays pull the pose where the motion prior says it
    cannot be. 200 leaves room for an over-confident IMU prior (chi-square 0.999 is 22.5)."""
    max_drift: float = 100.0
    """A frame is bad when the motion estimated over the last ``drift_window_s`` disagrees
    with the IMU preintegrated over it by more than this chi-square (9 degrees of freedom):
    tracking that drifts with its own map keeps each frame's update small but not the sum.
    On the tune flights its 90th percentile was 2-12, hovering on 48 x 36 test images up to
    64; on the Blackbird-style flights 64-368 while the pose drifted by a metre."""
    drift_window_s: float = 1.0
    """The window (seconds) of the drift test."""
    max_pose_std: float = 0.05
    """A tracked frame is weak when the rays alone leave the pose this uncertain (metres, or
    radians) along its weakest direction (a blank wall, a view of one plane)."""
    lost_acc_noise: float = 0.3
    """While LOST, white acceleration noise (m/s²/sqrt(Hz)) added to the motion prior's, so
    that the coasted covariance grows as dead reckoning on a drone's IMU really drifts
    (vibration, bias and tilt errors the IMU model leaves out): on the real Blackbird IMU
    the IMU model alone gave a 21 cm std 18 m off the truth after 3 s of coasting. 0.3 adds
    0.9 m of std over 3 s; 0.5 and more widen the relocalisation search (3 stds) so much
    that its grid coarsens and a 2 s blackout came back 8 cm off instead of 3."""
    lost_after_s: float = 0.1
    """Bad frames for this long (seconds) make the status LOST (no map updates, coasting on
    the motion prior, relocalisation)."""
    ok_after_s: float = 0.3
    """Good frames for this long (seconds) after a relocalisation or a weak spell make the
    status OK again."""
    relocalise: bool = True
    """Try to relocalise while LOST: score candidate poses around the coasted one and the
    recent keyframes by how many rays land on the map, refine the best by tracking, and
    accept one that passes the OK tests."""
    reloc_min_inlier_fraction: float = 0.6
    """A pose found while LOST is taken only with at least this fraction of its valid rays
    on the map (and the OK tests passed); normal tracking measures 0.5-0.99, the lower end
    where the view reaches into unmapped space."""
    reloc_radius: float = 0.6
    """Half-width (metres) of the position grid searched around each candidate centre,
    widened to 3 position stds of the coasted pose (at most ``reloc_max_radius``)."""
    reloc_max_radius: float = 2.0
    """Largest position search half-width (metres)."""
    reloc_step: float = 0.15
    """Spacing (metres) of the position grid (coarser for wide searches: at most 9 x 9 x 5
    positions per centre)."""
    reloc_yaw_deg: float = 10.0
    """Half-width (degrees) of the yaw search (roll and pitch come from the IMU; the gyro
    keeps yaw to a fraction of a degree over seconds of coasting)."""
    reloc_yaw_step_deg: float = 5.0
    """Spacing (degrees) of the yaw search."""
    reloc_candidates: int = 6
    """Best-scoring candidates refined by tracking in one relocalisation attempt."""
    reloc_rays: int = 192
    """Rays scored per candidate pose (a coarse test; the refinement uses all rays)."""

    def __post_init__(self):
        for k in ('lost_inlier_fraction', 'min_agreement', 'reloc_min_inlier_fraction'):
            _check(0 <= getattr(self, k) <= 1, f'health.{k}', 'must be in [0, 1]')
        for k in ('max_rmse', 'max_innovation', 'max_pose_std', 'max_drift', 'drift_window_s',
                  'reloc_radius',
                  'reloc_max_radius', 'reloc_step', 'reloc_yaw_step_deg'):
            _check(getattr(self, k) > 0, f'health.{k}', 'must be > 0')
        for k in ('lost_after_s', 'ok_after_s', 'reloc_yaw_deg', 'lost_acc_noise'):
            _check(getattr(self, k) >= 0, f'health.{k}', 'must be >= 0')
        for k in ('reloc_candidates', 'reloc_rays'):
            _check(getattr(self, k) >= 1, f'health.{k}', 'must be >= 1')


@dataclass(frozen=True)
class PredictionConfig:
    """Prediction ahead (SlamEngine.predict): sampled rollouts of the transition, rendered."""

    horizon_s: float = 0.5
    """Default horizon (seconds) of a prediction."""
    samples: int = 16
    """Trajectory samples drawn per prediction (each one rendered at every requested time)."""
    control_dt: float = 0.01
    """Step (seconds) of rollouts whose future controls are not given (the last control held)."""
    hold_acc_std: float = 0.3
    """When the last control is held: std (m/s²) of the unknown constant by which the future
    acceleration departs from it, drawn per trajectory sample. 0.3 fits the synthetic flights at
    1 m/s (their 0.25-1 s errors grow as 0.3 t²/2); raise it for more agile flight."""
    hold_gyro_std: float = 0.04
    """When the last control is held: std (rad/s) of the unknown constant by which the future
    angular rate departs from it, drawn per trajectory sample."""
    min_hit_fraction: float = 0.5
    """A predicted pixel is valid when at least this fraction of the samples hit a surface."""
    period_s: float = 0.5
    """vssm-replay --predict-horizon: least time (seconds of image stamps) between two
    predictions that are scored against the frame arriving at the horizon."""

    def __post_init__(self):
        _check(self.horizon_s > 0, 'predict.horizon_s', 'must be > 0')
        _check(self.samples >= 2, 'predict.samples', f'must be >= 2, got {self.samples}')
        _check(self.control_dt > 0, 'predict.control_dt', 'must be > 0')
        for k in ('hold_acc_std', 'hold_gyro_std'):
            _check(getattr(self, k) >= 0, f'predict.{k}', 'must be >= 0')
        _check(0 < self.min_hit_fraction <= 1, 'predict.min_hit_fraction', 'must be in (0, 1]')
        _check(self.period_s > 0, 'predict.period_s', 'must be > 0')


@dataclass(frozen=True)
class CostConfig:
    """Collision cost-to-go from the occupancy posterior (vssm_ros.core.cost)."""

    resolution: float = 0.1
    """Cell size (metres) of the cost grid: map voxels are pooled into cells of about this
    size, each cell taking its most occupied voxel (conservative)."""
    robot_radius: float = 0.3
    """Radius of a sphere around the body that must stay free (metres)."""
    decay: float = 0.5
    """Length scale (metres) of the cost's fall-off with the distance beyond robot_radius:
    cost = exp(-(distance - robot_radius) / decay)."""
    max_distance: float = 3.0
    """Distances to the nearest obstacle are computed up to this (metres); farther is as far."""
    occupied_threshold: float = 0.5
    """A voxel is an obstacle when its occupancy probability is at least this."""
    unknown_occupancy: float = 0.5
    """Occupancy probability of never-observed voxels; at or above occupied_threshold (the
    default) unknown space is an obstacle: conservative."""
    extent: Tuple[float, ...] = (12.0, 12.0, 4.0)
    """Size x, y, z (metres) of the box around the drone over which the cost is computed (the
    map is unbounded; the cost grid is local so its cost does not grow with the map)."""
    carve_range: float = 6.0
    """Free space is recorded from each keyframe up to this range (metres): it bounds the
    per-keyframe cost; farther space is recorded as the drone comes closer."""
    free_below: float = 0.01
    """Collision probability: cells less likely occupied than this count as free. The map's
    evidence for free space is strongly correlated between cells (one depth ray clears many),
    so multiplying thousands of tiny independent chances would make every long path collide."""

    def __post_init__(self):
        _check(self.resolution > 0, 'cost.resolution', 'must be > 0')
        _check(0 <= self.free_below < self.occupied_threshold, 'cost.free_below',
               'must be in [0, occupied_threshold)')
        for k in ('robot_radius', 'decay', 'max_distance'):
            _check(getattr(self, k) > 0, f'cost.{k}', 'must be > 0')
        _check(self.max_distance > self.robot_radius, 'cost.max_distance',
               'must be larger than robot_radius')
        _check(0 < self.occupied_threshold < 1, 'cost.occupied_threshold', 'must be in (0, 1)')
        _check(0 <= self.unknown_occupancy <= 1, 'cost.unknown_occupancy', 'must be in [0, 1]')
        _check(self.carve_range > 0, 'cost.carve_range', 'must be > 0')
        _check(len(self.extent) == 3 and min(self.extent) > 2 * self.resolution,
               'cost.extent', f'needs 3 sizes of more than two cells, got {self.extent}')


@dataclass(frozen=True)
class EngineConfig:
    """The SLAM engine: model, inference and where it runs."""

    device: str = 'cpu'
    """Torch device: 'cpu', 'cuda', 'cuda:1', ..."""
    dtype: str = 'float32'
    """Torch dtype of the model: 'float32' or 'float64'."""
    init_pose: str = 'gravity'
    """Map frame: 'identity' (the first body frame), 'gravity' (gravity-aligned from the
    accelerometer at the first frame, yaw and position of the first body frame; identity
    without IMU) or 'ground_truth' (the first ground-truth pose, replay only: keeps the map in
    the dataset's world frame so map bounds can be given there)."""
    map: MapConfig = field(default_factory=MapConfig)
    """Map grids."""
    render: RenderConfig = field(default_factory=RenderConfig)
    """Rendering."""
    sensor: SensorConfig = field(default_factory=SensorConfig)
    """Sensor noise."""
    motion: MotionConfig = field(default_factory=MotionConfig)
    """Transition model."""
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    """Online inference."""
    health: HealthConfig = field(default_factory=HealthConfig)
    """Tracking health and relocalisation."""
    init: InitConfig = field(default_factory=InitConfig)
    """Initialisation: rest or motion, gravity and velocity from the first frames."""
    predict: PredictionConfig = field(default_factory=PredictionConfig)
    """Prediction ahead."""
    cost: CostConfig = field(default_factory=CostConfig)
    """Collision cost-to-go."""

    def __post_init__(self):
        _check(self.init_pose in ('identity', 'gravity', 'ground_truth'), 'engine.init_pose',
               f"must be 'identity', 'gravity' or 'ground_truth', got {self.init_pose!r}")
        _check(self.dtype in ('float32', 'float64'), 'engine.dtype',
               f"must be 'float32' or 'float64', got {self.dtype!r}")
        _check(self.device == 'cpu' or self.device.startswith('cuda'), 'engine.device',
               f"must be 'cpu' or 'cuda[:N]', got {self.device!r}")


@dataclass(frozen=True)
class OutputsConfig:
    """What the node publishes and vssm-replay --out-bag writes, and how often."""

    path_max_poses: int = 10000
    """Poses kept in the published path (~/path); the oldest are dropped beyond."""
    path_period_s: float = 0.5
    """Least time (seconds of image stamps) between two paths (~/path); every pose goes into
    the path either way (odometry and TF come every frame). A path message holds every pose
    so far: building and serialising it took 4.5 ms at 1200 poses (a minute at 20 Hz) and 37
    ms at 10000 on the 2-core CPU, on the node's tracking thread, at every frame. 0: every
    frame, < 0: never."""
    map_cloud_period_s: float = 1.0
    """Least time (seconds of image stamps) between two map clouds (~/map_cloud); 0: every
    frame, < 0: never."""
    map_cloud_radius: float = 10.0
    """~/map_cloud holds the map blocks within this distance (metres) of the drone, so its
    cost stays bounded however large the map grows (the whole map: ~/save_map, map.ply)."""
    predicted_period_s: float = 0.5
    """Least time (seconds of image stamps) between two predicted images (~/predicted/depth,
    depth_std, color; a full-image render each); 0: every frame, < 0: never."""
    predicted_max_width: int = 320
    """Predicted images wider than this are rendered at 1/s of the input size (s the smallest
    integer that makes them fit; each pixel keeps its ray): a full 640x480 render costs about
    a second on a CPU. 0: always the input size."""
    predicted_path_period_s: float = 0.5
    """Least time (seconds of image stamps) between two predicted motions (~/predicted/path,
    the mean rollout over engine.predict.horizon_s, and ~/predicted/pose, its end with the
    samples' spread); 0: every frame, < 0: never."""
    cost_slice_period_s: float = 2.0
    """Least time (seconds of image stamps) between two collision cost slices (~/cost_slice,
    nav_msgs/OccupancyGrid at the current flight height); 0: every frame, < 0: never."""

    def __post_init__(self):
        _check(self.path_max_poses >= 1, 'outputs.path_max_poses',
               f'must be >= 1, got {self.path_max_poses}')
        _check(self.predicted_max_width >= 0, 'outputs.predicted_max_width',
               f'must be >= 0, got {self.predicted_max_width}')
        _check(self.map_cloud_radius > 0, 'outputs.map_cloud_radius',
               f'must be > 0, got {self.map_cloud_radius}')


@dataclass(frozen=True)
class NodeConfig:
    """ROS 2 node only (vssm-node): QoS, services, start-up. The replay CLI ignores it."""

    qos_reliability: str = 'best_effort'
    """Reliability of the image, camera_info and IMU subscriptions: 'best_effort' (the
    sensor-data profile; matches both best-effort and reliable publishers) or 'reliable'."""
    qos_depth: int = 5
    """History depth of the image and camera_info subscriptions (the sensor-data profile's 5)."""
    imu_qos_depth: int = 1000
    """History depth of the IMU subscription: deep enough (5 s at 200 Hz) that no sample is
    lost while the node is busy (every sample is integrated)."""
    map_path: str = '~/.ros/vssm_map.safetensors'
    """Checkpoint file written by ~/save_map and read by ~/load_map (std_srvs/Trigger takes
    no argument: set this parameter to choose the file)."""
    autosave_period_s: float = 60.0
    """Seconds between autosaves of the map, so that a crash loses at most this much mapping
    (<= 0: off). The autosave goes to its own file beside node.map_path
    (``vssm_map.safetensors`` -> ``vssm_map.autosave.safetensors``: a map saved on purpose is
    never replaced; after a crash, set node.map_path to the autosave and ~/load_map it).
    Written atomically (a crash mid-save leaves the previous file) by the worker thread
    between two frames (the frames arriving meanwhile wait, ``max_frame_gap_s``), only when
    frames were processed since the last autosave; not in localization mode (the map does
    not change). Failures are logged and counted (autosave_failures in /diagnostics), never
    fatal."""
    startup_timeout_s: float = 2.0
    """Seconds after the first frame that the node waits for /tf_static to connect the camera
    and IMU frames to frames.body_frame before it falls back to frames.T_body_cam / T_body_imu
    with a warning; with engine.init_pose 'ground_truth', also how long a new map's first frame
    waits for a ground-truth pose (else the map starts at the identity)."""
    imu_wait_s: float = 0.05
    """Seconds a frame waits for IMU samples up to its stamp (IMU messages may arrive after the
    image) before it is processed with what has arrived."""
    time_jump_s: float = 1.0
    """Input stamps this many seconds older than the last frame (a bag played again, a
    restarted simulation) reset the node; smaller steps back are dropped and counted."""
    diagnostics_period_s: float = 1.0
    """Period (seconds, node clock) of the /diagnostics status."""
    async_mapping: bool = True
    """In real time (not ``node.lockstep``), prepare keyframes on a second thread beside
    tracking (``engine.inference.async_mapping``; without IMU each keyframe is still fused
    before the next frame). Live (``tools/node_latency.py``, two runs each): the demo flight
    from gravity 136 / 152 frames of 321 against 101 / 102 without, latency p50 0.16 / 0.14 s
    against 0.42 / 0.47 s, ATE 0.36-0.40 cm both; at 2.5 m/s started in motion 101 / 114
    frames against 71, 1.30 / 1.36 cm against 1.57 cm (docs/performance.md). False: keyframes
    are fused on the tracking thread."""
    async_outputs: bool = True
    """In real time (not ``node.lockstep``), render the rate-limited outputs (predicted
    images and motion, cost slice, map cloud) on their own thread from the newest estimate,
    beside tracking: at their default rates they cost about 0.8 of a CPU core on the demo
    flight (docs/performance.md). False: on the tracking thread, put off while a newer frame
    waits (as the replay renders them, in order)."""
    output_cpu_share: float = 0.1
    """With ``async_outputs``, the share of one CPU core the outputs' thread may use on
    average: after a render that took ``c`` seconds of its CPU it takes no estimate for
    ``c (1 / share - 1)`` seconds, and the outputs due meanwhile go out at a later frame
    (their periods stretch on a small CPU; where renders are short, as on a GPU, the periods
    hold). Live on the demo flight (2-core CPU, three alternating runs) the node processed
    131-159 of 321 frames with 0.1 against 113-138 with no limit, at the same ATE; the
    outputs' thread used about 0.17 of a core without a limit (docs/performance.md,
    session 18). Raise it where cores are to spare; 1: no limit."""
    output_nice: int = 19
    """With ``async_outputs``, the outputs' thread's nice value on Linux (0-19; the thread's
    own, not the process's): its renders take the CPU only where tracking, mapping and the
    inputs leave it, and go out later on a busy CPU. Live on the demo flight (2-core CPU),
    alternating with 0: more frames processed in 14 of 22 pairs (mean 291 against 281 of
    321), a latency p95 at most 150 ms in 23 of 27 runs against 18 of 27, the keyframe
    commits' wait for the map's readers 0.2-3.6 ms against 0.3-2.9 (docs/performance.md,
    session 23). 0: as the rest of the node; ignored elsewhere than Linux."""
    input_process: bool = True
    """Receive the sensor inputs (colour, depth, camera_info, IMU) in a second process, a node
    ``<name>_inputs`` in the node's namespace (``vssm_ros.ros.input_relay``): rclpy's Python
    executor holds the GIL ~0.5 ms per message (200 IMU messages a second), which the engine
    thread waits for. Live on the demo flight, 11 pairs of runs alternating with and
    without: more frames processed in 9 (mean 247 against 233 of 321; the first three pairs
    280-296 against 258-279, step p50 35-40 against 42-44 ms). The child has ~80 MB
    resident (rclpy, no torch) and ends with the node; should it end first, the node
    subscribes to the inputs itself (an error is logged). False: one process. Either way the
    inputs keep rclpy's warning about a publisher with incompatible QoS (from
    ``<name>_inputs`` here)."""
    torch_threads: int = 1
    """Torch intra-op CPU threads in the node (0: torch's default, one per core). OpenMP
    workers spin while waiting, and beside the callback and DDS threads that made step()
    4.5x slower on 2 cores (890 vs 197 ms p50 live on the demo flight)."""
    warm_up: bool = True
    """Before the first frame, map and track a few synthetic frames with a throwaway engine
    (``vssm_ros.warm_up``, ~0.3 s on a 2-core CPU) so that the first real frames do not pay
    torch's first-call costs (live on the demo flight the first frame took 320-330 ms cold,
    190-230 warmed up, and the next ones half as long); frames that come meanwhile wait in
    the start-up queue. The estimate is unchanged."""
    mode: str = 'slam'
    """'slam': map and track; 'localization': track against a map loaded at start-up
    (node.map_path, which must exist) or with ~/load_map, never changing it; the pose is set
    with /initialpose (2D: height, roll and pitch kept from the current estimate) or
    ~/set_pose (full 6-DoF)."""
    lockstep: bool = False
    """Process every paired frame in order (none skipped, IMU awaited up to each
    frame's stamp), as the deterministic replay does: for tests and offline use, not for a
    live camera (the node falls behind without dropping)."""
    startup_frames: int = 20
    """In real time, the first frames after start-up or a reset are processed in order, none
    dropped: the velocity of a drone started in motion, and the gravity direction (solved on
    ``engine.init.align_frames``, 20, consecutive frames), are estimated from consecutive
    frames (with a given initial pose, at most ``startup_frames_known_pose``). Every 6th
    frame of a 2.5 m/s flight started in motion (a node that fell behind from its first
    frame) was LOST for the whole flight (ATE 10.9 m from the ground-truth
    pose, 92 m from gravity); with the first 3 / 5 / 10 frames in order, 2.7 / 2.2 / 1.5 cm
    from gravity. The node lags by these frames' processing time (and a gravity solve's
    second pass over them), then catches up (``max_frame_gap_s``). 0: catch-up from the
    first frame."""
    startup_frames_known_pose: int = 5
    """The same where the initial pose is given (``engine.init_pose`` 'ground_truth' or
    'identity': no gravity solve), at most this many: only the velocity of a drone started in
    motion needs them (offline, the 2.5 m/s flight started in motion, its first 3 / 5 / 10
    frames in order and every 6th after: 0.32 / 0.29 / 0.31 cm). Fewer in-order frames keep
    the first frame's delay from lasting through the start-up (live, session 20)."""
    gil_switch_interval_s: float = 0.0005
    """Python's thread switch interval in the node's process (``sys.setswitchinterval``;
    Python's default 0.005 s): how long a thread that wants the GIL waits for one that runs
    Python. The engine thread takes the GIL back after every torch op (~100 per Gauss-Newton
    step), and each time waits up to this long while another thread runs Python (the
    outputs', the mapping thread's, rclpy's). Offline, the demo flight's frame beside a
    thread running Python 30 % of the time (``tools/profile_frame.py --python-load 0.3``):
    p50 58 ms at 0.005 s against 46-49 ms at 0.0005; live, seven alternating pairs: more
    frames in 5 (docs/performance.md, session 21). 0: Python's default."""
    track_budget_s: float = 0.0
    """In real time, tracking takes no Gauss-Newton step that starts after this many seconds of
    the frame's tracking, once 2 were taken: the frame's pose is then the last step's (as
    when a step is small enough to stop, ``engine.inference.track_stop_translation``). For a
    CPU too slow to keep up, at some cost in accuracy: live on the 2-core CPU (demo flight,
    four alternating pairs) 0.035 gave 272 / 267 / 281 / 291 of 321 frames against 257 / 284
    / 263 / 265 without, ATE 0.30-0.38 cm against 0.27-0.30; it stops most frames after 3
    steps there, and 3 steps at most on every frame (offline, ``inference.track_iters``
    3) took the scenario families' means from 0.95 / 1.48 cm (tune / held out) to 1.12 / 1.99
    (bb-val-5s 2.76 -> 4.33; docs/performance.md, session 21). <= 0 (the default): no
    budget, each frame until converged (``engine.inference.track_iters``)."""
    max_frame_gap_s: float = 0.2
    """In real time, when the engine lags, the frames between two processed frames are
    skipped but at most this many seconds of motion lie between them (more only when the
    engine's recent steps are slower: then 1.5x its recent mean step, so that it still catches
    up). Jumping to the newest frame after a lag of seconds lost the track: from gravity on
    the demo flight, ATE 1.2 m (docs/performance.md); offline, frames 0.5-0.6 s apart at 2.5
    m/s after the start-up tracked to 0.3 cm, a single gap of 2 s gave 9.5 cm."""
    max_lag_s: float = 10.0
    """In real time, frames more than this many seconds older than the newest are dropped;
    the start-up frames are kept. Below it the queue holds at most two frames per
    ``max_frame_gap_s`` (at 640x480, 1.5 MB each: about 15 MB per second of lag)."""

    def __post_init__(self):
        _check(self.mode in ('slam', 'localization'), 'node.mode',
               f"must be 'slam' or 'localization', got {self.mode!r}")
        _check(self.torch_threads >= 0, 'node.torch_threads',
               f'must be >= 0, got {self.torch_threads}')
        _check(self.gil_switch_interval_s >= 0, 'node.gil_switch_interval_s',
               f'must be >= 0, got {self.gil_switch_interval_s}')
        for k in ('startup_frames', 'startup_frames_known_pose'):
            _check(getattr(self, k) >= 0, f'node.{k}', f'must be >= 0, got {getattr(self, k)}')
        for k in ('max_frame_gap_s', 'max_lag_s'):
            _check(getattr(self, k) > 0, f'node.{k}', f'must be > 0, got {getattr(self, k)}')
        _check(0 < self.output_cpu_share <= 1, 'node.output_cpu_share',
               f'must be in (0, 1], got {self.output_cpu_share}')
        _check(0 <= self.output_nice <= 19, 'node.output_nice',
               f'must be in [0, 19], got {self.output_nice}')
        _check(self.qos_reliability in ('best_effort', 'reliable'), 'node.qos_reliability',
               f"must be 'best_effort' or 'reliable', got {self.qos_reliability!r}")
        for k in ('qos_depth', 'imu_qos_depth'):
            _check(getattr(self, k) >= 1, f'node.{k}', f'must be >= 1, got {getattr(self, k)}')
        _check(bool(self.map_path), 'node.map_path', 'must not be empty')
        for k in ('startup_timeout_s', 'imu_wait_s'):
            _check(getattr(self, k) >= 0, f'node.{k}', f'must be >= 0, got {getattr(self, k)}')
        for k in ('time_jump_s', 'diagnostics_period_s'):
            _check(getattr(self, k) > 0, f'node.{k}', f'must be > 0, got {getattr(self, k)}')


@dataclass(frozen=True)
class FramesFolderConfig:
    """Replay input: a folder of PNG frames with nanosecond timestamp files (the Blackbird
    dataset's rendered cameras), with IMU and ground truth from the flight's ROS 1 bag."""

    rgb_dir: str = 'Camera_Left_RGB'
    """Subfolder of the colour frames: nSecTimestamps.txt (one stamp in ns per frame) and the
    PNGs in frame order (in its images/ subfolder, or beside the timestamps)."""
    depth_dir: str = 'Camera_Left_Depth'
    """Subfolder of the depth frames (16-bit PNGs, camera.depth_scale units per metre; 0:
    millimetres), laid out as rgb_dir."""
    bag: str = ''
    """ROS 1 bag with the IMU (topics.imu) and ground truth (topics.ground_truth), relative to
    the folder; empty: rosbag.bag in the folder or its parent (Blackbird keeps it one level up),
    else frames only."""
    ned: bool = True
    """The bag's world and body frames are NED / forward-right-down (Blackbird): poses and IMU
    readings are turned into z-up, forward-left-up frames (180 degrees about x) as they are
    read. frames.T_body_cam is always in the converted (forward-left-up) body frame."""

    def __post_init__(self):
        _check(bool(self.rgb_dir) and bool(self.depth_dir), 'frames_folder.rgb_dir/depth_dir',
               'must not be empty')
        _check(self.rgb_dir != self.depth_dir, 'frames_folder.rgb_dir/depth_dir',
               f'must differ, both are {self.rgb_dir!r}')


@dataclass(frozen=True)
class VssmConfig:
    """Everything the node and the replay CLI read from one YAML file."""

    topics: TopicsConfig = field(default_factory=TopicsConfig)
    """Input topics."""
    frames: FramesConfig = field(default_factory=FramesConfig)
    """TF frames and extrinsic fallbacks."""
    camera: CameraConfig = field(default_factory=CameraConfig)
    """Camera model and depth conventions."""
    sync: SyncConfig = field(default_factory=SyncConfig)
    """Stamp pairing of the camera topics."""
    engine: EngineConfig = field(default_factory=EngineConfig)
    """The SLAM engine."""
    outputs: OutputsConfig = field(default_factory=OutputsConfig)
    """Published outputs and their rates."""
    node: NodeConfig = field(default_factory=NodeConfig)
    """ROS 2 node settings."""
    frames_folder: FramesFolderConfig = field(default_factory=FramesFolderConfig)
    """Replay input: PNG frames with timestamp files (Blackbird)."""


# ----------------------------------------------------------------------------------------------
# Machinery: docs, dict <-> dataclass, YAML


@lru_cache(maxsize=None)
def field_docs(cls: type) -> Dict[str, str]:
    """The docstring under each field of a dataclass (nerfstudio style), by field name."""
    try:
        src = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    body = ast.parse(src).body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)):
            docs[node.target.id] = ' '.join(nxt.value.value.split())
    return docs


def _coerce(value: Any, tp: Any, name: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f'{name}: expected a mapping, got {type(value).__name__}')
        return from_dict(tp, value, prefix=name + '.')
    if origin in (tuple, list, Sequence) or tp in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f'{name}: expected a list, got {value!r}')
        args = typing.get_args(tp)
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f'{name}[{i}]') for i, v in enumerate(value)]
        return tuple(items) if origin is tuple or tp is tuple else items
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f'{name}: expected true/false, got {value!r}')
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f'{name}: expected an integer, got {value!r}')
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f'{name}: expected a number, got {value!r}')
        if not math.isfinite(value):
            raise ConfigError(f'{name}: must be finite, got {value!r}')
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f'{name}: expected a string, got {value!r}')
        return value
    return value


_REMOVED = {
    'map.bounds_min': 'the map is unbounded since map v2 (sparse blocks): delete it',
    'map.bounds_max': 'the map is unbounded since map v2 (sparse blocks): delete it',
    'map.anchor_cell': 'anchors are kept per map block since map v2: use map.block_size',
}
"""Keys that existed once, with what to do instead (matched on the name's last two parts)."""


def from_dict(cls: Type[C], data: Dict[str, Any], prefix: str = '') -> C:
    """Build a config dataclass from a (nested) mapping, validating names, types and values."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    for u in unknown:
        why = _REMOVED.get('.'.join((prefix + u).split('.')[-2:]))
        if why:
            raise ConfigError(f'{prefix + u} was removed: {why}')
    if unknown:
        raise ConfigError(f'unknown config key(s) {", ".join(prefix + u for u in unknown)}; '
                          f'known under {prefix or "top level"}: {", ".join(sorted(fields))}')
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f'{prefix or cls.__name__}: {err}') from err


def to_dict(cfg: Any) -> Dict[str, Any]:
    """A config dataclass as a nested mapping of plain YAML types."""
    out = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if dataclasses.is_dataclass(v):
            out[f.name] = to_dict(v)
        elif isinstance(v, tuple):
            out[f.name] = list(v)
        else:
            out[f.name] = v
    return out


def flatten(cfg_cls: type, prefix: str = '') -> List[Tuple[str, Any, str]]:
    """(dotted name, default, description) of every leaf field: the node's parameters."""
    rows = []
    docs = field_docs(cfg_cls)
    default = cfg_cls()
    hints = typing.get_type_hints(cfg_cls)
    for f in dataclasses.fields(cfg_cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows += flatten(tp, prefix + f.name + '.')
        else:
            v = getattr(default, f.name)
            rows.append((prefix + f.name, list(v) if isinstance(v, tuple) else v,
                         docs.get(f.name, '')))
    return rows


def unflatten(params: Dict[str, Any]) -> Dict[str, Any]:
    """Dotted names ('engine.window': 8) to a nested mapping."""
    out: Dict[str, Any] = {}
    for key, value in params.items():
        node = out
        parts = key.split('.')
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def _deep_merge(base: Dict[str, Any], over: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        nested = isinstance(v, dict) and isinstance(out.get(k), dict)
        out[k] = _deep_merge(out[k], v) if nested else v
    return out


def read_yaml_params(path: os.PathLike) -> Dict[str, Any]:
    """The parameter mapping of a YAML file: its ``ros__parameters`` section if it has one
    (the first found; ``/**`` wildcard or a node name), else the whole mapping."""
    import yaml  # lazily: the core imports these dataclasses and must not need yaml

    try:
        with open(path, 'r', encoding='utf-8') as fh:
            doc = yaml.safe_load(fh)
    except FileNotFoundError as err:
        raise ConfigError(f'config file not found: {path}') from err
    except yaml.YAMLError as err:
        raise ConfigError(f'config file {path} is not valid YAML: {err}') from err
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f'config file {path}: expected a mapping at the top level')
    for value in doc.values():
        if isinstance(value, dict) and 'ros__parameters' in value:
            params = value['ros__parameters'] or {}
            if not isinstance(params, dict):
                raise ConfigError(f'config file {path}: ros__parameters must be a mapping')
            return unflatten(params) if any('.' in k for k in params) else params
    return doc


def load_config(paths: Sequence[os.PathLike] = (), cls: Type[C] = VssmConfig,
                section: str = '', overrides: Dict[str, Any] | None = None) -> C:
    """Load a config from YAML files merged in order (base first, specialisations after).

    Args:
        paths: YAML files; later ones override earlier ones key by key.
        cls: the config dataclass to build.
        section: read only this top-level key of the merged mapping (e.g. 'synthetic').
        overrides: a nested mapping applied last.
    """
    merged: Dict[str, Any] = {}
    for p in paths:
        merged = _deep_merge(merged, read_yaml_params(p))
    if overrides:
        merged = _deep_merge(merged, overrides)
    if section:
        merged = merged.get(section, {}) or {}
    else:
        known = {f.name for f in dataclasses.fields(cls)}
        # A shared YAML may carry sections for other tools (e.g. 'synthetic'); ignore those
        # only when they are known config classes of this module, never silently otherwise.
        merged = {k: v for k, v in merged.items() if k in known or k not in _OTHER_SECTIONS}
    return from_dict(cls, merged)


_OTHER_SECTIONS = {'synthetic', 'train_dynamics'}
