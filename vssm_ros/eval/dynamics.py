# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Open-loop evaluation of transition models on a flight with ground truth.

From the ground-truth state (position, orientation, velocity) every ``every_s`` seconds, a model
is rolled out with the recorded controls (no correction from any measurement) and its predicted
position compared with the ground truth ``h`` seconds later, for each horizon ``h``:

- ``rmse_m``: RMS of the position error of the mean rollout;
- moment matching: the linearised covariance propagated with the mean (``coverage``, ``nees``);
- sampling: ``samples`` rollouts with the model's noise, their sample mean and covariance
  (``coverage_sampled``, ``nees_sampled``).

Coverage is the fraction of starts whose true position lies inside the predicted 95% ellipsoid
(calibrated: 0.95); NEES is the mean normalised squared error divided by the dimension
(calibrated: 1; larger: over-confident).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from vssm_ros.core.dynamics_fit import StateSequence
from vssm_ros.core.learned_dynamics import LearnedDynamics
from vssm_ros.eval.metrics import nees_and_coverage


def open_loop_eval(model: LearnedDynamics, seq: StateSequence, horizons_s: Sequence[float],
                   every_s: float, P0: torch.Tensor, residual: bool = True,
                   samples: int = 0, seed: int = 0) -> Dict[str, Dict[str, float]]:
    """Position error and calibration of open-loop rollouts (see the module docstring).

    Args:
        model: the transition (``residual=False``: its f_T with its initial noise densities).
        seq: ground-truth states and controls.
        horizons_s: horizons (seconds).
        every_s: spacing of the start states (seconds).
        P0: covariance of the start state's error. Shape: (9, 9).
        samples: sampled rollouts per start (0: no sampled statistics).

    Returns:
        Per horizon (key ``f'{h:g}'``): ``rmse_m``, ``coverage``, ``nees``, ``n`` and, with
        samples, ``coverage_sampled``, ``nees_sampled``.
    """
    dt = float(seq.dt.median())
    hsteps = [max(1, int(round(h / dt))) for h in horizons_s]
    hmax = max(hsteps)
    starts = torch.arange(0, len(seq) - hmax - 1, max(1, int(round(every_s / dt))))
    if len(starts) == 0:
        raise ValueError(f'a flight of {len(seq)} samples is shorter than the longest horizon '
                         f'({max(horizons_s)} s)')
    rows = starts[:, None] + torch.arange(hmax + 1)
    args = (seq.R[starts], seq.p[starts], seq.v[starts])
    with torch.no_grad():
        out = model.rollout(*args, seq.u[rows], seq.dt[rows], P0=P0.expand(len(starts), 9, 9),
                            residual=residual, return_all=True, steps=hmax)
        smp = None
        if samples:
            gen = torch.Generator().manual_seed(seed)
            smp = model.sample(*args, P0.expand(len(starts), 9, 9), seq.u[rows], seq.dt[rows],
                               samples, generator=gen, residual=residual, steps=hmax)
    res: Dict[str, Dict[str, float]] = {}
    for h, k in zip(horizons_s, hsteps):
        truth = seq.p[starts + k].double().numpy()
        pred = out['p'][:, k - 1].double().numpy()
        cov = out['cov'][:, k - 1, :3, :3].double().numpy()
        err = pred - truth
        moment = nees_and_coverage(err, cov)
        row = {'rmse_m': float(np.sqrt(np.mean(np.sum(err ** 2, axis=1)))),
               'coverage': moment['coverage'], 'nees': moment['nees_mean'] / 3.0,
               'n': int(len(starts))}
        if smp is not None:
            ps = smp['p'][:, :, k - 1].double().numpy()  # (S, B, 3)
            mean = ps.mean(axis=0)
            d = ps - mean
            scov = np.einsum('sbi,sbj->bij', d, d) / (ps.shape[0] - 1)
            sampled = nees_and_coverage(mean - truth, scov)
            row['coverage_sampled'] = sampled['coverage']
            row['nees_sampled'] = sampled['nees_mean'] / 3.0
        res[f'{h:g}'] = row
    return res


def comparison_table(results: Dict[str, Dict[str, Dict[str, float]]],
                     reference: Optional[str] = None) -> str:
    """A text table: one row per model and horizon (RMSE, ratio to ``reference``, coverage and
    NEES by moment matching and by sampling)."""
    lines: List[str] = [f'{"model":<10} {"horizon":>7} {"RMSE [m]":>9} {"ratio":>6} '
                        f'{"cov95":>6} {"NEES/3":>7} {"cov95 (smp)":>11} {"NEES/3 (smp)":>12}']

    def fmt(x, spec):
        return format(x, spec) if x is not None else 'n/a'

    for name, per_h in results.items():
        for h, row in per_h.items():
            ref = results.get(reference, {}).get(h) if reference else None
            ratio = row['rmse_m'] / ref['rmse_m'] if ref and ref['rmse_m'] > 0 else None
            lines.append(f'{name:<10} {h + " s":>7} {row["rmse_m"]:9.4f} '
                         f'{fmt(ratio, "6.2f"):>6} {row["coverage"]:6.2f} '
                         f'{row["nees"]:7.2f} {fmt(row.get("coverage_sampled"), "11.2f"):>11} '
                         f'{fmt(row.get("nees_sampled"), "12.2f"):>12}')
    return '\n'.join(lines)
