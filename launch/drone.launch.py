# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The vssm_ros SLAM node, optionally with RViz and a bag to play.

    ros2 launch vssm_ros drone.launch.py                                  # live, RealSense names
    ros2 launch vssm_ros drone.launch.py config_extra:=/path/blackbird.yaml bag:=/path/flight
    ros2 launch vssm_ros drone.launch.py rgb:=/cam/rgb depth:=/cam/depth imu:=/imu rviz:=true

Arguments:
  config        base parameter file (default: the package's config/vssm.yaml, every default)
  config_extra  a specialisation loaded on top (blackbird.yaml, tum.yaml, realsense.yaml,
                jetson.yaml, demo.yaml or your own); empty: none
  rgb, depth, camera_info, imu
                input topics; empty: as the parameter files say (topics.*)
  use_sim_time  follow /clock (true for bags; implied by bag)
  rviz          also start rviz2 with the package's rviz/vssm.rviz (an error when rviz2 is not
                installed: nothing is started)
  bag           a ROS 2 bag to play with `ros2 bag play BAG --clock` (after bag_delay seconds,
                so the node is up before the first message), /tf_static played transient-local
                whatever the bag recorded (the package's ``launch/bag_qos.yaml``)
  bag_delay     seconds to wait before playing the bag (default 5)

The parameter files are merged here, in order, with the topic and use_sim_time arguments last,
and the node gets the result as one set of parameters: a nested ``topics: {depth: ...}`` in a
file cannot beat a ``depth:=`` argument (rcl's own precedence between files and node-name keys
would), and a missing or unreadable file stops the launch before anything starts.

The node is required: when it exits, everything stops, and a non-zero exit (an invalid
parameter) makes ``ros2 launch`` exit non-zero.
"""

import os

import yaml
from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, ExecuteProcess, OpaqueFunction,
                            RegisterEventHandler, Shutdown, TimerAction)
from launch.event_handlers import OnProcessExit
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = 'vssm_ros'
NODE_NAME = 'vssm'
TOPIC_ARGS = ('rgb', 'depth', 'camera_info', 'imu')
TRUE = ('true', '1', 'yes', 'on')
CLOCK_HZ = '100'
"""Rate of /clock while a bag plays (``--clock`` takes an optional rate since Jazzy: giving
one keeps the bag path from being read as it)."""
NODE_KEYS = ('/**', '**', NODE_NAME, '/' + NODE_NAME)
"""Keys of a parameter file whose ``ros__parameters`` apply to the node."""


class LaunchError(RuntimeError):
    """A launch argument that cannot work (launch logs it and exits 1)."""


def _uniform(value):
    """Lists of ints and floats as floats: a parameter array has one type."""
    if (isinstance(value, list) and value and any(isinstance(v, float) for v in value)
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        return [float(v) for v in value]
    return value


def _flatten(params, prefix=''):
    out = {}
    for key, value in params.items():
        name = f'{prefix}{key}'
        if isinstance(value, dict):
            out.update(_flatten(value, name + '.'))
        else:
            out[name] = _uniform(value)
    return out


def load_params(path):
    """The node's parameters in a ROS 2 parameter file, flat ('topics.depth': ...).

    Raises:
        LaunchError: the file is missing, unreadable or has no ros__parameters for the node.
    """
    if not os.path.isfile(path):
        raise LaunchError(f'parameter file not found: {path}')
    try:
        with open(path, encoding='utf-8') as f:
            doc = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as err:
        raise LaunchError(f'cannot read the parameter file {path}: {err}') from err
    found = [v['ros__parameters'] for k, v in doc.items() if isinstance(v, dict)
             and str(k) in NODE_KEYS and isinstance(v.get('ros__parameters'), dict)]
    if not found and doc:
        raise LaunchError(f'{path} has no ros__parameters for the node (expected a key of '
                          f'{", ".join(NODE_KEYS)})')
    out = {}
    for params in found:
        out.update(_flatten(params))
    return out


def rviz_installed():
    """Whether the rviz2 package is installed (the ament index knows it)."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        get_package_prefix('rviz2')
    except PackageNotFoundError:
        return False
    return True


def _on_node_exit(event, context):
    if event.returncode:
        raise LaunchError(f'vssm_node exited with code {event.returncode}')
    return [Shutdown(reason='vssm_node exited')]


def _setup(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context).strip()

    share = FindPackageShare(PACKAGE).perform(context)
    bag = arg('bag')
    sim_time = arg('use_sim_time').lower() in TRUE or bool(bag)
    use_rviz = arg('rviz').lower() in TRUE
    if use_rviz and not rviz_installed():
        raise LaunchError('rviz:=true but rviz2 is not installed (apt install '
                          'ros-$ROS_DISTRO-rviz2, or leave rviz false)')
    if bag and not os.path.exists(bag):
        raise LaunchError(f'bag not found: {bag}')
    params = load_params(arg('config'))
    if arg('config_extra'):
        params.update(load_params(arg('config_extra')))
    params.update({f'topics.{name}': arg(name) for name in TOPIC_ARGS if arg(name)})
    params['use_sim_time'] = sim_time
    node = Node(package=PACKAGE, executable='vssm_node', name=NODE_NAME, output='screen',
                emulate_tty=True, parameters=[params])
    actions = [node, RegisterEventHandler(OnProcessExit(target_action=node,
                                                        on_exit=_on_node_exit))]
    if use_rviz:
        actions.append(Node(package='rviz2', executable='rviz2', name='rviz2', output='log',
                            arguments=['-d', os.path.join(share, 'rviz', 'vssm.rviz')],
                            parameters=[{'use_sim_time': sim_time}]))
    if bag:
        play = ExecuteProcess(cmd=['ros2', 'bag', 'play', bag, '--clock', CLOCK_HZ,
                                   '--qos-profile-overrides-path',
                                   os.path.join(share, 'launch', 'bag_qos.yaml')],
                              output='screen')
        actions.append(TimerAction(period=float(arg('bag_delay')), actions=[play]))
    return actions


def generate_launch_description():
    share = FindPackageShare(PACKAGE)
    args = [
        DeclareLaunchArgument('config', default_value=PathJoinSubstitution(
            [share, 'config', 'vssm.yaml']), description='base parameter file'),
        DeclareLaunchArgument('config_extra', default_value='',
                              description='parameter file loaded on top of config'),
        *[DeclareLaunchArgument(name, default_value='',
                                description=f'{name} topic (empty: topics.{name} of the '
                                            'parameter files)') for name in TOPIC_ARGS],
        DeclareLaunchArgument('use_sim_time', default_value='false',
                              description='follow /clock (implied by bag)'),
        DeclareLaunchArgument('rviz', default_value='false',
                              description='start rviz2 with rviz/vssm.rviz'),
        DeclareLaunchArgument('bag', default_value='',
                              description='ROS 2 bag to play with --clock'),
        DeclareLaunchArgument('bag_delay', default_value='5.0',
                              description='seconds before the bag starts'),
    ]
    return LaunchDescription(args + [OpaqueFunction(function=_setup)])
