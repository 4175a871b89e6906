# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Run reports: latency statistics, calibration of the reported position covariances, and the
short summary table the replay and demo tools print.

NumPy only; the drivers (``vssm_ros.cli``) collect the numbers and write the files.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from vssm_ros.eval.metrics import associate, nees_and_coverage, umeyama_alignment

__all__ = ['latency_stats', 'aligned_position_calibration', 'tracking_report', 'summary_table']


def latency_stats(latencies_s: Sequence[float]) -> Dict[str, Optional[float]]:
    """Percentiles of per-frame latencies, in milliseconds.

    Args:
        latencies_s: latencies in seconds. Shape: (N,).

    Returns:
        ``dict(n, mean_ms, p50_ms, p90_ms, p99_ms, max_ms)``; the statistics are None when
        ``N == 0``.
    """
    x = np.asarray(latencies_s, dtype=np.float64) * 1e3
    if x.size == 0:
        return dict(n=0, mean_ms=None, p50_ms=None, p90_ms=None, p99_ms=None, max_ms=None)
    p50, p90, p99 = np.percentile(x, [50, 90, 99])
    return dict(n=int(x.size), mean_ms=float(x.mean()), p50_ms=float(p50), p90_ms=float(p90),
                p99_ms=float(p99), max_ms=float(x.max()))


def aligned_position_calibration(est_stamps: np.ndarray, T_est: np.ndarray, cov: np.ndarray,
                                 gt_stamps: np.ndarray, T_gt: np.ndarray,
                                 max_diff: float = 0.02, prob: float = 0.95
                                 ) -> Dict[str, Any]:
    """NEES and coverage of the reported position covariances after the ATE alignment.

    The estimate is associated with ground truth by stamp and aligned by SE(3) Umeyama on the
    positions, exactly as the ATE is; the alignment rotates the estimated positions and so their
    covariances too (``R cov R^T``).

    Args:
        est_stamps: estimate stamps (int nanoseconds or float seconds). Shape: (N,).
        T_est: estimated poses. Shape: (N, 4, 4).
        cov: pose covariances, translation block first (world axes). Shape: (N, 6, 6) or
            (N, 3, 3).
        gt_stamps: ground-truth stamps (same convention). Shape: (M,).
        T_gt: ground-truth poses. Shape: (M, 4, 4).
        max_diff: largest stamp difference for a pair, seconds.
        prob: probability of the coverage ellipsoid.

    Returns:
        ``nees_and_coverage``'s dict (``nees_mean``, ``nees_median``, ``coverage``,
        ``threshold``, ``prob``, ``n``) plus ``pos_std_median_m`` (median of the reported
        position std, ``sqrt(trace / 3)``) and ``err_rms_m``.

    Raises:
        ValueError: fewer than 3 associated poses, or a covariance that is not positive
            definite.
    """
    T_est = np.asarray(T_est, dtype=np.float64)
    T_gt = np.asarray(T_gt, dtype=np.float64)
    cov = np.asarray(cov, dtype=np.float64)[:, :3, :3]
    idx_est, idx_gt = associate(np.asarray(est_stamps), np.asarray(gt_stamps), max_diff)
    if len(idx_est) < 3:
        raise ValueError(f'only {len(idx_est)} estimated poses have ground truth within '
                         f'{max_diff} s; need at least 3')
    p_est = T_est[idx_est, :3, 3]  # (K, 3)
    p_gt = T_gt[idx_gt, :3, 3]
    R, t, _ = umeyama_alignment(p_est, p_gt, with_scale=False)
    err = p_est @ R.T + t - p_gt  # (K, 3)
    cov_aligned = R @ cov[idx_est] @ R.T  # (K, 3, 3)
    out = nees_and_coverage(err, cov_aligned, prob=prob)
    std = np.sqrt(np.trace(cov[idx_est], axis1=1, axis2=2) / 3.0)
    out['pos_std_median_m'] = float(np.median(std))
    out['err_rms_m'] = float(np.sqrt(np.mean(np.sum(err ** 2, axis=1))))
    return out


STATUSES = ('OK', 'DEGRADED', 'LOST')


def tracking_report(stamps_ns: np.ndarray, statuses: Sequence[str], relocalisations: int = 0,
                    b_a: Optional[np.ndarray] = None, b_g: Optional[np.ndarray] = None,
                    signals: Sequence[Dict[str, float]] = ()) -> Dict[str, Any]:
    """Tracking health over a run: frames per status, the status changes in time, the spells
    spent LOST, relocalisations and the final IMU bias estimates.

    Args:
        stamps_ns: frame stamps. Shape: (N,).
        statuses: each frame's status ('OK', 'DEGRADED', 'LOST'). Shape: (N,).
        b_a, b_g: the last estimate's biases (m/s², rad/s). Shape: (3,).
        signals: each frame's health signals (``Estimate.health``; empty dicts allowed).

    Returns:
        ``status_frames`` {status: count}, ``changes`` [[seconds from the first frame,
        status], ...] (the first frame's included), ``lost_spells`` [[start_s, end_s], ...]
        (end: the first frame no longer LOST, or the last frame), ``relocalisations``,
        ``bias`` {``acc``, ``gyro``} or None, ``signals`` {name: [p10, p50, p90]} over the
        frames with finite values.
    """
    t = (np.asarray(stamps_ns, dtype=np.int64) - (int(stamps_ns[0]) if len(stamps_ns) else 0)
         ) * 1e-9
    changes: List[List[Any]] = []
    spells: List[List[float]] = []
    for ti, st in zip(t, statuses):
        if not changes or changes[-1][1] != st:
            if changes and changes[-1][1] == 'LOST':
                spells[-1][1] = float(ti)
            if st == 'LOST':
                spells.append([float(ti), float(t[-1])])
            changes.append([float(ti), st])
    bias = None
    if b_a is not None and b_g is not None:
        bias = {'acc': [float(x) for x in b_a], 'gyro': [float(x) for x in b_g]}
    names = sorted({k for d in signals for k in d})
    spread = {}
    for k in names:
        x = np.array([d[k] for d in signals if k in d], dtype=np.float64)
        x = x[np.isfinite(x)]
        if x.size:
            spread[k] = [float(v) for v in np.percentile(x, [10, 50, 90])]
    return {'status_frames': {s: int(sum(1 for x in statuses if x == s)) for s in STATUSES},
            'changes': changes, 'lost_spells': spells,
            'relocalisations': int(relocalisations), 'bias': bias, 'signals': spread}


def _num(x: Any, fmt: str, scale: float = 1.0, unit: str = '') -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return 'n/a'
    return f'{x * scale:{fmt}}{unit}'


def summary_table(metrics: Dict[str, Any], title: str = '') -> str:
    """A few aligned lines with the headline numbers of a replay's ``metrics.json`` dict:
    frames, ATE RMSE (cm), frames/s, step latency, memory, and where the outputs are."""
    fr = metrics.get('frames', {})
    tm = metrics.get('timing', {})
    lat = tm.get('step_latency', {})
    mem = metrics.get('memory', {})
    rows: List[tuple] = []
    rows.append(('frames', f'{fr.get("processed", 0)} processed / {fr.get("received", 0)} '
                           f'received, {fr.get("failed", 0)} failed'))
    rec = (metrics.get('input') or {}).get('recovery')
    if rec:
        rows.append(('damaged bag', f'recovered {rec.get("messages", 0)} messages over '
                                    f'{_num(rec.get("duration_s"), ".2f", 1.0, " s")} '
                                    f'({rec.get("damage")}; see input.recovery)'))
    ate = metrics.get('ate')
    assoc = metrics.get('association') or {}
    if ate:
        rows.append(('ATE rmse', f'{_num(ate.get("rmse"), ".2f", 100.0, " cm")} '
                                 f'(max {_num(ate.get("max"), ".2f", 100.0, " cm")}, '
                                 f'{ate.get("n", 0)} poses)'))
    elif 'error' in assoc:
        rows.append(('ATE rmse', 'n/a (too few poses with ground truth at their stamps)'))
    else:
        rows.append(('ATE rmse', 'n/a (no ground truth)'))
    unc = metrics.get('uncertainty')
    if unc and 'error' not in unc:
        rows.append(('calibration', f'NEES {_num(unc.get("nees_mean"), ".2f")} (3 is '
                                    f'calibrated), {_num(unc.get("coverage"), ".0%")} inside '
                                    f'the 95% ellipsoid'))
    trk = metrics.get('tracking')
    if trk:
        sf = trk.get('status_frames', {})
        rows.append(('tracking', ', '.join(f'{sf.get(k, 0)} {k}' for k in STATUSES)
                     + f' frames; {len(trk.get("lost_spells", []))} times lost, '
                       f'{trk.get("relocalisations", 0)} relocalisations'))
        ok = (unc or {}).get('ok_frames') if unc and 'error' not in unc else None
        ate_ok = (ate or {}).get('ok_frames')
        if ok and ate_ok:
            rows.append(('while OK', f'ATE rmse {_num(ate_ok.get("rmse"), ".2f", 100.0, " cm")} '
                                     f'(max {_num(ate_ok.get("max"), ".2f", 100.0, " cm")}), '
                                     f'{_num(ok.get("coverage"), ".0%")} inside the 95% '
                                     f'ellipsoid ({ate_ok.get("n", 0)} frames, their own '
                                     'alignment)'))
        bias = trk.get('bias')
        if bias:
            rows.append(('IMU bias', 'acc [' + ', '.join(f'{x:+.3f}' for x in bias['acc'])
                         + '] m/s², gyro [' + ', '.join(f'{x:+.4f}' for x in bias['gyro'])
                         + '] rad/s'))
    held = metrics.get('heldout_depth')
    if held:
        rows.append(('held-out depth', f'median |error| '
                                       f'{_num(held.get("median_abs_m"), ".2f", 100.0, " cm")} '
                                       f'at {held.get("n_views", 0)} views not used for mapping '
                                       f'({_num(held.get("coverage"), ".0%")} of pixels '
                                       'rendered)'))
    pred = metrics.get('prediction')
    if pred:
        rows.append(('prediction', f'{_num(pred.get("horizon_s"), "g")} s ahead, '
                                   f'{pred.get("scored", 0)} scored: median |depth error| '
                                   f'{_num(pred.get("median_abs_err_m"), ".3f", 1.0, " m")} '
                                   f'(static {_num(pred.get("static_median_abs_err_m"), ".3f")}'
                                   f' m), {_num(pred.get("within_2sigma"), ".0%")} within '
                                   '±2σ'))
    rows.append(('speed', f'{_num(tm.get("frames_per_s"), ".1f")} frames/s end-to-end, '
                          f'{_num(tm.get("step_frames_per_s"), ".1f")} frames/s in step()'))
    rows.append(('step latency', f'p50 {_num(lat.get("p50_ms"), ".1f")} ms, p90 '
                                 f'{_num(lat.get("p90_ms"), ".1f")} ms, max '
                                 f'{_num(lat.get("max_ms"), ".1f")} ms'))
    gpu = mem.get('peak_gpu_mb')
    rows.append(('memory', f'peak RSS {_num(mem.get("peak_rss_mb"), ".0f")} MB'
                           + (f', peak GPU {_num(gpu, ".0f")} MB' if gpu is not None else '')))
    mp = metrics.get('map')
    if mp:
        rows.append(('map', f'{mp.get("total_blocks", 0)} blocks ({mp.get("active_blocks", 0)} '
                            f'in memory, {_num(mp.get("active_bytes"), ".0f", 2.0 ** -20)} MB; '
                            f'{mp.get("evicted_blocks", 0)} on disk, '
                            f'{_num(mp.get("evicted_bytes"), ".0f", 2.0 ** -20)} MB)'))
    if metrics.get('out_dir'):
        rows.append(('outputs', str(metrics['out_dir'])))
    width = max(len(k) for k, _ in rows)
    lines = [title] if title else []
    lines += [f'  {k:<{width}}  {v}' for k, v in rows]
    return '\n'.join(lines)
