# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Learned dynamics weights on disk: round trip, wrong files, packaged names, engine loading."""

import dataclasses
import json

import pytest
import torch

from vssm_ros.config import EngineConfig, MotionConfig
from vssm_ros.core import lie
from vssm_ros.core.learned_dynamics import LearnedDynamics
from vssm_ros.data import dynamics_io
from vssm_ros.data.dynamics_io import (dynamics_for_engine, load_dynamics, resolve_weights,
                                       save_dynamics)
from vssm_ros.data.export import save_checkpoint
from vssm_ros.errors import ConfigError, StateError


def _trained(controls='imu'):
    torch.manual_seed(0)
    m = LearnedDynamics(controls=controls, hidden=8, layers=2)
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.3)
    m.set_normalisation(torch.randn(18), torch.rand(18) + 0.5)
    return m


def test_round_trip_is_exact(tmp_path):
    model = _trained()
    save_dynamics(tmp_path / 'w.safetensors', model, report={'rmse_1s': 0.02})
    back, report = load_dynamics(tmp_path / 'w.safetensors')
    assert report == {'rmse_1s': 0.02}
    assert back.controls == 'imu' and back.hidden == 8 and not back.training
    R, v, u = lie.so3_exp(torch.randn(4, 3)), torch.randn(4, 3), torch.randn(4, 6)
    for a, b in zip(model.residual(R, v, u, u), back.residual(R, v, u, u)):
        assert torch.equal(a, b)
    # No pickle: the file is safetensors with a JSON header.
    data = (tmp_path / 'w.safetensors').read_bytes()
    n = int.from_bytes(data[:8], 'little')
    header = json.loads(data[8:8 + n])
    assert header['__metadata__']['format'] == 'vssm_ros.dynamics'


def test_other_files_are_refused(tmp_path):
    with pytest.raises(StateError, match='not found'):
        load_dynamics(tmp_path / 'missing.safetensors')
    save_checkpoint(tmp_path / 'ckpt.safetensors', {'tensors': {'x': torch.zeros(2)},
                                                    'meta': {}}, {})
    with pytest.raises(StateError, match='not a vssm_ros dynamics'):
        load_dynamics(tmp_path / 'ckpt.safetensors')
    save_dynamics(tmp_path / 'w.safetensors', _trained())
    data = (tmp_path / 'w.safetensors').read_bytes()
    (tmp_path / 'cut.safetensors').write_bytes(data[:len(data) // 2])
    with pytest.raises(StateError, match='corrupt'):
        load_dynamics(tmp_path / 'cut.safetensors')


def test_resolve_paths_and_packaged_names(tmp_path, monkeypatch):
    save_dynamics(tmp_path / 'mine.safetensors', _trained())
    assert resolve_weights(str(tmp_path / 'mine.safetensors')) == tmp_path / 'mine.safetensors'
    monkeypatch.setattr(dynamics_io, 'PACKAGED_DIR', tmp_path)
    assert resolve_weights('mine') == tmp_path / 'mine.safetensors'
    with pytest.raises(ConfigError, match='shipped: mine'):
        resolve_weights('other')


def test_dynamics_for_engine(tmp_path):
    assert dynamics_for_engine(EngineConfig()) is None
    save_dynamics(tmp_path / 'imu.safetensors', _trained())
    cfg = EngineConfig(dtype='float64',
                       motion=MotionConfig(weights=str(tmp_path / 'imu.safetensors')))
    model = dynamics_for_engine(cfg)
    assert model.feat_mean.dtype == torch.float64
    save_dynamics(tmp_path / 'thrust.safetensors', _trained('thrust'))
    with pytest.raises(ConfigError, match="controls 'imu'"):
        dynamics_for_engine(dataclasses.replace(
            cfg, motion=MotionConfig(weights=str(tmp_path / 'thrust.safetensors'))))
    with pytest.raises(ConfigError, match='gravity'):
        dynamics_for_engine(dataclasses.replace(
            cfg, motion=MotionConfig(weights=str(tmp_path / 'imu.safetensors'), gravity=9.0)))
