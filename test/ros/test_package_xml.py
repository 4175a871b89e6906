# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""package.xml declares what the node and the launch file use at run time."""

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _exec_depends():
    root = ET.parse(REPO / 'package.xml').getroot()
    return {e.text.strip(): e.attrib for e in root.iter('exec_depend')}


def _imported_roots(path):
    tree = ast.parse(path.read_text(encoding='utf-8'))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split('.')[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split('.')[0])
    return roots


def test_the_launch_files_dependencies_are_declared():
    deps = _exec_depends()
    used = _imported_roots(REPO / 'launch' / 'drone.launch.py') - {'os', 'tempfile', 'yaml'}
    assert used <= set(deps), f'launch file imports undeclared {used - set(deps)}'
    assert 'python3-yaml' in deps
    text = (REPO / 'launch' / 'drone.launch.py').read_text(encoding='utf-8')
    assert "'ros2', 'bag', 'play'" in text and 'ros2bag' in deps
    assert "package='rviz2'" in text and 'rviz2' in deps
    assert deps['rviz2'].get('condition'), 'rviz2 is optional (a headless install skips it)'


def test_the_nodes_message_packages_are_declared():
    deps = _exec_depends()
    used = set()
    for path in (REPO / 'vssm_ros' / 'ros').glob('*.py'):
        used |= {r for r in _imported_roots(path) if re.search(r'_msgs$|_srvs$|^rclpy$|^rcl_', r)}
    missing = used - set(deps) - {'rcl_interfaces'}   # rcl_interfaces comes with rclpy
    assert not missing, f'vssm_ros/ros imports undeclared {missing}'
