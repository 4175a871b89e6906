# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""vssm-train-dynamics end to end on tiny synthetic train/val splits in the Blackbird layout."""

import contextlib
import io
import json

import pytest
import torch
import yaml

from vssm_ros.cli import train_dynamics
from vssm_ros.config import SyntheticConfig
from vssm_ros.data.dynamics_io import load_dynamics
from vssm_ros.data.flight_log import synthetic_flight_log, write_blackbird_split
from vssm_ros.data.synthetic import generate_flight

pytest.importorskip('h5py')


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('flights')
    for split, seed in (('train', 0), ('val', 1)):
        flight = generate_flight(SyntheticConfig(seed=seed, duration_s=2.5, width=16, height=12,
                                                 imu_rate_hz=100.0, hover_s=0.2, ramp_s=0.5))
        write_blackbird_split(root / split, synthetic_flight_log(flight))
    cfg = root / 'train.yaml'
    cfg.write_text(yaml.safe_dump({'train_dynamics': {
        'hidden': 8, 'layers': 1, 'window_s': 0.3, 'stride_s': 0.3, 'epochs': 2,
        'eval_horizons_s': [0.2, 0.5], 'eval_every_s': 0.5, 'eval_samples': 16}}))
    return root, cfg


def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    n = torch.get_num_threads()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = train_dynamics.main(argv)
    finally:
        torch.set_num_threads(n)
    return rc, out.getvalue(), err.getvalue()


def test_train_writes_weights_and_report_and_evaluates(data, tmp_path):
    root, cfg = data
    rc, out, err = _run([str(root), '--out', str(tmp_path / 'dyn'), '--config', str(cfg),
                         '--seed', '3', '--quiet'])
    assert rc == 0, err
    report = json.loads((tmp_path / 'dyn' / 'report.json').read_text())
    assert report['config']['seed'] == 3 and report['config']['hidden'] == 8
    assert report['fit']['epochs_run'] == 2 and len(report['fit']['history']) == 2
    assert set(report['fit']['ground_truth_std']) == {'position_m', 'rotation_rad',
                                                      'velocity_m_s'}
    ev = report['evaluation']
    assert ev['split'] == 'val' and set(ev) == {'split', 'euler', 'learned'}
    for model in ('euler', 'learned'):
        assert set(ev[model]) == {'0.2', '0.5'}
        for row in ev[model].values():
            assert row['rmse_m'] > 0 and 0 <= row['coverage'] <= 1
            assert 0 <= row['coverage_sampled'] <= 1 and row['n'] >= 3
    model, saved = load_dynamics(tmp_path / 'dyn' / 'dynamics.safetensors')
    assert model.hidden == 8 and saved['evaluation']['learned'] == ev['learned']
    assert 'euler' in out and 'learned' in out and 'ratio' in out
    # --eval re-evaluates saved weights and reproduces the table.
    rc, out2, err = _run([str(root), '--eval', str(tmp_path / 'dyn' / 'dynamics.safetensors'),
                          '--config', str(cfg), '--seed', '3'])
    assert rc == 0, err
    assert out2.splitlines()[-6:] == out.splitlines()[-6:]


def test_bad_input_exits_2(tmp_path, data):
    rc, _, err = _run([str(tmp_path / 'none')])
    assert rc == 2 and 'not a folder' in err
    (tmp_path / 'train').mkdir()
    rc, _, err = _run([str(tmp_path)])
    assert rc == 2 and 'missing' in err
    bad = tmp_path / 'bad.yaml'
    bad.write_text(yaml.safe_dump({'train_dynamics': {'controls': 'rpm'}}))
    rc, _, err = _run([str(data[0]), '--config', str(bad)])
    assert rc == 2 and "'imu' or 'thrust'" in err
