# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""First-hit rendering against analytic fields: planes, walls, empty space, occluders."""

import math

import pytest
import torch

from vssm_ros.config import RenderConfig
from vssm_ros.core.lie import make_pose, so3_exp
from vssm_ros.core.render import (band_depths, composite, composite_depth_grad, march_rays,
                                  ray_points, render_rays, uniform_depths)

F64 = torch.float64
RCFG = RenderConfig()


class Slabs:
    """Occupied slabs ``z in [lo, hi]`` (world frame) with linear logit ramps at both faces.

    ``logits_at`` is ``slope * (signed depth inside the nearest slab)``, clipped to +-clip, so
    a ray entering at z = lo crosses zero exactly there.
    """

    def __init__(self, slabs, slope=100.0, clip=20.0, colors=None):
        self.slabs = slabs
        self.slope, self.clip = slope, clip
        self.colors = torch.tensor(colors if colors else [[0.5, 0.5, 0.5]] * len(slabs),
                                   dtype=F64)

    def _inside(self, z):
        # Signed depth inside each slab (positive inside). Shape: (N, S).
        return torch.stack([torch.minimum(z - lo, hi - z) for lo, hi in self.slabs], dim=-1)

    def logits_at(self, points, skip_empty=False):
        if not self.slabs:
            return torch.full_like(points[:, 0], -self.clip)
        s = self._inside(points[:, 2]).max(dim=-1).values
        return (self.slope * s).clamp(-self.clip, self.clip)

    def color_at(self, points):
        if not self.slabs:
            return torch.zeros_like(points)
        which = self._inside(points[:, 2]).argmax(dim=-1)
        return self.colors[which]


def _dirs():
    """Camera rays at several angles (up to ~40 deg off axis), z = 1. Shape: (6, 3)."""
    return torch.tensor([[0.0, 0.0, 1.0], [0.3, 0.0, 1.0], [0.0, -0.5, 1.0], [0.6, 0.4, 1.0],
                         [-0.7, 0.2, 1.0], [-0.4, -0.6, 1.0]], dtype=F64)


def _render(field, T, dirs, depths, with_color=False):
    depths = depths.expand(dirs.shape[0], -1)
    return render_rays(field, ray_points(T, dirs, depths), depths, RCFG, with_color=with_color)


def _plane_depth(T, dirs, z0):
    """Analytic z-depth at which each ray meets the world plane z = z0. Shape: (R,)."""
    return (z0 - T[2, 3]) / (dirs @ T[:3, :3].t())[:, 2]


@pytest.mark.parametrize('spacing', [0.05, 0.1, 0.125])
@pytest.mark.parametrize('offset', [0.0, 0.3, 0.5, 0.77])
@pytest.mark.parametrize('tilt_deg', [0.0, 15.0])
def test_plane_depth_is_interpolated_inside_the_interval(spacing, offset, tilt_deg):
    # Samples at 0.5 + spacing * (k + offset): with offset != 0 no sample lies on the plane.
    T = make_pose(so3_exp(torch.tensor([math.radians(tilt_deg), 0.0, 0.0], dtype=F64)),
                  torch.tensor([0.1, -0.2, 0.0], dtype=F64))
    dirs = _dirs()
    d = 0.5 + spacing * (torch.arange(int(3.0 / spacing), dtype=F64) + offset)
    out = _render(Slabs([(2.0, 50.0)]), T, dirs, d[None])
    truth = _plane_depth(T, dirs, 2.0)
    err = (out['depth'] - truth).abs()
    assert float(out['hit'].min()) > 0.999
    assert float(err.max()) < 2e-3
    # << half a sample spacing: the hit is interpolated at the logit zero crossing.
    assert float(err.max()) < 0.05 * spacing
    # The discrete expectation over sample depths (no interpolation) is a fraction of a spacing
    # off whenever no sample sits on the plane; the interpolated one is far better.
    naive = (out['weights'] * d).sum(dim=1) / out['hit']
    naive_err = (naive - truth).abs()
    if offset in (0.3, 0.77) and tilt_deg == 0.0:
        assert float(naive_err.min()) > 0.2 * spacing
        assert float(err.max()) < 0.05 * float(naive_err.min())


def test_plane_depth_is_a_smooth_function_of_the_pose():
    # Rendered depth of a fixed ray follows the camera's height linearly (slope -1), without
    # the staircase of a sample-depth expectation.
    dirs = torch.tensor([[0.0, 0.0, 1.0]], dtype=F64)
    d = torch.arange(0.5, 3.0, 0.05, dtype=F64)
    heights = torch.linspace(0.0, 0.1, 21, dtype=F64)
    depth = torch.stack([_render(Slabs([(2.0, 50.0)]),
                                 make_pose(torch.eye(3, dtype=F64), torch.tensor([0, 0, h],
                                                                                 dtype=F64)),
                                 dirs, d[None])['depth'][0] for h in heights])
    assert torch.allclose(depth, 2.0 - heights, atol=1.5e-3)
    steps = depth[1:] - depth[:-1]
    assert float(steps.max()) < 0.0  # strictly decreasing
    assert float((steps + 0.005).abs().max()) < 2e-3  # each 5 mm rise reads 5 mm shallower


def test_wall_colour_is_rendered():
    red, blue = [0.9, 0.1, 0.2], [0.1, 0.3, 0.8]
    field = Slabs([(2.0, 2.3), (4.0, 50.0)], colors=[red, blue])
    d = torch.linspace(0.5, 6.0, 111, dtype=F64)[None]
    out = _render(field, torch.eye(4, dtype=F64), _dirs(), d, with_color=True)
    assert out['color'].shape == (6, 3)
    assert torch.allclose(out['color'], torch.tensor(red, dtype=F64).expand(6, 3), atol=1e-3)
    # Seen alone, the far wall renders its own colour.
    out = _render(Slabs([(4.0, 50.0)], colors=[blue]), torch.eye(4, dtype=F64), _dirs(), d,
                  with_color=True)
    assert torch.allclose(out['color'], torch.tensor(blue, dtype=F64).expand(6, 3), atol=1e-3)


def test_empty_field_hits_nothing():
    d = uniform_depths(6, RCFG, dtype=F64)
    out = _render(Slabs([]), torch.eye(4, dtype=F64), _dirs(), d, with_color=True)
    # 64 samples at logit -20, sharpness 2: hit mass 64 * sigmoid(-40) ~ 3e-16.
    assert float(out['hit'].max()) < 1e-12
    assert torch.allclose(out['depth_uncond'], torch.full((6,), RCFG.far, dtype=F64),
                          atol=1e-9)
    assert torch.isfinite(out['depth']).all() and torch.isfinite(out['color']).all()


def test_first_of_two_planes_wins():
    d = torch.linspace(0.5, 6.0, 111, dtype=F64)[None]
    T = torch.eye(4, dtype=F64)
    near_first = _render(Slabs([(1.5, 1.8), (3.0, 50.0)]), T, _dirs(), d)
    assert torch.allclose(near_first['depth'], torch.full((6,), 1.5, dtype=F64), atol=2e-3)
    assert float(near_first['hit'].min()) > 0.999
    # Weight behind the first slab's back face is negligible.
    assert float(near_first['weights'][:, d[0] > 1.9].sum(dim=1).max()) < 1e-6
    # A thicker far slab does not change that; removing the near one exposes the far one.
    far_only = _render(Slabs([(3.0, 50.0)]), T, _dirs(), d)
    assert torch.allclose(far_only['depth'], torch.full((6,), 3.0, dtype=F64), atol=2e-3)


def test_depth_var_small_for_sharp_surface_and_large_for_a_soft_one():
    d = torch.arange(0.5, 4.0, 0.02, dtype=F64)[None]
    T = torch.eye(4, dtype=F64)
    sharp = _render(Slabs([(2.0, 50.0)], slope=100.0), T, _dirs(), d)
    soft = _render(Slabs([(2.0, 50.0)], slope=2.0), T, _dirs(), d)
    assert float(sharp['depth_var'].sqrt().max()) < 5e-3
    assert float(soft['depth_var'].sqrt().min()) > 0.1
    # Weights are a sub-probability and match the hit mass.
    for out in (sharp, soft):
        assert float(out['weights'].min()) >= 0.0
        assert torch.allclose(out['weights'].sum(dim=1), out['hit'])
        assert float(out['hit'].max()) <= 1.0 + 1e-12


def test_composite_closed_form_two_samples():
    # Two samples: o = sigmoid(s L); w0 = o0, w1 = (1 - o0) o1; crossing interpolated.
    logits = torch.tensor([[-1.0, 3.0]], dtype=F64)
    depths = torch.tensor([[1.0, 2.0]], dtype=F64)
    out = composite(logits, depths, sharpness=2.0, far=8.0)
    o0, o1 = torch.sigmoid(torch.tensor(-2.0, dtype=F64)), torch.sigmoid(torch.tensor(6.0,
                                                                                      dtype=F64))
    w = torch.stack((o0, (1 - o0) * o1))
    assert torch.allclose(out['weights'][0], w, atol=1e-14)
    assert torch.allclose(out['hit_depth'][0], torch.tensor([1.0, 1.25], dtype=F64))
    hit = w.sum()
    mean = (w[0] * 1.0 + w[1] * 1.25) / hit
    assert torch.allclose(out['depth'][0], mean, atol=1e-14)
    var = (w[0] * (1.0 - mean) ** 2 + w[1] * (1.25 - mean) ** 2) / hit
    assert torch.allclose(out['depth_var'][0], var, atol=1e-14)
    assert torch.allclose(out['depth_uncond'][0], w[0] * 1.0 + w[1] * 1.25 + (1 - hit) * 8.0,
                          atol=1e-14)


def test_closed_form_depth_gradient_equals_autograd():
    # The tracker's d depth / d logits without autograd, on rays that hit, miss, cross
    # between samples and have flat logit steps (no crossing), in float64 and float32.
    g = torch.Generator().manual_seed(0)
    for dt, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        n, k = 256, 24
        depths = torch.sort(torch.rand(n, k, generator=g, dtype=dt) * 4 + 0.2, dim=1).values
        ramp = torch.linspace(-6, 6, k, dtype=dt)
        logits = torch.randn(n, k, generator=g, dtype=dt) * 3 + ramp
        logits[:5] = -30.0                  # nothing hit: the normaliser is clamped
        logits[5, 4] = logits[5, 3]         # a flat step
        x = logits.clone().requires_grad_(True)
        out = composite(x, depths, 2.0, 4.5)
        auto, = torch.autograd.grad(out['depth'].sum(), x)
        closed = composite_depth_grad(logits, depths, 2.0, composite(logits, depths, 2.0, 4.5))
        assert float(auto.abs().max()) > 0.5
        assert float((closed - auto).abs().max()) < tol * float(auto.abs().max())


def test_band_and_uniform_depths():
    d_obs = torch.tensor([0.2, 2.0, 5.0], dtype=F64)
    d = band_depths(d_obs, RCFG)
    assert d.shape == (3, RCFG.coarse_samples + RCFG.band_samples)
    assert bool((d[:, 1:] >= d[:, :-1]).all())
    assert torch.allclose(d[:, 0], torch.full((3,), RCFG.near, dtype=F64))
    band = d[:, RCFG.coarse_samples:]
    assert torch.allclose(band[1:, 0], d_obs[1:] - RCFG.band)
    assert torch.allclose(band[:, -1], d_obs + RCFG.band)
    assert torch.allclose(band[0, 0], torch.tensor(RCFG.near, dtype=F64))  # clipped at near
    u = uniform_depths(4, RCFG, dtype=F64)
    assert u.shape == (4, RCFG.samples)
    assert float(u[0, 0]) == pytest.approx(RCFG.near) and float(u[0, -1]) == pytest.approx(
        RCFG.far)


@pytest.mark.parametrize('segment', [1, 5, 16, 200])
@pytest.mark.parametrize('slabs', [[], [(2.0, 2.05)], [(1.5, 1.6), (3.0, 3.5)], [(4.0, 9.0)],
                                   [(2.0, 2.0004)]])
def test_march_equals_render_of_all_samples(segment, slabs):
    # Marching in segments and stopping at an opaque surface must give what compositing all
    # samples gives: across segment borders (the crossing interpolates with the sample before
    # the segment), on rays that miss, behind a thin surface and a partial one (last case:
    # 0.4 mm thick, hit mass about 0.07, the ray goes on to far).
    field = Slabs(slabs)
    T = make_pose(so3_exp(torch.tensor([0.05, -0.03, 0.02], dtype=F64)),
                  torch.tensor([0.1, 0.0, 0.0], dtype=F64))
    dirs = _dirs()
    depths = uniform_depths(dirs.shape[0], RCFG, dtype=F64, max_spacing=0.0765)
    ref = _render(field, T, dirs, depths, with_color=True)
    out = march_rays(field, T, dirs, depths, RCFG, segment=segment)
    # What is left behind a stop (transmittance 1e-8) weighs in the variance only.
    for k, rtol in (('depth', 1e-6), ('hit', 1e-6), ('depth_var', 1e-5)):
        assert torch.allclose(out[k], ref[k], rtol=rtol, atol=1e-9), k
    hit = ref['hit'] > 0.5
    assert torch.allclose(out['color'][hit], ref['color'][hit])
    if slabs == [(2.0, 2.0004)]:
        assert 0.01 < float(ref['hit'].max()) < 0.5   # the partial surface the comment means


def test_march_stops_behind_an_opaque_surface():
    # A wall at 2 m: rays stop within a segment or two after it instead of querying to far.
    class Counting(Slabs):
        queried = 0

        def logits_at(self, points, skip_empty=False):
            Counting.queried += points.shape[0]
            return super().logits_at(points)

    field = Counting([(2.0, 9.0)])
    dirs = torch.tensor([[0.0, 0.0, 1.0]], dtype=F64)
    depths = uniform_depths(1, RCFG, dtype=F64, max_spacing=0.05)
    out = march_rays(field, torch.eye(4, dtype=F64), dirs, depths, RCFG, segment=8)
    assert abs(float(out['depth'][0]) - 2.0) < 1e-3
    assert Counting.queried <= (2.0 - RCFG.near) / 0.05 + 2 * 8 + 1 < depths.shape[1]
