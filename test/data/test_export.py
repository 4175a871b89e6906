# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""PLY and checkpoint exports: exact round trips, the byte layout, clear errors on bad files;
evicted map regions on disk."""

import dataclasses
import json
import struct

import numpy as np
import pytest
import torch

from vssm_ros.config import EngineConfig, InferenceConfig, MapConfig, SyntheticConfig, to_dict
from vssm_ros.core.engine import SlamEngine
from vssm_ros.data.export import (CHECKPOINT_FORMAT, load_checkpoint, read_ply, save_checkpoint,
                                  write_ply)
from vssm_ros.data.map_swap import DiskSwap
from vssm_ros.data.synthetic import generate_flight
from vssm_ros.errors import SourceError, StateError


def _cloud(n, seed=0):
    rng = np.random.default_rng(seed)
    xyz = rng.uniform(-5, 5, (n, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (n, 3), dtype=np.uint8)
    occ = rng.uniform(0, 1, n).astype(np.float32)
    return xyz, rgb, occ


# ------------------------------------------------------------------------------------ PLY


def test_ply_round_trip_is_exact(tmp_path):
    xyz, rgb, occ = _cloud(57)
    write_ply(tmp_path / 'map.ply', xyz, rgb, occ)
    got = read_ply(tmp_path / 'map.ply')
    np.testing.assert_array_equal(got['xyz'], xyz)
    np.testing.assert_array_equal(got['rgb'], rgb)
    np.testing.assert_array_equal(got['occupancy'], occ)
    assert got['xyz'].dtype == np.float32 and got['rgb'].dtype == np.uint8


def test_ply_byte_layout_is_binary_little_endian(tmp_path):
    xyz, rgb, occ = _cloud(3, seed=1)
    path = tmp_path / 'map.ply'
    write_ply(path, xyz, rgb, occ)
    data = path.read_bytes()
    end = data.index(b'end_header\n') + len(b'end_header\n')
    header = data[:end].decode('ascii')
    assert header.startswith('ply\nformat binary_little_endian 1.0\n')
    assert 'element vertex 3\n' in header
    props = [ln.split()[1:] for ln in header.splitlines() if ln.startswith('property')]
    assert props == [['float', 'x'], ['float', 'y'], ['float', 'z'], ['uchar', 'red'],
                     ['uchar', 'green'], ['uchar', 'blue'], ['float', 'occupancy']]
    # 3 floats + 3 bytes + 1 float = 19 bytes per vertex, unpadded; decode the second vertex
    # by hand, independently of read_ply.
    assert len(data) - end == 3 * 19
    x, y, z, r, g, b, o = struct.unpack('<fffBBBf', data[end + 19:end + 38])
    np.testing.assert_array_equal([x, y, z], xyz[1])
    assert (r, g, b) == tuple(int(v) for v in rgb[1])
    assert o == occ[1]


def test_ply_empty_cloud(tmp_path):
    write_ply(tmp_path / 'e.ply', np.zeros((0, 3)), np.zeros((0, 3), np.uint8), np.zeros(0))
    got = read_ply(tmp_path / 'e.ply')
    assert got['xyz'].shape == (0, 3) and got['occupancy'].shape == (0,)


def test_ply_rejects_bad_inputs(tmp_path):
    xyz, rgb, occ = _cloud(4)
    with pytest.raises(ValueError, match='rgb must have shape'):
        write_ply(tmp_path / 'a.ply', xyz, rgb[:3], occ)
    with pytest.raises(ValueError, match='uint8'):
        write_ply(tmp_path / 'a.ply', xyz, rgb.astype(np.float32), occ)
    assert not (tmp_path / 'a.ply').exists()
    write_ply(tmp_path / 'b.ply', xyz, rgb, occ)
    data = (tmp_path / 'b.ply').read_bytes()
    (tmp_path / 'b.ply').write_bytes(data[:-5])
    with pytest.raises(SourceError, match='truncated'):
        read_ply(tmp_path / 'b.ply')
    (tmp_path / 'c.ply').write_bytes(data.replace(b'binary_little_endian', b'ascii'))
    with pytest.raises(SourceError, match="format 'ascii'"):
        read_ply(tmp_path / 'c.ply')
    with pytest.raises(SourceError, match='cannot read PLY'):
        read_ply(tmp_path / 'missing.ply')


# ------------------------------------------------------------------------------ checkpoints


@pytest.fixture(scope='module')
def engine_and_flight(feed_frames):
    """An engine after 3 frames of a small synthetic flight (a coarse map keeps it fast)."""
    flight = generate_flight(SyntheticConfig(duration_s=1.0, width=48, height=36,
                                             camera_rate_hz=5.0, hover_s=0.0, ramp_s=0.5))
    cfg = EngineConfig(map=MapConfig(resolution=0.1, truncation=0.3))
    engine = SlamEngine(cfg, flight.gt_frames.T_world_body[0])
    feed_frames(engine, flight.items(), 3)
    return engine, flight, cfg


def test_checkpoint_round_trip_renders_identically(tmp_path, engine_and_flight):
    engine, flight, cfg = engine_and_flight
    config = {'engine': to_dict(cfg), 'note': 'round trip'}
    path = tmp_path / 'ckpt' / 'checkpoint.safetensors'
    save_checkpoint(path, engine.state_dict(), config)
    sd, got_config = load_checkpoint(path)
    assert got_config == json.loads(json.dumps(config))
    assert sd['meta'] == engine.state_dict()['meta']
    assert sd['meta']['n_frames'] == 3

    fresh = SlamEngine(cfg)
    fresh.load_state_dict(sd)
    assert fresh.n_frames == 3
    T_world_cam = flight.T_world_cam(2)
    a = engine.render(T_world_cam, flight.K, 48, 36)
    b = fresh.render(T_world_cam, flight.K, 48, 36)
    assert np.isfinite(a['depth']).mean() > 0.5   # the map was really rendered
    for key in ('depth', 'depth_std', 'hit'):
        assert np.array_equal(a[key], b[key], equal_nan=True), key
    assert np.array_equal(a['color'], b['color'])
    pa, pb = engine.map_points(), fresh.map_points()
    assert len(pa['xyz']) > 100
    for key in pa:
        assert np.array_equal(pa[key], pb[key]), key


def test_checkpoint_file_is_safetensors_with_json_metadata(tmp_path, engine_and_flight):
    engine = engine_and_flight[0]
    path = tmp_path / 'c.safetensors'
    save_checkpoint(path, engine.state_dict(), {'a': [1, 2.5, 'x']})
    data = path.read_bytes()
    (n,) = struct.unpack('<Q', data[:8])
    header = json.loads(data[8:8 + n])
    meta = header['__metadata__']
    assert meta['format'] == CHECKPOINT_FORMAT
    assert json.loads(meta['config']) == {'a': [1, 2.5, 'x']}
    assert json.loads(meta['meta'])['n_frames'] == 3
    names = set(header) - {'__metadata__'}
    assert names == set(engine.state_dict()['tensors'])
    assert not data.startswith(b'\x80')   # not a pickle
    # The same state saves as the same bytes (the library alone orders its header by hash).
    for i in range(5):
        save_checkpoint(tmp_path / f'{i}.safetensors', engine.state_dict(), {'a': [1, 2.5, 'x']})
        assert (tmp_path / f'{i}.safetensors').read_bytes() == data
    assert list(meta) == sorted(meta) and n % 8 == 0


def test_corrupt_or_foreign_checkpoints_raise_state_error(tmp_path, engine_and_flight):
    from safetensors.torch import save_file
    import torch

    engine = engine_and_flight[0]
    good = tmp_path / 'good.safetensors'
    save_checkpoint(good, engine.state_dict(), {})
    data = good.read_bytes()

    truncated = tmp_path / 'truncated.safetensors'
    truncated.write_bytes(data[:len(data) // 2])
    with pytest.raises(StateError, match='corrupt or truncated'):
        load_checkpoint(truncated)

    garbage = tmp_path / 'garbage.safetensors'
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)
                        .tobytes())
    with pytest.raises(StateError, match='not a vssm_ros checkpoint'):
        load_checkpoint(garbage)

    tiny = tmp_path / 'tiny.safetensors'
    tiny.write_bytes(b'\x01\x02')
    with pytest.raises(StateError, match='only 2 bytes'):
        load_checkpoint(tiny)

    foreign = tmp_path / 'foreign.safetensors'
    save_file({'w': torch.zeros(2)}, str(foreign), metadata={'format': 'pt'})
    with pytest.raises(StateError, match="format 'pt'"):
        load_checkpoint(foreign)

    with pytest.raises(StateError, match='checkpoint not found'):
        load_checkpoint(tmp_path / 'missing.safetensors')


def test_save_checkpoint_rejects_non_state_dicts(tmp_path):
    with pytest.raises(StateError, match="'tensors' and 'meta'"):
        save_checkpoint(tmp_path / 'x.safetensors', {'tensors': {}}, {})
    with pytest.raises(StateError, match='not JSON-serialisable'):
        save_checkpoint(tmp_path / 'x.safetensors', {'tensors': {}, 'meta': {'o': object()}}, {})
    assert not (tmp_path / 'x.safetensors').exists()


def test_map_files_of_another_version_or_geometry_give_a_clear_error(tmp_path, engine_and_flight):
    engine, _, cfg = engine_and_flight
    sd = engine.state_dict()
    dense = {'tensors': dict(sd['tensors']), 'meta': dict(sd['meta'], version=2)}
    with pytest.raises(StateError, match='version 2 .*dense-grid map from before map v2'):
        SlamEngine(cfg).load_state_dict(dense)
    newer = {'tensors': sd['tensors'], 'meta': dict(sd['meta'], version=99)}
    with pytest.raises(StateError, match='version 99 is not supported'):
        SlamEngine(cfg).load_state_dict(newer)
    other = dataclasses.replace(cfg, map=dataclasses.replace(cfg.map, block_size=4))
    with pytest.raises(StateError, match='block_size 8, the config gives 4'):
        SlamEngine(other).load_state_dict(sd)
    # A block array cut short is a malformed file, not a crash.
    cut = {'tensors': dict(sd['tensors'], **{'map.sdf': sd['tensors']['map.sdf'][:-1]}),
           'meta': sd['meta']}
    with pytest.raises(StateError, match="map field 'sdf' has shape"):
        SlamEngine(cfg).load_state_dict(cut)


def test_disk_swap_round_trips_regions_and_cleans_up(tmp_path):
    import torch

    swap = DiskSwap(tmp_path / 'swap')
    payload = {'keys': torch.arange(5), 'dist_seen': torch.randn(5, 2, 3, 3, 3)}
    swap.put(7, payload)
    swap.put(-3, {k: v * 2 for k, v in payload.items()})
    assert sorted(swap.regions()) == [-3, 7] and swap.nbytes() > 0
    got = swap.get(7)
    assert all(torch.equal(got[k], payload[k]) for k in payload)
    swap.drop(7)
    assert swap.regions() == [-3] and len(list((tmp_path / 'swap').iterdir())) == 1
    swap.clear()
    assert not list((tmp_path / 'swap').iterdir())
    tmp = DiskSwap()
    tmp.put(1, payload)
    d = tmp.dir
    assert d.exists()
    tmp.close()
    assert not d.exists()
    (tmp_path / 'not_a_dir').write_text('x')
    with pytest.raises(StateError, match='cannot create the map swap directory'):
        DiskSwap(tmp_path / 'not_a_dir' / 'swap')


def test_engine_evicts_to_disk_and_saves_the_whole_map(tmp_path, feed_frames):
    """A tiny budget: the engine moves far regions to disk on its own; the saved map holds
    every block (evicted ones included) and loads back the same."""
    flight = generate_flight(SyntheticConfig(duration_s=4.0, width=48, height=36,
                                             camera_rate_hz=5.0, hover_s=0.0, ramp_s=0.5))
    # The 10 cm voxels leave residuals the engine measures as a noisy camera (3.9x): no
    # window and synchronous mapping, so that every keyframe is in the map when its
    # statistics are read.
    cfg = EngineConfig(map=MapConfig(resolution=0.1, truncation=0.3, memory_mb=16,
                                     keep_radius=2.0),
                       inference=InferenceConfig(noisy_window=1, async_mapping=False))
    engine = SlamEngine(cfg, flight.gt_frames.T_world_body[0], swap=DiskSwap(tmp_path / 's'))
    engine.map.budget_blocks = 64   # below what the flight needs
    feed_frames(engine, flight.items(), 20)
    st = engine.map_stats()
    assert st['evictions'] > 0 and st['evicted_blocks'] > 0 and st['evicted_bytes'] > 0
    assert st['active_blocks'] + st['evicted_blocks'] == st['total_blocks']
    assert len(list((tmp_path / 's').iterdir())) == st['evicted_regions']
    sd = engine.state_dict()
    blocks = sd['tensors']['map.blocks'].numpy()
    assert len(blocks) == st['total_blocks'] == len(np.unique(blocks, axis=0))
    assert int((sd['tensors']['map.slot'] < 0).sum()) == st['evicted_blocks']
    fresh = SlamEngine(cfg)
    fresh.load_state_dict(sd)
    again = fresh.state_dict()['tensors']
    key = np.array([1, 1 << 21, 1 << 42])
    oa = np.argsort(blocks @ key)
    ob = np.argsort(again['map.blocks'].numpy() @ key)
    for k, v in sd['tensors'].items():
        if k.startswith('map.') and k != 'map.slot':
            assert np.array_equal(v.numpy()[oa], again[k].numpy()[ob]), k
    whole = engine.map_points(whole_map=True)
    assert len(whole['xyz']) == len(fresh.map_points()['xyz'])
    assert len(engine.map_points()['xyz']) < len(whole['xyz'])
    # Saved streamed (the evicted regions read from disk one at a time) it is the same file
    # as saved from whole tensors, byte for byte, and loads back as the same state.
    streamed, whole_file = tmp_path / 'streamed.safetensors', tmp_path / 'whole.safetensors'
    save_checkpoint(streamed, engine.state_dict(stream=True), {'c': 1})
    save_checkpoint(whole_file, sd, {'c': 1})
    assert streamed.read_bytes() == whole_file.read_bytes()
    loaded, _ = load_checkpoint(streamed)
    assert set(loaded['tensors']) == set(sd['tensors'])
    for k, v in sd['tensors'].items():
        assert torch.equal(loaded['tensors'][k], v), k


def test_a_map_over_the_budget_loads_within_it_and_comes_back_without_keyframes(
        tmp_path, feed_frames):
    """Loaded (for localisation, say), a map larger than the budget keeps the regions around
    the saved pose and puts the others on disk; as the drone moves, they come back without
    any keyframe being fused (a localising engine fuses none)."""
    flight = generate_flight(SyntheticConfig(duration_s=4.0, width=48, height=36,
                                             camera_rate_hz=5.0, hover_s=0.0, ramp_s=0.5))
    cfg = EngineConfig(map=MapConfig(resolution=0.1, truncation=0.3, memory_mb=16,
                                     keep_radius=2.0))
    engine = SlamEngine(cfg, flight.gt_frames.T_world_body[0])
    feed_frames(engine, flight.items(), 20)
    path = tmp_path / 'map.safetensors'
    save_checkpoint(path, engine.state_dict(stream=True), {})
    sd, _ = load_checkpoint(path)
    total = len(sd['tensors']['map.blocks'])
    fresh = SlamEngine(cfg, swap=DiskSwap(tmp_path / 's'))
    fresh.map.budget_blocks = total // 3
    fresh.load_state_dict(sd)
    st = fresh.map_stats()
    assert st['total_blocks'] == total and st['evicted_regions'] > 0
    assert st['active_blocks'] <= 0.8 * fresh.map.budget_blocks
    saved_at = fresh.state.p.double().numpy()
    far, (target, _) = max(fresh.map._evicted.items(),
                           key=lambda kv: np.linalg.norm(kv[1][0] - saved_at))
    there = fresh.state.clone()
    there.p = torch.as_tensor(target, dtype=there.p.dtype)   # the drone flies there
    fresh._keep_budget(there)
    assert fresh.map_stats()['restores'] > 0
    assert far not in fresh.map.evicted_regions()
    assert len(fresh.map.atlas) <= fresh.map.budget_blocks
    restores = fresh.map_stats()['restores']
    fresh._keep_budget(there)   # not moved since: nothing to do
    assert fresh.map_stats()['restores'] == restores


def test_a_stream_short_of_its_tensors_leaves_the_previous_file(tmp_path):
    """A map that changed while it was streamed (its parts do not fill the tensors its
    header announced) is not saved: a clear error, the previous file kept."""
    from vssm_ros.core.map import TensorStream

    path = tmp_path / 'map.safetensors'
    whole = {'x': torch.arange(4.0)}
    save_checkpoint(path, {'tensors': whole, 'meta': {}}, {})
    before = path.read_bytes()
    short = TensorStream({'x': (torch.float32, (4,))}, lambda: iter([{'x': torch.ones(3)}]))
    with pytest.raises(StateError, match='do not fill'):
        save_checkpoint(path, {'tensors': {}, 'meta': {}, 'streams': {'map.': short}}, {})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ['map.safetensors']
    sd, _ = load_checkpoint(path)
    assert torch.equal(sd['tensors']['x'], whole['x'])


def test_tiered_swap_keeps_recent_regions_in_host_memory_and_spills_to_disk(tmp_path):
    import torch

    from vssm_ros.data.map_swap import TieredSwap, open_swap

    payload = {'keys': torch.arange(4), 'dist_seen': torch.ones(4, 2, 9, 9, 9)}
    size = sum(t.numel() * t.element_size() for t in payload.values())
    swap = TieredSwap(2.5 * size / 2**20, DiskSwap(tmp_path / 'd'))
    for r in range(4):
        swap.put(r, {k: v * r for k, v in payload.items()})
    assert sorted(swap.regions()) == [0, 1, 2, 3]
    assert sorted(swap.disk.regions()) == [0, 1]          # the oldest went to disk
    for r in range(4):
        assert torch.equal(swap.get(r)['dist_seen'], payload['dist_seen'] * r)
    swap.drop(0)
    swap.drop(3)
    assert sorted(swap.regions()) == [1, 2] and swap.nbytes() > 0
    cpu = open_swap(MapConfig(swap_dir=str(tmp_path / 'c')), 'cpu')
    assert isinstance(cpu, DiskSwap) and cpu.dir == tmp_path / 'c'
    assert isinstance(open_swap(MapConfig(swap_dir=str(tmp_path / 'g')), 'cuda:0'), TieredSwap)
    own = TieredSwap(0.0, DiskSwap())   # everything spills to a temporary directory
    own.put(5, payload)
    assert own.disk.regions() == [5] and own.disk.dir.exists()
    own.close()
    assert own.regions() == [] and not own.disk.dir.exists(), 'its temporary files are removed'
