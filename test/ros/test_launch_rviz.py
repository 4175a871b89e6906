# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""launch/drone.launch.py and rviz/vssm.rviz, without ROS: the launch file runs against
stand-ins of the launch / launch_ros classes that record what they are given (launch is not
installable from PyPI), and the RViz config is read as the YAML it is."""

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


@pytest.fixture
def launch_module(monkeypatch):
    classes = {
        'launch': ['LaunchDescription'],
        'launch.actions': ['DeclareLaunchArgument', 'ExecuteProcess', 'OpaqueFunction',
                           'TimerAction'],
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


def test_launch_defaults_start_only_the_node(launch_module):
    _, actions = _launch(launch_module)
    assert len(actions) == 1
    node = actions[0].kwargs
    assert (node['package'], node['executable']) == ('vssm_ros', 'vssm_node')
    assert node['name'] == 'vssm'
    assert node['parameters'] == [str(REPO / 'config' / 'vssm.yaml'), {'use_sim_time': False}]
    scripts = (REPO / 'setup.py').read_text(encoding='utf-8')
    assert "'vssm_node = vssm_ros.ros.node:main'" in scripts


def test_launch_with_everything(launch_module):
    demo = str(REPO / 'config' / 'demo.yaml')
    _, actions = _launch(launch_module, config_extra=demo, rgb='/cam/rgb', imu='/cam/imu',
                         rviz='true', bag='/data/flight', bag_delay='2.5')
    node, rviz, timer = actions
    params = node.kwargs['parameters']
    assert params[:2] == [str(REPO / 'config' / 'vssm.yaml'), demo]
    assert params[2] == {'topics.rgb': '/cam/rgb', 'topics.imu': '/cam/imu',
                         'use_sim_time': True}, 'a bag implies sim time'
    names = {name for name, _, _ in flatten(VssmConfig)}
    assert set(params[2]) - {'use_sim_time'} <= names
    assert rviz.kwargs['executable'] == 'rviz2'
    flag, path = rviz.kwargs['arguments']
    assert flag == '-d' and Path(path) == RVIZ and RVIZ.is_file()
    assert rviz.kwargs['parameters'] == [{'use_sim_time': True}]
    assert timer.kwargs['period'] == 2.5
    (play,) = timer.kwargs['actions']
    assert play.kwargs['cmd'] == ['ros2', 'bag', 'play', '--clock', '/data/flight']


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
    # Every topic the config shows is one the node publishes.
    published = {outputs.topic_name(n, ns) for n in outputs.MSG_TYPES}
    assert set(by_topic) <= published
