# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Soak the node: a long synthetic flight played into ``vssm-node`` at real time (real rclpy,
Fast DDS on loopback), with ``~/save_map``, ``~/load_map`` and ``~/reset`` called under load.

The node's map and log are kept in ``--out``/node. Printed (and written to ``--out``): frames
published / processed, the node's RSS every ``--sample`` frames published (and a plot), the
latency image stamp -> odometry of the frames processed among the first and among the last
1,000 published (p50 / p95 and the p95 ratio), the service calls and their results, and
whether the node was still alive and exited cleanly (SIGINT, exit 0).

Run with the ROS 2 test environment's Python (``make test`` creates .venv-ros)::

    .venv-ros/bin/python tools/soak.py                                   # 500 s, rooms
    .venv-ros/bin/python tools/soak.py --duration 60 --sample 200 --out out/soak-short

The flight is played in chunks of ``--sample`` frames (each built just before it is played,
so memory stays flat); the node runs with ``config/demo.yaml``'s engine settings and the
default ``outputs``.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:   # run as a script from a checkout
    sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'test' / 'ros'))   # the ROS test harness (player.py)

from std_srvs.srv import Trigger  # noqa: E402

from vssm_ros.config import SyntheticConfig  # noqa: E402
from vssm_ros.data import outputs  # noqa: E402
from vssm_ros.data.atomic import atomic_write_text  # noqa: E402
from vssm_ros.data.bags import stream_messages  # noqa: E402
from vssm_ros.data.synthetic import generate_flight, realsense_layout  # noqa: E402
from vssm_ros.ros.node import message_types  # noqa: E402
from player import OutputRecorder, Player, Session  # noqa: E402

SERVICES = ('save_map', 'load_map', 'reset')


def _rss_mb(pid: int) -> float:
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024.0
    return float('nan')


def _percentiles(ms):
    ms = np.asarray(ms, dtype=float)
    return ({'n': int(ms.size), 'p50': float(np.percentile(ms, 50)),
             'p95': float(np.percentile(ms, 95))} if ms.size else {'n': 0})


class _Services:
    """Calls the node's Trigger services without blocking the player (futures)."""

    def __init__(self, node, namespace='/vssm'):
        self.clients = {n: node.create_client(Trigger, f'{namespace}/{n}') for n in SERVICES}
        self.pending = []
        self.results = []

    def call(self, name: str, at_frame: int) -> None:
        self.pending.append((name, at_frame, time.monotonic(),
                             self.clients[name].call_async(Trigger.Request())))

    def collect(self) -> None:
        still = []
        for name, frame, t0, fut in self.pending:
            if fut.done():
                res = fut.result()
                # Futures are looked at once per chunk: an upper bound on the answer's time.
                self.results.append({'service': name, 'at_frame': frame,
                                     'ok': bool(res.success), 'message': res.message,
                                     'answered_within_s': time.monotonic() - t0})
            else:
                still.append((name, frame, t0, fut))
        self.pending = still


def _schedule(n_frames: int, sample: int):
    """Service calls by frame: a save, a load of it and a reset, spread over the flight."""
    at = {}
    for k, name in enumerate(('save_map', 'load_map', 'save_map', 'reset', 'save_map',
                              'load_map')):
        at[int((k + 1) * n_frames / 7) // sample * sample + sample // 2] = name
    return at


def _chunks_ahead(flight, n: int, size: int, first):
    """A queue of the flight's message chunks (frames [lo, lo + size)), built by a thread
    one chunk ahead of the player, so that building never delays the timeline."""
    q = queue.Queue(maxsize=1)

    stamps = flight.frame_stamps_ns
    types, layout = message_types(), realsense_layout(flight)

    def build():
        q.put(first)
        for lo in range(size, n, size):
            # Every item once: from this chunk's first frame to the next chunk's first.
            end = int(stamps[lo + size]) if lo + size < n else None
            q.put(list(stream_messages(flight.items(start_ns=int(stamps[lo]), end_ns=end),
                                       layout, types)))

    threading.Thread(target=build, daemon=True).start()
    return q


def _plot(path: Path, samples) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot([s['frames_published'] for s in samples], [s['rss_mb'] for s in samples], 'o-')
    ax.set_xlabel('frames published')
    ax.set_ylabel('node RSS (MB)')
    ax.set_title('vssm-node soak')
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog='tools/soak.py', description=__doc__.split('\n')[0])
    p.add_argument('--duration', type=float, default=500.0,
                   help='flight seconds (500: 10,001 frames at 20 Hz)')
    p.add_argument('--layout', default='rooms', help='synthetic layout (room, hall, rooms)')
    p.add_argument('--sample', type=int, default=500, help='frames between RSS samples')
    p.add_argument('--config', default=str(REPO / 'config' / 'demo.yaml'),
                   help='parameter file on top of config/vssm.yaml')
    p.add_argument('--out', default=str(REPO / 'out' / 'soak'), help='output folder')
    args = p.parse_args(argv)
    env = dict(os.environ)
    env.setdefault('ROS_DOMAIN_ID', str(1 + os.getpid() % 100))
    env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    os.environ.update({k: env[k] for k in ('ROS_DOMAIN_ID', 'ROS_AUTOMATIC_DISCOVERY_RANGE')})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    flight = generate_flight(SyntheticConfig(layout=args.layout, duration_s=args.duration))
    n = flight.n_frames
    layout = realsense_layout(flight)
    tmp = out / 'node'   # the node's map and log, beside the results
    tmp.mkdir(exist_ok=True)
    cmd = [str(Path(sys.executable).parent / 'vssm-node'), '--ros-args',
           '--params-file', str(REPO / 'config' / 'vssm.yaml'), '--params-file', args.config,
           '-p', f'node.map_path:={tmp}/map.safetensors']
    log = open(Path(tmp) / 'node.log', 'wb')
    node = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    samples, calls = [], _schedule(n, args.sample)
    t_start = time.monotonic()
    exit_code = None
    try:
        with Session('vssm_soak') as s:
            recorder, player, services = OutputRecorder(s.node), Player(s.node), _Services(s.node)
            end = int(flight.frame_stamps_ns[args.sample]) if args.sample < n else None
            first = list(stream_messages(flight.items(end_ns=end), layout, message_types()))
            inputs = [layout.rgb_topic, layout.depth_topic, layout.rgb_info_topic,
                      layout.imu_topic]
            if not player.wait_for_subscribers(first, inputs, 120.0):
                print(f'soak: the node did not subscribe; log {log.name}', file=sys.stderr)
                return 1
            time.sleep(1.0)
            offset = None
            chunks = _chunks_ahead(flight, n, args.sample, first)
            for lo in range(0, n, args.sample):
                hi = min(lo + args.sample, n)
                msgs = chunks.get()
                # One timeline: every chunk moved by the first chunk's offset, so stamps and
                # publication times stay those of one continuous flight.
                offset = player.play(msgs, 1.0, stamp_offset_ns=offset)
                services.collect()
                if node.poll() is not None:
                    break
                samples.append({'frames_published': hi, 'rss_mb': _rss_mb(node.pid),
                                'odometry': recorder.count(outputs.ODOMETRY),
                                'wall_s': time.monotonic() - t_start})
                print(f'soak: {hi}/{n} frames published, node RSS '
                      f'{samples[-1]["rss_mb"]:.0f} MB, {samples[-1]["odometry"]} processed',
                      flush=True)
                for frame, name in calls.items():
                    if lo <= frame < hi:
                        services.call(name, frame)
            deadline = time.monotonic() + 30.0
            while services.pending and time.monotonic() < deadline:
                time.sleep(0.2)
                services.collect()
            time.sleep(2.0)
            records = recorder.snapshot()
    finally:
        alive = node.poll() is None
        if alive:
            node.send_signal(signal.SIGINT)
            try:
                exit_code = node.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(node.pid, signal.SIGKILL)
        else:
            exit_code = node.returncode
        log.close()
    odom = records[outputs.ODOMETRY]
    lat = np.array([(o['recv_ns'] - o['stamp_ns']) * 1e-6 for o in odom])
    # The frames published first and last (the node drops frames when behind: the windows
    # hold the frames it processed among them).
    index = np.searchsorted(flight.frame_stamps_ns,
                            np.array([o['stamp_ns'] for o in odom], dtype=np.int64) - offset)
    k = min(1000, n // 2)
    first_q, last_q = _percentiles(lat[index < k]), _percentiles(lat[index >= n - k])
    result = {
        'flight': {'layout': args.layout, 'duration_s': args.duration, 'frames': n},
        'frames_processed': len(odom), 'alive_at_end': alive, 'exit_code': exit_code,
        'rss_samples': samples, 'services': services.results,
        'latency_first_ms': first_q, 'latency_last_ms': last_q,
        'latency_p95_ratio': (last_q['p95'] / first_q['p95']
                              if first_q['n'] and last_q['n'] else None),
        'node_log': log.name,
    }
    atomic_write_text(out / 'soak.json', json.dumps(result, indent=2) + '\n')
    if samples:
        _plot(out / 'soak_rss.png', samples)
    print(f'vssm-node soak: {n} frames published, {len(odom)} processed; node alive at the '
          f'end: {alive}, exit code {exit_code}')
    print('  RSS (MB) every {} frames: {}'.format(
        args.sample, ', '.join(f'{s["rss_mb"]:.0f}' for s in samples)))
    if result['latency_p95_ratio'] is not None:
        print(f'  latency, first {k} frames ({first_q["n"]} processed): p50 '
              f'{first_q["p50"]:.0f} ms, p95 {first_q["p95"]:.0f} ms; last {k} frames '
              f'({last_q["n"]} processed): p50 {last_q["p50"]:.0f} ms, p95 '
              f'{last_q["p95"]:.0f} ms (p95 ratio {result["latency_p95_ratio"]:.2f})')
    for r in services.results:
        print(f'  {r["service"]} at frame {r["at_frame"]}: ok={r["ok"]} (answered within '
              f'{r["answered_within_s"]:.0f} s, looked at once per chunk) {r["message"]}')
    print(f'  written: {out}/soak.json, {out}/soak_rss.png')
    return 0 if alive and exit_code == 0 else 1


if __name__ == '__main__':
    sys.exit(main())
