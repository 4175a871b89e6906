# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Long and large synthetic flights through the engine: accuracy, memory and time per frame.

The map v2 benchmark (issue 13). The flight comes from the built-in generator (any layout and
start), frames are fed straight to a ``SlamEngine`` with the default config (plus --config
files) and a disk swap for evicted map regions, as the replay does. Printed and written to
``--out``: ATE, peak and sampled RSS (every --sample frames), map block counts, the median step
time of the first and last 1,000 frames, frames per tracking status, held-out depth error of
the first room's views (measured at --heldout-at frames: before leaving and after coming
back), a plot of RSS and the estimated trajectory (``trajectory.tum``).

Examples::

    .venv/bin/python tools/map_flight.py --layout room --start centre --duration 30
    .venv/bin/python tools/map_flight.py --layout hall --duration 130 --out out/hall
    .venv/bin/python tools/map_flight.py --layout rooms --duration 500 --out out/long
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Dict, List

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:   # run as a script from a checkout
    sys.path.insert(0, str(REPO))

from vssm_ros.config import SyntheticConfig, VssmConfig, load_config  # noqa: E402
from vssm_ros.core.engine import SlamEngine  # noqa: E402
from vssm_ros.data.atomic import atomic_write_text  # noqa: E402
from vssm_ros.data.map_swap import DiskSwap  # noqa: E402
from vssm_ros.data.trajectory import write_tum_trajectory  # noqa: E402
from vssm_ros.data.synthetic import generate_flight  # noqa: E402
from vssm_ros.eval.heldout import heldout_depth_error, map_to_world  # noqa: E402
from vssm_ros.eval.metrics import trajectory_metrics  # noqa: E402
from vssm_ros.types import Frame, ImuSample  # noqa: E402


def rss_mb() -> float:
    """Current resident set size (MB)."""
    with open('/proc/self/statm') as fh:
        pages = int(fh.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def _heldout(engine, flight, T_world_map: np.ndarray, upto: int) -> Dict[str, float]:
    """Held-out depth error at views among the first ``upto`` frames, in the map frame."""
    return heldout_depth_error(engine.render, flight, n_views=8, upto_frame=upto,
                               T_map_world=np.linalg.inv(T_world_map))


def run(syn: SyntheticConfig, cfg: VssmConfig, max_frames: int, sample: int,
        heldout_at: List[int], heldout_upto: int) -> Dict:
    flight = generate_flight(syn)
    engine = SlamEngine(cfg.engine, swap=DiskSwap(cfg.engine.map.swap_dir or None))
    stamps_ns, poses, steps, samples, heldout, iters = [], [], [], [], [], []
    statuses: List[str] = []
    T_world_map = np.eye(4)
    n = min(max_frames, flight.n_frames)
    t0 = time.perf_counter()
    for item in flight.items():
        if isinstance(item, ImuSample):
            engine.add_imu(item)
            continue
        if not isinstance(item, Frame):
            continue
        t = time.perf_counter()
        est = engine.step(item)
        steps.append(time.perf_counter() - t)
        iters.append(est.timings.get('track_iters', 0.0))
        stamps_ns.append(item.stamp_ns)
        poses.append(est.T_world_body)
        statuses.append(est.status)
        k = len(steps)
        if k % sample == 0 or k == n:
            st = engine.map_stats()
            samples.append(dict(frame=k, rss_mb=rss_mb(), peak_rss_mb=peak_rss_mb(), **st))
            print(f'frame {k}: RSS {samples[-1]["rss_mb"]:.0f} MB, blocks active '
                  f'{st["active_blocks"]} / total {st["total_blocks"]}, evicted regions '
                  f'{st["evicted_regions"]}, step p50 {1e3 * np.median(steps[-sample:]):.0f} '
                  f'ms, {np.mean(iters[-sample:]):.1f} iterations, status '
                  f'{dict(Counter(statuses))}', flush=True)
        back = (heldout and k - heldout[-1]['frame'] >= 500 and float(np.linalg.norm(
            flight.gt_frames.T_world_body[k - 1][:3, 3] - flight.gt_frames.T_world_body[
                heldout[0]['frame'] - 1][:3, 3])) < 0.5)
        if k in heldout_at or back:
            if not heldout:   # one alignment for all: the views must not move with later drift
                T_world_map = map_to_world(np.array(stamps_ns) * 1e-9, np.array(poses), flight,
                                           statuses)
            st = engine.map_stats()
            heldout.append(dict(frame=k, **_heldout(engine, flight, T_world_map, heldout_upto),
                                evicted_regions=st['evicted_regions'], restores=st['restores'],
                                held_radius_m=st['held_radius_m']))
            print(f'held-out at frame {k}: {heldout[-1]}', flush=True)
        if k >= n:
            break
    engine.flush()
    wall = time.perf_counter() - t0
    gt = flight.gt_frames
    tm = trajectory_metrics(np.array(stamps_ns) * 1e-9, np.array(poses),
                            flight.frame_stamps_ns * 1e-9, gt.T_world_body)
    first, last = steps[:1000], steps[-1000:]
    return dict(flight=dict(layout=syn.layout, start=syn.start, duration_s=syn.duration_s,
                            frames=len(steps)),
                ate_rmse_m=tm['ate']['rmse'], ate_max_m=tm['ate']['max'],
                wall_s=wall, frames_per_s=len(steps) / wall,
                step_p50_first_ms=1e3 * float(np.median(first)),
                step_p50_last_ms=1e3 * float(np.median(last)),
                track_iters_first=float(np.mean(iters[:1000])),
                track_iters_last=float(np.mean(iters[-1000:])),
                peak_rss_mb=peak_rss_mb(), samples=samples, heldout=heldout,
                status_frames=dict(Counter(statuses)),
                trajectory=dict(stamps_ns=np.array(stamps_ns), T_world_body=np.array(poses)),
                map=engine.map_stats())


def rss_slope(samples: List[Dict]) -> float:
    """Least-squares slope of RSS over the last half of the samples (MB per 1,000 frames)."""
    half = samples[len(samples) // 2:]
    if len(half) < 2:
        return float('nan')
    x = np.array([s['frame'] for s in half], dtype=float)
    y = np.array([s['rss_mb'] for s in half])
    return float(np.polyfit(x, y, 1)[0] * 1000.0)


def plot(samples: List[Dict], budget_mb: float, path: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    f = [s['frame'] for s in samples]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(f, [s['rss_mb'] for s in samples], 'o-', label='RSS')
    ax.plot(f, [s['active_bytes'] / 2**20 for s in samples], 's-', label='active map blocks')
    ax.plot(f, [s['evicted_bytes'] / 2**20 for s in samples], '^-', label='evicted (on disk)')
    ax.axhline(budget_mb, color='grey', ls='--', label='map budget (memory_mb)')
    ax.set_xlabel('frame')
    ax.set_ylabel('MB')
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--layout', default='room', choices=('room', 'hall', 'rooms'))
    p.add_argument('--start', default='loop', choices=('loop', 'centre'))
    p.add_argument('--duration', type=float, default=16.0, help='flight seconds')
    p.add_argument('--peak-speed', type=float, default=1.0)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--max-frames', type=int, default=10**9)
    p.add_argument('--config', action='append', default=[], help='YAML over the defaults')
    p.add_argument('--sample', type=int, default=500, help='RSS sample spacing (frames)')
    p.add_argument('--heldout-at', type=int, nargs='*', default=[],
                   help="frames at which to measure the first views' held-out error; it is "
                   'measured again whenever the drone is back within 0.5 m of where it was at '
                   'the first of them (500 frames or more later)')
    p.add_argument('--heldout-upto', type=int, default=200,
                   help='held-out views lie among the first this many frames')
    p.add_argument('--out', default='out/map_flight')
    a = p.parse_args(argv)
    syn = SyntheticConfig(layout=a.layout, start=a.start, duration_s=a.duration,
                          peak_speed=a.peak_speed, seed=a.seed)
    cfg = load_config([Path(c) for c in a.config])
    res = run(syn, cfg, a.max_frames, a.sample, a.heldout_at, a.heldout_upto)
    res['rss_slope_mb_per_1000_frames'] = rss_slope(res['samples'])
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    poses = res.pop('trajectory')
    atomic_write_text(out / 'map_flight.json', json.dumps(res, indent=2) + '\n')
    write_tum_trajectory(out / 'trajectory.tum', poses['stamps_ns'], poses['T_world_body'])
    plot(res['samples'], cfg.engine.map.memory_mb, out / 'rss.png')
    print(f"{a.layout}/{a.start} {res['flight']['frames']} frames: "
          f"ATE {100 * res['ate_rmse_m']:.2f}"
          f" cm (max {100 * res['ate_max_m']:.2f}), peak RSS {res['peak_rss_mb']:.0f} MB, "
          f"{res['frames_per_s']:.1f} frames/s, step p50 first/last 1000 "
          f"{res['step_p50_first_ms']:.0f}/{res['step_p50_last_ms']:.0f} ms, RSS slope "
          f"{res['rss_slope_mb_per_1000_frames']:.1f} MB/1000 frames; frames per status "
          f"{res['status_frames']}; map {res['map']}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
