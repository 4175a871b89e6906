# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""launch/drone.launch.py and rviz/vssm.rviz, without ROS: the launch file runs against
stand-ins of the launch / launch_ros classes that record what they are given (launch is not
installable from PyPI), and the RViz config is read as the YAML it is."""

import argparse
import ast
import importlib.util
import sys
import types
from pathlib import Path

import pytest
import yaml

from vssm_ros.config import VssmConfig, flatten
from vssm_ros.data import outputs

REPO = Path(__file__).resolve().parents[2]
LAUNCH = REPO / 'launch' / 'drone.launch.py'
RVIZ = REPO / 'rviz' / 'vssm.rviz'


class Recorded:
    """A stand-in for any launch class: keeps its arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class LaunchConfiguration(Recorded):
    def perform(self, context):
        return context[self.args[0]]


class FindPackageShare(Recorded):
    def perform(self, context):
        return str(REPO)   # the source tree has the share folder's layout


class PackageNotFoundError(KeyError):
    pass


INSTALLED = set()
"""Packages the stand-in ament index knows."""


def _package_prefix(name):
    if name not in INSTALLED:
        raise PackageNotFoundError(name)
    return '/opt/ros/jazzy'


@pytest.fixture
def launch_module(monkeypatch):
    classes = {
        'launch': ['LaunchDescription'],
        'launch.actions': ['DeclareLaunchArgument', 'ExecuteProcess', 'OpaqueFunction',
                           'RegisterEventHandler', 'Shutdown', 'TimerAction'],
        'launch.event_handlers': ['OnProcessExit'],
        'launch.substitutions': ['PathJoinSubstitution'],
        'launch_ros.actions': ['Node'],
        'launch_ros.substitutions': [],
    }
    for name, names in classes.items():
        mod = types.ModuleType(name)
        for cls in names:
            setattr(mod, cls, type(cls, (Recorded,), {}))
        monkeypatch.setitem(sys.modules, name, mod)
    sys.modules['launch.substitutions'].LaunchConfiguration = LaunchConfiguration
    ament = types.ModuleType('ament_index_python.packages')
    ament.PackageNotFoundError = PackageNotFoundError
    ament.get_package_prefix = _package_prefix
    monkeypatch.setitem(sys.modules, 'ament_index_python', types.ModuleType('ament_index_python'))
    monkeypatch.setitem(sys.modules, 'ament_index_python.packages', ament)
    INSTALLED.clear()
    INSTALLED.update({'vssm_ros', 'rviz2'})
    sys.modules['launch_ros.substitutions'].FindPackageShare = FindPackageShare
    spec = importlib.util.spec_from_file_location('drone_launch', LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _launch(module, **given):
    """The actions of the launch description for launch arguments ``given`` (else defaults)."""
    desc = module.generate_launch_description()
    entities = desc.args[0]
    declared = {e.kwargs.get('name', e.args[0]): e for e in entities
                if type(e).__name__ == 'DeclareLaunchArgument'}
    context = {name: e.kwargs['default_value'] for name, e in declared.items()}
    context['config'] = str(REPO / 'config' / 'vssm.yaml')
    context.update(given)
    opaque = [e for e in entities if type(e).__name__ == 'OpaqueFunction']
    assert len(opaque) == 1
    return declared, opaque[0].kwargs['function'](context)


def test_launch_arguments(launch_module):
    declared, _ = _launch(launch_module)
    assert sorted(declared) == sorted(['config', 'config_extra', 'rgb', 'depth', 'camera_info',
                                       'imu', 'use_sim_time', 'rviz', 'bag', 'bag_delay'])
    assert all(e.kwargs.get('description') for e in declared.values())
    base = declared['config'].kwargs['default_value']
    assert [str(p) if isinstance(p, str) else type(p).__name__ for p in base.args[0]] == \
        ['FindPackageShare', 'config', 'vssm.yaml']


def _node(actions):
    """The vssm node action and the handler registered for its exit."""
    node = actions[0]
    assert (node.kwargs['package'], node.kwargs['executable']) == ('vssm_ros', 'vssm_node')
    (handler,) = [a for a in actions if type(a).__name__ == 'RegisterEventHandler']
    return node, handler.args[0]


def test_launch_defaults_start_only_the_node(launch_module):
    _, actions = _launch(launch_module)
    assert [type(a).__name__ for a in actions] == ['Node', 'RegisterEventHandler']
    node, on_exit = _node(actions)
    assert node.kwargs['name'] == 'vssm'
    (params,) = node.kwargs['parameters']
    assert params.pop('use_sim_time') is False
    names = {name for name, _, _ in flatten(VssmConfig)}
    assert set(params) <= names and params['node.qos_depth'] == VssmConfig().node.qos_depth
    scripts = (REPO / 'setup.py').read_text(encoding='utf-8')
    assert "'vssm_node = vssm_ros.ros.node:main'" in scripts


def _play_parser():
    """``ros2 bag play``'s arguments as Jazzy's ros2bag declares them (the ones used here):
    --clock takes an optional rate."""
    def positive_float(arg):
        value = float(arg)
        if value <= 0:
            raise ValueError(arg)
        return value

    p = argparse.ArgumentParser(prog='ros2 bag play', exit_on_error=False)
    p.add_argument('bag_path')
    p.add_argument('--clock', type=positive_float, nargs='?', const=40, default=0)
    p.add_argument('--qos-profile-overrides-path')
    return p


def _play_args(timer):
    (play,) = timer.kwargs['actions']
    cmd = play.kwargs['cmd']
    assert cmd[:3] == ['ros2', 'bag', 'play']
    try:
        return _play_parser().parse_args(cmd[3:])
    except (argparse.ArgumentError, SystemExit) as err:
        pytest.fail(f'ros2 bag play refuses {cmd}: {err}')


def test_launch_with_everything(launch_module, tmp_path):
    demo = str(REPO / 'config' / 'demo.yaml')
    bag = tmp_path / 'flight'
    bag.mkdir()
    _, actions = _launch(launch_module, config_extra=demo, rgb='/cam/rgb', imu='/cam/imu',
                         rviz='true', bag=str(bag), bag_delay='2.5')
    node, rviz, timer = [a for a in actions if type(a).__name__ != 'RegisterEventHandler']
    (params,) = node.kwargs['parameters']
    assert params['topics.rgb'] == '/cam/rgb' and params['topics.imu'] == '/cam/imu'
    assert params['use_sim_time'] is True, 'a bag implies sim time'
    names = {name for name, _, _ in flatten(VssmConfig)}
    assert set(params) - {'use_sim_time'} <= names
    assert rviz.kwargs['executable'] == 'rviz2'
    flag, path = rviz.kwargs['arguments']
    assert flag == '-d' and Path(path) == RVIZ and RVIZ.is_file()
    assert rviz.kwargs['parameters'] == [{'use_sim_time': True}]
    assert timer.kwargs['period'] == 2.5
    args = _play_args(timer)
    assert args.bag_path == str(bag), 'the bag is played, not read as the --clock rate'
    assert args.clock > 0, '/clock is published'
    qos = yaml.safe_load(Path(args.qos_profile_overrides_path).read_text(encoding='utf-8'))
    assert qos['/tf_static'] == {'history': 'keep_all', 'reliability': 'reliable',
                                 'durability': 'transient_local'}


def _params_file(path, params, key='/**'):
    path.write_text(yaml.safe_dump({key: {'ros__parameters': params}}), encoding='utf-8')
    return str(path)


def test_topic_arguments_beat_topics_of_the_parameter_files(launch_module, tmp_path):
    """config/realsense.yaml sets topics nested; depth:= and imu:= must still win, whatever
    rcl's precedence between files and node-name keys is: the node gets one set."""
    extra = _params_file(tmp_path / 'extra.yaml', {
        'topics': {'depth': '/file/depth', 'imu': '/file/imu', 'rgb': '/file/rgb'},
        'camera': {'min_depth': 0.3}, 'frames': {'T_body_cam': [0, 0, 0.1, 0, 0, 0, 1]}},
        key='vssm')
    _, actions = _launch(launch_module, config_extra=extra, depth='/arg/depth', imu='/arg/imu')
    node, _ = _node(actions)
    assert all(isinstance(p, dict) for p in node.kwargs['parameters']), \
        'no parameter file reaches the node beside the overrides'
    (params,) = node.kwargs['parameters']
    assert params['topics.depth'] == '/arg/depth' and params['topics.imu'] == '/arg/imu'
    assert params['topics.rgb'] == '/file/rgb' and params['camera.min_depth'] == 0.3
    assert params['frames.T_body_cam'] == [0.0, 0.0, 0.1, 0.0, 0.0, 0.0, 1.0]
    assert all(type(v) is float for v in params['frames.T_body_cam'])
    real = _launch(launch_module, config_extra=str(REPO / 'config' / 'realsense.yaml'),
                   depth='/arg/depth')[1][0].kwargs['parameters'][0]
    assert real['topics.depth'] == '/arg/depth'
    assert real['topics.rgb'] == '/camera/color/image_raw'


def test_a_missing_parameter_file_or_rviz_stops_the_launch_before_anything_starts(
        launch_module, tmp_path):
    with pytest.raises(RuntimeError, match='not found'):
        _launch(launch_module, config_extra=str(tmp_path / 'nope.yaml'))
    INSTALLED.discard('rviz2')
    with pytest.raises(RuntimeError, match='rviz2 is not installed'):
        _launch(launch_module, rviz='true')
    with pytest.raises(RuntimeError, match='bag not found'):
        _launch(launch_module, bag=str(tmp_path / 'no_bag'))


def test_the_node_is_required_and_its_failure_fails_the_launch(launch_module):
    _, actions = _launch(launch_module)
    node, on_exit = _node(actions)
    assert on_exit.kwargs['target_action'] is node
    callback = on_exit.kwargs['on_exit']
    ok = callback(types.SimpleNamespace(returncode=0), {})
    assert [type(a).__name__ for a in ok] == ['Shutdown'], 'a clean exit stops the rest'
    with pytest.raises(RuntimeError, match='exited with code 2'):
        callback(types.SimpleNamespace(returncode=2), {})


def _node_name() -> str:
    tree = ast.parse((REPO / 'vssm_ros' / 'ros' / 'node.py').read_text(encoding='utf-8'))
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == 'NODE_NAME':
            return node.value.value
    raise AssertionError('NODE_NAME not found in vssm_ros/ros/node.py')


def test_rviz_shows_the_node_topics():
    cfg = yaml.safe_load(RVIZ.read_text(encoding='utf-8'))
    vm = cfg['Visualization Manager']
    assert vm['Global Options']['Fixed Frame'] == VssmConfig().frames.map_frame == 'map'
    ns = '/' + _node_name()
    assert ns == outputs.BAG_NAMESPACE, 'the bag of vssm-replay --out-bag uses the node name'
    by_topic = {d['Topic']['Value']: d for d in vm['Displays'] if 'Topic' in d}
    classes = [d['Class'] for d in vm['Displays']]
    assert 'rviz_default_plugins/TF' in classes
    odom = by_topic[outputs.topic_name(outputs.ODOMETRY, ns)]
    assert odom['Class'] == 'rviz_default_plugins/Odometry'
    assert odom['Covariance']['Value'] and odom['Covariance']['Position']['Value']
    assert by_topic[outputs.topic_name(outputs.PATH, ns)]['Class'] == \
        'rviz_default_plugins/Path'
    cloud = by_topic[outputs.topic_name(outputs.MAP_CLOUD, ns)]
    assert cloud['Class'] == 'rviz_default_plugins/PointCloud2'
    assert cloud['Color Transformer'] == 'RGB8'
    assert cloud['Topic']['Durability Policy'] == 'Transient Local'   # the cloud is latched
    for name in (outputs.PREDICTED_DEPTH, outputs.PREDICTED_COLOR, outputs.PREDICTED_DEPTH_STD):
        assert by_topic[outputs.topic_name(name, ns)]['Class'] == 'rviz_default_plugins/Image'
    # What a planner needs: the predicted motion and the cost slice (latched, as published).
    assert by_topic[outputs.topic_name(outputs.PREDICTED_PATH, ns)]['Class'] == \
        'rviz_default_plugins/Path'
    assert by_topic[outputs.topic_name(outputs.PREDICTED_POSE, ns)]['Class'] == \
        'rviz_default_plugins/PoseWithCovariance'
    grid = by_topic[outputs.topic_name(outputs.COST_SLICE, ns)]
    assert grid['Class'] == 'rviz_default_plugins/Map'
    assert grid['Topic']['Durability Policy'] == 'Transient Local'
    assert outputs.COST_SLICE in outputs.LATCHED
    # "2D Pose Estimate" publishes where the node listens (localisation mode).
    tools = {t['Class']: t for t in vm['Tools']}
    assert tools['rviz_default_plugins/SetInitialPose']['Topic']['Value'] == '/initialpose'
    # Every topic the config shows is one the node publishes.
    published = {outputs.topic_name(n, ns) for n in outputs.MSG_TYPES}
    assert set(by_topic) <= published
