# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Shared fixtures: the real recordings in ../shared/data (skipped with a reason when absent),
and a helper that drives an engine through a flight."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get('VSSM_SHARED_DATA', REPO.parent / 'shared' / 'data'))


def _need(sub: str) -> Path:
    path = SHARED_DATA / sub
    if not path.exists():
        pytest.skip(f'real recordings not found at {path} (they live in ../shared/data beside '
                    'the repository in the development setup; set VSSM_SHARED_DATA to use '
                    'another copy)')
    return path


@pytest.fixture(scope='session')
def tum_teddy_dir() -> Path:
    """The first 100 frames of TUM fr3/teddy."""
    return _need('tum_fr3_teddy_0_99')


@pytest.fixture(scope='session')
def ros1_imu_bag() -> Path:
    """A real ROS 1 bag with sensor_msgs/Imu on /imu/data."""
    return _need('ros1_imu_bag') / 'husky_imu_odom_gps.bag'


@pytest.fixture(scope='session')
def blackbird_dir() -> Path:
    """The Blackbird clover 5 m/s flight, train and val splits."""
    return _need('blackbird_clover_5p0')


def _feed_frames(engine, items, n_frames: int) -> int:
    """Give an engine a flight's IMU samples and frames, in order, until ``n_frames`` frames
    are stepped (ground-truth items are skipped). Returns the frames stepped."""
    from vssm_ros.types import Frame, ImuSample
    stepped = 0
    for item in items:
        if isinstance(item, ImuSample):
            engine.add_imu(item)
        elif isinstance(item, Frame):
            engine.step(item)
            stepped += 1
            if stepped == n_frames:
                break
    return stepped


@pytest.fixture(scope='session')
def feed_frames():
    """``feed_frames(engine, flight.items(), n)``: step an engine through a flight's first n
    frames with their IMU samples."""
    return _feed_frames
