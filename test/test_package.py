# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Packaging: package.xml (format 3), setup.py, versions, licence and copyright headers.

The format-3 XSD (download.ros.org/schema/package_format3.xsd) is not available offline, so the
structure it prescribes is checked here with ElementTree: the element order of its sequence,
name and version patterns, required children.
"""

import re
import runpy
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import setuptools

import vssm_ros

REPO = Path(__file__).resolve().parents[1]
PACKAGE_XML = REPO / 'package.xml'
EXEC_DEPENDS = ['rclpy', 'sensor_msgs', 'geometry_msgs', 'nav_msgs', 'std_msgs', 'std_srvs',
                'tf2_msgs', 'diagnostic_msgs', 'python3-numpy', 'python3-yaml',
                # launch/drone.launch.py (rviz2 optional: see test/ros/test_package_xml.py)
                'launch', 'launch_ros', 'ament_index_python', 'ros2bag', 'rosbag2_storage_mcap',
                'rviz2']
# Format 3: these come first, in this order, then any dependency tags, then export.
HEAD = ['name', 'version', 'description', 'maintainer', 'license', 'url', 'author']
DEPEND_TAGS = {'build_depend', 'build_export_depend', 'buildtool_depend',
               'buildtool_export_depend', 'exec_depend', 'depend', 'doc_depend', 'test_depend',
               'conflict', 'replace', 'group_depend', 'member_of_group'}
HEADER = ('# Copyright 2026 The vssm_ros authors', '# SPDX-License-Identifier: Apache-2.0')


@pytest.fixture(scope='module')
def package():
    return ET.parse(PACKAGE_XML).getroot()


@pytest.fixture(scope='module')
def setup_kwargs():
    """The keyword arguments setup.py passes to setuptools.setup (run with setup captured)."""
    captured = {}
    mp = pytest.MonkeyPatch()
    mp.setattr(setuptools, 'setup', lambda **kw: captured.update(kw))
    mp.chdir(REPO)   # setup.py globs relative paths, as colcon runs it
    try:
        runpy.run_path(str(REPO / 'setup.py'), run_name='__main__')
    finally:
        mp.undo()
    assert captured, 'setup.py did not call setuptools.setup'
    return captured


# ----------------------------------------------------------------------------------------------
# package.xml


def test_package_xml_is_format_3(package):
    assert package.tag == 'package' and package.get('format') == '3'
    head = PACKAGE_XML.read_text(encoding='utf-8')[:400]
    assert 'package_format3.xsd' in head, 'the xml-model schema reference is missing'


def test_package_xml_element_order(package):
    tags = [child.tag for child in package]
    assert tags[:3] == ['name', 'version', 'description']
    # The head elements in schema order, each group contiguous.
    head = [t for t in tags if t in HEAD]
    assert head == sorted(head, key=HEAD.index)
    assert tags[:len(head)] == head, f'dependencies before the head elements: {tags}'
    rest = tags[len(head):]
    unknown = [t for t in rest if t not in DEPEND_TAGS | {'export'}]
    assert not unknown, f'elements not in the format-3 schema: {unknown}'
    assert rest.count('export') <= 1 and (not rest or 'export' not in rest[:-1]), \
        'export must be the last element'


def test_package_xml_content(package, setup_kwargs):
    name = package.findtext('name')
    assert name == 'vssm_ros' == setup_kwargs['name']
    assert re.fullmatch(r'[a-z][a-z0-9_]*[a-z0-9]', name)
    assert len(package.findtext('description').split()) >= 5
    maintainers = package.findall('maintainer')
    assert maintainers and all(m.get('email') and '@' in m.get('email') and m.text.strip()
                               for m in maintainers)
    assert [lic.text for lic in package.findall('license')] == ['Apache-2.0']
    assert package.findtext('export/build_type') == 'ament_python'
    # A Python package: nothing to build with CMake.
    assert not [d.text for d in package.findall('buildtool_depend') if 'cmake' in d.text]


def test_exec_depends_are_exactly_the_ros_runtime(package):
    deps = [d.text for d in package.findall('exec_depend')]
    assert sorted(deps) == sorted(EXEC_DEPENDS), deps
    assert len(set(deps)) == len(deps)
    # The data layer replaces these; depending on them would pull what we avoid on purpose.
    every = {d.text for d in package.iter() if d.tag in DEPEND_TAGS}
    assert not every & {'cv_bridge', 'sensor_msgs_py', 'tf2_ros', 'tf2_ros_py',
                        'message_filters', 'tf_transformations'}
    assert 'python3-pytest' in {d.text for d in package.findall('test_depend')}


# ----------------------------------------------------------------------------------------------
# setup.py and versions


def test_versions_agree(package, setup_kwargs):
    version = package.findtext('version')
    assert re.fullmatch(r'\d+\.\d+\.\d+', version)
    assert version == setup_kwargs['version'] == vssm_ros.__version__


def test_licence(package, setup_kwargs):
    text = (REPO / 'LICENSE').read_text(encoding='utf-8')
    assert 'Apache License' in text and 'Version 2.0' in text
    assert 'http://www.apache.org/licenses/LICENSE-2.0' in text
    assert setup_kwargs['license'] == package.findtext('license') == 'Apache-2.0'


def test_data_files_install_the_ament_marker_and_share_files(setup_kwargs):
    data = {dest: sorted(files) for dest, files in setup_kwargs['data_files']}
    assert data['share/ament_index/resource_index/packages'] == ['resource/vssm_ros']
    assert (REPO / 'resource' / 'vssm_ros').is_file()
    assert data['share/vssm_ros'] == ['package.xml']
    for sub, patterns in (('launch', ('*.py', 'bag_qos.yaml')), ('config', ('*.yaml',)),
                          ('rviz', ('*.rviz',))):
        on_disk = sorted(str(p.relative_to(REPO)) for p in (REPO / sub).glob('*')
                         if p.is_file() and not p.name.startswith('.'))
        installed = data.get(f'share/vssm_ros/{sub}', [])
        # Every file of these folders is installed (a launch file in another format would be
        # silently missing from the install space otherwise).
        assert installed == on_disk, f'{sub}/: installed {installed}, present {on_disk}'
        assert all(any(Path(f).match(p) for p in patterns) for f in installed)
    assert {'config/vssm.yaml', 'config/tum.yaml', 'config/blackbird.yaml',
            'config/realsense.yaml', 'config/jetson.yaml'} <= set(data['share/vssm_ros/config'])


def test_every_subpackage_is_found(setup_kwargs):
    dirs = {p.parent for p in (REPO / 'vssm_ros').rglob('*.py')}
    missing = [str(d.relative_to(REPO)) for d in dirs if not (d / '__init__.py').is_file()]
    assert not missing, f'folders with modules but no __init__.py (not installed): {missing}'
    expected = {'.'.join(d.relative_to(REPO).parts) for d in dirs}
    assert set(setup_kwargs['packages']) == expected


def test_console_scripts_resolve(setup_kwargs):
    scripts = setup_kwargs['entry_points']['console_scripts']
    assert any(s.startswith('vssm-synth') for s in scripts)
    for spec in scripts:
        name, target = (s.strip() for s in spec.split('='))
        module, func = target.split(':')
        mod_path = REPO / (module.replace('.', '/') + '.py')
        assert mod_path.is_file(), f'{name}: module {module} not found'
        assert re.search(rf'^def {func}\(', mod_path.read_text(encoding='utf-8'), re.M), \
            f'{name}: {module} has no function {func}'


def _requirement_names(lines):
    out = []
    for line in lines:
        line = line.split('#', 1)[0].strip()
        if line:
            out.append(re.split(r'[<>=!~\[; ]', line, 1)[0].lower())
    return out


def test_runtime_requirements_agree(setup_kwargs):
    install = set(_requirement_names(setup_kwargs['install_requires'])) - {'setuptools'}
    runtime = _requirement_names((REPO / 'requirements.txt').read_text().splitlines())
    assert set(runtime) == install
    dev_lines = [line.split('#', 1)[0].strip()
                 for line in (REPO / 'requirements-dev.txt').read_text().splitlines()]
    dev_lines = [line for line in dev_lines if line]
    # Development and CI are reproducible: every line pinned, every runtime dependency there.
    assert all(re.fullmatch(r'[A-Za-z0-9_.\-]+==[0-9][0-9A-Za-z.+\-]*', line)
               for line in dev_lines), dev_lines
    assert install <= set(_requirement_names(dev_lines))
    assert 'torch==2.13.0' in dev_lines


# ----------------------------------------------------------------------------------------------
# Copyright headers


def _python_files():
    files = sorted((REPO / 'vssm_ros').rglob('*.py')) + sorted((REPO / 'test').rglob('*.py'))
    for sub in ('tools', 'launch'):
        files += sorted((REPO / sub).glob('*.py'))
    return files + [REPO / 'setup.py']


def test_every_python_file_has_the_licence_header():
    missing = []
    for path in _python_files():
        lines = path.read_text(encoding='utf-8').splitlines()
        if lines and lines[0].startswith('#!'):
            lines = lines[1:]
        if tuple(lines[:2]) != HEADER:
            missing.append(str(path.relative_to(REPO)))
    assert not missing, f'files without the Apache-2.0/SPDX header: {missing}'
    assert len(_python_files()) > 20
