# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Run the default config on scenario families it was not tuned on and print one table:
ATE, the largest error, coverage of the 95 % ellipsoid and the median NEES over the frames
tracked OK (the calibration bar's frames), tracking status and speed per flight, then the
mean and worst of each split (docs/scenarios.md).

Each flight is a family name, a ``synthetic:`` override and a split: 'tune' (plain flights
and one Blackbird-style segment that changes may be tuned on) or 'heldout' (the hard ones and
the other Blackbird-style segments, none overlapping the tuned one: report them, never tune
on them). Its bag is generated once into ``.cache/`` (by
``cached_flight_dir``), then ``vssm-replay`` runs on it with the DEFAULT config (no demo.yaml)
in its own process::

    make bench-scenarios
    .venv/bin/python tools/scenarios.py --split tune --max-frames 150
    .venv/bin/python tools/scenarios.py --only loop-1ms-moving bb-val-5s --jobs 2 --json s.json

A flight on which vssm-replay fails is a row with its error, not the end of the run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
BLACKBIRD = Path(os.environ.get('VSSM_BLACKBIRD',
                                ROOT.parent / 'shared' / 'data' / 'blackbird_clover_5p0'))
"""Default folder of the Blackbird clover flight's splits (train/, val/); --blackbird DIR."""
DASH = '–'


@dataclass(frozen=True)
class Flight:
    """A named scenario: its family, its split and its ``synthetic:`` overrides (for
    Blackbird-style flights ``blackbird_path`` is a split name under the Blackbird folder)."""

    name: str
    family: str
    split: str
    overrides: Dict[str, Any] = field(default_factory=dict)


_LOOP = dict(duration_s=20.0)
_BB = dict(trajectory='blackbird', duration_s=20.0, camera_rate_hz=30.0)
FLIGHTS: List[Flight] = [
    # Tune: plain 1 m/s flights (and mild faults), and 20 s of the Blackbird training flight
    # between the held-out segments, that a change may be tuned on.
    Flight('loop-1ms-moving', 'start-in-motion', 'tune', dict(_LOOP, start='moving', seed=1)),
    Flight('loop-1ms-room11x7', 'room-size', 'tune',
           dict(_LOOP, room_size=(11.0, 7.0, 3.5), seed=2)),
    Flight('hall-centre', 'layout', 'tune', dict(_LOOP, layout='hall', start='centre', seed=3)),
    Flight('time-offset-5ms', 'sensor-faults', 'tune', dict(_LOOP, time_offset_s=0.005, seed=4)),
    Flight('exposure', 'sensor-faults', 'tune', dict(_LOOP, exposure_std=0.15, seed=5)),
    Flight('noise3x-room11x7', 'sensor-faults', 'tune',
           dict(_LOOP, room_size=(11.0, 7.0, 3.5), noise_scale=3.0, seed=13)),
    Flight('bb-train-28s', 'blackbird', 'tune',
           dict(_BB, blackbird_path='train', blackbird_start_s=28.0)),
    # Held out: fast, agile, faults, textures, the real trajectories.
    Flight('loop-2.5ms-moving', 'fast', 'heldout',
           dict(_LOOP, start='moving', peak_speed=2.5, seed=6)),
    Flight('loop-3ms-yaw-velocity', 'agile', 'heldout',
           dict(_LOOP, peak_speed=3.0, yaw='velocity', seed=7)),
    Flight('noise3x-drop10', 'sensor-faults', 'heldout',
           dict(_LOOP, noise_scale=3.0, frame_drop=0.1, seed=8)),
    Flight('blackout-2s', 'sensor-faults', 'heldout',
           dict(_LOOP, blackout_start_s=8.0, blackout_s=2.0, seed=9)),
    Flight('motion-blur', 'sensor-faults', 'heldout',
           dict(_LOOP, peak_speed=1.5, motion_blur_s=0.03, seed=12)),
    Flight('low-contrast', 'texture', 'heldout', dict(_LOOP, texture='low_contrast', seed=10)),
    Flight('repetitive', 'texture', 'heldout', dict(_LOOP, texture='repetitive', seed=11)),
    Flight('bb-train-5s', 'blackbird', 'heldout',
           dict(_BB, blackbird_path='train', blackbird_start_s=5.0)),
    Flight('bb-train-50s', 'blackbird', 'heldout',
           dict(_BB, blackbird_path='train', blackbird_start_s=50.0)),
    Flight('bb-val-5s', 'blackbird', 'heldout',
           dict(_BB, blackbird_path='val', blackbird_start_s=5.0)),
]
"""The scenarios, in the table's order."""
SPLITS = ('tune', 'heldout')


def flight_config(flight: Flight, blackbird_root: Path = BLACKBIRD):
    """The SyntheticConfig of a flight (raises ConfigError for an invalid override)."""
    from vssm_ros.config import SyntheticConfig

    over = dict(flight.overrides)
    if over.get('trajectory') == 'blackbird':
        over['blackbird_path'] = str(Path(blackbird_root) / over['blackbird_path'])
    return SyntheticConfig(**over)


def _replay_command() -> List[str]:
    exe = Path(sys.executable).with_name('vssm-replay')
    if exe.exists():
        return [str(exe)]
    return [sys.executable, '-m', 'vssm_ros.cli.replay']


def run_flight(flight: Flight, out_root: Path, extra_configs: Sequence[str] = (),
               max_frames: Optional[int] = None, blackbird_root: Path = BLACKBIRD,
               cache_root: Path = ROOT / '.cache', code: Optional[str] = None
               ) -> Dict[str, Any]:
    """Generate (or find in the cache) the flight's bag and run vssm-replay on it with the
    default config; returns its metrics.json, or ``{'error': ...}``. ``code``: replay with
    the ``vssm_ros`` package of that checkout instead (before/after comparisons; the flight
    is still generated by this one)."""
    from vssm_ros.data.synthetic import cached_flight_dir
    from vssm_ros.errors import VssmError

    try:
        bag = cached_flight_dir(flight_config(flight, blackbird_root), cache_root,
                                formats=('mcap',)) / 'rosbag2_mcap'
    except (VssmError, OSError) as err:
        return {'error': f'generation failed: {err}'}
    out = out_root / flight.name
    cmd = _replay_command() + [str(bag), '--out', str(out), '--quiet', '--no-plots']
    for c in extra_configs:
        cmd += ['--config', str(c)]
    if max_frames:
        cmd += ['--max-frames', str(max_frames)]
    # The environment (OMP_NUM_THREADS included) passes through.
    env = dict(os.environ)
    if code:
        env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(code), env.get('PYTHONPATH')]))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ['']
        return {'error': f'vssm-replay failed (exit {proc.returncode}): {tail[0]}'}
    try:
        return json.loads((out / 'metrics.json').read_text(encoding='utf-8'))
    except (OSError, ValueError) as err:
        return {'error': f'no metrics.json: {err}'}


# ----------------------------------------------------------------------------------------------
# Rows and the table


def _get(m: Dict[str, Any], *keys: str) -> Any:
    for k in keys:
        if not isinstance(m, dict) or m.get(k) is None:
            return None
        m = m[k]
    return m


def row(flight: Flight, m: Dict[str, Any]) -> Dict[str, Any]:
    """One table row from a flight's metrics.json (missing figures are None)."""
    frames = _get(m, 'frames', 'processed')
    if frames is None and isinstance(m.get('n_frames'), int):
        frames = m['n_frames']
    rmse, worst = _get(m, 'ate', 'rmse'), _get(m, 'ate', 'max')
    rmse_ok = _get(m, 'ate', 'ok_frames', 'rmse')
    status = _get(m, 'tracking', 'status_frames')
    # Calibration is judged on the frames tracked OK; older metrics files lack them.
    calib = _get(m, 'uncertainty', 'ok_frames') or m.get('uncertainty') or {}
    if isinstance(status, dict):
        status = '/'.join(str(status.get(k, 0)) for k in ('OK', 'DEGRADED', 'LOST'))
    return {'flight': flight.name, 'family': flight.family, 'split': flight.split,
            'frames': frames, 'ate_cm': None if rmse is None else 100 * rmse,
            'max_cm': None if worst is None else 100 * worst,
            'ok_ate_cm': None if rmse_ok is None else 100 * rmse_ok,
            'coverage': _get(calib, 'coverage'),
            'nees_median': _get(calib, 'nees_median'), 'status': status or DASH,
            'fps': _get(m, 'timing', 'frames_per_s'), 'error': None}


def error_row(flight: Flight, error: str) -> Dict[str, Any]:
    """The row of a flight that did not run."""
    return {'flight': flight.name, 'family': flight.family, 'split': flight.split,
            'frames': None, 'ate_cm': None, 'max_cm': None, 'ok_ate_cm': None,
            'coverage': None, 'nees_median': None, 'status': DASH,
            'fps': None, 'error': ' '.join(str(error).replace('|', '/').split())[:160]}


def _fmt(x: Any, spec: str = '.2f', suffix: str = '') -> str:
    if x is None:
        return DASH
    return f'{x:{spec}}{suffix}'


def _cells(r: Dict[str, Any]) -> List[str]:
    if r.get('error'):
        return [r['flight'], r['family'], r['split'], DASH, f"error: {r['error']}", DASH, DASH,
                DASH, DASH, DASH, DASH]
    cov = None if r['coverage'] is None else 100 * r['coverage']
    return [r['flight'], r['family'], r['split'], _fmt(r['frames'], 'd'), _fmt(r['ate_cm']),
            _fmt(r['max_cm']), _fmt(r.get('ok_ate_cm')), _fmt(cov, '.0f', ' %'),
            _fmt(r.get('nees_median')), r['status'], _fmt(r['fps'], '.1f')]


def _aggregate(rows: List[Dict[str, Any]], split: str) -> List[List[str]]:
    """The mean and worst rows of a split, over its flights that ran (worst: largest errors,
    lowest coverage and speed)."""
    done = [r for r in rows if r['split'] == split and not r.get('error')]
    failed = sum(1 for r in rows if r['split'] == split and r.get('error'))
    if not done and not failed:
        return []

    def vals(key):
        return [r[key] for r in done if r[key] is not None]

    def mean(key):
        v = vals(key)
        return sum(v) / len(v) if v else None

    def ext(key, f):
        v = vals(key)
        return f(v) if v else None

    cov_mean, cov_min = mean('coverage'), ext('coverage', min)
    note = f'{len(done)} ran' + (f', {failed} failed' if failed else '')
    return [[f'**{split} mean**', note, split, DASH, _fmt(mean('ate_cm')), _fmt(mean('max_cm')),
             _fmt(mean('ok_ate_cm')),
             _fmt(None if cov_mean is None else 100 * cov_mean, '.0f', ' %'), DASH, DASH,
             _fmt(mean('fps'), '.1f')],
            [f'**{split} worst**', note, split, DASH, _fmt(ext('ate_cm', max)),
             _fmt(ext('max_cm', max)), _fmt(ext('ok_ate_cm', max)),
             _fmt(None if cov_min is None else 100 * cov_min, '.0f', ' %'), DASH, DASH,
             _fmt(ext('fps', min), '.1f')]]


def table(rows: List[Dict[str, Any]]) -> str:
    """The markdown table: one row per flight, then the mean and worst of each split."""
    lines = ['| flight | family | split | frames | ATE RMSE (cm) | max error (cm) | '
             'ATE while OK (cm) | coverage 95 % while OK | NEES median while OK | '
             'OK/DEGRADED/LOST | frames/s |',
             '|---|---|---|---|---|---|---|---|---|---|---|']
    lines += ['| ' + ' | '.join(_cells(r)) + ' |' for r in rows]
    for split in SPLITS:
        lines += ['| ' + ' | '.join(c) + ' |' for c in _aggregate(rows, split)]
    return '\n'.join(lines)


# ----------------------------------------------------------------------------------------------


def _run_one(args) -> Dict[str, Any]:
    flight, out_root, extra, max_frames, bb, code = args
    t0 = time.perf_counter()
    m = run_flight(flight, out_root, extra, max_frames, bb, code=code)
    r = error_row(flight, m['error']) if 'error' in m else row(flight, m)
    r['wall_s'] = time.perf_counter() - t0
    return r


def select(only: Optional[Sequence[str]], split: Optional[str]) -> List[Flight]:
    """The flights to run, in table order; ValueError naming unknown ones."""
    names = {f.name for f in FLIGHTS}
    unknown = [n for n in (only or ()) if n not in names]
    if unknown:
        raise ValueError(f'unknown flight(s) {", ".join(unknown)}; known: '
                         f'{", ".join(f.name for f in FLIGHTS)}')
    return [f for f in FLIGHTS if (not only or f.name in only)
            and (split is None or f.split == split)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--only', nargs='+', metavar='NAME', help='run only these flights')
    p.add_argument('--split', choices=SPLITS, help='run only the flights of one split')
    p.add_argument('--config', action='append', default=[], metavar='YAML',
                   help='extra config for every replay (repeatable; default: none)')
    p.add_argument('--json', metavar='PATH', help='also write the rows as JSON')
    p.add_argument('--max-frames', type=int, metavar='N', help='replay at most N frames')
    p.add_argument('--jobs', type=int, default=1, metavar='N',
                   help='flights run in parallel (default 1: comparable frames/s)')
    p.add_argument('--out', default=str(ROOT / 'out' / 'scenarios'), metavar='DIR',
                   help='where the replays write (one folder per flight)')
    p.add_argument('--blackbird', default=str(BLACKBIRD), metavar='DIR',
                   help='folder with the Blackbird clover splits train/ and val/')
    p.add_argument('--code', metavar='DIR',
                   help='replay with the vssm_ros package of this checkout (e.g. a git '
                        'worktree of another revision: before/after tables on the same '
                        'flights)')
    p.add_argument('--list', action='store_true', help='list the flights and exit')
    args = p.parse_args(argv)
    try:
        flights = select(args.only, args.split)
    except ValueError as err:
        p.error(str(err))
    if args.list:
        for f in flights:
            print(f'{f.name:24s} {f.family:16s} {f.split:8s} {f.overrides}')
        return 0
    out_root = Path(args.out)
    out_root.mkdir(parents=True, exist_ok=True)
    work = [(f, out_root, [str(Path(c).resolve()) for c in args.config], args.max_frames,
             Path(args.blackbird), args.code and str(Path(args.code).resolve()))
            for f in flights]
    rows: List[Dict[str, Any]] = []

    def report(r):
        ate = f"error: {r['error']}" if r.get('error') else f"ATE {_fmt(r['ate_cm'])} cm"
        print(f"{r['flight']}: {ate} ({r['wall_s']:.0f} s)", file=sys.stderr, flush=True)

    if args.jobs > 1:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            for r in pool.map(_run_one, work):
                report(r)
                rows.append(r)
    else:
        for w in work:
            rows.append(_run_one(w))
            report(rows[-1])
    print(table(rows))
    if args.json:
        from vssm_ros.data.atomic import atomic_write_text
        atomic_write_text(args.json, json.dumps(rows, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
