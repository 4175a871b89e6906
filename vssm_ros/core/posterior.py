# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The state posterior q(z_t): Gauss-Newton on the negative log joint, Laplace covariance.

For the new state the objective is the depth and colour likelihood of sampled rays given the
map (fixed) plus the transition prior from the propagate step:

    E(z) = 1/2 sum_i rho((d_i - E[d_i | z, M]) / sigma_i)
         + 1/2 sum_i rho((I_i - I_M(R q_i + p)) / sigma_c)
         + 1/2 (z ⊟ z_pred)^T P_pred^-1 (z ⊟ z_pred)

where ``I_i`` is ray i's observed grey intensity, ``q_i`` its observed point (body frame) and
``I_M`` the map's colour field in grey. The colour term is optional (``RayBatch.i_obs``).

maximised over z by damped Gauss-Newton (iterated EKF). q(z_t) is the Gaussian at the optimum
with covariance ``H^-1`` (Laplace), which is the maximiser of the ELBO within Gaussians to second
order. The rendered-depth Jacobian comes from ONE backward pass: rays are independent, so the
gradient of the summed expected depth w.r.t. the sample points holds every ray's gradient, and
``J_p = sum_k g_k``, ``J_φ = sum_k q_k × (R^T g_k)`` (DESIGN, making it fast).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch

from vssm_ros.config import RenderConfig, SensorConfig
from vssm_ros.core import lie
from vssm_ros.core.dynamics import GaussianState
from vssm_ros.core.render import band_depths, composite, composite_depth_grad
from vssm_ros.core.state_layout import P, PHI, POSE

# Gauss-Newton steps a frame takes before a real-time budget may stop it (``track``'s
# ``stop_at``): the first step takes the propagated prior most of the way, the second
# refines it (the demo flight converges in 3-4).
MIN_STEPS = 2
# The statistical stop (``track``'s ``stop_chi2``) takes only steps within this multiple of
# the metric thresholds: where the rays constrain the pose weakly (a coarse map, small
# images) a step a fraction of a standard deviation long is still millimetres of progress,
# and stopping there frame after frame held the estimate back toward its prior (a covered
# lens's recovery in test_health: 3.4 cm off, 7.7 without the bound, 2.9 with the metric
# stop alone).
CHI2_STOP_SPAN = 2.5


@dataclass
class RayBatch:
    """Rays of one frame for inference.

    Attributes:
        depths: sample z-depths in the camera. Shape: (R, K).
        d_obs: observed depth. Shape: (R,).
        valid: whether the ray is a real measurement. Shape: (R,).
        dirs: ray directions in the camera, z = 1. Shape: (R, 3).
        q_obs: the observed point of each ray in the body frame. Shape: (R, 3).
        origin: the camera centre in the body frame. Shape: (3,).
        axis: ray directions in the body frame (``dirs`` rotated): the sample points are
            ``origin + depths * axis``. Shape: (R, 3).
        i_obs: observed grey intensity in [0, 1], or None (no colour likelihood). Shape: (R,).
    """

    depths: torch.Tensor
    d_obs: torch.Tensor
    valid: torch.Tensor
    dirs: torch.Tensor
    q_obs: torch.Tensor
    origin: torch.Tensor
    axis: torch.Tensor
    i_obs: Optional[torch.Tensor] = None

    @property
    def q_body(self) -> torch.Tensor:
        """The sample points in the body frame, ``origin + depths * axis`` (for checks; the
        tracker never forms them). Shape: (R, K, 3)."""
        return self.origin + self.depths[..., None] * self.axis[:, None, :]

    def head(self, n: int) -> 'RayBatch':
        """The first ``n`` rays."""
        return RayBatch(self.depths[:n], self.d_obs[:n], self.valid[:n],
                        self.dirs[:n], self.q_obs[:n], self.origin, self.axis[:n],
                        None if self.i_obs is None else self.i_obs[:n])


def make_rays(dirs_cam: torch.Tensor, d_obs: torch.Tensor, valid: torch.Tensor,
              T_body_cam: torch.Tensor, cfg: RenderConfig,
              rgb_obs: Optional[torch.Tensor] = None) -> RayBatch:
    """Sample points of rays with a band around the observed depth.

    Args:
        dirs_cam: ray directions with z = 1. Shape: (R, 3).
        d_obs: observed depth (any value where invalid). Shape: (R,).
        valid: measurement validity. Shape: (R,).
        T_body_cam: camera in body. Shape: (4, 4).
        rgb_obs: observed colour in [0, 1] (None: no colour likelihood). Shape: (R, 3).
    """
    d = torch.where(valid, d_obs, torch.ones_like(d_obs))
    depths = band_depths(d, cfg)
    q_obs = (dirs_cam * d[:, None]) @ T_body_cam[:3, :3].t() + T_body_cam[:3, 3]
    i_obs = None if rgb_obs is None else rgb_obs.mean(dim=-1)
    return RayBatch(depths, d, valid, dirs_cam, q_obs, T_body_cam[:3, 3],
                    dirs_cam @ T_body_cam[:3, :3].t(), i_obs)


def depth_sigma(d: torch.Tensor, cfg: SensorConfig) -> torch.Tensor:
    """Sensor depth std sigma(z) = a + b z², with the model floor in quadrature."""
    s = cfg.depth_sigma_a + cfg.depth_sigma_b * d * d
    return torch.sqrt(s * s + cfg.model_sigma ** 2)


def linearise(field, rays: RayBatch, R: torch.Tensor, p: torch.Tensor, rcfg: RenderConfig,
              scfg: SensorConfig) -> Dict[str, torch.Tensor]:
    """Normalised depth residuals, their Jacobian w.r.t. (δp, δφ) and robust weights.

    Returns:
        ``r`` (R,), ``J`` (R, 6), ``w`` (R,) (0 for unusable rays), ``depth`` (R,), ``hit`` (R,).
    """
    # The sample points are affine in depth along each ray, x_k = c + d_k a: the points and
    # the rotation Jacobian's sum over samples come from (R, 3) terms, not (R, K, 3) ones.
    # Components first (3, R, K): the map's hot path runs on contiguous rows.
    a = R @ rays.axis.t()
    x = (R @ rays.origin + p)[:, None, None] + a[:, :, None] * rays.depths
    out, g = _depth_and_point_grads(field, x, rays.depths, rcfg)
    depth = out['depth']
    hit = out['hit']
    sigma = torch.sqrt(depth_sigma(rays.d_obs, scfg) ** 2 + out['depth_var'])
    r = (rays.d_obs - depth) / sigma
    J_p = g.sum(dim=-1).t()  # (R, 3)
    # sum_k q_k × (R^T g_k) with q_k = origin + d_k axis
    J_r = torch.cross(rays.origin.expand_as(J_p), J_p @ R, dim=-1) \
        + torch.cross(rays.axis, (rays.depths * g).sum(dim=-1).t() @ R, dim=-1)
    J = -torch.cat((J_p, J_r), dim=-1) / sigma[:, None]  # d r / d (δp, δφ)
    usable = rays.valid & (hit > 0.5) & ((rays.d_obs - depth).abs() < 0.9 * rcfg.band)
    out = {'r': r, 'J': J, 'w': _robust_weight(r, usable, scfg.huber), 'depth': depth,
           'hit': hit}
    if rays.i_obs is not None:
        out.update(_linearise_intensity(field, rays, R, p, usable, scfg))
    return out


def _depth_and_point_grads(field, x: torch.Tensor, depths: torch.Tensor, rcfg: RenderConfig
                           ) -> Tuple[Dict[str, torch.Tensor], torch.Tensor]:
    """``composite`` of the rays' world sample points, and the gradient of each ray's
    expected depth w.r.t. its sample points. Where the field offers its spatial gradient
    (``VoxelMap.logits_and_grad``) the chain rule is closed form, without autograd
    (``composite_depth_grad``); autograd through the field otherwise.

    Shape: x (3, R, K) components first, depths (R, K) -> composite's dict, (3, R, K).
    """
    _, n, k = x.shape
    if hasattr(field, 'logits_and_grad'):
        logits, dl_dx = field.logits_and_grad(x.reshape(3, -1))
        logits = logits.reshape(n, k)
        out = composite(logits, depths, rcfg.hit_sharpness, rcfg.far)
        dd_dl = composite_depth_grad(logits, depths, rcfg.hit_sharpness, out)
        return out, dd_dl * dl_dx.reshape(3, n, k)
    x = x.permute(1, 2, 0).detach().requires_grad_(True)
    with torch.enable_grad():
        logits = field.logits_at(x.reshape(-1, 3)).reshape(n, k)
        out = composite(logits, depths, rcfg.hit_sharpness, rcfg.far)
        (g,) = torch.autograd.grad(out['depth'].sum(), x)
    return {key: v.detach() for key, v in out.items()}, g.permute(2, 0, 1)


def _linearise_intensity(field, rays: RayBatch, R: torch.Tensor, p: torch.Tensor,
                         usable: torch.Tensor, scfg: SensorConfig) -> Dict[str, torch.Tensor]:
    """The colour likelihood's residuals: observed grey intensity against the map's colour
    at the ray's observed point, ``(i_obs - I(R q_obs + p)) / color_sigma``, with their
    Jacobian and robust weights (rays whose depth is usable and whose cell's colour-observed
    corners hold at least ``color_observed_floor`` of the trilinear weight; the colour is
    interpolated over those corners).

    Depth constrains a pose along the surfaces' normals only; on a textured plane, motion along
    it shows in colour alone (coloured ICP's term, Park et al. 2017).

    Returns:
        ``r_col`` (R,), ``J_col`` (R, 6), ``w_col`` (R,).
    """
    inten, g, share = field.intensity_and_grad(R @ rays.q_obs.t() + p[:, None])
    g = g.t()
    ok = usable & (share >= min(scfg.color_observed_floor, 0.999))   # 1: all corners
    gain, offset = (brightness_fit(rays.i_obs, inten, ok) if scfg.color_affine
                    else (torch.ones_like(inten[0]), torch.zeros_like(inten[0])))
    r = (rays.i_obs - (gain * inten + offset)) / scfg.color_sigma
    J = -gain * torch.cat((g, torch.cross(rays.q_obs, g @ R, dim=-1)), dim=-1) \
        / scfg.color_sigma
    return {'r_col': r, 'J_col': J, 'w_col': _robust_weight(r, ok, scfg.huber)}


def brightness_fit(i_obs: torch.Tensor, i_map: torch.Tensor, ok: torch.Tensor,
                   min_rays: int = 32) -> Tuple[torch.Tensor, torch.Tensor]:
    """The image's brightness against the map's, ``i_obs ~ gain * i_map + offset``, by least
    squares over the rays in ``ok`` (auto exposure and lighting change a frame's brightness;
    the map holds the average). The pair is a nuisance parameter, profiled out at each
    linearisation. Gain is kept in [0.5, 2]; with fewer than ``min_rays`` rays, or a map
    without contrast there, (1, 0). No host sync.

    Shape: (R,), (R,), (R,) -> (), ().
    """
    w = ok.to(i_map.dtype)
    n = w.sum()
    mx = (w * i_map).sum() / n.clamp(min=1)
    my = (w * i_obs).sum() / n.clamp(min=1)
    dx = (i_map - mx) * w
    var = (dx * dx).sum()
    gain = ((dx * (i_obs - my)).sum() / var.clamp(min=1e-12)).clamp(0.5, 2.0)
    usable = (n >= min_rays) & (var > 1e-4 * n.clamp(min=1))
    gain = torch.where(usable, gain, torch.ones_like(gain))
    offset = torch.where(usable, my - gain * mx, torch.zeros_like(gain))
    return gain, offset


def _robust_weight(r: torch.Tensor, usable: torch.Tensor, k: float) -> torch.Tensor:
    """Huber weights of normalised residuals with threshold ``k``, 0 where not usable."""
    a = r.abs()
    huber = torch.where(a <= k, torch.ones_like(a), k / a.clamp(min=1e-9))
    return torch.where(usable, huber, torch.zeros_like(a))


def normal_equations(lin: Dict[str, torch.Tensor], info_scale: float,
                     dtype: Optional[torch.dtype] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """The ray terms' Gauss-Newton information and gradient, ``J^T W J`` and ``J^T W r`` over
    the depth and (where linearised) colour residuals, computed in ``dtype`` (None: the
    residuals' own). Shape: (6, 6), (6,)."""
    J, w, r = lin['J'], lin['w'], lin['r']
    if 'r_col' in lin:
        J = torch.cat((J, lin['J_col']))
        w = torch.cat((w, lin['w_col']))
        r = torch.cat((r, lin['r_col']))
    if dtype is not None:
        J, w, r = J.to(dtype), w.to(dtype), r.to(dtype)
    Jw = J * (w * info_scale)[:, None]
    return J.t() @ Jw, Jw.t() @ r


def clamp_step(delta: torch.Tensor, max_t: float, max_r_deg: float) -> torch.Tensor:
    """A Gauss-Newton step scaled down (direction kept) so that its translation is at most
    ``max_t`` metres and its rotation at most ``max_r_deg`` degrees; no host sync.

    Shape: (..., 15) -> (..., 15), per state (``core.state_layout``).
    """
    nt = torch.linalg.norm(delta[..., P], dim=-1)
    nr = torch.linalg.norm(delta[..., PHI], dim=-1)
    scale = torch.minimum(torch.ones_like(nt),
                          torch.minimum(max_t / (nt + 1e-12),
                                        math.radians(max_r_deg) / (nr + 1e-12)))
    return delta * scale[..., None]


def _converged(nt: float, nr: float, chi2: float, stop_t: float, stop_r: float,
               stop_chi2: float) -> bool:
    """Whether a Gauss-Newton step of ``nt`` metres, ``nr`` radians and squared length
    ``chi2`` under the posterior's information ends tracking: it is shorter than both metric
    thresholds (``stop_t`` metres, ``stop_r`` radians; either 0: never), or shorter than
    ``stop_chi2`` and within ``CHI2_STOP_SPAN`` times them."""
    if stop_t <= 0 or stop_r <= 0:
        return False
    return (nt < stop_t and nr < stop_r) or (
        chi2 < stop_chi2 and nt < CHI2_STOP_SPAN * stop_t and nr < CHI2_STOP_SPAN * stop_r)


def track(field, rays: RayBatch, prior: GaussianState, iters: int, rcfg: RenderConfig,
          scfg: SensorConfig, max_step_t: float, max_step_r: float, min_rays: int,
          info_scale: float = 1.0, stop_t: float = 0.0, stop_r_deg: float = 0.0,
          stop_at: Optional[float] = None, stop_chi2: float = 0.0) -> Dict:
    """Posterior of one state given its rays, the map and the propagated prior.

    Args:
        iters: most Gauss-Newton steps.
        info_scale: scale on the rays' information (``SensorConfig.ray_info_scale``).
        stop_t, stop_r_deg: stop early once a step moves less than both (metres, degrees);
            0: no such stop.
        stop_at: stop after the first step that ends past this ``time.perf_counter()`` value,
            once ``MIN_STEPS`` were taken, as if converged (a real-time budget; None: none).
        stop_chi2: with the metric stop, stop early too once a step's squared length under
            the posterior's information, ``delta^T H delta``, is below this and it moves less
            than ``CHI2_STOP_SPAN`` times ``stop_t`` and ``stop_r_deg`` (0: never). Without
            either stop (nor ``stop_at``) tracking takes ``iters`` steps.
    Returns:
        ``state`` (GaussianState), ``n_used`` (int), ``rmse`` (float, normalised residual),
        ``w`` (R,) the final robust weights (0: ray not used), ``depth`` (R,) rendered depth,
        ``hit`` (R,) hit probability, ``info`` (6, 6) the rays' pose information at the
        optimum (None when too few rays), ``iters`` (int) the steps taken.
    """
    P_inv = torch.linalg.inv(prior.cov)
    state = prior.clone()
    H = P_inv
    n_used = 0
    rmse = float('nan')
    steps = 0
    for it in range(iters + 1):
        lin = linearise(field, rays, state.R, state.p, rcfg, scfg)
        w, r = lin['w'], lin['r']
        used = (w > 0).sum()
        JtJ, Jtr = normal_equations(lin, info_scale)
        H = P_inv.clone()
        H[POSE, POSE] += JtJ
        if it == iters:
            n_used = int(used)
            break  # the final linearisation only refreshes the Hessian at the optimum
        e = state.boxminus(prior)
        b = P_inv @ e
        b[POSE] += Jtr
        H_d = H + 1e-6 * torch.diag(torch.diagonal(H))
        delta = clamp_step(-torch.linalg.solve(H_d, b), max_step_t, max_step_r)
        # One host read per step: the ray count and the step's size together.
        n, nt, nr, chi2 = torch.stack((used.to(delta.dtype), torch.linalg.norm(delta[P]),
                                       torch.linalg.norm(delta[PHI]),
                                       delta @ H_d @ delta)).tolist()
        n_used = int(n)
        if n_used < min_rays:
            break
        state = state.boxplus(delta)
        steps += 1
        if _converged(nt, nr, chi2, stop_t, math.radians(stop_r_deg), stop_chi2):
            # Converged: a step this small changes the rays' linearisation by less than its
            # noise, so the Hessian, weights and residuals of the last linearisation stand for
            # the optimum without linearising once more (one of the 3-4 a frame takes).
            break
        if stop_at is not None and steps >= MIN_STEPS and time.perf_counter() > stop_at:
            break
    if n_used < min_rays:
        state = prior.clone()
        H = P_inv
    else:
        rmse = float(torch.sqrt((w * r * r).sum() / w.sum()))
    cov = torch.linalg.inv(H)
    state.cov = 0.5 * (cov + cov.t())
    state.R = lie.orthonormalize(state.R)
    return {'state': state, 'n_used': n_used, 'rmse': rmse, 'w': w, 'depth': lin['depth'],
            'hit': lin['hit'], 'info': JtJ if n_used >= min_rays else None, 'iters': steps}
