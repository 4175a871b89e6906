# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""vssm-bench: its table and JSON, with the step's stages (the speed itself is measured by
running it, never asserted here)."""

import contextlib
import io
import json

from vssm_ros.cli import bench


def test_bench_reports_rates_latency_and_the_steps_stages(tmp_path):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        rc = bench.main(['--sizes', '64x48', '--frames', '8', '--warmup', '1',
                         '--json', str(tmp_path / 'b.json')])
    assert rc == 0
    head = out.getvalue().splitlines()[1].split()
    assert head[:3] == ['size', 'frames', 'e2e'] and 'track' in head and 'propagate' in head
    (row,) = json.loads((tmp_path / 'b.json').read_text())['results']
    assert row['size'] == '64x48' and row['frames'] == 8
    stages = row['stages_mean_ms']
    assert set(stages) == set(bench.STAGES)
    assert stages['track'] > 0 and all(v >= 0 for v in stages.values())
    # The stages are parts of the step.
    assert sum(stages.values()) <= 1e3 / row['step_fps'] * 1.01   # mean step, ms
    assert row['step_latency']['p50_ms'] > 0


def test_bench_refuses_bad_arguments():
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert bench.main(['--sizes', '64by48']) == 2
        assert bench.main(['--frames', '0']) == 2
    assert 'vssm-bench: error' in err.getvalue()
