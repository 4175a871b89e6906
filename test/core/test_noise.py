# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""``core.noise.DepthNoise``: the measured depth noise and the sensor model assumed from it."""

import dataclasses

import pytest

from vssm_ros.config import SensorConfig
from vssm_ros.core.noise import MAX_NOISE_SCALE, NOISE_MODEL_SLACK, DepthNoise


def _feed(noise: DepthNoise, true_scale: float, n: int = 60) -> None:
    """Frames whose residuals against the noise assumed now say the camera's noise is
    ``true_scale`` times the configured."""
    for _ in range(n):
        noise.measure(true_scale / noise.scale)


def test_a_noisier_camera_scales_the_assumed_depth_noise_beyond_the_slack():
    cfg = SensorConfig()
    noise = DepthNoise(cfg)
    _feed(noise, 3.0)
    assert noise.var == pytest.approx(9.0, rel=1e-6)
    assert noise.scale == pytest.approx(3.0 / NOISE_MODEL_SLACK, rel=0.02)
    assert noise.sensor.depth_sigma_a == pytest.approx(cfg.depth_sigma_a * noise.scale)
    assert noise.sensor.depth_sigma_b == pytest.approx(cfg.depth_sigma_b * noise.scale)
    assert dataclasses.replace(noise.sensor, depth_sigma_a=cfg.depth_sigma_a,
                               depth_sigma_b=cfg.depth_sigma_b) == cfg   # nothing else
    # The first frame already counts in full (a plain mean at first).
    first = DepthNoise(cfg)
    first.measure(2.6)
    assert first.scale == pytest.approx(2.0)


@pytest.mark.parametrize('true_scale, expected', [(0.7, 1.0), (1.25, 1.0),
                                                  (20.0, MAX_NOISE_SCALE)])
def test_the_assumed_noise_never_goes_down_and_is_capped(true_scale, expected):
    noise = DepthNoise(SensorConfig())
    _feed(noise, true_scale)
    assert noise.scale == pytest.approx(expected)
    assert noise.var == pytest.approx(true_scale ** 2, rel=1e-6)


def test_off_it_measures_but_keeps_the_configured_noise_and_state_round_trips():
    off = DepthNoise(SensorConfig(adapt_noise=False))
    _feed(off, 3.0)
    assert off.var == pytest.approx(9.0) and off.sensor == off.cfg and off.scale == 1.0
    on = DepthNoise(SensorConfig())
    _feed(on, 3.0)
    again = DepthNoise(SensorConfig())
    again.load(on.state())
    assert (again.var, again.frames, again.sensor) == (on.var, on.frames, on.sensor)
    fresh = DepthNoise(SensorConfig())
    fresh.load({})   # a state saved before the measurement existed
    assert (fresh.var, fresh.frames, fresh.sensor) == (1.0, 0, fresh.cfg)
