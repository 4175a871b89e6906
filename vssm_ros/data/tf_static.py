# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""A static-transform buffer (what /tf_static carries), without tf2_ros.

Extrinsics (camera and IMU in the body frame) are static, so a tree of fixed transforms is all
the data layer and the node need: ``lookup`` walks it in both directions.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Dict, Iterable, List, Tuple

import numpy as np

from vssm_ros.data.messages import transform_to_matrix
from vssm_ros.data.transforms import as_transform, invert
from vssm_ros.errors import MessageError


def _strip(frame: str) -> str:
    # tf2 ignores a leading slash (ROS 1 style '/base_link').
    return str(frame).lstrip('/')


class StaticTransforms:
    """Static transforms, each stored as T_parent_child; later ones replace earlier ones."""

    def __init__(self) -> None:
        self._parent: Dict[str, Tuple[str, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self._parent)

    @property
    def frames(self) -> List[str]:
        """All frame names known, sorted."""
        names = set(self._parent)
        names.update(p for p, _ in self._parent.values())
        return sorted(names)

    @property
    def edges(self) -> List[Tuple[str, str]]:
        """(parent, child) of every stored transform, sorted."""
        return sorted((p, c) for c, (p, _) in self._parent.items())

    def set(self, parent: str, child: str, T_parent_child: np.ndarray) -> None:
        """Add or replace the transform of ``child`` in ``parent``.

        Shape: T_parent_child (4, 4).
        """
        parent, child = _strip(parent), _strip(child)
        if not parent or not child or parent == child:
            raise MessageError(f'static transform needs two different frame names, got '
                               f'{parent!r} -> {child!r}')
        self._parent[child] = (parent, as_transform(T_parent_child).copy())

    def add_message(self, msg: Any) -> int:
        """Add every transform of a tf2_msgs/TFMessage (or one TransformStamped); returns how
        many were added."""
        transforms = getattr(msg, 'transforms', None)
        if transforms is None:
            transforms = [msg]
        for t in transforms:
            self.set(t.header.frame_id, t.child_frame_id, transform_to_matrix(t))
        return len(transforms)

    def add_messages(self, msgs: Iterable[Any]) -> int:
        """``add_message`` for each; returns the total number of transforms added."""
        return sum(self.add_message(m) for m in msgs)

    def can_transform(self, target_frame: str, source_frame: str) -> bool:
        """Whether ``lookup`` would find a chain."""
        return self._path(_strip(target_frame), _strip(source_frame)) is not None

    def lookup(self, target_frame: str, source_frame: str) -> np.ndarray:
        """T_target_source: maps points in ``source_frame`` to ``target_frame``, through the
        tree in both directions.

        Shape: (4, 4).

        Raises:
            MessageError: no chain between the frames; the message lists the frames known.
        """
        target, source = _strip(target_frame), _strip(source_frame)
        path = self._path(target, source)
        if path is None:
            known = ', '.join(self.frames) or 'none'
            raise MessageError(f'no static transform chain from {source!r} to {target!r}; '
                               f'frames known from /tf_static: {known}')
        return path

    def _path(self, target: str, source: str):
        if target == source:
            return np.eye(4)
        # Undirected breadth-first search; each edge knows its transform in both directions.
        nbrs: Dict[str, List[Tuple[str, np.ndarray]]] = {}
        for child, (parent, T_pc) in self._parent.items():
            nbrs.setdefault(parent, []).append((child, T_pc))
            nbrs.setdefault(child, []).append((parent, None))
        if target not in nbrs or source not in nbrs:
            return None
        # T_target_x for every reached frame x.
        reached = {target: np.eye(4)}
        todo = deque([target])
        while todo:
            x = todo.popleft()
            for y, T_xy in nbrs[x]:
                if y in reached:
                    continue
                if T_xy is None:  # y is x's parent: T_xy = inverse(T_yx)
                    T_xy = invert(self._parent[x][1])
                reached[y] = reached[x] @ T_xy
                if y == source:
                    return reached[y]
                todo.append(y)
        return None
