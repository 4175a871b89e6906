# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Runs test/ros/rclpy_checks.py with the ROS venv's pytest: the message builders and readers
against real rclpy classes, byte for byte equal to the rosbags ones (skips without the ROS 2
test environment)."""


def test_builders_with_real_rclpy_classes(ros_pytest):
    ros_pytest('rclpy_checks.py')
