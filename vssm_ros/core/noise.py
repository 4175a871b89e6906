# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The camera's measured depth noise, and the depth noise the filter assumes from it.

A camera noisier than ``SensorConfig.depth_sigma_a/b`` says so in its tracked rays' normalised
residuals. ``DepthNoise`` keeps their running mean square in units of the configured noise and,
with ``sensor.adapt_noise``, the sensor model that tracking, the window, fusion and the
predicted depth std use: the configured one, its depth noise scaled by the measurement beyond
``NOISE_MODEL_SLACK`` (never down, at most ``MAX_NOISE_SCALE``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict

from vssm_ros.config import SensorConfig

NOISE_MODEL_SLACK = 1.3
"""Measured depth noise (in units of the configured) that ``sensor.adapt_noise`` leaves to
the model: the residuals also carry the map's own error and what the sensor model leaves out
(TUM's Kinect at its configured noise: 1.26), which a wider noise does not fix (TUM teddy
2.07 against 1.89 cm when it scaled from 1). Only the excess scales the noise."""
MAX_NOISE_SCALE = 4.0
"""The most ``sensor.adapt_noise`` scales the configured depth noise by: a camera noisier than
that is a fault the health monitor should see, not noise to absorb."""
NOISE_RATE = 0.1
"""Weight of each frame in the running mean square once past the first ten (before, a plain
mean: the first keyframes already fuse with a measured noise)."""


class DepthNoise:
    """The measured depth noise of a camera and the sensor model assumed from it.

    Attributes:
        var: the measured noise squared, in units of the configured noise (1: as configured).
        frames: frames measured so far.
        sensor: the sensor model the filter uses now (``SensorConfig``).
    """

    def __init__(self, cfg: SensorConfig):
        self.cfg = cfg
        self.var = 1.0
        self.frames = 0
        self.sensor = cfg

    @property
    def measured(self) -> float:
        """The measured depth noise in units of the configured (1: as configured)."""
        return math.sqrt(max(self.var, 0.0))

    @property
    def scale(self) -> float:
        """The factor on the configured depth noise that the filter assumes now."""
        return self.sensor.depth_sigma_a / self.cfg.depth_sigma_a

    def measure(self, rmse: float) -> None:
        """Take in a well-tracked frame's normalised depth residual (its root mean square
        against the noise assumed now)."""
        scale = self.scale
        self.frames += 1
        rate = max(NOISE_RATE, 1.0 / self.frames)
        self.var += rate * ((rmse * scale) ** 2 - self.var)
        if self.cfg.adapt_noise:
            want = min(max(1.0, self.measured / NOISE_MODEL_SLACK),
                       MAX_NOISE_SCALE)
            if abs(want - scale) > 0.02 * scale:
                self._set_scale(want)

    def _set_scale(self, scale: float) -> None:
        c = self.cfg
        self.sensor = dataclasses.replace(c, depth_sigma_a=c.depth_sigma_a * scale,
                                          depth_sigma_b=c.depth_sigma_b * scale)

    def state(self) -> Dict[str, Any]:
        """Plain numbers for a saved engine state (``load`` takes them back)."""
        return {'noise_var': self.var, 'noise_frames': self.frames,
                'depth_noise_scale': self.scale}

    def load(self, meta: Dict[str, Any]) -> None:
        """Take back ``state``'s numbers (absent: as configured, nothing measured)."""
        self.var = float(meta.get('noise_var', 1.0))
        self.frames = int(meta.get('noise_frames', 0))
        self.sensor = self.cfg
        if self.cfg.adapt_noise:
            self._set_scale(float(meta.get('depth_noise_scale', 1.0)))
