# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Plots for reports: trajectories against ground truth, strips of observed vs predicted images.

matplotlib is imported inside the functions (it is slow to import and only the reports need
it) and always through the Agg canvas on a bare ``Figure``: no pyplot global state, no GUI
backend, safe from worker threads. Files are rendered to memory and written atomically.
"""

from __future__ import annotations

import io
import os
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from vssm_ros.data.atomic import atomic_write_bytes
from vssm_ros.eval.metrics import align_trajectory

PathLike = Union[str, os.PathLike]
# (title, images) or (title, images, (vmin, vmax)) for a row with its own value range.
ImageRow = Union[Tuple[str, Union[np.ndarray, Sequence[np.ndarray]]],
                 Tuple[str, Union[np.ndarray, Sequence[np.ndarray]], Tuple[float, float]]]

__all__ = ['plot_trajectory', 'plot_image_strip', 'colorize_depth']


def _save(fig, path_png: PathLike, dpi: int) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=dpi)
    atomic_write_bytes(path_png, buf.getvalue())


def _positions(T: np.ndarray, name: str) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.ndim == 3 and T.shape[1:] == (4, 4):
        return T[:, :3, 3]
    if T.ndim == 2 and T.shape[1] == 3:
        return T
    raise ValueError(f'{name} must have shape (N, 4, 4) or (N, 3), got {T.shape}')


def plot_trajectory(path_png: PathLike, T_est: np.ndarray, T_gt: Optional[np.ndarray] = None,
                    title: str = '', stamps_s: Optional[np.ndarray] = None,
                    align: bool = True, dpi: int = 100) -> None:
    """Top view (x-y) and height over time of an estimate, with ground truth if given.

    With ground truth the estimate is first aligned to it (SE(3) Umeyama, the ATE alignment),
    so the plot shows what the ATE measures.

    Args:
        path_png: output file (written atomically).
        T_est: estimated poses. Shape: (N, 4, 4) or positions (N, 3).
        T_gt: ground truth associated one-to-one with ``T_est``. Shape: (N, 4, 4) or (N, 3).
        title: figure title.
        stamps_s: time axis of the height plot, seconds (else the frame index). Shape: (N,).
        align: align the estimate to the ground truth before plotting.
        dpi: resolution.
    """
    from matplotlib.figure import Figure

    p_est = _positions(T_est, 'T_est')
    p_gt = None if T_gt is None else _positions(T_gt, 'T_gt')
    if p_gt is not None and len(p_gt) != len(p_est):
        raise ValueError(f'estimate ({len(p_est)}) and ground truth ({len(p_gt)}) must be '
                         'associated one-to-one')
    label_est = 'estimate'
    if p_gt is not None and align and len(p_est) >= 3:
        try:
            p_est = align_trajectory(_homogeneous(p_est), _homogeneous(p_gt))[0][:, :3, 3]
            label_est = 'estimate (aligned)'
        except ValueError:
            # Degenerate (e.g. a hovering drone): show the raw estimate rather than no plot.
            label_est = 'estimate (not aligned: degenerate)'
    if stamps_s is not None:
        x = np.asarray(stamps_s, dtype=np.float64)
        if x.shape != (len(p_est),):
            raise ValueError(f'stamps_s must have shape ({len(p_est)},), got {x.shape}')
        x = x - x[0] if len(x) else x
        xlabel = 'time [s]'
    else:
        x = np.arange(len(p_est))
        xlabel = 'frame'

    fig = Figure(figsize=(11, 4.8))
    ax_xy, ax_z = fig.subplots(1, 2, gridspec_kw=dict(width_ratios=[1.1, 1.0]))
    if p_gt is not None:
        ax_xy.plot(p_gt[:, 0], p_gt[:, 1], '-', color='0.35', lw=1.5, label='ground truth')
        ax_z.plot(x, p_gt[:, 2], '-', color='0.35', lw=1.5, label='ground truth')
    ax_xy.plot(p_est[:, 0], p_est[:, 1], '-', color='tab:red', lw=1.2, label=label_est)
    ax_z.plot(x, p_est[:, 2], '-', color='tab:red', lw=1.2, label=label_est)
    if len(p_est):
        ax_xy.plot(p_est[:1, 0], p_est[:1, 1], 'o', color='tab:red', ms=5, label='start')
    ax_xy.set_aspect('equal', adjustable='datalim')
    ax_xy.set_xlabel('x [m]')
    ax_xy.set_ylabel('y [m]')
    ax_xy.set_title('top view')
    ax_xy.grid(True, alpha=0.3)
    ax_xy.legend(loc='best', fontsize='small')
    ax_z.set_xlabel(xlabel)
    ax_z.set_ylabel('z [m]')
    ax_z.set_title('height')
    ax_z.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title)
    # Fixed margins instead of tight_layout, which costs a second full draw.
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.11, top=0.86 if title else 0.92,
                        wspace=0.25)
    _save(fig, path_png, dpi)


def _homogeneous(p: np.ndarray) -> np.ndarray:
    T = np.tile(np.eye(4), (len(p), 1, 1))
    T[:, :3, 3] = p
    return T


def colorize_depth(depth: np.ndarray, vmin: float, vmax: float, cmap: str = 'turbo',
                   mask_nonpositive: bool = True) -> np.ndarray:
    """Depth to colour with a colormap; invalid pixels (NaN, inf, and ``<= 0`` with
    ``mask_nonpositive``, as a 0 depth is a missing reading) are black.

    Pass ``mask_nonpositive=False`` for quantities where 0 is valid (errors, stds).

    Shape: (H, W) -> (H, W, 3) uint8.
    """
    from matplotlib import colormaps

    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2:
        raise ValueError(f'depth must have shape (H, W), got {depth.shape}')
    with np.errstate(invalid='ignore'):
        valid = np.isfinite(depth)
        if mask_nonpositive:
            valid &= depth > 0
    span = max(vmax - vmin, 1e-12)
    norm = np.clip((np.where(valid, depth, vmin) - vmin) / span, 0.0, 1.0)
    rgb = (colormaps[cmap](norm)[..., :3] * 255.0 + 0.5).astype(np.uint8)
    rgb[~valid] = 0
    return rgb


def _as_rgb(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f'colour images must have shape (H, W, 3), got {img.shape}')
    if np.issubdtype(img.dtype, np.floating):
        # Predicted colour is float in [0, 1]; NaN (nothing rendered) shows black.
        img = np.nan_to_num(np.clip(img, 0.0, 1.0), nan=0.0)
        return (img * 255.0 + 0.5).astype(np.uint8)
    return img.astype(np.uint8)


def plot_image_strip(path_png: PathLike, rows: Sequence[ImageRow],
                     depth_range: Optional[Tuple[float, float]] = None,
                     cmap: str = 'turbo', dpi: int = 100) -> None:
    """A grid of images, one titled row per entry, e.g. observed vs predicted depth and colour.

    2-D images are depths (metres) drawn with ``cmap`` over a range shared by all depth images
    (so observed and predicted compare), invalid pixels (NaN, 0) black; 3-D images are colour
    (uint8, or float in [0, 1]). A row given its own range (for depth std or error images) is
    drawn over that range, with only NaN black.

    Args:
        path_png: output file (written atomically).
        rows: ``(title, images)`` or ``(title, images, (vmin, vmax))`` per row; ``images`` is
            one array or a sequence of arrays, each Shape: (H, W) depth or (H, W, 3) colour.
        depth_range: ``(vmin, vmax)`` in metres for the rows without their own; default: the
            1st-99th percentile of the valid depths of those rows.
        cmap: colormap for depth.
        dpi: resolution.
    """
    from matplotlib.figure import Figure

    if not rows:
        raise ValueError('plot_image_strip needs at least one row')
    grid = []
    for row in rows:
        if len(row) not in (2, 3):
            raise ValueError(f'a row is (title, images) or (title, images, (vmin, vmax)), got '
                             f'{len(row)} items')
        title, images = row[0], row[1]
        row_range = None if len(row) == 2 else (float(row[2][0]), float(row[2][1]))
        if isinstance(images, np.ndarray):
            images = [images]
        images = [np.asarray(im) for im in images]
        if not images:
            raise ValueError(f'row {title!r} has no images')
        grid.append((str(title), images, row_range))

    if depth_range is None:
        valid = [d[np.isfinite(d) & (d > 0)] for _, ims, own in grid if own is None
                 for d in ims if d.ndim == 2]
        valid = np.concatenate(valid) if valid else np.zeros(0)
        if valid.size:
            depth_range = (float(np.percentile(valid, 1)), float(np.percentile(valid, 99)))
        else:
            depth_range = (0.0, 1.0)
    vmin, vmax = depth_range

    n_rows = len(grid)
    n_cols = max(len(ims) for _, ims, _ in grid)
    h, w = grid[0][1][0].shape[:2]
    panel_w = 3.2
    panel_h = panel_w * h / max(w, 1)
    fig = Figure(figsize=(panel_w * n_cols + 0.6, (panel_h + 0.35) * n_rows))
    axes = np.atleast_2d(fig.subplots(n_rows, n_cols, squeeze=False))
    for r, (title, images, own) in enumerate(grid):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(images):
                ax.set_axis_off()
                continue
            im = images[c]
            if im.ndim == 2:
                lo, hi = own if own is not None else (vmin, vmax)
                rgb = colorize_depth(im, lo, hi, cmap, mask_nonpositive=own is None)
                ax.imshow(rgb, interpolation='nearest')
            else:
                ax.imshow(_as_rgb(im), interpolation='nearest')
        label = title if own is None else f'{title}\n[{own[0]:.3g}, {own[1]:.3g}]'
        axes[r, 0].set_ylabel(label)
    fig.suptitle(f'depth range {vmin:.2f}-{vmax:.2f} m ({cmap})', fontsize='small')
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.01, top=0.93, wspace=0.03,
                        hspace=0.05)
    _save(fig, path_png, dpi)
