# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""vssm-replay: run the SLAM engine over a recording and report accuracy and speed.

The replay is a loop over a source feeding a ``vssm_ros.session.SlamSession`` (the object the
ROS 2 node drives too: initial pose, IMU intake, bad-input accounting, outputs), then a report.
Bad input (a frame that cannot be converted, stamps going backwards or repeated, IMU samples
out of order or not finite, IMU gaps) is skipped and counted by reason, with the first texts of
each (``frames.bad_input`` and ``frames.bad_input_examples`` in metrics.json), by the same
session code as in the node; the run goes on. Only input that leaves nothing to process (no
camera topic, no frame that could be converted) stops it, with an error naming the reasons.

INPUT is a ROS 1 ``.bag``, a ROS 2 bag directory (sqlite3 or mcap), a TUM RGB-D folder or a
folder of frames with timestamps (Blackbird layout, ``docs/blackbird.md``).
Writes to the output directory:

- ``trajectory.tum``: base_link in map, one line per processed frame, image stamps (exact ns);
- ``map.ply``: the map's surface points (colour, occupancy probability);
- ``checkpoint.safetensors``: the engine state and the config (``~/load_map`` reads it);
- ``metrics.json``: frames, frames/s, step() latency percentiles, peak memory, ATE/RPE and the
  calibration of the reported position covariances when the input has ground truth;
- ``trajectory.png`` and ``depth_strip.png`` (observed vs predicted depth and colour).

With ``--out-bag PATH`` it also writes a ROS 2 bag (mcap) of the topics the node publishes plus
the input images, viewable in RViz or Foxglove (see ``vssm_ros.cli.out_bag``).

With ``--predict-horizon S`` it also predicts, every ``engine.predict.period_s``, the depth and
colour S seconds ahead, scores each prediction on the frame that arrives then (``prediction`` in
metrics.json), reports the collision cost of the final map along the flown path (``cost``) and
writes ``prediction_strip.png``, ``predicted_depth.png``, ``predicted_depth_std.png``,
``predicted_color.png`` and the collision cost slice ``cost_slice.png`` (see
``vssm_ros.cli.predict_ahead``).

Example::

    vssm-replay rgbd_dataset_freiburg3_teddy --config config/tum.yaml --out out/teddy
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from vssm_ros.config import VssmConfig, load_config, to_dict
from vssm_ros.cli.out_bag import ReplayBag
from vssm_ros.cli.predict_ahead import PredictionScorer, horizon_arg
from vssm_ros.core.engine import SlamEngine
from vssm_ros.core.mapping import leave_a_core
from vssm_ros.data.atomic import atomic_write_text
from vssm_ros.data.export import save_checkpoint, write_ply
from vssm_ros.data.outputs import prediction_camera
from vssm_ros.data.read_ahead import read_ahead
from vssm_ros.data.sources import Source, open_source
from vssm_ros.data.trajectory import write_tum_trajectory
from vssm_ros.errors import ConfigError, SourceError, StateError, SyncError, VssmError
from vssm_ros.eval.metrics import associate, depth_l1, trajectory_metrics
from vssm_ros.eval.report import (aligned_position_calibration, latency_stats, summary_table,
                                  tracking_report)
from vssm_ros.session import SlamSession, Step
from vssm_ros.types import TIMING_COUNTS, Estimate, Frame

PathLike = Union[str, os.PathLike]

INIT_POSES = ('identity', 'gravity', 'ground_truth')
"""Values of ``engine.init_pose`` (see EngineConfig). The replay resolves 'ground_truth' itself
(the ground-truth pose of the first frame becomes ``T_world_body0``); the others are the
engine's."""
GT_MAX_DIFF_S = 0.02
"""Largest stamp difference (seconds) between an estimate and its ground-truth pose."""
READ_AHEAD = 2
"""Frames (with the items before each) the source is read ahead of the loop, on a thread of
its own (``data.read_ahead``)."""

STRIP_FRAMES = 4
"""Frames shown in depth_strip.png, spread over the run."""
STRIP_MAX_WIDTH = 320
"""Larger frames are subsampled for depth_strip.png (a full-size render costs seconds)."""

OUTPUTS = ('trajectory.tum', 'map.ply', 'checkpoint.safetensors', 'metrics.json',
           'trajectory.png', 'depth_strip.png')


# ----------------------------------------------------------------------------------------------
# Helpers


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (MB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return peak / 2**20 if sys.platform == 'darwin' else peak / 2**10


class _SpreadKeeper:
    """Keeps a bounded, evenly spread subset of a stream of unknown length: every ``stride``-th
    item, the stride doubling whenever more than ``capacity`` are kept."""

    def __init__(self, capacity: int = 2 * STRIP_FRAMES) -> None:
        self.capacity = capacity
        self.stride = 1
        self.items: List[Tuple[int, Any]] = []

    def offer(self, index: int, make: Callable[[], Any]) -> None:
        if index % self.stride:
            return
        self.items.append((index, make()))
        if len(self.items) > self.capacity:
            self.stride *= 2
            self.items = [(i, x) for i, x in self.items if i % self.stride == 0]

    def pick(self, n: int) -> List[Any]:
        """``n`` of the kept items spread from the first to the last."""
        if len(self.items) <= n:
            return [x for _, x in self.items]
        idx = np.unique(np.round(np.linspace(0, len(self.items) - 1, n)).astype(int))
        return [self.items[i][1] for i in idx]


def jsonable(x: Any) -> Any:
    """Plain JSON values: NumPy scalars and arrays unwrapped, non-finite floats as None."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if x is None or isinstance(x, str):
        return x
    return str(x)


def _stderr_line(msg: str) -> None:
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stderr)


# ----------------------------------------------------------------------------------------------
# The replay


def run_replay(source: Union[Source, PathLike], cfg: VssmConfig, out_dir: PathLike,
               max_frames: Optional[int] = None, progress: bool = True, plots: bool = True,
               init_pose: Optional[str] = None,
               log: Optional[Callable[[str], None]] = None,
               out_bag: Optional[PathLike] = None,
               predict_horizon: Optional[float] = None) -> Dict[str, Any]:
    """Run a ``SlamSession`` over a recording and write the outputs (see the module docstring).

    Args:
        source: an opened ``Source``, or a path for ``open_source``.
        cfg: the configuration (topics, camera, engine, ...).
        out_dir: output directory (created; existing outputs are replaced).
        max_frames: stop after this many frames received.
        progress: show a progress bar (only when stderr is a terminal).
        plots: write trajectory.png and depth_strip.png.
        init_pose: overrides ``cfg.engine.init_pose`` when given (one of ``INIT_POSES``).
        log: where one-line notes go (per-frame errors, fallbacks); default stderr.
        out_bag: also write the node's topics and the input images to this ROS 2 bag (mcap
            directory; replaced if it exists, see ``vssm_ros.cli.out_bag``).
        predict_horizon: also predict this many seconds ahead and score the predictions (see
            ``vssm_ros.cli.predict_ahead``).

    Returns:
        The metrics written to metrics.json (``out_dir`` added).

    Raises:
        VssmError: the input cannot be read, the config is invalid, or no frame could be
            processed. Bad input and errors of single frames are counted, logged and skipped.
    """
    log = log or _stderr_line
    if max_frames is not None and max_frames < 1:
        raise ConfigError(f'--max-frames must be >= 1, got {max_frames}')
    if not isinstance(source, Source):
        source = open_source(source, cfg)
    if not source.has_frames:
        raise SourceError(f'{source.path} has no RGB-D frames to replay '
                          f'(topics found: {source.info.get("topics")})')
    if init_pose is not None:
        cfg = with_init_pose(cfg, init_pose)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _reset_peak_gpu(cfg.engine.device)
    recorder = None
    if out_bag is not None:
        recorder = ReplayBag(out_bag, cfg, str(source.info.get('camera_frame') or ''),
                             source.info.get('topics')).open()
    with SlamSession(cfg, recorder.types if recorder else None,
                     recorder.camera_frame if recorder else '',
                     log=lambda level, text: log(f'vssm-replay: {text}'),
                     ground_truth=source.ground_truth()) as session:
        return _replay(source, cfg, session, recorder, out, max_frames=max_frames,
                       progress=progress, plots=plots, log=log, predict_horizon=predict_horizon)


def _replay(source: Source, cfg: VssmConfig, session: SlamSession, recorder, out: Path, *,
            max_frames, progress, plots, log, predict_horizon) -> Dict:
    """``run_replay``'s loop over the source and its report, in an open session."""
    scorer = (PredictionScorer(predict_horizon, cfg.engine.predict.period_s)
              if predict_horizon else None)
    run = _Run()
    skips = _SourceSkips(source, session)
    bar = _progress_bar(progress, _expected_frames(source, max_frames))
    threads = torch.get_num_threads()
    if READ_AHEAD:
        # The reader decodes on a core of its own: TUM 640x480 on the 2-core CPU ran 23.6-25.4
        # frames/s so, 18.2-19.8 with tracking on both cores beside it (session 19).
        leave_a_core()
    t_start = time.perf_counter()
    items = read_ahead(source, READ_AHEAD, lambda x: isinstance(x, Frame))
    try:
        for item in items:
            if isinstance(item, Frame) and max_frames is not None and run.received >= max_frames:
                break
            step = session.feed(item)
            skips.sync()
            if step is None:
                continue
            run.received += 1
            if bar is not None:
                bar.update(1)
            if step.estimate is not None:
                run.add(step)
                if scorer is not None:
                    scorer.on_frame(session.engine, item)
                if recorder is not None:
                    recorder.add(item, step.estimate, step.messages, session.stats())
    except KeyboardInterrupt:
        run.interrupted = True
        log('vssm-replay: interrupted; writing the outputs of the frames processed so far')
    except BaseException:
        if recorder is not None:
            recorder.abort()
        raise
    finally:
        items.close()   # the reader thread stops before the source is closed
        torch.set_num_threads(threads)
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - t_start
    skips.sync()
    flushed = session.flush()   # the last keyframe's window: into the map before it is written
    if not run.stamps:
        if recorder is not None:
            recorder.abort()
        if run.received == 0:
            raise SourceError(f'no RGB-D frame could be read from {source.path}: '
                              f'{bad_input_summary(session)}')
        first = session.first_errors
        raise StateError(f'none of the {run.received} frames could be processed; first error: '
                         f'{first[0] if first else "?"}')
    bag_counts = (recorder.finish(session.engine, session.schedule, flushed)
                  if recorder is not None else None)
    metrics = _report(source, cfg, session, run, wall, out, plots, scorer, log)
    if recorder is not None:
        metrics['out_bag'] = {'path': str(recorder.path), 'messages': bag_counts}
    metrics = jsonable(metrics)
    atomic_write_text(out / 'metrics.json', json.dumps(metrics, indent=2, allow_nan=False) + '\n')
    return metrics


class _SourceSkips:
    """Hands what the source skipped (``info['skipped']``, with its ``skip_examples``) to the
    session's bad-input accounting as it happens: the counts, examples, log lines and the
    diagnostics of the output bag are then the session's, as in the node."""

    def __init__(self, source: Source, session: SlamSession) -> None:
        self.source, self.session = source, session
        self.done: Dict[str, int] = {}

    def sync(self) -> None:
        info = self.source.info
        skipped, examples = info.get('skipped') or {}, info.get('skip_examples') or {}
        for reason, n in list(skipped.items()):
            done = self.done.get(reason, 0)
            if n <= done:
                continue
            self.done[reason] = n
            texts = examples.get(reason, [])[done:n]   # the texts kept for these skips
            for text in texts:
                self.session.bad(reason, text)
            rest = n - done - len(texts)
            self.session.bad(reason, f'{reason}: skipped by the {self.source.kind or "input"} '
                                     'reader', rest)


def bad_input_summary(session: SlamSession, most: int = 4) -> str:
    """The bad input counted so far, most frequent first, each with its first example (for an
    error that says why no frame could be used)."""
    counts = sorted(session.bad_counts().items(), key=lambda kv: -kv[1])
    if not counts:
        return 'no message was skipped as bad input'
    examples = session.bad_input_examples()
    parts = [f'{k} x{n}' + (f' (e.g. {examples[k][0]})' if examples.get(k) else '')
             for k, n in counts[:most]]
    more = f'; and {len(counts) - most} more reasons' if len(counts) > most else ''
    return 'bad input: ' + '; '.join(parts) + more


class _Run:
    """What a replay keeps of the processed frames: the trajectory and a few frames for the
    strip."""

    def __init__(self) -> None:
        self.received = 0
        self.interrupted = False
        self.stamps: List[int] = []
        self.poses: List[np.ndarray] = []
        self.covs: List[np.ndarray] = []
        self.statuses: List[str] = []
        self.health: List[Dict[str, float]] = []
        self.keeper = _SpreadKeeper()

    def add(self, step: Step) -> None:
        est = step.estimate
        self.stamps.append(int(est.stamp_ns))
        self.poses.append(est.T_world_body)
        self.covs.append(est.cov)
        self.statuses.append(est.status)
        self.health.append(est.health)
        self.keeper.offer(len(self.stamps) - 1, lambda f=step.frame, e=est: (f, e))


def _progress_bar(progress: bool, total: Optional[int]) -> Any:
    if not (progress and sys.stderr.isatty()):
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit='frame', desc='vssm-replay', file=sys.stderr,
                dynamic_ncols=True)


def _reset_peak_gpu(device: str) -> None:
    if device.startswith('cuda'):
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats(device)


def _report(source: Source, cfg: VssmConfig, session: SlamSession, run: _Run, wall: float,
            out: Path, plots: bool, scorer: Optional[PredictionScorer],
            log: Callable[[str], None]) -> Dict[str, Any]:
    """Write trajectory.tum, map.ply, the checkpoint and the plots; the metrics."""
    engine, n = session.engine, len(run.stamps)
    stamps_ns = np.array(run.stamps, dtype=np.int64)
    T_est = np.stack(run.poses)  # (N, 4, 4)
    cov = np.stack(run.covs)  # (N, 6, 6)
    steps = list(session.steps_s)
    sums = session.stage_sums
    c = session.counts
    metrics: Dict[str, Any] = {
        'input': {k: source.info.get(k)
                  for k in ('kind', 'path', 'topics', 'counts', 'T_body_cam_source',
                            'recovery')},
        'frames': {'received': run.received, 'processed': n, 'failed': c['frames_failed'],
                   'errors': dict(session.errors), 'first_errors': session.first_errors,
                   'skipped_by_source': dict(source.info.get('skipped', {})),
                   'bad_input': session.bad_counts(),
                   'bad_input_examples': session.bad_input_examples()},
        'imu_samples': c['imu_received'],
        'interrupted': run.interrupted,
        'device': cfg.engine.device,
        'init_pose': getattr(cfg.engine, 'init_pose', 'identity'),
        'init_from_ground_truth': session.init_from_ground_truth,
        'timing': {
            'wall_s': wall,
            'frames_per_s': n / wall if wall > 0 else None,
            'step_frames_per_s': n / sum(steps) if sum(steps) > 0 else None,
            'step_latency': latency_stats(steps),
            'stages_mean_ms': {k: 1e3 * v / n for k, v in sums.items()
                               if k not in TIMING_COUNTS},
            **{f'{k}_mean': sums[k] / n if k in sums else None for k in TIMING_COUNTS},
        },
    }
    ground_truth = source.ground_truth()
    gt_stamps = np.array([p.stamp_ns for p in ground_truth], dtype=np.int64)
    T_gt = (np.stack([p.T_world_body for p in ground_truth]) if ground_truth
            else np.zeros((0, 4, 4)))
    metrics['ate'] = metrics['rpe'] = metrics['association'] = metrics['uncertainty'] = None
    if ground_truth:
        try:
            tm = trajectory_metrics(stamps_ns, T_est, gt_stamps, T_gt, max_diff=GT_MAX_DIFF_S)
            metrics['ate'], metrics['rpe'] = tm.pop('ate'), tm.pop('rpe')
            metrics['association'] = tm
        except SyncError as err:
            metrics['association'] = {'error': str(err)}
            log(f'vssm-replay: no ATE: {err}')
        try:
            metrics['uncertainty'] = aligned_position_calibration(
                stamps_ns, T_est, cov, gt_stamps, T_gt, max_diff=GT_MAX_DIFF_S)
        except ValueError as err:
            metrics['uncertainty'] = {'error': str(err)}
        _ok_frames(metrics, run.statuses, stamps_ns, T_est, cov, gt_stamps, T_gt)
    write_tum_trajectory(out / 'trajectory.tum', stamps_ns, T_est)
    pts = engine.map_points(whole_map=True)   # the regions swapped out of memory too
    write_ply(out / 'map.ply', pts['xyz'], pts['rgb'], pts['occupancy'])
    save_checkpoint(out / 'checkpoint.safetensors', engine.state_dict(stream=True),
                    to_dict(cfg))
    metrics['map_points'] = int(len(pts['xyz']))
    strip = [_render_kept(engine, f, e) for f, e in run.keeper.pick(STRIP_FRAMES)]
    metrics['depth_l1'] = [dict(stamp_ns=f.stamp_ns, **depth_l1(r['depth'], f.depth))
                           for f, _, r in strip]
    if plots:
        title = '/'.join(Path(str(source.path)).parts[-2:])
        if metrics['ate']:
            title += f'  (ATE rmse {100 * metrics["ate"]["rmse"]:.2f} cm, {n} frames)'
        _plot_trajectory(out / 'trajectory.png', stamps_ns, T_est, gt_stamps, T_gt, title=title)
        _plot_strip(out / 'depth_strip.png', strip)
    if scorer is not None:
        metrics['prediction'] = scorer.metrics()
        metrics['cost'] = scorer.cost(engine, T_est[:, :3, 3])
        if plots:
            scorer.write_images(out)
    metrics['memory'] = {'peak_rss_mb': peak_rss_mb(),
                         'peak_gpu_mb': _peak_gpu_mb(cfg.engine.device)}
    metrics['map'] = engine.map_stats()   # blocks and bytes: active, evicted, total
    last = None if not c['imu_received'] else session.last_estimate   # no IMU: no biases
    metrics['tracking'] = tracking_report(
        stamps_ns, run.statuses, engine.n_relocalisations,
        None if last is None else last.b_a, None if last is None else last.b_g, run.health)
    metrics['out_dir'] = str(out)
    return metrics


def _ok_frames(metrics: Dict[str, Any], statuses: List[str], stamps_ns: np.ndarray,
               T_est: np.ndarray, cov: np.ndarray, gt_stamps: np.ndarray,
               T_gt: np.ndarray) -> None:
    """ATE and calibration over the frames tracked OK alone, with their own alignment
    (``metrics['ate']['ok_frames']``, ``metrics['uncertainty']['ok_frames']``): what the
    estimate is worth while it says it is fine, whatever a lost spell did to the rest."""
    ok = np.array(statuses) == 'OK'
    ate_ok = unc_ok = None
    if ok.sum() >= 3:
        try:
            tm = trajectory_metrics(stamps_ns[ok], T_est[ok], gt_stamps, T_gt,
                                    max_diff=GT_MAX_DIFF_S)
            ate_ok = {k: tm['ate'][k] for k in ('rmse', 'max', 'n')}
            unc_ok = aligned_position_calibration(stamps_ns[ok], T_est[ok], cov[ok], gt_stamps,
                                                  T_gt, max_diff=GT_MAX_DIFF_S)
        except (SyncError, ValueError):
            pass
    if isinstance(metrics.get('ate'), dict):
        metrics['ate']['ok_frames'] = ate_ok
    if isinstance(metrics.get('uncertainty'), dict) and 'error' not in metrics['uncertainty']:
        metrics['uncertainty']['ok_frames'] = unc_ok


def _expected_frames(source: Source, max_frames: Optional[int]) -> Optional[int]:
    counts = source.info.get('counts') or {}
    rgb = (source.info.get('topics') or {}).get('rgb')
    total = counts.get('frames') if 'frames' in counts else counts.get(rgb)
    if total is None:
        return max_frames
    return min(int(total), max_frames) if max_frames is not None else int(total)


def _peak_gpu_mb(device: str) -> Optional[float]:
    if not device.startswith('cuda'):
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def _render_kept(engine: SlamEngine, frame: Frame, est: Estimate
                 ) -> Tuple[Frame, Estimate, Dict[str, np.ndarray]]:
    """The frame (subsampled to at most STRIP_MAX_WIDTH pixels wide) and the engine's
    prediction of it from the estimated pose."""
    h, w = frame.depth.shape
    K, w, h, s = prediction_camera(frame.K, w, h, STRIP_MAX_WIDTH)
    if s > 1:
        frame = dataclasses.replace(frame, rgb=frame.rgb[::s, ::s], depth=frame.depth[::s, ::s],
                                    K=K)
    T_world_cam = est.T_world_body @ frame.T_body_cam
    return frame, est, engine.render(T_world_cam, frame.K, w, h)


def _plot_trajectory(path: Path, stamps_ns: np.ndarray, T_est: np.ndarray,
                     gt_stamps: np.ndarray, T_gt: np.ndarray, title: str) -> None:
    from vssm_ros.eval.plots import plot_trajectory

    i_est, i_gt = associate(stamps_ns, gt_stamps, GT_MAX_DIFF_S)
    if len(i_est) >= 3:
        plot_trajectory(path, T_est[i_est], T_gt[i_gt], title=title,
                        stamps_s=(stamps_ns[i_est] - stamps_ns[0]) * 1e-9)
    else:
        plot_trajectory(path, T_est, None, title=title,
                        stamps_s=(stamps_ns - stamps_ns[0]) * 1e-9)


def _plot_strip(path: Path, strip: List[Tuple[Frame, Estimate, Dict[str, np.ndarray]]]) -> None:
    from vssm_ros.eval.plots import plot_image_strip

    if not strip:
        return
    std = np.concatenate([r['depth_std'][np.isfinite(r['depth_std'])] for _, _, r in strip])
    std_max = float(np.percentile(std, 99)) if std.size else 1.0
    rows = [('observed depth', [f.depth for f, _, _ in strip]),
            ('predicted depth', [r['depth'] for _, _, r in strip]),
            ('predicted std [m]', [r['depth_std'] for _, _, r in strip], (0.0, std_max)),
            ('observed colour', [f.rgb for f, _, _ in strip]),
            ('predicted colour', [r['color'] for _, _, r in strip])]
    plot_image_strip(path, rows)


# ----------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='vssm-replay',
        description='Run VSSM-LM SLAM over a recording (ROS 1 bag, ROS 2 bag directory, TUM '
                    'RGB-D folder or Blackbird-style frames folder); write the trajectory, map, '
                    'checkpoint, metrics and plots.')
    p.add_argument('input', metavar='INPUT',
                   help='.bag file, ROS 2 bag directory, TUM folder or frames folder '
                        '(docs/blackbird.md)')
    p.add_argument('--config', action='append', default=[], metavar='YAML',
                   help='config file (plain or ROS 2 parameter YAML); repeatable, later ones '
                        'override earlier ones')
    p.add_argument('--out', default='out/replay', metavar='DIR',
                   help='output directory (default: out/replay)')
    p.add_argument('--device', metavar='DEV',
                   help='torch device, e.g. cpu or cuda (overrides engine.device)')
    p.add_argument('--max-frames', type=int, metavar='N', help='stop after N frames')
    p.add_argument('--init-pose', choices=INIT_POSES,
                   help='map frame: the first body frame, gravity-aligned at it, or the '
                        'ground-truth pose of the first frame (overrides engine.init_pose)')
    p.add_argument('--no-plots', action='store_true', help='skip the PNG plots')
    p.add_argument('--out-bag', metavar='PATH',
                   help='also write a ROS 2 bag (mcap directory; replaced if it exists) with the '
                        'topics the node publishes (under /vssm) and the input images, for '
                        'RViz (ros2 bag play) or Foxglove')
    p.add_argument('--predict-horizon', type=horizon_arg, metavar='SECONDS',
                   help='also predict depth and colour this far ahead every '
                        'engine.predict.period_s, score them on the frames that arrive, and '
                        'write the predicted images and the collision cost slice as PNGs')
    p.add_argument('--quiet', action='store_true', help='no progress bar, no summary')
    return p


def load_replay_config(paths: Sequence[PathLike], device: Optional[str] = None,
                       init_pose: Optional[str] = None) -> VssmConfig:
    """The config of YAML files merged in order, with the device and the initial pose mode
    overridden when given."""
    engine = {k: v for k, v in (('device', device), ('init_pose', init_pose)) if v}
    return load_config(list(paths), VssmConfig, overrides={'engine': engine} if engine else None)


def with_init_pose(cfg: VssmConfig, init_pose: str) -> VssmConfig:
    """``cfg`` with ``engine.init_pose`` replaced (validated by the config)."""
    if init_pose not in INIT_POSES:
        raise ConfigError(f'init_pose must be one of {", ".join(INIT_POSES)}, got {init_pose!r}')
    try:
        engine = dataclasses.replace(cfg.engine, init_pose=init_pose)
    except TypeError as err:   # an EngineConfig without the field
        raise ConfigError(f'this engine has no init_pose setting ({err})') from err
    return dataclasses.replace(cfg, engine=engine)


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load_replay_config(args.config, args.device, args.init_pose)
        source = open_source(args.input, cfg)
        metrics = run_replay(source, cfg, args.out, max_frames=args.max_frames,
                             progress=not args.quiet, plots=not args.no_plots,
                             out_bag=args.out_bag, predict_horizon=args.predict_horizon)
    except VssmError as err:
        print(f'vssm-replay: error: {err}', file=sys.stderr)
        return 2
    if not args.quiet:
        print(summary_table(metrics, title=f'vssm-replay: {args.input}'))
    return 130 if metrics.get('interrupted') else 0


if __name__ == '__main__':
    sys.exit(main())
