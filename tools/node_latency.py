# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Measure vssm-node live: play the demo flight into it at real time (real rclpy, Fast DDS on
loopback) and print frames processed vs received and the latency from image stamp to
odometry received, as a table.

Run with the ROS 2 test environment's Python (``make test`` creates .venv-ros)::

    .venv-ros/bin/python tools/node_latency.py                       # config/demo.yaml, 1x
    .venv-ros/bin/python tools/node_latency.py --speed 0.5 --json out/latency.json
    .venv-ros/bin/python tools/node_latency.py --gravity     # the default start, not the truth

The node is started as users start it (its console script with the parameter files); every
image is stamped with the wall-clock time it is published, so "received - stamp" is the
latency of the whole pipeline (DDS, pairing, conversion, the engine step, publication).
The node's map, its log and the replay's bag go to a temporary folder, removed when the run
succeeds and kept (its path printed) when it fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:   # run as a script from a checkout
    sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'test' / 'ros'))   # the ROS test harness (player.py)

from vssm_ros.config import SyntheticConfig, load_config  # noqa: E402
from vssm_ros.data import outputs  # noqa: E402
from vssm_ros.cli.replay import load_replay_config, run_replay  # noqa: E402
from vssm_ros.data.sources import open_source  # noqa: E402
from vssm_ros.data.synthetic import generate_flight, realsense_layout  # noqa: E402
from vssm_ros.data.synthetic.writer import write_flight  # noqa: E402
from vssm_ros.eval.metrics import trajectory_metrics  # noqa: E402
from player import OutputRecorder, Player, Session, flight_messages, wait_until  # noqa: E402


def _percentiles(ms):
    ms = np.asarray(ms, dtype=float)
    if ms.size == 0:
        return {}
    return {'p50': np.percentile(ms, 50), 'p95': np.percentile(ms, 95), 'max': ms.max(),
            'mean': ms.mean()}


def _ate_cm(flight, odom, offset_ns):
    """ATE RMSE (cm, after SE(3) alignment) of the odometry poses (the odom frame: standalone,
    it is the map frame up to relocalisation jumps) against the flight's ground truth; the
    player moved every stamp by ``offset_ns``."""
    if len(odom) < 3:
        return None
    stamps = np.array([o['stamp_ns'] for o in odom], dtype=np.int64) - offset_ns
    T = np.array([o['T'] for o in odom], dtype=float)
    gt = flight.gt_frames
    res = trajectory_metrics(stamps, T, gt.stamps_ns, gt.T_world_body)
    return 100.0 * res['ate']['rmse']


def _replay_ate_cm(configs, flight, tmp):
    """ATE (cm) of the deterministic replay of the same flight and configs, for comparison."""
    bag = write_flight(flight, Path(tmp) / 'flight', formats=('mcap',))['mcap']
    cfg = load_replay_config(configs)
    metrics = run_replay(open_source(bag, cfg), cfg, Path(tmp) / 'replay', progress=False,
                         plots=False)
    return 100.0 * metrics['ate']['rmse']


def _cm(x):
    return 'n/a (fewer than 3 frames)' if x is None else f'{x:.2f} cm'


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog='tools/node_latency.py', description=__doc__.split('\n')[0])
    p.add_argument('--config', action='append', default=[], metavar='YAML',
                   help='parameter files on top of config/vssm.yaml (default: config/demo.yaml);'
                        ' their synthetic: sections set the flight')
    p.add_argument('--speed', type=float, default=1.0, help='playback speed (1: real time)')
    p.add_argument('--timeout', type=float, default=120.0, help='seconds to wait for the node')
    p.add_argument('--json', metavar='PATH', help='also write the numbers as JSON')
    p.add_argument('--no-replay', action='store_true',
                   help='skip the deterministic replay of the same flight (its ATE is printed '
                        'next to the live one)')
    p.add_argument('--gravity', action='store_true',
                   help="start from gravity (engine.init_pose 'gravity', the default config's "
                        "start) instead of the config files' start (demo.yaml: the ground-truth "
                        'pose)')
    args = p.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix='vssm_latency_')   # the node's map and log, the replay's bag
    code = 1
    try:
        code = _measure(args, tmp)
    finally:
        if code == 0:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f'node_latency: the node log and its files are kept in {tmp}', file=sys.stderr)
    return code


def _measure(args, tmp: str) -> int:
    configs = [Path(c) for c in (args.config or [REPO / 'config' / 'demo.yaml'])]
    if args.gravity:
        grav = Path(tmp) / 'gravity.yaml'
        grav.write_text('/**:\n  ros__parameters:\n    engine:\n      init_pose: gravity\n')
        configs.append(grav)
    env = dict(os.environ)
    env.setdefault('ROS_DOMAIN_ID', str(1 + os.getpid() % 100))
    env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    os.environ.update({k: env[k] for k in ('ROS_DOMAIN_ID', 'ROS_AUTOMATIC_DISCOVERY_RANGE')})

    flight = generate_flight(load_config(configs, SyntheticConfig, section='synthetic'))
    msgs = flight_messages(flight)
    layout = realsense_layout(flight)
    inputs = [layout.rgb_topic, layout.depth_topic, layout.rgb_info_topic, layout.imu_topic]
    cmd = [str(Path(sys.executable).parent / 'vssm-node'), '--ros-args', '--params-file',
           str(REPO / 'config' / 'vssm.yaml')]
    for c in configs:
        cmd += ['--params-file', str(c)]
    cmd += ['-p', f'node.map_path:={tmp}/map.safetensors']
    log = open(Path(tmp) / 'node.log', 'wb')
    node = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    load0 = os.getloadavg()
    try:
        with Session('vssm_latency') as s:
            recorder = OutputRecorder(s.node)
            player = Player(s.node)
            if not player.wait_for_subscribers(msgs, inputs, args.timeout):
                print(f'node_latency: the node did not subscribe in {args.timeout} s; log: '
                      f'{log.name}', file=sys.stderr)
                return 1
            time.sleep(1.0)   # the node's publishers and the recorder's subscriptions match
            t0 = time.monotonic()
            offset_ns = player.play(msgs, args.speed)
            wall = time.monotonic() - t0
            count = recorder.count(outputs.ODOMETRY)
            # Done when the odometry stops coming (the newest frame processed).
            while wait_until(lambda: recorder.count(outputs.ODOMETRY) > count, 5.0):
                count = recorder.count(outputs.ODOMETRY)
            wait_until(lambda: False, 1.5)   # one more diagnostics message
            records = recorder.snapshot()
    finally:
        if node.poll() is None:
            node.send_signal(signal.SIGINT)
            try:
                node.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(node.pid, signal.SIGKILL)
        log.close()
    odom = records[outputs.ODOMETRY]
    live_ate = _ate_cm(flight, odom, offset_ns)
    replay_ate = None if args.no_replay else _replay_ate_cm(configs, flight, tmp)
    lat = [(o['recv_ns'] - o['stamp_ns']) * 1e-6 for o in odom]
    diag = records[outputs.DIAGNOSTICS][-1]['status'][0]['values'] \
        if records[outputs.DIAGNOSTICS] else {}
    result = {
        'flight': {'duration_s': flight.cfg.duration_s, 'frames': flight.n_frames,
                   'size': f'{flight.cfg.width}x{flight.cfg.height}',
                   'camera_hz': flight.cfg.camera_rate_hz, 'imu_hz': flight.cfg.imu_rate_hz},
        'speed': args.speed, 'play_wall_s': wall,
        'frames_published': flight.n_frames,
        'frames_received': int(diag.get('frames_received', -1)),
        'frames_processed': len(odom),
        'frames_dropped': int(diag.get('frames_dropped', -1)),
        'imu_received': int(diag.get('imu_received', -1)),
        'processed_per_s': len(odom) / wall if wall > 0 else None,
        'latency_ms': _percentiles(lat),
        'latency_ms_after_first': _percentiles(lat[1:]),
        'ate_cm': live_ate, 'replay_ate_cm': replay_ate,
        'step_p50_ms': float(diag.get('step_p50_ms', 'nan')),
        'frame_p50_ms': float(diag.get('frame_p50_ms', 'nan')),
        'frame_mean_ms': float(diag.get('frame_mean_ms', 'nan')),
        'keyframes': int(float(diag.get('map.keyframes_fused', -1))),
        # What the tracking thread waited, per keyframe, for its preparation on the mapping
        # thread and for the map's readers (the outputs) before committing it.
        'mapping_wait_ms': float(diag.get('map.keyframe_ms.wait', 'nan')),
        'timeline': [((o['stamp_ns'] - offset_ns - int(flight.frame_stamps_ns[0])) * 1e-9, l)
                     for o, l in zip(odom, lat)],   # (flight time s, latency ms) per frame
        'loadavg_before': load0, 'loadavg_after': os.getloadavg(), 'cpus': os.cpu_count(),
    }
    rows = [('flight', f'{result["flight"]["duration_s"]:g} s, {result["flight"]["size"]} @ '
                       f'{flight.cfg.camera_rate_hz:g} Hz, IMU {flight.cfg.imu_rate_hz:g} Hz'),
            ('playback', f'{args.speed:g}x real time, {wall:.1f} s'),
            ('frames published', str(flight.n_frames)),
            ('frames received (paired)', str(result['frames_received'])),
            ('frames processed', f'{len(odom)} ({result["processed_per_s"]:.1f}/s)'),
            ('frames dropped (skipped, catching up)', str(result['frames_dropped'])),
            ('IMU samples received', str(result['imu_received'])),
            ('engine step in the node', f'p50 {result["step_p50_ms"]:.0f} ms (SlamEngine.step '
                                        'only)'),
            ('worker time per frame', f'p50 {result["frame_p50_ms"]:.0f} ms, mean '
                                      f'{result["frame_mean_ms"]:.0f} ms (with the outputs)'),
            ('keyframes; tracking waited for mapping', f'{result["keyframes"]}; '
                                                       f'{result["mapping_wait_ms"]:.1f} ms per '
                                                       'keyframe')]
    for key, label in (('latency_ms', 'latency stamp -> odometry'),
                       ('latency_ms_after_first', '  without the first frame')):
        q = result[key]
        if q:
            rows.append((label, f'p50 {q["p50"]:.0f} ms, p95 {q["p95"]:.0f} ms, '
                                f'max {q["max"]:.0f} ms'))
    rows.append(('ATE of the odometry (processed frames)', _cm(live_ate)))
    if replay_ate is not None:
        rows.append(('ATE of the replay, every frame', _cm(replay_ate)))
    rows.append(('load average (1 min) before / after',
                 f'{load0[0]:.1f} / {result["loadavg_after"][0]:.1f} on {os.cpu_count()} CPUs'))
    width = max(len(k) for k, _ in rows)
    print('vssm-node live on the demo flight')
    for k, v in rows:
        print(f'  {k:<{width}}  {v}')
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2, default=float) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
