# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Where a frame's time goes: the engine on a synthetic flight, by stage and by torch op.

Runs a ``SlamSession`` (as the replay does, ground-truth initial pose) over the flight of the
given configs (default: ``config/demo.yaml``), warms up on the first ``--warmup`` frames, then
measures the next ``--frames`` in one of three modes (a profiler slows what it measures):

- ``stages`` (default): wall and thread CPU time per frame, the engine's stages
  (propagate, track, map) and the map's per-keyframe fusion stages;
- ``ops``: the same frames under ``torch.profiler``: the torch ops by self CPU time, calls
  per frame;
- ``python``: the same frames under cProfile: Python functions by cumulative time;
- ``linearise``: the tracker's inner cost alone, one Gauss-Newton linearisation
  (``core.posterior.linearise``) of the frame after the warm-up repeated ``--frames`` times,
  its mean and its torch ops (the same map, rays and pose each time).

``--stride N`` processes every Nth frame only (all IMU samples), as the node does when it falls
behind; ``--outputs`` then times each rate-limited output the node publishes (predicted
images, predicted motion, cost slice, map cloud) and its share of a core at its period.

Examples::

    .venv/bin/python tools/profile_frame.py                          # demo flight, stages
    .venv/bin/python tools/profile_frame.py --mode ops --threads 1
    .venv/bin/python tools/profile_frame.py --mode python --rows 60
    .venv/bin/python tools/profile_frame.py --mode linearise --threads 1 --warmup 80 --frames 30
    .venv/bin/python tools/profile_frame.py --threads 1 --python-load 0.3 --switch-interval 0.0005

Timings move with the machine's load: run it on an idle machine, and compare runs made back
to back. docs/performance.md has the figures and what they mean.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:   # run as a script from a checkout
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from vssm_ros.cli.replay import load_replay_config  # noqa: E402
from vssm_ros.config import SyntheticConfig, load_config  # noqa: E402
from vssm_ros.data.synthetic import generate_flight  # noqa: E402
from vssm_ros.session import SlamSession  # noqa: E402
from vssm_ros.types import Frame, PoseSample  # noqa: E402


def _session_and_items(configs, source=None):
    """A session and the items to feed it: the synthetic flight of ``configs``, or a
    recording (``source``: a TUM folder or a bag, read ahead into memory, so that decoding
    is not measured)."""
    cfg = load_replay_config(configs)
    if source is not None:
        from vssm_ros.data.sources import open_source
        items = list(open_source(source, cfg))
        truth = None
    else:
        flight = generate_flight(load_config(configs, SyntheticConfig, section='synthetic'))
        gt = flight.gt_frames
        truth = [PoseSample(int(s), T) for s, T in zip(gt.stamps_ns, gt.T_world_body)]
        items = list(flight.items())
    frame_no = np.cumsum([isinstance(x, Frame) for x in items])
    return SlamSession(cfg, ground_truth=truth), items, frame_no


def _feed(session, items, frame_no, lo, hi, wall, cpu, stride=1):
    """Feed the items of frames lo < n <= hi (of the frames, every ``stride``-th); per frame
    wall and thread CPU seconds."""
    for item, n in zip(items, frame_no):
        if not lo < n <= hi or (isinstance(item, Frame) and (n - 1) % stride):
            continue
        t0, c0 = time.perf_counter(), time.thread_time()
        session.feed(item)
        if isinstance(item, Frame):
            wall.append(time.perf_counter() - t0)
            cpu.append(time.thread_time() - c0)


def _print_stages(session, wall, cpu, stage_before, map_before):
    n = len(wall)
    ms = lambda x: 1e3 * float(x)  # noqa: E731
    print(f'frames measured: {n}; per frame wall p50 {ms(np.median(wall)):.1f} ms, mean '
          f'{ms(np.mean(wall)):.1f} ms ({n / sum(wall):.1f} frames/s); thread CPU mean '
          f'{ms(np.mean(cpu)):.1f} ms')
    sums = session.stage_sums
    for k in ('propagate', 'track', 'map'):
        print(f'  {k:<10} {ms((sums[k] - stage_before.get(k, 0.0)) / n):7.1f} ms per frame')
    iters = (sums['track_iters'] - stage_before.get('track_iters', 0.0)) / n
    print(f'  Gauss-Newton steps per frame: {iters:.2f}')
    stats = session.engine.map.stage_s
    n_kf = session.engine.map.n_fused - map_before[0]
    if n_kf:
        print(f'  keyframes fused: {n_kf} (one per {n / n_kf:.1f} frames); per keyframe:')
        for k, v in stats.items():
            print(f'    {k:<16} {ms((v - map_before[1].get(k, 0.0)) / n_kf):7.1f} ms')


def _print_outputs(session, frame, frame_number: int, reps: int = 3) -> None:
    """Time the node's rate-limited outputs (``data.outputs.OutputSchedule.for_frame``) at
    the last estimate: median of ``reps`` calls, and the share of a core at each period."""
    from vssm_ros.data.outputs import prediction_camera

    e, est, cfg = session.engine, session.last_estimate, session.cfg.outputs
    h, w = frame.depth.shape
    K, pw, ph, _ = prediction_camera(frame.K, w, h, cfg.predicted_max_width)
    calls = {
        'predicted images': (lambda: e.render(est.T_world_body @ frame.T_body_cam, K, pw, ph),
                             cfg.predicted_period_s),
        'predicted motion': (lambda: e.predict(render=False), cfg.predicted_path_period_s),
        'cost slice': (lambda: e.cost_field().slice(float(est.T_world_body[2, 3])),
                       cfg.cost_slice_period_s),
        'map cloud': (lambda: e.map_points(radius=cfg.map_cloud_radius),
                      cfg.map_cloud_period_s)}
    print(f'outputs at frame {frame_number}, {pw}x{ph} predicted images:')
    for name, (fn, period) in calls.items():
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        t = float(np.median(times))
        share = f'{t / period:.0%} of a core' if period > 0 else 'off'
        print(f'  {name:<17} {1e3 * t:7.1f} ms, every {period} s: {share}')


def _time_linearise(session, items, frame_no, lo: int, reps: int, rows: int) -> None:
    """Time ``core.posterior.linearise`` as frame ``lo + 1``'s tracking last called it,
    ``reps`` times, then its torch ops over as many calls."""
    from torch.profiler import ProfilerActivity, profile

    from vssm_ros.core import posterior

    real, seen = posterior.linearise, {}

    def spy(*args):
        seen['args'] = args
        return real(*args)

    posterior.linearise = spy   # track() looks it up in its module at each call
    try:
        _feed(session, items, frame_no, lo, lo + 1, [], [])
    finally:
        posterior.linearise = real
    args = seen['args']
    for _ in range(3):
        real(*args)
    t0 = time.perf_counter()
    for _ in range(reps):
        real(*args)
    ms = 1e3 * (time.perf_counter() - t0) / reps
    rays = args[1].q_body.shape
    print(f'linearise: {ms:.2f} ms per call ({rays[0]} rays x {rays[1]} samples, mean of '
          f'{reps})')
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(reps):
            real(*args)
    print(prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=rows))


def _python_load(share: float) -> None:
    """A daemon thread running pure Python ``share`` of each 10 ms, sleeping the rest."""
    def run():
        while True:
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < 0.01 * share:
                sum(i * i for i in range(200))
            time.sleep(0.01 * max(0.0, 1.0 - share))
    threading.Thread(target=run, name='python-load', daemon=True).start()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog='tools/profile_frame.py',
                                description=__doc__.split('\n')[0])
    p.add_argument('--config', action='append', default=[], metavar='YAML',
                   help='parameter files (default: config/demo.yaml); their synthetic: '
                        'sections set the flight')
    p.add_argument('--source', default=None, metavar='PATH',
                   help='a recording (TUM folder, bag) instead of the synthetic flight')
    p.add_argument('--mode', choices=('stages', 'ops', 'python', 'linearise'),
                   default='stages')
    p.add_argument('--warmup', type=int, default=60, help='frames before the measurement')
    p.add_argument('--frames', type=int, default=120, help='frames measured')
    p.add_argument('--threads', type=int, default=None, help='torch intra-op threads')
    p.add_argument('--rows', type=int, default=30, help='rows of the op / function tables')
    p.add_argument('--stride', type=int, default=1,
                   help='process every Nth frame of the measured ones (a node falling behind)')
    p.add_argument('--outputs', action='store_true',
                   help="then time the node's rate-limited outputs")
    p.add_argument('--python-load', type=float, default=0.0, metavar='SHARE',
                   help='a second thread runs pure Python this share of each 10 ms (as the '
                        "node's outputs and rclpy do): the GIL the engine thread waits for")
    p.add_argument('--switch-interval', type=float, default=None, metavar='S',
                   help="sys.setswitchinterval (Python's default 0.005; the node's "
                        'node.gil_switch_interval_s)')
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    configs = [Path(c) for c in (args.config or [REPO / 'config' / 'demo.yaml'])]
    session, items, frame_no = _session_and_items(configs, args.source)
    _feed(session, items, frame_no, 0, args.warmup, [], [])
    lo, hi = args.warmup, args.warmup + args.frames
    stage_before = dict(session.stage_sums)
    map_before = (session.engine.map.n_fused, dict(session.engine.map.stage_s))
    wall, cpu = [], []
    print(f'{configs[-1].name}: frames {lo + 1}-{hi}, torch threads {torch.get_num_threads()}, '
          f'mode {args.mode}' + (f', every {args.stride}th frame' if args.stride > 1 else '')
          + f', switch interval {1e3 * sys.getswitchinterval():g} ms'
          + (f', Python load {args.python_load:.0%}' if args.python_load > 0 else ''))
    if args.python_load > 0:
        _python_load(args.python_load)
    if args.mode == 'linearise':
        _time_linearise(session, items, frame_no, lo, args.frames, args.rows)
        return 0
    if args.mode == 'ops':
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            _feed(session, items, frame_no, lo, hi, wall, cpu, args.stride)
        print(prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=args.rows))
    elif args.mode == 'python':
        import cProfile
        import pstats
        prof = cProfile.Profile()
        prof.enable()
        _feed(session, items, frame_no, lo, hi, wall, cpu, args.stride)
        prof.disable()
        pstats.Stats(prof, stream=sys.stdout).sort_stats('cumulative').print_stats(args.rows)
    else:
        _feed(session, items, frame_no, lo, hi, wall, cpu, args.stride)
    _print_stages(session, wall, cpu, stage_before, map_before)
    if args.outputs:
        last = max(i for i, (item, n) in enumerate(zip(items, frame_no))
                   if isinstance(item, Frame) and n <= hi and not (n - 1) % args.stride)
        _print_outputs(session, items[last], int(frame_no[last]))
    return 0


if __name__ == '__main__':
    sys.exit(main())
