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
  rviz          also start rviz2 with the package's rviz/vssm.rviz
  bag           a ROS 2 bag to play with `ros2 bag play --clock` (after bag_delay seconds, so
                the node is up before the first message)
  bag_delay     seconds to wait before playing the bag (default 5)
"""

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction, TimerAction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = 'vssm_ros'
TOPIC_ARGS = ('rgb', 'depth', 'camera_info', 'imu')
TRUE = ('true', '1', 'yes', 'on')


def _setup(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context).strip()

    share = FindPackageShare(PACKAGE).perform(context)
    bag = arg('bag')
    sim_time = arg('use_sim_time').lower() in TRUE or bool(bag)
    params = [arg('config')] + ([arg('config_extra')] if arg('config_extra') else [])
    overrides = {f'topics.{name}': arg(name) for name in TOPIC_ARGS if arg(name)}
    overrides['use_sim_time'] = sim_time
    actions = [Node(package=PACKAGE, executable='vssm_node', name='vssm', output='screen',
                    emulate_tty=True, parameters=params + [overrides])]
    if arg('rviz').lower() in TRUE:
        actions.append(Node(package='rviz2', executable='rviz2', name='rviz2', output='log',
                            arguments=['-d', os.path.join(share, 'rviz', 'vssm.rviz')],
                            parameters=[{'use_sim_time': sim_time}]))
    if bag:
        play = ExecuteProcess(cmd=['ros2', 'bag', 'play', '--clock', bag], output='screen')
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
