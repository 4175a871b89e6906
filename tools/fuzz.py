# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Fuzz campaign: adversarial messages through the node's intake, conversion and session
(issue 17), then a clean flight after ``reset`` against the same flight in a fresh process.

What runs is the node's own code without rclpy: ``vssm_ros.ros.live.LiveSlam`` (its
``Intake`` callbacks, ``process_pending`` with ``frame_from_messages`` and the
``SlamSession``, and the diagnostics), driven synchronously as ``test/ros/test_live.py`` does.
Messages are rosbags' message classes (the conversion is duck-typed, so the node reads them
exactly as rclpy's); rosbags' classes check no field type, so the campaign also sends what
rclpy would refuse to build (``fields``). The cases are in ``tools/fuzz_cases.py``.

Per message: any exception escaping the intake or the frame processing (also those that
``process_pending`` catches and logs as an internal error) is a crash; a message that takes more
than ``HANG_S`` (delivery and the frames it completes) is a hang (a watchdog stops one stuck
for ``WATCHDOG_S``). After the campaign: ``reset`` (the ``~/reset`` service) and a clean
synthetic flight; its ATE must be exactly that of the same flight in a fresh process::

    make fuzz                                   # 10,000 messages, seed 0
    .venv/bin/python tools/fuzz.py --messages 2000 --seed 3
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))   # fuzz_cases beside this file

from fuzz_cases import Cases, Clock  # noqa: E402

from vssm_ros.config import (EngineConfig, HealthConfig, InferenceConfig,  # noqa: E402
                             MapConfig, NodeConfig, OutputsConfig, SyntheticConfig,
                             TopicsConfig, VssmConfig)
from vssm_ros.data.bags import bag_msg_types, stream_messages  # noqa: E402
from vssm_ros.data.synthetic import generate_flight, realsense_layout  # noqa: E402
from vssm_ros.eval.metrics import trajectory_metrics  # noqa: E402
from vssm_ros.ros.live import LiveSlam  # noqa: E402

HANG_S = 1.0
"""A message whose delivery and processing take longer is a hang."""
WATCHDOG_S = 30.0
"""A message still running after this long is stopped (and counted as a hang)."""
DIAGNOSTICS_EVERY = 200
"""The diagnostics (the node's timer) are built every this many messages."""
CLEAN_SHARE = 0.15
"""Share of the cases that are a clean frame with its IMU (the engine keeps a running state
for the damaged messages to meet)."""
BALANCE_SLACK = 20
"""Classes within this many messages of the least-sent one are drawn from."""
CLEAN_FLIGHT = SyntheticConfig(duration_s=3.0, hover_s=0.2, ramp_s=0.5, width=64, height=48,
                               camera_rate_hz=10.0)
"""The clean flight flown after the campaign (and in the fresh process)."""
TYPES = bag_msg_types('mcap')
TOPICS = TopicsConfig(rgb='/camera/color/image_raw',
                      depth='/camera/aligned_depth_to_color/image_raw',
                      camera_info='/camera/color/camera_info', imu='/camera/imu')
ROLES = {TOPICS.rgb: 'rgb', TOPICS.depth: 'depth', TOPICS.camera_info: 'camera_info'}


class Hang(Exception):
    """Raised by the watchdog in a message stuck for WATCHDOG_S."""


def make_cfg() -> VssmConfig:
    """The node's config for the campaign: a light engine (256 rays, 8 cm voxels, a smaller
    relocalisation search, as the tests use) so that ``HANG_S`` measures what the input costs,
    not the CPU cost of fusing or relocalising at full size; identity initial pose; no
    rate-limited outputs (they cost time, not coverage); no IMU wait (frames are driven
    synchronously, the IMU is never late)."""
    engine = EngineConfig(init_pose='identity',
                          map=MapConfig(resolution=0.08, truncation=0.24),
                          inference=InferenceConfig(rays=256, track_iters=3),
                          health=HealthConfig(reloc_max_radius=1.0, reloc_step=0.25,
                                              reloc_candidates=2, reloc_rays=96))
    return VssmConfig(topics=TOPICS, engine=engine,
                      node=NodeConfig(startup_timeout_s=0.2, imu_wait_s=0.0),
                      outputs=OutputsConfig(map_cloud_period_s=-1, predicted_period_s=-1,
                                            predicted_path_period_s=-1,
                                            cost_slice_period_s=-1))


class Node:
    """A LiveSlam driven as the node drives it, with every escaped error recorded."""

    def __init__(self, cfg: VssmConfig) -> None:
        torch.set_num_threads(max(cfg.node.torch_threads, 1))   # as the node's worker does
        self.published = collections.Counter()
        self.logs: List[Tuple[str, str]] = []
        self.live = LiveSlam(cfg, TYPES, self._publish, self._log)
        self.internal: List[str] = []
        process = self.live._process

        def recording(stamp: int, msgs: Dict[str, Any]) -> None:
            try:
                process(stamp, msgs)
            except Exception:   # process_pending logs and survives it; the campaign counts it
                self.internal.append(traceback.format_exc())
                raise
        self.live._process = recording

    def _publish(self, name: str, msg: Any) -> None:
        self.published[name] += 1

    def _log(self, level: str, text: str) -> None:
        if len(self.logs) < 10_000:
            self.logs.append((level, text))

    def deliver(self, role: str, msg: Any) -> None:
        """One message to its subscription callback, then the frames it completed."""
        if role == 'imu':
            self.live.intake.on_imu(msg)
        elif role == 'tf_static':
            self.live.intake.on_tf_static(msg)
        else:
            self.live.intake.on_camera(role, msg)
        while self.live.process_pending():
            pass


def fly(node: Node, messages: List[Tuple[str, str, int, Any]]) -> List[Tuple[int, np.ndarray]]:
    """A flight's messages through the node; (stamp, T_world_body) of each frame tracked."""
    out = []
    for topic, _, _, msg in messages:
        role = ROLES.get(topic) or {TOPICS.imu: 'imu', '/tf_static': 'tf_static'}.get(topic)
        if role is None:
            continue
        before = node.live.session.last_estimate
        node.deliver(role, msg)
        est = node.live.session.last_estimate
        if est is not None and est is not before:
            out.append((int(est.stamp_ns), np.asarray(est.T_world_body)))
    return out


def clean_flight() -> Tuple[Any, List[Tuple[str, str, int, Any]]]:
    flight = generate_flight(CLEAN_FLIGHT)
    return flight, list(stream_messages(flight.items(), realsense_layout(flight), TYPES))


def ate(flight: Any, poses: List[Tuple[int, np.ndarray]]) -> float:
    gt = flight.gt_frames
    stamps = np.array([s for s, _ in poses], dtype=np.int64)
    T = np.stack([T for _, T in poses])
    return float(trajectory_metrics(stamps, T, gt.stamps_ns, gt.T_world_body)['ate']['rmse'])


def _alarm(signum: int, frame: Any) -> None:
    raise Hang(f'still running after {WATCHDOG_S} s')


def campaign(node: Node, cases: Cases, n_messages: int, log_every: int = 1000
             ) -> Dict[str, Any]:
    """Send at least ``n_messages`` adversarial messages (plus clean ones between them)."""
    sent, slow = collections.Counter(), collections.Counter()
    crashes: List[Dict[str, str]] = []
    worst: Dict[str, float] = collections.defaultdict(float)
    total = n_internal = 0
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        while total < n_messages:
            cls = 'clean' if cases.rng.random() < CLEAN_SHARE else _next_class(cases, sent)
            for role, msg in cases.classes[cls]():
                t0 = time.perf_counter()
                signal.setitimer(signal.ITIMER_REAL, WATCHDOG_S)
                try:
                    node.deliver(role, msg)
                except Hang:
                    slow[cls] += 1
                except Exception as err:
                    crashes.append({'class': cls, 'error': f'{type(err).__name__}: {err}',
                                    'traceback': traceback.format_exc()})
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                dt = time.perf_counter() - t0
                worst[cls] = max(worst[cls], dt)
                slow[cls] += dt > HANG_S
                sent[cls] += 1
                total += cls != 'clean'
                if len(node.internal) > n_internal:
                    crashes += [{'class': cls, 'error': 'internal error in process_pending',
                                 'traceback': tb} for tb in node.internal[n_internal:]]
                    n_internal = len(node.internal)
                if sum(sent.values()) % DIAGNOSTICS_EVERY == 0:
                    crashes += _diagnostics(node, cls)
                if log_every and total % log_every == 0 and cls != 'clean':
                    print(f'fuzz: {total} messages, {len(crashes)} crashes, '
                          f'{sum(slow.values())} hangs', file=sys.stderr, flush=True)
    finally:
        signal.signal(signal.SIGALRM, previous)
    return {'sent': dict(sent), 'hangs': dict(slow), 'max_s': dict(worst), 'crashes': crashes,
            'adversarial': total}


def _next_class(cases: Cases, sent: Dict[str, int]) -> str:
    """A random class among those with the fewest messages so far (an IMU burst sends dozens
    at once): every class gets about the same share of the messages."""
    names = [c for c in cases.classes if c != 'clean']
    least = min(sent.get(c, 0) for c in names)
    return cases.pick([c for c in names if sent.get(c, 0) <= least + BALANCE_SLACK])


def _diagnostics(node: Node, cls: str) -> List[Dict[str, str]]:
    try:
        node.live.diagnostics(int(time.time_ns()))
        return []
    except Exception as err:
        return [{'class': cls, 'error': f'diagnostics: {type(err).__name__}: {err}',
                 'traceback': traceback.format_exc()}]


def fresh_ate() -> float:
    """The clean flight's ATE in a fresh process (``--clean-only``)."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS', '1'))
    out = subprocess.run([sys.executable, __file__, '--clean-only'], capture_output=True,
                         text=True, env=env, check=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1])['ate'])


def run(n_messages: int, seed: int) -> Dict[str, Any]:
    """The campaign, then the clean flight after ``reset`` and in a fresh process."""
    flight, clean = clean_flight()
    node = Node(make_cfg())
    node.deliver('tf_static', clean[0][3])   # start-up: the extrinsics arrive first
    frames = [flight.frame(i) for i in range(flight.n_frames)]
    clock = Clock(int(clean[-1][2]) + 1000 * 10**9)
    cases = Cases(TYPES, [(f.rgb, f.depth, f.K) for f in frames], np.random.default_rng(seed),
                  clock)
    t0 = time.perf_counter()
    result = campaign(node, cases, n_messages)
    result['wall_s'] = time.perf_counter() - t0
    session = node.live.session
    result['bad_input'] = session.bad_counts()
    result['frames'] = {k: session.counts[k] for k in ('frames_received', 'frames_processed',
                                                       'frames_failed', 'resets')}
    result['errors'] = dict(session.errors)
    node.live.reset('fuzz campaign done')   # the ~/reset service
    poses = fly(node, clean)
    result['ate_after_fuzz'] = ate(flight, poses)
    result['frames_after_fuzz'] = len(poses)
    result['ate_fresh'] = fresh_ate()
    return result


def table(r: Dict[str, Any]) -> str:
    """The campaign as a plain-text table."""
    lines = [f'{"class":<14} {"messages":>9} {"hangs":>6} {"max ms":>8}', '-' * 40]
    for cls in sorted(r['sent']):
        lines.append(f'{cls:<14} {r["sent"][cls]:>9} {r["hangs"].get(cls, 0):>6} '
                     f'{1e3 * r["max_s"][cls]:>8.1f}')
    lines.append('-' * 40)
    lines.append(f'{"adversarial":<14} {r["adversarial"]:>9}   (clean: '
                 f'{r["sent"].get("clean", 0)})')
    worst = max(r['max_s'].values())
    lines += ['', f'crashes: {len(r["crashes"])}', f'hangs (> {HANG_S:g} s): '
              f'{sum(r["hangs"].values())}', f'max time per message: {1e3 * worst:.1f} ms',
              f'frames: {r["frames"]}, engine errors: {r["errors"]}',
              'bad input counted: ' + ', '.join(f'{k} {v}' for k, v in r['bad_input'].items()),
              f'campaign wall time: {r["wall_s"]:.0f} s', '',
              f'clean flight after the fuzz and reset: ATE {r["ate_after_fuzz"]!r} m '
              f'({r["frames_after_fuzz"]} frames)',
              f'clean flight in a fresh process:       ATE {r["ate_fresh"]!r} m',
              'equal: ' + str(r['ate_after_fuzz'] == r['ate_fresh'])]
    for c in r['crashes'][:5]:
        lines += ['', f'crash in class {c["class"]}: {c["error"]}', c['traceback']]
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--messages', type=int, default=10_000, metavar='N',
                   help='adversarial messages to send (clean ones come on top)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--json', metavar='PATH', help='also write the result as JSON')
    p.add_argument('--clean-only', action='store_true',
                   help='only fly the clean flight in this fresh process; print its ATE')
    args = p.parse_args(argv)
    if args.clean_only:
        flight, clean = clean_flight()
        node = Node(make_cfg())
        print(json.dumps({'ate': ate(flight, fly(node, clean))}))
        return 0
    r = run(args.messages, args.seed)
    print(table(r))
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2) + '\n', encoding='utf-8')
    ok = not r['crashes'] and not sum(r['hangs'].values()) and \
        r['ate_after_fuzz'] == r['ate_fresh']
    print('PASS' if ok else 'FAIL')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
