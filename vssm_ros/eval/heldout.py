# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Depth rendered from the learned map at held-out views of a synthetic flight.

The held-out cameras are the true poses halfway between consecutive frames: the engine never
saw an image from them, so the error measures the map (and the drift of the poses it was built
from), not the memory of a frame.
"""

from __future__ import annotations

from typing import Callable, Dict, List

import numpy as np

from vssm_ros.eval.metrics import align_trajectory, associate

RenderFn = Callable[[np.ndarray, np.ndarray, int, int], Dict[str, np.ndarray]]
"""``render(T_world_cam, K, width, height)`` -> dict with ``depth`` (H, W), NaN where nothing
is hit (``SlamEngine.render``)."""


def heldout_times(flight, n_views: int, upto_frame: int) -> np.ndarray:
    """Times (seconds since the flight start) halfway between consecutive frames, spread over
    the first ``upto_frame`` frames.

    Args:
        flight: a ``SyntheticFlight``.
        n_views: number of views.
        upto_frame: frames the engine processed (views lie between frames 0 and this).
    Returns:
        ``n_views`` times (fewer if the run is short). Shape: (V,).
    """
    last = min(int(upto_frame), flight.n_frames) - 1
    if last < 1 or n_views < 1:
        return np.zeros(0)
    idx = np.unique(np.linspace(0, last - 1, n_views).round().astype(int))
    stamps = flight.frame_stamps_ns
    return flight.seconds((stamps[idx] + stamps[idx + 1]) // 2)


def heldout_cameras(flight, n_views: int, upto_frame: int) -> List[np.ndarray]:
    """True camera poses at ``heldout_times``. Shape: each (4, 4)."""
    t = heldout_times(flight, n_views, upto_frame)
    if t.size == 0:
        return []
    return [T @ flight.T_body_cam for T in flight.state_at(t).T_world_body]


def status_at(stamps_s: np.ndarray, changes) -> np.ndarray:
    """Each stamp's tracking status from a run's status changes (``tracking.changes`` of
    metrics.json: [[seconds from the first frame, status], ...]). Shape: (N,)."""
    t = np.asarray(stamps_s, dtype=np.float64)
    if not changes or t.size == 0:
        return np.full(t.shape, 'OK', dtype=object)
    starts = np.array([c[0] for c in changes], dtype=np.float64)
    names = np.array([c[1] for c in changes], dtype=object)
    # The changes' times are the frames' own (ns differences): a microsecond covers rounding.
    k = np.searchsorted(starts, t - t[0] + 1e-6, side='right') - 1
    return names[np.clip(k, 0, len(names) - 1)]


def map_to_world(est_stamps_s: np.ndarray, T_map_body: np.ndarray, flight,
                 statuses=None) -> np.ndarray:
    """The rigid transform taking the map frame to the flight's world frame: the ATE alignment
    (Umeyama on positions) of the estimated trajectory to the ground truth at the frame stamps,
    or the first frames' poses where the positions span less than 10 cm in two directions.

    With ``statuses``, only the ``OK`` frames are aligned (when there are at least 3): the map
    is built from them alone, and poses coasted while ``LOST`` (a covered lens: tens of cm off,
    as the status says) would tilt the map's registration to the world by their error.

    Args:
        est_stamps_s: estimate stamps (seconds). Shape: (N,).
        T_map_body: estimated poses. Shape: (N, 4, 4).
        flight: the ``SyntheticFlight``.
        statuses: each estimate's tracking status (``status_at``), or None. Shape: (N,).
    Returns:
        ``T_world_map``. Shape: (4, 4).
    """
    est_stamps_s = np.asarray(est_stamps_s, dtype=np.float64)
    if statuses is not None:
        ok = np.asarray(statuses) == 'OK'
        if ok.sum() >= 3:
            est_stamps_s, T_map_body = est_stamps_s[ok], np.asarray(T_map_body)[ok]
    t_gt = flight.frame_stamps_ns * 1e-9
    idx_est, idx_gt = associate(est_stamps_s, t_gt, 0.02)
    T_est, T_gt = T_map_body[idx_est], flight.gt_frames.T_world_body[idx_gt]
    p = T_gt[:, :3, 3] - T_gt[:, :3, 3].mean(axis=0)
    spread = np.linalg.svd(p, compute_uv=False) / np.sqrt(max(len(p), 1))
    if len(p) < 3 or spread[1] < 0.1:
        # A hover or a straight line does not fix a rotation: align the first frames.
        return T_gt[0] @ np.linalg.inv(T_est[0])
    return align_trajectory(T_est, T_gt)[1]


def heldout_depth_error(render: RenderFn, flight, n_views: int = 12,
                        upto_frame: int | None = None,
                        T_map_world: np.ndarray | None = None) -> Dict[str, float]:
    """Absolute error of the rendered depth against the noise-free true depth at held-out views.

    Args:
        render: the map's renderer (see ``RenderFn``).
        flight: the ``SyntheticFlight`` the map was built from.
        n_views: held-out views (see ``heldout_cameras``).
        upto_frame: frames processed (default: all).
        T_map_world: the flight's world frame in the map frame (None: the same frame), e.g.
            the inverse of the trajectory's ATE alignment (``map_to_world``). Shape: (4, 4).
    Returns:
        ``median_abs_m`` and ``mean_abs_m`` over pixels valid in both images, ``p90_abs_m``,
        ``coverage`` (fraction of truly valid pixels that the map renders), ``n_views``,
        ``n_pixels``. Errors are NaN when no pixel is valid in both.
    """
    cams = heldout_cameras(flight, n_views, flight.n_frames if upto_frame is None else upto_frame)
    h, w = flight.cfg.height, flight.cfg.width
    errs, n_true = [], 0
    T_mw = np.eye(4) if T_map_world is None else np.asarray(T_map_world, dtype=np.float64)
    for T in cams:
        _, true = flight.render(T, noise=False)
        pred = render(T_mw @ T, flight.K, w, h)['depth']
        ok_true = np.isfinite(true)
        both = ok_true & np.isfinite(pred)
        n_true += int(ok_true.sum())
        errs.append(np.abs(pred[both] - true[both]))
    e = np.concatenate(errs) if errs else np.zeros(0)
    nan = float('nan')
    return {'median_abs_m': float(np.median(e)) if e.size else nan,
            'mean_abs_m': float(e.mean()) if e.size else nan,
            'p90_abs_m': float(np.percentile(e, 90)) if e.size else nan,
            'coverage': e.size / n_true if n_true else nan,
            'n_views': len(cams), 'n_pixels': int(e.size)}
