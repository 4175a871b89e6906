# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Tracking: Gauss-Newton on a map fused from a noise-free synthetic frame at its true pose."""

import dataclasses
import math
import time

import numpy as np
import pytest
import torch

from vssm_ros.config import EngineConfig, MapConfig, SyntheticConfig
from vssm_ros.core import lie
from vssm_ros.core.camera import pixel_grid, pixel_rays, sample_pixels
from vssm_ros.core.dynamics import GaussianState
from vssm_ros.core.map import VoxelMap
from vssm_ros.core.posterior import brightness_fit, depth_sigma, linearise, make_rays, track
from vssm_ros.core.state_layout import POSE
from vssm_ros.data.synthetic import generate_flight

F64 = torch.float64
SYN = SyntheticConfig(duration_s=3, width=64, height=48)
ECFG = EngineConfig()
PRIOR_STD = [0.05] * 3 + [math.radians(3.0)] * 3 + [0.5] * 3 + [0.1] * 3 + [0.01] * 3  # loose


def _t(x):
    return torch.as_tensor(np.asarray(x), dtype=F64)


def _lattice_shift(offset):
    """The map frame as the world moved by ``offset`` (metres, on each axis): voxel centres then
    lie at ``offset + k resolution`` in the world. Shape: (4, 4)."""
    T = torch.eye(4, dtype=F64)
    T[:3, 3] = -offset
    return T


# The synthetic room's walls, floor and ceiling lie at whole metres, on voxel centres of the
# map's lattice (k * 3 cm) when the map frame is the world frame. The tracker's accuracy depends
# on where surfaces cut the lattice (test_track_optimum_does_not_depend_on_the_lattice); these
# tests keep the lattice where they were tuned (centres at 1 cm + k * 3 cm, the dense grid's
# before map v2).
LATTICE = 0.01


class Scene:
    """One noise-free frame, the map fused from it at its true pose, and sampled rays (all in
    the map frame, the world shifted by ``lattice``)."""

    def __init__(self, flight, index, n_rays=512, seed=0, lattice=LATTICE):
        frame = flight.frame(index, noise=False)
        self.depth = _t(frame.depth)
        self.rgb = _t(frame.rgb / 255.0)
        self.K = _t(frame.K)
        self.T_body_cam = _t(frame.T_body_cam)
        shift = _lattice_shift(lattice)
        self.T_world_body = shift @ _t(flight.gt_frames.T_world_body[index])
        self.map = VoxelMap(ECFG.map, 'cpu', F64)
        self.map.fuse(self.depth, self.rgb, self.K, shift @ _t(flight.T_world_cam(index)),
                      depth_sigma(self.depth, ECFG.sensor))
        self.rays = self.make(torch.isfinite(self.depth), n_rays, seed)
        self.rays_rgb = self.make(torch.isfinite(self.depth), n_rays, seed, color=True)

    def make(self, valid, n_rays, seed, color=False):
        idx, ok = sample_pixels(valid, n_rays, torch.Generator().manual_seed(seed))
        w = self.depth.shape[1]
        uv = torch.stack(((idx % w).to(F64), (idx // w).to(F64)), dim=-1)
        return make_rays(pixel_rays(self.K, uv), self.depth.reshape(-1)[idx], ok,
                         self.T_body_cam, ECFG.render,
                         self.rgb.reshape(-1, 3)[idx] if color else None)

    def prior(self, dp, axis, angle_deg):
        axis = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
        R = self.T_world_body[:3, :3] @ lie.so3_exp(_t(axis * math.radians(angle_deg)))
        return GaussianState(R, self.T_world_body[:3, 3] + _t(dp), torch.zeros(3, dtype=F64),
                             torch.diag(_t(PRIOR_STD) ** 2), torch.zeros(3, dtype=F64))

    def errors(self, state):
        """Position (m) and rotation (deg) error of a state."""
        T = self.T_world_body
        return (float((state.p - T[:3, 3]).norm()),
                math.degrees(float(lie.so3_log(T[:3, :3].t() @ state.R).norm())))


def _track(scene, prior, rays=None, iters=8, stop=(0.0, 0.0), scfg=None):
    inf = ECFG.inference
    return track(scene.map, scene.rays if rays is None else rays, prior, iters, ECFG.render,
                 scfg or ECFG.sensor, inf.max_step_translation, inf.max_step_rotation_deg,
                 inf.min_valid_rays, 1.0, *stop)


@pytest.fixture(scope='module')
def flight():
    return generate_flight(SYN)


@pytest.fixture(scope='module')
def scene30(flight):
    return Scene(flight, 30)


@pytest.mark.parametrize('dp, axis, angle', [
    ((-0.02, 0.0, 0.0), (1.0, 0.0, 0.0), 1.0),  # 2 cm + 1 deg about the body x axis
    ((0.0, 0.02, 0.0), (1.0, 0.0, 0.0), 1.0),
    ((0.0, 0.0, 0.0), (0.0, 0.0, 1.0), 0.5),  # yaw: 1 deg below
])
def test_track_converges_from_2cm_1deg(scene30, dp, axis, angle):
    prior = scene30.prior(dp, axis, angle)
    e_p, e_r = scene30.errors(prior)
    assert e_p == pytest.approx(np.linalg.norm(dp)) and e_r == pytest.approx(angle)
    res = _track(scene30, prior)
    e_p, e_r = scene30.errors(res['state'])
    assert e_p < 5e-3, e_p
    assert e_r < 0.2, e_r
    assert res['n_used'] > 450
    assert res['rmse'] < 0.6


def test_laplace_covariance_is_spd_and_shrinks(scene30):
    prior = scene30.prior((-0.02, 0.0, 0.0), (1.0, 0.0, 0.0), 1.0)
    post = _track(scene30, prior)['state']
    P, P0 = post.cov, prior.cov
    assert torch.equal(P, P.t())
    assert float(torch.linalg.eigvalsh(P).min()) > 0.0
    # H = P0^-1 + J^T W J >= P0^-1, so P0 - P is positive semi-definite.
    assert float(torch.linalg.eigvalsh(P0 - P).min()) > -1e-12
    std, std0 = torch.diagonal(P).sqrt(), torch.diagonal(P0).sqrt()
    assert float((std[:6] / std0[:6]).max()) < 0.2  # the depth rays carry the pose
    assert torch.allclose(std[6:], std0[6:])  # they say nothing about velocity
    assert torch.allclose(post.R @ post.R.t(), torch.eye(3, dtype=F64), atol=1e-12)


def test_no_usable_rays_returns_the_prior(scene30):
    prior = scene30.prior((0.01, 0.0, 0.0), (0.0, 1.0, 0.0), 0.5)
    none = scene30.make(torch.zeros_like(scene30.depth, dtype=torch.bool), 256, 0)
    assert not bool(none.valid.any())
    res = _track(scene30, prior, rays=none)
    s = res['state']
    assert res['n_used'] == 0
    for k in ('R', 'p', 'v', 'cov'):
        # R is re-orthonormalised on the way out (a no-op up to rounding).
        assert torch.allclose(getattr(s, k), getattr(prior, k), rtol=0, atol=1e-14), k
    assert s is not prior


def test_jacobian_matches_finite_differences(scene30):
    # The one-backward-pass Jacobian against central differences of the rendered depth.
    prior = scene30.prior((0.004, -0.003, 0.002), (1.0, -2.0, 0.5), 0.3)
    R0, p0 = prior.R, prior.p
    lin = linearise(scene30.map, scene30.rays, R0, p0, ECFG.render, ECFG.sensor)
    use = lin['w'] > 0
    assert int(use.sum()) > 400
    eps = 1e-6
    for j in range(6):
        d = torch.zeros(6, dtype=F64)
        d[j] = eps
        lp = linearise(scene30.map, scene30.rays, R0 @ lie.so3_exp(d[3:]), p0 + d[:3],
                       ECFG.render, ECFG.sensor)['depth']
        lm = linearise(scene30.map, scene30.rays, R0 @ lie.so3_exp(-d[3:]), p0 - d[:3],
                       ECFG.render, ECFG.sensor)['depth']
        fd = (lp - lm) / (2 * eps)
        # J = -(d depth / d x) / sigma with sigma from the sensor model and the depth spread.
        sigma = torch.sqrt(depth_sigma(scene30.rays.d_obs, ECFG.sensor) ** 2
                           + _depth_var(scene30, R0, p0))
        analytic = -lin['J'][:, j] * sigma
        rel = float((fd - analytic)[use].norm() / fd[use].norm())
        assert rel < 1e-4, (j, rel)


def test_a_field_without_direct_gradients_linearises_the_same_by_autograd(scene30):
    # linearise reads the map's spatial gradient directly from a VoxelMap, and falls back to
    # autograd through ``logits_at`` for any other field: both give one Jacobian.
    class LogitsOnly:
        def __init__(self, m):
            self.logits_at = m.logits_at

    prior = scene30.prior((0.004, -0.003, 0.002), (1.0, -2.0, 0.5), 0.3)
    direct = linearise(scene30.map, scene30.rays, prior.R, prior.p, ECFG.render, ECFG.sensor)
    fallback = linearise(LogitsOnly(scene30.map), scene30.rays, prior.R, prior.p, ECFG.render,
                         ECFG.sensor)
    assert int((direct['w'] > 0).sum()) > 400
    for k in ('r', 'w', 'depth', 'hit'):
        assert torch.allclose(direct[k], fallback[k], rtol=0, atol=1e-12), k
    scale = float(direct['J'].abs().max())
    assert float((direct['J'] - fallback['J']).abs().max()) < 1e-9 * scale


def test_colour_jacobian_matches_finite_differences(scene30):
    # The colour term's Jacobian against central differences of the map's intensity at the
    # rays' observed points.
    # The brightness gain and offset (``sensor.color_affine``) are refitted at every pose (a
    # profiled nuisance): Gauss-Newton takes them as fixed, so the check fixes them too.
    scfg = dataclasses.replace(ECFG.sensor, color_affine=False)
    prior = scene30.prior((0.004, -0.003, 0.002), (1.0, -2.0, 0.5), 0.3)
    R0, p0 = prior.R, prior.p
    rays = scene30.rays_rgb
    lin = linearise(scene30.map, rays, R0, p0, ECFG.render, scfg)
    use = lin['w_col'] > 0
    assert int(use.sum()) > 300
    assert int((use & (lin['w'] == 0)).sum()) == 0  # colour only where depth is usable

    def intensity(R, p):
        out = linearise(scene30.map, rays, R, p, ECFG.render, scfg)
        return rays.i_obs - out['r_col'] * scfg.color_sigma

    eps = 1e-7  # the trilinear gradient jumps at cell faces; one ray here is 4 um from one
    for j in range(6):
        d = torch.zeros(6, dtype=F64)
        d[j] = eps
        fd = (intensity(R0 @ lie.so3_exp(d[3:]), p0 + d[:3])
              - intensity(R0 @ lie.so3_exp(-d[3:]), p0 - d[:3])) / (2 * eps)
        analytic = -lin['J_col'][:, j] * scfg.color_sigma
        rel = float((fd - analytic)[use].norm() / fd[use].norm())
        assert rel < 1e-4, (j, rel)


def test_brightness_fit_recovers_gain_and_offset():
    g = torch.Generator().manual_seed(0)
    i_map = torch.rand(500, generator=g, dtype=F64)
    ok = torch.ones(500, dtype=torch.bool)
    ok[:100] = False
    i_obs = 1.3 * i_map + 0.05
    i_obs[:100] = 5.0   # outside the fit: ignored
    gain, offset = brightness_fit(i_obs, i_map, ok)
    assert float(gain) == pytest.approx(1.3) and float(offset) == pytest.approx(0.05)
    # Too few rays, or a map without contrast there: no correction.
    few = torch.zeros(500, dtype=torch.bool)
    few[:10] = True
    assert [float(x) for x in brightness_fit(i_obs, i_map, few)] == [1.0, 0.0]
    flat = torch.full((500,), 0.4, dtype=F64)
    assert [float(x) for x in brightness_fit(i_obs, flat, ok)] == [1.0, 0.0]


def test_track_with_colour_ignores_an_exposure_change(scene30):
    """The same rays 40 % brighter (auto exposure): with the brightness fit tracking lands
    where it lands on the original rays; with the plain colour term it does not."""
    prior = scene30.prior((0.01, -0.01, 0.005), (0.5, -0.5, 0.5), 0.3)
    rays = scene30.rays_rgb
    bright = dataclasses.replace(rays, i_obs=(rays.i_obs * 1.4 + 0.02).clamp(max=1.0))
    out = {}
    for affine in (True, False):
        scfg = dataclasses.replace(ECFG.sensor, color_affine=affine)
        p = [track(scene30.map, r, prior, 8, ECFG.render, scfg, 0.05, 3.0, 50,
                   ECFG.sensor.ray_info_scale)['state'].p for r in (rays, bright)]
        out[affine] = float(torch.linalg.norm(p[0] - p[1]))
    assert out[True] < 1e-3 and out[False] > 3 * out[True]


@pytest.mark.parametrize('axis', [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)])
def test_track_with_colour_converges_from_2cm_1deg(scene30, axis):
    # Every 2 cm x 1 deg perturbation (along +-x/y/z, about +-body x/y/z) that depth alone
    # leaves 5-26 mm off (8 of 36, the xfails below among them) converges with colour. The
    # brightness fit (sensor.color_affine) gives up a little of colour's pull in this scene:
    # the worst rotation error 0.32 deg against 0.2 without it. The pitch case that depth
    # alone fails (test_track_converges_from_2cm_1deg_pitch) needs more than 8 steps since
    # colour fuses into voxels the map places on the surface (session 13): 10.3 mm after 8,
    # 1.9 mm after 20 (6.4 / 2.0 mm with colour at all eight corners required).
    for affine, max_deg in ((False, 0.2), (True, 0.35)):
        scfg = dataclasses.replace(ECFG.sensor, color_affine=affine)
        for dp in _DP6:
            for angle in (1.0, -1.0):
                prior = scene30.prior(dp, axis, angle)
                slow = axis == (0.0, 1.0, 0.0) and dp == (0.0, 0.02, 0.0) and angle == 1.0
                res = _track(scene30, prior, rays=scene30.rays_rgb, scfg=scfg,
                             iters=20 if slow else 8)
                e_p, e_r = scene30.errors(res['state'])
                assert e_p < 5e-3 and e_r < max_deg, (affine, dp, angle, e_p, e_r)


def _textured_wall(color):
    """Tracking against a fronto-parallel wall 2 m ahead (body = camera at the origin,
    looking along +z) with a smooth grey texture, the map fused from a view twice as wide as
    the tracked one (so that no tracked ray sees the edge of the fused wall).

    Returns:
        the map and 512 rays (with their colour when ``color``).
    """
    h, w = 192, 256
    K = _t([[120.0, 0.0, 127.5], [0.0, 120.0, 95.5], [0.0, 0.0, 1.0]])
    dirs = pixel_rays(K, pixel_grid(h, w, dtype=F64))
    X, Y = 2.0 * dirs[:, 0], 2.0 * dirs[:, 1]
    inten = (0.5 + 0.2 * torch.sin(2 * math.pi * X / 0.5)
             + 0.2 * torch.cos(2 * math.pi * Y / 0.4)).reshape(h, w)
    rgb = inten[..., None].expand(h, w, 3)
    depth = torch.full((h, w), 2.0, dtype=F64)
    m = VoxelMap(MapConfig(), 'cpu', F64)
    m.fuse(depth, rgb, K, torch.eye(4, dtype=F64), depth_sigma(depth, ECFG.sensor))
    centre = torch.zeros((h, w), dtype=torch.bool)
    centre[h // 4:-h // 4, w // 4:-w // 4] = True
    idx, ok = sample_pixels(centre, 512, torch.Generator().manual_seed(0))
    rays = make_rays(dirs[idx], depth.reshape(-1)[idx], ok, torch.eye(4, dtype=F64),
                     ECFG.render, rgb.reshape(-1, 3)[idx] if color else None)
    return m, rays


def test_colour_recovers_motion_along_a_textured_wall():
    # Depth of a plane says nothing about motion within it (x, y, yaw about its normal); the
    # colour likelihood does.
    errs, stds = {}, {}
    for color in (False, True):
        m, rays = _textured_wall(color)
        R = lie.so3_exp(_t([0.0, 0.0, math.radians(0.5)]))
        prior = GaussianState(R, _t([0.02, -0.015, 0.0]), torch.zeros(3, dtype=F64),
                              torch.diag(_t(PRIOR_STD) ** 2), torch.zeros(3, dtype=F64))
        inf = ECFG.inference
        post = track(m, rays, prior, 8, ECFG.render, ECFG.sensor, inf.max_step_translation,
                     inf.max_step_rotation_deg, inf.min_valid_rays)['state']
        errs[color] = (float(post.p.norm()),
                       math.degrees(float(lie.so3_log(post.R).norm())))
        stds[color] = torch.diagonal(post.cov)[:6].sqrt()
    # Depth alone keeps the prior's 2.5 cm and 0.5 deg, and its std, in those directions.
    assert errs[False] == pytest.approx((0.025, 0.5), rel=1e-4)
    assert errs[True][0] < 2e-3 and errs[True][1] < 0.05, errs[True]
    # The colour term's information is where depth had none: x, y and yaw.
    for j in (0, 1, 5):
        assert float(stds[True][j]) < 0.1 * float(stds[False][j]), j


def _depth_var(scene, R, p):
    from vssm_ros.core.render import composite
    x = scene.rays.q_body @ R.t() + p
    n, k, _ = x.shape
    out = composite(scene.map.logits_at(x.reshape(-1, 3)).reshape(n, k), scene.rays.depths,
                    ECFG.render.hit_sharpness, ECFG.render.far)
    return out['depth_var']


_DP6 = [(0.02, 0.0, 0.0), (-0.02, 0.0, 0.0), (0.0, 0.02, 0.0), (0.0, -0.02, 0.0),
        (0.0, 0.0, 0.02), (0.0, 0.0, -0.02)]


_FLAT_Z = pytest.mark.xfail(strict=True, reason=(
    'with the observed-corners query (map.observed_floor 0.5) these end 8 and 15 mm off, '
    'mostly along z, at 0.05-0.1 deg: on this 64x48 view the cost there is as low as at the '
    'truth (the plain query, observed_floor 1, converges on all 12 yaw cases but fails 8 '
    'others of 36 2 cm x 1 deg cases by more)'))


@pytest.mark.parametrize('dp, angle', [
    pytest.param(dp, angle, marks=_FLAT_Z) if (dp, angle) in (
        ((0.0, 0.0, -0.02), 1.0), ((0.0, 0.02, 0.0), -1.0)) else (dp, angle)
    for angle in (1.0, -1.0) for dp in _DP6])
def test_track_converges_from_2cm_1deg_yaw(scene30, dp, angle):
    # Yaw trades against sideways translation; this settled in a local minimum (20 mm / 1.08
    # deg) while fusion left diagonal holes in the map (6-neighbour candidates).
    prior = scene30.prior(dp, (0.0, 0.0, 1.0), angle)
    e_p, e_r = scene30.errors(_track(scene30, prior)['state'])
    assert e_p < 5e-3 and e_r < 0.2


@pytest.mark.xfail(strict=True, reason=(
    'track does not recover a 1 deg pitch (body y) error together with a 2 cm offset along '
    'world +y: frame 30, noise-free, map fused at the true pose, 512 rays, 8 iterations: it '
    'ends 21 mm / 1.0 deg off (28 of the 36 2 cm x 1 deg perturbations along +-x/y/z and '
    'about +-body x/y/z converge to < 5 mm / 0.2 deg; 34 within 20 iterations)'))
def test_track_converges_from_2cm_1deg_pitch(scene30):
    prior = scene30.prior((0.0, 0.02, 0.0), (0.0, 1.0, 0.0), 1.0)
    e_p, e_r = scene30.errors(_track(scene30, prior)['state'])
    assert e_p < 5e-3 and e_r < 0.2


@pytest.mark.parametrize('index', [10, 30, 50])
def test_track_optimum_is_near_the_true_pose(flight, index):
    # Started at the truth, tracking settles at the cost's optimum: map bias, not the
    # optimiser, decides where that is. The plain trilinear query (observed_floor 1), where
    # never-observed voxels at the edge of the fused view read as free space, put frame 10's
    # optimum 13 mm off.
    scene = Scene(flight, index)
    e_p, e_r = scene.errors(_track(scene, scene.prior((0.0, 0.0, 0.0), (0.0, 0.0, 1.0), 0.0),
                                   iters=30)['state'])
    assert e_p < 4e-3, e_p
    assert e_r < 0.15, e_r


@pytest.mark.xfail(strict=True, reason='map bias depends on where surfaces cut the voxel '
                   'lattice: from the truth, tracking settles 1-12 mm off (frame 10: 12 mm with '
                   'walls on voxel centres, 1 mm at a 1.5 cm offset); issue 14')
def test_track_optimum_does_not_depend_on_the_lattice(flight):
    worst = 0.0
    for lattice in (0.0, 0.015, 0.02):
        for index in (10, 30, 50):
            scene = Scene(flight, index, lattice=lattice)
            prior = scene.prior((0.0, 0.0, 0.0), (0.0, 0.0, 1.0), 0.0)
            worst = max(worst, scene.errors(_track(scene, prior, iters=30)['state'])[0])
    assert worst < 4e-3, worst


def test_track_stops_early_at_the_same_pose(scene30):
    prior = scene30.prior((0.01, -0.005, 0.0), (0.0, 0.0, 1.0), 0.5)
    full = _track(scene30, prior, iters=20)
    early = _track(scene30, prior, iters=20, stop=(5e-5, 0.003))
    assert full['iters'] == 20
    assert 5 <= early['iters'] < 15  # here steps fall below 0.05 mm after 9-11 iterations
    assert float((early['state'].p - full['state'].p).norm()) < 5e-4
    std_full = torch.diagonal(full['state'].cov).sqrt()
    std_early = torch.diagonal(early['state'].cov).sqrt()
    assert torch.allclose(std_early, std_full, rtol=0.05)


def test_track_stops_once_a_step_is_a_fraction_of_a_standard_deviation(scene30):
    # A step short in standard deviations ends tracking as if converged (the pose then lies
    # well inside the optimum's uncertainty), but only within CHI2_STOP_SPAN times the
    # metric thresholds.
    prior = scene30.prior((0.01, -0.005, 0.0), (0.0, 0.0, 1.0), 0.5)
    full = _track(scene30, prior, iters=20)
    metric = _track(scene30, prior, iters=20, stop=(5e-5, 0.003))
    both = _track(scene30, prior, iters=20, stop=(5e-5, 0.003, None, 0.1))
    bounded = _track(scene30, prior, iters=20, stop=(1e-7, 1e-5, None, 1e9))
    assert 2 <= both['iters'] < metric['iters'] < 15, (both['iters'], metric['iters'])
    assert bounded['iters'] >= metric['iters']   # unbounded, it would stop at the first step
    e = both['state'].boxminus(full['state'])[POSE]
    info = torch.linalg.inv(full['state'].cov[POSE, POSE])
    assert float(e @ info @ e) < 0.25, float(e @ info @ e)
    assert torch.allclose(torch.diagonal(both['state'].cov).sqrt(),
                          torch.diagonal(full['state'].cov).sqrt(), rtol=0.05)


def test_a_spent_budget_stops_tracking_after_the_first_steps(scene30):
    # A real-time budget already spent: MIN_STEPS steps, the pose of the last one, the
    # covariance of the last linearisation; a budget far off changes nothing.
    from vssm_ros.core.posterior import MIN_STEPS
    prior = scene30.prior((0.02, -0.01, 0.0), (0.0, 0.0, 1.0), 1.0)
    inf = ECFG.inference

    def run(stop_at):
        return track(scene30.map, scene30.rays, prior, 8, ECFG.render, ECFG.sensor,
                     inf.max_step_translation, inf.max_step_rotation_deg, inf.min_valid_rays,
                     1.0, 0.0, 0.0, stop_at)

    full, spent, far = run(None), run(time.perf_counter()), run(time.perf_counter() + 3600)
    assert full['iters'] == far['iters'] == 8 and spent['iters'] == MIN_STEPS
    assert torch.equal(far['state'].p, full['state'].p)
    e_prior, e_spent, e_full = (scene30.errors(s)[0]
                                for s in (prior, spent['state'], full['state']))
    assert e_full < e_spent < e_prior, (e_prior, e_spent, e_full)
    assert bool(torch.all(torch.linalg.eigvalsh(spent['state'].cov) > 0))
