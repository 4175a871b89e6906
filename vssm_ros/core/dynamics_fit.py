# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Fitting the learned transition to ground-truth flights: multi-step rollout likelihood.

Training windows of ``window_s`` start every ``stride_s`` on the training flight. From the
ground-truth state at a window's start, the model is rolled out open loop with the recorded
controls, its mean and linearised covariance propagated together (``LearnedDynamics.rollout``);
the loss is the Gaussian negative log-likelihood of the ground-truth states (δp, δφ, δv) every
``score_every_s`` along the window. Maximising it fits the residual mean (errors compound over
the window, so one-step noise in the ground truth's finite differences does not dominate) and
the noise densities (their size sets how fast the covariance grows, which the likelihood at
several horizons calibrates). Gradients flow through the whole window (backpropagation through
time, truncated at the window). The validation flight's mean window NLL decides early stopping;
the best epoch's weights are kept.

A rollout starts from the ground-truth state with the covariance ``init_*_std``. The ground
truth it is scored against is itself a measurement: its noise (isotropic stds of position,
orientation and velocity, initialised from ``init_*_std``) is fitted alongside and added to the
predicted covariance where the rollout is scored. Without it, what the reference gets wrong
(e.g. a fixed misalignment between the motion-capture body frame and the IMU, which looks like
an orientation error that no transition can predict, or jitter of the motion-capture velocity)
would be explained as process noise, which accumulates into the position and makes it
under-confident.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch

from vssm_ros.config import DynamicsTrainConfig
from vssm_ros.core import lie
from vssm_ros.core.learned_dynamics import LearnedDynamics, error_nll
from vssm_ros.errors import StateError

Tensor = torch.Tensor


@dataclass
class StateSequence:
    """Ground-truth states and the controls applied from each one (one control rate).

    Attributes:
        R: orientation world <- body. Shape: (N, 3, 3).
        p: position, world. Shape: (N, 3).
        v: velocity, world. Shape: (N, 3).
        u: controls ``(a, ω)`` applied from each state to the next. Shape: (N, 6).
        dt: time from each state to the next (the last one repeats). Shape: (N,).
    """

    R: Tensor
    p: Tensor
    v: Tensor
    u: Tensor
    dt: Tensor

    def __len__(self) -> int:
        return int(self.p.shape[0])

    @classmethod
    def from_arrays(cls, t, p, q_xyzw, v, u, dtype=torch.float32) -> 'StateSequence':
        """From array-likes: stamps (N,) s, positions (N, 3), xyzw quaternions (N, 4),
        velocities (N, 3), controls (N, 6)."""
        t = torch.as_tensor(t, dtype=torch.float64)
        if t.shape[0] < 2:
            raise StateError('a state sequence needs at least two samples')
        dt = torch.diff(t)
        dt = torch.cat((dt, dt[-1:]))
        q = lie.quat_normalize(torch.as_tensor(q_xyzw, dtype=torch.float64))
        return cls(R=lie.quat_to_matrix(q).to(dtype), p=torch.as_tensor(p, dtype=dtype),
                   v=torch.as_tensor(v, dtype=dtype), u=torch.as_tensor(u, dtype=dtype),
                   dt=dt.to(dtype))


def feature_statistics(model: LearnedDynamics, seq: StateSequence):
    """Mean and std of the model's raw features over a flight. Shape: (18,), (18,)."""
    u_next = torch.cat((seq.u[1:], seq.u[-1:]))
    x = model.features(seq.R, seq.v, seq.u, u_next)
    return x.mean(dim=0), x.std(dim=0)


def initial_covariance(cfg: DynamicsTrainConfig, dtype=torch.float32) -> Tensor:
    """Covariance of the ground-truth state a rollout starts from. Shape: (9, 9)."""
    var = [cfg.init_pos_std ** 2] * 3 + [cfg.init_rot_std ** 2] * 3 + [cfg.init_vel_std ** 2] * 3
    return torch.diag(torch.tensor(var, dtype=dtype))


def window_nll(model: LearnedDynamics, seq: StateSequence, starts: Tensor, steps: int,
               every: int, P0: Tensor, gt_cov: Optional[Tensor] = None) -> Tensor:
    """Mean NLL of the ground truth along rollouts of ``steps`` steps from ``starts``, scored
    every ``every`` steps, with ``gt_cov`` (9, 9) the ground truth's own noise.

    Shape: starts (B,) -> (B,).
    """
    rows = starts[:, None] + torch.arange(steps + 1)  # (B, steps + 1): one control beyond
    out = model.rollout(seq.R[starts], seq.p[starts], seq.v[starts], seq.u[rows],
                        seq.dt[rows], P0=P0.expand(len(starts), 9, 9), return_all=True,
                        steps=steps)
    k = torch.arange(every, steps + 1, every)  # steps after the start that are scored
    idx = starts[:, None] + k  # (B, K)
    cov = out['cov'][:, k - 1] if gt_cov is None else out['cov'][:, k - 1] + gt_cov
    nll = error_nll(out['R'][:, k - 1], out['p'][:, k - 1], out['v'][:, k - 1], cov,
                    seq.R[idx], seq.p[idx], seq.v[idx])
    return nll.mean(dim=1)


def window_starts(n: int, steps: int, stride: int) -> Tensor:
    """Start indices of windows of ``steps`` steps (plus one control) in n samples."""
    last = n - steps - 1
    if last < 0:
        raise StateError(f'a flight of {n} samples is shorter than one window of {steps} steps')
    return torch.arange(0, last + 1, max(1, stride))


def fit(model: LearnedDynamics, train: StateSequence, val: StateSequence,
        cfg: DynamicsTrainConfig, log: Optional[Callable[[str], None]] = None) -> Dict:
    """Fit ``model`` in place (feature statistics from ``train``, then Adam on the rollout NLL;
    the epoch with the best validation NLL is kept).

    Returns:
        ``history`` (per epoch: train and val NLL, seconds), ``best_epoch``, ``best_val_nll``,
        ``init_val_nll``, ``epochs_run``, ``seconds``.
    """
    log = log or (lambda _msg: None)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    dt = float(train.dt.median())
    steps = max(1, int(round(cfg.window_s / dt)))
    every = max(1, int(round(cfg.score_every_s / dt)))
    stride = max(1, int(round(cfg.stride_s / dt)))
    mean, std = feature_statistics(model, train)
    model.set_normalisation(mean, std)
    P0 = initial_covariance(cfg, train.p.dtype)
    # log std of the ground truth's position, orientation and velocity noise
    gt_log_std = torch.log(P0.diagonal()[::3].sqrt())
    gt_log_std.requires_grad_(True)

    def gt_cov() -> Tensor:
        return torch.diag(torch.exp(2.0 * gt_log_std).repeat_interleave(3))

    tr_starts = window_starts(len(train), steps, stride)
    va_starts = window_starts(len(val), steps, stride)

    def val_nll() -> float:
        with torch.no_grad():
            P = gt_cov()
            return float(torch.cat([window_nll(model, val, s, steps, every, P0, P)
                                    for s in va_starts.split(4 * cfg.batch)]).mean())

    opt = torch.optim.AdamW([{'params': list(model.parameters())},
                             # a few numbers with one clear optimum: a faster rate
                             {'params': [gt_log_std], 'weight_decay': 0.0, 'lr': 10 * cfg.lr}],
                            lr=cfg.lr, weight_decay=cfg.weight_decay)
    init_val = best = val_nll()
    best_state = copy.deepcopy(model.state_dict())
    best_gt = gt_log_std.detach().clone()
    best_epoch, bad = 0, 0
    history: List[Dict] = []
    t_start = time.perf_counter()
    log(f'windows: {len(tr_starts)} train, {len(va_starts)} val, {steps} steps each; '
        f'val NLL at init {init_val:.3f}')
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        perm = tr_starts[torch.randperm(len(tr_starts), generator=gen)]
        losses = []
        for batch in perm.split(cfg.batch):
            loss = window_nll(model, train, batch, steps, every, P0, gt_cov()).mean()
            if not torch.isfinite(loss):
                raise StateError(f'training diverged at epoch {epoch} (NLL {float(loss)}); '
                                 'lower train_dynamics.lr')
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
            losses.append(float(loss.detach()))
        model.eval()
        v = val_nll()
        history.append({'epoch': epoch, 'train_nll': sum(losses) / len(losses), 'val_nll': v,
                        'seconds': time.perf_counter() - t0})
        improved = v < best - 1e-4 * max(1.0, abs(best))
        if improved:
            best, best_epoch, bad = v, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
            best_gt = gt_log_std.detach().clone()
        else:
            bad += 1
        log(f'epoch {epoch:3d}  train NLL {history[-1]["train_nll"]:8.3f}  val NLL {v:8.3f}'
            f'{"  *" if improved else ""}  ({history[-1]["seconds"]:.1f} s)')
        if bad >= cfg.patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    gt_std = torch.exp(best_gt).tolist()
    return {'history': history, 'best_epoch': best_epoch, 'best_val_nll': best,
            'ground_truth_std': {'position_m': gt_std[0], 'rotation_rad': gt_std[1],
                                 'velocity_m_s': gt_std[2]},
            'init_val_nll': init_val, 'epochs_run': len(history),
            'seconds': time.perf_counter() - t_start,
            'windows': {'train': int(len(tr_starts)), 'val': int(len(va_starts)),
                        'steps': steps, 'score_every': every},
            'converged': math.isfinite(best)}
