# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""vssm-replay on a flight with realistic faults (issue 17, tools/faulty_flight.py): every
good frame processed, each fault counted by its reason with examples, the ATE close to the
clean flight's; a flight with no usable intrinsics stops with an error that names why."""

import contextlib
import importlib.util
import io
import json
import sys
from pathlib import Path

import pytest

from vssm_ros.cli import replay
from vssm_ros.cli.paths import config_path
from vssm_ros.config import SyntheticConfig
from vssm_ros.data.synthetic import generate_flight, realsense_layout, write_flight

ROOT = Path(__file__).resolve().parents[2]
# 3 s at 10 Hz, 64x48: 31 frames, one faulty frame of each frame class (2 % rounds up to 1).
SHORT = SyntheticConfig(duration_s=3.0, hover_s=0.2, ramp_s=0.5, width=64, height=48,
                        camera_rate_hz=10.0)
FAST = 'engine: {inference: {rays: 256, track_iters: 3}}\n'


def _tool():
    spec = importlib.util.spec_from_file_location('faulty_flight',
                                                  ROOT / 'tools' / 'faulty_flight.py')
    mod = importlib.util.module_from_spec(spec)
    sys.modules['faulty_flight'] = mod   # its dataclass needs its module registered
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope='module')
def tool():
    return _tool()


@pytest.fixture(scope='module')
def configs(tmp_path_factory):
    fast = tmp_path_factory.mktemp('cfg') / 'fast.yaml'
    fast.write_text(FAST, encoding='utf-8')
    return [config_path('demo.yaml'), fast]


@pytest.fixture(scope='module')
def result(tool, configs, tmp_path_factory):
    return tool.run_faulty_flight(SHORT, tmp_path_factory.mktemp('faulty'), configs)


def test_the_faulty_replay_completes_and_processes_every_good_frame(result):
    assert (result['rc_clean'], result['rc_faulty']) == (0, 0)
    f = result['frames']
    assert f['total'] == 31 and f['good'] == 26
    assert f['good_processed'] == f['good']
    # Only the first copy of the duplicated frame is processed: no faulty frame besides it.
    assert f['faulty_processed'] == 1 and f['processed'] == 27


def test_the_truncated_copy_gives_every_message_written_before_the_cut(result):
    t = result['truncated']
    assert t['cut_fraction'] == 0.97 and t['recovered_is_the_prefix']
    assert 0.9 * t['messages_intact'] < t['messages_before_cut'] < t['messages_intact']
    assert t['messages_recovered'] == t['messages_before_cut']
    assert t['rc'] == 0 and 0 < t['frames_processed'] <= result['frames']['processed']


def test_each_fault_class_is_counted_exactly_by_its_reason(tool, result):
    injected = {c: v['injected'] for c, v in result['faults'].items()}
    assert injected == {'rgb_encoding': 1, 'depth_short': 1, 'camera_info_zero_k': 1,
                        'frame_past': 1, 'frame_duplicate': 1, 'imu_nan': 12, 'imu_gap': 1}
    expected = {r: injected[c] for c, reasons in tool.COUNTED_AS.items() for r in reasons}
    # Nothing else was counted: no spurious reason, no unpaired message.
    assert result['bad_input'] == expected
    assert tool.passed(dict(result, ate_ratio=1.0))


def test_metrics_hold_the_first_examples_of_each_reason(result):
    ex = result['bad_input_examples']
    assert set(ex) == set(result['bad_input'])
    assert all(1 <= len(v) <= 3 for v in ex.values())
    assert len(ex['imu_non_finite']) == 3
    assert "/camera/color/image_raw: unsupported image encoding 'yuv422'" in \
        ex['rgb_encoding'][0]
    assert 'data has 3072 bytes, expected step x height = 128 x 48' in ex['depth_data_size'][0]
    assert 'camera_info K is all zero' in ex['camera_info_k'][0]
    assert 'no IMU sample for 0.40' in ex['imu_gap'][0]


def test_the_faults_cost_little_accuracy(result):
    clean, faulty = result['ate_clean'], result['ate_faulty']
    assert clean < 0.01
    # On this 3 s flight the 0.4 s IMU gap is 13 % of the flight (the engine coasts through
    # it on the last sample), so the bar is absolute here: the run is not derailed. On the
    # 15 s flight of tools/faulty_flight.py the ratio is 1.05 (docs/faults.md).
    assert faulty < 0.03


def test_no_intrinsics_ever_stops_with_an_error_naming_it(tool, configs, tmp_path):
    flight = generate_flight(SyntheticConfig(duration_s=1.0, hover_s=0.2, ramp_s=0.5, width=32,
                                             height=24, camera_rate_hz=5.0))
    clean = write_flight(flight, tmp_path / 'clean', ('mcap',))['mcap']
    stamps = [int(s) for s in flight.frame_stamps_ns]
    plan = tool.FaultPlan({c: stamps if c == 'camera_info_zero_k' else []
                           for c in tool.FRAME_FAULTS}, [], (0, 0))
    bad = tmp_path / 'bad' / 'rosbag2_mcap'
    tool.write_faulty_bag(clean, bad, plan, realsense_layout(flight))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = replay.main([str(bad), '--out', str(tmp_path / 'out'), '--quiet', '--no-plots']
                         + [a for c in configs for a in ('--config', str(c))])
    assert rc == 2
    last = err.getvalue().strip().splitlines()[-1]
    assert last.startswith('vssm-replay: error: no RGB-D frame could be read from')
    assert f'bad input: camera_info_k x{len(stamps)} (e.g. frame ' in last
    assert 'camera_info K is all zero: the camera is not calibrated' in last
    assert not (tmp_path / 'out' / 'metrics.json').exists()


def test_the_tool_prints_its_table(tool, result):
    text = tool.table(result)
    assert 'frame_past' in text and 'rgb_time_backwards: 1' in text
    assert 'exit status: clean 0, faulty 0' in text
    json.dumps(result)   # the tool writes it as JSON
