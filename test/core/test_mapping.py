# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Keyframe fusion in two steps (core.map.integrate) and beside tracking (core.mapping):
prepare + commit is the one-step update to the bit; asynchronous fusion overlaps the next
frames' tracking, holds the map lock only for its writes, and its errors surface."""

import dataclasses
import threading

import numpy as np
import pytest
import torch

from vssm_ros.config import EngineConfig, InferenceConfig, MapConfig, SyntheticConfig
from vssm_ros.core.engine import SlamEngine
from vssm_ros.core.map import integrate
from vssm_ros.core.mapping import KeyframeMapper
from vssm_ros.data.synthetic import generate_flight

CFG = EngineConfig(map=MapConfig(resolution=0.08, truncation=0.24),
                   inference=InferenceConfig(rays=256, track_iters=3, keyframe_translation=0.1))
WAIT_S = 60.0


@pytest.fixture(scope='module')
def flight():
    return generate_flight(SyntheticConfig(duration_s=2.0, hover_s=0.2, ramp_s=0.5, width=48,
                                           height=36))


def _engine(flight, asynchronous):
    cfg = dataclasses.replace(CFG, inference=dataclasses.replace(
        CFG.inference, async_mapping=asynchronous))
    return SlamEngine(cfg, T_world_body0=flight.gt_frames.T_world_body[0])


def _run(eng, flight, frames, first=0):
    """Step frames ``first`` to ``frames - 1`` with the IMU up to each; the last estimate."""
    lo = flight.frame_stamps_ns[first - 1] if first else -1
    hi = flight.frame_stamps_ns[frames - 1]
    est = None
    for item in flight.items(start_ns=lo + 1, end_ns=hi + 1):
        if hasattr(item, 'rgb'):
            est = eng.step(item)
        elif hasattr(item, 'acc'):
            eng.add_imu(item)
    return est


def test_prepare_then_commit_is_the_one_step_update(flight):
    # Two engines over the same frames; the second map gets each keyframe in two steps with
    # other work in between: the maps are identical to the bit.
    a, b = _engine(flight, False), _engine(flight, False)
    _run(a, flight, 8)
    _run(b, flight, 8)
    f = flight.frame(8)
    K, depth = torch.as_tensor(f.K), torch.as_tensor(f.depth.astype(np.float32))
    rgb = torch.as_tensor(f.rgb.astype(np.float32) / 255)
    T = torch.as_tensor(flight.gt_frames.T_world_body[8] @ f.T_body_cam, dtype=torch.float32)
    var = torch.tensor([1e-4, 1e-5])
    n = a.map.fuse(depth, rgb, K, T, pose_var=var)
    job = integrate.prepare(b.map, depth, rgb, K, T, None, 20000, var)
    assert job.values is not None and n == job.obs.vox.shape[0] > 0
    b.render(T.double().numpy(), f.K, 16, 12)   # a reader in between
    assert integrate.commit(b.map, job) == n
    sa, sb = a.map.state_dict(), b.map.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_asynchronous_fusion_overlaps_tracking_and_ends_in_the_same_map_size(flight,
                                                                             monkeypatch):
    release = threading.Event()
    prepared = threading.Event()
    prepare = integrate.prepare

    def held_prepare(*args, **kwargs):
        job = prepare(*args, **kwargs)
        prepared.set()
        assert release.wait(WAIT_S)
        return job

    eng = _engine(flight, True)
    _run(eng, flight, 3)
    eng.flush()
    fused = eng.map.n_fused
    monkeypatch.setattr(integrate, 'prepare', held_prepare)
    # Frames after a keyframe are tracked while its update waits on the worker.
    kf_before = len(eng.keyframes)
    k = 3
    while len(eng.keyframes) == kf_before:
        _run(eng, flight, k + 1, k)
        k += 1
    assert prepared.wait(WAIT_S)
    assert eng.mapper.pending == 1 and eng.map.n_fused == fused
    est = _run(eng, flight, k + 1, k)   # tracked against the map without that keyframe
    assert est.status == 'OK' and eng.map.n_fused == fused
    release.set()
    eng.flush()
    assert eng.mapper.pending == 0 and eng.map.n_fused == fused + 1
    # As good as the synchronous engine at that frame, give or take a centimetre.
    sync = _engine(flight, False)
    ref = _run(sync, flight, k + 1)
    truth = flight.gt_frames.T_world_body[k][:3, 3]
    err, ref_err = (np.linalg.norm(e.T_world_body[:3, 3] - truth) for e in (est, ref))
    assert err < ref_err + 0.01, (err, ref_err)
    eng.close()


def test_an_asynchronous_update_that_fails_raises_in_the_tracking_thread(
        flight, monkeypatch):
    eng = _engine(flight, True)
    _run(eng, flight, 2)
    eng.flush()

    def broken(*args, **kwargs):
        raise RuntimeError('disk on fire')

    monkeypatch.setattr(integrate, 'commit', broken)
    kf_before = len(eng.keyframes)
    k = 2
    with pytest.raises(RuntimeError, match='disk on fire'):
        while k < flight.n_frames:
            _run(eng, flight, k + 1, k)
            k += 1
            if len(eng.keyframes) > kf_before:
                eng.mapper.drain()
    eng.close()


def test_mapper_runs_in_order_and_drains():
    order = []
    m = KeyframeMapper(asynchronous=True)
    for i in range(5):
        m.fuse(lambda i=i: i, order.append)
    m.drain()
    assert order == [0, 1, 2, 3, 4] and m.pending == 0
    sync = KeyframeMapper(asynchronous=False)
    sync.fuse(lambda: 'now', order.append)
    assert order[-1] == 'now'
    m.close()


def _in_thread(fn):
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    return t


def test_map_lock_readers_share_and_a_writer_is_alone():
    from vssm_ros.core.mapping import MapLock
    lock = MapLock()
    inside, release = threading.Event(), threading.Event()
    events = []

    def reader(name):
        with lock.read():
            events.append(f'{name} in')
            inside.set()
            release.wait(WAIT_S)
        events.append(f'{name} out')

    a = _in_thread(lambda: reader('a'))
    assert inside.wait(WAIT_S)
    inside.clear()
    b = _in_thread(lambda: reader('b'))
    assert inside.wait(WAIT_S), 'a second reader enters beside the first'
    wrote = threading.Event()

    def writer():
        with lock.write():
            events.append('w in')
            wrote.set()

    w = _in_thread(writer)
    assert not wrote.wait(0.2), 'the writer waits for the readers'
    late = threading.Event()
    c = _in_thread(lambda: (lock.read().__enter__(), late.set()))
    assert not late.wait(0.2), 'a waiting writer keeps new readers out'
    release.set()
    for t in (a, b, w):
        t.join(WAIT_S)
    assert wrote.is_set() and events.index('w in') > max(events.index('a out'),
                                                         events.index('b out'))
    assert late.wait(WAIT_S)   # the reader after the writer
    c.join(WAIT_S)


def test_map_lock_is_reentrant_and_refuses_an_upgrade():
    from vssm_ros.core.mapping import MapLock
    lock = MapLock()
    with lock.write():
        with lock.write():
            with lock.read():   # the writer may read (engine.reset inside a commit, say)
                pass
    with lock.read():
        with lock.read():
            pass
        with pytest.raises(RuntimeError, match='cannot start writing'):
            with lock.write():
                pass
    with lock.write():   # nothing was left held
        pass
