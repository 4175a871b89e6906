# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""vssm-replay end to end on a tiny synthetic mcap bag, per-frame error handling, exit codes."""

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from vssm_ros.cli import replay
from vssm_ros.cli.paths import config_path
from vssm_ros.config import SyntheticConfig, load_config, to_dict
from vssm_ros.data.export import load_checkpoint, read_ply
from vssm_ros.data.sources import Source
from vssm_ros.data.synthetic import generate_flight, write_flight
from vssm_ros.data.trajectory import initial_pose, read_tum_trajectory
from vssm_ros.types import Frame, PoseSample

# 1.5 s at 10 Hz: 16 frames of 80x60, flying from the start (no hover).
TINY = SyntheticConfig(duration_s=1.5, width=80, height=60, camera_rate_hz=10.0, hover_s=0.0,
                       ramp_s=0.5)


def _ns_text(ns):
    return f'{ns // 10**9}.{ns % 10**9:09d}'


@pytest.fixture(scope='module')
def replayed(tmp_path_factory):
    """The tiny flight written as mcap and replayed once through the CLI's main()."""
    root = tmp_path_factory.mktemp('replay')
    flight = generate_flight(TINY)
    bag = write_flight(flight, root, ('mcap',))['mcap']
    out = root / 'out'
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = replay.main([str(bag), '--config', str(config_path('demo.yaml')), '--out', str(out),
                          '--init-pose', 'ground_truth'])
    return dict(rc=rc, out=out, flight=flight, stdout=stdout.getvalue(),
                stderr=stderr.getvalue(), bag=bag)


def test_replay_writes_all_outputs(replayed):
    assert replayed['rc'] == 0, replayed['stderr']
    for name in replay.OUTPUTS:
        path = replayed['out'] / name
        assert path.is_file() and path.stat().st_size > 0, name
    assert (replayed['out'] / 'trajectory.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_trajectory_has_one_line_per_frame_with_exact_image_stamps(replayed):
    flight = replayed['flight']
    lines = [ln for ln in (replayed['out'] / 'trajectory.tum').read_text().splitlines()
             if not ln.startswith('#')]
    assert len(lines) == flight.n_frames == 16
    assert [ln.split()[0] for ln in lines] == [_ns_text(int(s)) for s in flight.frame_stamps_ns]
    _, T = read_tum_trajectory(replayed['out'] / 'trajectory.tum')
    # init_pose ground_truth: the first pose is the true base_link pose of the first frame
    # (float32 engine), so the trajectory is in the ground truth's world frame.
    np.testing.assert_allclose(T[0], flight.gt_frames.T_world_body[0], atol=1e-5)
    err = np.linalg.norm(T[:, :3, 3] - flight.gt_frames.T_world_body[:, :3, 3], axis=1)
    assert err.max() < 0.10


def test_metrics_json(replayed):
    m = json.loads((replayed['out'] / 'metrics.json').read_text())
    assert m['frames']['received'] == 16 and m['frames']['processed'] == 16
    assert m['frames']['failed'] == 0
    assert m['init_pose'] == 'ground_truth' and m['init_from_ground_truth']
    assert m['imu_samples'] == 301   # 200 Hz over 1.5 s, both ends included
    assert m['association']['n_matched'] == 16
    assert m['ate']['n'] == 16
    assert 0 < m['ate']['rmse'] < 0.05
    assert m['rpe']['n'] == 15
    unc = m['uncertainty']
    assert unc['n'] == 16 and 0 <= unc['coverage'] <= 1 and unc['nees_mean'] > 0
    trk = m['tracking']
    assert sum(trk['status_frames'].values()) == 16 and trk['status_frames']['OK'] == 16
    assert trk['lost_spells'] == [] and trk['relocalisations'] == 0
    assert len(trk['bias']['acc']) == 3 and len(trk['bias']['gyro']) == 3
    # Every frame OK: the OK frames' figures are the whole run's.
    assert unc['ok_frames']['n'] == 16 and unc['ok_frames']['coverage'] == unc['coverage']
    assert m['ate']['ok_frames'] == {k: m['ate'][k] for k in ('rmse', 'max', 'n')}
    t = m['timing']
    lat = t['step_latency']
    assert lat['n'] == 16
    assert 0 < lat['p50_ms'] <= lat['p90_ms'] <= lat['p99_ms'] <= lat['max_ms']
    # End-to-end includes reading and converting the bag, so it is slower than step() alone.
    assert 0 < t['frames_per_s'] <= t['step_frames_per_s']
    assert t['wall_s'] >= 16 * lat['mean_ms'] * 1e-3
    assert m['memory']['peak_rss_mb'] > 50 and m['memory']['peak_gpu_mb'] is None
    assert m['input']['topics']['imu'] == '/camera/imu'
    assert len(m['depth_l1']) == 4
    assert all(d['n'] > 100 and d['median'] < 0.1 for d in m['depth_l1'])


def test_map_is_in_the_world_frame(replayed):
    ply = read_ply(replayed['out'] / 'map.ply')
    xyz = ply['xyz']
    assert len(xyz) > 500
    assert np.all((ply['occupancy'] >= 0) & (ply['occupancy'] <= 1))
    # Surfaces of the 8 x 6 x 3 m room and its obstacles: inside it, up to a voxel or two.
    assert np.all(xyz.min(axis=0) > -0.2) and np.all(xyz.max(axis=0) < [8.2, 6.2, 3.2])


def test_checkpoint_holds_the_state_and_config(replayed):
    sd, cfg = load_checkpoint(replayed['out'] / 'checkpoint.safetensors')
    assert sd['meta']['n_frames'] == 16
    assert sd['meta']['last_stamp_ns'] == int(replayed['flight'].frame_stamps_ns[-1])
    used = replay.load_replay_config([config_path('demo.yaml')], init_pose='ground_truth')
    assert cfg == json.loads(json.dumps(to_dict(used)))


def test_summary_is_printed(replayed):
    out = replayed['stdout']
    assert 'ATE rmse' in out and ' cm ' in out and 'frames/s' in out
    assert '16 processed / 16 received, 0 failed' in out
    assert 'Traceback' not in replayed['stderr']


def test_missing_input_exits_2_with_one_line(tmp_path, capsys):
    rc = replay.main([str(tmp_path / 'nope.bag'), '--out', str(tmp_path / 'out'), '--quiet'])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err == f'vssm-replay: error: input not found: {tmp_path / "nope.bag"}'
    assert not (tmp_path / 'out').exists()


def test_bad_config_exits_2(tmp_path, capsys):
    bad = tmp_path / 'bad.yaml'
    bad.write_text('engine: {map: {resolution: -1.0}}\n')
    rc = replay.main([str(tmp_path), '--config', str(bad), '--quiet'])
    assert rc == 2
    err = capsys.readouterr().err
    assert err == 'vssm-replay: error: map.resolution: must be > 0, got -1.0\n'


class _ListSource(Source):
    """An in-memory Source over a list of items (ground truth = its PoseSamples)."""

    kind = 'list'

    def __init__(self, items):
        super().__init__(Path('memory'))
        self.items = list(items)
        self.info.update(topics={}, counts={'frames': sum(isinstance(i, Frame)
                                                          for i in self.items)})

    @property
    def has_imu(self):
        return False

    @property
    def has_frames(self):
        return True

    def __iter__(self):
        return iter(self.items)

    def ground_truth(self):
        return [i for i in self.items if isinstance(i, PoseSample)]


def test_failed_frames_are_counted_and_skipped(tmp_path):
    flight = generate_flight(SyntheticConfig(duration_s=1.0, width=48, height=36,
                                             camera_rate_hz=5.0, hover_s=0.0, ramp_s=0.5))
    frames = [flight.frame(i) for i in range(flight.n_frames)]
    gt = flight.gt_frames
    truth = [PoseSample(int(s), T) for s, T in zip(gt.stamps_ns, gt.T_world_body)]
    # Frame 3 arrives twice: the repeat goes back in time and the engine refuses it.
    stream = frames[:4] + [frames[3]] + frames[4:]
    notes = []
    m = replay.run_replay(_ListSource(stream + truth), load_config([config_path('demo.yaml')]),
                          tmp_path, progress=False, plots=False, init_pose='identity',
                          log=notes.append)
    fr = m['frames']
    assert (fr['received'], fr['processed'], fr['failed']) == (7, 6, 1)
    assert fr['errors'] == {'StateError': 1}
    # (This 48x36 flight at 5 Hz without IMU also goes DEGRADED for a frame or two: notes.)
    skips = [n for n in notes if 'skipped' in n]
    assert len(skips) == 1 and 'skipped: StateError' in skips[0]
    assert str(frames[3].stamp_ns) in m['frames']['first_errors'][0]
    # init_pose identity: the map frame is the first body frame.
    assert m['init_pose'] == 'identity' and not m['init_from_ground_truth']
    _, T = read_tum_trajectory(tmp_path / 'trajectory.tum')
    assert len(T) == 6 and np.allclose(T[0], np.eye(4))
    assert not (tmp_path / 'trajectory.png').exists()


def test_max_frames_stops_early(tmp_path):
    flight = generate_flight(SyntheticConfig(duration_s=1.0, width=32, height=24,
                                             camera_rate_hz=5.0, hover_s=0.0, ramp_s=0.5))
    m = replay.run_replay(_ListSource(flight.items()), load_config([config_path('demo.yaml')]),
                          tmp_path, max_frames=2, progress=False, plots=False)
    assert m['frames']['received'] == 2 and m['frames']['processed'] == 2
    # Only two poses: no ATE (it needs 3), and the reason is recorded.
    assert m['ate'] is None and 'need at least 3' in m['association']['error']


def test_replay_gives_back_the_map_swap_directory(tmp_path, monkeypatch):
    """Evicted map regions go to a temporary directory (map.swap_dir ''): the replay removes it
    when it is done, also in a process where atexit never runs (a multiprocessing worker)."""
    import tempfile

    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path / 'tmp'))
    (tmp_path / 'tmp').mkdir()
    made, real = [], tempfile.mkdtemp

    def mkdtemp(*args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(tempfile, 'mkdtemp', mkdtemp)
    flight = generate_flight(SyntheticConfig(duration_s=1.0, width=32, height=24,
                                             camera_rate_hz=5.0, hover_s=0.0, ramp_s=0.5))
    m = replay.run_replay(_ListSource(flight.items()), load_config([config_path('demo.yaml')]),
                          tmp_path / 'out', progress=False, plots=False)
    assert m['frames']['processed'] == flight.n_frames
    assert [Path(d).name.startswith('vssm_map_swap_') for d in made] == [True]
    assert not list((tmp_path / 'tmp').iterdir()), 'the swap directory is removed'


def test_initial_pose_picks_the_nearest_ground_truth():
    gt = [PoseSample(100 + 10**8 * i, np.diag([1.0, 1.0, 1.0, 1.0]) * (i + 1)) for i in range(3)]
    assert initial_pose(gt, 10**8 + 40)[0, 0] == 2.0
    assert initial_pose(gt, 2 * 10**8 + 10**7)[0, 0] == 3.0
    assert initial_pose(gt, 4 * 10**8) is None     # 0.2 s away: beyond the tolerance
    assert initial_pose([], 0) is None


def test_spread_keeper_keeps_a_bounded_even_spread():
    k = replay._SpreadKeeper(capacity=8)
    for i in range(1000):
        k.offer(i, lambda i=i: i)
    assert len(k.items) <= 8
    picked = k.pick(4)
    assert len(picked) == 4 and picked[0] == 0 and picked[-1] >= 800
    assert np.all(np.diff(picked) > 100)


def test_large_frames_are_subsampled_for_the_strip_with_the_same_rays():
    calls = []

    class StubEngine:
        def render(self, T_world_cam, K, width, height):
            calls.append((T_world_cam, K, width, height))
            return {'depth': np.zeros((height, width), np.float32)}

    K = np.array([[500.0, 0, 319.5], [0, 510.0, 239.5], [0, 0, 1]])
    rng = np.random.default_rng(0)
    frame = Frame(7, rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
                  rng.uniform(1, 3, (480, 640)).astype(np.float32), K)
    est = replay.Estimate(7, np.eye(4), np.eye(6), np.zeros(3))
    small, _, _ = replay._render_kept(StubEngine(), frame, est)
    (_, K2, w, h), = calls
    assert (w, h) == (320, 240) and small.depth.shape == (240, 320)
    assert small.depth[5, 7] == frame.depth[10, 14]
    assert np.all(small.rgb[5, 7] == frame.rgb[10, 14])
    # The ray through subsampled pixel (7, 5) is the ray through original pixel (14, 10).
    ray_small = np.linalg.solve(K2, [7.0, 5.0, 1.0])
    ray_full = np.linalg.solve(K, [14.0, 10.0, 1.0])
    np.testing.assert_allclose(ray_small, ray_full, rtol=1e-12)
