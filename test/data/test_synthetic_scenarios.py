# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The scenario families of the synthetic generator (issue 14): Blackbird-style flights (a real
motion-capture trajectory with its real IMU), the start in motion and the yaw along the
velocity, sensor faults, textures; and tools/scenarios.py's table."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from vssm_ros.config import SyntheticConfig
from vssm_ros.data.synthetic import GRAVITY, config_hash, generate_flight, write_flight
from vssm_ros.data.synthetic.mocap import R_BODY_IMU, load_segment
from vssm_ros.errors import ConfigError

# The package-independent SO(3) oracle of test_synthetic (same directory, on sys.path).
from test_synthetic import _exp, _log, check_state_derivatives  # noqa: E402,I100
from conftest import SHARED_DATA  # noqa: E402,I100

ROOT = Path(__file__).resolve().parents[2]
BLACKBIRD = SHARED_DATA / 'blackbird_clover_5p0'
needs_blackbird = pytest.mark.skipif(
    not (BLACKBIRD / 'val' / 'data.hdf5').is_file(),
    reason=f'the Blackbird clover flight is not at {BLACKBIRD} (../shared/data beside the repo)')
SMALL = dict(width=32, height=24)


def _bb(split='val', start=0.0, duration=3.0, **kw):
    return SyntheticConfig(trajectory='blackbird', blackbird_path=str(BLACKBIRD / split),
                           blackbird_start_s=start, duration_s=duration, camera_rate_hz=30.0,
                           **{**SMALL, **kw})


def _integrate_real(flight, acc, gyro, i0, n):
    """Integrate IMU readings (body frame) over samples i0 .. i0 + n from the true state at i0
    (midpoint rotation, trapezoidal acceleration). Returns position and rotation errors at the
    end."""
    gt = flight.gt_imu
    t = flight.seconds(gt.stamps_ns)
    R = gt.T_world_body[i0, :3, :3].copy()
    p = gt.T_world_body[i0, :3, 3].copy()
    v = gt.v_world[i0].copy()
    a = R @ acc[i0] + GRAVITY
    for k in range(i0, i0 + n):
        dt = t[k + 1] - t[k]
        R = R @ _exp(0.5 * (gyro[k] + gyro[k + 1]) * dt)
        a_next = R @ acc[k + 1] + GRAVITY
        p = p + v * dt + (2 * a + a_next) / 6 * dt ** 2
        v = v + 0.5 * (a + a_next) * dt
        a = a_next
    T = gt.T_world_body[i0 + n]
    return np.linalg.norm(p - T[:3, 3]), np.linalg.norm(_log(R.T @ T[:3, :3]))


# ----------------------------------------------------------------------------------------------
# Blackbird-style flights


@needs_blackbird
def test_blackbird_imu_frame_is_z_down_and_reads_gravity_up():
    seg = load_segment(_bb('train', duration=90.0))
    R_world_imu = seg.R_world_body @ R_BODY_IMU
    # Over a closed flight the mean acceleration is ~0, so the mean specific force in the world
    # is gravity's reaction: +9.81 up. Measured 9.74 (train) and 9.74 (val).
    f_world = np.einsum('nij,nj->ni', R_world_imu, seg.acc_imu).mean(axis=0)
    assert abs(f_world[2] - 9.81) < 0.15 and np.abs(f_world[:2]).max() < 0.15
    # The IMU's z axis points down (its accelerometer reads about -g on z), the body's up.
    assert seg.acc_imu[:, 2].mean() < -9.0
    assert (seg.acc_imu @ R_BODY_IMU.T)[:, 2].mean() > 9.0
    # Yaw forward: the velocity lies along the body's x axis (IMU -y), not its y.
    v = np.gradient(seg.p_world, seg.t, axis=0)
    fast = np.linalg.norm(v, axis=1) > 2.0
    v_body = np.einsum('nji,nj->ni', seg.R_world_body[fast], v[fast])
    v_dir = (v_body / np.linalg.norm(v_body, axis=1, keepdims=True)).mean(axis=0)
    assert v_dir[0] > 0.7 and abs(v_dir[1]) < 0.3   # measured (0.81, 0.14, 0.12)


@needs_blackbird
@pytest.mark.parametrize('split,start', [('train', 40.0), ('val', 0.0)])
def test_blackbird_real_imu_integrates_to_the_mocap_trajectory(split, start):
    fl = generate_flight(_bb(split, start, duration=6.0))
    imu = fl.imu
    assert len(imu.stamps_ns) == 601 and np.all(np.diff(imu.stamps_ns) == 10_000_000)
    p_err, r_err, p_bad = [], [], []
    flip = np.diag([1.0, -1.0, -1.0])   # a z-down IMU taken as FRD: the wrong frame
    for i0 in range(0, 550, 50):
        pe, re = _integrate_real(fl, imu.acc, imu.gyro, i0, 50)
        p_err.append(pe)
        r_err.append(re)
        p_bad.append(_integrate_real(fl, imu.acc @ flip, imu.gyro @ flip, i0, 50)[0])
    # 0.5 s of the real raw IMU from the true state: measured at most 4.0 cm and 0.040 rad over
    # every window of the three segments used by the scenarios (median 2.4 cm, 0.014 rad). An
    # accelerometer bias of ~0.1 m/s² alone gives 0.5 * 0.1 * 0.5² = 1.3 cm; an attitude off by
    # 0.02 rad tilts gravity by 0.2 m/s², another 2.5 cm; the rest is vibration (0.5 m/s² std).
    assert max(p_err) < 0.06 and max(r_err) < 0.06
    assert min(p_bad) > 1.0   # in the wrong frame the same integration is off by metres


@needs_blackbird
def test_blackbird_interpolation_is_smooth_and_through_the_samples():
    fl = generate_flight(_bb(duration=2.0))
    seg = load_segment(fl.cfg)
    s = fl.state_at(seg.t)
    np.testing.assert_allclose(s.p, seg.p_world, atol=1e-12)
    np.testing.assert_allclose(s.R, seg.R_world_body, atol=1e-9)
    # Between samples: the velocity is the derivative of the position, continuous (C1).
    t = np.linspace(0.013, 1.887, 50)   # between samples: omega is constant over each 10 ms
    h = 1e-6
    lo, hi = fl.state_at(t - h), fl.state_at(t + h)
    np.testing.assert_allclose(fl.state_at(t).v, (hi.p - lo.p) / (2 * h), atol=1e-5)
    knots = seg.t[5:15]
    np.testing.assert_allclose(fl.state_at(knots - 1e-7).v, fl.state_at(knots + 1e-7).v,
                               atol=1e-4)
    omega_fd = np.array([_log(a.T @ b) / (2 * h) for a, b in zip(lo.R, hi.R)])
    np.testing.assert_allclose(fl.state_at(t).omega, omega_fd, atol=1e-5)


@needs_blackbird
def test_blackbird_scene_encloses_the_segment():
    for split, start in (('train', 5.0), ('val', 2.0)):
        fl = generate_flight(_bb(split, start, duration=25.0))
        p = fl.gt_imu.T_world_body[:, :3, 3]
        L = fl.scene.room_size
        assert np.all(p[:, :2] >= 1.5 - 1e-9) and np.all(p[:, :2] <= L[:2] - 1.5 + 1e-9)
        assert L[2] >= 3.0 and p[:, 2].max() <= L[2] - 1.3 + 1e-9
        assert fl.scene.distance(p).min() > 0.6
        assert fl.scene.n_boxes + fl.scene.n_cylinders == 6
        assert fl.n_frames == 751 and len(fl.imu.stamps_ns) == 2501
        # Most pixels see depth within range.
        assert np.isfinite(fl.frame(300).depth).mean() > 0.9


@needs_blackbird
def test_blackbird_segment_is_validated():
    with pytest.raises(ConfigError, match='ends after the recording'):
        generate_flight(_bb('val', 20.0, duration=20.0))
    with pytest.raises(ConfigError, match='blackbird_path'):
        SyntheticConfig(trajectory='blackbird')
    with pytest.raises(ConfigError, match='layout'):
        SyntheticConfig(trajectory='blackbird', blackbird_path='x', layout='hall')


@needs_blackbird
def test_blackbird_bag_round_trips_with_the_imu_frame_on_tf_static(tmp_path):
    from rosbags.highlevel import AnyReader

    from vssm_ros.config import VssmConfig
    from vssm_ros.data.sources import open_source
    from vssm_ros.types import Frame, ImuSample, PoseSample
    fl = generate_flight(_bb(duration=0.5))
    seg = load_segment(fl.cfg)
    bag = write_flight(fl, tmp_path, ('mcap',))['mcap']
    # In the bag: the recording's raw readings, in the IMU's own frame, bit for bit.
    with AnyReader([bag]) as reader:
        con = [c for c in reader.connections if c.topic == '/camera/imu']
        msgs = [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages(con)]
    acc = np.array([[m.linear_acceleration.x, m.linear_acceleration.y,
                     m.linear_acceleration.z] for m in msgs])
    assert {m.header.frame_id for m in msgs} == {'camera_imu_frame'}
    np.testing.assert_array_equal(acc, seg.acc_imu)
    # The replay's source finds T_body_imu on /tf_static and turns the IMU into the body frame.
    src = open_source(bag, VssmConfig())
    assert src.info['T_body_imu_source'] == '/tf_static: base_link <- camera_imu_frame'
    np.testing.assert_allclose(np.array(src.info['T_body_imu'])[:3, :3], R_BODY_IMU, atol=1e-12)
    items = list(src)
    imu = np.array([x.acc for x in items if isinstance(x, ImuSample)])
    np.testing.assert_allclose(imu, fl.imu.acc, atol=1e-12)
    assert sum(isinstance(x, Frame) for x in items) == fl.n_frames == 16
    gt = [x for x in items if isinstance(x, PoseSample)]
    np.testing.assert_allclose(gt[3].T_world_body, fl.gt_frames.T_world_body[3], atol=1e-6)


# ----------------------------------------------------------------------------------------------
# Start in motion, yaw along the velocity


@pytest.mark.parametrize('speed,yaw,layout', [(1.0, 'centre', 'room'), (3.0, 'velocity', 'room'),
                                              (2.5, 'centre', 'hall')])
def test_moving_start_is_at_full_speed_and_exact(speed, yaw, layout):
    cfg = SyntheticConfig(start='moving', peak_speed=speed, yaw=yaw, layout=layout,
                          duration_s=6.0, **SMALL)
    fl = generate_flight(cfg)
    s0 = check_state_derivatives(fl, 0.0)   # v(0) is the derivative of the trajectory
    assert np.linalg.norm(s0.v[0]) > 0.3 * speed
    tilt = np.degrees(np.arccos(s0.R[0][2, 2]))
    assert tilt > 0.5   # tilted as it flies, from the first sample
    for t in (1.3, 4.1):
        check_state_derivatives(fl, t)
    speeds = np.linalg.norm(fl.gt_imu.v_world, axis=1)
    assert speeds.max() == pytest.approx(speed, rel=0.01)
    # The noise-free IMU integrates to the trajectory (0.5 s windows from the true state).
    for i0 in (0, 400):
        pe, re = _integrate_real(fl, fl.imu.acc_true, fl.imu.gyro_true, i0, 100)
        assert pe < 2e-3 and re < 2e-3
    if yaw == 'velocity':
        st = fl.state_at(np.linspace(0, 6, 601))
        heading = np.arctan2(st.v[:, 1], st.v[:, 0])
        np.testing.assert_allclose(np.angle(np.exp(1j * (st.yaw - heading))), 0, atol=1e-9)
        rate = np.degrees(np.linalg.norm(fl.imu.gyro_true, axis=1)).max()
        assert 80 < rate < 260   # measured 141 °/s at 3 m/s in the 8 x 6 m room


def test_loop_start_and_centre_yaw_unchanged():
    a = generate_flight(SyntheticConfig(duration_s=4.0, **SMALL))
    b = generate_flight(SyntheticConfig(duration_s=4.0, yaw='centre', start='loop',
                                        frame_drop=0.0, noise_scale=1.0, **SMALL))
    np.testing.assert_array_equal(a.gt_imu.T_world_body, b.gt_imu.T_world_body)
    np.testing.assert_array_equal(a.imu.acc, b.imu.acc)
    assert config_hash(SyntheticConfig(), ('mcap',)) == '77f43b56f462088b'
    assert config_hash(SyntheticConfig(start='moving'), ('mcap',)) != '77f43b56f462088b'


# ----------------------------------------------------------------------------------------------
# Sensor faults


BASE = SyntheticConfig(duration_s=4.0, **SMALL)


@pytest.fixture(scope='module')
def base():
    return generate_flight(BASE)


def _cfg(**kw):
    return SyntheticConfig(**{**BASE.__dict__, **kw})


def test_dropped_frames(base):
    fl = generate_flight(_cfg(frame_drop=0.3))
    assert base.n_frames == 81
    # Binomial(81, 0.7): mean 56.7, std 4.1.
    assert 44 <= fl.n_frames <= 69
    np.testing.assert_array_equal(fl.frame_stamps_ns, base.frame_stamps_ns[fl.frame_index])
    i = 5
    np.testing.assert_array_equal(fl.frame(i).rgb, base.frame(int(fl.frame_index[i])).rgb)
    np.testing.assert_array_equal(fl.imu.acc, base.imu.acc)   # the IMU goes on


def test_blackout_frames_are_black_and_invalid(base):
    fl = generate_flight(_cfg(blackout_start_s=1.0, blackout_s=2.0))
    t = fl.seconds(fl.exposure_stamps_ns)
    out = (t >= 1.0) & (t < 3.0)
    assert out.sum() == 40 and fl.n_frames == base.n_frames
    for i in (19, 20, 59, 60):
        f = fl.frame(i)
        if out[i]:
            assert f.rgb.max() == 0 and np.isnan(f.depth).all()
        else:
            assert f.rgb.max() > 0 and np.isfinite(f.depth).mean() > 0.9
            np.testing.assert_array_equal(f.rgb, base.frame(i).rgb)
    np.testing.assert_array_equal(fl.imu.gyro, base.imu.gyro)


def test_time_offset_shifts_the_stamps_exactly(base):
    fl = generate_flight(_cfg(time_offset_s=0.005))
    # The last exposure's stamp would be after the last IMU sample: left out.
    assert fl.n_frames == base.n_frames - 1
    np.testing.assert_array_equal(fl.frame_stamps_ns - base.frame_stamps_ns[:-1], 5_000_000)
    np.testing.assert_array_equal(fl.exposure_stamps_ns, base.frame_stamps_ns[:-1])
    # The images are those of the exposures; ground truth is at the stamps.
    np.testing.assert_array_equal(fl.frame(30).rgb, base.frame(30).rgb)
    np.testing.assert_array_equal(fl.gt_frames.stamps_ns, fl.frame_stamps_ns)
    s = fl.state_at(fl.seconds(fl.frame_stamps_ns[30]))
    np.testing.assert_allclose(fl.gt_frames.T_world_body[30], s.T_world_body[0], atol=1e-12)
    items = list(fl.items())
    frames = [x.stamp_ns for x in items if type(x).__name__ == 'Frame']
    assert frames == fl.frame_stamps_ns.tolist()
    neg = generate_flight(_cfg(time_offset_s=-0.003))
    np.testing.assert_array_equal(neg.frame_stamps_ns, base.frame_stamps_ns[1:] - 3_000_000)


def test_noise_scale_scales_depth_colour_and_imu_noise(base):
    fl = generate_flight(_cfg(noise_scale=3.0))
    T = base.T_world_cam(40)
    clean_rgb, clean_d = base.render(T)
    rng = np.random.default_rng(0)
    r1, d1 = base.render(T, noise=True, rng=np.random.default_rng(0))
    r3, d3 = fl.render(T, noise=True, rng=np.random.default_rng(0))
    ok = np.isfinite(d1) & np.isfinite(d3)
    e1, e3 = (d1 - clean_d)[ok], (d3 - clean_d)[ok]
    assert np.std(e3) / np.std(e1) == pytest.approx(3.0, rel=0.02)
    c1 = r1.astype(float) - clean_rgb
    c3 = r3.astype(float) - clean_rgb
    assert np.std(c3) / np.std(c1) == pytest.approx(3.0, rel=0.1)   # rounding to integers
    n1 = base.imu.acc - base.imu.acc_true - base.imu.acc_bias
    n3 = fl.imu.acc - fl.imu.acc_true - fl.imu.acc_bias
    np.testing.assert_allclose(n3, 3 * n1, atol=1e-9)
    del rng


def test_exposure_changes_brightness_per_frame(base):
    fl = generate_flight(_cfg(exposure_std=0.2))
    ratios = [fl.frame(i, noise=False).rgb.mean() / base.frame(i, noise=False).rgb.mean()
              for i in range(0, 80, 8)]
    assert 0.08 < np.std(np.log(ratios)) < 0.4
    assert fl.frame(8).rgb.tolist() == fl.frame(8).rgb.tolist()   # reproducible


def test_fault_fields_are_validated():
    for kw in (dict(frame_drop=1.0), dict(time_offset_s=0.2), dict(noise_scale=-1.0),
               dict(exposure_std=-0.1), dict(blackout_s=-1.0), dict(texture='plaid'),
               dict(yaw='north'), dict(start='sideways'), dict(trajectory='spline')):
        with pytest.raises(ConfigError):
            SyntheticConfig(**kw)


# ----------------------------------------------------------------------------------------------
# Textures


def test_low_contrast_and_repetitive_textures(base):
    T = base.T_world_cam(40)
    rgb = base.render(T)[0].astype(float)
    low = generate_flight(_cfg(texture='low_contrast'))
    rgb_low = low.render(T)[0].astype(float)
    np.testing.assert_array_equal(low.render(T)[1], base.render(T)[1])   # same geometry
    assert 0.1 < rgb_low.std() / rgb.std() < 0.35
    rep = generate_flight(_cfg(texture='repetitive'))
    # The same colour 0.3 m apart along a wall, and on every surface.
    p = np.array([[0.0, 1.23, 1.41], [0.0, 1.53, 1.71], [0.0, 2.13, 1.11]])
    wall = rep.scene.colour(p, np.zeros(3, dtype=int))
    np.testing.assert_allclose(wall, wall[[0, 0, 0]], atol=1e-5)
    other = rep.scene.colour(p, np.full(3, 7))   # an obstacle: the same pattern
    np.testing.assert_allclose(other, wall, atol=1e-5)
    assert rep.render(T)[0].std() > 20


# ----------------------------------------------------------------------------------------------
# tools/scenarios.py


def _scenarios():
    spec = importlib.util.spec_from_file_location('scenarios', ROOT / 'tools' / 'scenarios.py')
    mod = importlib.util.module_from_spec(spec)
    sys.modules['scenarios'] = mod   # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_scenario_rows_and_table():
    sc = _scenarios()
    names = [f.name for f in sc.FLIGHTS]
    assert len(names) == len(set(names)) >= 13
    assert {f.split for f in sc.FLIGHTS} == {'tune', 'heldout'}
    bb = [f for f in sc.FLIGHTS if f.family == 'blackbird']
    assert all(f.split == 'heldout' for f in bb if f.overrides['blackbird_path'] == 'val')
    # A Blackbird segment tuned on shares no second with a held-out one of the same flight.
    for t in (f for f in bb if f.split == 'tune'):
        for h in (f for f in bb if f.split == 'heldout'):
            if h.overrides['blackbird_path'] == t.overrides['blackbird_path']:
                gap = abs(t.overrides['blackbird_start_s'] - h.overrides['blackbird_start_s'])
                assert gap >= t.overrides['duration_s']
    for f in sc.FLIGHTS:   # every override is a valid config
        sc.flight_config(f, blackbird_root=BLACKBIRD)
    m = {'frames': {'received': 150, 'processed': 150},
         'ate': {'rmse': 0.0123, 'max': 0.0456, 'ok_frames': {'rmse': 0.0111, 'max': 0.03}},
         'uncertainty': {'coverage': 0.88, 'nees_median': 0.9,
                         'ok_frames': {'coverage': 0.93, 'nees_median': 0.456}},
         'timing': {'frames_per_s': 7.25},
         'tracking': {'status_frames': {'OK': 140, 'DEGRADED': 8, 'LOST': 2}}}
    fl = sc.FLIGHTS[0]
    r = sc.row(fl, m)
    assert (r['ate_cm'], r['max_cm'], r['coverage'], r['fps']) == pytest.approx(
        (1.23, 4.56, 0.93, 7.25))
    assert r['status'] == '140/8/2' and r['frames'] == 150
    m2 = {k: v for k, v in m.items() if k != 'tracking'}
    m2['ate'] = {'rmse': 0.0323, 'max': 0.1}
    m2['uncertainty'] = {'coverage': 0.88, 'nees_median': 0.9}   # no OK frames recorded
    r2 = sc.row(sc.FLIGHTS[1], m2)
    assert r2['status'] == '–' and (r2['coverage'], r2['nees_median']) == (0.88, 0.9)
    bad = sc.error_row(sc.FLIGHTS[2], 'vssm-replay failed (exit 2): boom')
    text = sc.table([r, r2, bad])
    lines = text.splitlines()
    assert lines[0].startswith('| flight | family | split | frames | ATE RMSE')
    assert '| 1.23 | 4.56 | 1.11 | 93 % | 0.46 | 140/8/2 |' in lines[2]
    assert r2['ok_ate_cm'] is None and '| 3.23 | 10.00 | – |' in lines[3]
    assert 'boom' in text and '–' in lines[4]
    # Mean and worst per split, over the flights that ran.
    split = r['split']
    agg = [ln for ln in lines if ln.startswith(f'| **{split} mean**')]
    assert len(agg) == 1
    rows = [x for x in (r, r2) if x['split'] == split]
    assert f"{np.mean([x['ate_cm'] for x in rows]):.2f}" in agg[0]


# ----------------------------------------------------------------------------------------------
# Command line


@needs_blackbird
def test_synth_cli_new_options(tmp_path, capsys):
    from vssm_ros.cli.synth import main
    rc = main(['--out', str(tmp_path / 'a'), '--format', 'tum', '--start', 'moving', '--yaw',
               'velocity', '--texture', 'repetitive', '--duration', '1', '--width', '16',
               '--height', '12', '--quiet'])
    assert rc == 0 and 'start moving' in capsys.readouterr().out
    rc = main(['--out', str(tmp_path / 'b'), '--format', 'mcap', '--trajectory', 'blackbird',
               '--blackbird', str(BLACKBIRD / 'val'), '--blackbird-start', '3', '--duration',
               '0.5', '--camera-rate', '30', '--width', '16', '--height', '12', '--quiet'])
    text = capsys.readouterr().out
    assert rc == 0 and 'Blackbird segment' in text and '16 frames' in text
    assert '51 IMU samples @ 100 Hz' in text


def test_motion_blur_averages_along_the_motion(base):
    fl = generate_flight(_cfg(motion_blur_s=0.03))
    i = 60   # at full speed
    sharp = base.frame(i, noise=False)
    blurred = fl.frame(i, noise=False)
    np.testing.assert_array_equal(blurred.depth, sharp.depth)   # depth stays sharp
    diff = np.abs(blurred.rgb.astype(float) - sharp.rgb)
    assert 0.2 < diff.mean() < 20
    # Blur smooths: less energy in the horizontal gradient.
    grad = [np.abs(np.diff(f.rgb.astype(float), axis=1)).mean() for f in (sharp, blurred)]
    assert grad[1] < grad[0]
    np.testing.assert_array_equal(fl.frame(i).rgb, fl.frame(i).rgb)
