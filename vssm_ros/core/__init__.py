# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Model math in torch: Lie groups, IMU, map fields, rendering, inference. No ROS, no I/O."""
