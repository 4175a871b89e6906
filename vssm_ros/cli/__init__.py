# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Console scripts: replay, demo, synthetic data, benchmarks, training."""
