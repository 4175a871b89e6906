# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Held-out view depth error: cameras between frames, error and coverage arithmetic."""

import numpy as np
import pytest

from vssm_ros.config import SyntheticConfig
from vssm_ros.data.synthetic import generate_flight
from vssm_ros.eval.heldout import heldout_cameras, heldout_depth_error, heldout_times


@pytest.fixture(scope='module')
def flight():
    return generate_flight(SyntheticConfig(duration_s=1.0, hover_s=0.1, ramp_s=0.4, width=40,
                                           height=30, peak_speed=1.0))


def test_cameras_lie_between_frames(flight):
    t = heldout_times(flight, 5, upto_frame=flight.n_frames)
    assert len(t) == 5
    frame_t = flight.seconds(flight.frame_stamps_ns)
    period = 1.0 / flight.cfg.camera_rate_hz
    for ti in t:
        nearest = np.abs(frame_t - ti).min()
        assert nearest == pytest.approx(period / 2, abs=1e-6)  # never a frame's own time
    cams = heldout_cameras(flight, 5, upto_frame=flight.n_frames)
    np.testing.assert_allclose(cams[-1], flight.state_at(t[-1]).T_world_body[0]
                               @ flight.T_body_cam)
    assert t.max() < frame_t[-1]
    assert heldout_cameras(flight, 5, upto_frame=1) == []
    assert heldout_times(flight, 5, upto_frame=6).max() < frame_t[5]


def test_error_and_coverage(flight):
    def truth(T, K, w, h):
        return {'depth': flight.render(T)[1]}

    exact = heldout_depth_error(truth, flight, n_views=4)
    assert exact['median_abs_m'] == 0.0 and exact['coverage'] == 1.0
    assert exact['n_views'] == 4 and exact['n_pixels'] > 0

    def biased_half_missing(T, K, w, h):
        d = flight.render(T)[1] + 0.05
        d[:, : w // 2] = np.nan
        return {'depth': d}

    off = heldout_depth_error(biased_half_missing, flight, n_views=4)
    assert off['median_abs_m'] == pytest.approx(0.05, abs=1e-5)
    assert 0.3 < off['coverage'] < 0.7
    assert off['n_pixels'] < exact['n_pixels']
