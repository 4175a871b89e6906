# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Where the packaged files (config/*.yaml) are: the repository in a development checkout, or
``share/vssm_ros`` of the install prefix (``setup.py`` installs ``config/`` there)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List

from vssm_ros.errors import ConfigError

PACKAGE = 'vssm_ros'


def share_dirs() -> List[Path]:
    """Candidate roots holding ``config/``, most specific first: the source checkout this module
    lives in, then ``share/vssm_ros`` under the ROS (AMENT_PREFIX_PATH) and Python prefixes."""
    dirs: List[Path] = []
    repo = Path(__file__).resolve().parents[2]
    if (repo / 'package.xml').is_file() and (repo / PACKAGE).is_dir():
        dirs.append(repo)
    prefixes = [p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]
    prefixes += [sys.prefix, sys.base_prefix]
    for prefix in prefixes:
        d = Path(prefix) / 'share' / PACKAGE
        if d not in dirs:
            dirs.append(d)
    return dirs


def config_path(name: str) -> Path:
    """The packaged config file ``name`` (e.g. ``'demo.yaml'``).

    Raises:
        ConfigError: it is in none of the places looked (they are listed).
    """
    tried = []
    for root in share_dirs():
        path = root / 'config' / name
        if path.is_file():
            return path
        tried.append(str(path))
    raise ConfigError(f'packaged config {name!r} not found; looked in: {", ".join(tried)}')
