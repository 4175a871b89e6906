# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Sliding-window refinement: exact Gaussian smoothing without rays; rays and IMU pull an
erroneous old state back; the engine fuses keyframes only once their window is refined."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from vssm_ros.config import EngineConfig, InferenceConfig, SyntheticConfig
from vssm_ros.core.camera import pixel_rays, sample_pixels
from vssm_ros.core.dynamics import GaussianState, imu_transition, propagate_imu
from vssm_ros.core.engine import SlamEngine
from vssm_ros.core.map import VoxelMap
from vssm_ros.core.posterior import depth_sigma, make_rays
from vssm_ros.core.state_layout import BA, DIM, P, PHI
from vssm_ros.core.window import WindowFrame, refine_window
from vssm_ros.data.synthetic import generate_flight

F64 = torch.float64
SYN = SyntheticConfig(duration_s=3, width=64, height=48)
ECFG = EngineConfig()


def _t(x):
    return torch.as_tensor(np.asarray(x), dtype=F64)


def _cov(pos, rot, vel, acc_bias=0.05, gyro_bias=0.002):
    """Diagonal covariance of the 15-vector error from per-block stds."""
    return torch.diag(_t([pos ** 2] * 3 + [rot ** 2] * 3 + [vel ** 2] * 3
                         + [acc_bias ** 2] * 3 + [gyro_bias ** 2] * 3))


@pytest.fixture(scope='module')
def flight():
    return generate_flight(SYN)


def _imu_args(flight, k):
    """True IMU samples from frame k to k+1 (zero-order hold): propagate_imu's arguments."""
    t0, t1 = flight.frame_stamps_ns[k], flight.frame_stamps_ns[k + 1]
    imu = flight.imu
    sel = (imu.stamps_ns >= t0) & (imu.stamps_ns < t1)
    stamps = np.append(imu.stamps_ns[sel], t1)
    return (_t(imu.acc_true[sel]), _t(imu.gyro_true[sel]), _t(np.diff(stamps) * 1e-9),
            ECFG.motion)


def _imu_step(flight, k):
    args = _imu_args(flight, k)
    return lambda s: imu_transition(s, *args)


def _true_state(flight, k, cov):
    T = _t(flight.gt_frames.T_world_body[k])
    return GaussianState(T[:3, :3], T[:3, 3], _t(flight.gt_frames.v_world[k]), cov,
                         torch.zeros(3, dtype=F64))


def _rays(flight, k, valid=True, n=256):
    frame = flight.frame(k, noise=False)
    depth = _t(frame.depth)
    ok_pix = torch.isfinite(depth)
    idx, ok = sample_pixels(ok_pix, n, torch.Generator().manual_seed(k))
    w = depth.shape[1]
    uv = torch.stack(((idx % w).to(F64), (idx // w).to(F64)), dim=-1)
    ok = ok & valid
    return make_rays(pixel_rays(_t(frame.K), uv), depth.reshape(-1)[idx], ok,
                     _t(frame.T_body_cam), ECFG.render)


def test_without_rays_the_window_is_the_exact_gaussian_smoother(flight):
    """Prior and transitions only: the means stay put (all residuals are zero) and the newest
    state's marginal is the propagated covariance, F P F^T + Q twice."""
    P0 = _cov(0.01, math.radians(1.0), 0.1)
    s0 = _true_state(flight, 10, P0)
    s0.b_a, s0.b_g = _t([0.03, -0.02, 0.01]), _t([0.001, 0.002, -0.001])
    steps = [_imu_step(flight, 10), _imu_step(flight, 11)]
    s1 = propagate_imu(s0, *_imu_args(flight, 10))
    s2 = propagate_imu(s1, *_imu_args(flight, 11))
    empty = VoxelMap(ECFG.map, 'cpu', F64)
    frames = [WindowFrame(0, s0, None, None),
              WindowFrame(1, s1, _rays(flight, 11, valid=False), steps[0]),
              WindowFrame(2, s2, _rays(flight, 12, valid=False), steps[1])]
    out = refine_window(empty, frames, 2, ECFG.render, ECFG.sensor, 1.0, 0.05, 3.0)
    for got, want in zip(out, (s0, s1, s2)):
        assert torch.allclose(got.p, want.p, atol=1e-9)
        assert torch.allclose(got.R, want.R, atol=1e-9)
        assert torch.allclose(got.b_a, want.b_a, atol=1e-9)
        assert torch.allclose(got.b_g, want.b_g, atol=1e-9)
    assert torch.allclose(out[0].cov, P0, rtol=1e-6, atol=1e-14)
    assert torch.allclose(out[2].cov, s2.cov, rtol=1e-4, atol=1e-12)
    assert out[2].cov.shape == (DIM, DIM)
    # The bias blocks too: the prior's plus two random-walk steps, coupled to the motion.
    walk = ECFG.motion.acc_bias_walk ** 2 * 0.1
    assert torch.allclose(torch.diagonal(out[2].cov)[BA], torch.full((3,), 0.05 ** 2 + walk,
                                                                     dtype=F64), rtol=1e-6)
    assert float(out[2].cov[P, BA].abs().max()) > 1e-6


def test_later_frames_pull_an_erroneous_old_state_back(flight):
    """The oldest state is off by 2 cm and 0.5 degrees (within its std); the later frames are
    right and see the map: refinement moves the oldest most of the way back to the truth."""
    ks = [20, 21, 22, 23]
    m = VoxelMap(ECFG.map, 'cpu', F64)
    for k in ks:
        fr = flight.frame(k, noise=False)
        d = _t(fr.depth)
        m.fuse(d, None, _t(fr.K), _t(flight.T_world_cam(k)), depth_sigma(d, ECFG.sensor))
    P0 = _cov(0.03, math.radians(1.0), 0.1)
    truth0 = _true_state(flight, ks[0], P0)
    wrong = truth0.boxplus(_t([0.02, -0.01, 0.005, 0.0, 0.0, math.radians(0.5), 0, 0, 0]
                              + [0.0] * 6))
    P_k = _cov(0.005, math.radians(0.3), 0.05)
    frames = [WindowFrame(0, wrong, None, None)]
    for j, k in enumerate(ks[1:]):
        frames.append(WindowFrame(j + 1, _true_state(flight, k, P_k), _rays(flight, k),
                                  _imu_step(flight, k - 1)))
    out = refine_window(m, frames, 3, ECFG.render, ECFG.sensor, 0.02, 0.05, 3.0)

    def err(s):
        e = s.boxminus(truth0)
        return float(e[P].norm()), math.degrees(float(e[PHI].norm()))

    e_p, e_r = err(wrong)
    r_p, r_r = err(out[0])
    assert r_p < 0.3 * e_p and r_r < 0.3 * e_r, (e_p, e_r, r_p, r_r)
    # The later states, right to begin with, are pulled by the oldest less than it moved.
    for f, s in zip(frames[1:], out[1:]):
        assert float((s.p - f.filtered.p).norm()) < 0.5 * e_p
    # Information only adds: every refined marginal is tighter than the oldest's prior.
    assert float(torch.diagonal(out[0].cov)[P].sum()) < float(torch.diagonal(P0)[P].sum())
    # Nothing here says the biases are wrong: they stay near zero.
    assert float(out[0].b_a.norm()) < 0.05 and float(out[0].b_g.norm()) < 0.002
    # Without the last pass: the same states, the covariance of the last iteration (at the
    # states before its step, the oldest 2 cm off here): its stds within a quarter of the
    # refreshed ones.
    one = refine_window(m, frames, 1, ECFG.render, ECFG.sensor, 0.02, 0.05, 3.0)
    fast = refine_window(m, frames, 1, ECFG.render, ECFG.sensor, 0.02, 0.05, 3.0,
                         refresh=False)
    first = refine_window(m, frames, 0, ECFG.render, ECFG.sensor, 0.02, 0.05, 3.0)
    for a, b, c in zip(one, fast, first):
        assert torch.equal(a.p, b.p) and torch.equal(a.R, b.R)
        assert torch.equal(b.cov, c.cov)          # linearised at the filtered states
        assert not torch.equal(a.cov, b.cov)
        assert torch.allclose(torch.diagonal(a.cov).sqrt(), torch.diagonal(b.cov).sqrt(),
                              rtol=0.25)


def _run(feed, flight, window, n=22, items=None, **inference):
    # A keyframe every 5 frames whatever the motion; synchronous mapping unless asked.
    inference.setdefault('async_mapping', False)
    cfg = EngineConfig(map=ECFG.map, init_pose='ground_truth',
                       inference=InferenceConfig(window=window, keyframe_every=5,
                                                 **inference))
    eng = SlamEngine(cfg, T_world_body0=flight.gt_frames.T_world_body[0])
    fused = []
    orig = eng._commit_keyframe

    def commit(*a, **k):
        fused.append(eng.n_frames)
        return orig(*a, **k)
    eng._commit_keyframe = commit
    feed(eng, flight.items() if items is None else items, n)
    return eng, fused


def test_engine_fuses_a_keyframe_once_its_window_is_full(flight, feed_frames):
    eng1, fused1 = _run(feed_frames, flight, 1)
    eng4, fused4 = _run(feed_frames, flight, 4)
    # Window 1: each keyframe is fused in its own step; window 4: three frames later. The
    # first frame anchors the map at once.
    assert fused1 == [0, 5, 10, 15, 20]
    assert fused4 == [0, 8, 13, 18]
    # The keyframe of frame 20, whose window is still open, is fused by flush(); then
    # nothing is open.
    eng4.flush()
    assert fused4 == [0, 8, 13, 18, 22]
    eng4.flush()
    assert len(fused4) == 5


def test_asynchronous_mapping_adds_no_lag_to_the_window(flight, feed_frames):
    """A keyframe the window held back is fused when its window closes, asynchronous mapping
    or not: its lag on top of the window's lost the Blackbird-style flights (591 m). Without
    a window, asynchronous mapping commits a keyframe ``mapping_lag_frames`` later."""
    sync, fused_sync = _run(feed_frames, flight, 4, n=12)
    asyn, fused_async = _run(feed_frames, flight, 4, n=12, async_mapping=True,
                             mapping_lag_frames=2)
    one, fused_one = _run(feed_frames, flight, 1, n=12, async_mapping=True,
                          mapping_lag_frames=2)
    try:
        assert fused_sync == fused_async == [0, 8]
        assert fused_one == [0, 7]
        # The same keyframes at the same refined poses, the same map.
        for a, b in zip(sync.keyframes, asyn.keyframes):
            assert torch.equal(a['T_world_body'], b['T_world_body'])
        assert torch.equal(sync.state.p, asyn.state.p)
    finally:
        asyn.close()
        one.close()


def test_a_noisy_camera_gets_the_noisy_window(feed_frames):
    """The window engages where the camera measures noisier than ``noisy_window_noise``
    times the configured noise (with IMU, mapping synchronously or not), and not on a clean
    camera."""
    noisy = generate_flight(dataclasses.replace(SYN, noise_scale=4.0))
    eng, fused = _run(feed_frames, noisy, 1, noisy_window=4)
    assert math.sqrt(eng.depth_noise.var) > ECFG.inference.noisy_window_noise
    assert fused == [0, 8, 13, 18]
    _, off = _run(feed_frames, noisy, 1, noisy_window=1)
    assert off == [0, 5, 10, 15, 20]
    # Asynchronous mapping (the replay's default) keeps it: a keyframe the window held back
    # is fused as the window closes, without the mapping lag on top. (The node in real time
    # turns it off: test_session.)
    asyn, fused_async = _run(feed_frames, noisy, 1, noisy_window=4, async_mapping=True,
                             mapping_lag_frames=2)
    assert fused_async == [0, 8, 13, 18]
    asyn.close()


def test_a_clean_camera_keeps_its_window(flight, feed_frames):
    eng, fused = _run(feed_frames, flight, 1, noisy_window=4)
    assert math.sqrt(eng.depth_noise.var) < 1.0
    assert fused == [0, 5, 10, 15, 20]


def test_without_imu_a_keyframe_is_fused_at_once_whatever_the_window(flight, feed_frames):
    """The window holds a keyframe back from the map; without IMU (a constant-velocity prior)
    tracking missed it (TUM teddy 1.87 -> 3.01 cm at 8): the window is one frame there."""
    from vssm_ros.types import ImuSample
    no_imu = [x for x in flight.items() if not isinstance(x, ImuSample)]
    _, fused4 = _run(feed_frames, flight, 4, items=no_imu)
    assert fused4 == [0, 5, 10, 15, 20]
    _, with_imu = _run(feed_frames, flight, 4)
    assert with_imu == [0, 8, 13, 18]


def test_window_config_is_checked():
    from vssm_ros.errors import ConfigError
    with pytest.raises(ConfigError, match='inference.window'):
        InferenceConfig(window=0)
    with pytest.raises(ConfigError, match='inference.window_iters'):
        InferenceConfig(window_iters=-1)
    with pytest.raises(ConfigError, match='inference.noisy_window'):
        InferenceConfig(noisy_window=0)
    with pytest.raises(ConfigError, match='inference.noisy_window_noise'):
        InferenceConfig(noisy_window_noise=0.0)
