# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""vssm_ros: variational SLAM (VSSM-LM) for drones, as a ROS 2 node and a replay CLI."""

__version__ = '0.1.0'
