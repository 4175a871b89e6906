# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Lint as a test, as ROS 2 packages do with ament_flake8: 99 columns, single quotes.

The settings live in setup.cfg ([flake8]); flake8 and flake8-quotes are pinned in
requirements-dev.txt.
"""

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip('flake8', reason='flake8 is not installed (pip install -r '
                    'requirements-dev.txt)')
pytest.importorskip('flake8_quotes', reason='flake8-quotes is not installed (pip install -r '
                    'requirements-dev.txt)')

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / 'setup.cfg'
TARGETS = ['vssm_ros', 'test', 'tools', 'launch', 'setup.py']


def _flake8(*paths, cwd=REPO):
    return subprocess.run([sys.executable, '-m', 'flake8', '--config', str(CONFIG), *paths],
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def test_flake8_is_clean():
    targets = [t for t in TARGETS if (REPO / t).exists()]
    run = _flake8(*targets)
    assert run.returncode == 0 and not run.stderr.strip(), (
        f'flake8 found {len(run.stdout.splitlines())} problem(s):\n{run.stdout}{run.stderr}')


def test_flake8_settings_catch_violations(tmp_path):
    bad = tmp_path / 'bad.py'
    bad.write_text('X = "double"\n' + "Y = '" + 'y' * 96 + "'\nimport os\n")
    out = _flake8(str(bad), cwd=tmp_path).stdout
    assert 'Q000' in out          # double quotes where single are the convention
    assert ':2:100: E501' in out  # one column over 99
    assert 'F401' in out and 'E402' in out
    ok = tmp_path / 'ok.py'
    ok.write_text("X = 'single'\nY = \"it's\"\n" + "Z = '" + 'z' * 93 + "'\n")
    assert _flake8(str(ok), cwd=tmp_path).returncode == 0
