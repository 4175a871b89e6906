# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The config dataclasses as ROS 2 parameters: declared from the dataclasses, read back into a
validated ``VssmConfig``.

Every leaf field becomes one parameter with its dotted name (``engine.map.resolution``), its
default, and its field docstring as the description (``ros2 param describe``). Parameters are
dynamically typed so that a YAML ``1`` for a float works; ``from_dict`` then checks types and
values and raises ``ConfigError`` with the parameter's name. Overrides that name no parameter
(a typo in a params file) are an error too, not silently ignored.
"""

from __future__ import annotations

import array
import difflib
from typing import Any, List, Type, TypeVar

from rcl_interfaces.msg import ParameterDescriptor

from vssm_ros import config as C
from vssm_ros.errors import ConfigError

T = TypeVar('T')


def _plain(value: Any) -> Any:
    # rclpy hands arrays back as array.array or list; the config wants lists.
    if isinstance(value, (array.array, tuple)):
        return list(value)
    return value


def declare_config(node: Any, cls: Type[T] = C.VssmConfig) -> T:
    """Declare every field of ``cls`` as a parameter of ``node`` and build the config from
    the values (defaults, params files, ``-p`` overrides).

    Raises:
        ConfigError: an invalid value (named), or an override that is no parameter.
    """
    names: List[str] = []
    for name, default, doc in C.flatten(cls):
        node.declare_parameter(name, default,
                               ParameterDescriptor(description=doc, dynamic_typing=True))
        names.append(name)
    overrides = getattr(node, '_parameter_overrides', None) or {}
    unknown = sorted(k for k in overrides
                     if not node.has_parameter(k) and not k.startswith('qos_overrides.')
                     and k.split('.')[0] not in C._OTHER_SECTIONS)
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, names, n=1)
            hints.append(f'{k} (did you mean {close[0]}?)' if close else k)
        raise ConfigError(f'unknown parameter(s): {", ".join(hints)}; every parameter is '
                          'listed in config/vssm.yaml and docs/parameters.md')
    values = {n: _plain(node.get_parameter(n).value) for n in names}
    return C.from_dict(cls, C.unflatten(values))
