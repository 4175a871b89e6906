# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Message builders and readers against real rclpy message classes (which check field types
on assignment), run with the ROS venv's pytest by test_rclpy_messages.py (this file is not
collected by the main test run: rclpy is not installed there).

Every message the node publishes, and every input the player publishes, is built with both
backends (rclpy classes via ``MsgTypes.from_modules``, rosbags classes via the bag typestore)
and the rosbags one, serialised to CDR and read back by rclpy, must equal the rclpy one field by
field: the node and ``vssm-replay --out-bag`` publish the same messages. Readers must give back
what was built.
"""

import contextlib
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.serialization import deserialize_message, serialize_message

from vssm_ros.config import FramesConfig, VssmConfig, load_config
from vssm_ros.data import messages as M
from vssm_ros.data import outputs
from vssm_ros.data.bags import bag_msg_types, bag_typestore
from vssm_ros.data.transforms import pose_to_matrix
from vssm_ros.ros.live import LiveSlam
from vssm_ros.errors import ConfigError
from vssm_ros.ros.node import VssmNode, message_types, msg_class
from vssm_ros.ros.params import declare_config
from vssm_ros.types import Estimate

REPO = Path(__file__).resolve().parents[2]

RCLPY = message_types()
ROSBAGS = bag_msg_types('mcap')
STAMP = 1_700_000_123_456_789_012
RNG = np.random.default_rng(7)


def _pose():
    q = RNG.normal(size=4)
    return pose_to_matrix(RNG.normal(size=3), q / np.linalg.norm(q))


def _estimate():
    A = RNG.normal(size=(6, 6))
    return Estimate(STAMP, _pose(), A @ A.T + np.eye(6), RNG.normal(size=3))


def _same_wire(build, type_name):
    """Build with both backends: the rosbags message, serialised by rosbags and read back by
    rclpy, equals the rclpy one, field by field. Returns the rclpy message."""
    ours = build(RCLPY)
    assert isinstance(ours, msg_class(type_name))
    theirs = bag_typestore('mcap').serialize_cdr(build(ROSBAGS), type_name)
    assert deserialize_message(bytes(theirs), msg_class(type_name)) == ours, type_name
    assert deserialize_message(serialize_message(ours), msg_class(type_name)) == ours
    return ours


@pytest.mark.parametrize('standalone', [True, False])
def test_pose_outputs(standalone):
    est = _estimate()
    frames = FramesConfig(standalone=standalone)
    tf = _same_wire(lambda t: outputs.tf_message_for_estimate(t, est, frames),
                    'tf2_msgs/msg/TFMessage')
    assert len(tf.transforms) == (2 if standalone else 1)
    T = np.eye(4)
    for t in tf.transforms:
        assert M.header_stamp_ns(t) == STAMP
        T = T @ M.transform_to_matrix(t)
    if standalone:
        np.testing.assert_allclose(T, est.T_world_body, atol=1e-12)
    odom = _same_wire(lambda t: outputs.odometry_for_estimate(t, est, frames),
                      'nav_msgs/msg/Odometry')
    np.testing.assert_allclose(M.pose_from_msg(odom).T_world_body, est.T_world_body,
                               atol=1e-12)
    np.testing.assert_allclose(np.asarray(odom.pose.covariance).reshape(6, 6), est.cov)
    np.testing.assert_allclose(M.pose_from_msg(odom).v_world, est.v_world, atol=1e-12)


def test_path():
    ests = [_estimate() for _ in range(3)]

    def build(t):
        acc = outputs.PathAccumulator(t, 'map', max_poses=2)
        return [acc.append(e) for e in ests][-1]

    path = _same_wire(build, 'nav_msgs/msg/Path')
    assert len(path.poses) == 2
    np.testing.assert_allclose(M.pose_from_msg(path.poses[-1]).T_world_body,
                               ests[-1].T_world_body, atol=1e-12)


def test_map_cloud_and_predicted_images():
    n = 100
    points = {'xyz': RNG.normal(size=(n, 3)).astype(np.float32),
              'rgb': RNG.integers(0, 256, (n, 3)).astype(np.uint8),
              'occupancy': RNG.random(n).astype(np.float32)}
    cloud = _same_wire(lambda t: outputs.map_cloud_msg(t, points, STAMP, 'map'),
                       'sensor_msgs/msg/PointCloud2')
    got = M.pointcloud2_to_numpy(cloud)
    np.testing.assert_array_equal(got['xyz'], points['xyz'])
    np.testing.assert_array_equal(got['rgb'], points['rgb'])
    np.testing.assert_array_equal(got['occupancy'], points['occupancy'])
    depth = RNG.random((6, 8)).astype(np.float32)
    depth[0, 0] = np.nan
    render = {'depth': depth, 'depth_std': depth / 10,
              'color': RNG.integers(0, 256, (6, 8, 3)).astype(np.uint8)}
    for name, key, encoding in ((outputs.PREDICTED_DEPTH, 'depth', '32FC1'),
                                (outputs.PREDICTED_DEPTH_STD, 'depth_std', '32FC1'),
                                (outputs.PREDICTED_COLOR, 'color', 'rgb8')):
        img = _same_wire(lambda t: outputs.predicted_image_msgs(t, render, STAMP, 'cam')[name],
                         'sensor_msgs/msg/Image')
        assert img.encoding == encoding
        np.testing.assert_array_equal(M.image_to_numpy(img), render[key])


def test_diagnostics():
    def build(t):
        return outputs.diagnostics_msg(t, STAMP, 'vssm_ros: slam', M.DIAG_WARN, 'lagging',
                                       {'frames': 3, 'ms': 1.5, 'ok': True})

    diag = _same_wire(build, 'diagnostic_msgs/msg/DiagnosticArray')
    status = diag.status[0]
    assert status.level == bytes([M.DIAG_WARN]) and status.message == 'lagging'
    pairs = [(kv.key, kv.value) for kv in status.values]
    assert pairs == [('frames', '3'), ('ms', '1.5'), ('ok', 'true')]
    # The node's own status, with rclpy classes (level is a byte field there).
    live = LiveSlam(VssmConfig(), RCLPY, lambda *a: None, lambda *a: None)
    msg = live.diagnostics(STAMP)
    assert isinstance(msg, msg_class('diagnostic_msgs/msg/DiagnosticArray'))
    assert msg.status[0].level == bytes([M.DIAG_WARN])
    assert 'no frame yet' in msg.status[0].message


def test_inputs_the_player_publishes():
    rgb = RNG.integers(0, 256, (6, 8, 3)).astype(np.uint8)
    mm = RNG.integers(0, 5000, (6, 8)).astype(np.uint16)
    K = np.array([[50.0, 0, 4], [0, 50.0, 3], [0, 0, 1]])
    img = _same_wire(lambda t: M.image_msg(t, rgb, 'rgb8', STAMP, 'cam'),
                     'sensor_msgs/msg/Image')
    np.testing.assert_array_equal(M.rgb_from_image(img), rgb)
    dep = _same_wire(lambda t: M.image_msg(t, mm, '16UC1', STAMP, 'cam'),
                     'sensor_msgs/msg/Image')
    d = M.depth_from_image(dep)
    np.testing.assert_allclose(d[mm > 0], mm[mm > 0] / 1000.0, rtol=1e-6)
    assert np.isnan(d[mm == 0]).all()
    info = _same_wire(lambda t: M.camera_info_msg(t, K, 8, 6, STAMP, 'cam'),
                      'sensor_msgs/msg/CameraInfo')
    np.testing.assert_array_equal(M.camera_info_to_K(info)[0], K)
    acc, gyro = RNG.normal(size=3), RNG.normal(size=3)
    imu = _same_wire(lambda t: M.imu_msg(t, STAMP, 'imu', acc, gyro), 'sensor_msgs/msg/Imu')
    s = M.imu_from_msg(imu)
    assert s.stamp_ns == STAMP
    np.testing.assert_array_equal(s.acc, acc)
    np.testing.assert_array_equal(s.gyro, gyro)
    T = _pose()
    pose = _same_wire(lambda t: M.pose_stamped_msg(t, STAMP, 'world', T),
                      'geometry_msgs/msg/PoseStamped')
    np.testing.assert_allclose(M.pose_from_msg(pose).T_world_body, T, atol=1e-12)
    tf = _same_wire(lambda t: M.tf_message(t, [('base_link', 'cam', T, STAMP)]),
                    'tf2_msgs/msg/TFMessage')
    np.testing.assert_allclose(M.transform_to_matrix(tf.transforms[0]), T, atol=1e-12)


CONFIGS = sorted((REPO / 'config').glob('*.yaml'))


@pytest.mark.parametrize('extra', [p.name for p in CONFIGS])
def test_every_config_file_is_a_valid_node_parameter_file(extra):
    """vssm.yaml plus each specialisation, through rcl's parameter-file parser and the
    node's declarations: the same config as load_config reads."""
    files = [REPO / 'config' / 'vssm.yaml', REPO / 'config' / extra]
    args = ['--ros-args'] + [a for f in files for a in ('--params-file', str(f))]
    context = rclpy.context.Context()
    rclpy.init(args=args, context=context)
    try:
        node = rclpy.create_node('vssm', context=context)
        try:
            cfg = declare_config(node)
            described = node.describe_parameter('engine.map.resolution').description
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    assert cfg == load_config(files)
    assert described.startswith('Voxel edge length')


@pytest.mark.parametrize('override, match', [
    ('sync.queue_size:=2.5', 'sync.queue_size: expected an integer, got 2.5'),
    ('frames.T_body_cam:=[0.0, 0.0]', r'frames.T_body_cam: needs 7 numbers'),
    ('node.mode:=mapping', "node.mode: must be 'slam' or 'localization'"),
])
def test_invalid_parameter_values_are_config_errors(override, match):
    context = rclpy.context.Context()
    rclpy.init(args=['--ros-args', '-p', override], context=context)
    try:
        node = rclpy.create_node('vssm', context=context)
        with pytest.raises(ConfigError, match=match):
            declare_config(node)
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_the_node_logs_at_every_severity_and_survives_a_failing_callback():
    # rclpy's logger refuses a call site whose severity changes: each severity has its own.
    context = rclpy.context.Context()
    rclpy.init(args=[], context=context)
    try:
        node = VssmNode(context=context)
        try:
            for level in ('info', 'warn', 'error', 'info', 'warn'):
                node._log(level, f'check {level}')
            node._guarded(lambda msg: 1 / 0)(None)   # logged, not raised
            node.live.intake.on_imu(None)             # counted (no stamp), not raised
            assert node.live.session.counts['bad.imu_stamp'] == 1
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_only_the_sensor_inputs_have_qos_event_handlers():
    """rclpy's executor rebuilds every QoS event handler into its wait set at each message it
    takes (the IMU: 200 a second): in one process (node.input_process false) the node keeps
    rclpy's incompatible-QoS warning on the sensor inputs alone, none on its publishers and
    other subscriptions."""
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import CameraInfo, Image, Imu

    context = rclpy.context.Context()
    rclpy.init(args=[], context=context)
    try:
        node = VssmNode(context=context, parameter_overrides=[
            Parameter('node.input_process', Parameter.Type.BOOL, False)])
        try:
            assert node.relay is None
            assert node._pubs and all(not p.event_handlers for p in node._pubs.values())
            sensors = [s for s in node._subs if s.msg_type in (Image, CameraInfo, Imu)]
            assert len(sensors) == 4 and all(s.event_handlers for s in sensors)
            others = [s for s in node._subs if s not in sensors]
            assert others and all(not s.event_handlers for s in others)
            assert {h for s in sensors for h in s.event_handlers} <= set(node.waitables)
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def _diagnostic_values(node):
    return {kv.key: kv.value for kv in node.live.diagnostics(0).status[0].values}


def test_the_input_process_relays_the_sensor_messages_in_order():
    """node.input_process (default): the sensor inputs are received by a child process,
    ``vssm_inputs``, and reach the intake deserialised, in order, field for field; the node
    itself has no sensor subscription, and stopping it ends the child."""
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image, Imu

    context = rclpy.context.Context()
    rclpy.init(args=[], context=context)
    try:
        node = VssmNode(context=context)
        try:
            assert not [s for s in node._subs if s.msg_type in (Image, CameraInfo, Imu)]
            assert node.relay is not None and node.relay.alive()
            assert _diagnostic_values(node)['input_process'] == 'running'
            topics = {i.type_name: i.topic for i in node.relay.inputs}
            player = rclpy.create_node('fake_imu', context=context)
            pub = player.create_publisher(Imu, topics['sensor_msgs/msg/Imu'],
                                          qos_profile_sensor_data)
            deadline = time.monotonic() + 20.0   # the child imports rclpy first
            while pub.get_subscription_count() < 1:
                assert time.monotonic() < deadline, 'the input process never subscribed'
                time.sleep(0.05)
            assert 'vssm_inputs' in player.get_node_names()
            sent = []
            for k in range(1, 6):
                msg = M.imu_msg(RCLPY, STAMP + k * 5_000_000, 'imu_link',
                                np.array([0.1 * k, 0.0, 9.81]), np.array([0.0, 0.01 * k, 0.0]))
                sent.append(msg)
                pub.publish(msg)
                time.sleep(0.01)
            intake = node.live.intake
            while intake.imu_last != STAMP + 25_000_000:
                assert time.monotonic() < deadline, 'the IMU messages never reached the intake'
                time.sleep(0.05)
            got = list(intake.imu)
            assert [s.stamp_ns for s in got] == [M.header_stamp_ns(m) for m in sent]
            for k, sample in enumerate(got, start=1):   # exactly what was published
                np.testing.assert_array_equal(sample.acc, [0.1 * k, 0.0, 9.81])
                np.testing.assert_array_equal(sample.gyro, [0.0, 0.01 * k, 0.0])
            assert intake.imu_frame == 'imu_link'
            player.destroy_node()
        finally:
            node.destroy_node()
        assert not node.relay.alive()
    finally:
        rclpy.shutdown(context=context)


def test_the_node_subscribes_itself_when_its_input_process_dies():
    """An input process that ends on its own leaves the node slower, not blind: the node
    subscribes to the sensor inputs itself, while its executor spins."""
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image, Imu

    with _node_and_peer('fake_imu') as (node, player, executor):
        executor.add_node(node)
        executor.add_node(player)
        spin = threading.Thread(target=executor.spin, daemon=True)
        spin.start()
        node.relay._proc.kill()
        deadline = time.monotonic() + 20.0
        while len([s for s in node._subs if s.msg_type in (Image, CameraInfo, Imu)]) < 4:
            assert time.monotonic() < deadline, 'the node never subscribed itself'
            time.sleep(0.05)
        state = _diagnostic_values(node)['input_process']
        assert state.startswith('ended with code -9') and 'subscribes itself' in state
        topic = next(i.topic for i in node.relay.inputs if i.type_name.endswith('Imu'))
        pub = player.create_publisher(Imu, topic, qos_profile_sensor_data)
        stamp = STAMP + 5_000_000
        while node.live.intake.imu_last != stamp:
            assert time.monotonic() < deadline, 'no IMU message after the fallback'
            pub.publish(M.imu_msg(RCLPY, stamp, 'imu_link', np.array([0.0, 0.0, 9.81]),
                                  np.zeros(3)))
            time.sleep(0.05)


@contextlib.contextmanager
def _node_and_peer(peer_name):
    """A VssmNode and a second node in a context of their own, and an executor (nothing added
    to it); all shut down afterwards."""
    from rclpy.executors import SingleThreadedExecutor

    context = rclpy.context.Context()
    rclpy.init(args=[], context=context)
    executor = SingleThreadedExecutor(context=context)
    try:
        node = VssmNode(context=context)
        peer = rclpy.create_node(peer_name, context=context)
        try:
            yield node, peer, executor
        finally:
            executor.shutdown()
            peer.destroy_node()
            node.live.stop()
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_an_input_process_that_dies_is_reported_and_one_whose_node_ends_stops():
    """The child ending on its own is logged as an error (no more input); the child ends
    when the node's end of its stdin closes, as at the node process's end."""
    from vssm_ros.ros.input_relay import InputRelay, RelayInput

    logged = []
    relay = InputRelay([RelayInput('/relay_check/imu', 'sensor_msgs/msg/Imu', 10, print)],
                       'best_effort', 'vssm_relay_check', '/', lambda *a: logged.append(a))
    relay.start()
    assert relay.alive()
    relay._proc.kill()
    relay._thread.join(10.0)
    assert len(logged) == 1 and logged[0][0] == 'error' and 'ended with code' in logged[0][1]
    relay = InputRelay([], 'reliable', 'vssm_relay_check', '/', print)
    relay.start()
    relay._proc.stdin.close()   # what the node process's end does to it
    assert relay._proc.wait(20.0) == 0


def test_a_volatile_tf_static_publisher_reaches_the_node():
    """A bag recorded without QoS metadata plays /tf_static volatile: incompatible with a
    transient-local subscription alone; the node's second, volatile one hears it."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from tf2_msgs.msg import TFMessage

    with _node_and_peer('fake_bag_player') as (node, bag, executor):
        qos = QoSProfile(depth=10, durability=DurabilityPolicy.VOLATILE,
                         reliability=ReliabilityPolicy.RELIABLE)
        pub = bag.create_publisher(TFMessage, '/tf_static', qos)
        durabilities = sorted(s.qos_profile.durability.name for s in node._subs
                              if s.topic_name == '/tf_static')
        assert durabilities == ['TRANSIENT_LOCAL', 'VOLATILE']
        executor.add_node(node)
        executor.add_node(bag)
        deadline = time.monotonic() + 10.0
        while pub.get_subscription_count() < 1 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        assert pub.get_subscription_count() >= 1, 'no compatible /tf_static subscription'
        T = pose_to_matrix(np.array([0.1, 0.0, 0.05]), np.array([-0.5, 0.5, -0.5, 0.5]))
        msg = M.tf_message(RCLPY, [('base_link', 'cam_optical', T, STAMP)])
        static = node.live.intake.static
        while not static.can_transform('base_link', 'cam_optical'):
            assert time.monotonic() < deadline, '/tf_static never arrived'
            pub.publish(msg)
            executor.spin_once(timeout_sec=0.05)
        np.testing.assert_allclose(static.lookup('base_link', 'cam_optical'), T, atol=1e-12)


def test_publishing_after_shutdown_is_dropped_not_raised():
    """Ctrl-C shuts the context down while the worker may still publish a frame's outputs."""
    context = rclpy.context.Context()
    rclpy.init(args=[], context=context)
    node = VssmNode(context=context)
    odom = outputs.odometry_for_estimate(RCLPY, _estimate(), FramesConfig())
    node._publish(outputs.ODOMETRY, odom)
    rclpy.shutdown(context=context)
    node._publish(outputs.ODOMETRY, odom)   # the context is invalid now: dropped
    node.live.stop()


def test_planner_outputs_build_with_rclpy():
    """~/predicted/path, ~/predicted/pose and ~/cost_slice as rclpy messages (int8[] of the
    grid as rclpy wants it), round-tripped through the wire format."""
    t = 0.01 * np.arange(1, 6)
    S = 8
    p = np.zeros((S, 5, 3))
    p[..., 0] = t
    p[..., 1] = np.linspace(-0.1, 0.1, S)[:, None] * t
    R = np.tile(np.eye(3), (S, 5, 1, 1))
    msgs = outputs.predicted_path_msgs(RCLPY, {'t': t, 'p': p, 'R': R}, STAMP, 'map')
    for name, msg in msgs.items():
        back = deserialize_message(serialize_message(msg), type(msg))
        assert M.header_stamp_ns(back) == STAMP + 50_000_000, name
    assert len(msgs[outputs.PREDICTED_PATH].poses) == 5
    data = np.array([[-1, 0, 50], [100, 7, -1]], np.int8)
    grid = outputs.cost_slice_msg(RCLPY, {'data': data, 'origin_xy': np.array([1.0, 2.0]),
                                          'resolution': 0.1, 'height': 1.5}, STAMP, 'map')
    back = deserialize_message(serialize_message(grid), type(grid))
    np.testing.assert_array_equal(np.asarray(back.data, np.int8).reshape(2, 3), data)
    assert (back.info.width, back.info.height) == (3, 2) and back.info.origin.position.z == 1.5


def test_diagnostics_run_on_wall_time():
    """/diagnostics keep coming when a bag's /clock stops (use_sim_time)."""
    from rclpy.clock import ClockType

    context = rclpy.context.Context()
    rclpy.init(args=['--ros-args', '-p', 'use_sim_time:=true'], context=context)
    try:
        node = VssmNode(context=context)
        assert node.get_clock().clock_type == ClockType.ROS_TIME
        assert node._diag_timer.clock.clock_type == ClockType.STEADY_TIME
        node.live.stop()
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


@pytest.mark.parametrize('interrupted', [True, False])
def test_a_ctrl_c_reported_as_a_conversion_error_is_a_clean_exit(monkeypatch, interrupted):
    """A Ctrl-C while rclpy builds a received message comes out of its bindings as a
    RuntimeError ("Unable to convert call argument"): after a SIGINT, ``main`` exits 0 as on
    a KeyboardInterrupt; without one, the error is raised."""
    import signal
    import sys

    from vssm_ros.ros import node as node_mod

    def spin(self):
        if interrupted:
            node_mod._INTERRUPTED.set()   # what the node's SIGINT handler does first
        raise RuntimeError("Unable to convert call argument '0' to Python object")

    monkeypatch.setattr(node_mod.SingleThreadedExecutor, 'spin', spin)
    switch = sys.getswitchinterval()
    try:
        assert signal.getsignal(signal.SIGINT) is not node_mod._on_sigint
        if interrupted:
            assert node_mod.main(['vssm-node']) == 0
        else:
            with pytest.raises(RuntimeError, match='Unable to convert'):
                node_mod.main(['vssm-node'])
        assert not rclpy.ok()
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        sys.setswitchinterval(switch)
        rclpy.try_shutdown()
