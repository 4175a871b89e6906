# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The node's intake (LiveSlam without rclpy) on the inputs that broke it in the fuzz
campaign (tools/fuzz.py, issue 17): each is dropped and counted by its reason, the run goes on
with a finite state and no internal error. Runs in the main environment with rosbags' classes."""

import numpy as np
import pytest
import torch

from vssm_ros.config import (EngineConfig, InferenceConfig, MapConfig, NodeConfig,
                             OutputsConfig, SyntheticConfig, TopicsConfig, VssmConfig)
from vssm_ros.data import messages as M
from vssm_ros.data.bags import bag_msg_types, stream_messages
from vssm_ros.data.synthetic import generate_flight, realsense_layout
from vssm_ros.ros.live import LiveSlam

TYPES = bag_msg_types('mcap')
TOPICS = TopicsConfig(rgb='/camera/color/image_raw',
                      depth='/camera/aligned_depth_to_color/image_raw',
                      camera_info='/camera/color/camera_info', imu='/camera/imu')
ROLES = {TOPICS.rgb: 'rgb', TOPICS.depth: 'depth', TOPICS.camera_info: 'camera_info',
         TOPICS.imu: 'imu', '/tf_static': 'tf_static'}
YEARS_75_NS = 75 * 365 * 86400 * 10**9


@pytest.fixture(scope='module')
def flight():
    return generate_flight(SyntheticConfig(duration_s=1.0, hover_s=0.2, ramp_s=0.5, width=48,
                                           height=36, camera_rate_hz=10.0))


@pytest.fixture
def messages(flight):
    """Built afresh for each test: the tests damage them in place."""
    return list(stream_messages(flight.items(), realsense_layout(flight), TYPES))


def make_live():
    engine = EngineConfig(init_pose='identity', map=MapConfig(resolution=0.08, truncation=0.24),
                          inference=InferenceConfig(rays=128, track_iters=2))
    cfg = VssmConfig(topics=TOPICS, engine=engine,
                     node=NodeConfig(startup_timeout_s=0.2, imu_wait_s=0.0,
                                     autosave_period_s=0.0),
                     outputs=OutputsConfig(map_cloud_period_s=-1, predicted_period_s=-1,
                                           predicted_path_period_s=-1, cost_slice_period_s=-1))
    logs = []
    live = LiveSlam(cfg, TYPES, lambda name, msg: None, lambda lvl, t: logs.append((lvl, t)))
    return live, logs


def deliver(live, role, msg):
    if role == 'imu':
        live.intake.on_imu(msg)
    elif role == 'tf_static':
        live.intake.on_tf_static(msg)
    else:
        live.intake.on_camera(role, msg)
    while live.process_pending():
        pass


def fly(live, messages, change=None):
    """The flight through the node; ``change(topic, stamp, msg)`` may damage a message (or
    return a list of messages to send instead)."""
    for topic, _, stamp, msg in messages:
        if topic not in ROLES:
            continue
        out = change(topic, stamp, msg) if change else None
        for m in (out if isinstance(out, list) else [msg]):
            deliver(live, ROLES[topic], m)


def assert_healthy(live, logs, flight, frames=None):
    s = live.session
    assert s.counts['frames_processed'] == (flight.n_frames if frames is None else frames)
    assert not [t for lvl, t in logs if lvl == 'error'], 'no internal error'
    assert torch.isfinite(s.engine.state.cov).all() and s.engine.state.cov.abs().max() < 1e3
    assert live.intake.counts['time_jumps'] == 0 and s.counts['resets'] == 0


def test_an_absurd_but_finite_imu_sample_is_dropped(flight, messages):
    # Found by the fuzz: 1e308 m/s² is finite, so it passed the non-finite check, overflowed
    # the preintegration and left a NaN covariance; relocalisation then raised LinAlgError.
    live, logs = make_live()
    imu = [m for m in messages if m[0] == TOPICS.imu]
    bad = {imu[40][2], imu[90][2]}

    def huge(topic, stamp, msg):
        if topic == TOPICS.imu and stamp in bad:
            msg.linear_acceleration.x = 1e308 if stamp == imu[40][2] else 9.81
            msg.angular_velocity.z = -1e6 if stamp == imu[90][2] else 0.0
    fly(live, messages, huge)
    assert live.session.bad_counts() == {'imu_out_of_range': 2}
    assert_healthy(live, logs, flight)


def test_a_frame_stamped_decades_ahead_is_dropped(flight, messages):
    # Found by the fuzz: paired and processed, it jumped the engine 75 years ahead (the
    # covariance overflowed, the next tracking raised), and every later message went back in
    # time by more than node.time_jump_s, which reset the map.
    live, logs = make_live()
    k = int(flight.frame_stamps_ns[5])

    def ahead(topic, stamp, msg):
        if stamp == k and topic in (TOPICS.rgb, TOPICS.depth, TOPICS.camera_info):
            msg.header.stamp = M.ns_to_stamp(TYPES, stamp + YEARS_75_NS)
    fly(live, messages, ahead)
    assert live.session.bad_counts() == {'rgb_stamp_future': 1, 'depth_stamp_future': 1,
                                         'camera_info_stamp_future': 1}
    assert_healthy(live, logs, flight, flight.n_frames - 1)
    assert 'ahead of the node clock' in live.session.bad_input_examples()['rgb_stamp_future'][0]


def test_an_unset_stamp_is_dropped(flight, messages):
    # Found by the fuzz: a zero stamp jumped back (a reset), started a map in 1970, and the
    # next frame's 1.7e9 s step blew the covariance up to 1e27.
    live, logs = make_live()
    k = int(flight.frame_stamps_ns[4])

    def zero(topic, stamp, msg):
        if stamp == k and topic != '/tf_static':
            msg.header.stamp.sec, msg.header.stamp.nanosec = 0, 0
    fly(live, messages, zero)
    counts = live.session.bad_counts()
    assert counts['rgb_stamp'] == counts['depth_stamp'] == counts['camera_info_stamp'] == 1
    assert set(counts) <= {'rgb_stamp', 'depth_stamp', 'camera_info_stamp', 'imu_stamp'}
    assert_healthy(live, logs, flight, flight.n_frames - 1)


def test_invalid_stamp_fields_and_wrong_types_are_counted_not_raised(flight, messages):
    live, logs = make_live()
    k = int(flight.frame_stamps_ns[3])
    k2 = int(flight.frame_stamps_ns[6])

    def damage(topic, stamp, msg):
        if stamp == k and topic == TOPICS.rgb:
            msg.header.stamp.nanosec = 2**32 - 1   # a uint32, but not a nanosecond count
        if stamp == k2 and topic == TOPICS.rgb:
            msg.data = None                          # rclpy would refuse; rosbags does not
    fly(live, messages, damage)
    counts = live.session.bad_counts()
    assert counts['rgb_stamp'] == 1 and counts['rgb_malformed'] == 1
    assert_healthy(live, logs, flight, flight.n_frames - 2)


def test_a_duplicated_frame_is_counted_as_repeated(flight, messages):
    live, logs = make_live()
    k = int(flight.frame_stamps_ns[5])
    fly(live, messages, lambda topic, stamp, msg: [msg, msg] if stamp == k and topic in (
        TOPICS.rgb, TOPICS.depth, TOPICS.camera_info) else None)
    assert live.session.bad_counts() == {'rgb_stamp_repeated': 1, 'depth_stamp_repeated': 1,
                                         'camera_info_stamp_repeated': 1}
    assert_healthy(live, logs, flight)


def test_the_diagnostics_say_why_no_frame_is_processed(flight, messages):
    live, _ = make_live()

    def uncalibrated(topic, stamp, msg):
        if topic == TOPICS.camera_info:
            msg.k = np.zeros(9)
    fly(live, messages, uncalibrated)
    diag = live.diagnostics(0).status[0]
    values = {kv.key: kv.value for kv in diag.values}
    assert diag.level == M.DIAG_WARN
    assert diag.message.startswith(f'no frame processed yet; bad input: camera_info_k '
                                   f'x{flight.n_frames} (e.g. frame ')
    assert 'camera_info K is all zero' in diag.message
    assert values['bad.camera_info_k'] == str(flight.n_frames)
    assert len(values['bad_examples.camera_info_k'].split(' | ')) == 3
