# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Runs test/ros/rclpy_checks.py with the ROS venv's pytest: the message builders and readers
against real rclpy classes, byte for byte equal to the rosbags ones (skips without the ROS 2
test environment)."""

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_builders_with_real_rclpy_classes(ros_venv, ros_env):
    res = subprocess.run(
        [str(ros_venv / 'bin' / 'python'), '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
         str(REPO / 'test' / 'ros' / 'rclpy_checks.py')],
        env=ros_env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-3000:]
    assert ' passed' in res.stdout and 'failed' not in res.stdout, res.stdout
