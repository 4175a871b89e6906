# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The node's map services and autosave (issue 17), through ``LiveSlam`` (the node's logic
without rclpy) and, with real rclpy, through the node's ~/load_map service itself
(test/ros/rclpy_map_checks.py, run with the ROS venv):

- ~/load_map of a bad file answers with the file and the reason, and the node goes on with
  its map;
- ~/save_map, ~/load_map and ~/reset called from another thread while frames are processed
  do not race with the worker: nothing fails, every saved file loads, tracking goes on from a
  loaded map;
- the autosave (node.autosave_period_s) writes a loadable node.map_path while frames come, and
  a failing one is logged and counted, not fatal.
"""

import random
import threading
import time

import numpy as np

from vssm_ros.data import messages as M
from vssm_ros.data import outputs
from vssm_ros.data.export import load_checkpoint
from vssm_ros.ros.autosave import Autosave, autosave_path

from live_harness import feed, make_cfg, make_live

WAIT_S = 120.0   # only a hung worker waits this long: the test then fails


def frames(messages, flight, a, b):
    """The messages from frame a to frame b (with /tf_static when a is 0)."""
    lo, hi = int(flight.frame_stamps_ns[a]), int(flight.frame_stamps_ns[b])
    return [m for m in messages if (m[2] <= hi and (lo <= m[2] or a == 0))]


def _values(live):
    status = live.diagnostics(0).status[0]
    return status, {kv.key: kv.value for kv in status.values}


def _bad_files(tmp, good):
    data = good.read_bytes()
    n = 8 + int.from_bytes(data[:8], 'little')
    flipped = bytearray(data)
    flipped[n + (len(data) - n) // 3] ^= 0x40
    files = {'truncated': data[:len(data) // 2], 'empty': b'', 'flipped': bytes(flipped),
             'not_a_map': b'ply\nformat ascii 1.0\nend_header\n'}
    for name, content in files.items():
        (tmp / f'{name}.safetensors').write_bytes(content)
    (tmp / 'folder.safetensors').mkdir()
    return {**{n: tmp / f'{n}.safetensors' for n in files},
            'directory': tmp / 'folder.safetensors', 'missing': tmp / 'missing.safetensors'}


# ------------------------------------------------------------------------ ~/load_map


def test_load_map_of_a_bad_file_answers_why_and_keeps_the_map(flight, messages, tmp_path):
    live, sink = make_live(make_cfg())
    feed(live, frames(messages, flight, 0, 3))
    assert live.save_map(str(tmp_path / 'good.safetensors'))[0]
    engine, points = live.engine, live.engine.map_points()
    expected = {'truncated': 'corrupt or truncated', 'empty': 'the file is empty',
                'flipped': 'does not match its sha256', 'not_a_map': 'not a vssm_ros',
                'directory': 'it is a directory', 'missing': 'checkpoint not found'}
    bad = _bad_files(tmp_path, tmp_path / 'good.safetensors')
    assert set(bad) == set(expected)
    for name, path in bad.items():
        ok, text = live.load_map(str(path))
        assert not ok and str(path) in text and expected[name] in text, (name, text)
        assert live.engine is engine and engine.n_frames == 4, name
    after = live.engine.map_points()
    for key in points:
        np.testing.assert_array_equal(points[key], after[key])
    # The node goes on: the next frame is tracked on the same map.
    feed(live, frames(messages, flight, 4, 4))
    assert live.engine is engine and engine.n_frames == 5
    assert M.header_stamp_ns(sink.of(outputs.ODOMETRY)[-1]) == flight.frame_stamps_ns[4]
    assert not [t for lvl, t in sink.logs if lvl == 'error']


# ------------------------------------------------------------------------ no races


def test_services_from_another_thread_while_frames_are_processed(flight, messages, tmp_path):
    last = flight.n_frames - 1
    live, sink = make_live(make_cfg(autosave_period_s=0.05,
                                    map_path=str(tmp_path / 'auto.safetensors')))
    live.start()
    done = threading.Event()
    results = []

    def feeder():
        try:
            for k in range(last):   # the last frame is kept for after
                feed(live, frames(messages, flight, k, k), process=False)
                live.intake.wait(lambda: not live.intake.frames, time.monotonic() + WAIT_S)
        finally:
            done.set()

    def services():
        rng = random.Random(4)
        saved = []
        while not done.is_set():
            op = rng.choice(['save', 'save', 'load', 'reset'])
            if op == 'save':
                path = tmp_path / f'm{rng.randint(0, 2)}.safetensors'
                ok, text = live.save_map(str(path))
                if ok:
                    saved.append(path)
            elif op == 'load' and saved:
                ok, text = live.load_map(str(saved[-1]))
            elif op == 'reset':
                ok, text = live.reset('test')
            else:
                continue
            results.append((op, ok, text))

    threads = [threading.Thread(target=feeder), threading.Thread(target=services)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    assert live.stop() and not any(t.is_alive() for t in threads)

    failed = [r for r in results if not r[1]]
    # The only refusal: a save right after a reset, before the next frame.
    assert all(op == 'save' and 'no map to save' in text for op, _, text in failed), failed
    ops = {op for op, ok, _ in results if ok}
    assert ops == {'save', 'load', 'reset'}, results
    assert live.session.counts['frames_failed'] == 0 and live.session.counts['frames_processed']
    assert not [t for lvl, t in sink.logs if lvl == 'error'], sink.logs
    # Every file saved is a whole map; its last save says how many frames it has.
    last_saves = {}
    for op, ok, text in results:
        if op == 'save' and ok:
            n, path = text.split('(')[1].split(' frames)')[0], text.split(' to ')[-1]
            last_saves[path] = int(n)
    for path, n in last_saves.items():
        assert load_checkpoint(path)[0]['meta']['n_frames'] == n, path
    autosaves = live.autosave.counts
    assert autosaves['autosave_failures'] == 0
    if autosaves['autosaves']:
        load_checkpoint(tmp_path / 'auto.autosave.safetensors')
    # Tracking goes on from a loaded map: the kept frame is tracked on it.
    path, n = max(last_saves.items(), key=lambda kv: kv[1])
    ok, text = live.load_map(path)
    assert ok and f'({n} frames)' in text, text
    feed(live, frames(messages, flight, last, last))
    assert live.engine.n_frames == n + 1
    assert M.header_stamp_ns(sink.of(outputs.ODOMETRY)[-1]) == flight.frame_stamps_ns[last]
    print(f'{len(results)} service calls, {live.session.counts["frames_processed"]} frames, '
          f'{autosaves["autosaves"]} autosaves')


# ------------------------------------------------------------------------ autosave


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def _with_clock(live, clock, log, period_s=10.0):
    live.autosave = Autosave(period_s, live.session.localization, log, clock)
    return live


def test_autosave_writes_the_map_when_due_and_only_when_it_changed(flight, messages, tmp_path):
    map_path = tmp_path / 'auto' / 'map.safetensors'
    path = tmp_path / 'auto' / 'map.autosave.safetensors'
    assert autosave_path(str(map_path)) == str(path)
    live, sink = make_live(make_cfg(map_path=str(map_path)))
    clock = FakeClock()
    _with_clock(live, clock, sink.log)
    live.autosave_if_due()
    assert not path.exists(), 'nothing due, no map yet'
    clock.t += 11
    live.autosave_if_due()
    assert not path.exists() and live.autosave.counts['autosaves'] == 0, 'no map yet'
    feed(live, frames(messages, flight, 0, 2))
    live.autosave_if_due()
    assert load_checkpoint(path)[0]['meta']['n_frames'] == 3
    assert live.autosave.counts['autosaves'] == 1
    assert any(lvl == 'info' and f'autosave: saved the map (3 frames) to {path}' in t
               for lvl, t in sink.logs)
    feed(live, frames(messages, flight, 3, 3))
    live.autosave_if_due()
    assert live.autosave.counts['autosaves'] == 1, 'not due yet'
    clock.t += 11
    live.autosave_if_due()
    assert load_checkpoint(path)[0]['meta']['n_frames'] == 4
    clock.t += 11
    path.unlink()
    live.autosave_if_due()
    assert not path.exists() and live.autosave.counts['autosaves'] == 2, 'unchanged: skipped'
    # ~/save_map writes node.map_path; the autosave never replaces that file.
    feed(live, frames(messages, flight, 4, 4))
    assert live.save_map(str(map_path))[0]
    before = map_path.read_bytes()
    feed(live, frames(messages, flight, 5, 5))
    clock.t += 11
    live.autosave_if_due()
    assert live.autosave.counts['autosaves'] == 3 and map_path.read_bytes() == before
    assert load_checkpoint(path)[0]['meta']['n_frames'] == 6
    status, values = _values(live)
    assert values['autosaves'] == '3' and values['autosave_failures'] == '0'


def test_a_failing_autosave_is_logged_and_counted_not_fatal(flight, messages, tmp_path):
    (tmp_path / 'a_file').write_text('not a folder')
    live, sink = make_live(make_cfg(map_path=str(tmp_path / 'a_file' / 'map.safetensors')))
    clock = FakeClock()
    _with_clock(live, clock, sink.log)
    feed(live, frames(messages, flight, 0, 1))
    _values(live)   # the diagnostics' counts so far
    clock.t += 11
    live.autosave_if_due()
    assert live.autosave.counts == {'autosave_failures': 1}
    warns = [t for lvl, t in sink.logs if lvl == 'warn' and 'autosave failed' in t]
    assert len(warns) == 1 and 'a_file/map.autosave.safetensors' in warns[0], sink.logs
    status, values = _values(live)
    assert status.level == M.DIAG_WARN and 'map autosave failed' in status.message
    assert values['autosave_failures'] == '1' and 'a_file' in values['autosave_last_error']
    # The node goes on, and saves again once it can.
    feed(live, frames(messages, flight, 2, 2))
    assert live.session.counts['frames_processed'] == 3
    live.map_path = str(tmp_path / 'map.safetensors')   # the parameter changed
    clock.t += 11
    live.autosave_if_due()
    assert live.autosave.counts['autosaves'] == 1
    assert load_checkpoint(tmp_path / 'map.autosave.safetensors')[0]['meta']['n_frames'] == 3


def test_the_worker_autosaves_while_frames_come(flight, messages, tmp_path):
    path = tmp_path / 'map.autosave.safetensors'
    live, sink = make_live(make_cfg(autosave_period_s=0.05,
                                    map_path=str(tmp_path / 'map.safetensors')))
    live.start()
    try:
        for k in range(flight.n_frames):
            feed(live, frames(messages, flight, k, k), process=False)
            live.intake.wait(lambda: not live.intake.frames, time.monotonic() + WAIT_S)
            if live.autosave.counts['autosaves'] >= 2:
                break
        deadline = time.monotonic() + WAIT_S
        while not live.autosave.counts['autosaves'] and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        assert live.stop()
    assert live.autosave.counts['autosaves'] >= 1 and not live.autosave.counts[
        'autosave_failures']
    state, _ = load_checkpoint(path)
    assert 1 <= state['meta']['n_frames'] <= live.session.counts['frames_processed']


def test_no_autosave_in_localization_mode_or_when_off():
    logs = []
    a = Autosave(60.0, True, lambda lvl, t: logs.append((lvl, t)), FakeClock())
    assert not a.enabled and not a.due()
    assert logs == [('info', 'map autosave off in localization mode (the map does not '
                             'change)')]
    clock = FakeClock()
    off = Autosave(0.0, False, logs.append, clock)
    clock.t += 1e6
    assert not off.enabled and not off.due() and len(logs) == 1


# ------------------------------------------------------------------------ the real node


def test_the_node_answers_load_map_of_bad_files_and_keeps_running(ros_pytest):
    ros_pytest('rclpy_map_checks.py')
