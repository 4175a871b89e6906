# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Evaluation: trajectory alignment and error metrics, plots."""
