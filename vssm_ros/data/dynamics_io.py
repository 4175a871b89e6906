# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Learned dynamics weights on disk: a safetensors file (no pickle: loading never runs code).

The tensors are ``LearnedDynamics.state()[0]`` (float32); the string->string metadata header
holds ``format`` (``'vssm_ros.dynamics'``), ``format_version``, ``meta`` (the model's
description as JSON: controls, sizes, feature names) and ``report`` (the trainer's summary as
JSON, for the record). Files are written atomically.

``engine.motion.weights`` names such a file, or, as a bare name without a suffix, weights shipped
in the package (``vssm_ros/weights/<name>.safetensors``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch

from vssm_ros.config import EngineConfig
from vssm_ros.core.learned_dynamics import LearnedDynamics
from vssm_ros.data.atomic import atomic_write_bytes
from vssm_ros.data.export import read_container, safetensors_bytes
from vssm_ros.errors import ConfigError, StateError

PathLike = Union[str, os.PathLike]

WEIGHTS_FORMAT = 'vssm_ros.dynamics'
"""The ``format`` entry of a weights file's metadata header."""
WEIGHTS_VERSION = 1
"""Version of the container."""
PACKAGED_DIR = Path(__file__).resolve().parents[1] / 'weights'
"""Where weights shipped with the package live."""


def save_dynamics(path: PathLike, model: LearnedDynamics,
                  report: Optional[Dict[str, Any]] = None) -> None:
    """Write a model's weights (float32) and description, atomically."""
    tensors, meta = model.state()
    tensors = {k: v.to(torch.float32).contiguous() for k, v in tensors.items()}
    header = {'format': WEIGHTS_FORMAT, 'format_version': str(WEIGHTS_VERSION),
              'meta': json.dumps(meta, sort_keys=True),
              'report': json.dumps(report or {}, sort_keys=True, allow_nan=False)}
    atomic_write_bytes(path, safetensors_bytes(tensors, header))


def load_dynamics(path: PathLike) -> Tuple[LearnedDynamics, Dict[str, Any]]:
    """Read weights written by ``save_dynamics``.

    Returns:
        The model (float32, CPU, eval mode) and the trainer's report.

    Raises:
        StateError: a missing file, another kind of file, a corrupt or incompatible one.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    data, meta = read_container(path, WEIGHTS_FORMAT, WEIGHTS_VERSION,
                                'dynamics weights file')
    try:
        model_meta = json.loads(meta['meta'])
        report = json.loads(meta.get('report', '{}'))
        tensors = load(data)
    except (KeyError, json.JSONDecodeError, SafetensorError, ValueError, RuntimeError) as err:
        raise StateError(f'dynamics weights file {path} is corrupt: {err}') from err
    model = LearnedDynamics.from_state(tensors, model_meta)
    return model.eval(), report


def resolve_weights(spec: str) -> Path:
    """The file that ``engine.motion.weights`` names: a path, or the bare name of packaged
    weights.

    Raises:
        ConfigError: neither exists.
    """
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    packaged = PACKAGED_DIR / f'{spec}.safetensors'
    if path.suffix == '' and len(path.parts) == 1 and packaged.is_file():
        return packaged
    shipped = sorted(p.stem for p in PACKAGED_DIR.glob('*.safetensors'))
    raise ConfigError(f'engine.motion.weights: {spec!r} is neither a file nor the name of '
                      f'shipped weights (shipped: {", ".join(shipped) or "none"})')


def dynamics_for_engine(cfg: EngineConfig) -> Optional[LearnedDynamics]:
    """The learned transition the engine config asks for, on its device and dtype; None when
    ``motion.weights`` is empty (the engineered integrator).

    Raises:
        ConfigError: the weights cannot be found, or use controls the engine does not receive.
        StateError: the file is not usable.
    """
    if not cfg.motion.weights:
        return None
    model, _ = load_dynamics(resolve_weights(cfg.motion.weights))
    if model.controls != 'imu':
        raise ConfigError(f'engine.motion.weights: {cfg.motion.weights!r} is driven by '
                          f'{model.controls!r} controls, but the engine receives IMU samples; '
                          "use weights trained with controls 'imu'")
    if abs(model.gravity - cfg.motion.gravity) > 1e-6:
        raise ConfigError(f'engine.motion.weights were trained with gravity {model.gravity} '
                          f'but engine.motion.gravity is {cfg.motion.gravity}')
    dtype = torch.float64 if cfg.dtype == 'float64' else torch.float32
    return model.to(device=torch.device(cfg.device), dtype=dtype)
