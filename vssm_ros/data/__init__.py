# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Data layer: NumPy and rosbags. Message conversion, sources, synthetic data, export."""
