# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The ROS 2 node: the only place that imports rclpy and ROS message packages."""
