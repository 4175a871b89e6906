# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Predictions ahead during a replay (``vssm-replay --predict-horizon S``), scored against the
frames that actually arrive.

Every ``engine.predict.period_s`` (image stamps) the engine predicts, from the posterior of the
frame just processed and with the last IMU sample held (the future controls are unknown at that
moment), the depth and colour ``S`` seconds ahead. When the frame stamped ``S`` later arrives,
the prediction is scored on it (``vssm_ros.eval.prediction``): median absolute depth error and
the fraction of pixels inside ±2σ. For scale, the same frame is also compared with the image
rendered from where the drone was when it predicted ("static": no motion predicted).

At the end, the collision cost field of the final map is evaluated along the flown path and
sliced at its median height.

Images are rendered at most ``max_width`` pixels wide (every s-th pixel of larger frames): each
prediction renders one image per trajectory sample.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from pathlib import Path
from typing import Any, Deque, Dict, List, Optional, Tuple

import numpy as np
import torch
from PIL import Image

from vssm_ros.core.engine import SlamEngine
from vssm_ros.data.atomic import atomic_open
from vssm_ros.data.outputs import prediction_camera
from vssm_ros.eval.plots import colorize_depth, plot_image_strip
from vssm_ros.eval.prediction import (depth_prediction_errors, plot_cost_slice,
                                      summarize_depth_errors)
from vssm_ros.types import Frame

MAX_WIDTH = 160
"""Predicted images are rendered at most this wide (pixels)."""
MATCH_TOLERANCE_S = 0.03
"""Largest difference between a prediction's time and the stamp of the frame it is scored on."""
STRIP_PREDICTIONS = 4
"""Predictions shown in prediction_strip.png, spread over the run."""

OUTPUTS = ('prediction_strip.png', 'predicted_depth.png', 'predicted_depth_std.png',
           'predicted_color.png', 'cost_slice.png')


def _subsampled(frame: Frame, max_width: int) -> Frame:
    """The frame at every s-th pixel, s = ceil(width / max_width); K scaled to match."""
    h, w = frame.depth.shape
    K, _, _, s = prediction_camera(frame.K, w, h, max_width)
    if s == 1:
        return frame
    return dataclasses.replace(frame, rgb=frame.rgb[::s, ::s], depth=frame.depth[::s, ::s], K=K)


@dataclasses.dataclass
class _Pending:
    made_ns: int
    target_ns: int
    pred: Dict[str, np.ndarray]
    static: np.ndarray


class PredictionScorer:
    """Makes predictions ahead during a replay and scores them when their frame arrives.

    Args:
        horizon_s: how far ahead (seconds).
        period_s: least time between two predictions (seconds of image stamps).
        max_width: render width limit (pixels).
        tolerance_s: largest stamp difference between prediction time and scoring frame.
    """

    def __init__(self, horizon_s: float, period_s: float, max_width: int = MAX_WIDTH,
                 tolerance_s: float = MATCH_TOLERANCE_S):
        if not horizon_s > 0:
            raise ValueError(f'--predict-horizon must be > 0 seconds, got {horizon_s}')
        self.horizon_ns = int(round(horizon_s * 1e9))
        self.period_ns = int(round(period_s * 1e9))
        self.max_width = max_width
        self.tol_ns = int(round(tolerance_s * 1e9))
        self.pending: Deque[_Pending] = collections.deque()
        self.last_made_ns: Optional[int] = None
        self.made = self.missed = 0
        self.scored: List[Dict[str, Any]] = []
        self.previews: List[Tuple[Frame, _Pending]] = []
        self._err: List[np.ndarray] = []
        self._z: List[np.ndarray] = []
        self._static: List[np.ndarray] = []
        self._pixels = 0
        self._slice: Optional[Dict[str, Any]] = None
        self._path_xy = np.zeros((0, 2))

    def on_frame(self, engine: SlamEngine, frame: Frame) -> None:
        """Call after ``engine.step(frame)`` succeeded: scores due predictions, maybe predicts."""
        small = _subsampled(frame, self.max_width)
        self._score(small)
        if self.last_made_ns is None or frame.stamp_ns - self.last_made_ns >= self.period_ns:
            h, w = small.depth.shape
            camera = (small.K, small.T_body_cam, w, h)
            pred = engine.predict(horizon_s=self.horizon_ns * 1e-9, camera=camera)
            est = engine.estimate()
            static = engine.render(est.T_world_body @ small.T_body_cam, small.K, w, h)['depth']
            self.pending.append(_Pending(frame.stamp_ns, frame.stamp_ns + self.horizon_ns,
                                         {k: pred[k][0] for k in ('depth', 'depth_std', 'color')},
                                         static))
            self.last_made_ns = frame.stamp_ns
            self.made += 1

    def _score(self, frame: Frame) -> None:
        while self.pending and self.pending[0].target_ns < frame.stamp_ns - self.tol_ns:
            self.pending.popleft()
            self.missed += 1
        if not self.pending or abs(self.pending[0].target_ns - frame.stamp_ns) > self.tol_ns:
            return
        p = self.pending.popleft()
        e = depth_prediction_errors(p.pred['depth'], p.pred['depth_std'], frame.depth)
        s = depth_prediction_errors(p.static, np.ones_like(p.static), frame.depth)
        self._err.append(e['abs_err'])
        self._z.append(e['z'])
        self._static.append(s['abs_err'])
        self._pixels += frame.depth.size
        row = summarize_depth_errors(e['abs_err'], e['z'], frame.depth.size)
        self.scored.append({'made_ns': p.made_ns, 'scored_ns': frame.stamp_ns, **row})
        self.previews.append((frame, p))

    def metrics(self) -> Dict[str, Any]:
        """Pooled over all scored predictions (see ``summarize_depth_errors``), plus counts and
        the static baseline's median error."""
        err = np.concatenate(self._err) if self._err else np.zeros(0)
        z = np.concatenate(self._z) if self._z else np.zeros(0)
        static = np.concatenate(self._static) if self._static else np.zeros(0)
        return {'horizon_s': self.horizon_ns * 1e-9, 'period_s': self.period_ns * 1e-9,
                'made': self.made, 'scored': len(self.scored),
                'unscored': self.missed + len(self.pending),
                **summarize_depth_errors(err, z, self._pixels),
                'static_median_abs_err_m': float(np.median(static)) if static.size else None,
                'per_prediction': self.scored}

    def cost(self, engine: SlamEngine, path_xyz: np.ndarray) -> Dict[str, Any]:
        """The collision cost of the final map along the flown path (``path_xyz`` (N, 3), map
        frame): its collision probability and largest cost, and the slice at its median height
        (kept for ``write_images``)."""
        field = engine.cost_field()
        height = float(np.median(path_xyz[:, 2])) if len(path_xyz) else 0.0
        self._slice = field.slice(height)
        self._path_xy = path_xyz[:, :2]
        path = torch.as_tensor(path_xyz, dtype=field.cost.dtype, device=field.cost.device)
        known = field.known.float().mean()
        return {'slice_height_m': self._slice['height'], 'resolution_m': field.resolution,
                'known_fraction': float(known),
                'path_collision_probability': float(field.collision_probability(path))
                if len(path_xyz) else None,
                'path_cost_max': float(field.cost_at(path).max()) if len(path_xyz) else None}

    def write_images(self, out: Path) -> None:
        """prediction_strip.png, the last scored prediction's depth / std / colour PNGs and,
        after ``cost``, cost_slice.png (the flown path drawn on it)."""
        if self.previews:
            idx = np.unique(np.round(np.linspace(0, len(self.previews) - 1,
                                                 min(STRIP_PREDICTIONS, len(self.previews))))
                            .astype(int))
            picked = [self.previews[i] for i in idx]
            std = np.concatenate([p.pred['depth_std'][np.isfinite(p.pred['depth_std'])]
                                  for _, p in picked])
            std_max = float(np.percentile(std, 99)) if std.size else 1.0
            err = [np.abs(p.pred['depth'] - f.depth) for f, p in picked]
            h = self.horizon_ns * 1e-9
            plot_image_strip(out / 'prediction_strip.png', [
                (f'observed depth (t+{h:g} s)', [f.depth for f, _ in picked]),
                ('predicted depth (at t)', [p.pred['depth'] for _, p in picked]),
                ('predicted std [m]', [p.pred['depth_std'] for _, p in picked], (0.0, std_max)),
                ('|error| [m]', err, (0.0, 2.0 * std_max)),
                ('observed colour', [f.rgb for f, _ in picked]),
                ('predicted colour', [p.pred['color'] for _, p in picked])])
            _, last = self.previews[-1]
            d = last.pred['depth']
            lo, hi = (np.nanpercentile(d, [1, 99]) if np.isfinite(d).any() else (0.0, 1.0))
            _write_png(out / 'predicted_depth.png', colorize_depth(d, lo, hi))
            s = last.pred['depth_std']
            s_hi = float(np.nanpercentile(s, 99)) if np.isfinite(s).any() else 1.0
            _write_png(out / 'predicted_depth_std.png',
                       colorize_depth(s, 0.0, s_hi, mask_nonpositive=False))
            _write_png(out / 'predicted_color.png', last.pred['color'])
        sl = self._slice
        if sl is not None:
            plot_cost_slice(out / 'cost_slice.png', sl['data'], sl['origin_xy'],
                            sl['resolution'], sl['height'], path_xy=self._path_xy)


def _write_png(path: Path, rgb: np.ndarray) -> None:
    with atomic_open(path, 'wb') as fh:
        Image.fromarray(np.ascontiguousarray(rgb)).save(fh, format='PNG')


def horizon_arg(text: str) -> float:
    """argparse type of --predict-horizon: seconds > 0."""
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(text)
    return value
