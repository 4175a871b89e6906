# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The ROS 2 node for real: vssm-node started as users start it (console script, params file),
driven over Fast DDS by a process with real rclpy (test/ros/drive_node.py) that plays a
synthetic flight with bad messages in it (test/ros/bad_flight.py) and records the outputs;
compared with vssm-replay on the same flight: in lockstep mode (node.lockstep) the estimates
are the replay's to 1e-6 m and the bad input is counted the same.

Needs the ROS 2 test environment (.venv-ros, see tools/make_ros_test_env.sh); skips without it.
The flight is played in lockstep (a frame is published once the previous one has its
odometry), so that every frame is processed however loaded the machine is: the test checks
the plumbing and the accuracy, not the speed (tools/node_latency.py measures that).
"""

import json
import subprocess
from pathlib import Path

import numpy as np
import torch
import pytest
import yaml

from bad_flight import BAD_FRAME, EXPECTED, corrupt
from vssm_ros.cli.replay import run_replay
from vssm_ros.config import SyntheticConfig, load_config
from vssm_ros.data.bags import bag_msg_types, stream_messages, write_bag
from vssm_ros.data.export import load_checkpoint
from vssm_ros.data.sources import open_source
from vssm_ros.data.synthetic import generate_flight, realsense_layout
from vssm_ros.data.trajectory import read_tum_trajectory
from vssm_ros.eval.metrics import trajectory_metrics

REPO = Path(__file__).resolve().parents[2]
DRIVER = REPO / 'test' / 'ros' / 'drive_node.py'
FLIGHT = {'synthetic': {'duration_s': 3.0}}
AGAIN = 6   # frames played again after ~/reset
# The node's parameters: the demo flight's topics and map frame, a lighter tracker (fewer
# rays and iterations: the comparison with the replay is at equal settings).
PARAMS = {
    'topics': {'rgb': '/camera/color/image_raw',
               'depth': '/camera/aligned_depth_to_color/image_raw',
               'camera_info': '/camera/color/camera_info', 'imu': '/camera/imu',
               'ground_truth': '/ground_truth/pose'},
    'engine': {'init_pose': 'ground_truth',
               'inference': {'rays': 512, 'track_iters': 4}},
    # No predicted motion: SlamEngine.predict draws its samples from the engine's generator,
    # which the tracker's pixel sampling uses too, so a node that predicts would step
    # differently from a replay that does not (rclpy_checks.py builds those messages).
    'outputs': {'path_period_s': 0.0, 'map_cloud_period_s': 1.0, 'predicted_period_s': 0.5,
                'predicted_path_period_s': -1.0, 'cost_slice_period_s': 1.0},
}
# Reliable subscriptions: a best-effort reader may lose the first samples of a writer it has
# not matched yet (discovery is not symmetric), and lockstep must not lose a frame.
NODE = {'lockstep': True, 'qos_reliability': 'reliable'}
TIMEOUT_S = 900   # generous: CI machines may be slow; a normal run takes well under 2 min


def _write_params(path: Path, map_path: Path) -> Path:
    params = dict(PARAMS, node=dict(NODE, map_path=str(map_path)))
    path.write_text(yaml.safe_dump({'/**': {'ros__parameters': params}}), encoding='utf-8')
    return path


@pytest.fixture(scope='module')
def node_run(ros_venv, ros_tools, tmp_path_factory):
    """Run the node and the driver once for the module's tests; the replay meanwhile."""
    tmp = tmp_path_factory.mktemp('node_e2e')
    flight_yaml = tmp / 'flight.yaml'
    flight_yaml.write_text(yaml.safe_dump(FLIGHT), encoding='utf-8')
    params = _write_params(tmp / 'params.yaml', tmp / 'map.safetensors')
    env = ros_tools.env(tmp / 'ros_log')
    procs = []
    try:
        node = ros_tools.Process(
            [ros_venv / 'bin' / 'vssm-node', '--ros-args', '--params-file', params], env,
            tmp / 'node.log')
        procs.append(node)
        driver = ros_tools.Process(
            [ros_venv / 'bin' / 'python', DRIVER, '--synthetic', flight_yaml, '--lockstep',
             '--corrupt', '--again', AGAIN, '--out', tmp / 'result.json'], env,
            tmp / 'driver.log')
        procs.append(driver)
        # The replay of the same flight with the same parameters, while the node runs.
        flight = generate_flight(SyntheticConfig(**FLIGHT['synthetic']))
        msgs = list(stream_messages(flight.items(), realsense_layout(flight),
                                    bag_msg_types('mcap')))
        corrupt(msgs)
        bag = tmp / 'flight'
        write_bag(bag, 'mcap', msgs)
        cfg = load_config([params])
        # The node steps with node.torch_threads (1) intra-op threads; float sums reduce in
        # another order with another count, and the estimates then part by ~1e-6 m.
        threads = torch.get_num_threads()
        torch.set_num_threads(cfg.node.torch_threads)
        try:
            replay = run_replay(open_source(bag, cfg), cfg, tmp / 'replay', progress=False,
                                plots=False)
        finally:
            torch.set_num_threads(threads)
        rc = driver.wait(TIMEOUT_S)
        logs = driver.tail() + '\n' + node.tail()
        assert rc == 0, f'driver exited with {rc}\n{logs}'
        node_rc = node.interrupt()
        assert node_rc == 0, f'vssm-node exited with {node_rc} after SIGINT\n{logs}'
        result = json.loads((tmp / 'result.json').read_text(encoding='utf-8'))
    except BaseException:
        for p in procs:   # shown by pytest with the failure
            print(p.tail())
        raise
    finally:
        for p in procs:
            p.stop()
    return {'result': result, 'replay': replay, 'flight': flight, 'tmp': tmp, 'logs': logs,
            'replay_trajectory': read_tum_trajectory(tmp / 'replay' / 'trajectory.tum')}


def _records(run, name, before_reset=True):
    """Records of one output, split at ~/reset by stamp."""
    recs = run['result']['records'][name]
    limit = run['result']['offset_again_ns'] + int(run['flight'].frame_stamps_ns[0])
    return [r for r in recs if (r['stamp_ns'] < limit) == before_reset]


def _frame_stamps(run):
    """The stamps of the frames played (the corrupted one excluded), as the node got them."""
    stamps = np.delete(run['flight'].frame_stamps_ns, BAD_FRAME)
    return stamps + run['result']['offset_ns']


def test_every_frame_processed_and_stamped_with_its_image(node_run):
    r = node_run['result']
    assert r['reached_last'] and r['reached_again'], node_run['logs']
    odom = _records(node_run, 'odometry')
    stamps = np.array([o['stamp_ns'] for o in odom], dtype=np.int64)
    # Lockstep: one odometry per frame, in order, each at its image's stamp (never now()).
    np.testing.assert_array_equal(stamps, _frame_stamps(node_run))
    assert all(o['frame_id'] == 'map' and o['child'] == 'base_link' for o in odom)
    cov = np.array([o['cov'] for o in odom]).reshape(-1, 6, 6)
    assert np.all(np.linalg.eigvalsh(cov[1:]) > 0), 'covariances must be positive definite'


def test_all_outputs_arrive(node_run):
    frames = set(_frame_stamps(node_run).tolist())
    path = _records(node_run, 'path')
    n_ok = node_run['flight'].n_frames - 1   # one frame was corrupted
    assert len(path) == n_ok and path[-1]['n_poses'] == n_ok
    assert all(p['frame_id'] == 'map' and p['last_stamp_ns'] == p['stamp_ns'] for p in path)
    clouds = _records(node_run, 'map_cloud')
    assert clouds and all(c['stamp_ns'] in frames for c in clouds)
    assert clouds[-1]['fields'] == ['occupancy', 'rgb', 'x', 'xyz', 'y', 'z']
    lo, hi = clouds[-1]['occupancy']
    assert clouds[-1]['n_points'] > 1000 and 0 < lo < hi <= 1 and hi > 0.9
    cfg = node_run['flight'].cfg
    for name, encoding in (('predicted/depth', '32FC1'), ('predicted/depth_std', '32FC1'),
                           ('predicted/color', 'rgb8')):
        imgs = _records(node_run, name)
        # Every 0.5 s of image stamps, put off while a newer frame waits (up to 4 periods).
        assert 2 <= len(imgs) <= 7, (name, len(imgs))
        assert all(i['stamp_ns'] in frames and i['frame_id'] == 'camera_color_optical_frame'
                   and (i['width'], i['height']) == (cfg.width, cfg.height)
                   and i['encoding'] == encoding for i in imgs)
    # The predictions hit the map over most of the view.
    hits = [i['finite'] for i in _records(node_run, 'predicted/depth')]
    assert min(hits) > 0.3 and np.median(hits) > 0.6, hits
    diag = node_run['result']['records']['/diagnostics'][-1]['status'][0]
    values = diag['values']
    assert diag['name'] == 'vssm_ros: slam' and diag['level'] in (0, 1), diag
    n = node_run['flight'].n_frames - 1 + AGAIN
    assert int(values['frames_processed']) == n and int(values['frames_dropped']) == 0
    # The failed frames: the corrupted one and the driver's bad input at the end.
    assert int(values['frames_received']) == n + 2 and int(values['frames_failed']) == 2
    assert int(values['imu_gaps']) == 0
    assert values['extrinsic.camera'].startswith('/tf_static: base_link <- camera_color_')
    # The worker's time per frame, median and mean (tools/node_latency.py prints both).
    assert 0 < float(values['frame_p50_ms']) and 0 < float(values['frame_mean_ms'])


def test_tf_chain_equals_odometry(node_run):
    tf = {}
    for msg in node_run['result']['records']['/tf']:
        for t in msg['transforms']:
            tf[(t['stamp_ns'], t['parent'], t['child'])] = np.array(t['T'])
    odom = _records(node_run, 'odometry')
    for o in odom:
        s = o['stamp_ns']
        T = tf[(s, 'map', 'odom')] @ tf[(s, 'odom', 'base_link')]
        np.testing.assert_allclose(T, np.array(o['T']), atol=1e-6)
    assert len(tf) == 2 * len(node_run['result']['records']['odometry'])


def test_lockstep_estimates_equal_the_replay(node_run):
    flight, replay = node_run['flight'], node_run['replay']
    odom = _records(node_run, 'odometry')
    stamps = np.array([o['stamp_ns'] for o in odom], dtype=np.int64) - \
        node_run['result']['offset_ns']
    T = np.array([o['T'] for o in odom])
    r_stamps_s, r_T = node_run['replay_trajectory']
    assert len(r_stamps_s) == len(stamps)
    np.testing.assert_allclose(stamps * 1e-9, r_stamps_s, rtol=0, atol=1e-6)
    err = np.linalg.norm(T[:, :3, 3] - r_T[:, :3, 3], axis=1)
    assert err.max() < 1e-6, f'node and replay differ by up to {err.max():.3g} m'
    rot = np.abs(T[:, :3, :3] - r_T[:, :3, :3]).max()
    assert rot < 1e-6, rot
    gt = flight.gt_frames
    m = trajectory_metrics(stamps, T, gt.stamps_ns, gt.T_world_body)
    node_ate, replay_ate = m['ate']['rmse'], replay['ate']['rmse']
    print(f'ATE node (lockstep) {100 * node_ate:.3f} cm, replay {100 * replay_ate:.3f} cm, '
          f'{len(odom)} / {replay["frames"]["processed"]} frames')
    assert replay['frames']['processed'] == len(odom)
    assert node_ate == pytest.approx(replay_ate, abs=1e-6)
    assert node_ate < 0.03


def test_bad_input_counted_as_the_replay_counts_it(node_run):
    replay_bad = node_run['replay']['frames']['bad_input']
    assert replay_bad == EXPECTED
    values = node_run['result']['diagnostics_after_flight']['status'][0]['values']
    node_bad = {k[4:]: int(v) for k, v in values.items() if k.startswith('bad.')}
    assert node_bad == replay_bad


def test_planner_outputs_arrive(node_run):
    frames = set(_frame_stamps(node_run).tolist())
    records = node_run['result']['records']
    statuses = records['status']
    assert len(statuses) >= node_run['flight'].n_frames - 1
    assert all(s['level'] == 0 and s['message'] == 'tracking' for s in statuses[:10])
    grids = _records(node_run, 'cost_slice')
    assert grids and all(g['stamp_ns'] in frames and g['known'] > 0.05 for g in grids)
    odom = _records(node_run, 'odometry')
    assert max(np.abs(o['angular']).max() for o in odom) > 1e-3, 'angular rate published'
    assert all(np.diag(np.reshape(o['twist_cov'], (6, 6))).min() > 0 for o in odom[1:])


def test_save_map_and_reset(node_run):
    r = node_run['result']
    ok, message = r['save_map']
    path = node_run['tmp'] / 'map.safetensors'
    assert ok and str(path) in message, message
    state, config = load_checkpoint(path)
    assert state['meta']['n_frames'] == node_run['flight'].n_frames - 1   # one corrupted
    assert config['engine']['inference']['rays'] == 512
    ok, message = r['reset']
    assert ok, message
    # After the reset the node starts a new map and path at the next frame, from the
    # ground-truth pose of that frame (engine.init_pose ground_truth).
    path_after = _records(node_run, 'path', before_reset=False)
    assert [p['n_poses'] for p in path_after] == list(range(1, AGAIN + 1))
    odom_after = _records(node_run, 'odometry', before_reset=False)
    assert len(odom_after) == AGAIN
    np.testing.assert_allclose(np.array(odom_after[0]['T']),
                               node_run['flight'].gt_frames.T_world_body[0], atol=1e-5)
    values = r['records']['/diagnostics'][-1]['status'][0]['values']
    assert values['resets'] == '1'


def test_bad_input_is_counted_and_survived(node_run):
    # The node logged a warning for each and went on (it stopped with exit code 0 on SIGINT).
    assert node_run['result']['bad_input_seen'], node_run['logs']
    values = node_run['result']['records']['/diagnostics'][-1]['status'][0]['values']
    # Frame and IMU sample of the corrupted flight, then the driver's frame and IMU sample.
    assert values['bad.rgb_encoding'] == '2' and values['bad.imu_time_backwards'] == '1'
    assert values['bad.imu_non_finite'] == '1'
    assert "unsupported image encoding 'yuv422'" in node_run['logs']


INVALID = [
    (['-p', 'engine.map.resolution:=-1.0'], 'map.resolution: must be > 0'),
    (['-p', 'engine.map.resolutoin:=0.05'], 'did you mean engine.map.resolution'),
    (['-p', 'node.qos_reliability:=sometimes'], "node.qos_reliability: must be 'best_effort'"),
]


def test_invalid_parameters_stop_the_node_with_one_line(ros_venv, ros_env):
    procs = [subprocess.Popen([str(ros_venv / 'bin' / 'vssm-node'), '--ros-args', *args],
                              env=ros_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for args, _ in INVALID]
    try:
        outs = [p.communicate(timeout=120)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, out, (_, expect) in zip(procs, outs, INVALID):
        assert p.returncode == 2, out
        assert expect in out and 'Traceback' not in out, out
        assert len([line for line in out.splitlines() if 'vssm' in line]) == 1, out
