# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""vssm-replay --out-bag: the bag holds the node's topics and the input images at the image
stamps, its poses are the trajectory's, and a failed replay leaves no bag behind."""

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from vssm_ros.cli import replay
from vssm_ros.cli.out_bag import ReplayBag
from vssm_ros.cli.paths import config_path
from vssm_ros.config import SyntheticConfig, load_config
from vssm_ros.data import messages as M
from vssm_ros.data.bags import BagReader
from vssm_ros.data.export import read_ply
from vssm_ros.data.sources import Source, open_source
from vssm_ros.data.synthetic import generate_flight, write_flight
from vssm_ros.data.trajectory import read_tum_trajectory
from vssm_ros.data.transforms import pose_to_matrix
from vssm_ros.errors import SourceError
from vssm_ros.types import Frame

# 1.5 s at 10 Hz: 16 frames of 80x60 (stamps exactly 100 ms apart).
TINY = SyntheticConfig(duration_s=1.5, width=80, height=60, camera_rate_hz=10.0, hover_s=0.0,
                       ramp_s=0.5)
CAMERA = '/camera/color/image_raw', '/camera/aligned_depth_to_color/image_raw'
# A coarser map and fewer rays than the demo: this test is about the bag, not accuracy.
# Synchronous mapping: the last predicted depth is checked against the last view, which the
# default's lag of ``mapping_lag_frames`` (the map 6 frames behind, 0.6 s of this 10 Hz flight)
# leaves two thirds covered.
FAST = """
engine:
  map: {resolution: 0.06, truncation: 0.18}
  inference: {rays: 256, track_iters: 4, async_mapping: false}
"""


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    """The tiny flight as mcap, replayed through main() with --out-bag; the bag read back."""
    root = tmp_path_factory.mktemp('outbag')
    flight = generate_flight(TINY)
    inp = write_flight(flight, root, ('mcap',))['mcap']
    out, bag = root / 'out', root / 'replay_bag'
    fast = root / 'fast.yaml'
    fast.write_text(FAST)
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        rc = replay.main([str(inp), '--config', str(config_path('demo.yaml')), '--config',
                          str(fast), '--out', str(out), '--init-pose', 'ground_truth',
                          '--no-plots', '--out-bag', str(bag)])
    assert rc == 0, err.getvalue()
    msgs = {}
    with BagReader(bag) as reader:
        topics = reader.topics
        for topic, log_ns, msg in reader.messages(sorted(topics)):
            msgs.setdefault(topic, []).append((log_ns, msg))
    return dict(flight=flight, input=inp, out=out, bag=bag, topics=topics, msgs=msgs, root=root)


def test_topics_types_and_counts(run):
    got = {name: (t.msgtype, t.count) for name, t in run['topics'].items()}
    assert got == {
        '/tf_static': ('tf2_msgs/msg/TFMessage', 1),
        '/tf': ('tf2_msgs/msg/TFMessage', 16),
        '/vssm/odometry': ('nav_msgs/msg/Odometry', 16),
        # every 0.5 s of stamps: 0, 0.5, 1.0, 1.5 s
        '/vssm/path': ('nav_msgs/msg/Path', 4),
        '/vssm/predicted/depth': ('sensor_msgs/msg/Image', 4),
        '/vssm/predicted/depth_std': ('sensor_msgs/msg/Image', 4),
        '/vssm/predicted/color': ('sensor_msgs/msg/Image', 4),
        '/vssm/predicted/path': ('nav_msgs/msg/Path', 4),
        '/vssm/predicted/pose': ('geometry_msgs/msg/PoseWithCovarianceStamped', 4),
        # every 2 s: at 0 s
        '/vssm/cost_slice': ('nav_msgs/msg/OccupancyGrid', 1),
        # one tracking status per frame
        '/vssm/status': ('diagnostic_msgs/msg/DiagnosticStatus', 16),
        # every 1 s (0, 1.0 s) and the final map at 1.5 s
        '/vssm/map_cloud': ('sensor_msgs/msg/PointCloud2', 3),
        '/diagnostics': ('diagnostic_msgs/msg/DiagnosticArray', 2),
        # the input stream, under the input's names
        '/camera/color/image_raw': ('sensor_msgs/msg/Image', 16),
        '/camera/aligned_depth_to_color/image_raw': ('sensor_msgs/msg/Image', 16),
        '/camera/color/camera_info': ('sensor_msgs/msg/CameraInfo', 16),
    }
    m = json.loads((run['out'] / 'metrics.json').read_text())
    assert m['out_bag'] == {'path': str(run['bag']),
                            'messages': {k: v for k, (_, v) in got.items()}}
    meta = (run['bag'] / 'metadata.yaml').read_text()
    assert 'storage_identifier: mcap' in meta
    # /tf_static, the map cloud and the cost slice
    assert meta.count('durability: transient_local') == 3
    assert [p.name for p in run['root'].iterdir() if p.name.startswith('.')] == []


def test_stamps_are_the_image_stamps(run):
    frame_stamps = [int(s) for s in run['flight'].frame_stamps_ns]
    for topic in ('/tf', '/vssm/odometry', *CAMERA):
        logs = [log for log, _ in run['msgs'][topic]]
        if topic == '/tf':
            heads = [M.header_stamp_ns(m.transforms[0]) for _, m in run['msgs'][topic]]
        else:
            heads = [M.header_stamp_ns(m) for _, m in run['msgs'][topic]]
        assert logs == heads == frame_stamps, topic
    for topic in ('/vssm/predicted/depth', '/vssm/path'):
        stamps = [M.header_stamp_ns(m) for _, m in run['msgs'][topic]]
        assert stamps == [frame_stamps[i] for i in (0, 5, 10, 15)], topic
    # The path holds every pose up to its stamp.
    assert [len(m.poses) for _, m in run['msgs']['/vssm/path']] == [1, 6, 11, 16]
    cloud = [M.header_stamp_ns(m) for _, m in run['msgs']['/vssm/map_cloud']]
    assert cloud == [frame_stamps[i] for i in (0, 10, 15)]


def test_odometry_equals_the_trajectory_and_tf(run):
    _, T_tum = read_tum_trajectory(run['out'] / 'trajectory.tum')
    odom = run['msgs']['/vssm/odometry']
    assert len(T_tum) == len(odom) == 16
    for (_, o), (_, tf), T in zip(odom, run['msgs']['/tf'], T_tum):
        assert (o.header.frame_id, o.child_frame_id) == ('map', 'base_link')
        T_odom = M.pose_from_msg(o).T_world_body
        np.testing.assert_allclose(T_odom, T, atol=1e-9)
        a, b = tf.transforms
        assert [(t.header.frame_id, t.child_frame_id) for t in (a, b)] == [
            ('map', 'odom'), ('odom', 'base_link')]
        np.testing.assert_allclose(M.transform_to_matrix(a) @ M.transform_to_matrix(b), T_odom,
                                   atol=1e-12)
        cov = np.asarray(o.pose.covariance).reshape(6, 6)
        assert np.all(np.linalg.eigvalsh(cov) > 0)
    # The last path holds every pose, in order.
    last_path = run['msgs']['/vssm/path'][-1][1]
    np.testing.assert_allclose(
        np.stack([M.pose_from_msg(p).T_world_body for p in last_path.poses]), T_tum, atol=1e-9)


def test_static_transform_and_input_images(run):
    flight = run['flight']
    (_, tf_static), = run['msgs']['/tf_static']
    (t,) = tf_static.transforms
    assert (t.header.frame_id, t.child_frame_id) == ('base_link', 'camera_color_optical_frame')
    np.testing.assert_allclose(M.transform_to_matrix(t), flight.T_body_cam, atol=1e-12)
    frames = [f for f in open_source(run['input']) if isinstance(f, Frame)]
    for f, (_, rgb), (_, depth), (_, info) in zip(
            frames, *(run['msgs'][k] for k in (*CAMERA, '/camera/color/camera_info'))):
        assert depth.encoding == '32FC1' and rgb.encoding == 'rgb8'
        np.testing.assert_array_equal(M.rgb_from_image(rgb), f.rgb)
        np.testing.assert_array_equal(M.image_to_numpy(depth), f.depth)   # NaN where invalid
        np.testing.assert_array_equal(M.camera_info_to_K(info)[0], f.K)


def test_map_and_predictions(run):
    ply = read_ply(run['out'] / 'map.ply')
    final = M.pointcloud2_to_numpy(run['msgs']['/vssm/map_cloud'][-1][1])
    np.testing.assert_array_equal(final['xyz'], ply['xyz'].astype(np.float32))
    np.testing.assert_array_equal(final['rgb'], ply['rgb'])
    first = M.pointcloud2_to_numpy(run['msgs']['/vssm/map_cloud'][0][1])
    assert 0 < len(first['xyz']) < len(final['xyz'])   # the map grows
    depth_msg = run['msgs']['/vssm/predicted/depth'][-1][1]
    assert depth_msg.header.frame_id == 'camera_color_optical_frame'
    pred = M.image_to_numpy(depth_msg)
    observed = [f for f in open_source(run['input']) if isinstance(f, Frame)][-1].depth
    assert pred.shape == observed.shape == (60, 80)
    both = np.isfinite(pred) & np.isfinite(observed)
    assert both.mean() > 0.8 and np.median(np.abs(pred[both] - observed[both])) < 0.05
    std = M.image_to_numpy(run['msgs']['/vssm/predicted/depth_std'][-1][1])
    assert np.all(std[both] > 0)
    (status,) = run['msgs']['/diagnostics'][-1][1].status
    values = {kv.key: kv.value for kv in status.values}
    assert status.level == M.DIAG_OK and values['frames_processed'] == '11'


def _stamp(msg):
    return M.header_stamp_ns(msg)


def test_predicted_motion_starts_at_the_estimate_and_spreads(run):
    cfg = load_config([config_path('demo.yaml')])
    odom = {_stamp(m): m for _, m in run['msgs']['/vssm/odometry']}
    paths = run['msgs']['/vssm/predicted/path']
    poses = run['msgs']['/vssm/predicted/pose']
    assert len(paths) == len(poses) == 4
    pc = cfg.engine.predict
    for (log_ns, path), (_, pose) in zip(paths, poses):
        assert path.header.frame_id == pose.header.frame_id == 'map'
        stamps = [_stamp(p) for p in path.poses]
        assert len(stamps) == round(pc.horizon_s / pc.control_dt)
        assert log_ns in odom and stamps[0] > log_ns and np.all(np.diff(stamps) > 0)
        assert stamps[-1] - log_ns == pytest.approx(pc.horizon_s * 1e9, abs=1e6)
        assert _stamp(pose) == stamps[-1] == _stamp(path)
        o = odom[log_ns].pose.pose.position
        first = path.poses[0].pose.position
        # One control step (10 ms) from the estimate at under 5 m/s.
        assert np.hypot(first.x - o.x, first.y - o.y) < 0.05
        end = path.poses[-1].pose.position
        p = pose.pose.pose.position
        assert (p.x, p.y, p.z) == pytest.approx((end.x, end.y, end.z))
        cov = np.asarray(pose.pose.covariance).reshape(6, 6)
        assert np.all(np.linalg.eigvalsh(cov) > -1e-12) and np.trace(cov[:3, :3]) > 0


def test_cost_slice_at_flight_height(run):
    (log_ns, grid), = run['msgs']['/vssm/cost_slice']
    odom = {_stamp(m): m for _, m in run['msgs']['/vssm/odometry']}
    z = odom[log_ns].pose.pose.position.z
    info = grid.info
    data = np.asarray(grid.data, dtype=np.int8).reshape(info.height, info.width)
    assert grid.header.frame_id == 'map' and _stamp(grid) == log_ns
    assert abs(info.origin.position.z - z) <= info.resolution / 2 + 1e-6
    assert data.min() >= -1 and data.max() <= 100
    known = data[data >= 0]
    assert known.size > 0.05 * data.size and known.max() > known.min(), 'cost varies'


def test_status_and_twist(run):
    statuses = run['msgs']['/vssm/status']
    assert len(statuses) == 16
    assert all(s.level == M.DIAG_OK and s.message == 'tracking' for _, s in statuses)
    odoms = [m for _, m in run['msgs']['/vssm/odometry']]
    rates = []
    for prev, cur in zip(odoms, odoms[1:]):
        R0 = pose_to_matrix(*_pose(prev))[:3, :3]
        R1 = pose_to_matrix(*_pose(cur))[:3, :3]
        dt = (_stamp(cur) - _stamp(prev)) * 1e-9
        w = cur.twist.twist.angular
        rates.append((w.x, w.y, w.z))
        # Integrating the body rate over dt turns the previous attitude into this one.
        w_dt = np.array(rates[-1]) * dt
        angle = np.linalg.norm(w_dt)
        K = np.array([[0, -w_dt[2], w_dt[1]], [w_dt[2], 0, -w_dt[0]], [-w_dt[1], w_dt[0], 0]])
        Exp = np.eye(3) + (np.sin(angle) / angle * K + (1 - np.cos(angle)) / angle ** 2 * K @ K
                           if angle > 1e-12 else K)
        np.testing.assert_allclose(R0 @ Exp, R1, atol=1e-6)
        cov = np.asarray(cur.twist.covariance).reshape(6, 6)
        assert np.all(np.diag(cov) > 0) and np.allclose(cov, cov.T)
    assert np.max(np.abs(rates)) > 1e-3, 'the flight turns: some rate is not zero'


def _pose(odom):
    p, q = odom.pose.pose.position, odom.pose.pose.orientation
    return np.array([p.x, p.y, p.z]), np.array([q.x, q.y, q.z, q.w])


class _FailingSource(Source):
    """Two frames of the flight, then an error."""

    kind = 'failing'

    def __init__(self, flight):
        super().__init__(Path('memory'))
        self.flight = flight

    has_imu = False
    has_frames = True

    def __iter__(self):
        yield self.flight.frame(0)
        yield self.flight.frame(1)
        raise SourceError('bag truncated')

    def ground_truth(self):
        return []


def test_failed_replay_leaves_no_bag(tmp_path):
    flight = generate_flight(SyntheticConfig(duration_s=0.4, width=32, height=24,
                                             camera_rate_hz=5.0, hover_s=0.0, ramp_s=0.2))
    cfg = load_config([config_path('demo.yaml')])
    bag = tmp_path / 'bags' / 'b'
    with pytest.raises(SourceError, match='bag truncated'):
        replay.run_replay(_FailingSource(flight), cfg, tmp_path / 'out', progress=False,
                          plots=False, out_bag=bag)
    assert list((tmp_path / 'bags').iterdir()) == []
    # An existing bag survives a failed run untouched.
    bag.mkdir()
    (bag / 'keep').write_text('x')
    with pytest.raises(SourceError):
        replay.run_replay(_FailingSource(flight), cfg, tmp_path / 'out', progress=False,
                          plots=False, out_bag=bag)
    assert [p.name for p in (tmp_path / 'bags').iterdir()] == ['b']
    assert (bag / 'keep').read_text() == 'x'


def test_camera_frame_never_equals_the_body_frame(tmp_path):
    cfg = load_config([config_path('demo.yaml')])
    assert ReplayBag(tmp_path / 'a', cfg, 'base_link').camera_frame == 'camera_optical_frame'
    assert ReplayBag(tmp_path / 'b', cfg, '').camera_frame == 'camera_optical_frame'
    assert ReplayBag(tmp_path / 'c', cfg, 'cam').camera_frame == 'cam'
