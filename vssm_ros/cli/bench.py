# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""vssm-bench: frames/s, latency and memory of the engine on synthetic flights of several sizes.

For each image size a short synthetic flight is generated in memory (no bag), its frames are
rendered and turned into ROS messages up front (not timed), then the engine runs over them.
Two rates are reported: ``step`` (``SlamEngine.step`` alone) and ``e2e`` (end-to-end as in the
node: message -> Frame conversion, IMU, step). The first ``--warmup`` frames are not counted.
Peak RSS is the process's peak so far (it only grows from one size to the next); peak GPU
memory is measured per size.

Example::

    vssm-bench --device cuda --sizes 320x240 640x480 --frames 200 --json out/bench.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from vssm_ros.cli.paths import config_path
from vssm_ros.cli.replay import load_replay_config, peak_rss_mb
from vssm_ros.config import SyntheticConfig, VssmConfig
from vssm_ros.core.engine import SlamEngine
from vssm_ros.data import messages as M
from vssm_ros.data.atomic import atomic_write_text
from vssm_ros.data.bags import bag_msg_types, depth_to_raw
from vssm_ros.data.map_swap import open_swap
from vssm_ros.data.synthetic import generate_flight
from vssm_ros.errors import ConfigError, VssmError
from vssm_ros.eval.report import latency_stats
from vssm_ros.types import Frame, ImuSample

DEFAULT_SIZES = ('160x120', '320x240', '640x480')
STAGES = ('propagate', 'track', 'map')
"""The engine step's stages (``Estimate.timings``): the IMU prior, tracking, and mapping on
the tracking thread (a keyframe's commit, or all of it when synchronous)."""


def parse_size(text: str) -> Tuple[int, int]:
    """'320x240' -> (320, 240).

    Raises:
        ConfigError: not WIDTHxHEIGHT with positive integers.
    """
    try:
        w, h = (int(v) for v in text.lower().split('x'))
    except ValueError as err:
        raise ConfigError(f'image size {text!r} is not WIDTHxHEIGHT, e.g. 320x240') from err
    if w < 8 or h < 8:
        raise ConfigError(f'image size {text!r}: width and height must be >= 8')
    return w, h


def bench_size(cfg: VssmConfig, width: int, height: int, n_frames: int,
               warmup: int = 2) -> Dict[str, Any]:
    """Run the engine over ``n_frames + warmup`` frames of a synthetic flight of one size.

    Returns:
        ``dict(size, frames, e2e_fps, step_fps, step_latency, e2e_latency, stages_mean_ms,
        peak_rss_mb, peak_gpu_mb)``; latencies as ``latency_stats`` (milliseconds), stages
        (``STAGES``) as mean milliseconds per frame.
    """
    rate = SyntheticConfig().camera_rate_hz
    # No hover and a short ramp: time the engine in flight, where it makes keyframes.
    syn = SyntheticConfig(width=width, height=height, hover_s=0.0, ramp_s=0.5,
                          duration_s=(n_frames + warmup) / rate)
    flight = generate_flight(syn)
    n = min(n_frames + warmup, flight.n_frames)
    types = bag_msg_types('mcap')
    # Messages as the node receives them: rgb8 colour, 16UC1 depth, camera_info.
    msgs = []
    for i in range(n):
        f = flight.frame(i)
        msgs.append((M.image_msg(types, f.rgb, 'rgb8', f.stamp_ns, 'camera'),
                     M.image_msg(types, depth_to_raw(f.depth, '16UC1'), '16UC1', f.stamp_ns,
                                 'camera'),
                     M.camera_info_msg(types, f.K, width, height, f.stamp_ns, 'camera')))
    imu_stamps = flight.imu.stamps_ns
    device = cfg.engine.device
    cuda = device.startswith('cuda')
    if cuda:
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats(device)
    engine = SlamEngine(cfg.engine, flight.gt_frames.T_world_body[0],
                        swap=open_swap(cfg.engine.map, cfg.engine.device))
    cam = cfg.camera
    e2e: List[float] = []
    step: List[float] = []
    stages: Dict[str, float] = {}
    j = 0
    for i, (rgb_msg, depth_msg, info_msg) in enumerate(msgs):
        stamp = int(flight.frame_stamps_ns[i])
        t0 = time.perf_counter()
        while j < len(imu_stamps) and imu_stamps[j] <= stamp:
            engine.add_imu(ImuSample(int(imu_stamps[j]), flight.imu.acc[j], flight.imu.gyro[j]))
            j += 1
        K, _, _ = M.camera_info_to_K(info_msg)
        frame = Frame(stamp, M.rgb_from_image(rgb_msg),
                      M.depth_from_image(depth_msg, cam.depth_scale, cam.min_depth,
                                         cam.max_depth),
                      np.array(K), flight.T_body_cam.copy())
        t1 = time.perf_counter()
        est = engine.step(frame)
        t2 = time.perf_counter()
        if i >= warmup:
            e2e.append(t2 - t0)
            step.append(t2 - t1)
            for k in STAGES:
                stages[k] = stages.get(k, 0.0) + float(est.timings.get(k, 0.0))
    engine.close()
    gpu = None
    if cuda:
        import torch

        gpu = torch.cuda.max_memory_allocated(device) / 2**20
    counted = len(step)
    return dict(size=f'{width}x{height}', frames=counted,
                e2e_fps=counted / sum(e2e) if counted else None,
                step_fps=counted / sum(step) if counted else None,
                step_latency=latency_stats(step), e2e_latency=latency_stats(e2e),
                stages_mean_ms={k: 1e3 * v / counted for k, v in stages.items()} if counted
                else {}, peak_rss_mb=peak_rss_mb(), peak_gpu_mb=gpu)


def format_table(rows: List[Dict[str, Any]], device: str) -> str:
    """The results as an aligned text table."""
    def f(x: Optional[float], fmt: str) -> str:
        return 'n/a' if x is None else f'{x:{fmt}}'

    head = ('size', 'frames', 'e2e fps', 'step fps', 'p50 ms', 'p90 ms') \
        + tuple(f'{k} ms' for k in STAGES) + ('RSS MB', 'GPU MB')
    body = [(r['size'], str(r['frames']), f(r['e2e_fps'], '.1f'), f(r['step_fps'], '.1f'),
             f(r['step_latency']['p50_ms'], '.1f'), f(r['step_latency']['p90_ms'], '.1f'))
            + tuple(f(r['stages_mean_ms'].get(k), '.1f') for k in STAGES)
            + (f(r['peak_rss_mb'], '.0f'), f(r['peak_gpu_mb'], '.0f')) for r in rows]
    widths = [max(len(c) for c in col) for col in zip(head, *body)]
    lines = [f'vssm-bench on {device} (latency: step(); fps: end-to-end incl. message '
             'conversion, and step() alone; stages: mean per frame)']
    for row in (head, *body):
        lines.append('  '.join(c.rjust(w) for c, w in zip(row, widths)))
    return '\n'.join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='vssm-bench',
        description='Measure frames/s, latency and memory of the SLAM engine on synthetic '
                    'flights of several image sizes.')
    p.add_argument('--device', metavar='DEV', help='torch device, e.g. cpu or cuda')
    p.add_argument('--sizes', nargs='+', default=list(DEFAULT_SIZES), metavar='WxH',
                   help=f'image sizes (default: {" ".join(DEFAULT_SIZES)})')
    p.add_argument('--frames', type=int, default=60, metavar='N',
                   help='frames timed per size (default: 60)')
    p.add_argument('--warmup', type=int, default=2, metavar='N',
                   help='frames run before timing starts (default: 2)')
    p.add_argument('--config', action='append', default=[], metavar='YAML',
                   help='config file applied after the packaged demo.yaml (repeatable)')
    p.add_argument('--json', metavar='FILE', help='also write the results as JSON')
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.frames < 1 or args.warmup < 0:
            raise ConfigError('--frames must be >= 1 and --warmup >= 0')
        sizes = [parse_size(s) for s in args.sizes]
        cfg = load_replay_config([config_path('demo.yaml')] + list(args.config), args.device)
        rows = []
        for w, h in sizes:
            rows.append(bench_size(cfg, w, h, args.frames, args.warmup))
            print(f'vssm-bench: {w}x{h} done ({rows[-1]["e2e_fps"]:.1f} frames/s)',
                  file=sys.stderr)
        if args.json:
            doc = {'device': cfg.engine.device, 'results': rows}
            atomic_write_text(args.json, json.dumps(doc, indent=2) + '\n')
    except VssmError as err:
        print(f'vssm-bench: error: {err}', file=sys.stderr)
        return 2
    print(format_table(rows, cfg.engine.device))
    return 0


if __name__ == '__main__':
    sys.exit(main())
