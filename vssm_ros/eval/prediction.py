# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Scoring predictions ahead against what arrived, and pictures of the cost-to-go.

A predicted depth image (mean and per-pixel std) is compared with the depth frame that actually
arrives at the predicted time, on the pixels valid in both: the absolute error and whether it
lies within ±2σ (a calibrated predictive distribution puts about 95% of the pixels inside).
"""

from __future__ import annotations

import os
from typing import Dict, Optional, Sequence, Union

import numpy as np

from vssm_ros.eval.plots import _save

PathLike = Union[str, os.PathLike]


def depth_prediction_errors(pred: np.ndarray, pred_std: np.ndarray, obs: np.ndarray
                            ) -> Dict[str, np.ndarray]:
    """Per-pixel errors of a predicted depth image where prediction and observation are valid.

    Shape: pred, pred_std, obs (H, W) -> ``abs_err`` (P,), ``z`` (P,) = abs_err / std,
    ``valid`` (H, W) bool.
    """
    pred, pred_std, obs = (np.asarray(a, dtype=np.float64) for a in (pred, pred_std, obs))
    if not pred.shape == pred_std.shape == obs.shape:
        raise ValueError(f'prediction {pred.shape}, std {pred_std.shape} and observation '
                         f'{obs.shape} differ in shape')
    with np.errstate(invalid='ignore'):
        valid = (np.isfinite(pred) & np.isfinite(pred_std) & (pred_std > 0) & np.isfinite(obs)
                 & (obs > 0))
    err = np.abs(pred[valid] - obs[valid])
    return {'abs_err': err, 'z': err / pred_std[valid], 'valid': valid}


def summarize_depth_errors(abs_err: np.ndarray, z: np.ndarray, n_pixels: int) -> Dict[str, float]:
    """Pooled statistics: ``median_abs_err_m``, ``mean_abs_err_m``, ``within_2sigma`` (fraction
    of pixels with ``|err| <= 2 std``), ``valid_fraction`` (of ``n_pixels``), ``n``."""
    n = int(abs_err.size)
    if n == 0:
        return {'median_abs_err_m': None, 'mean_abs_err_m': None, 'within_2sigma': None,
                'valid_fraction': 0.0, 'n': 0}
    return {'median_abs_err_m': float(np.median(abs_err)),
            'mean_abs_err_m': float(np.mean(abs_err)),
            'within_2sigma': float(np.mean(z <= 2.0)),
            'valid_fraction': n / max(1, int(n_pixels)), 'n': n}


def plot_cost_slice(path_png: PathLike, grid: np.ndarray, origin_xy: Sequence[float],
                    resolution: float, height: float,
                    path_xy: Optional[np.ndarray] = None, dpi: int = 100) -> None:
    """The cost slice (occupancy-grid values 0..100, -1 unknown) as an image, map x to the
    right and y up, with an optional flown path on top.

    Args:
        grid: Shape: (Y, X) int8, row 0 at ``origin_xy[1]``.
        path_xy: Shape: (N, 2) positions to draw.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib import colormaps

    grid = np.asarray(grid)
    ny, nx = grid.shape
    extent = (origin_xy[0], origin_xy[0] + nx * resolution,
              origin_xy[1], origin_xy[1] + ny * resolution)
    img = np.ma.masked_less(grid.astype(np.float64), 0)
    cmap = ListedColormap(colormaps['magma_r'](np.linspace(0.0, 0.9, 101))).with_extremes(
        bad=(0.55, 0.6, 0.7))
    fig = Figure(figsize=(6.4, 6.4 * ny / max(nx, 1) + 0.8))
    ax = fig.subplots()
    im = ax.imshow(img, origin='lower', extent=extent, cmap=cmap, vmin=0, vmax=100,
                   interpolation='nearest')
    if path_xy is not None and len(path_xy):
        ax.plot(path_xy[:, 0], path_xy[:, 1], color='tab:cyan', linewidth=1.2, label='path')
        ax.legend(loc='upper right', fontsize='small')
    ax.set_xlabel('x [m]')
    ax.set_ylabel('y [m]')
    ax.set_title(f'collision cost at z = {height:.2f} m (grey: unknown)', fontsize='medium')
    fig.colorbar(im, ax=ax, label='cost x 100')
    _save(fig, path_png, dpi)
