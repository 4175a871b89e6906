# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Sparse block storage: keys, the sorted index, queries across block seams against a dense-grid
oracle (values and gradients), eviction and return, state I/O with evicted regions."""

import contextlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vssm_ros.config import MapConfig, RenderConfig
from vssm_ros.core.camera import pixel_grid, pixel_rays
from vssm_ros.core.map import HostSwap, VoxelMap
from vssm_ros.core.map.blocks import CHANNELS, BlockAtlas, containing_blocks
from vssm_ros.core.map.index import MISSING, SortedIndex, pack, unpack
from vssm_ros.core.map.state import map_stream
from vssm_ros.core.render import ray_points, render_rays, uniform_depths

F64 = torch.float64
TRUNC = 0.15
H, W = 48, 64
K = torch.tensor([[40.0, 0.0, 31.5], [0.0, 40.0, 23.5], [0.0, 0.0, 1.0]], dtype=F64)


def _cfg(**kw):
    base = dict(resolution=0.05, truncation=TRUNC, block_size=4)
    base.update(kw)
    return MapConfig(**base)


def _pose(yaw, t):
    c, s = np.cos(yaw), np.sin(yaw)
    T = np.eye(4)
    # camera z forward along the world (c, s, 0), y down
    T[:3, :3] = np.array([[s, 0, c], [-c, 0, s], [0, -1, 0]])
    T[:3, 3] = t
    return torch.tensor(T, dtype=F64)


def _scene_depth(T, dist=2.0):
    """Depth of a wavy wall at ``dist`` in front of the camera (varies across the image)."""
    v, u = torch.meshgrid(torch.arange(H, dtype=F64), torch.arange(W, dtype=F64), indexing='ij')
    depth = dist + 0.2 * torch.sin(u / 9.0) + 0.1 * torch.cos(v / 7.0)
    rgb = torch.stack((0.5 + 0.4 * torch.sin(u / 5.0), 0.5 + 0.4 * torch.cos(v / 4.0),
                       torch.full_like(u, 0.3)), dim=-1)
    return depth, rgb


def _fused_map(cfg=None, swap=None, poses=None):
    m = VoxelMap(cfg or _cfg(), 'cpu', F64, swap)
    for T in poses or [_pose(0.3, (-0.2, 0.1, 0.5)), _pose(2.0, (0.1, -0.3, 0.4))]:
        depth, rgb = _scene_depth(T)
        m.fuse(depth, rgb, K, T, pose_var=torch.tensor([1e-4, 1e-6], dtype=F64))
    return m


@pytest.fixture(scope='module')
def fused():
    return _fused_map()


def test_keys_round_trip_negative_and_large_coordinates():
    ijk = torch.tensor([[0, 0, 0], [-1, -1, -1], [5, -7, 3], [1000000, -1000000, 7]])
    assert torch.equal(unpack(pack(ijk)), ijk)
    assert len(set(pack(ijk).tolist())) == 4


def test_sorted_index_lookup_insert_remove():
    idx = SortedIndex('cpu')
    assert torch.equal(idx.lookup(torch.tensor([3, 4])), torch.tensor([MISSING, MISSING]))
    idx.insert(torch.tensor([30, 10, 20]), torch.tensor([1, 2, 3]))
    assert torch.equal(idx.lookup(torch.tensor([10, 20, 30, 15, 99, 0])),
                       torch.tensor([2, 3, 1, MISSING, MISSING, MISSING]))
    assert torch.equal(idx.remove(torch.tensor([20, 77])), torch.tensor([3]))
    assert torch.equal(idx.lookup(torch.tensor([10, 20, 30])), torch.tensor([2, MISSING, 1]))


@pytest.mark.parametrize('B', [4, 5])   # shifts and masks, and division
def test_containing_blocks_cover_the_aprons(B):
    vox = torch.tensor([[0, 0, 0], [1, 2, 3], [B, B + 1, -B], [-1, -B, 2 * B]])
    blk, local, rows = containing_blocks(vox, B)
    assert torch.equal(blk * B + local, vox[rows])   # every copy is the same voxel
    assert bool(((local >= 0) & (local <= B)).all())
    # the voxels' own blocks first, in order: floor division, local cells in [0, B)
    assert torch.equal(blk[:4], torch.div(vox, B, rounding_mode='floor'))
    count = torch.bincount(rows, minlength=4)
    # first along 3 axes: 8 blocks; along none: 1; along y, z: 4; along x, y: 4
    assert count.tolist() == [8, 1, 4, 4]


def _dense_oracle(m):
    """The map's voxels as one dense grid (shifted distance, seen, colour, colour seen,
    weight) and its origin voxel: what a dense-grid map with the same values would hold."""
    sd = m.state_dict()
    B = m.B
    blocks = sd['blocks']
    lo = (blocks.min(0).values - 1) * B
    ext = ((blocks.max(0).values + 2) * B - lo).tolist()
    grid = torch.zeros((6, ext[2], ext[1], ext[0]), dtype=F64)
    for b, s, w, c, cw in zip(blocks, sd['sdf'], sd['weight'], sd['color'], sd['color_weight']):
        x, y, z = (b * B - lo).tolist()
        sl = (slice(z, z + B), slice(y, y + B), slice(x, x + B))
        grid[0][sl] = torch.where(w > 0, s - TRUNC, torch.zeros_like(s))
        grid[1][sl] = (w > 0).double()
        grid[2:5][(slice(None),) + sl] = c
        grid[5][sl] = (cw > 0).double()
    return grid, lo


def _oracle_query(grid, lo, res, points, floor):
    ext = torch.tensor(grid.shape[1:][::-1], dtype=F64)
    g = (points / res - lo.double()) * (2.0 / (ext - 1)) - 1.0
    out = F.grid_sample(grid[None], g.reshape(1, 1, 1, -1, 3), mode='bilinear',
                        padding_mode='zeros', align_corners=True).reshape(6, -1).t()
    sdf = out[:, 0] / out[:, 1].clamp(min=floor) + TRUNC
    col = out[:, 2:5] / out[:, 5].clamp(min=1e-6)[:, None]
    return sdf, col


def _seam_points(m, n=3000):
    """Random points near the surface, half of their coordinates moved to within 1 nm of a
    block seam (either side: faces, edges and corners between blocks), in metres. (Exactly on
    a seam the trilinear gradient has a kink, and either side's is right.)"""
    gen = torch.Generator().manual_seed(1)
    surf = m.surface_points()['xyz']
    p = surf[torch.randint(0, surf.shape[0], (n,), generator=gen)]
    p = p + 0.06 * torch.randn(n, 3, generator=gen, dtype=F64)
    edge = m.B * m.resolution
    snap = torch.rand(n, 3, generator=gen) < 0.5
    side = torch.where(torch.rand(n, 3, generator=gen) < 0.5, -1e-9, 1e-9).to(F64)
    snapped = torch.round(p / edge) * edge + side
    return torch.where(snap, snapped, p)


@pytest.mark.parametrize('floor', [0.5, 1.0])
def test_queries_across_block_seams_equal_a_dense_grid(fused, floor):
    m = VoxelMap(_cfg(observed_floor=floor), 'cpu', F64)
    m.load_state_dict(fused.state_dict())
    grid, lo = _dense_oracle(m)
    p = _seam_points(m).requires_grad_(True)
    sdf = m.sdf_at(p)
    g_map, = torch.autograd.grad(sdf.sum(), p)
    q = p.detach().clone().requires_grad_(True)
    sdf_o, col_o = _oracle_query(grid, lo, m.resolution, q, floor)
    g_oracle, = torch.autograd.grad(sdf_o.sum(), q)
    assert float((sdf - sdf_o).detach().abs().max()) < 1e-9
    assert float((g_map - g_oracle).abs().max()) < 1e-6 * float(g_oracle.abs().max())
    col, share = m.color_and_share(p.detach())
    # (Colour divides by the observed share, which is tiny 1 nm from an observed corner.)
    assert float((col - col_o.detach()).abs().max()) < 1e-6
    # The points reach the surface band and the seams (the test sees what it claims).
    assert float(sdf.detach().abs().min()) < 0.01 and float(g_oracle.abs().max()) > 1.0


@pytest.mark.parametrize('floor, block', [(0.5, 4), (1.0, 4), (0.5, 32)])
def test_direct_gradients_across_block_seams_equal_a_dense_grids(fused, floor, block):
    # The tracker's Jacobians read the trilinear gradient from the eight corners, without
    # autograd: values and gradients must equal grid_sample's on a dense grid, on seams too
    # (and with the largest blocks, whose atlas cells need more than float32's integers).
    m = VoxelMap(_cfg(observed_floor=floor, block_size=block), 'cpu', F64)
    if block == 4:
        m.load_state_dict(fused.state_dict())
    else:
        m = _fused_map(_cfg(observed_floor=floor, block_size=block))
    grid, lo = _dense_oracle(m)
    p = _seam_points(m)
    logits, g_logits = m.logits_and_grad(p.t().contiguous())   # components first
    inten, g_inten, share = m.intensity_and_grad(p.t().contiguous())
    g_logits, g_inten = g_logits.t(), g_inten.t()
    q = p.clone().requires_grad_(True)
    sdf_o, col_o = _oracle_query(grid, lo, m.resolution, q, floor)
    logits_o = -m.cfg.logit_slope * sdf_o
    g_logits_o, = torch.autograd.grad(logits_o.sum(), q)
    q2 = p.clone().requires_grad_(True)
    inten_o = _oracle_query(grid, lo, m.resolution, q2, floor)[1].mean(dim=1)
    g_inten_o, = torch.autograd.grad(inten_o.sum(), q2)
    assert float((logits - logits_o.detach()).abs().max()) < 1e-7
    assert float((g_logits - g_logits_o).abs().max()) < 1e-6 * float(g_logits_o.abs().max())
    # Where the colour-observed share is not tiny (the tracker uses rays with share >= 0.5).
    ok = share > 0.1
    assert int(ok.sum()) > 1000
    assert float((inten - inten_o.detach())[ok].abs().max()) < 1e-6
    assert float((g_inten - g_inten_o)[ok].abs().max()) < 1e-6 * float(g_inten_o[ok].abs().max())
    assert float((share - m.color_and_share(p)[1]).abs().max()) < 1e-12
    assert float(g_logits_o.abs().max()) > 10.0
    # Points in unallocated blocks (skipped on the CPU) read as unobserved, with no gradient,
    # mixed with allocated ones.
    far = torch.cat((p[:50], p[:50] + 40.0))
    lf, gf = m.logits_and_grad(far.t().contiguous())
    assert float((lf - m.logits_at(far)).abs().max()) < 1e-9
    assert torch.equal(lf[50:], torch.full((50,), -m.cfg.logit_slope * TRUNC, dtype=F64))
    assert not gf[:, 50:].any() and torch.equal(gf[:, :50], g_logits[:50].t())


@pytest.mark.parametrize('dense_grid', [True, False])
def test_skip_empty_queries_equal_full_ones(fused, dense_grid, monkeypatch):
    # A render's samples mostly lie in unallocated blocks: skip_empty interpolates only the
    # others and must give exactly the full query, on seams, in free space, beyond the
    # allocated blocks' box (and through the index when the box is too large for a grid).
    from vssm_ros.core.map import voxel_map
    if not dense_grid:
        monkeypatch.setattr(voxel_map, 'BLOCK_GRID_CELLS', 0)
    m = VoxelMap(_cfg(), 'cpu', F64)
    m.load_state_dict(fused.state_dict())
    gen = torch.Generator().manual_seed(2)
    p = torch.cat((_seam_points(m), 6.0 * torch.randn(3000, 3, generator=gen, dtype=F64)))
    full, skipped = m.logits_at(p), m.logits_at(p, skip_empty=True)
    assert torch.equal(full, skipped)
    blocks = torch.floor(p / m.resolution / m.B).long()
    in_block = m.atlas.slots_of(blocks) != 0
    assert 100 < int(in_block.sum()) < 5000   # both kinds of points are there
    assert (m._block_grid[3] is not None) == dense_grid
    # Every query finds its blocks' slots in the grid: exactly the index's (its oracle).
    assert torch.equal(m._block_slots(blocks), m.atlas.slots_of(blocks))
    # The grid follows the map: a new keyframe allocates blocks the next query sees.
    T = _pose(-1.5, (0.4, 0.2, 0.3))
    depth, rgb = _scene_depth(T)
    m.fuse(depth, rgb, K, T)
    assert torch.equal(m.logits_at(p), m.logits_at(p, skip_empty=True))
    assert torch.equal(m._block_slots(blocks), m.atlas.slots_of(blocks))
    m.atlas.release(m.atlas.blocks()[0][:5])   # as eviction does: slots given back
    assert torch.equal(m._block_slots(blocks), m.atlas.slots_of(blocks))


def test_fusion_writes_the_same_map_as_loading_it(fused):
    """The aprons written by fusion equal those rebuilt from the blocks on load."""
    again = VoxelMap(_cfg(), 'cpu', F64)
    again.load_state_dict(fused.state_dict())
    for name, t in fused.atlas.tensors.items():
        ka, sa = fused.atlas.index.items()
        kb, sb = again.atlas.index.items()
        assert torch.equal(ka, kb)
        assert torch.equal(fused.atlas.read_blocks(sa)[name], again.atlas.read_blocks(sb)[name])


def _render(m, T):
    rc = RenderConfig(samples=48)
    dirs = pixel_rays(K, pixel_grid(H, W, dtype=F64))
    d = uniform_depths(dirs.shape[0], rc, dtype=F64)
    return render_rays(m, ray_points(T, dirs, d), d, rc, with_color=True)


def _three_rooms():
    """Poses that fuse walls around three places 6 m apart."""
    return [_pose(a, (x, 0.0, 0.5)) for x in (0.0, 6.0, 12.0) for a in (0.0, 2.1, 4.2)]


def test_eviction_and_return_give_identical_renders():
    cfg = _cfg(memory_mb=16, keep_radius=5.0)
    swap = HostSwap()
    m = _fused_map(cfg, swap, _three_rooms())
    ref = _fused_map(cfg, None, _three_rooms())
    first = _pose(1.0, (0.0, 0.0, 0.5))
    before = _render(m, first)
    # Over budget at the third room: the first room's regions go.
    m.budget_blocks = len(m.atlas) // 2
    freed = m.enforce_budget(np.array([12.0, 0.0, 0.5]))
    st = m.stats()
    assert freed > 0 and st['evicted_blocks'] == freed and st['evicted_regions'] > 0
    assert st['total_blocks'] == len(ref.atlas)
    assert len(m.atlas) <= 0.8 * m.budget_blocks
    # The farthest regions went: every evicted region is farther than every one kept.
    here = np.array([12.0, 0.0, 0.5])
    gone = min(np.linalg.norm(c - here) for c, _ in m._evicted.values())
    kept = max(d for d, _, _ in m._active_regions(here))
    assert gone >= kept
    assert swap.regions()
    gone = _render(m, first)
    assert float(gone['hit'].mean()) < 0.5 * float(before['hit'].mean())   # really evicted
    # The whole map is still saved.
    sd, sd_ref = m.state_dict(), ref.state_dict()
    order, order_ref = torch.argsort(pack(sd['blocks'])), torch.argsort(pack(sd_ref['blocks']))
    for k in set(sd) - {'slot'}:
        assert torch.equal(sd[k][order], sd_ref[k][order_ref]), k
    # Back in the first room: its regions return, nearest first, in exchange for the third
    # room's (the budget holds the nearest regions); the same data, though blocks may land in
    # other atlas slots, so renders agree to rounding.
    back = np.array([0.0, 0.0, 0.5])
    assert m.restore_near(back) > 0
    assert len(m.atlas) <= m.budget_blocks
    assert m.restore_near(back) == 0   # settled: nothing moves at the next keyframe
    near = [k for k, (c, _) in m._evicted.items() if np.linalg.norm(c - back) < 3.0]
    assert not near
    assert m.stats()['held_radius_m'] == cfg.keep_radius   # the budget holds keep_radius
    m.restore_all()
    assert m.stats()['evicted_blocks'] == 0 and not swap.regions()
    after = _render(m, first)
    for k in before:
        assert torch.allclose(before[k], after[k], rtol=0, atol=1e-9), k


def test_a_budget_short_of_keep_radius_says_how_far_it_holds():
    cfg = _cfg(memory_mb=16, keep_radius=8.0)
    m = _fused_map(cfg, HostSwap(), _three_rooms())
    here = np.array([6.0, 0.0, 0.5])
    m.budget_blocks = len(m.atlas) // 3
    m.enforce_budget(here)
    m.restore_near(here)
    # Regions within keep_radius stay on disk: the nearest of them is how far the map holds.
    left = sorted(np.linalg.norm(c - here) for c, _ in m._evicted.values())
    short = [d for d in left if d <= cfg.keep_radius]
    assert short and m.stats()['held_radius_m'] == pytest.approx(short[0])
    assert 1.0 < short[0] < cfg.keep_radius
    m.budget_blocks *= 4
    m.restore_near(here)
    assert m.stats()['held_radius_m'] == cfg.keep_radius


def test_fusing_into_an_evicted_region_takes_it_back_first():
    cfg = _cfg(memory_mb=16, keep_radius=5.0)
    m = _fused_map(cfg, HostSwap(), _three_rooms())
    ref = _fused_map(cfg, None, _three_rooms())
    m.budget_blocks = len(m.atlas) // 2
    assert m.enforce_budget(np.array([12.0, 0.0, 0.5])) > 0
    extra = _pose(0.5, (0.3, 0.2, 0.6))
    for mm in (m, ref):
        depth, rgb = _scene_depth(extra, 1.7)
        mm.fuse(depth, rgb, K, extra, pose_var=torch.tensor([1e-4, 1e-6], dtype=F64))
    assert m.stats()['restores'] > 0
    m.restore_all()
    sd, sd_ref = m.state_dict(), ref.state_dict()
    order, order_ref = torch.argsort(pack(sd['blocks'])), torch.argsort(pack(sd_ref['blocks']))
    for k in set(sd) - {'slot'}:
        assert torch.equal(sd[k][order], sd_ref[k][order_ref]), k
    p = _seam_points(ref)
    for q, tol in (('sdf_at', 1e-9), ('color_at', 1e-6), ('weight_at', 1e-9)):
        assert torch.allclose(getattr(m, q)(p), getattr(ref, q)(p), rtol=0, atol=tol), q


def test_map_grows_in_every_direction_without_bounds():
    m = VoxelMap(_cfg(), 'cpu', F64)
    for T in (_pose(0.0, (0.0, 0.0, -40.0)), _pose(3.1, (250.0, -300.0, 12.0))):
        depth, rgb = _scene_depth(T)
        m.fuse(depth, rgb, K, T)
    xyz = m.surface_points()['xyz']
    assert float(xyz[:, 2].min()) < -40.0 and float(xyz[:, 0].max()) > 247.0
    # Surface voxels (|sdf| < 0.75 voxel) read as such wherever they are.
    assert float(m.sdf_at(xyz).abs().max()) < 0.75 * m.resolution


def test_the_map_stream_yields_the_state_a_region_at_a_time():
    """Saving streams the map: active blocks in chunks, then one evicted region per part,
    adding up to ``state_dict`` exactly."""
    cfg = _cfg(memory_mb=16, keep_radius=5.0)
    m = _fused_map(cfg, HostSwap(), _three_rooms())
    m.budget_blocks = len(m.atlas) // 2
    assert m.enforce_budget(np.array([12.0, 0.0, 0.5])) > 0
    stream = m.state_stream()
    whole = m.state_dict()
    assert {k: (v.dtype, tuple(v.shape)) for k, v in whole.items()} == stream.spec
    parts = list(map_stream(m, chunk=50).parts())
    active, evicted = len(m.atlas), m.evicted_regions()
    assert len(parts) == -(-active // 50) + len(evicted)
    for part, region in zip(parts[-len(evicted):], evicted):   # one region each
        assert part['blocks'].shape[0] == m._evicted[region][1]
        assert (part['slot'] == MISSING).all()
    assert all(p['blocks'].shape[0] <= 50 for p in parts[:-len(evicted)])
    for k, v in stream.materialise().items():
        assert torch.equal(v, whole[k]), k


def test_a_map_over_the_budget_loads_within_it():
    """Loaded with the drone's position, a saved map larger than the budget keeps only the
    nearest regions active (as the budget would) and puts the rest in the swap, aprons
    included: it renders as the map it was saved from, near and, once back, far."""
    cfg = _cfg(memory_mb=16, keep_radius=5.0)
    src = _fused_map(cfg, None, _three_rooms())
    sd = src.state_dict()
    here = np.array([12.0, 0.0, 0.5])
    m = VoxelMap(cfg, 'cpu', F64, HostSwap())
    m.budget_blocks = len(src.atlas) // 2
    m.load_state_dict(sd, position=here)
    st = m.stats()
    assert 0 < st['active_blocks'] <= 0.8 * m.budget_blocks
    assert st['total_blocks'] == len(src.atlas) and st['evicted_regions'] > 0
    gone = min(np.linalg.norm(c - here) for c, _ in m._evicted.values())
    assert gone >= max(d for d, _, _ in m._active_regions(here))   # the nearest kept
    near, far = _pose(1.0, (12.0, 0.0, 0.5)), _pose(1.0, (0.0, 0.0, 0.5))
    a, b = _render(m, near), _render(src, near)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert float(_render(m, far)['hit'].mean()) < 0.5 * float(_render(src, far)['hit'].mean())
    m.restore_all()
    a, b = _render(m, far), _render(src, far)
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=0, atol=1e-9), k   # other slots: rounding
    again = m.state_dict()
    order, ref = torch.argsort(pack(again['blocks'])), torch.argsort(pack(sd['blocks']))
    for k in set(sd) - {'slot'}:
        assert torch.equal(again[k][order], sd[k][ref]), k
    # Without a position (or within the budget) everything is loaded, as before.
    whole = VoxelMap(cfg, 'cpu', F64, HostSwap())
    whole.budget_blocks = m.budget_blocks
    whole.load_state_dict(sd)
    assert whole.stats()['evicted_blocks'] == 0 and len(whole.atlas) == len(src.atlas)


def test_direct_reads_of_an_empty_map_and_of_no_points():
    m = VoxelMap(_cfg(), 'cpu', F64)
    p = torch.randn(3, 10, dtype=F64)
    logits, grad = m.logits_and_grad(p)
    assert torch.equal(logits, torch.full((10,), -m.cfg.logit_slope * TRUNC, dtype=F64))
    assert not grad.any()
    inten, g, share = m.intensity_and_grad(p)
    assert not inten.any() and not g.any() and not share.any()
    logits, grad = m.logits_and_grad(torch.zeros(3, 0, dtype=F64))
    assert logits.shape == (0,) and grad.shape == (3, 0)


class _Section:
    """A context factory that records its entries and refuses nesting (each part of a read
    holds the lock alone, and releases it before the next)."""

    def __init__(self, on_enter=None):
        self.entries, self.depth, self.on_enter = 0, 0, on_enter

    def __call__(self):
        @contextlib.contextmanager
        def held():
            assert self.depth == 0, 'nested section'
            self.depth += 1
            self.entries += 1
            if self.on_enter:
                self.on_enter(self.entries)
            try:
                yield
            finally:
                self.depth -= 1
        return held()


def test_surface_points_read_a_part_at_a_time_give_the_whole_read(monkeypatch):
    from vssm_ros.core.map import voxel_map
    m = _fused_map()
    whole = m.surface_points()
    n_blocks = len(m.atlas)
    monkeypatch.setattr(voxel_map, 'READ_PART_BLOCKS', 5)
    section = _Section()
    parts = m.surface_points(section=section)
    assert n_blocks > 20 and section.entries == 1 + -(-n_blocks // 5)
    # The same points; a value may differ in its last bit (a vectorised op's tail).
    assert all(torch.allclose(whole[k], parts[k], rtol=1e-12, atol=0) for k in whole)
    assert torch.equal(whole['xyz'], parts['xyz'])
    centre = whole['xyz'][0]
    near = m.surface_points(centre=centre, radius=0.5, section=_Section())
    assert 0 < near['xyz'].shape[0] < whole['xyz'].shape[0]
    assert torch.all(torch.linalg.norm(near['xyz'] - centre, dim=1) < 0.5 + m.B * m.resolution)


def test_a_block_released_between_two_parts_reads_as_empty(monkeypatch):
    # A keyframe's commit (or the memory budget) may change the map between two parts of a
    # read: a released block's voxels then read as the empty block's, never another block's.
    from vssm_ros.core.map import voxel_map
    m = _fused_map()
    whole = m.surface_points()
    coords, _ = m.atlas.blocks()
    blocks_of = lambda xyz: torch.floor(xyz / m.resolution / m.B + 1e-9).long()  # noqa: E731
    holds = torch.isin(pack(coords), pack(blocks_of(whole['xyz'])))
    victim = coords[holds.nonzero()[-1, 0]]   # a block with surface, in the last parts
    monkeypatch.setattr(voxel_map, 'READ_PART_BLOCKS', 5)

    def release_then(entry):
        if entry == 2:
            m.atlas.release(pack(victim[None]))

    pts = m.surface_points(section=_Section(release_then))['xyz']
    in_victim = lambda xyz: torch.all(blocks_of(xyz) == victim, dim=1)  # noqa: E731
    assert bool(in_victim(whole['xyz']).any())
    assert not bool(in_victim(pts).any())
    assert pts.shape[0] == whole['xyz'].shape[0] - int(in_victim(whole['xyz']).sum())


def test_prepare_new_readies_the_slots_the_next_allocation_takes(monkeypatch):
    # A keyframe's preparation readies, on the mapping thread, the free slots its commit will
    # take for new blocks (zeroed, aprons filled); the commit's allocation then neither zeroes
    # them nor fills their aprons again, and they hold what a plain allocation gives.
    def atlas_with_dirty_free_slots():
        atlas = BlockAtlas(4, 'cpu', torch.float32, capacity=64, layer=4)
        old = pack(torch.tensor([[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]]))
        slots = atlas.allocate(old)
        full = {n: torch.rand((4, c) + (atlas.A,) * 3, generator=torch.Generator()
                              .manual_seed(1)) for n, c in CHANNELS.items()}
        atlas.write_blocks(slots, full, torch.ones(4, 2), torch.ones(4))
        atlas.release(old[:3])   # dirty free slots, the next to be taken; block 3 stays
        return atlas

    coords = torch.tensor([[2, 0, 0], [5, 5, 5], [1, 0, 0]])   # (2, 0, 0)'s apron: block 3
    plain = atlas_with_dirty_free_slots()
    slots = plain.allocate(pack(coords))
    plain.refresh_apron(coords, slots)
    readied = atlas_with_dirty_free_slots()
    ready = readied.prepare_new(coords)
    zeroed = []
    real = readied._zero
    monkeypatch.setattr(readied, '_zero', lambda s: (zeroed.append(s.tolist()), real(s)))
    assert torch.equal(readied.allocate(pack(coords), ready), slots)
    assert zeroed == []
    a, b = plain.read_blocks(slots), readied.read_blocks(slots)
    assert all(torch.equal(a[n], b[n]) for n in CHANNELS)
    assert torch.count_nonzero(a['dist_seen'][0]) > 0   # the apron from block 3
    # slots readied for other blocks than the allocation's are zeroed as usual
    again = atlas_with_dirty_free_slots()
    stale = again.prepare_new(coords[:2])
    taken = again.allocate(pack(coords), stale)
    assert all(torch.count_nonzero(v) == 0 for v in again.read_blocks(taken).values())


def test_a_reused_slot_is_zeroed_in_every_channel_and_anchor():
    # Slots hold whatever was there (uninitialised memory, a released block's values): an
    # allocation zeroes its whole padded block and anchors, and no other slot.
    atlas = BlockAtlas(4, 'cpu', torch.float32, capacity=40, layer=4)
    for t in atlas.tensors.values():
        t.fill_(7.0)
    atlas.anchor_sum.fill_(7.0)
    atlas.anchor_weight.fill_(7.0)
    keys = pack(torch.tensor([[0, 0, 0], [3, -1, 2], [-5, 4, 0]]))
    slots = atlas.allocate(keys)
    blocks = atlas.read_blocks(slots)
    for n, c in CHANNELS.items():
        assert blocks[n].shape == (3, c, 5, 5, 5) and not blocks[n].any()
    assert not atlas.anchor_sum[slots].any() and not atlas.anchor_weight[slots].any()
    others = torch.tensor([s for s in range(1, atlas.capacity) if s not in slots.tolist()])
    for n in CHANNELS:
        assert (atlas.read_blocks(others)[n] == 7.0).all()
    assert (atlas.anchor_weight[others] == 7.0).all()
