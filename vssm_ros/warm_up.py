# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""A throwaway engine over a few synthetic frames before the node's first real one.

The first frames of a process pay torch's first calls (kernel selection, the allocator's
pools, lazily loaded libraries) on top of their work: offline, the demo flight's first
frame (its first keyframe) took 204-281 ms in a fresh process and 162-198 ms after this
warm-up; live 320-330 ms against 190-230 (docs/performance.md, session 24). Live, the
frames that pile up behind it are frames dropped. ``warm_up`` pays those costs before the
data comes: an engine of the session's own configuration maps and tracks a few frames of a
synthetic wall seen by a hovering drone, and is closed; the session's own engine starts
afresh (its random generator is seeded per engine), so nothing of the warm-up reaches the
estimate.
"""

from __future__ import annotations

from typing import Iterator, Union

import numpy as np

from vssm_ros.data.synthetic.flight import R_FLU_OPT
from vssm_ros.types import Frame, ImuSample

WARM_UP_FRAMES = 4
"""One keyframe (the fusion of a whole image) and three tracked frames."""
WARM_UP_SIZE = (160, 120)
"""Width, height of the synthetic images (torch's first-call costs do not grow with them)."""
WARM_UP_RATES = (20.0, 200.0)
"""Camera and IMU rates (Hz) of the synthetic frames."""


def wall_frame(stamp_ns: int, width: int = WARM_UP_SIZE[0],
               height: int = WARM_UP_SIZE[1]) -> Frame:
    """A camera 4 m in front of a textured wall with a box on it, looking straight at it
    (depth and colour vary across the image, so tracking has something to hold on to; at 4
    m the first keyframe allocates about as many blocks as a room's, ~1,200 on the demo
    flight, so that the allocator's pools are grown to a real keyframe's size)."""
    f = 0.8 * width
    K = np.array([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    depth = np.full((height, width), 4.0, np.float32) + 0.004 * (u - width / 2)
    box = (abs(u - width / 2) < width / 6) & (abs(v - height / 2) < height / 5)
    depth[box] -= 0.6
    checker = ((u // 8 + v // 8) % 2).astype(np.float32)
    rgb = np.stack([60 + 150 * checker, 40 + u / width * 180, 200 - v / height * 150], -1)
    T_body_cam = np.eye(4)
    T_body_cam[:3, :3] = R_FLU_OPT   # looking forward
    return Frame(int(stamp_ns), rgb.astype(np.uint8), depth, K, T_body_cam)


def hover_items(gravity: float, frames: int = WARM_UP_FRAMES, start_ns: int = 1_000_000_000
                ) -> Iterator[Union[Frame, ImuSample]]:
    """IMU samples of a drone hovering level (specific force ``gravity`` up, no rotation) and
    the wall's frames among them, in stamp order, from ``start_ns``."""
    cam_hz, imu_hz = WARM_UP_RATES
    per_frame = int(round(imu_hz / cam_hz))
    acc, gyro = np.array([0.0, 0.0, gravity]), np.zeros(3)
    for k in range((frames - 1) * per_frame + 1):
        stamp = start_ns + int(round(k * 1e9 / imu_hz))
        yield ImuSample(stamp, acc.copy(), gyro.copy())
        if k % per_frame == 0:
            yield wall_frame(stamp)


def warm_up(engine) -> None:
    """Step ``engine`` (a fresh ``SlamEngine``, thrown away afterwards) over ``hover_items``
    and wait for its mapping."""
    for item in hover_items(engine.cfg.motion.gravity):
        if isinstance(item, Frame):
            engine.step(item)
        else:
            engine.add_imu(item)
    engine.flush()
