# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Held-out view depth error: cameras between frames, error and coverage arithmetic."""

import numpy as np
import pytest

from vssm_ros.config import SyntheticConfig
from vssm_ros.data.synthetic import generate_flight
from vssm_ros.eval.heldout import (heldout_cameras, heldout_depth_error, heldout_times,
                                   map_to_world, status_at)


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


def test_the_map_is_registered_by_its_ok_poses_not_the_coasted_ones():
    """A covered lens: the poses coasted while LOST are 30 cm off (as their status says); the
    map's registration to the world comes from the OK poses, which it was built from."""
    flight = generate_flight(SyntheticConfig(duration_s=6.0, width=32, height=24,
                                             camera_rate_hz=10.0, hover_s=0.0, ramp_s=0.5))
    stamps = flight.frame_stamps_ns * 1e-9
    changes = [[0.0, 'OK'], [1.5, 'DEGRADED'], [1.6, 'LOST'], [2.5, 'OK']]
    st = status_at(stamps, changes)
    t = stamps - stamps[0]
    assert list(st[(t > 1.35) & (t < 1.65)]) == ['OK', 'DEGRADED', 'LOST']
    assert (st[(t >= 1.6) & (t < 2.5)] == 'LOST').all() and (st[t >= 2.5] == 'OK').all()
    assert (status_at(stamps, None) == 'OK').all()

    c, s_ = np.cos(0.3), np.sin(0.3)
    T_map_world = np.array([[c, -s_, 0, 0.4], [s_, c, 0, -0.2], [0, 0, 1, 0.1], [0, 0, 0, 1]])
    T_map_body = T_map_world @ flight.gt_frames.T_world_body
    T_map_body[st == 'LOST', :3, 3] += np.linspace(0, 0.3, int((st == 'LOST').sum()))[:, None]
    exact = map_to_world(stamps, T_map_body, flight, st)
    np.testing.assert_allclose(exact, np.linalg.inv(T_map_world), atol=1e-9)
    tilted = map_to_world(stamps, T_map_body, flight)
    assert np.abs(tilted[:3, 3] - exact[:3, 3]).max() > 0.01
