# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""SlamSession (vssm_ros/session.py), the one run both drivers feed: initial pose, IMU intake,
bad input, outputs, and localisation mode (track against a saved map without changing it)."""

import dataclasses

import numpy as np
import pytest

from vssm_ros.config import (EngineConfig, InferenceConfig, NodeConfig, OutputsConfig,
                             SyntheticConfig, TopicsConfig, VssmConfig)
from vssm_ros.core.engine import SlamEngine
from vssm_ros.data import outputs
from vssm_ros.data.bags import bag_msg_types
from vssm_ros.data.synthetic import generate_flight
from vssm_ros.errors import StateError
from vssm_ros.session import SlamSession, planar_pose
from vssm_ros.types import Frame, ImuSample, PoseSample
from vssm_ros.warm_up import WARM_UP_FRAMES

TYPES = bag_msg_types('mcap')


def make_cfg(mode='slam'):
    engine = EngineConfig(init_pose='ground_truth',
                          inference=InferenceConfig(rays=256, track_iters=3))
    return VssmConfig(topics=TopicsConfig(ground_truth='/gt'), engine=engine,
                      node=NodeConfig(mode=mode),
                      outputs=OutputsConfig(map_cloud_period_s=-1, predicted_period_s=-1,
                                            predicted_path_period_s=-1,
                                            cost_slice_period_s=-1))


@pytest.fixture(scope='module')
def flight():
    return generate_flight(SyntheticConfig(duration_s=3.0, hover_s=0.2, ramp_s=0.5, width=64,
                                           height=48, camera_rate_hz=10.0))


def _truth(flight):
    """The ground-truth poses known up front, as a replay has them."""
    gt = flight.gt_frames
    return [PoseSample(int(s), T) for s, T in zip(gt.stamps_ns, gt.T_world_body)]


def _run(session, items, frames=None):
    """Feed stream items; the estimates of the frames (index -> Estimate)."""
    out = {}
    for item in items:
        step = session.feed(item)
        if step is not None and step.estimate is not None:
            out[int(step.frame.stamp_ns)] = step.estimate
    return out


def _items(flight, lo, hi):
    """The flight's items with stamps from frame lo to frame hi."""
    a, b = flight.frame_stamps_ns[lo], flight.frame_stamps_ns[hi]
    return [x for x in flight.items() if a <= x.stamp_ns <= b]


def test_bad_input_is_counted_and_the_run_goes_on(flight):
    logs = []
    session = SlamSession(make_cfg(), TYPES, log=lambda lvl, t: logs.append((lvl, t)))
    items = _items(flight, 0, 3)
    imu = [x for x in items if isinstance(x, ImuSample)]
    bad = [ImuSample(imu[5].stamp_ns + 1, np.array([np.nan, 0, 0]), np.zeros(3)),
           ImuSample(imu[0].stamp_ns, np.zeros(3), np.zeros(3))]
    ests = _run(session, items[:40] + bad + items[40:])
    assert len(ests) == 4
    assert session.bad_counts() == {'imu_non_finite': 1, 'imu_time_backwards': 1}
    assert any('non-finite IMU' in t for _, t in logs)
    # A frame the engine refuses (its stamp repeats) is counted, not raised.
    frame = next(x for x in items if isinstance(x, Frame))
    step = session.feed(frame)
    assert step.estimate is None and step.messages == []
    assert session.counts['frames_failed'] == 1 and session.errors == {'StateError': 1}
    stats = session.stats()
    assert stats['frames_processed'] == 4 and stats['bad.imu_time_backwards'] == 1


def test_initial_pose_from_ground_truth_and_messages(flight):
    session = SlamSession(make_cfg(), TYPES, camera_frame='cam', ground_truth=_truth(flight))
    first = None
    for item in _items(flight, 0, 1):
        step = session.feed(item)
        if step is not None:
            first = first or step
    np.testing.assert_allclose(first.estimate.T_world_body, flight.gt_frames.T_world_body[0],
                               atol=1e-9)
    assert session.init_from_ground_truth
    names = [n for n, _ in first.messages]
    assert names == [outputs.TF, outputs.ODOMETRY, outputs.PATH, outputs.STATUS]
    status = first.messages[-1][1]
    assert status.message == 'tracking'


def test_localization_tracks_a_saved_map_without_changing_it(tmp_path):
    # Map the room with one flight; localise another one in it: faster, the camera tilted the
    # other way (the same room: the scene comes from the seed).
    small = dict(hover_s=0.2, ramp_s=0.5, width=64, height=48, camera_rate_hz=10.0)
    mapped = generate_flight(SyntheticConfig(duration_s=5.0, **small))
    other = generate_flight(SyntheticConfig(duration_s=2.5, peak_speed=1.4, camera_tilt_deg=-5.0,
                                            **small))
    mapper = SlamSession(make_cfg(), ground_truth=_truth(mapped))
    _run(mapper, mapped.items())
    mapper.flush()
    path = tmp_path / 'map.safetensors'
    mapper.save_map(str(path))

    loc = SlamSession(make_cfg('localization'))
    with pytest.raises(StateError, match='no map loaded'):
        loc.set_pose(np.eye(4))
    # Without a map, frames are refused (counted), nothing is built.
    assert loc.feed(other.frame(0)).estimate is None and loc.engine is None
    assert loc.errors == {'NoMap': 1}
    assert 'loaded the map' in loc.load_map(str(path))
    before = loc.engine.map_points()
    stats = getattr(loc.engine, 'map_stats', None)
    stats_before = stats() if stats else None
    # Started from its ground-truth pose, as an operator sets it with ~/set_pose.
    loc.set_pose(other.gt_frames.T_world_body[0])
    ests = _run(loc, other.items())
    assert len(ests) == other.n_frames
    stamps = np.array(sorted(ests))
    T = np.stack([ests[s].T_world_body for s in stamps])
    idx = np.searchsorted(other.gt_frames.stamps_ns, stamps)
    err = np.linalg.norm(T[:, :3, 3] - other.gt_frames.T_world_body[idx, :3, 3], axis=1)
    rmse = float(np.sqrt(np.mean(err ** 2)))
    print(f'localisation: position error rmse {100 * rmse:.2f} cm, max {100 * err.max():.2f} '
          f'cm over {len(err)} frames')
    assert rmse < 0.05 and err.max() < 0.08
    # No fusion: the map is the saved one, and saving again writes the same map.
    after = loc.engine.map_points()
    for key in before:
        np.testing.assert_array_equal(before[key], after[key])
    if stats:
        assert stats() == stats_before
    # Saving again writes the identical file: the same map, with the loaded pose and config.
    again = tmp_path / 'again.safetensors'
    loc.save_map(str(again))
    assert again.read_bytes() == path.read_bytes()
    # A map that did change shows in the file.
    own = loc.engine.state_dict

    def changed(**kwargs):   # the map as whole tensors, whatever save_map asks for
        sd = own()
        key = next(k for k in sd['tensors'] if k.startswith('map.'))
        sd['tensors'][key] = sd['tensors'][key] + 1
        return sd

    loc.engine.state_dict = changed
    loc.save_map(str(again))
    assert again.read_bytes() != path.read_bytes()


def test_a_2d_pose_keeps_height_and_tilt_of_the_estimate():
    yaw_c, roll, pitch = 0.3, 0.05, -0.08
    Rx = np.array([[1, 0, 0], [0, np.cos(roll), -np.sin(roll)], [0, np.sin(roll), np.cos(roll)]])
    Ry = np.array([[np.cos(pitch), 0, np.sin(pitch)], [0, 1, 0],
                   [-np.sin(pitch), 0, np.cos(pitch)]])

    def Rz(a):
        return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])

    current = np.eye(4)
    current[:3, :3] = Rz(yaw_c) @ Ry @ Rx
    current[:3, 3] = [1.0, 2.0, 1.5]
    given = np.eye(4)
    given[:3, :3] = Rz(1.2)
    given[:3, 3] = [4.0, -1.0, 0.0]   # RViz's 2D estimate: on the ground plane
    T = planar_pose(given, current)
    np.testing.assert_allclose(T[:3, 3], [4.0, -1.0, 1.5])
    np.testing.assert_allclose(T[:3, :3], Rz(1.2) @ Ry @ Rx, atol=1e-12)
    np.testing.assert_allclose(planar_pose(given, None), given)


def _tf(msgs):
    """{(parent, child): T} of the /tf messages of one step."""
    from vssm_ros.data.transforms import xyzquat_to_matrix
    out = {}
    for topic, msg in msgs:
        if topic != outputs.TF:
            continue
        for t in msg.transforms:
            tr, q = t.transform.translation, t.transform.rotation
            out[(t.header.frame_id, t.child_frame_id)] = xyzquat_to_matrix(
                [tr.x, tr.y, tr.z, q.x, q.y, q.z, q.w])
    return out


def test_a_relocalisation_jump_goes_into_map_to_odom(flight):
    """REP-105: when the engine relocalises (``Estimate.T_jump``), map -> odom takes the jump
    and odom -> base_link stays continuous; the status reaches diagnostics and the counts."""
    s = SlamSession(make_cfg(), TYPES, ground_truth=_truth(flight))
    items = _items(flight, 0, 3)
    steps = [s.feed(x) for x in items]
    steps = [st for st in steps if st is not None]
    T_odom_body_before = _tf(steps[-1].messages)[('odom', 'base_link')]
    jump = np.eye(4)
    jump[:3, 3] = (0.4, -0.2, 0.0)
    real_step = s.engine.step

    def relocalising_step(frame, track_budget_s=None):
        est = real_step(frame)
        est.T_world_body = jump @ est.T_world_body
        est.T_jump, est.status, est.status_reason = jump, 'DEGRADED', 'relocalised'
        return est

    s.engine.step = relocalising_step
    step = [st for st in map(s.feed, _items(flight, 4, 4)) if st is not None][-1]
    tf = _tf(step.messages)
    np.testing.assert_allclose(tf[('map', 'odom')], jump, atol=1e-6)
    # odom -> base_link moved by the frame's own motion only, not by the jump.
    assert np.linalg.norm(tf[('odom', 'base_link')][:3, 3]
                          - T_odom_body_before[:3, 3]) < 0.1
    status = [m for t, m in step.messages if t == outputs.STATUS][0]
    assert status.level == 1 and 'degraded' in status.message
    values = {kv.key: kv.value for kv in status.values}
    assert values['tracking_status'] == 'DEGRADED'
    assert 'bias_acc.x' in values and 'health.inlier_fraction' in values
    stats = s.stats()
    assert stats['relocalisations'] == 1 and stats['status.DEGRADED'] == 1
    assert stats['status.OK'] == 4   # frames 0-3
    s.reset()
    assert np.array_equal(s.T_map_odom, np.eye(4))


@pytest.mark.parametrize('node_async', [True, False])
def test_real_time_maps_as_the_node_says_and_the_replay_keeps_the_engines_setting(node_async):
    # The node in real time follows node.async_mapping whatever the engine's setting says,
    # without the noisy camera's window (its keyframes would be prepared on the tracking
    # thread); the replay keeps engine.inference as configured (asynchronous by default).
    cfg = make_cfg()
    cfg = dataclasses.replace(cfg, node=dataclasses.replace(cfg.node,
                                                            async_mapping=node_async))
    engines = [SlamSession(cfg, realtime=True)._new_engine(), SlamSession(cfg)._new_engine()]
    live_inf, replay_inf = (e.cfg.inference for e in engines)
    for e in engines:
        e.close()
    assert live_inf.async_mapping is node_async and live_inf.noisy_window == 1
    assert live_inf.mapping_wait is False   # never waits for the mapping thread but at the lag
    assert replay_inf.async_mapping is True and replay_inf.mapping_wait is True
    assert replay_inf.noisy_window == InferenceConfig().noisy_window == 8


@pytest.mark.parametrize('realtime', [True, False])
def test_the_tracking_budget_is_the_nodes_in_real_time_only(flight, realtime, monkeypatch):
    assert NodeConfig().track_budget_s == 0.0   # off by default: no budget even live
    cfg = make_cfg()
    cfg = dataclasses.replace(cfg, node=dataclasses.replace(cfg.node, track_budget_s=0.05))
    seen = []
    real_step = SlamEngine.step

    def spy(self, frame, track_budget_s=None):
        seen.append(track_budget_s)
        return real_step(self, frame, track_budget_s)

    monkeypatch.setattr(SlamEngine, 'step', spy)
    with SlamSession(cfg, ground_truth=_truth(flight), realtime=realtime) as s:
        _run(s, _items(flight, 0, 4))
    assert seen and set(seen) == {0.05 if realtime else None}


def test_a_warm_up_maps_and_tracks_a_throwaway_engine_and_leaves_the_run_as_it_was(
        flight, monkeypatch):
    # The node's warm-up pays torch's first calls before the first frame: an engine of the
    # session's configuration maps and tracks the synthetic wall (OK, not lost) and is
    # closed; the session's own estimates are the same to the bit; a failure is logged.
    closed = []
    close = SlamEngine.close
    monkeypatch.setattr(SlamEngine, 'close', lambda self: (closed.append(self), close(self)))
    items = _items(flight, 0, 5)
    cold = _run(SlamSession(make_cfg(), TYPES, ground_truth=_truth(flight)), items)
    session = SlamSession(make_cfg(), TYPES, ground_truth=_truth(flight))
    assert session.warm_up() > 0 and session.engine is None
    (thrown,) = closed
    assert thrown.n_frames == WARM_UP_FRAMES and thrown.map.n_fused >= 1
    assert len(thrown.map.atlas) > 500   # a keyframe of a room's size
    assert thrown.health.status == 'OK'
    warm = _run(session, items)
    assert list(warm) == list(cold)
    for stamp, est in cold.items():
        np.testing.assert_array_equal(warm[stamp].T_world_body, est.T_world_body)
        np.testing.assert_array_equal(warm[stamp].cov, est.cov)
    logs = []
    broken = SlamSession(make_cfg(), TYPES, log=lambda lvl, t: logs.append((lvl, t)))
    monkeypatch.setattr(SlamEngine, 'step', lambda self, frame, budget=None: 1 / 0)
    assert broken.warm_up() >= 0 and broken.engine is None
    assert logs and logs[-1][0] == 'warn' and 'warm-up failed (ZeroDivisionError' in logs[-1][1]
    assert len(closed) == 2   # the broken warm-up's engine is closed too
