# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The built-in synthetic drone flight: an analytic indoor scene, a smooth 6-DoF flight, sensors.

Everything is a deterministic function of a :class:`~vssm_ros.config.SyntheticConfig`:

- :class:`Scene` (``scene.py``): a room (an axis-aligned box seen from inside) with box (rotated
  about z) and vertical-cylinder obstacles, each surface carrying its own smooth procedural
  texture. Ray casts and distances are exact and vectorised.
- The layouts (``layouts.py``, ``synthetic.layout``): 'room' (one room, a loop around its
  centre: the default), 'hall' (a large hall, obstacles along its walls, a large loop through
  its middle) and 'rooms' (four rooms joined by doorways, a loop through all of them).
- The flight (``trajectory.py``): a closed loop (sums of sinusoids of a loop angle), started
  from a hover by a smooth ramp of the loop speed, or (``synthetic.start: centre``) from the
  middle of the room by a smooth spiral out onto the loop; the attitude follows the
  acceleration (quadrotor thrust axis along ``a - g``) and the yaw looks towards the room centre
  with a slow pan (the hall: away from it; the rooms: along the direction of travel). Position,
  velocity, acceleration, jerk, attitude and angular velocity are closed-form.
  ``synthetic.start: moving`` starts on the loop at full speed; ``synthetic.yaw: velocity``
  heads along the direction of travel.
- Blackbird-style flights (``mocap.py``, ``synthetic.trajectory: blackbird``): a segment of a
  real Blackbird flight, its motion-capture trajectory interpolated and its real raw IMU in its
  own z-down frame (``T_body_imu`` on /tf_static), in a room sized from the segment.
- Sensors (``flight.py``): an IMU in the body frame (white noise, bias random walk, initial
  bias; true biases kept) and an RGB-D camera (z-depth with ``sigma(z) = a + b z^2`` noise and
  dropouts), rendered lazily frame by frame; faults on demand (dropped frames, a camera time
  offset, scaled noise, exposure changes, motion blur, a covered lens) and other textures
  (low contrast, repetitive).
- Writing (``writer.py``): ROS bags with RealSense-like topics and TUM folders; here, a cache of
  written flights keyed by the config.

Conventions: world z up with ``g = (0, 0, -9.81)``, body FLU, camera optical frame (z forward,
x right, y down), poses as 4x4 ``T_a_b`` (maps points from b to a), stamps in int nanoseconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

from vssm_ros.config import SyntheticConfig, to_dict
from vssm_ros.data.synthetic.flight import (EPOCH_NS, GroundTruth, ImuData, SyntheticFlight,
                                            generate_flight)
from vssm_ros.data.synthetic.scene import Scene
from vssm_ros.data.synthetic.trajectory import GRAVITY, FlightState
from vssm_ros.data.synthetic.writer import (FORMAT_PATHS, RealSenseLayout, realsense_layout,
                                            write_flight)

GENERATOR_VERSION = 1
"""Bumped whenever the generator's output changes, so cached flights are regenerated."""
# Fields added after GENERATOR_VERSION 1 and their defaults: left out of the hash at those
# defaults, so the flights cached before them keep their names (their output is unchanged).
_HASH_OMITS_AT_DEFAULT = ('layout', 'start', 'hall_size', 'yaw', 'trajectory', 'blackbird_path',
                          'blackbird_start_s', 'frame_drop', 'time_offset_s', 'noise_scale',
                          'exposure_std', 'motion_blur_s', 'blackout_start_s', 'blackout_s',
                          'texture')


def config_hash(cfg: SyntheticConfig, formats: Sequence[str] = ()) -> str:
    """A short hash of the config, the formats and the generator version (names cached
    flights)."""
    config = to_dict(cfg)
    default = to_dict(SyntheticConfig())
    for name in _HASH_OMITS_AT_DEFAULT:
        if config[name] == default[name]:
            del config[name]
    doc = {'generator': GENERATOR_VERSION, 'config': config, 'formats': list(formats)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def cached_flight_dir(cfg: SyntheticConfig, cache_root: Union[str, os.PathLike],
                      formats: Sequence[str] = ('mcap', 'tum'),
                      progress: Optional[Callable[[int], None]] = None) -> Path:
    """The directory of the flight of ``cfg`` written by ``write_flight``, generated on first
    use under ``cache_root/synthetic-<hash>``.

    The flight is written into a temporary directory and renamed, so the cache never holds a
    half-written flight, and two processes racing keep one complete copy.
    """
    root = Path(cache_root)
    final = root / f'synthetic-{config_hash(cfg, formats)}'
    if final.is_dir():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f'.{final.name}.', suffix='.tmp'))
    try:
        write_flight(generate_flight(cfg), tmp, formats, overwrite=True, progress=progress)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():   # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


__all__ = ['Scene', 'FlightState', 'GroundTruth', 'ImuData', 'SyntheticFlight', 'GRAVITY',
           'EPOCH_NS', 'FORMAT_PATHS', 'generate_flight', 'write_flight', 'realsense_layout',
           'config_hash', 'cached_flight_dir', 'RealSenseLayout', 'GENERATOR_VERSION']
