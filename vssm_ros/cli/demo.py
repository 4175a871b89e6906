# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""vssm-demo: make the built-in synthetic drone flight (cached), replay it, print a summary.

The flight (a RealSense-like RGB-D camera and IMU on a drone looping through a furnished room,
with ground truth) is generated once and cached as a ROS 2 mcap bag under ``--cache``
(default ``.cache/vssm_ros`` in the current directory); it is then replayed exactly as
``vssm-replay`` would with the packaged ``config/demo.yaml``. Outputs go to ``--out``.

Example::

    vssm-demo                       # 16 s flight, outputs in out/demo
    vssm-demo --duration 30 --peak-speed 1.5 --device cuda
    vssm-demo --layout hall --start centre --duration 130
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from vssm_ros.cli.paths import config_path
from vssm_ros.cli.replay import jsonable, load_replay_config, run_replay
from vssm_ros.cli.synth import LAYOUTS, STARTS
from vssm_ros.config import SyntheticConfig, VssmConfig, load_config
from vssm_ros.core.engine import SlamEngine
from vssm_ros.data.atomic import atomic_write_text
from vssm_ros.data.export import load_checkpoint
from vssm_ros.data.sources import open_source
from vssm_ros.data.synthetic import FORMAT_PATHS, cached_flight_dir, generate_flight
from vssm_ros.data.trajectory import read_tum_trajectory
from vssm_ros.errors import VssmError
from vssm_ros.eval.heldout import heldout_depth_error, map_to_world, status_at
from vssm_ros.eval.report import summary_table

DEMO_CONFIG = 'demo.yaml'
DEFAULT_CACHE = Path('.cache') / 'vssm_ros'
DEFAULT_OUT = Path('out') / 'demo'


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='vssm-demo',
        description='Generate (once, cached) the built-in synthetic drone flight, replay it with '
                    'VSSM-LM SLAM and print the accuracy and speed.')
    p.add_argument('--out', default=str(DEFAULT_OUT), metavar='DIR',
                   help=f'output directory (default: {DEFAULT_OUT})')
    p.add_argument('--cache', default=str(DEFAULT_CACHE), metavar='DIR',
                   help=f'where generated flights are kept (default: {DEFAULT_CACHE})')
    p.add_argument('--config', action='append', default=[], metavar='YAML',
                   help=f'config file applied after the packaged {DEMO_CONFIG} (repeatable); '
                        'a "synthetic:" section changes the flight')
    p.add_argument('--duration', type=float, metavar='S', help='flight duration (seconds)')
    p.add_argument('--peak-speed', type=float, metavar='M_S', help='peak speed (m/s)')
    p.add_argument('--layout', choices=LAYOUTS,
                   help='scene of the flight: room (default), hall or rooms (synthetic.layout)')
    p.add_argument('--start', choices=STARTS,
                   help='where the flight starts: loop (default) or centre (synthetic.start)')
    p.add_argument('--device', metavar='DEV', help='torch device, e.g. cpu or cuda')
    p.add_argument('--quiet', action='store_true', help='no progress bars')
    return p


def flight_config(paths: List[Path], duration: Optional[float] = None,
                  peak_speed: Optional[float] = None, layout: Optional[str] = None,
                  start: Optional[str] = None) -> SyntheticConfig:
    """The flight: SyntheticConfig defaults, the files' ``synthetic:`` sections, the options."""
    over: Dict[str, Any] = {}
    for name, value in (('duration_s', duration), ('peak_speed', peak_speed),
                        ('layout', layout), ('start', start)):
        if value is not None:
            over[name] = value
    return load_config(paths, SyntheticConfig, section='synthetic',
                       overrides={'synthetic': over} if over else None)


def _scene_note(syn: SyntheticConfig) -> str:
    """', layout hall, start centre' for a flight other than the default room loop."""
    if (syn.layout, syn.start) == ('room', 'loop'):
        return ''
    return f', layout {syn.layout}, start {syn.start}'


def heldout_metrics(syn: SyntheticConfig, cfg: VssmConfig, out: Path, n_processed: int,
                    changes=None) -> Dict[str, float]:
    """Depth error of the saved map at views between frames (``eval.heldout``), the map put
    in the world by the alignment of its ``OK`` poses (``changes``: the run's
    ``tracking.changes``; None: every pose)."""
    state, _ = load_checkpoint(out / 'checkpoint.safetensors')
    engine = SlamEngine(cfg.engine)
    engine.load_state_dict(state)
    flight = generate_flight(syn)
    # The map frame is the first pose's (gravity-aligned) frame: held-out views go there
    # through the ATE alignment of the poses the map was built from.
    stamps, T_map_body = read_tum_trajectory(out / 'trajectory.tum')
    statuses = status_at(stamps, changes) if changes else None
    T_map_world = np.linalg.inv(map_to_world(stamps, T_map_body, flight, statuses))
    return heldout_depth_error(engine.render, flight, upto_frame=n_processed,
                               T_map_world=T_map_world)


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        paths = [config_path(DEMO_CONFIG)] + [Path(p) for p in args.config]
        syn = flight_config(paths, args.duration, args.peak_speed, args.layout, args.start)
        cfg = load_replay_config(paths, args.device)
        t0 = time.perf_counter()
        bar = None
        if not args.quiet and sys.stderr.isatty():
            from tqdm import tqdm
            n = int(round(syn.duration_s * syn.camera_rate_hz)) + 1
            bar = tqdm(total=n, unit='frame', desc='generating flight', file=sys.stderr,
                       leave=False)
        written = [0]   # frames written: 0 when the flight came from the cache

        def progress(n: int) -> None:
            written[0] += n
            if bar is not None:
                bar.update(n)

        try:
            flight_dir = cached_flight_dir(syn, args.cache, formats=('mcap',), progress=progress)
        finally:
            if bar is not None:
                bar.close()
        t_flight = time.perf_counter() - t0
        bag = flight_dir / FORMAT_PATHS['mcap']
        metrics = run_replay(open_source(bag, cfg), cfg, args.out, progress=not args.quiet)
        metrics['heldout_depth'] = heldout_metrics(
            syn, cfg, Path(args.out), metrics['frames']['processed'],
            (metrics.get('tracking') or {}).get('changes'))
        atomic_write_text(Path(args.out) / 'metrics.json',
                          json.dumps(jsonable(metrics), indent=2) + '\n')
    except VssmError as err:
        print(f'vssm-demo: error: {err}', file=sys.stderr)
        return 2
    print(summary_table(metrics, title=(
        f'vssm-demo: synthetic flight {syn.duration_s:g} s, {syn.width}x{syn.height} @ '
        f'{syn.camera_rate_hz:g} Hz, peak {syn.peak_speed:g} m/s{_scene_note(syn)} (bag {bag}, '
        f'{f"made in {t_flight:.1f} s" if written[0] else "cached"})')))
    out = Path(args.out)
    print(f'  see {out / "trajectory.png"}, {out / "depth_strip.png"}, {out / "map.ply"}')
    return 130 if metrics.get('interrupted') else 0


if __name__ == '__main__':
    sys.exit(main())
