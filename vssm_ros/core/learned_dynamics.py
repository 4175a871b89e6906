# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Learned transition: the engineered Euler integrator f_T plus a residual MLP (DESIGN §2).

    p(z_t+1 | z_t, u_t) = N(f_T(z_t, u_t) + MLP_μ(z_t, u_t), Σ(z_t, u_t))

One step per control sample u_t, held for ``dt``. The residual is an acceleration and an
angular-rate correction in the body frame, ``(δa, δω) = MLP_μ``, applied inside the Euler step::

    a_w   = R (a + δa) + g
    p'    = p + v dt + ½ a_w dt²        (= f_T's p' + ½ R δa dt²)
    v'    = v + a_w dt                   (= f_T's v' + R δa dt)
    R'    = R Exp((ω + δω) dt)           (= f_T's R' composed with a rotation of ~δω dt)

so MLP_μ is an additive correction of f_T's mean on the manifold whose size scales with ``dt``:
weights are valid at any control rate. ``a`` is the accelerometer's specific force ('imu'
controls) or the collective thrust vector ('thrust' controls, mass normalised, body frame).

Noise: white noise on the corrected acceleration and rate, with densities ``q_a`` (m/s²/√Hz)
and ``q_g`` (rad/s/√Hz) per body axis from the MLP's noise head (``MLP_σ``). Held over ``dt``
(variance ``q²/dt``), it maps onto the state error ``(δp, δφ, δv)`` exactly as the IMU noise of
``preintegrate`` does, giving Σ (9×9, diagonal in the body-frame acceleration and rate).

IMU biases: the model is driven by bias-corrected controls ``u − (b_a, b_g)`` (the state's
biases, ``propagate_learned`` / ``learned_transition`` / ``sample``); the biases themselves
follow their random walk (``MotionConfig``) and their Jacobian columns are f_T's.

Features (inputs of both heads), chosen to be invariant to where the drone is and where it
points (yaw), so that what is learned on one track transfers to another:

- body-frame velocity ``Rᵀ v`` (3): rotor drag and induced effects depend on airspeed in the
  body frame;
- the world's up direction in the body frame ``Rᵀ e_z`` (3): the attitude w.r.t. gravity;
- the control ``u_t`` (6) and its change to the next sample ``u_t+1 − u_t`` (6): the samples
  bracketing the step, so timing offsets between IMU and motion and the sample-and-hold error
  can be corrected (the last step of a sequence holds its control: change 0).

Each feature is standardised, ``(x − mean) / std``, with statistics measured on the training
flight and stored with the weights (``feat_mean``, ``feat_std``).

At initialisation the mean head outputs exactly 0 (zero weights and bias): the model *is* f_T,
and the noise head outputs exactly its initial densities.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import nn

from vssm_ros.config import MotionConfig
from vssm_ros.core import lie
from vssm_ros.core.dynamics import (GaussianState, bias_walk_noise, imu_transition,
                                    with_propagated_cov)
from vssm_ros.core.state_layout import BIAS, DIM, KIN, P, PHI, V
from vssm_ros.errors import StateError

Tensor = torch.Tensor

CONTROLS = ('imu', 'thrust')
"""Control kinds: accelerometer + gyroscope, or collective thrust + gyroscope."""
FEATURE_NAMES = ('v_body_x', 'v_body_y', 'v_body_z', 'up_body_x', 'up_body_y', 'up_body_z',
                 'u_a_x', 'u_a_y', 'u_a_z', 'u_w_x', 'u_w_y', 'u_w_z',
                 'du_a_x', 'du_a_y', 'du_a_z', 'du_w_x', 'du_w_y', 'du_w_z')
"""The MLP's inputs, in order (see the module docstring)."""
FORMAT_VERSION = 1
"""Version of the weights' layout (``state()`` / ``from_state``)."""

_MIN_DENSITY = 1e-6


def _inv_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class LearnedDynamics(nn.Module):
    """Residual transition model (mean correction and noise densities) on top of f_T.

    Args:
        controls: 'imu' or 'thrust' (what the first three control components are).
        hidden: width of the hidden layers.
        layers: number of hidden layers.
        gravity: gravity magnitude (m/s²); world z up.
        acc_scale: scale of the acceleration output (m/s²): the MLP works on O(1) numbers.
        gyro_scale: scale of the angular-rate output (rad/s).
        acc_noise: initial acceleration noise density per body axis (m/s²/√Hz).
        gyro_noise: initial angular-rate noise density per body axis (rad/s/√Hz).
    """

    def __init__(self, controls: str = 'imu', hidden: int = 64, layers: int = 2,
                 gravity: float = 9.81, acc_scale: float = 1.0, gyro_scale: float = 0.1,
                 acc_noise: float = 0.5, gyro_noise: float = 0.05):
        super().__init__()
        if controls not in CONTROLS:
            raise StateError(f"dynamics controls must be 'imu' or 'thrust', got {controls!r}")
        if hidden < 1 or layers < 1:
            raise StateError(f'dynamics MLP needs hidden >= 1 and layers >= 1, got {hidden}, '
                             f'{layers}')
        self.controls = controls
        self.hidden = int(hidden)
        self.layers = int(layers)
        self.gravity = float(gravity)
        n_in = len(FEATURE_NAMES)
        mods = []
        for i in range(layers):
            mods += [nn.Linear(n_in if i == 0 else hidden, hidden), nn.SiLU()]
        self.trunk = nn.Sequential(*mods)
        self.mean_head = nn.Linear(hidden, 6)
        self.noise_head = nn.Linear(hidden, 6)
        with torch.no_grad():
            # Zero output layer: MLP_μ = 0 and MLP_σ = the initial densities, exactly.
            self.mean_head.weight.zero_()
            self.mean_head.bias.zero_()
            self.noise_head.weight.zero_()
            self.noise_head.bias.fill_(_inv_softplus(1.0))
        self.register_buffer('feat_mean', torch.zeros(n_in))
        self.register_buffer('feat_std', torch.ones(n_in))
        self.register_buffer('out_scale', torch.tensor([acc_scale] * 3 + [gyro_scale] * 3))
        self.register_buffer('noise_scale', torch.tensor([acc_noise] * 3 + [gyro_noise] * 3))

    # ------------------------------------------------------------------ construction

    @classmethod
    def engineered(cls, acc_noise: float, gyro_noise: float, gravity: float = 9.81,
                   controls: str = 'imu') -> 'LearnedDynamics':
        """f_T with constant noise densities (no learning): the engineered transition."""
        return cls(controls=controls, hidden=1, layers=1, gravity=gravity, acc_noise=acc_noise,
                   gyro_noise=gyro_noise)

    def state(self) -> Tuple[Dict[str, Tensor], Dict]:
        """Tensors (by name) and JSON-able metadata that ``from_state`` rebuilds the model from."""
        tensors = {k: v.detach().cpu().clone() for k, v in self.state_dict().items()}
        meta = {'format_version': FORMAT_VERSION, 'controls': self.controls,
                'hidden': self.hidden, 'layers': self.layers, 'gravity': self.gravity,
                'features': list(FEATURE_NAMES)}
        return tensors, meta

    @classmethod
    def from_state(cls, tensors: Dict[str, Tensor], meta: Dict) -> 'LearnedDynamics':
        """The model saved by ``state``.

        Raises:
            StateError: an unsupported version, other features, or tensors that do not fit.
        """
        if meta.get('format_version') != FORMAT_VERSION:
            raise StateError(f'dynamics weights have format version {meta.get("format_version")}'
                             f'; this build reads version {FORMAT_VERSION}')
        if list(meta.get('features', [])) != list(FEATURE_NAMES):
            raise StateError('dynamics weights were trained on other input features '
                             f'({meta.get("features")}); retrain them with this version')
        try:
            model = cls(controls=meta['controls'], hidden=int(meta['hidden']),
                        layers=int(meta['layers']), gravity=float(meta['gravity']))
            model.load_state_dict({k: torch.as_tensor(v) for k, v in tensors.items()})
        except (KeyError, RuntimeError, TypeError, ValueError) as err:
            raise StateError(f'dynamics weights do not fit the model they describe: {err}') \
                from err
        return model

    def set_normalisation(self, mean: Tensor, std: Tensor) -> None:
        """Feature statistics ``(x − mean) / std``; tiny stds are floored. Shape: (18,) each."""
        with torch.no_grad():
            self.feat_mean.copy_(mean)
            self.feat_std.copy_(std.clamp(min=1e-3))

    # ------------------------------------------------------------------ one step

    def features(self, R: Tensor, v: Tensor, u: Tensor, u_next: Tensor) -> Tensor:
        """Raw (unnormalised) features. Shape: R (..., 3, 3), v (..., 3), u, u_next (..., 6)
        -> (..., 18)."""
        v_body = (R.transpose(-1, -2) @ v[..., None])[..., 0]
        up_body = R[..., 2, :]   # Rᵀ e_z
        return torch.cat((v_body, up_body, u, u_next - u), dim=-1)

    def residual(self, R: Tensor, v: Tensor, u: Tensor, u_next: Tensor
                 ) -> Tuple[Tensor, Tensor]:
        """MLP_μ and MLP_σ: the correction ``(δa, δω)`` and the densities ``(q_a, q_g)``.

        Shape: R (..., 3, 3), v (..., 3), u, u_next (..., 6) -> (..., 6), (..., 6).
        """
        x = (self.features(R, v, u, u_next) - self.feat_mean) / self.feat_std
        h = self.trunk(x)
        mean = self.mean_head(h) * self.out_scale
        q = self.noise_scale * nn.functional.softplus(self.noise_head(h)) + _MIN_DENSITY
        return mean, q

    def _g(self, like: Tensor) -> Tensor:
        """Gravity (0, 0, -g) on ``like``'s device and dtype. Shape: (3,)."""
        g = torch.zeros(3, dtype=like.dtype, device=like.device)
        g[2] = -self.gravity
        return g

    @staticmethod
    def _euler(R: Tensor, p: Tensor, v: Tensor, a_body: Tensor, dR: Tensor, dt: Tensor,
               g: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """f_T for one held sample, as in ``imu.integrate_imu``; ``dR = Exp(ω dt)``.

        Shape: dt (..., 1).
        """
        a_w = (R @ a_body[..., None])[..., 0] + g
        p_new = p + v * dt + 0.5 * a_w * dt * dt
        v_new = v + a_w * dt
        return R @ dR, p_new, v_new

    @staticmethod
    def _error_propagation(R: Tensor, a_body: Tensor, dR: Tensor, q2: Tensor, dt: Tensor
                           ) -> Tuple[Tensor, Tensor]:
        """Linearised step: F (..., 9, 9) and Q (..., 9, 9) on the error (δp, δφ, δv).

        ``q2``: the variance densities (q_a², q_g²). Shape: (..., 6). dt: Shape (..., 1).
        The rate noise maps through the right Jacobian of Exp(ω dt), which is I to first order
        in the (small) per-sample rotation; that is the approximation used here.
        """
        dt2 = dt[..., None]  # (..., 1, 1)
        eye = torch.eye(3, dtype=R.dtype, device=R.device).expand(R.shape)
        zero = torch.zeros_like(R)
        RA = R @ lie.hat(a_body)
        F = torch.cat([torch.cat([eye, (-0.5 * dt2 * dt2) * RA, eye * dt2], dim=-1),
                       torch.cat([zero, dR.transpose(-1, -2), zero], dim=-1),
                       torch.cat([zero, -dt2 * RA, eye], dim=-1)], dim=-2)
        Sa = (R * q2[..., None, :3]) @ R.transpose(-1, -2)  # world-frame acc density²
        Sg = torch.diag_embed(q2[..., 3:])
        Q = torch.cat([torch.cat([(0.25 * dt2 ** 3) * Sa, zero, (0.5 * dt2 * dt2) * Sa], dim=-1),
                       torch.cat([zero, dt2 * Sg, zero], dim=-1),
                       torch.cat([(0.5 * dt2 * dt2) * Sa, zero, dt2 * Sa], dim=-1)], dim=-2)
        return F, Q

    # ------------------------------------------------------------------ rollouts

    def rollout(self, R0: Tensor, p0: Tensor, v0: Tensor, controls: Tensor, dt: Tensor,
                P0: Optional[Tensor] = None, residual: bool = True,
                return_all: bool = False,
                steps: Optional[int] = None) -> Dict[str, Tensor]:
        """Mean rollout, with the linearised covariance when ``P0`` is given.

        Args:
            R0, p0, v0: initial state. Shape: (..., 3, 3), (..., 3), (..., 3).
            controls: ``u`` per step, ``(a, ω)`` body frame. Shape: (..., N, 6).
            dt: time each control is held (s). Shape: (..., N) or a scalar tensor.
            P0: covariance of the initial error (δp, δφ, δv). Shape: (..., 9, 9).
            residual: False: f_T alone (the MLP is not evaluated).
            return_all: states after every step instead of only the last.
            steps: steps to take (default N); with ``steps = N - 1`` the last control row
                only serves as the control after the last step (its change feature).

        Returns:
            ``R``, ``p``, ``v`` (and ``cov`` with P0) after the last step, or with a step
            dimension N before the state's own (``(..., N, 3)``, ...) when ``return_all``.
        """
        n_rows = controls.shape[-2]
        n = n_rows if steps is None else int(steps)
        dt = torch.as_tensor(dt, dtype=controls.dtype, device=controls.device)
        dt = dt.expand(controls.shape[:-1]) if dt.dim() == 0 else dt
        if not 0 < n <= n_rows:
            raise StateError(f'rollout: steps must be in [1, {n_rows}] (the control rows), '
                             f'got {n}')
        g = self._g(controls)
        R, p, v, P = R0, p0, v0, P0
        outs = {'R': [], 'p': [], 'v': [], 'cov': []}
        for k in range(n):
            u = controls[..., k, :]
            u_next = controls[..., k + 1, :] if k + 1 < n_rows else u
            dtk = dt[..., k, None]
            if residual:
                mean, q = self.residual(R, v, u, u_next)
                a_body, w = u[..., :3] + mean[..., :3], u[..., 3:] + mean[..., 3:]
            else:
                q = self.noise_scale.to(u) + torch.zeros_like(u)
                a_body, w = u[..., :3], u[..., 3:]
            dR = so3_exp_step(w * dtk)
            if P is not None:
                F, Q = self._error_propagation(R, a_body, dR, q * q, dtk)
                P = F @ P @ F.transpose(-1, -2) + Q
            R, p, v = self._euler(R, p, v, a_body, dR, dtk, g)
            if return_all:
                outs['R'].append(R)
                outs['p'].append(p)
                outs['v'].append(v)
                if P is not None:
                    outs['cov'].append(P)
        if return_all:
            res = {k: torch.stack(x, dim=-3 if k in ('R', 'cov') else -2)
                   for k, x in outs.items() if x}
        else:
            res = {'R': R, 'p': p, 'v': v}
            if P is not None:
                res['cov'] = P
        if 'cov' in res:
            res['cov'] = 0.5 * (res['cov'] + res['cov'].transpose(-1, -2))
        return res

    def sample(self, R0: Tensor, p0: Tensor, v0: Tensor, P0: Tensor, controls: Tensor,
               dt: Tensor, n_samples: int, generator: Optional[torch.Generator] = None,
               offset_std: Sequence[float] = (0.0, 0.0), residual: bool = True,
               steps: Optional[int] = None, b_a: Optional[Tensor] = None,
               b_g: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """Sampled rollouts: initial states from N(mean, P0), then the transition's noise
        (white noise on the corrected acceleration and rate, held over each step).

        Args:
            R0, p0, v0: initial state means. Shape: (..., 3, 3), (..., 3), (..., 3).
            P0: covariance of the initial error, (δp, δφ, δv) or the whole state's
                (``core.state_layout``: the biases are sampled too, constant along each
                rollout). Shape: (..., 9, 9) or (..., 15, 15).
            b_a, b_g: bias means subtracted from the controls (None: zero). Shape: (..., 3).
            controls: Shape: (..., N, 6). dt: Shape (..., N) or scalar.
            n_samples: S.
            offset_std: stds (acc m/s², gyro rad/s) of a constant offset drawn once per
                sample and added to every control: uncertain (e.g. held) controls.
            residual: False: f_T with the model's initial noise densities.
            steps: as in ``rollout``.

        Returns:
            ``R`` (S, ..., N, 3, 3), ``p`` (S, ..., N, 3), ``v`` (S, ..., N, 3): the states
            after each step.
        """
        dev, dty = controls.device, controls.dtype
        n_rows = controls.shape[-2]
        n = n_rows if steps is None else int(steps)
        if not 0 < n <= n_rows:
            raise StateError(f'sample: steps must be in [1, {n_rows}], got {n}')
        dt = torch.as_tensor(dt, dtype=dty, device=dev)
        dt = dt.expand(controls.shape[:-1]) if dt.dim() == 0 else dt
        n_err = P0.shape[-1]
        if n_err not in (9, DIM):
            raise StateError(f'sample: P0 must be (9, 9) or ({DIM}, {DIM}), got '
                             f'{tuple(P0.shape[-2:])}')
        L = _safe_cholesky(P0)
        batch = controls.shape[:-2]
        z = torch.randn((n_samples,) + batch + (n_err,), generator=generator, dtype=dty,
                        device=dev)
        d0 = (L @ z[..., None])[..., 0]  # (S, ..., 9 or 15)
        R = R0 @ lie.so3_exp(d0[..., PHI])
        p = p0 + d0[..., P]
        v = v0 + d0[..., V]
        off_std = torch.tensor([offset_std[0]] * 3 + [offset_std[1]] * 3, dtype=dty,
                               device=dev)
        offset = off_std * torch.randn((n_samples,) + batch + (6,), generator=generator,
                                       dtype=dty, device=dev)
        zero = torch.zeros(3, dtype=dty, device=dev)
        bias = torch.cat(torch.broadcast_tensors(zero if b_a is None else b_a,
                                                 zero if b_g is None else b_g), dim=-1)
        if n_err == DIM:
            bias = bias + d0[..., BIAS]
        offset = offset - bias  # (S, ..., 6): the controls corrected by each sample's biases
        eps = torch.randn((n, n_samples) + batch + (6,), generator=generator, dtype=dty,
                          device=dev)
        g = self._g(controls)
        Rs, ps, vs = [], [], []
        for k in range(n):
            u = controls[..., k, :] + offset
            u_next = controls[..., k + 1, :] + offset if k + 1 < n_rows else u
            if residual:
                mean, q = self.residual(R, v, u, u_next)
            else:
                mean = torch.zeros_like(u)
                q = self.noise_scale.to(u).expand_as(u)
            dtk = dt[..., k, None]  # (..., 1)
            # White noise held over dt: per-sample std q / sqrt(dt).
            u_eff = u + mean + q / torch.sqrt(dtk) * eps[k]
            R, p, v = self._euler(R, p, v, u_eff[..., :3], so3_exp_step(u_eff[..., 3:] * dtk),
                                  dtk, g)
            Rs.append(R)
            ps.append(p)
            vs.append(v)
        return {'R': torch.stack(Rs, dim=-3), 'p': torch.stack(ps, dim=-2),
                'v': torch.stack(vs, dim=-2)}


def so3_exp_step(phi: Tensor) -> Tensor:
    """``Exp(phi)`` by Rodrigues' formula without branches: ``I + A W + B W²`` with
    ``A = sinc(θ)``, ``B = ½ sinc(θ/2)²``.

    The same rotation as ``lie.so3_exp`` (to rounding) in about a fifth of its operations,
    which matters in rollouts of hundreds of sequential steps; the tiny offset under the
    square root keeps the gradient finite at ``phi = 0``.

    Shape: phi (..., 3) -> (..., 3, 3).
    """
    theta = torch.sqrt((phi * phi).sum(-1) + 1e-30)[..., None, None]
    W = lie.hat(phi)
    A = torch.sinc(theta / math.pi)
    B = 0.5 * torch.sinc(theta / (2.0 * math.pi)) ** 2
    eye = torch.eye(3, dtype=phi.dtype, device=phi.device)
    return eye + A * W + B * (W @ W)


def _safe_cholesky(P: Tensor) -> Tensor:
    """Cholesky factor of a covariance, with a growing jitter when it is only semi-definite."""
    P = 0.5 * (P + P.transpose(-1, -2))
    eye = torch.eye(P.shape[-1], dtype=P.dtype, device=P.device)
    scale = P.diagonal(dim1=-2, dim2=-1).abs().mean().clamp(min=1e-30)
    for jitter in (0.0, 1e-12, 1e-9, 1e-6):
        L, info = torch.linalg.cholesky_ex(P + jitter * scale * eye)
        if not bool((info != 0).any()):
            return L
    raise StateError('covariance is not positive semi-definite: cannot sample from it')


def error_nll(R: Tensor, p: Tensor, v: Tensor, cov: Tensor, R_true: Tensor, p_true: Tensor,
              v_true: Tensor) -> Tensor:
    """Negative log-likelihood of true states under N(mean ⊞ δ, cov), δ = (δp, δφ, δv).

    Shape: R, R_true (..., 3, 3); p, v, p_true, v_true (..., 3); cov (..., 9, 9) -> (...,).
    """
    e = torch.cat((p_true - p, lie.so3_log(R.transpose(-1, -2) @ R_true), v_true - v), dim=-1)
    L = torch.linalg.cholesky(cov)
    white = torch.linalg.solve_triangular(L, e[..., None], upper=False)[..., 0]
    logdet = 2.0 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)
    return 0.5 * ((white * white).sum(-1) + logdet + 9.0 * math.log(2.0 * math.pi))


def _corrected_controls(state: GaussianState, acc: Tensor, gyro: Tensor) -> Tensor:
    """IMU samples corrected by the state's biases, ``(acc − b_a, gyro − b_g)``. Shape: (N, 6)."""
    return torch.cat((acc - state.b_a, gyro - state.b_g), dim=-1)


def propagate_learned(state: GaussianState, acc: Tensor, gyro: Tensor, dt: Tensor,
                      model: LearnedDynamics, cfg: Optional[MotionConfig] = None
                      ) -> GaussianState:
    """The propagate step with a learned transition (IMU controls), like ``propagate_imu``:
    ``learned_transition``'s mean and process noise with the covariance ``F P Fᵀ + Q``.

    Args:
        acc: specific force. Shape: (N, 3).
        gyro: angular rate. Shape: (N, 3).
        dt: duration each sample is held. Shape: (N,).
        cfg: the biases' random walk (None: ``MotionConfig``'s defaults).
    """
    pred, F = learned_transition(state, acc, gyro, dt, model, cfg)
    return with_propagated_cov(pred, F, state.cov)


def learned_transition(state: GaussianState, acc: Tensor, gyro: Tensor, dt: Tensor,
                       model: LearnedDynamics, cfg: Optional[MotionConfig] = None
                       ) -> Tuple[GaussianState, Tensor]:
    """The learned transition of a state's mean, like ``dynamics.imu_transition``: the predicted
    state, whose ``cov`` is the process noise alone (the model's on (δp, δφ, δv), the biases'
    random walk from ``cfg``, None: ``MotionConfig``'s defaults), and the Jacobian F (15, 15).
    The model is driven by the bias-corrected samples; F is f_T's (bias columns included): the
    covariance rollout ignores the MLP's state Jacobian too."""
    cfg = MotionConfig(gravity=model.gravity) if cfg is None else cfg
    kin = torch.zeros(9, 9, dtype=state.cov.dtype, device=state.cov.device)
    out = model.rollout(state.R, state.p, state.v, _corrected_controls(state, acc, gyro), dt,
                        P0=kin)
    _, F = imu_transition(state, acc, gyro, dt, cfg)
    Q = bias_walk_noise(dt.sum(), cfg, state.p)
    Q[KIN, KIN] = out['cov']
    return GaussianState(lie.orthonormalize(out['R']), out['p'], out['v'], Q,
                         (gyro - state.b_g).mean(dim=0), state.b_a.clone(),
                         state.b_g.clone()), F
