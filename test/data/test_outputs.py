# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The node's output messages: built with rosbags' Jazzy classes, serialised to CDR and read
back with the package's readers; and with rclpy-style classes (byte fields, keyword
construction)."""

import array
from types import SimpleNamespace

import numpy as np
import pytest

from vssm_ros.config import FramesConfig, OutputsConfig
from vssm_ros.data import messages as M
from vssm_ros.data import outputs as out
from vssm_ros.data.bags import bag_msg_types, bag_typestore
from vssm_ros.data.transforms import invert, pose_to_matrix
from vssm_ros.errors import MessageError
from vssm_ros.types import Estimate, Frame

STAMP = 1_700_000_123_456_789_012
TYPES = bag_msg_types('mcap')


def _cdr(msg, topic):
    """``msg`` after CDR serialisation and back, as a bag stores it."""
    store = bag_typestore('mcap')
    msgtype = out.MSG_TYPES[topic]
    return store.deserialize_cdr(store.serialize_cdr(msg, msgtype), msgtype)


def _estimate(stamp=STAMP, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=4)
    T = pose_to_matrix(rng.uniform(-3, 3, 3), q / np.linalg.norm(q))
    A = rng.normal(size=(6, 6))
    return Estimate(stamp, T, A @ A.T + np.eye(6) * 1e-3, rng.normal(size=3))


def test_topic_names_resolve_under_the_namespace():
    assert out.topic_name(out.ODOMETRY) == '/vssm/odometry'
    assert (out.topic_name(out.PREDICTED_DEPTH_STD, '/drone1/vssm/')
            == '/drone1/vssm/predicted/depth_std')
    assert out.topic_name(out.TF) == '/tf'
    assert out.topic_name(out.DIAGNOSTICS, '/x') == '/diagnostics'
    assert set(out.LATCHED) <= set(out.MSG_TYPES)


def test_odometry_round_trip():
    est = _estimate()
    msg = _cdr(out.odometry_for_estimate(TYPES, est, FramesConfig()), out.ODOMETRY)
    assert msg.header.frame_id == 'map' and msg.child_frame_id == 'base_link'
    assert M.header_stamp_ns(msg) == STAMP
    # Pose and covariance exactly as estimated (covariance row-major, x y z rx ry rz).
    got = M.pose_from_msg(msg)
    np.testing.assert_allclose(got.T_world_body, est.T_world_body, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(msg.pose.covariance).reshape(6, 6), est.cov)
    assert msg.pose.covariance[1] == est.cov[0, 1] and msg.pose.covariance[6] == est.cov[1, 0]
    # REP-105: the twist is in the child frame: v_body = R^T v_world.
    v = msg.twist.twist.linear
    R = est.T_world_body[:3, :3]
    np.testing.assert_allclose([v.x, v.y, v.z], R.T @ est.v_world, atol=1e-12)
    np.testing.assert_allclose(got.v_world, est.v_world, atol=1e-12)


def test_tf_standalone_chain_equals_the_estimate():
    est = _estimate()
    T_map_odom = pose_to_matrix([1.0, -2.0, 0.5], [0.0, 0.0, np.sin(0.3), np.cos(0.3)])
    msg = _cdr(out.tf_message_for_estimate(TYPES, est, FramesConfig(), T_map_odom), out.TF)
    (a, b) = msg.transforms
    assert (a.header.frame_id, a.child_frame_id) == ('map', 'odom')
    assert (b.header.frame_id, b.child_frame_id) == ('odom', 'base_link')
    assert M.header_stamp_ns(a) == M.header_stamp_ns(b) == STAMP
    np.testing.assert_allclose(M.transform_to_matrix(a), T_map_odom, atol=1e-12)
    chain = M.transform_to_matrix(a) @ M.transform_to_matrix(b)
    np.testing.assert_allclose(chain, est.T_world_body, atol=1e-12)
    # Default: map and odom coincide, odom -> base_link is the estimate itself.
    a0, b0 = out.tf_msgs_for_estimate(TYPES, est, FramesConfig())
    np.testing.assert_allclose(M.transform_to_matrix(a0), np.eye(4), atol=1e-15)
    np.testing.assert_allclose(M.transform_to_matrix(b0), est.T_world_body, atol=1e-12)


def test_tf_with_external_odometry_is_map_to_odom_only():
    est = _estimate()
    frames = FramesConfig(map_frame='world', odom_frame='vio_odom', standalone=False)
    T_odom_body = pose_to_matrix([0.1, 0.2, 0.3], [0.0, 0.0, 0.0, 1.0])
    T_map_odom = est.T_world_body @ invert(T_odom_body)
    (only,) = out.tf_msgs_for_estimate(TYPES, est, frames, T_map_odom)
    assert (only.header.frame_id, only.child_frame_id) == ('world', 'vio_odom')
    np.testing.assert_allclose(M.transform_to_matrix(only) @ T_odom_body, est.T_world_body,
                               atol=1e-12)


def test_path_is_bounded_and_in_order():
    path = out.PathAccumulator(TYPES, 'map', max_poses=3)
    ests = [_estimate(STAMP + i * 50_000_000, seed=i) for i in range(5)]
    for e in ests:
        msg = path.append(e)
    msg = _cdr(msg, out.PATH)
    assert len(path) == 3 and len(msg.poses) == 3
    assert msg.header.frame_id == 'map' and M.header_stamp_ns(msg) == ests[-1].stamp_ns
    for pose, e in zip(msg.poses, ests[2:]):
        assert pose.header.frame_id == 'map' and M.header_stamp_ns(pose) == e.stamp_ns
        np.testing.assert_allclose(M.pose_from_msg(pose).T_world_body, e.T_world_body,
                                   atol=1e-12)
    path.clear()
    assert len(path) == 0 and len(path.msg().poses) == 0
    with pytest.raises(MessageError, match='at least 1 pose'):
        out.PathAccumulator(TYPES, 'map', 0)


def test_map_cloud_round_trip():
    rng = np.random.default_rng(1)
    pts = {'xyz': rng.uniform(-5, 5, (50, 3)).astype(np.float32),
           'rgb': rng.integers(0, 256, (50, 3), dtype=np.uint8),
           'occupancy': rng.uniform(0, 1, 50).astype(np.float32),
           'logit_std': np.ones(50, np.float32)}
    msg = _cdr(out.map_cloud_msg(TYPES, pts, STAMP, 'map'), out.MAP_CLOUD)
    assert [f.name for f in msg.fields] == ['x', 'y', 'z', 'rgb', 'occupancy']
    assert msg.header.frame_id == 'map' and M.header_stamp_ns(msg) == STAMP
    back = M.pointcloud2_to_numpy(msg)
    np.testing.assert_array_equal(back['xyz'], pts['xyz'])
    np.testing.assert_array_equal(back['rgb'], pts['rgb'])
    np.testing.assert_array_equal(back['occupancy'], pts['occupancy'])
    with pytest.raises(MessageError, match=r"map points lacks \['rgb', 'occupancy'\]"):
        out.map_cloud_msg(TYPES, {'xyz': pts['xyz']}, STAMP, 'map')


def test_predicted_images_round_trip_with_nan():
    rng = np.random.default_rng(2)
    depth = rng.uniform(0.5, 4, (6, 8)).astype(np.float32)
    depth[0, :3] = np.nan
    std = (0.01 * depth).astype(np.float32)
    color = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    render = {'depth': depth, 'depth_std': std, 'color': color, 'hit': np.ones((6, 8))}
    msgs = out.predicted_image_msgs(TYPES, render, STAMP, 'cam_optical')
    assert set(msgs) == {out.PREDICTED_DEPTH, out.PREDICTED_DEPTH_STD, out.PREDICTED_COLOR}
    back = {k: _cdr(m, k) for k, m in msgs.items()}
    assert [back[k].encoding for k in (out.PREDICTED_DEPTH, out.PREDICTED_DEPTH_STD,
                                       out.PREDICTED_COLOR)] == ['32FC1', '32FC1', 'rgb8']
    assert all(m.header.frame_id == 'cam_optical' and M.header_stamp_ns(m) == STAMP
               for m in back.values())
    np.testing.assert_array_equal(M.image_to_numpy(back[out.PREDICTED_DEPTH]), depth)  # NaN too
    np.testing.assert_array_equal(M.image_to_numpy(back[out.PREDICTED_DEPTH_STD]), std)
    np.testing.assert_array_equal(M.rgb_from_image(back[out.PREDICTED_COLOR]), color)
    with pytest.raises(MessageError, match=r"render lacks \['depth_std'\]"):
        out.predicted_image_msgs(TYPES, {'depth': depth, 'color': color}, STAMP, 'c')


def test_diagnostics_round_trip():
    values = {'frames_received': 12, 'frames_dropped': np.int64(3),
              'latency_p50_ms': 12.3456789, 'imu': True}
    msg = out.diagnostics_msg(TYPES, STAMP, out.DIAGNOSTIC_NAME, M.DIAG_WARN, 'engine lags',
                              values)
    msg = _cdr(msg, out.DIAGNOSTICS)
    assert M.header_stamp_ns(msg) == STAMP
    (st,) = msg.status
    assert (st.level, st.name, st.message) == (1, 'vssm_ros: slam', 'engine lags')
    assert [(kv.key, kv.value) for kv in st.values] == [
        ('frames_received', '12'), ('frames_dropped', '3'), ('latency_p50_ms', '12.3457'),
        ('imu', 'true')]
    with pytest.raises(MessageError, match='diagnostic level must be'):
        out.diagnostics_msg(TYPES, STAMP, 'x', 7, '', {})


class _RclpyLike:
    """Keyword construction with rclpy's type checks on the fields these builders fill."""

    def __init__(self, **kw):
        for k, v in kw.items():
            if k == 'level':
                assert isinstance(v, bytes) and len(v) == 1, v   # rclpy: 'byte' is bytes
            if k == 'data':
                assert isinstance(v, array.array) and v.typecode == 'B'
            if k in ('poses', 'values', 'status', 'transforms'):
                assert isinstance(v, list)
            setattr(self, k, v)


def _rclpy_types():
    modules = {}
    for name, full in M.TYPE_NAMES.items():
        pkg, _, short = full.split('/')
        setattr(modules.setdefault(pkg, SimpleNamespace()), short,
                type(name, (_RclpyLike,), {}))
    return M.MsgTypes.from_modules(modules)


def test_builders_with_rclpy_style_classes():
    types = _rclpy_types()
    est = _estimate()
    diag = out.diagnostics_msg(types, STAMP, 'n', M.DIAG_ERROR, 'm', {'a': 1.5})
    assert diag.status[0].level == b'\x02' and diag.status[0].values[0].value == '1.5'
    path = out.PathAccumulator(types, 'map', 10)
    path.append(est)
    msg = path.append(_estimate(STAMP + 1))
    assert len(msg.poses) == 2 and M.header_stamp_ns(msg) == STAMP + 1
    tf = out.tf_message_for_estimate(types, est, FramesConfig())
    assert [t.child_frame_id for t in tf.transforms] == ['odom', 'base_link']
    odom = out.odometry_for_estimate(types, est, FramesConfig())
    np.testing.assert_allclose(M.pose_from_msg(odom).T_world_body, est.T_world_body,
                               atol=1e-12)
    render = {'depth': np.ones((2, 3), np.float32), 'depth_std': np.ones((2, 3), np.float32),
              'color': np.zeros((2, 3, 3), np.uint8)}
    imgs = out.predicted_image_msgs(types, render, STAMP, 'c')
    np.testing.assert_array_equal(M.image_to_numpy(imgs[out.PREDICTED_DEPTH]), np.ones((2, 3)))


def test_rate_limiter_by_stamps():
    s = 1_000_000_000
    lim = out.StampRateLimiter(0.25)
    stamps = [0, 100, 200, 250, 300, 499, 500, 510] + [100]   # ms; the last one goes back
    assert [lim.due(t * 1_000_000 + s) for t in stamps] == [
        True, False, False, True, False, False, True, False, True]
    every = out.StampRateLimiter(0.0)
    assert all(every.due(t) for t in (5, 5, 6))
    never = out.StampRateLimiter(-1.0)
    assert not any(never.due(t) for t in (0, 10**10))
    lim.reset()
    assert lim.due(s + 510_000_000)
    with pytest.raises(MessageError, match='finite'):
        out.StampRateLimiter(float('nan'))


class _StubEngine:
    """Records render calls; returns constant images and a two-point map."""

    def __init__(self):
        self.renders = []
        self.map_args = []

    def render(self, T_world_cam, K, width, height):
        self.renders.append((T_world_cam, K, width, height))
        return {'depth': np.full((height, width), 2.0, np.float32),
                'depth_std': np.full((height, width), 0.1, np.float32),
                'color': np.zeros((height, width, 3), np.uint8)}

    def map_points(self, **kwargs):
        self.map_args.append(kwargs)
        return {'xyz': np.eye(3)[:2].astype(np.float32), 'rgb': np.zeros((2, 3), np.uint8),
                'occupancy': np.ones(2, np.float32)}

    def predict(self, render=True):
        assert not render, 'the schedule needs the motion only'
        return _rollout()

    def cost_field(self):
        return SimpleNamespace(slice=lambda z: _grid(z))


def _rollout(S=64, N=5, seed=0):
    """Samples moving at 1 m/s along x from (1, 2, 3), spreading in y, yawing 0.1 rad/step."""
    rng = np.random.default_rng(seed)
    t = 0.1 * np.arange(1, N + 1)
    p = np.zeros((S, N, 3))
    p[..., 0] = 1.0 + t
    p[..., 1] = 2.0 + rng.normal(size=(S, 1)) * 0.05 * t
    p[..., 2] = 3.0
    yaw = 0.1 * np.arange(1, N + 1)
    R = np.zeros((S, N, 3, 3))
    R[..., 0, 0] = R[..., 1, 1] = np.cos(yaw)
    R[..., 0, 1], R[..., 1, 0] = -np.sin(yaw), np.sin(yaw)
    R[..., 2, 2] = 1.0
    return {'t': t, 'p': p, 'R': R}


def _grid(z):
    data = np.full((3, 4), -1, np.int8)
    data[1, :] = [0, 10, 50, 100]
    return {'data': data, 'origin_xy': np.array([-1.0, -2.0]), 'resolution': 0.25,
            'height': round(z / 0.25) * 0.25}


def test_schedule_publishes_what_is_due():
    cfg = OutputsConfig(path_max_poses=2, path_period_s=0.1, map_cloud_period_s=0.2,
                        predicted_period_s=0.1, predicted_max_width=320,
                        predicted_path_period_s=-1.0, cost_slice_period_s=-1.0)
    sched = out.OutputSchedule(TYPES, FramesConfig(), cfg, 'cam')
    engine = _StubEngine()
    K = np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]])
    T_body_cam = pose_to_matrix([0.1, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0])
    names = []
    for i in range(4):   # 0, 50, 100, 150 ms
        est = _estimate(STAMP + i * 50_000_000, seed=i)
        frame = Frame(est.stamp_ns, np.zeros((480, 640, 3), np.uint8),
                      np.ones((480, 640), np.float32), K, T_body_cam)
        got = sched.for_estimate(est) + sched.for_frame(frame, est, engine)
        names.append([n for n, _ in got])
        assert all(out.MSG_TYPES[n] for n in names[-1])
    pose, path = [out.TF, out.ODOMETRY], [out.PATH]   # the path every 0.1 s: frames 0, 2
    pred = [out.PREDICTED_DEPTH, out.PREDICTED_DEPTH_STD, out.PREDICTED_COLOR]
    assert names == [pose + path + pred + [out.MAP_CLOUD], pose, pose + path + pred, pose]
    assert len(sched.path) == 2   # every pose went in (the newest two kept)
    # 640 wide > 320: rendered at half size, from the camera pose of the estimate.
    (T0, K0, w0, h0), _ = engine.renders
    assert (w0, h0) == (320, 240) and K0[0, 0] == 250.0 and K0[0, 2] == 159.75
    np.testing.assert_allclose(T0, _estimate(STAMP, seed=0).T_world_body @ T_body_cam)
    assert sched.last_map_ns == STAMP and len(sched.path) == 2
    # The cloud holds the blocks near the drone only: a bounded cost however large the map.
    assert engine.map_args == [{'radius': cfg.map_cloud_radius}]
    sched.reset()
    assert len(sched.path) == 0 and sched.last_map_ns is None
    est = _estimate(STAMP + 10**9)
    assert [n for n, _ in sched.for_frame(frame, est, engine)] == pred + [out.MAP_CLOUD]


def test_planner_outputs_are_due_at_their_own_rates_and_put_off_while_busy():
    cfg = OutputsConfig(map_cloud_period_s=-1.0, predicted_period_s=-1.0,
                        predicted_path_period_s=0.1, cost_slice_period_s=0.2)
    sched = out.OutputSchedule(TYPES, FramesConfig(), cfg, 'cam')
    engine = _StubEngine()
    K = np.array([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])
    names = []
    for i, busy in enumerate([False, False, True, True, False]):   # 0, 50, ..., 200 ms
        est = _estimate(STAMP + i * 50_000_000, seed=i)
        frame = Frame(est.stamp_ns, np.zeros((48, 64, 3), np.uint8),
                      np.ones((48, 64), np.float32), K, np.eye(4))
        names.append([n for n, _ in sched.for_frame(frame, est, engine, defer=busy)])
    path = [out.PREDICTED_PATH, out.PREDICTED_POSE]
    # 100 ms: due, but a newer frame waits: put off; 150 ms: still busy; 200 ms: idle again.
    assert names == [path + [out.COST_SLICE], [], [], [], path + [out.COST_SLICE]]


def test_the_first_outputs_are_put_off_while_frames_wait_at_start_up():
    # The first keyframe leaves frames waiting: the first renders wait for an idle moment
    # too, at most OUTPUT_DEFER periods from the first frame; a reset starts over.
    cfg = OutputsConfig(map_cloud_period_s=-1.0, predicted_period_s=-1.0,
                        predicted_path_period_s=-1.0, cost_slice_period_s=0.2)
    sched = out.OutputSchedule(TYPES, FramesConfig(), cfg, 'cam')
    engine = _StubEngine()
    K = np.array([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])

    def names(i, busy):
        est = _estimate(STAMP + i * 100_000_000, seed=i)
        frame = Frame(est.stamp_ns, np.zeros((48, 64, 3), np.uint8),
                      np.ones((48, 64), np.float32), K, np.eye(4))
        return [n for n, _ in sched.for_frame(frame, est, engine, defer=busy)]

    assert [names(i, True) for i in range(8)] == [[]] * 8    # 0-0.7 s: busy, < 4 periods
    assert names(8, True) == [out.COST_SLICE]                 # 0.8 s: put off no longer
    sched.reset()
    assert names(20, True) == [] and names(21, False) == [out.COST_SLICE]


def test_predicted_path_is_the_mean_rollout_with_its_spread():
    roll = _rollout()
    msgs = out.predicted_path_msgs(TYPES, roll, STAMP, 'map')
    path, pose = msgs[out.PREDICTED_PATH], msgs[out.PREDICTED_POSE]
    assert [M.header_stamp_ns(p) for p in path.poses] == \
        [STAMP + k * 100_000_000 for k in range(1, 6)]
    assert M.header_stamp_ns(path) == M.header_stamp_ns(pose) == STAMP + 500_000_000
    for k, p in enumerate(path.poses):
        T = M.pose_from_msg(p).T_world_body
        np.testing.assert_allclose(T[:3, 3], roll['p'][:, k].mean(axis=0), atol=1e-12)
        np.testing.assert_allclose(T[:3, :3], roll['R'][0, k], atol=1e-9)
    cov = np.asarray(pose.pose.covariance).reshape(6, 6)
    np.testing.assert_allclose(cov[:3, :3], np.cov(roll['p'][:, -1].T), atol=1e-12)
    assert cov[1, 1] > 0 and cov[0, 0] == pytest.approx(0.0, abs=1e-20)
    np.testing.assert_allclose(cov[3:, 3:], 0.0, atol=1e-12)   # every sample turns the same
    with pytest.raises(MessageError, match='rollout lacks'):
        out.predicted_path_msgs(TYPES, {'t': roll['t']}, STAMP, 'map')


@pytest.mark.parametrize('types', [TYPES, 'rclpy'])
def test_cost_slice_is_an_occupancy_grid(types):
    if types == 'rclpy':
        types = _rclpy_like_types()
    grid = _grid(1.1)
    msg = out.cost_slice_msg(types, grid, STAMP, 'map')
    info = msg.info
    assert (info.width, info.height, info.resolution) == (4, 3, 0.25)
    assert (info.origin.position.x, info.origin.position.y, info.origin.position.z) == \
        (-1.0, -2.0, 1.0)
    assert M.header_stamp_ns(msg) == STAMP and msg.header.frame_id == 'map'
    np.testing.assert_array_equal(np.asarray(list(msg.data), np.int8).reshape(3, 4),
                                  grid['data'])


def _rclpy_like_types():
    """The bag classes, but filled as rclpy fills them (int8[] as array.array('b'))."""
    return M.MsgTypes({k: getattr(TYPES, k) for k in M.TYPE_NAMES}, 'rclpy')


def test_angular_rate_and_twist_covariance():
    rng = np.random.default_rng(3)
    w = np.array([0.3, -0.2, 1.0])   # rad/s, body
    dt = 0.05
    T0 = _estimate(STAMP).T_world_body
    K = np.array([[0, -w[2], w[1]], [w[2], 0, -w[0]], [-w[1], w[0], 0]]) * dt
    a = np.linalg.norm(w) * dt
    Exp = np.eye(3) + np.sin(a) / a * K + (1 - np.cos(a)) / a ** 2 * K @ K
    T1 = T0.copy()
    T1[:3, :3] = T0[:3, :3] @ Exp
    np.testing.assert_allclose(out.angular_rate(T0, T1, dt), w, atol=1e-9)
    assert np.all(out.angular_rate(T0, T1, 0.0) == 0)
    A = rng.normal(size=(6, 6))
    prev = Estimate(STAMP, T0, A @ A.T, np.zeros(3))
    cur = Estimate(STAMP + 50_000_000, T1, 2 * A @ A.T, np.array([1.0, 0, 0]))
    w_body, cov = out.twist_of(cur, prev)
    np.testing.assert_allclose(w_body, w, atol=1e-9)
    R = T1[:3, :3]
    np.testing.assert_allclose(cov[:3, :3], R.T @ (3 * A @ A.T)[:3, :3] @ R / dt ** 2)
    assert np.all(cov[:3, 3:] == 0) and np.all(np.linalg.eigvalsh(cov) > -1e-9)
    odom = out.odometry_for_estimate(TYPES, cur, FramesConfig(), prev)
    ang = odom.twist.twist.angular
    np.testing.assert_allclose([ang.x, ang.y, ang.z], w, atol=1e-9)
    np.testing.assert_allclose(np.asarray(odom.twist.covariance).reshape(6, 6), cov)
    first = out.odometry_for_estimate(TYPES, cur, FramesConfig())
    assert np.all(np.asarray(first.twist.covariance) == 0)   # no previous: nothing known
