# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The ROS 2 node: the only place that imports rclpy and ROS message packages."""

import os

# Before torch is imported: the node's engine thread shares the CPU with callback and DDS
# threads, and OpenMP workers spinning while they wait made step() 4.5x slower on 2 cores
# (NodeConfig.torch_threads sets the count the engine thread then uses).
os.environ.setdefault('OMP_NUM_THREADS', '1')
