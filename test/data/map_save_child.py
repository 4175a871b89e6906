# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""A process that saves maps over one file again and again, the way ``~/save_map`` does
(``SlamSession.save_map`` -> ``save_checkpoint`` -> ``atomic_write_bytes``), for
test_map_file_safety.py to SIGKILL at chosen or random moments. Not collected by pytest.

Usage: map_save_child.py MAP_A MAP_B TARGET [--stall STAGE --stall-at K]

Save i writes map A (i even) or B (i odd) to TARGET and prints ``SAVE i`` before it,
``WRITING i`` when the file is opened for writing and ``SAVED i <seconds>`` after it (the
seconds from the opening to the file's fsync: the writing of the bytes). With ``--stall``,
save K stops inside the atomic write and prints ``STALL`` (then sleeps until it is killed):

- ``write``: half of the file's bytes written to the temporary file,
- ``fsync``: all of them written and flushed to disk, not yet renamed over TARGET,
- ``replace``: renamed over TARGET, the folder not yet flushed.
"""

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from vssm_ros.config import (EngineConfig, InferenceConfig, MapConfig,  # noqa: E402
                             OutputsConfig, VssmConfig)

STALL_S = 600.0   # far longer than any test waits: the parent kills the process


def small_cfg() -> VssmConfig:
    """The configuration of the test maps (a coarse map and a light tracker keep it fast)."""
    engine = EngineConfig(init_pose='identity', map=MapConfig(resolution=0.05, truncation=0.15),
                          inference=InferenceConfig(rays=128, track_iters=2))
    return VssmConfig(engine=engine, outputs=OutputsConfig(
        map_cloud_period_s=-1, predicted_period_s=-1, predicted_path_period_s=-1,
        cost_slice_period_s=-1))


def _stall() -> None:
    print('STALL', flush=True)
    time.sleep(STALL_S)
    os._exit(3)   # never reached in the test


class _HalfWriter:
    """A file object that writes half of what it is given, then stalls."""

    def __init__(self, fh):
        self.fh = fh

    def write(self, data):
        self.fh.write(data[:len(data) // 2])
        self.fh.flush()
        _stall()

    def __getattr__(self, name):
        return getattr(self.fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.fh.__exit__(*exc)


def _report_writes(current) -> None:
    """Patch ``os.fdopen`` and ``os.fsync`` (the atomic write's opening of its temporary file
    and its flush to disk) to say when the writing starts, and time it."""
    real_fdopen, real_fsync = os.fdopen, os.fsync

    def fdopen(*a, **k):
        print(f'WRITING {current["i"]}', flush=True)
        current['writing'] = current['written'] = time.perf_counter()
        return real_fdopen(*a, **k)

    def fsync(fd):
        if current['written'] == current['writing']:
            current['written'] = time.perf_counter()
        real_fsync(fd)
    os.fdopen, os.fsync = fdopen, fsync


def _arm(stage: str, armed) -> None:
    """Patch ``os`` so that the atomic write stalls at ``stage`` while ``armed()``."""
    if stage == 'write':
        real_fdopen = os.fdopen
        os.fdopen = lambda *a, **k: (_HalfWriter(real_fdopen(*a, **k)) if armed()
                                     else real_fdopen(*a, **k))
    elif stage == 'fsync':
        real_fsync = os.fsync

        def fsync(fd):
            real_fsync(fd)
            if armed():
                _stall()
        os.fsync = fsync
    elif stage == 'replace':
        real_replace = os.replace

        def replace(src, dst):
            real_replace(src, dst)
            if armed() and Path(dst).name == armed.target:
                _stall()
        os.replace = replace


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument('map_a')
    ap.add_argument('map_b')
    ap.add_argument('target')
    ap.add_argument('--stall', choices=('write', 'fsync', 'replace'))
    ap.add_argument('--stall-at', type=int, default=0)
    args = ap.parse_args()
    from vssm_ros.session import SlamSession

    sessions = []
    for path in (args.map_a, args.map_b):
        session = SlamSession(small_cfg())
        session.load_map(path)
        sessions.append(session)
    current = {'i': -1, 'writing': 0.0, 'written': 0.0}
    _report_writes(current)

    def armed():
        return args.stall is not None and current['i'] == args.stall_at
    armed.target = Path(args.target).name
    if args.stall:
        _arm(args.stall, armed)
    print('READY', flush=True)
    for i in range(10_000):
        current['i'] = i
        print(f'SAVE {i}', flush=True)
        sessions[i % 2].save_map(args.target)
        print(f'SAVED {i} {current["written"] - current["writing"]:.4f}', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
