# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Keyframe fusion in two steps (core.map.integrate) and beside tracking (core.mapping):
prepare + commit is the one-step update to the bit; asynchronous fusion overlaps the next
frames' tracking, commits after a fixed number of frames (deterministic), and its errors
surface; the map's read/write lock."""

import dataclasses
import threading
import time

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


def _engine(flight, asynchronous, lag=3):
    cfg = dataclasses.replace(CFG, inference=dataclasses.replace(
        CFG.inference, async_mapping=asynchronous, mapping_lag_frames=lag))
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


def _until_keyframe(eng, flight, k):
    """Step frames from k until one is a keyframe; the frame after it."""
    kf_before = len(eng.keyframes)
    while len(eng.keyframes) == kf_before:
        _run(eng, flight, k + 1, k)
        k += 1
    return k


def test_asynchronous_fusion_overlaps_the_next_frames_and_commits_after_the_lag(
        flight, monkeypatch):
    release = threading.Event()
    prepared = threading.Event()
    prepare = integrate.prepare

    def held_prepare(*args, **kwargs):
        job = prepare(*args, **kwargs)
        prepared.set()
        assert release.wait(WAIT_S)
        return job

    eng = _engine(flight, True, lag=2)
    _run(eng, flight, 3)
    eng.flush()
    fused = eng.map.n_fused
    monkeypatch.setattr(integrate, 'prepare', held_prepare)
    k = _until_keyframe(eng, flight, 3)
    # The next frame is tracked while the keyframe's preparation waits on the worker.
    assert prepared.wait(WAIT_S)
    est = _run(eng, flight, k + 1, k)
    assert est.status == 'OK' and eng.mapper.pending == 1 and eng.map.n_fused == fused
    release.set()
    _run(eng, flight, k + 2, k + 1)   # the lag's last frame: its step commits
    assert eng.mapper.pending == 0 and eng.map.n_fused == fused + 1
    eng.close()


def test_asynchronous_fusion_is_deterministic_and_close_to_synchronous(flight, monkeypatch):
    # Which frames see a keyframe depends on the data, not on timing: an engine whose
    # mapping thread is slow gives the same poses and map, to the bit.
    runs = []
    for delay in (0.0, 0.05):
        prepare = integrate.prepare

        def slow(*args, _prepare=prepare, _delay=delay, **kwargs):
            time.sleep(_delay)
            return _prepare(*args, **kwargs)

        monkeypatch.setattr(integrate, 'prepare', slow)
        eng = _engine(flight, True, lag=3)
        poses = [_run(eng, flight, k + 1, k).T_world_body for k in range(flight.n_frames)]
        eng.flush()
        runs.append((np.array(poses), eng.map.state_dict(), eng.map.n_fused))
        eng.close()
        monkeypatch.setattr(integrate, 'prepare', prepare)
    (pa, ma, na), (pb, mb, nb) = runs
    assert na == nb > 3 and np.array_equal(pa, pb)
    assert all(torch.equal(ma[k], mb[k]) for k in ma)
    sync = _engine(flight, False)
    ps = np.array([_run(sync, flight, k + 1, k).T_world_body for k in range(flight.n_frames)])
    truth = flight.gt_frames.T_world_body[:, :3, 3]
    err_async = np.linalg.norm(pa[:, :3, 3] - truth, axis=1).max()
    err_sync = np.linalg.norm(ps[:, :3, 3] - truth, axis=1).max()
    assert not np.array_equal(pa, ps) and err_async < err_sync + 0.01, (err_async, err_sync)


def test_without_imu_asynchronous_mapping_fuses_each_keyframe_at_once(flight):
    """From a constant-velocity prior tracking misses a keyframe held back from the map
    (TUM teddy 1.89 -> 3.05 cm with the map 6 frames behind): without IMU every keyframe
    goes in before the next frame; with it, keyframes are prepared beside tracking."""
    for imu in (False, True):
        eng = _engine(flight, True, lag=3)
        pending = []
        for item in flight.items():
            if hasattr(item, 'rgb'):
                eng.step(item)
                pending.append(eng.mapper.pending)
            elif imu and hasattr(item, 'acc'):
                eng.add_imu(item)
        assert len(eng.keyframes) > 2
        assert any(pending) == imu, pending
        eng.close()


def test_an_asynchronous_update_that_fails_raises_in_the_tracking_thread(
        flight, monkeypatch):
    # The preparation fails on the mapping thread: the step that commits it raises.
    eng = _engine(flight, True, lag=2)
    _run(eng, flight, 2)
    eng.flush()

    def broken(*args, **kwargs):
        raise RuntimeError('disk on fire')

    monkeypatch.setattr(integrate, 'prepare', broken)
    k = _until_keyframe(eng, flight, 2)
    _run(eng, flight, k + 1, k)
    with pytest.raises(RuntimeError, match='disk on fire'):
        _run(eng, flight, k + 2, k + 1)
    assert eng.mapper.pending == 0
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


def test_real_time_mapper_commits_when_ready_and_waits_only_at_the_end_of_the_lag():
    # Not waiting (the node live): the worker commits a keyframe as soon as it is prepared,
    # once the tracking thread lets go of the map, and the next step collects it; an
    # unfinished one is waited for only once the lag is over; it is busy while one is
    # pending; a deterministic mapper commits on the caller's thread after the lag whatever
    # the worker did.
    release = threading.Event()
    done, waited, threads = [], [], []

    def commit(job):
        done.append(job)
        threads.append(threading.current_thread().name)

    m = KeyframeMapper(asynchronous=True, lag=3, wait=False, on_wait=waited.append)
    assert not m.busy
    with m.lock.read():   # a frame being tracked: the commit waits for it
        m.fuse(lambda: 'a', commit)
        assert m.busy
        time.sleep(0.05)
        assert done == [] and not m._job[0].done()
    deadline = time.monotonic() + WAIT_S
    while not m._job[0].done() and time.monotonic() < deadline:
        time.sleep(0.001)
    assert done == ['a'] and m.busy   # committed by the worker, not collected yet
    m.step()
    assert not m.busy and threads[0].startswith('vssm-mapping')
    m.fuse(lambda: release.wait(WAIT_S) and 'b', commit)
    m.step()
    m.step()
    assert done == ['a'] and m.busy   # still preparing: tracking goes on without it
    _in_thread(lambda: (time.sleep(0.05), release.set()))
    m.step()                           # the lag's end: waits for the preparation
    assert done == ['a', 'b'] and not m.busy
    assert len(waited) == 2 and waited[0] < 0.04 <= waited[1]   # and reports the wait
    m.close()
    det = KeyframeMapper(asynchronous=True, lag=3)
    det.fuse(lambda: 'c', commit)
    det.step()
    det.step()
    assert done == ['a', 'b'] and not det.busy and det.pending == 1
    det.step()
    assert done[-1] == 'c' and det.pending == 0
    assert threads[1].startswith('vssm-mapping') and threads[2] == threading.current_thread().name
    det.close()


def test_real_time_engine_puts_off_a_keyframe_while_one_is_prepared(flight, monkeypatch):
    # While a keyframe is prepared, the next waits for twice the keyframe distance; then it
    # commits the pending one first (waiting for its preparation), so the map never falls far
    # behind when the mapping thread is starved.
    release = threading.Event()
    prepare = integrate.prepare

    def held_prepare(*args, **kwargs):
        assert release.wait(WAIT_S)
        return prepare(*args, **kwargs)

    cfg = dataclasses.replace(CFG, inference=dataclasses.replace(
        CFG.inference, async_mapping=True, mapping_lag_frames=50, mapping_wait=False))
    eng = SlamEngine(cfg, T_world_body0=flight.gt_frames.T_world_body[0])
    _run(eng, flight, 3)
    eng.flush()
    monkeypatch.setattr(integrate, 'prepare', held_prepare)
    k = _until_keyframe(eng, flight, 3)
    n_kf, fused = len(eng.keyframes), eng.map.n_fused
    kf_at = eng.keyframes[-1]['T_world_body'][:3, 3].numpy()
    step = cfg.inference.keyframe_translation
    moved = []
    while len(eng.keyframes) == n_kf:
        if not moved or moved[-1] < 1.5 * step:
            est = _run(eng, flight, k + 1, k)
        else:   # the frame that will have to wait: release the preparation meanwhile
            _in_thread(lambda: (time.sleep(0.2), release.set()))
            est = _run(eng, flight, k + 1, k)
        k += 1
        moved.append(float(np.linalg.norm(est.T_world_body[:3, 3] - kf_at)))
    assert any(step < m <= 2 * step for m in moved[:-1])   # put off past one distance
    assert moved[-1] > 2 * step and est.status == 'OK'     # taken past two
    assert eng.map.n_fused == fused + 1 and eng.mapper.busy   # the held one went in first
    eng.close()


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


def test_tracking_thread_leaves_a_core_for_the_mapping_thread(monkeypatch):
    from vssm_ros.core import mapping
    before = torch.get_num_threads()
    try:
        monkeypatch.setattr(mapping.os, 'cpu_count', lambda: 4)
        torch.set_num_threads(4)
        mapping.leave_a_core()
        assert torch.get_num_threads() == 3
        torch.set_num_threads(2)   # already fewer than the cores: kept
        mapping.leave_a_core()
        assert torch.get_num_threads() == 2
        monkeypatch.setattr(mapping.os, 'cpu_count', lambda: 1)
        torch.set_num_threads(1)
        mapping.leave_a_core()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_colour_written_only_where_it_changes_is_the_same_map(flight, monkeypatch):
    # A keyframe writes a voxel's colour only where it changes (a third of its voxels on the
    # demo flight): over keyframes that allocate new blocks and fill their aprons, the map
    # is the one written with every copy's colour, to the bit.
    a = _engine(flight, False)
    _run(a, flight, 30)
    f = flight.frame(30)
    K, depth = torch.as_tensor(f.K), torch.as_tensor(f.depth.astype(np.float32))
    rgb = torch.as_tensor(f.rgb.astype(np.float32) / 255)
    T = torch.as_tensor(flight.gt_frames.T_world_body[30] @ f.T_body_cam, dtype=torch.float32)
    job = integrate.prepare(a.map, depth, rgb, K, T, None, 20000, None)
    assert 0 < job.color_copies.numel() < job.rows.numel()

    def every_copy(values, rows, changed):
        return {name: v.index_select(1, rows) for name, v in values.items()}, None

    monkeypatch.setattr(integrate, '_per_copy', every_copy)
    b = _engine(flight, False)
    _run(b, flight, 30)
    assert len(a.keyframes) == len(b.keyframes) >= 3
    sa, sb = a.map.state_dict(), b.map.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
