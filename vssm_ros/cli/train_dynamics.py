# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""vssm-train-dynamics: learn the residual transition from flights with ground truth.

DATA is a folder with ``train/`` and ``val/`` splits, each holding ``data.hdf5`` and
``stamped_groundtruth_imu.txt`` (the Blackbird layout, see ``vssm_ros.data.flight_log``). The
residual MLP and its noise are fitted by maximising the likelihood of 2 s open-loop rollouts on
``train`` (early stopping on ``val``), then both the engineered integrator f_T ("euler") and the
learned model are evaluated open loop on ``val``. Writes, atomically:

- ``OUT/dynamics.safetensors``: the weights (``engine.motion.weights`` reads them);
- ``OUT/report.json``: the configuration, the training history and the evaluation table.

Example::

    vssm-train-dynamics ../shared/data/blackbird_clover_5p0 --out out/dynamics
    vssm-train-dynamics ../shared/data/blackbird_clover_5p0 \
        --eval out/dynamics/dynamics.safetensors
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from vssm_ros.config import DynamicsTrainConfig, load_config, to_dict
from vssm_ros.core.dynamics_fit import StateSequence, fit, initial_covariance
from vssm_ros.core.learned_dynamics import LearnedDynamics
from vssm_ros.data.atomic import atomic_write_text
from vssm_ros.data.dynamics_io import load_dynamics, save_dynamics
from vssm_ros.data.flight_log import FlightLog, load_blackbird_split
from vssm_ros.errors import ConfigError, VssmError
from vssm_ros.eval.dynamics import comparison_table, open_loop_eval

WEIGHTS_FILE = 'dynamics.safetensors'
REPORT_FILE = 'report.json'


def sequence(flight: FlightLog, controls: str) -> StateSequence:
    """A flight as the tensors the fitting and evaluation work on (float32)."""
    return StateSequence.from_arrays(flight.t, flight.p, flight.q, flight.v,
                                     flight.controls(controls))


def evaluate(model: LearnedDynamics, val: FlightLog, cfg: DynamicsTrainConfig
             ) -> Dict[str, Dict[str, Dict[str, float]]]:
    """Open-loop table on ``val``: 'euler', the engineered f_T on the raw IMU (with the
    configured IMU noise, as the engine uses it), whatever the model's controls, and the learned
    model on its controls."""
    P0 = initial_covariance(cfg)
    euler = LearnedDynamics.engineered(cfg.euler_acc_noise, cfg.euler_gyro_noise, cfg.gravity)
    kw = dict(horizons_s=cfg.eval_horizons_s, every_s=cfg.eval_every_s, P0=P0,
              samples=cfg.eval_samples, seed=cfg.seed)
    return {'euler': open_loop_eval(euler, sequence(val, 'imu'), residual=False, **kw),
            'learned': open_loop_eval(model, sequence(val, model.controls), **kw)}


def train(data: Path, out: Path, cfg: DynamicsTrainConfig, log=print) -> Dict[str, Any]:
    """Fit, evaluate, write the weights and the report; returns the report."""
    t0 = time.perf_counter()
    tr = load_blackbird_split(data / 'train', calibrated=cfg.calibrated)
    va = load_blackbird_split(data / 'val', calibrated=cfg.calibrated)
    train_seq, val_seq = sequence(tr, cfg.controls), sequence(va, cfg.controls)
    model = LearnedDynamics(controls=cfg.controls, hidden=cfg.hidden, layers=cfg.layers,
                            gravity=cfg.gravity, acc_scale=cfg.acc_scale,
                            gyro_scale=cfg.gyro_scale, acc_noise=cfg.init_acc_noise,
                            gyro_noise=cfg.init_gyro_noise)
    log(f'train: {len(tr)} samples ({tr.t[-1] - tr.t[0]:.1f} s), val: {len(va)} samples '
        f'({va.t[-1] - va.t[0]:.1f} s), controls {cfg.controls!r}, '
        f'{sum(p.numel() for p in model.parameters())} parameters')
    history = fit(model, train_seq, val_seq, cfg, log=log)
    table = evaluate(model, va, cfg)
    report = {'data': str(data), 'config': to_dict(cfg), 'fit': history,
              'evaluation': {'split': 'val', **table},
              'seconds_total': time.perf_counter() - t0}
    summary = {k: report[k] for k in ('data', 'config', 'evaluation')}
    save_dynamics(out / WEIGHTS_FILE, model, report=summary)
    atomic_write_text(out / REPORT_FILE, json.dumps(report, indent=2, allow_nan=False) + '\n')
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='vssm-train-dynamics',
        description='Learn the residual transition (MLP mean correction + noise) on top of the '
                    'Euler integrator from flights with ground truth; evaluate it open loop.')
    p.add_argument('data', metavar='DATA', help='folder with train/ and val/ splits')
    p.add_argument('--out', default='out/dynamics', metavar='DIR',
                   help=f'output folder for {WEIGHTS_FILE} and {REPORT_FILE} '
                        '(default: out/dynamics)')
    p.add_argument('--config', action='append', default=[], metavar='YAML',
                   help='YAML with a train_dynamics: section (repeatable)')
    p.add_argument('--controls', choices=('imu', 'thrust'), help='controls (overrides config)')
    p.add_argument('--epochs', type=int, metavar='N', help='most epochs (overrides config)')
    p.add_argument('--seed', type=int, metavar='S', help='seed (overrides config)')
    p.add_argument('--threads', type=int, default=1, metavar='N',
                   help='torch CPU threads (default 1: the rollouts are many small operations, '
                        'which more threads slow down)')
    p.add_argument('--eval', metavar='WEIGHTS',
                   help='only evaluate these weights on val (no training, nothing written)')
    p.add_argument('--quiet', action='store_true', help='no per-epoch lines')
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    over = {k: v for k, v in (('controls', args.controls), ('epochs', args.epochs),
                              ('seed', args.seed)) if v is not None}
    log = (lambda _m: None) if args.quiet else (lambda m: print(m, flush=True))
    try:
        cfg = load_config([Path(p) for p in args.config], DynamicsTrainConfig,
                          section='train_dynamics', overrides={'train_dynamics': over})
        data = Path(args.data)
        if not data.is_dir():
            raise ConfigError(f'DATA {data} is not a folder (expected train/ and val/ splits)')
        if args.eval:
            model, _ = load_dynamics(args.eval)
            cfg = dataclasses.replace(cfg, controls=model.controls)
            va = load_blackbird_split(data / 'val', calibrated=cfg.calibrated)
            table = evaluate(model, va, cfg)
        else:
            report = train(data, Path(args.out), cfg, log=log)
            table = report['evaluation']
            table = {k: v for k, v in table.items() if k != 'split'}
            fit_info = report['fit']
            print(f'best epoch {fit_info["best_epoch"]} of {fit_info["epochs_run"]}: val NLL '
                  f'{fit_info["init_val_nll"]:.3f} -> {fit_info["best_val_nll"]:.3f} '
                  f'({report["seconds_total"]:.0f} s); wrote {Path(args.out) / WEIGHTS_FILE}')
    except VssmError as err:
        print(f'vssm-train-dynamics: error: {err}', file=sys.stderr)
        return 2
    print(f'open-loop rollouts on val ({cfg.controls} controls), every {cfg.eval_every_s:g} s '
          'from the ground-truth state; ratio = RMSE / euler RMSE:')
    print(comparison_table(table, reference='euler'))
    return 0


if __name__ == '__main__':
    sys.exit(main())
