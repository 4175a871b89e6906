# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The shipped parameter files, config validation, and the generated config docs."""

import dataclasses
import importlib.util
import math
import typing
from pathlib import Path

import pytest
import yaml

from vssm_ros.config import (EngineConfig, MapConfig, SyntheticConfig, VssmConfig, field_docs,
                             flatten, load_config, read_yaml_params)
from vssm_ros.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / 'config'
BASE = CONFIG / 'vssm.yaml'
YAMLS = sorted(CONFIG.glob('*.yaml'))
SPECIALISATIONS = [p for p in YAMLS if p.name != 'vssm.yaml']


def _gen():
    """tools/gen_config_docs.py as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location('gen_config_docs',
                                                  REPO / 'tools' / 'gen_config_docs.py')
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _write(tmp_path, params, name='over.yaml'):
    """A ROS 2 parameter file holding ``params`` under /**: ros__parameters."""
    path = tmp_path / name
    path.write_text(yaml.safe_dump({'/**': {'ros__parameters': params}}), encoding='utf-8')
    return path


def _leaves(cls, prefix=''):
    """(dotted name, owning class, field name) of every leaf field, and the section fields."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        yield prefix + f.name, cls, f.name
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _leaves(hints[f.name], prefix + f.name + '.')


# ----------------------------------------------------------------------------------------------
# The shipped files


def test_the_shipped_files_are_there():
    names = {p.name for p in YAMLS}
    assert {'vssm.yaml', 'tum.yaml', 'blackbird.yaml', 'realsense.yaml',
            'jetson.yaml'} <= names


@pytest.mark.parametrize('path', YAMLS, ids=lambda p: p.name)
def test_every_file_is_a_ros2_parameter_file(path):
    doc = yaml.safe_load(path.read_text(encoding='utf-8'))
    assert list(doc) == ['/**'], f'{path.name}: one /** wildcard node section expected'
    assert isinstance(doc['/**']['ros__parameters'], dict)


@pytest.mark.parametrize('path', YAMLS, ids=lambda p: p.name)
def test_every_file_loads_alone_and_on_the_base(path):
    alone = load_config([path])
    on_base = load_config([BASE, path])
    # The base holds only defaults, so a specialisation means the same with or without it.
    assert alone == on_base
    assert isinstance(on_base, VssmConfig)


def test_the_base_file_is_exactly_the_defaults():
    assert load_config([BASE]) == VssmConfig()
    params = read_yaml_params(BASE)
    flat = {}

    def walk(d, prefix=''):
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, prefix + k + '.')
            else:
                flat[prefix + k] = v
    walk(params)
    rows = flatten(VssmConfig)
    assert list(flat) == [name for name, _, _ in rows]   # every parameter, in dataclass order
    for name, default, _ in rows:
        # Same value and same YAML type: ROS 2 declares a parameter's type from its value, so
        # a float default written as '1' would become an integer parameter.
        assert flat[name] == default and type(flat[name]) is type(default), name


@pytest.mark.parametrize('path', SPECIALISATIONS, ids=lambda p: p.name)
def test_specialisations_override_only_what_differs(path):
    defaults = {name: value for name, value, _ in flatten(VssmConfig)}
    flat = dict(_gen()._flat_params(read_yaml_params(path)))
    assert flat, f'{path.name} overrides nothing'
    # Sections for other tools (vssm-synth's 'synthetic') are not node parameters.
    flat = {k: v for k, v in flat.items() if not k.startswith('synthetic.')}
    same = [k for k, v in flat.items() if defaults[k] == v]
    assert not same, f'{path.name} repeats defaults: {same}'


def test_specialisation_values():
    tum = load_config([BASE, CONFIG / 'tum.yaml'])
    assert (tum.camera.fx, tum.camera.fy, tum.camera.cx, tum.camera.cy) == (
        535.4, 539.2, 320.1, 247.6)
    assert tum.camera.depth_scale == 5000.0 and tum.camera.has_intrinsics
    assert tum.topics.imu == ''
    assert not tum.engine.inference.track_color

    rs = load_config([BASE, CONFIG / 'realsense.yaml'])
    assert rs.topics.rgb == '/camera/color/image_raw'
    assert rs.topics.depth == '/camera/aligned_depth_to_color/image_raw'
    assert rs.topics.camera_info == '/camera/color/camera_info'
    assert rs.topics.imu == '/camera/imu'
    assert rs.camera.depth_scale == 0.0   # 16UC1 millimetres, scaled by encoding

    bb = load_config([BASE, CONFIG / 'blackbird.yaml'])
    assert (bb.topics.imu, bb.topics.ground_truth) == ('/blackbird/imu', '/blackbird/state')

    jet = load_config([BASE, CONFIG / 'jetson.yaml'])
    e = jet.engine
    assert (e.inference.rays, e.map.resolution, e.render.samples) == (512, 0.08, 32)
    assert e.inference.track_iters < EngineConfig().inference.track_iters
    # Stacked on a sensor file, each keeps its own keys.
    both = load_config([BASE, CONFIG / 'realsense.yaml', CONFIG / 'jetson.yaml'])
    assert both.topics == rs.topics and both.engine.inference.rays == 512
    assert both.engine.render.far == rs.engine.render.far == 6.5


# ----------------------------------------------------------------------------------------------
# Validation: every bad value names its key


@pytest.mark.parametrize('params, key', [
    ({'engine': {'map': {'resolution': 0.0}}}, 'map.resolution'),
    ({'sync': {'slop_s': -1.0}}, 'sync.slop_s'),
    ({'camera': {'depth_scale': 'x'}}, 'camera.depth_scale'),
    ({'frames': {'T_body_cam': [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]}}, 'frames.T_body_cam'),
    ({'engine': {'map': {'resolutoin': 0.05}}}, 'engine.map.resolutoin'),
    ({'engine': {'inference': {'rays': 1.5}}}, 'engine.inference.rays'),
    ({'engine': {'inference': {'rays': True}}}, 'engine.inference.rays'),
    ({'camera': {'fx': float('nan')}}, 'camera.fx'),
    ({'engine': {'render': {'far': float('inf')}}}, 'engine.render.far'),
    ({'frames': {'standalone': 'yes'}}, 'frames.standalone'),
    ({'frames': {'T_body_imu': [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0]}}, 'frames.T_body_imu'),
    ({'engine': {'dtype': 'float16'}}, 'engine.dtype'),
    ({'engine': {'map': {'observed_floor': 0.0}}}, 'map.observed_floor'),
    ({'engine': {'map': {'observed_floor': 1.5}}}, 'map.observed_floor'),
    ({'engine': {'sensor': {'color_observed_floor': 0.0}}}, 'sensor.color_observed_floor'),
    ({'engine': {'sensor': {'color_observed_floor': 1.01}}}, 'sensor.color_observed_floor'),
    ({'engine': {'sensor': {'relative_cov_scale': 0.0}}}, 'sensor.relative_cov_scale'),
    ({'engine': {'sensor': {'relative_cov_scale': 1.5}}}, 'sensor.relative_cov_scale'),
    ({'engine': {'sensor': {'variance_factor_power': -1.0}}}, 'sensor.variance_factor_power'),
    ({'engine': {'inference': {'track_stop_translation': -1e-4}}},
     'inference.track_stop_translation'),
    ({'topcis': {'rgb': '/a'}}, 'topcis'),
    ({'node': {'max_frame_gap_s': 0.0}}, 'node.max_frame_gap_s'),
    ({'node': {'max_lag_s': -1.0}}, 'node.max_lag_s'),
    ({'node': {'output_cpu_share': 0.0}}, 'node.output_cpu_share'),
    ({'node': {'output_cpu_share': 1.5}}, 'node.output_cpu_share'),
    ({'sync': 3}, 'sync'),
])
def test_bad_values_raise_config_error_naming_the_key(tmp_path, params, key):
    path = _write(tmp_path, params)
    with pytest.raises(ConfigError) as err:
        load_config([BASE, path])
    assert key in str(err.value)


def test_nan_from_yaml_text_is_rejected(tmp_path):
    path = tmp_path / 'nan.yaml'
    path.write_text('/**:\n  ros__parameters:\n    engine:\n      map:\n        sdf_noise: .nan\n')
    with pytest.raises(ConfigError, match='engine.map.sdf_noise'):
        load_config([path])


def test_file_problems_raise_config_error(tmp_path):
    with pytest.raises(ConfigError, match='not found'):
        load_config([tmp_path / 'missing.yaml'])
    bad = tmp_path / 'bad.yaml'
    bad.write_text('/**:\n  ros__parameters: [1, 2\n')
    with pytest.raises(ConfigError, match='not valid YAML'):
        load_config([bad])


def test_dotted_ros_parameter_names_load(tmp_path):
    path = _write(tmp_path, {'engine.map.resolution': 0.1, 'engine.map.truncation': 0.25,
                             'topics.imu': '/imu', 'sync.queue_size': 7})
    cfg = load_config([BASE, path])
    assert cfg.engine.map.resolution == 0.1 and cfg.engine.map.truncation == 0.25
    assert cfg.topics.imu == '/imu' and cfg.sync.queue_size == 7
    # Untouched keys of the same sections keep their defaults.
    assert cfg.engine.map.memory_mb == VssmConfig().engine.map.memory_mb
    assert cfg.topics.tf_static == '/tf_static'


def test_a_node_named_section_loads(tmp_path):
    path = tmp_path / 'node.yaml'
    path.write_text(yaml.safe_dump({'vssm_node': {'ros__parameters': {
        'engine': {'inference': {'rays': 600}}}}}))
    assert load_config([path]).engine.inference.rays == 600


def test_later_files_win_key_by_key(tmp_path):
    a = _write(tmp_path, {'camera': {'fx': 100.0, 'fy': 100.0}}, 'a.yaml')
    b = _write(tmp_path, {'camera': {'fx': 200.0}}, 'b.yaml')
    cam = load_config([BASE, a, b]).camera
    assert (cam.fx, cam.fy) == (200.0, 100.0)


# ----------------------------------------------------------------------------------------------
# Docs cannot drift from the code


@pytest.mark.parametrize('cls', [VssmConfig, SyntheticConfig], ids=lambda c: c.__name__)
def test_every_field_is_documented(cls):
    undocumented = [name for name, owner, fname in _leaves(cls)
                    if len(field_docs(owner).get(fname, '')) < 8]
    assert not undocumented, f'fields without a docstring: {undocumented}'


def test_flatten_has_a_description_per_leaf():
    rows = flatten(VssmConfig)
    leaves = [name for name, owner, fname in _leaves(VssmConfig)
              if not dataclasses.is_dataclass(typing.get_type_hints(owner)[fname])]
    assert [name for name, _, _ in rows] == leaves
    assert all(desc for _, _, desc in rows)


def test_generated_files_are_up_to_date():
    gen = _gen()
    diffs = gen.stale(gen.outputs())
    assert not diffs, ('config/vssm.yaml or docs/parameters.md differ from vssm_ros/config.py; '
                       'run `.venv/bin/python tools/gen_config_docs.py`:\n' + '\n'.join(diffs))


def test_drift_check_sees_a_change(tmp_path):
    gen = _gen()
    text = gen.render_yaml()
    path = tmp_path / 'vssm.yaml'
    res = gen.yaml_scalar(MapConfig().resolution)
    changed = text.replace(f'resolution: {res}', 'resolution: 0.5')
    assert changed != text
    path.write_text(changed, encoding='utf-8')
    diffs = gen.stale({path: text})
    assert len(diffs) == 1
    assert '-        resolution: 0.5' in diffs[0] and f'+        resolution: {res}' in diffs[0]
    path.write_text(text, encoding='utf-8')
    assert gen.stale({path: text}) == []


def test_generated_docs_list_every_parameter():
    md = _gen().render_markdown()
    for name, _, _ in flatten(VssmConfig):
        assert f'| `{name}` |' in md, name
    assert '| `config/jetson.yaml` | `engine.inference.rays` | `512` |' in md


@pytest.mark.parametrize('value, text', [
    (0.05, '0.05'), (1e-05, '1.0e-05'), (2.5e-12, '2.5e-12'), (1e20, '1.0e+20'), (3, '3'),
    (True, 'true'), ("it's", "'it''s'"), ('', "''"), ([1.0, -2.0], '[1.0, -2.0]'),
])
def test_yaml_scalar_round_trips_with_its_type(value, text):
    gen = _gen()
    assert gen.yaml_scalar(value) == text
    back = yaml.safe_load(text)
    assert back == value and type(back) is type(value)


def test_yaml_scalar_refuses_non_finite():
    with pytest.raises(ValueError):
        _gen().yaml_scalar(math.inf)
