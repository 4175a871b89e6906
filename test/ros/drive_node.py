# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Drives a running vssm-node for the end-to-end test (run with the ROS venv's Python).

Plays a synthetic flight into the node with real rclpy, records every output, then calls
``~/save_map`` and ``~/reset``, plays the first frames again (stamps continuing after the
flight) to see the node start over, and sends bad input (a frame in an unsupported encoding,
an IMU sample from the past) that the node must count and survive. Writes what it saw as
JSON:

    python test/ros/drive_node.py --synthetic flight.yaml --speed 0.5 --out result.json
"""

import argparse
import json
import sys
import time

import numpy as np

from vssm_ros.config import SyntheticConfig, load_config
from vssm_ros.data import messages as M
from vssm_ros.data import outputs
from vssm_ros.data.synthetic import generate_flight
from vssm_ros.ros.node import message_types
from bad_flight import EXPECTED, corrupt
from player import (OutputRecorder, Player, Session, call_trigger, flight_messages,
                    wait_until)

NODE = '/vssm'
INPUTS = ('/camera/color/image_raw', '/camera/aligned_depth_to_color/image_raw',
          '/camera/color/camera_info', '/camera/imu')
# The node starts from the ground truth (engine.init_pose): its pose subscription must be
# matched before the first pose goes out, as an unmatched publisher loses its first samples
# (once in CI: no pose within 0.1 s of the first frame, the map frame 6.5 m off the replay's).
DISCOVER = INPUTS + ('/ground_truth/pose',)


def odometry_reached(recorder, stamp_ns):
    last = recorder.last(outputs.ODOMETRY)
    return last is not None and last['stamp_ns'] >= stamp_ns


def publish_bad_input(player, flight, stamp_ns):
    types, cam = message_types(), 'camera_color_optical_frame'
    h, w = flight.cfg.height, flight.cfg.width
    rgb = M.image_msg(types, np.zeros((h, w), np.uint16), 'mono16', stamp_ns, cam)
    rgb.encoding = 'yuv422'
    depth = M.image_msg(types, np.ones((h, w), np.float32), '32FC1', stamp_ns, cam)
    info = M.camera_info_msg(types, flight.K, w, h, stamp_ns, cam)
    imu = M.imu_msg(types, stamp_ns - 500_000_000, 'camera_imu_frame', np.zeros(3), np.zeros(3))
    for topic, msg in zip(INPUTS, (rgb, depth, info, imu)):
        player.publisher(topic, '').publish(msg)


def bad_input_reported(recorder):
    diag = recorder.last(outputs.DIAGNOSTICS)
    values = diag['status'][0]['values'] if diag else {}
    return 'bad.rgb_encoding' in values and 'bad.imu_time_backwards' in values


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument('--synthetic', required=True, help='YAML with a synthetic: section')
    p.add_argument('--speed', type=float, default=1.0)
    p.add_argument('--out', required=True)
    p.add_argument('--lockstep', action='store_true',
                   help='publish a frame only once the previous one has its odometry')
    p.add_argument('--again', type=int, default=6, help='frames played again after ~/reset')
    p.add_argument('--timeout', type=float, default=60.0)
    p.add_argument('--corrupt', action='store_true',
                   help='put the bad messages of bad_flight.py into the flight')
    args = p.parse_args()
    result = {'steps': []}

    def step(what):
        result['steps'].append([time.time(), what])
        print(f'drive_node: {what}', flush=True)

    flight = generate_flight(load_config([args.synthetic], SyntheticConfig, section='synthetic'))
    msgs = flight_messages(flight)
    bad_stamp = corrupt(msgs) if args.corrupt else None
    again = flight_messages(flight, frames=range(args.again))
    step(f'built {len(msgs)} messages, {flight.n_frames} frames')
    with Session('vssm_e2e_driver') as s:
        recorder = OutputRecorder(s.node, NODE)
        player = Player(s.node)
        ok = (player.wait_for_subscribers(msgs, DISCOVER, args.timeout)
              and wait_until(lambda: s.node.count_publishers(f'{NODE}/odometry') > 0, 10.0))
        step(f'node discovered: {ok}')
        if not ok:
            return 3
        frame_stamps = []

        def lockstep(topic, stamp_ns):
            if topic != INPUTS[0]:
                return
            if frame_stamps and frame_stamps[-1] == bad_offset[0]:
                pass   # the corrupted frame: no odometry comes for it
            elif frame_stamps and not wait_until(
                    lambda: odometry_reached(recorder, frame_stamps[-1]), args.timeout):
                step(f'lockstep: no odometry for {frame_stamps[-1]} in {args.timeout} s')
            frame_stamps.append(stamp_ns)

        gate = lockstep if args.lockstep else None
        # The corrupted frame's stamp once played (the offset is known at the first message).
        bad_offset = [None]
        first = msgs[0][2]

        def gate_first(topic, stamp_ns):
            if bad_offset[0] is None and bad_stamp is not None:
                bad_offset[0] = bad_stamp + stamp_ns - first
            if gate is not None:
                gate(topic, stamp_ns)

        offset = player.play(msgs, args.speed, gate=gate_first)
        last_stamp = int(flight.frame_stamps_ns[-1]) + offset
        step(f'played; offset {offset}')
        result['offset_ns'] = offset
        result['reached_last'] = wait_until(lambda: odometry_reached(recorder, last_stamp),
                                            args.timeout)
        step(f'last frame reached: {result["reached_last"]}')
        n_ok = flight.n_frames - (bad_stamp is not None)

        def flight_done():
            d = recorder.last(outputs.DIAGNOSTICS)
            values = d['status'][0]['values'] if d else {}
            return (int(values.get('frames_processed', -1)) == n_ok
                    and all(int(values.get(f'bad.{k}', 0)) >= v for k, v in EXPECTED.items()
                            if bad_stamp is not None))

        wait_until(flight_done, args.timeout)
        result['diagnostics_after_flight'] = recorder.last(outputs.DIAGNOSTICS)
        result['n_before_reset'] = {k: len(v) for k, v in recorder.snapshot().items()}
        result['save_map'] = call_trigger(s.node, f'{NODE}/save_map')
        step(f'save_map: {result["save_map"]}')
        result['reset'] = call_trigger(s.node, f'{NODE}/reset')
        step(f'reset: {result["reset"]}')
        # The first frames again, their stamps one frame period after the flight's end.
        period = int(flight.frame_stamps_ns[1] - flight.frame_stamps_ns[0])
        offset2 = last_stamp + period - int(flight.frame_stamps_ns[0])
        frame_stamps.clear()
        player.play(again, args.speed, stamp_offset_ns=offset2, gate=gate)
        result['offset_again_ns'] = offset2
        last2 = int(flight.frame_stamps_ns[args.again - 1]) + offset2
        result['reached_again'] = wait_until(lambda: odometry_reached(recorder, last2),
                                             args.timeout)
        step(f'frames after reset reached: {result["reached_again"]}')
        # Bad input: a frame in an unsupported encoding, an IMU sample 0.5 s in the past.
        publish_bad_input(player, flight, last2 + period)
        result['bad_input_seen'] = wait_until(lambda: bad_input_reported(recorder), args.timeout)
        step(f'bad input reported: {result["bad_input_seen"]}')
        result['records'] = recorder.snapshot()
    with open(args.out, 'w', encoding='utf-8') as fh:
        json.dump(result, fh)
    step('done')
    return 0


if __name__ == '__main__':
    sys.exit(main())
