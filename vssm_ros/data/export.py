# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Exports: the map as a PLY point cloud and the engine state as a safetensors checkpoint.

PLY: binary little-endian, one ``vertex`` element with ``x y z`` (float), ``red green blue``
(uchar) and ``occupancy`` (float, probability), readable by MeshLab, CloudCompare and Open3D.

Checkpoint: a safetensors file (no pickle: loading one never runs code). The tensors are the
engine's ``state_dict()['tensors']``; the string->string metadata header holds

- ``format``: ``'vssm_ros.checkpoint'`` (tells a checkpoint from any other safetensors file),
- ``format_version``: ``CHECKPOINT_VERSION``,
- ``meta``: the engine's ``state_dict()['meta']`` as JSON,
- ``config``: the configuration the state was made with, as JSON,
- ``sha256``: the digest of the entries above and of every tensor (``content_digest``), so
  that a file whose bytes changed (a flipped bit, a copy cut short that still parses) is
  refused instead of loaded as a wrong map. Checkpoints written before it have none and are
  read unverified.

Every file is written atomically (a reader never sees half a checkpoint, a save killed at any
moment leaves the previous file; ``vssm_ros.data.atomic``). Reading one never raises anything
but ``StateError`` for a bad file: missing, a directory, unreadable, empty, truncated, corrupt,
of another format or version; the message names the file and what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from pathlib import Path
from typing import Any, Dict, Tuple, Union

import numpy as np

from vssm_ros.data.atomic import atomic_open, atomic_write_bytes
from vssm_ros.errors import SourceError, StateError

PathLike = Union[str, os.PathLike]

CHECKPOINT_FORMAT = 'vssm_ros.checkpoint'
"""The ``format`` entry of a checkpoint's metadata header."""
CHECKPOINT_VERSION = 1
"""Version of the checkpoint container (the engine state carries its own version in meta)."""
CHECKSUM_KEY = 'sha256'
"""The metadata entry with the checkpoint's ``content_digest``."""

_PLY_VERTEX = np.dtype([('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('red', 'u1'),
                        ('green', 'u1'), ('blue', 'u1'), ('occupancy', '<f4')])
_PLY_TYPES = {'char': 'i1', 'int8': 'i1', 'uchar': 'u1', 'uint8': 'u1', 'short': '<i2',
              'int16': '<i2', 'ushort': '<u2', 'uint16': '<u2', 'int': '<i4', 'int32': '<i4',
              'uint': '<u4', 'uint32': '<u4', 'float': '<f4', 'float32': '<f4',
              'double': '<f8', 'float64': '<f8'}
_READ_CHUNK = 16 << 20
"""Bytes read back at a time for the checkpoint's digest."""
# A PLY header is a few hundred bytes; anything much longer is not one of ours.
_PLY_MAX_HEADER = 64 * 1024

__all__ = ['CHECKPOINT_FORMAT', 'CHECKPOINT_VERSION', 'CHECKSUM_KEY', 'write_ply', 'read_ply',
           'save_checkpoint', 'load_checkpoint', 'read_container', 'content_digest']


# ----------------------------------------------------------------------------------------------
# PLY


def write_ply(path: PathLike, xyz: np.ndarray, rgb: np.ndarray, occupancy: np.ndarray) -> None:
    """Write a coloured point cloud with occupancy as a binary little-endian PLY, atomically.

    Args:
        path: output file (its folder is created).
        xyz: points, metres. Shape: (N, 3).
        rgb: colours. Shape: (N, 3), uint8.
        occupancy: occupancy probability per point. Shape: (N,).

    Raises:
        ValueError: shapes that do not match, or an rgb that is not uint8.
    """
    xyz = np.asarray(xyz)
    rgb = np.asarray(rgb)
    occupancy = np.asarray(occupancy)
    n = xyz.shape[0] if xyz.ndim == 2 else -1
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f'write_ply: xyz must have shape (N, 3), got {xyz.shape}')
    if rgb.shape != (n, 3):
        raise ValueError(f'write_ply: rgb must have shape ({n}, 3), got {rgb.shape}')
    if rgb.dtype != np.uint8:
        raise ValueError(f'write_ply: rgb must be uint8, got {rgb.dtype}')
    if occupancy.shape != (n,):
        raise ValueError(f'write_ply: occupancy must have shape ({n},), got {occupancy.shape}')
    verts = np.empty(n, dtype=_PLY_VERTEX)
    verts['x'], verts['y'], verts['z'] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    verts['red'], verts['green'], verts['blue'] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    verts['occupancy'] = occupancy
    header = ('ply\n'
              'format binary_little_endian 1.0\n'
              'comment written by vssm_ros (map surface points)\n'
              f'element vertex {n}\n'
              'property float x\nproperty float y\nproperty float z\n'
              'property uchar red\nproperty uchar green\nproperty uchar blue\n'
              'property float occupancy\n'
              'end_header\n')
    atomic_write_bytes(path, header.encode('ascii') + verts.tobytes())


def read_ply(path: PathLike) -> Dict[str, np.ndarray]:
    """Read a binary little-endian PLY point cloud (vertices with scalar properties only).

    Returns:
        Every vertex property by name, plus ``xyz`` (N, 3) float32 and ``rgb`` (N, 3) uint8 when
        those properties exist.

    Raises:
        SourceError: a missing file, or one that is not such a PLY (the message says why).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise SourceError(f'cannot read PLY file {path}: {err}') from err
    end = data.find(b'end_header\n', 0, _PLY_MAX_HEADER)
    if not data.startswith(b'ply\n') or end < 0:
        raise SourceError(f'{path} is not a PLY file (no "ply" ... "end_header" header)')
    lines = data[:end].decode('ascii', errors='replace').splitlines()[1:]
    fmt, n, props, element = None, None, [], None
    for line in lines:
        words = line.split()
        if not words or words[0] in ('comment', 'obj_info'):
            continue
        if words[0] == 'format':
            fmt = words[1] if len(words) > 1 else ''
        elif words[0] == 'element':
            element = words[1] if len(words) > 1 else ''
            if element != 'vertex':
                raise SourceError(f'{path}: PLY element {element!r} is not supported (only '
                                  'vertex point clouds)')
            n = int(words[2])
        elif words[0] == 'property' and element == 'vertex':
            if len(words) != 3 or words[1] not in _PLY_TYPES:
                raise SourceError(f'{path}: unsupported PLY property {line.strip()!r} (scalar '
                                  'properties only)')
            props.append((words[2], _PLY_TYPES[words[1]]))
    if fmt != 'binary_little_endian':
        raise SourceError(f'{path}: PLY format {fmt!r} is not supported (binary_little_endian '
                          'only)')
    if n is None or not props:
        raise SourceError(f'{path}: PLY header has no vertex element with properties')
    dtype = np.dtype(props)
    body = data[end + len(b'end_header\n'):]
    if len(body) != n * dtype.itemsize:
        raise SourceError(f'{path}: PLY body has {len(body)} bytes, expected {n} vertices x '
                          f'{dtype.itemsize} bytes = {n * dtype.itemsize} (truncated?)')
    verts = np.frombuffer(body, dtype=dtype, count=n)
    out = {name: verts[name].copy() for name in dtype.names}
    if {'x', 'y', 'z'} <= set(out):
        out['xyz'] = np.stack([out['x'], out['y'], out['z']], axis=1).astype(np.float32)
    if {'red', 'green', 'blue'} <= set(out):
        out['rgb'] = np.stack([out['red'], out['green'], out['blue']], axis=1).astype(np.uint8)
    return out


# ----------------------------------------------------------------------------------------------
# Checkpoints


def save_checkpoint(path: PathLike, engine_state_dict: Dict[str, Any],
                    config_dict: Dict[str, Any]) -> None:
    """Save an engine state and its configuration as a safetensors checkpoint, atomically.

    The file is written tensor piece by tensor piece: a state's ``streams`` (the map from
    ``SlamEngine.state_dict(stream=True)``, its evicted regions included) are read and
    written one part at a time, so saving a large map costs one part of memory, not a copy
    of the whole map.

    Args:
        path: output file (its folder is created), e.g. ``checkpoint.safetensors``.
        engine_state_dict: ``SlamEngine.state_dict()``: ``{'tensors': {name: tensor},
            'meta': {JSON-able}}``, and optionally ``'streams': {prefix: TensorStream}``
            (their tensors are saved as ``prefix + name``).
        config_dict: the configuration as plain JSON-able values (``config.to_dict(cfg)``).

    Raises:
        StateError: a state dict without 'tensors'/'meta', metadata that is not JSON-able, a
            stream whose parts do not add up to its tensors, or a file that cannot be written
            (the previous file at ``path`` is then unchanged).
    """
    if not isinstance(engine_state_dict, dict) or not {'tensors', 'meta'} <= set(
            engine_state_dict):
        raise StateError("save_checkpoint needs an engine state dict with 'tensors' and 'meta'")
    tensors = {str(k): v.detach().to('cpu').contiguous()
               for k, v in engine_state_dict['tensors'].items()}
    streams = engine_state_dict.get('streams') or {}
    try:
        header = {'format': CHECKPOINT_FORMAT, 'format_version': str(CHECKPOINT_VERSION),
                  'meta': json.dumps(engine_state_dict['meta'], sort_keys=True),
                  'config': json.dumps(config_dict, sort_keys=True)}
    except (TypeError, ValueError) as err:
        raise StateError(f'checkpoint {path}: metadata is not JSON-serialisable: {err}') from err
    # The digest is known once every byte is written: a placeholder of its length first.
    header[CHECKSUM_KEY] = '0' * 64
    spec = {k: (v.dtype, tuple(v.shape)) for k, v in tensors.items()}
    for prefix, stream in streams.items():
        spec.update({prefix + k: s for k, s in stream.spec.items()})
    try:
        with atomic_open(path, 'w+b') as fh:
            _write_checkpoint(fh, header, spec, tensors, streams)
    except OSError as err:
        raise StateError(f'cannot write checkpoint {path}: {err}') from err


def _write_checkpoint(fh, header: Dict[str, str], spec: Dict[str, Tuple[Any, Tuple[int, ...]]],
                      tensors: Dict[str, Any], streams: Dict[str, Any]) -> None:
    """A safetensors file into ``fh`` (opened 'w+b'): the header with the digest's
    placeholder, the tensors and the streams' parts at their offsets, then the digest
    (``content_digest``, computed over the bytes written) in the placeholder's place."""
    order = sorted(spec, key=lambda k: (-_itemsize(spec[k][0]), k))   # every tensor aligned
    offsets, end = {}, 0
    for k in order:
        dtype, shape = spec[k]
        offsets[k] = (end, end + _itemsize(dtype) * math.prod(shape))
        end = offsets[k][1]
    entries: Dict[str, Any] = {'__metadata__': dict(sorted(header.items()))}
    entries.update((k, {'dtype': _safetensors_dtype(spec[k][0]), 'shape': list(spec[k][1]),
                        'data_offsets': list(offsets[k])}) for k in order)
    text = json.dumps(entries, separators=(',', ':')).encode('utf-8')
    text += b' ' * (-len(text) % 8)   # the data 8-byte aligned, as the library writes it
    base = 8 + len(text)
    fh.write(struct.pack('<Q', len(text)) + text)
    for k, t in tensors.items():
        fh.seek(base + offsets[k][0])
        fh.write(_raw(t))
    for prefix, stream in streams.items():
        at = {k: offsets[prefix + k][0] for k in stream.spec}
        for part in stream.parts():
            for k, piece in part.items():
                raw = _raw(piece)
                fh.seek(base + at[k])
                fh.write(raw)
                at[k] += raw.nbytes
        short = [prefix + k for k in at if at[k] != offsets[prefix + k][1]]
        if short:
            raise StateError(f'the parts of {", ".join(short)} do not fill their tensors (the '
                             'map changed while it was saved?)')
    h = _digest_start(header)
    for k in sorted(spec):
        _digest_entry(h, k, *spec[k])
        fh.seek(base + offsets[k][0])
        left = offsets[k][1] - offsets[k][0]
        while left:
            chunk = fh.read(min(left, _READ_CHUNK))
            h.update(chunk)
            left -= len(chunk)
    mark = b'"%s":"%s"' % (CHECKSUM_KEY.encode(), header[CHECKSUM_KEY].encode())
    fh.seek(8 + text.index(mark) + len(mark) - 65)
    fh.write(h.hexdigest().encode('ascii'))


def _raw(t: Any) -> np.ndarray:
    """A CPU tensor's bytes, as safetensors stores them (C order, little-endian)."""
    import torch

    return t.detach().to('cpu').contiguous().reshape(-1).view(torch.uint8).numpy()


def _safetensors_dtype(dtype: Any) -> str:
    """The safetensors name of a torch dtype."""
    import torch

    names = {torch.float64: 'F64', torch.float32: 'F32', torch.float16: 'F16',
             torch.bfloat16: 'BF16', torch.int64: 'I64', torch.int32: 'I32',
             torch.int16: 'I16', torch.int8: 'I8', torch.uint8: 'U8', torch.bool: 'BOOL'}
    if dtype not in names:
        raise StateError(f'a checkpoint cannot hold a tensor of dtype {dtype}')
    return names[dtype]


def _itemsize(dtype: Any) -> int:
    import torch

    return torch.empty((), dtype=dtype).element_size()


def _digest_start(metadata: Dict[str, str]):
    """``content_digest``'s hash over the metadata, before any tensor."""
    h = hashlib.sha256()
    h.update(json.dumps({k: v for k, v in metadata.items() if k != CHECKSUM_KEY},
                        sort_keys=True).encode('utf-8'))
    return h


def _digest_entry(h, name: str, dtype: Any, shape: Tuple[int, ...]) -> None:
    """``content_digest``'s hash of a tensor's name, dtype and shape (its bytes follow)."""
    h.update(json.dumps([name, str(dtype), list(shape)]).encode('utf-8'))


def content_digest(tensors: Dict[str, Any], metadata: Dict[str, str]) -> str:
    """SHA-256 (hex) of a checkpoint's content: its metadata entries but ``CHECKSUM_KEY``, and
    every tensor's name, dtype, shape and bytes, in name order. It depends on the content
    only, not on how the file lays it out, so the same map always has the same digest."""
    h = _digest_start(metadata)
    for name in sorted(tensors):
        t = tensors[name]
        _digest_entry(h, name, t.dtype, tuple(t.shape))
        h.update(_raw(t))
    return h.hexdigest()


def safetensors_bytes(tensors: Dict[str, Any], metadata: Dict[str, str]) -> bytes:
    """``safetensors.torch.save``, with the header in a fixed order: the library writes the
    metadata in hash order, so the same content gave different bytes on every save (and a map
    saved unchanged could not be told from a changed one by its bytes)."""
    from safetensors.torch import save  # lazily: torch is only needed for checkpoints

    blob = save(tensors, metadata=metadata)
    (n,) = struct.unpack('<Q', blob[:8])
    header = json.loads(blob[8:8 + n].decode('utf-8'))
    ordered = {'__metadata__': dict(sorted(header.pop('__metadata__', {}).items()))}
    ordered.update(sorted(header.items(), key=lambda kv: kv[1]['data_offsets']))
    text = json.dumps(ordered, separators=(',', ':')).encode('utf-8')
    text += b' ' * (-len(text) % 8)   # the library keeps the data 8-byte aligned
    return struct.pack('<Q', len(text)) + text + blob[8 + n:]


def _safetensors_header(data: bytes, path: Path, what: str = 'checkpoint') -> Dict[str, Any]:
    """The JSON header of a safetensors file (8-byte little-endian length, then JSON)."""
    if len(data) < 8:
        raise StateError(f'{path} is not a vssm_ros {what}: only {len(data)} bytes')
    (n,) = struct.unpack('<Q', data[:8])
    if n > len(data) - 8:
        raise StateError(f'{path} is not a vssm_ros {what} (or is truncated): header length '
                         f'{n} exceeds the file size {len(data)}')
    try:
        header = json.loads(data[8:8 + n].decode('utf-8'))
    except (ValueError, RecursionError) as err:   # bad UTF-8 or JSON; absurdly nested JSON
        raise StateError(f'{path} is not a vssm_ros {what}: unreadable safetensors header '
                         f'({err})') from err
    if not isinstance(header, dict) or not isinstance(header.get('__metadata__', {}), dict):
        raise StateError(f'{path} is not a vssm_ros {what}: header is not a mapping')
    return header


def read_container(path: PathLike, fmt: str, version: int, what: str, whole: bool = True
                   ) -> Tuple[bytes, Dict[str, str]]:
    """The bytes and the metadata header of a vssm_ros safetensors file.

    Args:
        fmt, version: the ``format`` and ``format_version`` the header must carry.
        what: what the file is, for the error messages (e.g. 'checkpoint').
        whole: read the whole file; False: its header only (the bytes returned are the
            header's), for a reader that takes the tensors from the file itself.

    Raises:
        StateError: a missing or unreadable file, or one of another format or version.
    """
    path = Path(path)
    try:
        data = path.read_bytes() if whole else _read_head(path)
    except FileNotFoundError as err:
        raise StateError(f'{what} not found: {path}') from err
    except IsADirectoryError as err:
        raise StateError(f'cannot read {what} {path}: it is a directory, not a file') from err
    except PermissionError as err:
        raise StateError(f'cannot read {what} {path}: permission denied') from err
    except OSError as err:
        raise StateError(f'cannot read {what} {path}: {err}') from err
    if not data:
        raise StateError(f'{path} is not a vssm_ros {what}: the file is empty')
    meta = _safetensors_header(data, path, what).get('__metadata__') or {}
    if meta.get('format') != fmt:
        raise StateError(f'{path} is not a vssm_ros {what} (safetensors metadata has format '
                         f'{meta.get("format")!r}, expected {fmt!r})')
    if meta.get('format_version') != str(version):
        raise StateError(f'{what} {path} has container version {meta.get("format_version")!r}; '
                         f'this build reads {version}')
    return data, meta


def _read_head(path: Path) -> bytes:
    """A safetensors file's first bytes: the length and, as far as the file holds it, the
    header (never more than the file: a corrupt length cannot ask for terabytes)."""
    with open(path, 'rb') as fh:
        size = os.fstat(fh.fileno()).st_size
        head = fh.read(8)
        if len(head) < 8:
            return head
        (n,) = struct.unpack('<Q', head)
        return head + fh.read(min(n, size - 8))


def load_checkpoint(path: PathLike) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Load a checkpoint written by ``save_checkpoint``.

    Returns:
        ``(state_dict, config_dict)``: ``{'tensors': {name: torch.Tensor (CPU)}, 'meta': {...}}``
        for ``SlamEngine.load_state_dict``, and the configuration mapping it was saved with.

    Raises:
        StateError: a missing file, a directory, an unreadable one, a file that is not a
            vssm_ros checkpoint, a truncated or corrupt one (its content does not match its
            ``sha256``), or one of an unsupported container version.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    # The header alone, then the tensors straight from the file: one copy of the map in
    # memory, not the file's bytes as well.
    _, meta = read_container(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, 'checkpoint',
                             whole=False)
    try:
        state_meta = json.loads(meta['meta'])
        config = json.loads(meta['config'])
    except (KeyError, TypeError, ValueError, RecursionError) as err:
        raise StateError(f'checkpoint {path}: corrupt metadata ({err!r})') from err
    if not isinstance(state_meta, dict) or not isinstance(config, dict):
        raise StateError(f'checkpoint {path}: corrupt metadata (meta and config must be '
                         'mappings)')
    try:
        tensors = load_file(str(path))
    # The library reports most bad files as SafetensorError, some as errors of torch or of
    # its own Python part (a dtype torch lacks, a shape that does not fit the bytes); the
    # file may also have gone since its header was read.
    except (SafetensorError, ValueError, RuntimeError, KeyError, TypeError, OSError) as err:
        raise StateError(f'checkpoint {path} is corrupt or truncated: {err}') from err
    expected = meta.get(CHECKSUM_KEY)
    if expected is not None and content_digest(tensors, meta) != expected:
        raise StateError(f'checkpoint {path} is corrupt: its content does not match its '
                         f'{CHECKSUM_KEY} (bytes changed on disk or in a copy)')
    return {'tensors': tensors, 'meta': state_meta}, config
