# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The node's map services with real rclpy, run with the ROS venv's pytest by
test_map_services.py (not collected by the main test run: rclpy is not installed there).

~/load_map is called over the node's real std_srvs/Trigger service: a bad file (truncated,
bytes flipped, a directory, another kind of file) is answered with success false and a
message naming the file and the reason, the node keeps its map and goes on serving; a bad map
at start-up in localization mode stops the node with one clear ConfigError.
"""

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from std_srvs.srv import Trigger

from vssm_ros.config import SyntheticConfig, VssmConfig
from vssm_ros.data.export import load_checkpoint
from vssm_ros.data.synthetic import generate_flight
from vssm_ros.errors import ConfigError
from vssm_ros.ros.node import VssmNode
from vssm_ros.session import SlamSession


@pytest.fixture(scope='module')
def good_map(tmp_path_factory):
    """A map made with the node's default configuration (two small frames)."""
    path = tmp_path_factory.mktemp('maps') / 'good.safetensors'
    flight = generate_flight(SyntheticConfig(duration_s=0.2, width=48, height=36,
                                             camera_rate_hz=10.0, hover_s=0.0, ramp_s=0.1))
    session = SlamSession(VssmConfig())
    for item in flight.items():
        session.feed(item)
    session.save_map(str(path))
    return path


def _bad_files(tmp, good):
    data = good.read_bytes()
    n = 8 + int.from_bytes(data[:8], 'little')
    flipped = bytearray(data)
    flipped[n + (len(data) - n) // 2] ^= 0x01
    out = {'truncated': (data[:len(data) - 100], 'corrupt or truncated'),
           'flipped': (bytes(flipped), 'does not match its sha256'),
           'not_a_map': (b'\x10' + b'\x00' * 7 + b'{"a":1}         ', 'not a vssm_ros')}
    files = {}
    for name, (content, why) in out.items():
        (tmp / f'{name}.safetensors').write_bytes(content)
        files[name] = (tmp / f'{name}.safetensors', why)
    (tmp / 'folder.safetensors').mkdir()
    files['directory'] = (tmp / 'folder.safetensors', 'it is a directory')
    return files


class Client:
    """Calls the node's Trigger services through an executor, as `ros2 service call` does."""

    def __init__(self, context, node):
        self.executor = SingleThreadedExecutor(context=context)
        self.node = rclpy.create_node('map_client', context=context)
        self.executor.add_node(node)
        self.executor.add_node(self.node)
        self.clients = {name: self.node.create_client(Trigger, f'/vssm/{name}')
                        for name in ('load_map', 'save_map')}

    def call(self, name):
        client = self.clients[name]
        assert client.wait_for_service(timeout_sec=10.0), f'no /vssm/{name}'
        future = client.call_async(Trigger.Request())
        self.executor.spin_until_future_complete(future, timeout_sec=60.0)
        assert future.done(), f'/vssm/{name} did not answer'
        return future.result().success, future.result().message

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()


def test_load_map_of_bad_files_is_answered_and_the_node_keeps_its_map(good_map, tmp_path):
    context = rclpy.context.Context()
    rclpy.init(args=['--ros-args', '-p', f'node.map_path:={good_map}'], context=context)
    node = client = None
    try:
        node = VssmNode(context=context)
        client = Client(context, node)
        ok, text = client.call('load_map')
        assert ok and str(good_map) in text, text
        engine = node.live.engine
        for name, (path, why) in _bad_files(tmp_path, good_map).items():
            node.set_parameters([Parameter('node.map_path', value=str(path))])
            ok, text = client.call('load_map')
            assert not ok and str(path) in text and why in text, (name, text)
            assert node.live.engine is engine, name
        # Still serving, with the map it had.
        out = tmp_path / 'saved' / 'map.safetensors'
        node.set_parameters([Parameter('node.map_path', value=str(out))])
        ok, text = client.call('save_map')
        assert ok and str(out) in text, text
        saved, _ = load_checkpoint(out)
        assert saved['meta']['n_frames'] == load_checkpoint(good_map)[0]['meta']['n_frames']
    finally:
        if client is not None:
            client.close()
        if node is not None:
            node.live.stop()
            node.destroy_node()
        rclpy.shutdown(context=context)


@pytest.mark.parametrize('name', ['truncated', 'directory', 'missing'])
def test_a_bad_map_at_start_up_in_localization_mode_is_one_clear_error(
        good_map, tmp_path, name):
    files = _bad_files(tmp_path, good_map)
    path, why = files.get(name, (tmp_path / 'missing.safetensors', 'does not exist'))
    context = rclpy.context.Context()
    rclpy.init(args=['--ros-args', '-p', 'node.mode:=localization', '-p',
                     f'node.map_path:={path}'], context=context)
    try:
        with pytest.raises(ConfigError, match=why) as err:
            VssmNode(context=context)
        assert str(path) in str(err.value)
    finally:
        rclpy.shutdown(context=context)


def test_a_good_map_at_start_up_in_localization_mode_is_loaded(good_map):
    context = rclpy.context.Context()
    rclpy.init(args=['--ros-args', '-p', 'node.mode:=localization', '-p',
                     f'node.map_path:={good_map}'], context=context)
    try:
        node = VssmNode(context=context)
        assert node.live.engine is not None and not node.live.autosave.enabled
        node.live.stop()
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
