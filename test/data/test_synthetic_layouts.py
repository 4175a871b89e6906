# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The synthetic flight's scene families (synthetic.layout: hall, rooms) and the start at the
centre (synthetic.start): clear of every surface, smooth, an exact IMU, the camera seeing
valid depth, the rooms visited in turn; and today's default flight unchanged."""

import time

import numpy as np
import pytest

from vssm_ros.config import SyntheticConfig
from vssm_ros.data.synthetic import GRAVITY, config_hash, generate_flight
from vssm_ros.errors import ConfigError

# The package-independent SO(3) oracle of test_synthetic (same directory, on sys.path).
from test_synthetic import _exp, _log, check_state_derivatives  # noqa: E402,I100

HALL = SyntheticConfig(layout='hall', duration_s=130.0)
ROOMS = SyntheticConfig(layout='rooms', duration_s=500.0)
HALL_CENTRE = SyntheticConfig(layout='hall', start='centre', duration_s=130.0, seed=1)
ROOM_CENTRE = SyntheticConfig(start='centre', duration_s=30.0, seed=2)
ALL = {'hall': HALL, 'rooms': ROOMS, 'hall_centre': HALL_CENTRE, 'room_centre': ROOM_CENTRE}


@pytest.fixture(scope='module', params=list(ALL))
def flight(request):
    return generate_flight(ALL[request.param])


@pytest.fixture(scope='module')
def rooms():
    return generate_flight(ROOMS)


def _integrate_window(flight, i0, n):
    """Integrate the noise-free IMU over samples i0 .. i0 + n from the true state at i0, to
    second order (rotation by the mean rate, trapezoidal acceleration: test_synthetic's Euler
    drifts ~1 cm in 5 s of full-speed flight). Returns the position and rotation errors (max).
    """
    gt, imu = flight.gt_imu, flight.imu
    t = flight.seconds(gt.stamps_ns)
    R = gt.T_world_body[i0, :3, :3].copy()
    p = gt.T_world_body[i0, :3, 3].copy()
    v = gt.v_world[i0].copy()
    a = R @ imu.acc_true[i0] + GRAVITY
    p_err = r_err = 0.0
    for k in range(i0, i0 + n):
        dt = t[k + 1] - t[k]
        R = R @ _exp(0.5 * (imu.gyro_true[k] + imu.gyro_true[k + 1]) * dt)
        a_next = R @ imu.acc_true[k + 1] + GRAVITY
        p = p + v * dt + (2 * a + a_next) / 6 * dt ** 2
        v = v + 0.5 * (a + a_next) * dt
        a = a_next
        p_err = max(p_err, np.linalg.norm(p - gt.T_world_body[k + 1, :3, 3]))
        r_err = max(r_err, np.linalg.norm(_log(R.T @ gt.T_world_body[k + 1, :3, :3])))
    return p_err, r_err


def _spiral_end(flight):
    """When a flight started at the centre reaches its loop (seconds)."""
    traj = flight._traj   # the generator's trajectory: the spiral's length is not public
    return traj.hover_s + traj.out_s


# ----------------------------------------------------------------------------------------------
# Every new flight


def test_clear_of_every_surface_and_at_the_peak_speed(flight):
    cfg = flight.cfg
    p = flight.gt_imu.T_world_body[:, :3, 3]
    assert flight.scene.distance(p).min() >= 0.5
    assert not flight.scene.occupied(p).any()
    assert 1.0 <= p[:, 2].min() and p[:, 2].max() <= 2.0
    speed = np.linalg.norm(flight.gt_imu.v_world, axis=1)
    assert speed.max() == pytest.approx(cfg.peak_speed, rel=0.05)
    hover = flight.seconds(flight.gt_imu.stamps_ns) <= cfg.hover_s
    assert np.all(speed[hover] == 0.0)


def test_derivatives_match_finite_differences(flight):
    h = 1e-5
    times = [1.5, 2.9, 7.3, 21.7, 64.2, flight.cfg.duration_s - 1.0]
    if flight.cfg.start == 'centre':
        end = _spiral_end(flight)
        times += [end - 0.3, end + 0.3, 0.5 * (flight.cfg.hover_s + end)]
    for t in times:
        check_state_derivatives(flight, t, h)


def test_noise_free_imu_integrates_to_the_trajectory(flight):
    rate = flight.cfg.imu_rate_hz
    starts = [0.0, 40.0 if flight.cfg.duration_s > 45 else 20.0]
    if flight.cfg.start == 'centre':
        starts.append(0.5 * (flight.cfg.hover_s + _spiral_end(flight)))   # mid-spiral
    for t0 in starts:
        p_err, r_err = _integrate_window(flight, int(t0 * rate), int(5 * rate))
        assert p_err < 2e-4, t0   # measured 2e-5 m (second order: the IMU is exact)
        assert r_err < 2e-5, t0


def test_frames_see_valid_depth(flight):
    t_from = _spiral_end(flight) if flight.cfg.start == 'centre' else flight.cfg.hover_s
    first = int(np.ceil(t_from * flight.cfg.camera_rate_hz))
    idx = np.linspace(first, flight.n_frames - 1, 6).astype(int)
    valid = [np.isfinite(flight.frame(int(i)).depth).mean() for i in idx]
    assert np.mean(valid) > 0.8 and min(valid) > 0.6, valid


# ----------------------------------------------------------------------------------------------
# Layouts and starts


def test_hall_flight_covers_the_hall_and_faces_its_walls():
    fl = generate_flight(HALL)
    L = np.array(HALL.hall_size)
    np.testing.assert_allclose(fl.scene.room_size, L)
    p = fl.gt_frames.T_world_body[:, :3, 3]
    assert np.ptp(p[:, 0]) >= 20.0 and np.ptp(p[:, 1]) >= 12.0
    # Obstacles along the walls only: the middle is open.
    assert fl.scene.n_boxes + fl.scene.n_cylinders == 4 * HALL.n_obstacles
    xy = np.vstack([fl.scene.box_center[:, :2], fl.scene.cyl_center])
    to_wall = np.minimum(xy, L[:2] - xy).min(axis=1)
    assert to_wall.max() < 2.5
    # The camera looks away from the hall's centre (its far side is beyond depth_max).
    T_wc = fl.gt_frames.T_world_body @ fl.T_body_cam
    outward = p[:, :2] - L[:2] / 2
    assert np.mean((T_wc[:, :2, 2] * outward).sum(axis=1) > 0) > 0.95


def test_rooms_flight_leaves_room_a_visits_the_others_and_returns(rooms):
    scene = rooms.scene
    assert len(scene.rooms) == 4
    p = rooms.gt_frames.T_world_body[:, :3, 3]
    inside = np.stack([np.all((p >= r[0]) & (p <= r[1]), axis=1) for r in scene.rooms], -1)
    assert inside[0, 0]   # starts in room A
    a_centre, a_half = scene.rooms[0].mean(axis=0), np.diff(scene.rooms[0], axis=0)[0] / 2
    assert (np.abs(p[:, :2] - a_centre[:2]) > a_half[:2]).any(axis=1).any()   # leaves A
    # The sequence of rooms (doorways left out): A, B, C, D, A, B, ... several times.
    which = np.where(inside.any(axis=1), inside.argmax(axis=1), -1)
    which = which[which >= 0]
    seq = which[np.r_[True, np.diff(which) != 0]]
    np.testing.assert_array_equal(seq, np.arange(len(seq)) % 4)
    assert (seq == 0).sum() >= 4   # back in A at least three times in 500 s
    # Looking along the direction of travel (the body x axis, levelled, along the velocity).
    v = rooms.gt_frames.v_world
    moving = np.linalg.norm(v[:, :2], axis=1) > 0.3
    x_body = rooms.gt_frames.T_world_body[moving, :2, 0]
    cos = (x_body * v[moving, :2]).sum(1) / np.linalg.norm(x_body, axis=1) / np.linalg.norm(
        v[moving, :2], axis=1)
    assert cos.min() > 0.99
    # 1.8 m doorways: the flight keeps clear of their edges.
    assert rooms.n_frames == 10001 and scene.distance(p).min() >= 0.5


def test_long_flight_is_generated_in_seconds_and_frames_rendered_lazily():
    t0 = time.process_time()
    fl = generate_flight(ROOMS)
    assert time.process_time() - t0 < 10.0   # measured 0.3 s
    assert len(fl.imu.stamps_ns) == 100_001
    # Frames are rendered when asked for, not held: the flight is a few arrays.
    held = sum(v.nbytes for v in vars(fl).values() if isinstance(v, np.ndarray))
    assert held < 2e6
    assert fl.frame(9999).rgb.shape == (120, 160, 3)


@pytest.mark.parametrize('cfg', [HALL_CENTRE, ROOM_CENTRE], ids=['hall', 'room'])
def test_centre_start_hovers_in_the_middle_then_joins_the_loop(cfg):
    fl = generate_flight(cfg)
    L = np.array(cfg.hall_size if cfg.layout == 'hall' else cfg.room_size)
    s0 = fl.state_at(0.0)
    assert np.linalg.norm(s0.p[0, :2] - L[:2] / 2) < 0.5
    assert s0.p[0, 2] == pytest.approx(1.5)
    end = _spiral_end(fl)
    assert end < cfg.duration_s / 2
    # On the loop after the spiral: the same path as the loop start's, at other times.
    loop = generate_flight(SyntheticConfig(**{**cfg.__dict__, 'start': 'loop'}))
    on_loop = fl.state_at(np.linspace(end, cfg.duration_s, 200)).p
    ref = loop._traj.loop(np.linspace(0, 2 * np.pi, 4000))
    gaps = np.linalg.norm(on_loop[:, None] - ref[None], axis=-1).min(axis=1)
    assert gaps.max() < 0.02
    # Smooth through the end of the spiral: continuous acceleration and angular velocity.
    lo, hi = fl.state_at(end - 1e-6), fl.state_at(end + 1e-6)
    np.testing.assert_allclose(lo.a, hi.a, atol=1e-5)
    np.testing.assert_allclose(lo.omega, hi.omega, atol=1e-5)


def test_layout_and_start_are_validated():
    with pytest.raises(ConfigError, match='synthetic.layout'):
        SyntheticConfig(layout='maze')
    with pytest.raises(ConfigError, match='synthetic.start'):
        SyntheticConfig(start='corner')
    with pytest.raises(ConfigError, match="'centre' is not available with layout 'rooms'"):
        SyntheticConfig(layout='rooms', start='centre')
    with pytest.raises(ConfigError, match='hall_size'):
        generate_flight(SyntheticConfig(layout='hall', hall_size=(8.0, 8.0, 3.0)))
    with pytest.raises(ConfigError, match='room_size'):
        generate_flight(SyntheticConfig(layout='rooms', room_size=(4.0, 4.0, 3.0)))


def test_same_config_same_flight_other_layout_differs():
    a, b = generate_flight(ROOMS), generate_flight(ROOMS)
    np.testing.assert_array_equal(a.imu.acc, b.imu.acc)
    np.testing.assert_array_equal(a.frame(123).rgb, b.frame(123).rgb)
    assert not np.array_equal(a.frame(123).rgb, generate_flight(
        SyntheticConfig(layout='rooms', duration_s=500.0, seed=1)).frame(123).rgb)


# ----------------------------------------------------------------------------------------------
# Today's flight is unchanged (values recorded before the layouts were added)


P0 = [[4.466236635578547, 4.308049272943545, 1.8776284413406974],
      [3.7740322486927926, 4.524428662076136, 1.7283414781871833],
      [1.6200672490579997, 2.789768806258962, 1.295098513433485],
      [6.292721179162243, 2.1579511589500173, 1.4320245730124002]]
BOX0 = [[2.5901404101377983, 5.155621301087623, 0.29392152439243996],
        [3.761309726797099, 3.4162729180767273, 0.9995409886350906],
        [7.137135665305539, 3.132872256430524, 0.20438112204623599]]
DEPTH0 = [[3.1719322204589844, 5.80471134185791, 5.712825775146484, 5.623803615570068],
          [3.16855788230896, 6.018909931182861, 6.013377666473389, 5.914823055267334],
          [3.1651906967163086, 3.6777899265289307, 5.741153717041016, 5.619647026062012],
          [2.6801350116729736, 2.653352975845337, 0.9529655575752258, 2.60136342048645]]


def test_default_flight_is_unchanged():
    cfg = SyntheticConfig(width=64, height=48)
    assert (cfg.layout, cfg.start) == ('room', 'loop')
    fl = generate_flight(cfg)
    np.testing.assert_allclose(fl.state_at(np.array([0.5, 3.0, 7.25, 15.0])).p, P0,
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(fl.scene.box_center, BOX0, rtol=0, atol=1e-12)
    rgb, depth = fl.render(fl.T_world_cam(120))
    np.testing.assert_allclose(depth[::12, ::16], DEPTH0, rtol=0, atol=1e-6)
    assert rgb.astype(float).mean() == pytest.approx(138.74782986111111, abs=0.05)
    # The cache names of the demo's flights too.
    assert config_hash(SyntheticConfig(), ('mcap',)) == '77f43b56f462088b'
    assert config_hash(SyntheticConfig(layout='hall'), ('mcap',)) != '77f43b56f462088b'


# ----------------------------------------------------------------------------------------------
# Command lines


def test_synth_cli_layout_and_start(tmp_path, capsys):
    from vssm_ros.cli.synth import main
    cfg_file = tmp_path / 'synth.yaml'
    cfg_file.write_text('synthetic:\n  hover_s: 0.1\n  ramp_s: 0.2\n  width: 32\n  height: 24\n')
    rc = main(['--config', str(cfg_file), '--out', str(tmp_path / 'out'), '--format', 'tum',
               '--layout', 'hall', '--start', 'centre', '--duration', '1', '--quiet'])
    assert rc == 0
    text = capsys.readouterr().out
    assert 'layout hall, start centre' in text and '21 frames 32x24' in text
    assert 'layout: hall' in (tmp_path / 'out' / 'synthetic.yaml').read_text()
    rc = main(['--out', str(tmp_path / 'bad'), '--layout', 'rooms', '--start', 'centre',
               '--quiet'])
    assert rc == 2 and 'rooms' in capsys.readouterr().err


def test_demo_options_pass_through():
    from vssm_ros.cli.demo import build_parser, flight_config
    from vssm_ros.cli.paths import config_path
    args = build_parser().parse_args(['--layout', 'rooms', '--duration', '500'])
    syn = flight_config([config_path('demo.yaml')], args.duration, args.peak_speed,
                        args.layout, args.start)
    assert (syn.layout, syn.start, syn.duration_s) == ('rooms', 'loop', 500.0)
    syn = flight_config([config_path('demo.yaml')], layout='hall', start='centre')
    assert (syn.layout, syn.start) == ('hall', 'centre')
    assert flight_config([config_path('demo.yaml')]) == SyntheticConfig()
