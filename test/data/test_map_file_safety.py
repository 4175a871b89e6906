# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Crash safety of map files (issue 17): a save SIGKILLed at any moment leaves the previous
file or the new one, complete, and at most one temporary file, which the next save takes
over; writes reach the disk (file and folder fsync); a bad map file (truncated, bytes
flipped, empty, another format or version, a directory, missing, unreadable) gives a
``StateError`` naming the file from ``load_checkpoint`` and ``SlamSession.load_map``, and the
session keeps its map.

The saving process is a real child process (test/data/map_save_child.py) that saves the way
``~/save_map`` does and is killed with SIGKILL: at chosen points inside the atomic write (it
stalls there and says so) and at random moments.
"""

import json
import os
import random
import select
import signal
import stat
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from map_save_child import small_cfg
from vssm_ros.config import SyntheticConfig
from vssm_ros.core.engine import STATE_VERSION
from vssm_ros.data import atomic
from vssm_ros.data.atomic import atomic_write_bytes, temp_path
from vssm_ros.data.export import (CHECKPOINT_FORMAT, CHECKPOINT_VERSION, CHECKSUM_KEY,
                                  load_checkpoint, read_container, safetensors_bytes,
                                  save_checkpoint, write_ply)
from vssm_ros.data.synthetic import generate_flight
from vssm_ros.errors import StateError
from vssm_ros.session import SlamSession

REPO = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name('map_save_child.py')
WAIT_S = 120.0   # only a hung child waits this long: the test then fails
WEIGHTS = REPO / 'vssm_ros' / 'weights' / 'blackbird_clover_imu.safetensors'


def _digest(path):
    """The checkpoint's recorded content digest (its identity in these tests)."""
    return read_container(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, 'checkpoint')[1][
        CHECKSUM_KEY]


@pytest.fixture(scope='module')
def maps(tmp_path_factory):
    """Two different maps of a small flight (after 2 and after 6 frames), as files, and the
    digests of what saving each again gives (what the child writes)."""
    tmp = tmp_path_factory.mktemp('maps')
    flight = generate_flight(SyntheticConfig(duration_s=1.0, width=48, height=36,
                                             camera_rate_hz=5.0, hover_s=0.0, ramp_s=0.5))
    session = SlamSession(small_cfg())
    frames = 0
    for item in flight.items():
        if session.feed(item) is not None:
            frames += 1
            if frames == 2:
                session.save_map(str(tmp / 'a.safetensors'))
    session.save_map(str(tmp / 'b.safetensors'))
    out = {'a': tmp / 'a.safetensors', 'b': tmp / 'b.safetensors', 'dir': tmp}
    for key in ('a', 'b'):
        again = SlamSession(small_cfg())
        again.load_map(str(out[key]))
        again.save_map(str(tmp / f'{key}_again.safetensors'))
        out[f'digest_{key}'] = _digest(tmp / f'{key}_again.safetensors')
    assert out['digest_a'] != out['digest_b']
    return out


# ------------------------------------------------------------------------ killed saves


class Child:
    """The saving child process, its output read line by line with a deadline."""

    def __init__(self, maps, target, *extra):
        # A killed child never removes its sessions' temporary map swap folders: they go to
        # the test's folder, not to the system's.
        scratch = maps['dir'] / 'child_tmp'
        scratch.mkdir(exist_ok=True)
        env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(REPO), TMPDIR=str(scratch))
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(maps['a']), str(maps['b']), str(target),
             *map(str, extra)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
            cwd=REPO)
        self._buf = b''
        self.saved_s = []

    def until(self, line):
        """Read lines up to ``line``; the durations of the saves seen meanwhile are kept."""
        deadline = time.monotonic() + WAIT_S
        while True:
            while b'\n' in self._buf:
                got, self._buf = self._buf.split(b'\n', 1)
                text = got.decode()
                if text.startswith('SAVED '):
                    self.saved_s.append(float(text.split()[2]))
                if text == line:
                    return
            left = deadline - time.monotonic()
            ready = select.select([self.proc.stdout], [], [], max(left, 0))[0]
            chunk = os.read(self.proc.stdout.fileno(), 65536) if ready else b''
            if not chunk:
                self.kill()
                pytest.fail(f'the child ended or hung before {line!r}:\n'
                            f'{self.proc.stderr.read().decode()[-3000:]}')
            self._buf += chunk

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(WAIT_S)
        self.proc.stdout.close()
        self.proc.stderr.close()


def _leftovers(folder, target):
    return sorted(p.name for p in Path(folder).iterdir() if p.name != target.name)


def _assert_complete_map(path, digests):
    """The file is a whole, verified checkpoint of one of the maps, and a session can load
    and use it. Returns which map it is."""
    which = {v: k for k, v in digests.items()}.get(_digest(path))
    assert which is not None, 'neither map'
    load_checkpoint(path)   # verifies the content against the digest
    session = SlamSession(small_cfg())
    session.load_map(str(path))
    assert len(session.engine.map_points()['xyz']) > 100
    return which


@pytest.mark.parametrize('stage, stall_at, expect', [
    ('write', 0, None),     # the first save ever, killed half-written: no file yet
    ('write', 1, 'a'),      # half of map b written: map a stays
    ('fsync', 1, 'a'),      # all of b on disk, not yet renamed: a stays
    ('replace', 1, 'b'),    # renamed: b, complete
])
def test_a_save_killed_inside_the_write_leaves_the_previous_or_the_new_file(
        maps, tmp_path, stage, stall_at, expect):
    target = tmp_path / 'map.safetensors'
    child = Child(maps, target, '--stall', stage, '--stall-at', stall_at)
    child.until('STALL')
    child.kill()
    digests = {'a': maps['digest_a'], 'b': maps['digest_b']}
    if expect is None:
        assert not target.exists()
        with pytest.raises(StateError, match=f'checkpoint not found: {target}'):
            load_checkpoint(target)
    else:
        assert _assert_complete_map(target, digests) == expect
    # What a killed writer leaves: its one temporary file (none once it was renamed).
    left = [] if stage == 'replace' else [temp_path(target).name]
    assert _leftovers(tmp_path, target) == left
    if left:
        assert temp_path(target).stat().st_size > 0
    # The next save takes the leftover over: the folder holds the map alone.
    session = SlamSession(small_cfg())
    session.load_map(str(maps['a']))
    session.save_map(str(target))
    assert _leftovers(tmp_path, target) == []
    assert _assert_complete_map(target, digests) == 'a'


def test_saves_killed_at_random_moments_never_leave_a_broken_file(maps, tmp_path):
    rng = random.Random(17)
    target = tmp_path / 'map.safetensors'
    digests = {'a': maps['digest_a'], 'b': maps['digest_b']}
    seen = set()
    for _ in range(3):
        child = Child(maps, target)
        k = rng.randint(2, 5)
        child.until(f'WRITING {k}')
        # Mostly while save k writes its bytes, which takes about as long as it did in the
        # saves before (some kills land later: in its fsync, its rename, or after it).
        time.sleep(rng.uniform(0.0, 1.3 * float(np.median(child.saved_s))))
        child.kill()
        seen.add(_assert_complete_map(target, digests))
        left = _leftovers(tmp_path, target)
        assert left in ([], [temp_path(target).name]), left
    print(f'maps found after the kills: {sorted(seen)}')


# ------------------------------------------------------------------------ durability


def test_a_write_reaches_the_disk_file_first_then_the_rename_then_the_folder(
        tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        kind = 'folder' if stat.S_ISDIR(os.fstat(fd).st_mode) else 'file'
        events.append(f'fsync {kind}')
        real_fsync(fd)

    def replace(src, dst):
        events.append(f'replace {Path(src).name} -> {Path(dst).name}')
        real_replace(src, dst)

    monkeypatch.setattr(os, 'fsync', fsync)
    monkeypatch.setattr(os, 'replace', replace)
    atomic_write_bytes(tmp_path / 'm.bin', b'x' * 1000)
    assert events == ['fsync file', 'replace .m.bin.tmp -> m.bin', 'fsync folder']
    assert (tmp_path / 'm.bin').read_bytes() == b'x' * 1000


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='names fds via /proc')
def test_a_folder_filled_atomically_is_flushed_once_per_folder(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            synced.append(Path(os.readlink(f'/proc/self/fd/{fd}')).name)
        real_fsync(fd)

    monkeypatch.setattr(os, 'fsync', fsync)
    with atomic.atomic_dir(tmp_path / 'frames') as tmp:
        for i in range(5):
            atomic_write_bytes(tmp / 'rgb' / f'{i}.png', b'png')
        assert synced == [], 'no folder flush per file inside the tree'
    # The tree's two folders (before the rename), then the parent (after it).
    assert len(synced) == 3 and synced[1:] == ['rgb', tmp_path.name], synced
    assert sorted(p.name for p in (tmp_path / 'frames' / 'rgb').iterdir()) == [
        f'{i}.png' for i in range(5)]
    atomic_write_bytes(tmp_path / 'frames' / 'later.txt', b'x')   # the tree is done: flushed
    assert synced[-1] == 'frames'


def test_concurrent_writers_of_one_file_never_mix_their_bytes(tmp_path):
    path = tmp_path / 'm.bin'

    def write(i):
        for _ in range(30):
            atomic_write_bytes(path, bytes([i]) * 200_000)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(1, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    data = path.read_bytes()
    assert len(data) == 200_000 and len(set(data)) == 1
    assert _leftovers(tmp_path, path) == []


def test_a_failed_write_leaves_the_file_and_no_temporary_file(tmp_path):
    path = tmp_path / 'm.bin'
    atomic_write_bytes(path, b'old')
    with pytest.raises(RuntimeError):
        with atomic.atomic_open(path, 'wb') as fh:
            fh.write(b'new, half')
            raise RuntimeError('the writer failed')
    assert path.read_bytes() == b'old' and _leftovers(tmp_path, path) == []
    with pytest.raises(IsADirectoryError, match='is a directory'):
        atomic_write_bytes(tmp_path, b'x')


def test_saving_to_a_directory_or_an_unwritable_place_is_a_state_error(maps, tmp_path):
    session = SlamSession(small_cfg())
    session.load_map(str(maps['a']))
    (tmp_path / 'a_dir').mkdir()
    with pytest.raises(StateError, match='cannot write checkpoint .*a_dir.*is a directory'):
        session.save_map(str(tmp_path / 'a_dir'))
    (tmp_path / 'a_file').write_bytes(b'')
    with pytest.raises(StateError, match='cannot write checkpoint .*a_file/m.safetensors'):
        session.save_map(str(tmp_path / 'a_file' / 'm.safetensors'))


# ------------------------------------------------------------------------ bad map files


def _header_len(data):
    return 8 + struct.unpack('<Q', data[:8])[0]


def _other_version(data):
    n = _header_len(data)
    header = json.loads(data[8:n])
    meta = header.pop('__metadata__')
    meta['format_version'] = '2'
    from safetensors.torch import load
    return safetensors_bytes(load(data), meta)


def _bad_files(maps, tmp):
    """(name, path, what the error must say) for every kind of bad map file."""
    from safetensors.torch import save_file

    data = maps['a'].read_bytes()
    n = _header_len(data)
    cases = []

    def put(name, content, match):
        path = tmp / f'{name}.safetensors'
        path.write_bytes(content)
        cases.append((name, path, match))

    for cut in (0, 3, 8, n // 2, n, n + (len(data) - n) // 2, len(data) - 1):
        put(f'truncated_{cut}', data[:cut], 'empty|only 3 bytes|truncated|corrupt')
    put('text', b'hello, this is not a map\n' * 10, 'not a vssm_ros checkpoint')
    write_ply(tmp / 'cloud.ply', np.zeros((5, 3), np.float32), np.zeros((5, 3), np.uint8),
              np.zeros(5, np.float32))
    cases.append(('ply', tmp / 'cloud.ply', 'not a vssm_ros checkpoint'))
    save_file({'w': torch.ones(3)}, str(tmp / 'plain.safetensors'))
    cases.append(('safetensors_without_metadata', tmp / 'plain.safetensors',
                  "format None, expected 'vssm_ros.checkpoint'"))
    cases.append(('dynamics_weights', WEIGHTS, "format 'vssm_ros.dynamics'"))
    put('other_version', _other_version(data), "container version '2'; this build reads 1")
    (tmp / 'folder.safetensors').mkdir()
    cases.append(('directory', tmp / 'folder.safetensors', 'it is a directory'))
    cases.append(('missing', tmp / 'missing.safetensors', 'checkpoint not found'))
    return cases


def _loaded_session(maps):
    session = SlamSession(small_cfg())
    session.load_map(str(maps['b']))
    return session


def _assert_unchanged(session, n_frames, points):
    assert session.engine.n_frames == n_frames
    now = session.engine.map_points()
    for key in points:
        np.testing.assert_array_equal(now[key], points[key])


def test_bad_map_files_give_a_clear_error_and_the_session_keeps_its_map(maps, tmp_path):
    session = _loaded_session(maps)
    n_frames, points = session.engine.n_frames, session.engine.map_points()
    for name, path, match in _bad_files(maps, tmp_path):
        with pytest.raises(StateError, match=match) as err:
            load_checkpoint(path)
        assert str(path) in str(err.value), name
        with pytest.raises(StateError, match=match) as err:
            session.load_map(str(path))
        assert str(path) in str(err.value), name
        _assert_unchanged(session, n_frames, points)
    # and it still saves and loads
    session.save_map(str(tmp_path / 'ok.safetensors'))
    assert 'loaded the map' in session.load_map(str(tmp_path / 'ok.safetensors'))


@pytest.mark.skipif(os.name != 'posix' or os.geteuid() == 0,
                    reason='root reads files without read permission')
def test_an_unreadable_map_file_gives_a_clear_error(maps, tmp_path):
    path = tmp_path / 'locked.safetensors'
    path.write_bytes(maps['a'].read_bytes())
    path.chmod(0)
    try:
        with pytest.raises(StateError, match=f'cannot read checkpoint {path}: permission'):
            load_checkpoint(path)
    finally:
        path.chmod(0o600)


def test_every_flipped_byte_in_the_data_is_caught(maps, tmp_path):
    data = maps['a'].read_bytes()
    n = _header_len(data)
    rng = np.random.default_rng(3)
    path = tmp_path / 'flipped.safetensors'
    for pos in rng.integers(n, len(data), 25):
        bad = bytearray(data)
        bad[pos] ^= int(rng.integers(1, 256))
        path.write_bytes(bytes(bad))
        with pytest.raises(StateError, match=f'{path} is corrupt: its content does not match'):
            load_checkpoint(path)


def test_a_flipped_byte_in_the_header_is_caught_or_harmless(maps, tmp_path):
    """A flip in the header either gives a StateError or leaves the content as it was (a
    space of the padding turned into another blank): never a different map."""
    data = maps['a'].read_bytes()
    n = _header_len(data)
    good, _ = load_checkpoint(maps['a'])
    rng = np.random.default_rng(5)
    path = tmp_path / 'flipped.safetensors'
    caught = 0
    for pos in list(range(8)) + list(rng.integers(8, n, 60)):
        bad = bytearray(data)
        bad[pos] ^= int(rng.integers(1, 256))
        path.write_bytes(bytes(bad))
        try:
            got, _ = load_checkpoint(path)
        except StateError as err:
            assert str(path) in str(err)
            caught += 1
            continue
        assert got['meta'] == good['meta'] and got['tensors'].keys() == good['tensors'].keys()
        for key, t in good['tensors'].items():
            assert torch.equal(got['tensors'][key], t), key
    assert caught >= 60, 'almost every flip changes the header'


def test_a_checkpoint_that_is_not_an_engine_state_is_refused_by_the_session(maps, tmp_path):
    # Well-formed and verified, but not what the engine saves (another build's, a tool's).
    path = tmp_path / 'odd.safetensors'
    meta = {'version': STATE_VERSION, 'resolution': 0.05, 'block_size': 8}
    save_checkpoint(path, {'tensors': {'map.blocks': torch.zeros(2, 5)}, 'meta': meta}, {})
    session = _loaded_session(maps)
    n_frames, points = session.engine.n_frames, session.engine.map_points()
    with pytest.raises(StateError, match=f'cannot load {path}: '):
        session.load_map(str(path))
    _assert_unchanged(session, n_frames, points)
