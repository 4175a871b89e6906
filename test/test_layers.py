# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The architecture's layering, enforced: core <- data <- ros/cli; ROS only in vssm_ros/ros."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / 'vssm_ros'
ROS_MODULES = {'rclpy', 'tf2_ros', 'cv_bridge', 'message_filters', 'launch_ros', 'launch',
               'sensor_msgs', 'geometry_msgs', 'nav_msgs', 'std_msgs', 'std_srvs', 'tf2_msgs',
               'diagnostic_msgs', 'builtin_interfaces', 'rosidl_runtime_py'}
# What each layer may not import from the package.
FORBIDDEN = {
    'core': {'vssm_ros.data', 'vssm_ros.eval', 'vssm_ros.ros', 'vssm_ros.cli'},
    'data': {'vssm_ros.ros', 'vssm_ros.cli', 'vssm_ros.eval'},
    'eval': {'vssm_ros.ros', 'vssm_ros.cli'},
    # session.py sits between the data layer and the two drivers (DESIGN §3).
    'session.py': {'vssm_ros.ros', 'vssm_ros.cli'},
}


def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding='utf-8'))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def _py_files():
    return sorted(PKG.rglob('*.py'))


@pytest.mark.parametrize('path', _py_files(), ids=lambda p: str(p.relative_to(PKG)))
def test_ros_imports_only_in_ros_layer(path):
    if path.relative_to(PKG).parts[0] == 'ros':
        return
    bad = [m for m in _imports(path) if m.split('.')[0] in ROS_MODULES]
    assert not bad, f'{path} imports ROS modules {bad}; keep them inside vssm_ros/ros/'


@pytest.mark.parametrize('path', _py_files(), ids=lambda p: str(p.relative_to(PKG)))
def test_lower_layers_do_not_import_upper(path):
    layer = path.relative_to(PKG).parts[0]
    for mod in _imports(path):
        for bad in FORBIDDEN.get(layer, ()):
            assert not (mod == bad or mod.startswith(bad + '.')), \
                f'{path} (layer {layer}) imports {mod}'


def test_checker_sees_a_violation(tmp_path):
    bad = tmp_path / 'x.py'
    bad.write_text('import rclpy\nfrom vssm_ros.data import sources\n')
    mods = list(_imports(bad))
    assert 'rclpy' in mods and 'vssm_ros.data' in mods


def test_core_imports_without_io_libraries():
    code = ('import sys\n'
            'import vssm_ros.core\n'
            'import pkgutil, importlib\n'
            'for m in pkgutil.iter_modules(vssm_ros.core.__path__):\n'
            '    importlib.import_module("vssm_ros.core." + m.name)\n'
            'bad = [m for m in ("rosbags", "rclpy", "yaml", "matplotlib", "PIL", "safetensors")\n'
            '       if m in sys.modules]\n'
            'assert not bad, bad\n')
    subprocess.run([sys.executable, '-c', code], check=True)
