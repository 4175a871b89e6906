# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Collision cost-to-go on analytic maps: a wall in observed free space."""

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from vssm_ros.config import CostConfig, MapConfig
from vssm_ros.core.cost import (FreeSpace, cost_field, distance_transform,
                                occupancy_probability)
from vssm_ros.core.map import VoxelMap
from vssm_ros.errors import StateError

WALL = (2.0, 2.3)   # x-extent of a wall filling the whole y-z range of the map (metres)


CFG = MapConfig(resolution=0.05, truncation=0.15, block_size=8)
DIMS = (82, 62, 42)   # voxels of the 4 x 3 x 2 m box from the origin (whole cost cells)


def _map_from_dense(sdf, weight):
    """A map holding dense (Z, Y, X) grids of signed distance and weight from voxel 0."""
    B = CFG.block_size
    Z, Y, X = sdf.shape
    nb = [-(-n // B) for n in (Z, Y, X)]
    pad = [n * B for n in nb]
    s = torch.full(pad, CFG.truncation)
    w = torch.zeros(pad)
    s[:Z, :Y, :X], w[:Z, :Y, :X] = sdf, weight
    s = s.reshape(nb[0], B, nb[1], B, nb[2], B).permute(0, 2, 4, 1, 3, 5).reshape(-1, B, B, B)
    w = w.reshape(nb[0], B, nb[1], B, nb[2], B).permute(0, 2, 4, 1, 3, 5).reshape(-1, B, B, B)
    zz, yy, xx = torch.meshgrid(*(torch.arange(n) for n in nb), indexing='ij')
    blocks = torch.stack((xx, yy, zz), dim=-1).reshape(-1, 3)
    n = blocks.shape[0]
    vmap = VoxelMap(CFG, torch.device('cpu'), torch.float32)
    vmap.load_state_dict({'blocks': blocks, 'sdf': s, 'weight': w,
                          'color': torch.zeros(n, 3, B, B, B), 'color_weight': torch.zeros_like(w),
                          'anchor_sum': torch.zeros(n, 2), 'anchor_weight': torch.zeros(n)})
    return vmap


def _voxel_x():
    return torch.arange(DIMS[0], dtype=torch.float32) * CFG.resolution


def _wall_map(known_x_max=None, band=None):
    """A 4 x 3 x 2 m map at 5 cm: the wall at x in WALL, everything observed three times (or
    only up to ``known_x_max``, or only within ``band`` of the wall's face), signed distances
    clamped at the truncation."""
    X, Y, Z = DIMS
    x = _voxel_x()
    inside = torch.minimum(x - WALL[0], WALL[1] - x)  # > 0 inside the wall
    sdf = (-inside).clamp(-CFG.truncation, CFG.truncation).expand(Z, Y, X)
    w = torch.full((X,), 3.0)
    if known_x_max is not None:
        w[x > known_x_max] = 0.0
    if band is not None:
        w[(x <= WALL[0] - band) | (x >= WALL[0] + band)] = 0.0
    return _map_from_dense(sdf, w.expand(Z, Y, X))


def _field(vmap, cfg, free=None):
    """The cost field over the map's box (cells of cfg.resolution from voxel 0)."""
    free = free or FreeSpace(vmap, cfg.resolution)
    dims = tuple(-(-n // free.factor) for n in DIMS)
    return cost_field(vmap, cfg, free, box=(torch.zeros(3, dtype=torch.long), dims))


def test_occupancy_probability_from_the_signed_distance_posterior():
    vmap = _wall_map(known_x_max=3.0)
    p, known = occupancy_probability(vmap, 0.5, FreeSpace(vmap, CFG.resolution),
                                     torch.zeros(3, dtype=torch.long), DIMS)
    x = _voxel_x()
    row = p[5, 5]
    assert torch.all(row[(x > 2.05) & (x < 2.25)] > 0.99)          # inside the wall
    assert torch.all(row[x < 1.8] < 1e-6)                          # observed free space
    assert torch.all(row[x > 3.01] == 0.5) and not known[5, 5, -1]  # never observed


def test_distance_transform_is_the_exact_edt():
    rng = np.random.default_rng(0)
    obstacle = rng.random((12, 17, 23)) < 0.01
    obstacle[0, 0, 0] = True
    d = distance_transform(torch.from_numpy(obstacle), 0.1, max_distance=10.0).numpy()
    ref = ndimage.distance_transform_edt(~obstacle, sampling=0.1)
    np.testing.assert_allclose(d, ref, rtol=0, atol=1e-5)
    # Clamped beyond max_distance, exact below it.
    d_short = distance_transform(torch.from_numpy(obstacle), 0.1, max_distance=0.35).numpy()
    np.testing.assert_allclose(d_short, np.minimum(ref, 0.35), rtol=0, atol=1e-5)


def test_cost_is_maximal_in_the_wall_and_decreases_through_free_space():
    cfg = CostConfig(resolution=0.1, robot_radius=0.3, decay=0.5, max_distance=3.0)
    field = _field(_wall_map(), cfg)
    inside = torch.tensor([[2.15, 1.5, 1.0], [2.1, 0.5, 0.4], [2.25, 2.5, 1.6]])
    assert torch.allclose(field.cost_at(inside), torch.ones(3))
    assert float(field.cost.max()) == 1.0
    # Walking away from the wall through free space (x from 1.9 down to 0): never increasing,
    # strictly decreasing once beyond the robot's radius.
    xs = torch.linspace(1.9, 0.0, 60)
    line = torch.stack((xs, torch.full_like(xs, 1.5), torch.full_like(xs, 1.0)), dim=-1)
    c = field.cost_at(line)
    assert torch.all(c[1:] <= c[:-1] + 1e-6)
    far = xs < WALL[0] - cfg.robot_radius - 0.15
    assert torch.all(c[far][1:] < c[far][:-1])
    assert float(c[0]) > 0.99 and float(c[-1]) < 0.05
    # The cells' distances are distances to the wall's first cells.
    dist_1m = float(field.distance[10, 15, 10])   # cell centre x = 1.0 m
    assert dist_1m == pytest.approx(2.0 - 1.0, abs=0.11)


def test_collision_probability_through_a_wall_and_through_open_space():
    field = _field(_wall_map(), CostConfig())
    through = torch.tensor([[1.0, 1.5, 1.0], [3.5, 1.5, 1.0]])
    beside = torch.tensor([[0.5, 0.5, 1.0], [0.5, 2.5, 1.0], [1.2, 2.5, 0.8]])
    assert float(field.collision_probability(through)) > 0.999
    assert float(field.collision_probability(beside)) < 0.01
    # Just out of reach of the wall (robot radius 0.3 m, cells of 0.1 m) vs grazing it.
    clear = torch.tensor([[1.45, 0.5, 1.0], [1.45, 2.5, 1.0]])
    graze = torch.tensor([[1.85, 0.5, 1.0], [1.85, 2.5, 1.0]])
    assert float(field.collision_probability(clear)) < 0.01
    assert float(field.collision_probability(graze)) > 0.99
    both = field.collision_probability(torch.stack((through, torch.cat((beside[:2],)))))
    assert both.shape == (2,) and float(both[0]) > 0.999 and float(both[1]) < 0.01
    with pytest.raises(StateError):
        field.collision_probability(torch.zeros(4))


def test_unknown_space_is_conservative():
    field = _field(_wall_map(known_x_max=1.0), CostConfig())
    into_unknown = torch.tensor([[0.4, 1.5, 1.0], [1.6, 1.5, 1.0]])
    assert float(field.collision_probability(into_unknown)) > 0.5
    assert float(field.cost_at(torch.tensor([[1.6, 1.5, 1.0]]))) == pytest.approx(1.0)
    outside = torch.tensor([[-2.0, 1.5, 1.0], [-1.0, 1.5, 1.0]])
    assert float(field.collision_probability(outside)) >= 0.5
    assert float(field.cost_at(outside[:1])) == pytest.approx(1.0)
    # Unknown space counted as free only when asked to.
    lenient = _field(_wall_map(known_x_max=1.0), CostConfig(unknown_occupancy=0.0))
    assert float(lenient.collision_probability(into_unknown)) < 0.01


def test_slice_is_an_occupancy_grid():
    field = _field(_wall_map(known_x_max=3.0), CostConfig())
    sl = field.slice(1.0)
    data = sl['data']
    assert data.dtype == np.int8 and data.shape == (field.dims[1], field.dims[0])
    assert set(np.unique(data)) <= set(range(-1, 101))
    xs = sl['origin_xy'][0] + (np.arange(data.shape[1]) + 0.5) * sl['resolution']
    assert np.all(data[:, (xs > 2.05) & (xs < 2.25)] == 100)
    assert np.all(data[:, xs > 3.1] == -1)
    row = data[data.shape[0] // 2, xs < 1.9].astype(int)
    assert np.all(np.diff(row) >= 0) and row[0] < row[-1]
    assert sl['height'] == pytest.approx(1.0, abs=0.5 * sl['resolution'] + 1e-6)
    assert math.isclose(sl['resolution'], 0.1, rel_tol=1e-6)


def test_free_space_is_carved_by_depth_rays():
    """A wide-angle camera at x = 0.1 looking along +x at the wall: the space in front of the
    wall becomes known free (cost low, collision-free), the space outside the view stays
    unknown."""
    vmap = _wall_map(band=0.2)   # only the wall's surface band is observed ...
    free = FreeSpace(vmap, 0.1)
    # Camera optical axis z along world +x, image x along world -y, image y along world -z.
    T = torch.eye(4)
    T[:3, :3] = torch.tensor([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    T[:3, 3] = torch.tensor([0.1, 1.5, 1.0])
    K = torch.tensor([[5.0, 0.0, 10.0], [0.0, 5.0, 10.0], [0.0, 0.0, 1.0]])
    depth = torch.full((21, 21), WALL[0] - 0.1)   # z-depth of the wall's face
    free.carve(depth, K, T)
    cfg = CostConfig()
    blind = _field(vmap, cfg)
    seen = _field(vmap, cfg, free)
    corridor = torch.tensor([[0.9, 1.5, 1.0], [1.3, 1.5, 1.0]])
    assert float(blind.collision_probability(corridor)) > 0.5     # unknown: conservative
    assert float(seen.collision_probability(corridor)) < 0.01     # seen free
    assert float(seen.cost_at(corridor[1:])) < 0.5
    aside = torch.tensor([[0.2, 0.2, 1.0]])   # outside the camera's view
    assert float(seen.cost_at(aside)) == pytest.approx(1.0)
    sl = seen.slice(1.0)
    xs = sl['origin_xy'][0] + (np.arange(sl['data'].shape[1]) + 0.5) * sl['resolution']
    row = sl['data'][15]   # y = 1.5 m
    assert np.all(row[(xs > 0.8) & (xs < 1.2)] >= 0) and np.all(row[xs > 2.6] == -1)
    # Nothing at or behind the surface is carved.
    zz, yy, xx = torch.meshgrid(torch.arange(21), torch.arange(31), torch.arange(41),
                                indexing='ij')
    cells = torch.stack((xx, yy, zz), dim=-1).reshape(-1, 3)
    seen_cells = free.seen_at(cells)
    assert bool(seen_cells.any())
    assert not bool(seen_cells[free.centres(cells)[:, 0] > WALL[0] - 0.2].any())
    # The record survives a state round trip, and reset forgets it.
    again = FreeSpace(vmap, 0.1)
    again.load_state_dict(free.state_dict())
    assert torch.equal(again.seen_at(cells), seen_cells)
    free.reset()
    assert not bool(free.seen_at(cells).any())


def test_cost_grid_follows_the_drone():
    """The default box is cfg.extent around the given centre, in cells of the map lattice."""
    vmap = _wall_map()
    cfg = CostConfig(extent=(2.0, 2.0, 1.0))
    field = cost_field(vmap, cfg, FreeSpace(vmap, cfg.resolution),
                       centre=torch.tensor([1.0, 1.5, 1.0]))
    assert field.dims == (20, 20, 10)
    assert torch.allclose(field.origin, torch.tensor([0.025, 0.525, 0.525]), atol=1e-6)
    assert float(field.cost_at(torch.tensor([[0.5, 1.5, 1.0]]))) < 0.05   # free, far from wall


def test_occupancy_is_read_a_part_at_a_time_and_unchanged(monkeypatch):
    # The cost field's reads release the map's lock between parts (a keyframe's commit waits
    # for one part, not the whole box): the same occupancy as one read.
    from vssm_ros.core import cost as cost_module
    from vssm_ros.core.map import voxel_map
    vmap = _wall_map(known_x_max=3.0)
    free = FreeSpace(vmap, CFG.resolution)
    whole = occupancy_probability(vmap, 0.5, free, torch.zeros(3, dtype=torch.long), DIMS)
    monkeypatch.setattr(voxel_map, 'READ_PART_BLOCKS', 3)
    monkeypatch.setattr(cost_module, 'READ_PART_CELLS', 100)
    entries, depth = [], []

    class Section:
        def __enter__(self):
            assert not depth, 'nested section'
            depth.append(1)
            entries.append(1)

        def __exit__(self, *exc):
            depth.pop()

    parts = occupancy_probability(vmap, 0.5, free, torch.zeros(3, dtype=torch.long), DIMS,
                                  section=Section)
    n_cells = int(np.prod(DIMS))
    assert len(entries) >= 1 + -(-len(vmap.atlas) // 3) + -(-n_cells // 100)
    assert torch.equal(whole[1], parts[1])   # known
    assert torch.allclose(whole[0], parts[0], rtol=1e-12, atol=0)   # a last bit at most
