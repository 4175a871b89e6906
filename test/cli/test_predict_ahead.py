# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""vssm-replay --predict-horizon on a tiny synthetic flight: predictions scored on the frames
that arrive, the predicted images and the cost slice written, the learned transition loaded
from engine.motion.weights."""

import contextlib
import io
import json

import numpy as np
import pytest
import yaml

from vssm_ros.cli import replay
from vssm_ros.cli.paths import config_path
from vssm_ros.cli.predict_ahead import OUTPUTS, horizon_arg
from vssm_ros.config import SyntheticConfig
from vssm_ros.core.learned_dynamics import LearnedDynamics
from vssm_ros.data.dynamics_io import save_dynamics
from vssm_ros.data.synthetic import generate_flight, write_flight

# 1.5 s at 10 Hz (16 frames), 40x30, flying from the start.
TINY = SyntheticConfig(duration_s=1.5, width=40, height=30, camera_rate_hz=10.0, hover_s=0.0,
                       ramp_s=0.5)


@pytest.fixture(scope='module')
def predicted(tmp_path_factory):
    root = tmp_path_factory.mktemp('predict')
    bag = write_flight(generate_flight(TINY), root, ('mcap',))['mcap']
    # Weights of an untrained transition (f_T with the engine's noise) exercise the loader.
    save_dynamics(root / 'dyn.safetensors', LearnedDynamics.engineered(0.05, 0.005))
    over = root / 'over.yaml'
    over.write_text(yaml.safe_dump({'/**': {'ros__parameters': {'engine': {
        'motion': {'weights': str(root / 'dyn.safetensors')},
        'predict': {'samples': 4, 'period_s': 0.3},
        'inference': {'rays': 256, 'track_iters': 4}, 'render': {'samples': 32},
        'cost': {'max_distance': 1.0},
        'map': {'resolution': 0.1, 'truncation': 0.3}}}}}))
    out = root / 'out'
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = replay.main([str(bag), '--config', str(config_path('demo.yaml')), '--config',
                          str(over), '--out', str(out), '--predict-horizon', '0.5'])
    return dict(rc=rc, out=out, stdout=stdout.getvalue(), stderr=stderr.getvalue())


def test_predictions_are_scored_and_written(predicted):
    assert predicted['rc'] == 0, predicted['stderr']
    for name in OUTPUTS:
        data = (predicted['out'] / name).read_bytes()
        assert data[:8] == b'\x89PNG\r\n\x1a\n', name
    m = json.loads((predicted['out'] / 'metrics.json').read_text())['prediction']
    # Predictions every 0.3 s over frames 0 .. 1.5 s: at 0, 0.3, ..., 1.5 s; the last two
    # would be scored after the flight ends.
    assert m['horizon_s'] == 0.5 and m['made'] == 6
    assert m['scored'] == 4 and m['unscored'] == 2
    assert len(m['per_prediction']) == 4
    for row in m['per_prediction']:
        assert row['scored_ns'] - row['made_ns'] == 500_000_000
    assert 0 < m['median_abs_err_m'] < 0.5
    assert 0.5 < m['within_2sigma'] <= 1.0 and 0.2 < m['valid_fraction'] <= 1.0
    assert m['static_median_abs_err_m'] > 0
    cost = json.loads((predicted['out'] / 'metrics.json').read_text())['cost']
    assert 0 <= cost['path_collision_probability'] <= 1 and 0 <= cost['path_cost_max'] <= 1
    assert 0 < cost['known_fraction'] < 1 and cost['resolution_m'] == pytest.approx(0.1)
    assert 'prediction' in predicted['stdout'] and '2σ' in predicted['stdout']


def test_horizon_argument():
    assert horizon_arg('0.5') == 0.5
    for bad in ('0', '-1', 'nan', 'inf'):
        with pytest.raises(ValueError):
            horizon_arg(bad)
    with pytest.raises(SystemExit):
        replay.build_parser().parse_args(['x', '--predict-horizon', '-2'])
    assert np.isclose(replay.build_parser().parse_args(['x', '--predict-horizon', '1'])
                      .predict_horizon, 1.0)
