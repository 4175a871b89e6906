# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Plays a synthetic flight into a running vssm-node again and again (stamps continuing), at
real time, with /tf_static published VOLATILE (as ``ros2 bag play`` offers it for a bag
recorded without QoS metadata), until killed; writes what it sees of the node to a JSON file
(run with the ROS venv's Python; test/ros/test_node_shutdown.py):

    python test/ros/play_loop.py --synthetic flight.yaml --status status.json
"""

import argparse
import json
import os
import sys
import time

from player import OutputRecorder, Player, Session, flight_messages
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from vssm_ros.config import SyntheticConfig, load_config
from vssm_ros.data import outputs
from vssm_ros.data.synthetic import generate_flight

NODE = '/vssm'
INPUTS = ('/camera/color/image_raw', '/camera/aligned_depth_to_color/image_raw',
          '/camera/color/camera_info', '/camera/imu', '/tf_static')
VOLATILE = QoSProfile(depth=10, durability=DurabilityPolicy.VOLATILE,
                      reliability=ReliabilityPolicy.RELIABLE)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument('--synthetic', required=True, help='YAML with a synthetic: section')
    p.add_argument('--status', required=True, help='JSON file written as outputs arrive')
    p.add_argument('--timeout', type=float, default=120.0)
    args = p.parse_args()
    flight = generate_flight(load_config([args.synthetic], SyntheticConfig, section='synthetic'))
    msgs = flight_messages(flight)
    period = int(flight.frame_stamps_ns[1] - flight.frame_stamps_ns[0])
    span = int(flight.frame_stamps_ns[-1] - msgs[0][2]) + period
    with Session('vssm_play_loop') as s:
        recorder = OutputRecorder(s.node, NODE)
        player = Player(s.node, qos={'/tf_static': VOLATILE})
        subscribed = player.wait_for_subscribers(msgs, INPUTS, args.timeout)
        last = [0.0]

        def write_status(topic, stamp_ns):
            if time.monotonic() - last[0] < 0.2:
                return
            last[0] = time.monotonic()
            diag = recorder.last(outputs.DIAGNOSTICS)
            status = {'subscribed': subscribed, 'odometry': recorder.count(outputs.ODOMETRY),
                      'diagnostics': diag['status'][0]['values'] if diag else {}}
            tmp = args.status + '.tmp'
            with open(tmp, 'w', encoding='utf-8') as fh:
                json.dump(status, fh)
            os.replace(tmp, args.status)

        offset = player.play(msgs, gate=write_status)
        while True:   # again, stamps continuing after the last play
            offset += span
            player.play([m for m in msgs if m[0] != '/tf_static'], stamp_offset_ns=offset,
                        gate=write_status)
    return 0


if __name__ == '__main__':
    sys.exit(main())
