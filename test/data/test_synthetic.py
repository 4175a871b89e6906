# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The synthetic flight: exact geometry, physically consistent IMU, the depth sensor model,
determinism, and the files it writes."""

import hashlib

import numpy as np
import pytest

from vssm_ros.config import SyntheticConfig
from vssm_ros.data.synthetic import (EPOCH_NS, GRAVITY, Scene, cached_flight_dir,
                                     generate_flight, write_flight)
from vssm_ros.errors import ConfigError
from vssm_ros.types import Frame, ImuSample, PoseSample

# 5 s: 1 s hover, 2 s ramp, 2 s at full speed; small images keep rendering cheap.
CFG = SyntheticConfig(duration_s=5.0, width=64, height=48)


@pytest.fixture(scope='module')
def flight():
    return generate_flight(CFG)


def _hat(w):
    return np.array([[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]])


def _exp(w):
    """SO(3) exponential (Rodrigues), independent of the package."""
    th = np.linalg.norm(w)
    K = _hat(w)
    if th < 1e-12:
        return np.eye(3) + K
    return np.eye(3) + np.sin(th) / th * K + (1 - np.cos(th)) / th ** 2 * K @ K


def _log(R):
    th = np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1))
    v = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]]) / 2
    return v if th < 1e-12 else v * th / np.sin(th)


def _integrate(flight, acc, gyro, g=GRAVITY):
    """Euler as in the design: R <- R Exp(w dt), v <- v + (R a + g) dt,
    p <- p + v dt + 1/2 (R a + g) dt². Returns positions (N, 3) and rotations (N, 3, 3)."""
    gt = flight.gt_imu
    dt = np.diff(flight.seconds(gt.stamps_ns))
    R = gt.T_world_body[0, :3, :3].copy()
    p = gt.T_world_body[0, :3, 3].copy()
    v = gt.v_world[0].copy()
    ps, Rs = [p], [R]
    for k in range(len(dt)):
        R = R @ _exp(gyro[k] * dt[k])
        a_world = R @ acc[k] + g
        p = p + v * dt[k] + 0.5 * a_world * dt[k] ** 2
        v = v + a_world * dt[k]
        ps.append(p)
        Rs.append(R)
    return np.array(ps), np.array(Rs)


# ----------------------------------------------------------------------------------------------
# Flight and IMU


def test_noise_free_imu_integrates_to_the_trajectory(flight):
    imu, gt = flight.imu, flight.gt_imu
    assert len(imu.stamps_ns) == 1001
    p, R = _integrate(flight, imu.acc_true, imu.gyro_true)
    p_err = np.linalg.norm(p - gt.T_world_body[:, :3, 3], axis=1)
    r_err = [np.linalg.norm(_log(Ri.T @ Rt)) for Ri, Rt in zip(R, gt.T_world_body[:, :3, :3])]
    assert p_err.max() < 0.01   # measured 0.6 mm over 5 s
    assert max(r_err) < 5e-3   # measured 2.3 mrad (first-order Euler, mostly yaw)
    # The bar can fail: the flight moves metres, and a wrong gravity sign or a specific force
    # taken in the world frame drifts far beyond it.
    travelled = np.linalg.norm(gt.T_world_body[-1, :3, 3] - gt.T_world_body[0, :3, 3])
    assert travelled > 1.0
    p_bad, _ = _integrate(flight, imu.acc_true, imu.gyro_true, g=-GRAVITY)
    assert np.linalg.norm(p_bad - gt.T_world_body[:, :3, 3], axis=1).max() > 1.0
    # Specific force given in the world frame instead of the body frame.
    acc_world = np.einsum('nij,nj->ni', gt.T_world_body[:, :3, :3], imu.acc_true)
    p_bad, _ = _integrate(flight, acc_world, imu.gyro_true)
    assert np.linalg.norm(p_bad - gt.T_world_body[:, :3, 3], axis=1).max() > 0.1


def check_state_derivatives(flight, t, h=1e-5):
    """v, a and omega of the flight's state at t against central differences of p, v and R;
    the thrust axis along a - g. Returns the state."""
    s, lo, hi = flight.state_at(t), flight.state_at(t - h), flight.state_at(t + h)
    np.testing.assert_allclose(s.v[0], (hi.p[0] - lo.p[0]) / (2 * h), atol=1e-8)
    np.testing.assert_allclose(s.a[0], (hi.v[0] - lo.v[0]) / (2 * h), atol=1e-7)
    omega_fd = _log(lo.R[0].T @ hi.R[0]) / (2 * h)
    np.testing.assert_allclose(s.omega[0], omega_fd, atol=1e-8)
    z = s.R[0][:, 2]
    f = s.a[0] - GRAVITY
    np.testing.assert_allclose(z, f / np.linalg.norm(f), atol=1e-12)
    return s


def test_derivatives_match_finite_differences(flight):
    for t in (1.5, 2.7, 4.2):
        s = check_state_derivatives(flight, t)
        # Rotations orthonormal.
        np.testing.assert_allclose(s.R[0].T @ s.R[0], np.eye(3), atol=1e-12)
    assert np.abs(flight.state_at(3.5).omega).max() > 0.05   # it does rotate


def test_accelerometer_at_rest_reads_gravity_plus_bias(flight):
    imu = flight.imu
    rest = flight.seconds(imu.stamps_ns) < CFG.hover_s
    assert rest.sum() == 200
    np.testing.assert_allclose(imu.acc_true[rest], [[0, 0, 9.81]] * rest.sum(), atol=1e-12)
    np.testing.assert_allclose(imu.gyro_true[rest], 0, atol=1e-12)
    # The noisy mean: white noise 0.02 * sqrt(200) = 0.28 m/s² per sample, /sqrt(200) in the
    # mean; tolerance 4 sigma.
    acc_mean = imu.acc[rest].mean(axis=0)
    np.testing.assert_allclose(acc_mean, np.array([0, 0, 9.81]) + imu.acc_bias[rest].mean(0),
                               atol=4 * CFG.acc_noise)
    assert abs(acc_mean[2] - 9.81) < 0.3 and np.abs(acc_mean[:2]).max() < 0.3
    np.testing.assert_allclose(imu.gyro[rest].mean(0), imu.gyro_bias[rest].mean(0),
                               atol=4 * CFG.gyro_noise)


def test_imu_noise_and_bias_statistics():
    cfg = SyntheticConfig(duration_s=20.0, seed=5)
    imu = generate_flight(cfg).imu
    rate = cfg.imu_rate_hz
    for meas, true, bias, density, walk in (
            (imu.acc, imu.acc_true, imu.acc_bias, cfg.acc_noise, cfg.acc_bias_walk),
            (imu.gyro, imu.gyro_true, imu.gyro_bias, cfg.gyro_noise, cfg.gyro_bias_walk)):
        white = meas - true - bias
        assert white.std() == pytest.approx(density * np.sqrt(rate), rel=0.05)
        assert np.diff(bias, axis=0).std() == pytest.approx(walk / np.sqrt(rate), rel=0.05)
    assert np.abs(imu.acc_bias[0]).max() > 0   # an initial bias is drawn


def test_flight_is_clear_smooth_and_at_the_configured_speed():
    for seed in range(4):
        for cfg in (SyntheticConfig(seed=seed), SyntheticConfig(seed=seed, duration_s=5.0,
                                                                peak_speed=1.7)):
            fl = generate_flight(cfg)
            gt = fl.gt_imu
            p = gt.T_world_body[:, :3, 3]
            assert fl.scene.distance(p).min() >= 0.5
            assert not fl.scene.occupied(p).any()
            assert 1.0 <= p[:, 2].min() and p[:, 2].max() <= 2.0
            speed = np.linalg.norm(gt.v_world, axis=1)
            assert speed.max() == pytest.approx(cfg.peak_speed, rel=0.05)
            assert speed[0] == 0.0
            # The camera keeps seeing the room: its optical axis meets a wall or floor no
            # closer than 0.8 m.
            T_wc = gt.T_world_body @ fl.T_body_cam
            t, ids = fl.scene.raycast_ids(T_wc[:, :3, 3].copy(), T_wc[:, :3, 2].copy())
            assert np.all(ids >= 0)
            assert t[ids < 6].min() > 0.8


def test_small_room_is_rejected():
    with pytest.raises(ConfigError, match='room_size'):
        generate_flight(SyntheticConfig(room_size=(3.0, 3.0, 3.0)))
    with pytest.raises(ConfigError, match='obstacles'):
        generate_flight(SyntheticConfig(room_size=(4.5, 4.5, 3.0), n_obstacles=40))


# ----------------------------------------------------------------------------------------------
# Scene geometry


def _scene():
    # One box rotated by 30 degrees about z and one cylinder, in a 6 x 5 x 3 room.
    return Scene((6.0, 5.0, 3.0), [[2.0, 2.0, 0.5]], [[0.5, 0.25, 0.5]], [np.pi / 6],
                 [[4.5, 3.5]], [0.3], [[0.0, 2.0]])


def test_raycast_known_hits():
    sc = _scene()
    o = np.array([[0.5, 2.0, 0.5], [4.5, 1.0, 1.0], [4.5, 3.5, 2.5], [3.0, 1.0, 1.5],
                  [3.0, 1.0, 1.5]])
    d = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, -2.0], [0, 0, 1.0], [-3.0, -4.0, 0]])
    t, hit, rgb = sc.raycast(o, d)
    # Along y = 2 the box's local coordinates are ((x-2) c, -(x-2) s): inside while
    # |x-2| <= min(0.5 / c, 0.25 / s) = 0.5 (its y faces), so the ray enters at x = 1.5.
    c, s = np.cos(np.pi / 6), np.sin(np.pi / 6)
    assert min(0.5 / c, 0.25 / s) == pytest.approx(0.5)
    np.testing.assert_allclose(t[0], 1.0, atol=1e-12)                  # rotated box
    np.testing.assert_allclose(t[1], 3.5 - 0.3 - 1.0, atol=1e-12)      # cylinder side
    np.testing.assert_allclose(t[2], 0.25, atol=1e-12)                 # cylinder top cap, |d|=2
    np.testing.assert_allclose(t[3], 1.5, atol=1e-12)                  # ceiling
    np.testing.assert_allclose(t[4], 0.25, atol=1e-12)                 # wall y = 0, |d| = 5
    np.testing.assert_allclose(hit, o + t[:, None] * d, atol=1e-12)
    assert rgb.min() >= 0 and rgb.max() <= 1
    # Outside the room looking away from it: no hit.
    t, hit, rgb = sc.raycast(np.array([[-1.0, 1.0, 1.0]]), np.array([[-1.0, 0, 0]]))
    assert np.isinf(t[0]) and np.isnan(hit).all() and not rgb.any()
    # From outside looking in: the outer side of the wall x = 0.
    t, _, _ = sc.raycast(np.array([[-1.0, 1.0, 1.0]]), np.array([[1.0, 0, 0]]))
    assert t[0] == pytest.approx(1.0)


def test_distance_and_occupancy_exact():
    sc = _scene()
    c, s = np.cos(np.pi / 6), np.sin(np.pi / 6)
    ex = np.array([c, s, 0])   # box x axis in the world
    pts = np.array([
        [2.0, 2.0, 0.5] + 0.8 * ex,            # 0.3 off the box's +x face
        [4.5 + 0.5, 3.5, 1.0],                 # 0.2 off the cylinder side
        [4.5, 3.5, 2.4],                       # 0.4 above the cylinder top
        [3.0, 0.1, 1.5],                       # 0.1 off the wall y = 0
        [2.0, 2.0, 0.6],                       # inside the box: 0.25 to its y faces
        [7.0, 1.0, 1.0],                       # outside the room: 1.0 to x = 6
    ])
    np.testing.assert_allclose(sc.distance(pts), [0.3, 0.2, 0.4, 0.1, 0.25, 1.0], atol=1e-12)
    np.testing.assert_array_equal(sc.occupied(pts), [False, False, False, False, True, True])


def test_raycast_agrees_with_sphere_tracing_the_distance():
    # Two independent implementations (ray intersection, exact distance) must agree.
    fl = generate_flight(SyntheticConfig(seed=2))
    sc = fl.scene
    rng = np.random.default_rng(0)
    origins = fl.gt_imu.T_world_body[::10, :3, 3]
    o = origins[rng.integers(0, len(origins), 300)]
    d = rng.normal(size=(300, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    t_ray, _, _ = sc.raycast(o, d)
    t = np.zeros(300)
    for _ in range(300):
        step = sc.distance(o + t[:, None] * d)
        # Stop at the surface: an unsigned distance would march on through the solid.
        t += np.where(step > 1e-10, step, 0.0)
    done = sc.distance(o + t[:, None] * d) < 1e-9
    assert done.mean() > 0.9
    np.testing.assert_allclose(t[done], t_ray[done], atol=1e-6)


def test_render_speed_and_texture():
    import time
    fl = generate_flight(SyntheticConfig(duration_s=3.0))
    rgb, depth = fl.render(fl.T_world_cam(40))
    # Rich texture: strong local gradients almost everywhere, no large flat area.
    gray = rgb.astype(float).mean(axis=2)
    grad = np.hypot(np.diff(gray, axis=0)[:, :-1], np.diff(gray, axis=1)[:-1])
    assert np.median(grad) > 2.0
    assert rgb.std() > 20
    # < 50 ms for 160x120 (budget check with slack for a loaded test machine; the measured
    # time is reported by the benchmark, not asserted tightly here).
    t0 = time.process_time()
    for _ in range(3):
        fl.render(fl.T_world_cam(40))
    assert (time.process_time() - t0) / 3 < 0.2


# ----------------------------------------------------------------------------------------------
# Camera


def _backproject(depth, K, T_world_cam):
    v, u = np.nonzero(np.isfinite(depth))
    z = depth[v, u].astype(np.float64)
    p_cam = np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], -1)
    return p_cam @ T_world_cam[:3, :3].T + T_world_cam[:3, 3]


def test_clean_depth_backprojects_onto_the_surfaces(flight):
    for index in (0, 50, 99):
        T_wc = flight.T_world_cam(index)
        _, depth = flight.render(T_wc, noise=False)
        assert np.isfinite(depth).all()
        pts = _backproject(depth, flight.K, T_wc)
        dist = flight.scene.distance(pts)
        assert np.median(dist) < 1e-3   # measured ~1e-7 (float32 depth)
        assert np.percentile(dist, 99) < 1e-3
    # And the z-depth convention: treating depth as ray length misses the surfaces.
    v, u = np.nonzero(np.isfinite(depth))
    ray = np.stack([(u - flight.K[0, 2]) / flight.K[0, 0], (v - flight.K[1, 2]) / flight.K[1, 1],
                    np.ones(u.size)], -1)
    ray /= np.linalg.norm(ray, axis=1, keepdims=True)
    wrong = (ray * depth[v, u, None]) @ T_wc[:3, :3].T + T_wc[:3, 3]
    assert np.median(flight.scene.distance(wrong)) > 0.01


def _facing_wall_pose(range_m, room=(8.0, 6.0, 3.0)):
    # Optical axis along world +x, towards the wall x = Lx, range_m from it.
    T = np.eye(4)
    T[:3, :3] = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    T[:3, 3] = (room[0] - range_m, room[1] / 2, room[2] / 2)
    return T


def test_depth_noise_model_and_dropouts():
    cfg = SyntheticConfig(duration_s=2.0, n_obstacles=0, depth_dropout=0.05)
    fl = generate_flight(cfg)
    rng = np.random.default_rng(1)
    for z in (1.5, 4.0):
        T = _facing_wall_pose(z)
        _, clean = fl.render(T)
        wall = np.abs(clean - z) < 1e-5   # a plane facing the camera has one z-depth
        assert wall.mean() > 0.3
        diffs, dropped = [], []
        for _ in range(3):
            _, noisy = fl.render(T, noise=True, rng=rng)
            diffs.append((noisy - clean)[wall & np.isfinite(noisy)])
            dropped.append(np.isnan(noisy[wall]))
        sigma = cfg.depth_noise_a + cfg.depth_noise_b * z ** 2
        assert np.concatenate(diffs).std() == pytest.approx(sigma, rel=0.1)
        assert abs(np.concatenate(diffs).mean()) < 0.1 * sigma
        assert np.concatenate(dropped).mean() == pytest.approx(cfg.depth_dropout, abs=0.01)
    # Beyond the sensor's range: invalid.
    fl_short = generate_flight(SyntheticConfig(duration_s=2.0, n_obstacles=0, depth_max=3.0))
    _, d = fl_short.render(_facing_wall_pose(4.0))
    _, d_near = fl_short.render(_facing_wall_pose(2.0))
    assert np.isnan(d[np.abs(clean - 4.0) < 1e-5]).all()
    assert np.isfinite(d_near).mean() > 0.5


def test_frames_rgb_noise_and_intrinsics(flight):
    f = flight.frame(10)
    assert f.rgb.dtype == np.uint8 and f.rgb.shape == (48, 64, 3)
    assert f.depth.dtype == np.float32 and f.depth.shape == (48, 64)
    fx = 32 / np.tan(np.deg2rad(CFG.fov_deg) / 2)
    np.testing.assert_allclose(f.K, [[fx, 0, 31.5], [0, fx, 23.5], [0, 0, 1]])
    clean_rgb, _ = flight.render(flight.T_world_cam(10))
    noise = f.rgb.astype(float) - clean_rgb
    assert noise.std() == pytest.approx(CFG.rgb_noise, rel=0.15)
    # The camera: 5 cm ahead of the body, looking forward (optical z = body x, tilted down).
    np.testing.assert_allclose(flight.T_body_cam[:3, 3], [0.05, 0.0, 0.02])
    z_opt = flight.T_body_cam[:3, 2]
    tilt = np.deg2rad(CFG.camera_tilt_deg)
    np.testing.assert_allclose(z_opt, [np.cos(tilt), 0, -np.sin(tilt)], atol=1e-12)
    np.testing.assert_allclose(flight.T_body_cam[:3, 0], [0, -1, 0], atol=1e-12)   # x right


# ----------------------------------------------------------------------------------------------
# Streams, determinism, files


def test_items_are_time_ordered_and_complete(flight):
    items = list(flight.items(noise=False))
    stamps = [it.stamp_ns for it in items]
    assert stamps == sorted(stamps) and stamps[0] == EPOCH_NS
    frames = [it for it in items if isinstance(it, Frame)]
    imus = [it for it in items if isinstance(it, ImuSample)]
    poses = [it for it in items if isinstance(it, PoseSample)]
    assert (len(frames), len(imus), len(poses)) == (101, 1001, 101)
    assert frames[-1].stamp_ns - frames[0].stamp_ns == 5 * 10 ** 9
    # Clocks aligned: every frame stamp is an IMU stamp, and the IMU comes first.
    imu_stamps = set(flight.imu.stamps_ns.tolist())
    assert all(f.stamp_ns in imu_stamps for f in frames)
    first = next(i for i, it in enumerate(items) if isinstance(it, Frame))
    assert isinstance(items[first - 1], ImuSample) and isinstance(items[first + 1], PoseSample)
    k = 30
    gt_k = flight.imu.stamps_ns.tolist().index(poses[k].stamp_ns)
    np.testing.assert_allclose(poses[k].T_world_body, flight.gt_imu.T_world_body[gt_k])
    np.testing.assert_allclose(poses[k].v_world, flight.gt_imu.v_world[gt_k])


def test_same_seed_same_bytes_other_seed_differs(flight):
    again = generate_flight(CFG)
    other = generate_flight(SyntheticConfig(duration_s=5.0, width=64, height=48, seed=1))

    def digest(fl):
        h = hashlib.sha256()
        for a in (fl.imu.acc, fl.imu.gyro, fl.imu.acc_bias, fl.gt_imu.T_world_body,
                  fl.scene.box_center, fl.scene.cyl_center, fl.frame(7).rgb, fl.frame(7).depth):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()

    assert digest(flight) == digest(again)
    assert digest(flight) != digest(other)
    # Frame noise depends on the frame, not on the order frames are rendered in.
    assert np.array_equal(flight.frame(7).rgb, again.frame(7).rgb)
    assert not np.array_equal(flight.frame(7).depth, flight.frame(8).depth)


TINY = SyntheticConfig(duration_s=0.5, width=32, height=24, hover_s=0.1, ramp_s=0.2)


def test_write_flight_bag_and_tum_round_trip(tmp_path):
    from vssm_ros.data.bags import BagReader
    from vssm_ros.data.tf_static import StaticTransforms
    from vssm_ros.data.tum import TumFolder

    fl = generate_flight(TINY)
    out = write_flight(fl, tmp_path / 'a', formats=('mcap', 'tum'))
    with BagReader(out['mcap']) as bag:
        topics = bag.topics
        assert topics['/camera/imu'].msgtype == 'sensor_msgs/msg/Imu'
        assert topics['/camera/imu'].count == 101
        assert topics['/camera/color/image_raw'].count == 11
        assert topics['/ground_truth/pose'].msgtype == 'geometry_msgs/msg/PoseStamped'
        for name in ('/camera/color/camera_info', '/camera/aligned_depth_to_color/image_raw',
                     '/camera/aligned_depth_to_color/camera_info'):
            assert topics[name].count == 11
        tfs = StaticTransforms()
        for _, _, msg in bag.messages(['/tf_static']):
            tfs.add_message(msg)
        assert ('base_link', 'camera_link') in tfs.edges
        assert ('camera_link', 'camera_color_optical_frame') in tfs.edges
        np.testing.assert_allclose(tfs.lookup('base_link', 'camera_color_optical_frame'),
                                   fl.T_body_cam, atol=1e-12)
        np.testing.assert_allclose(tfs.lookup('base_link', 'camera_imu_frame'), np.eye(4),
                                   atol=1e-12)
        stamp, imu = next((s, m) for _, s, m in bag.messages(['/camera/imu']))
        acc = imu.linear_acceleration
        np.testing.assert_allclose([acc.x, acc.y, acc.z], fl.imu.acc[0])
        assert stamp == EPOCH_NS
        _, depth_msg = bag.first_message('/camera/aligned_depth_to_color/image_raw')
        assert depth_msg.encoding == '16UC1'
        raw = np.frombuffer(bytes(depth_msg.data), np.uint16).reshape(24, 32)
        d0 = fl.frame(0).depth
        ok = np.isfinite(d0)
        np.testing.assert_allclose(raw[ok] / 1000.0, d0[ok], atol=5e-4 + 1e-6)
        assert (raw[~ok] == 0).all()
        _, pose = bag.first_message('/ground_truth/pose')
        p = pose.pose.position
        assert pose.header.frame_id == 'world'
        np.testing.assert_allclose([p.x, p.y, p.z], fl.gt_frames.T_world_body[0, :3, 3])
    # TUM: ground truth is the optical frame; frames read back with the written intrinsics.
    tum = TumFolder(out['tum'])
    assert len(tum) == 11
    gt = tum.ground_truth()
    np.testing.assert_allclose(gt[3].T_world_body, fl.T_world_cam(3), atol=1e-9)
    f3 = tum.load(tum.entries[3])
    np.testing.assert_array_equal(f3.rgb, fl.frame(3).rgb)
    np.testing.assert_allclose(f3.K, fl.K)
    assert (tmp_path / 'a' / 'synthetic.yaml').is_file()
    truth = np.load(tmp_path / 'a' / 'truth.npz')
    np.testing.assert_array_equal(truth['acc_bias'], fl.imu.acc_bias)
    # Deterministic files.
    out_b = write_flight(generate_flight(TINY), tmp_path / 'b', formats=('mcap',))
    files_a = sorted(p for p in out['mcap'].iterdir())
    files_b = sorted(p for p in out_b['mcap'].iterdir())
    assert [p.read_bytes() for p in files_a] == [p.read_bytes() for p in files_b]
    with pytest.raises(ConfigError, match='format'):
        write_flight(fl, tmp_path / 'c', formats=('zip',))


def test_cached_flight_dir_writes_once(tmp_path, monkeypatch):
    import vssm_ros.data.synthetic as synthetic
    first = cached_flight_dir(TINY, tmp_path, formats=('tum',))
    assert (first / 'tum' / 'rgb.txt').is_file()
    assert [p.name for p in tmp_path.iterdir()] == [first.name]   # no temporary left over

    def boom(cfg):
        raise AssertionError('regenerated a cached flight')

    monkeypatch.setattr(synthetic, 'generate_flight', boom)
    assert cached_flight_dir(TINY, tmp_path, formats=('tum',)) == first
    other = SyntheticConfig(**{**TINY.__dict__, 'seed': 9})
    with pytest.raises(AssertionError, match='regenerated'):
        cached_flight_dir(other, tmp_path, formats=('tum',))
    assert [p.name for p in tmp_path.iterdir()] == [first.name]   # failed write cleaned up


def test_cli_writes_and_summarises(tmp_path, capsys):
    from vssm_ros.cli.synth import main
    cfg_file = tmp_path / 'synth.yaml'
    cfg_file.write_text('synthetic:\n  seed: 3\n  hover_s: 0.1\n  ramp_s: 0.2\n  width: 32\n'
                        '  height: 24\n')
    rc = main(['--config', str(cfg_file), '--out', str(tmp_path / 'out'), '--format', 'tum',
               '--duration', '0.5', '--peak-speed', '0.8', '--quiet'])
    assert rc == 0
    text = capsys.readouterr().out
    assert 'seed 3' in text and 'peak speed 0.800 m/s' in text and '11 frames 32x24' in text
    assert (tmp_path / 'out' / 'tum' / 'groundtruth.txt').is_file()
    rc = main(['--out', str(tmp_path / 'bad'), '--duration', '-1', '--quiet'])
    assert rc == 2
    assert 'duration_s' in capsys.readouterr().err
