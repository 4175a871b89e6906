# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Driving ``LiveSlam`` (the node's logic, no rclpy) from a synthetic flight's messages, as
the subscriptions would: the tests of the node's intake, services and autosave share it (with
the ``flight`` and ``messages`` fixtures of conftest.py)."""

import threading
import time

from vssm_ros.config import (EngineConfig, InferenceConfig, MapConfig, NodeConfig,
                             OutputsConfig, TopicsConfig, VssmConfig)
from vssm_ros.data.bags import bag_msg_types
from vssm_ros.ros.live import LiveSlam

TYPES = bag_msg_types('mcap')
TOPICS = TopicsConfig(rgb='/camera/color/image_raw',
                      depth='/camera/aligned_depth_to_color/image_raw',
                      camera_info='/camera/color/camera_info', imu='/camera/imu',
                      ground_truth='/ground_truth/pose')
ROLES = {TOPICS.rgb: 'rgb', TOPICS.depth: 'depth', TOPICS.camera_info: 'camera_info'}
NO_OUTPUTS = OutputsConfig(map_cloud_period_s=-1, predicted_period_s=-1,
                           predicted_path_period_s=-1, cost_slice_period_s=-1)


def make_cfg(outputs_cfg=None, **node) -> VssmConfig:
    """A light engine (8 cm voxels, 128 rays, 2 iterations), ground-truth initial pose, no
    autosave and the outputs rendered in order on the engine thread (unless ``node`` says
    so); ``outputs_cfg`` None: no rate-limited outputs."""
    engine = EngineConfig(init_pose='ground_truth',
                          map=MapConfig(resolution=0.08, truncation=0.24),
                          inference=InferenceConfig(rays=128, track_iters=2))
    node = dict(dict(startup_timeout_s=0.2, imu_wait_s=0.0, autosave_period_s=0.0,
                     async_outputs=False), **node)
    return VssmConfig(topics=TOPICS, engine=engine, node=NodeConfig(**node),
                      outputs=outputs_cfg or NO_OUTPUTS)


class Sink:
    """What LiveSlam publishes and logs (from any thread)."""

    def __init__(self):
        self.msgs, self.logs = [], []
        self.lock = threading.Lock()

    def publish(self, name, msg):
        with self.lock:
            self.msgs.append((name, msg))

    def log(self, level, text):
        with self.lock:
            self.logs.append((level, text))

    def of(self, name):
        with self.lock:
            return [m for n, m in self.msgs if n == name]


def make_live(cfg=None, clock_ns=time.time_ns):
    sink = Sink()
    return LiveSlam(cfg or make_cfg(), TYPES, sink.publish, sink.log, clock_ns), sink


def feed(live, msgs, process=True):
    """Hand messages to the intake as the subscriptions would; with ``process``, process
    each frame when its last message (the ground truth) is in."""
    for topic, _, _, msg in msgs:
        if topic in ROLES:
            live.intake.on_camera(ROLES[topic], msg)
        elif topic == TOPICS.imu:
            live.intake.on_imu(msg)
        elif topic == '/tf_static':
            live.intake.on_tf_static(msg)
        elif topic == TOPICS.ground_truth:
            live.intake.on_ground_truth(msg)
            if process:
                live.process_pending()
