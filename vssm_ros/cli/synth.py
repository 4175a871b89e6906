# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""vssm-synth: generate the synthetic drone flight and write it as bags and/or a TUM folder.

Example::

    vssm-synth --out out/synthetic --format mcap tum --seed 3 --duration 20
    vssm-synth --out out/hall --layout hall --duration 130
    vssm-synth --out out/rooms --layout rooms --duration 500 --format mcap
    vssm-synth --out out/fast --start moving --yaw velocity --peak-speed 3
    vssm-synth --out out/bb --trajectory blackbird --duration 25 --camera-rate 30 \
        --blackbird data/blackbird_clover_5p0/train --blackbird-start 5
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import List, Optional

import numpy as np

from vssm_ros.config import SyntheticConfig, load_config
from vssm_ros.data.synthetic import FORMAT_PATHS, generate_flight, write_flight
from vssm_ros.errors import VssmError

LAYOUTS = ('room', 'hall', 'rooms')
"""The values of ``synthetic.layout``."""
STARTS = ('loop', 'centre', 'moving')
"""The values of ``synthetic.start``."""
# Command-line option -> SyntheticConfig field.
_OVERRIDES = {'seed': 'seed', 'duration': 'duration_s', 'peak_speed': 'peak_speed',
              'width': 'width', 'height': 'height', 'layout': 'layout', 'start': 'start',
              'yaw': 'yaw', 'trajectory': 'trajectory', 'blackbird': 'blackbird_path',
              'blackbird_start': 'blackbird_start_s', 'camera_rate': 'camera_rate_hz',
              'texture': 'texture'}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='vssm-synth',
        description='Generate the synthetic drone flight (RGB-D + IMU + ground truth) and '
                    'write it as ROS bags (RealSense-like topics) and/or a TUM RGB-D folder.')
    p.add_argument('--config', action='append', default=[], metavar='YAML',
                   help='YAML file(s) with a "synthetic:" section; later ones override earlier '
                        'ones (repeatable)')
    p.add_argument('--out', required=True, metavar='DIR', help='output directory')
    p.add_argument('--format', nargs='+', default=['mcap', 'tum'], choices=list(FORMAT_PATHS),
                   help='what to write (default: mcap tum)')
    p.add_argument('--seed', type=int, help='random seed (scene, flight, noise)')
    p.add_argument('--duration', type=float, metavar='S', help='flight duration (seconds)')
    p.add_argument('--peak-speed', type=float, metavar='M_S', help='peak speed (m/s)')
    p.add_argument('--width', type=int, help='image width (pixels)')
    p.add_argument('--height', type=int, help='image height (pixels)')
    p.add_argument('--layout', choices=LAYOUTS,
                   help='scene: room (one room, the default), hall (a large hall, obstacles '
                        'along the walls) or rooms (four rooms joined by doorways)')
    p.add_argument('--start', choices=STARTS,
                   help='start hovering on the loop (default), at the centre of the room or '
                        'hall, spiralling out onto the loop, or moving: on the loop at full speed')
    p.add_argument('--yaw', choices=('centre', 'velocity'),
                   help="heading: the layout's own (default) or along the velocity")
    p.add_argument('--trajectory', choices=('loop', 'blackbird'),
                   help='the loop (default) or a segment of a real Blackbird flight with its '
                        'real IMU (needs --blackbird)')
    p.add_argument('--blackbird', metavar='DIR',
                   help='Blackbird split folder (data.hdf5, stamped_groundtruth_imu.txt)')
    p.add_argument('--blackbird-start', type=float, metavar='S',
                   help='start of the Blackbird segment (seconds into the recording)')
    p.add_argument('--camera-rate', type=float, metavar='HZ', help='RGB-D frame rate')
    p.add_argument('--texture', choices=('default', 'low_contrast', 'repetitive'),
                   help='surface textures')
    p.add_argument('--overwrite', action='store_true', help='replace outputs that exist')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {field: getattr(args, opt) for opt, field in _OVERRIDES.items()
                 if getattr(args, opt) is not None}
    try:
        cfg = load_config(args.config, SyntheticConfig, section='synthetic',
                          overrides={'synthetic': overrides})
        t0 = time.perf_counter()
        flight = generate_flight(cfg)
        t_gen = time.perf_counter() - t0
        bar = None
        if not args.quiet:
            from tqdm import tqdm
            bar = tqdm(total=flight.n_frames * len(set(args.format)), unit='frame',
                       desc='vssm-synth', file=sys.stderr)
        t0 = time.perf_counter()
        try:
            written = write_flight(flight, args.out, args.format, overwrite=args.overwrite,
                                   progress=bar.update if bar is not None else None)
        finally:
            if bar is not None:
                bar.close()
        t_write = time.perf_counter() - t0
    except VssmError as err:
        print(f'vssm-synth: error: {err}', file=sys.stderr)
        return 2
    print(summary(flight, written, t_gen, t_write))
    return 0


def summary(flight, written, t_gen: float, t_write: float) -> str:
    """A few lines on what was generated and where it went."""
    cfg = flight.cfg
    p = flight.gt_imu.T_world_body[:, :3, 3]
    speed = np.linalg.norm(flight.gt_imu.v_world, axis=1)
    length = float(np.linalg.norm(np.diff(p, axis=0), axis=1).sum())
    clearance = float(flight.scene.distance(p).min())
    imu_hz = (len(flight.imu.stamps_ns) - 1) / max(float(flight.seconds(
        flight.imu.stamps_ns[-1])), 1e-9)
    what = (f'Blackbird segment {cfg.blackbird_path} from {cfg.blackbird_start_s:g} s'
            if cfg.trajectory == 'blackbird' else f'start {cfg.start}')
    lines = [
        f'synthetic flight (seed {cfg.seed}, layout {cfg.layout}, {what}): '
        f'{cfg.duration_s:g} s, {flight.n_frames} frames '
        f'{cfg.width}x{cfg.height} @ {cfg.camera_rate_hz:g} Hz, {len(flight.imu.stamps_ns)} IMU '
        f'samples @ {imu_hz:.0f} Hz',
        f'  path {length:.2f} m, peak speed {speed.max():.3f} m/s, height '
        f'{p[:, 2].min():.2f}-{p[:, 2].max():.2f} m, clearance {clearance:.2f} m, '
        f'{flight.scene.n_boxes} boxes + {flight.scene.n_cylinders} cylinders',
        f'  generated in {t_gen:.2f} s, written in {t_write:.2f} s',
    ]
    lines += [f'  {fmt}: {path}' for fmt, path in written.items()]
    return '\n'.join(lines)


if __name__ == '__main__':
    sys.exit(main())
