# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Recovery scan of a ROS 1 bag (v2.0) without its index, as ``rosbag reindex`` does (see
``bag_recovery``).

A recorder killed before it closed the bag leaves ``index_pos`` at 0 (rosbags: 'Bag is not
indexed'); a file cut short loses the index at its end. The records are read in order from
the start (http://wiki.ros.org/Bags/Format/2.0): connections and chunks; each chunk is
decompressed (none, bz2, lz4) and its connection and message records read. The chunk cut by
the end of the file gives the messages written whole before the cut when it is uncompressed
(lz4 as far as its blocks go; a bz2 chunk is one bz2 block, so it gives nothing). The scan
stops at the first record that does not parse (no resynchronisation in ROS 1 bags).
"""

from __future__ import annotations

import bz2
import mmap
import struct
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

from vssm_ros.data.bag_recovery import (ChannelDef, Lost, NotThisFormat, Segment, StorageScan,
                                        mapped_storage)

MAGIC = b'#ROSBAG V2.0\n'
OP_MSGDATA, OP_BAGHEADER, OP_CHUNK, OP_CONNECTION = 0x02, 0x03, 0x05, 0x07
_U32 = struct.Struct('<I')
Message = Tuple[int, int, bytes]   # (connection id, log time ns, raw)
Record = Tuple[Dict[str, bytes], int, int]   # (header fields, data start, data end)


def _fields(buf: bytes, pos: int, end: int) -> Optional[Dict[str, bytes]]:
    """The name=value fields of a record header in buf[pos:end], or None if malformed."""
    out: Dict[str, bytes] = {}
    while pos < end:
        if pos + 4 > end:
            return None
        (n,) = _U32.unpack_from(buf, pos)
        name, sep, value = bytes(buf[pos + 4:pos + 4 + n]).partition(b'=')
        if not sep or pos + 4 + n > end:
            return None
        out[name.decode('latin-1')] = value
        pos += 4 + n
    return out


def _record(buf: bytes, pos: int, end: int, cut_ok: bool = False) -> Optional[Record]:
    """The record at ``pos``: (fields, data start, data end), or None when it does not parse
    or runs past ``end`` (``cut_ok``: its data may run past; data end is then > ``end``)."""
    if pos + 4 > end:
        return None
    (hlen,) = _U32.unpack_from(buf, pos)
    if pos + 8 + hlen > end:
        return None
    fields = _fields(buf, pos + 4, pos + 4 + hlen)
    if not fields or len(fields.get('op', b'')) != 1:
        return None
    (dlen,) = _U32.unpack_from(buf, pos + 4 + hlen)
    start = pos + 8 + hlen
    if start + dlen > end and not cut_ok:
        return None
    return fields, start, start + dlen


def _records(buf: bytes, pos: int, end: int) -> Iterator[Tuple[int, Record]]:
    while True:
        rec = _record(buf, pos, end)
        if rec is None:
            return
        yield pos, rec
        pos = rec[2]


def _normalize_type(ros1_type: str) -> str:
    pkg, _, name = ros1_type.partition('/')
    return f'{pkg}/msg/{name}' if name and '/msg/' not in ros1_type else ros1_type


def _normalize_topic(name: str) -> str:
    # As rosbags does: repeated slashes collapse.
    return ('/' if name.startswith('/') else '') + '/'.join(x for x in name.split('/') if x)


def _walk(buf: bytes, end: int, scan: Optional[StorageScan], ids: Optional[Set[int]],
          out: List[Message]) -> None:
    """Append the messages of the records of a chunk's data; connections go to ``scan``."""
    for _, (fields, start, stop) in _records(buf, 0, end):
        op = fields['op'][0]
        if op == OP_MSGDATA and len(fields.get('conn', b'')) == 4 and \
                len(fields.get('time', b'')) == 8:
            (conn,) = _U32.unpack(fields['conn'])
            sec, nsec = struct.unpack('<II', fields['time'])
            if ids is None or conn in ids:
                out.append((conn, sec * 1_000_000_000 + nsec, bytes(buf[start:stop])))
        elif op == OP_CONNECTION and scan is not None:
            _connection(fields, buf[start:stop], scan)


def _connection(fields: Dict[str, bytes], data: bytes, scan: StorageScan) -> None:
    info = _fields(data, 0, len(data)) or {}
    if len(fields.get('conn', b'')) != 4 or 'type' not in info:
        return
    (conn,) = _U32.unpack(fields['conn'])
    topic = _normalize_topic(fields.get('topic', b'').decode())
    msgdef = info.get('message_definition', b'').decode()
    scan.channels[conn] = ChannelDef(topic, _normalize_type(info['type'].decode()),
                                     'msg' if msgdef else '', msgdef)


def _chunk(buf: bytes, fields: Dict[str, bytes], start: int, stop: int, cut: bool,
           scan: Optional[StorageScan], ids: Optional[Set[int]], out: List[Message]) -> str:
    """Read a chunk's data buf[start:stop]: '' when its messages are in ``out``, else why not.
    ``cut``: the data runs past the end of the file."""
    compression = fields.get('compression', b'').decode('latin-1')
    data = buf[start:stop]
    try:
        if compression == 'none':
            raw = bytes(data)
        elif compression == 'bz2':
            raw = bz2.BZ2Decompressor().decompress(data) if cut else bz2.decompress(data)
        elif compression == 'lz4':
            import lz4.frame
            raw = (lz4.frame.LZ4FrameDecompressor().decompress(data) if cut
                   else lz4.frame.decompress(data))
        else:
            return f'unsupported compression {compression!r}'
    except Exception as err:
        return f'cannot decompress ({type(err).__name__}: {err})'
    size = _U32.unpack(fields['size'])[0] if len(fields.get('size', b'')) == 4 else len(raw)
    if not cut and len(raw) != size:
        return f'size mismatch ({len(raw)} bytes, its header says {size})'
    _walk(raw, min(size, len(raw)), scan, ids, out)
    return ''


def scan_ros1(path: Path) -> StorageScan:
    """Scan a ROS 1 bag for its intact messages (see the module docstring)."""
    no_magic = 'no "#ROSBAG V2.0" line at its start'
    with mapped_storage(path, MAGIC, no_magic) as (scan, buf, size):
        _scan_records(buf, size, scan)
    scan.reader = lambda seg, ids: _read_segment(scan.path, seg, ids)
    return scan


def _scan_records(buf: mmap.mmap, size: int, scan: StorageScan) -> None:
    pos = len(MAGIC)
    head = _record(buf, pos, size)
    if head is None or head[0]['op'][0] != OP_BAGHEADER:
        raise NotThisFormat('no bag header record after the version line')
    index_pos = struct.unpack('<Q', head[0]['index_pos'])[0] if len(
        head[0].get('index_pos', b'')) == 8 else 0
    end = index_pos if 0 < index_pos <= size else size
    pos = head[2]
    scan.bytes_read = pos
    while pos < end:
        rec = _record(buf, pos, end, cut_ok=True)
        if rec is None:
            scan.lost.append(Lost(f'bytes {pos}-{size}', 'not a readable record; the scan '
                                                         'stops here'))
            break
        fields, start, stop = rec
        cut = stop > end
        op = fields['op'][0]
        if op == OP_CHUNK:
            out: List[Message] = []
            why = _chunk(buf, fields, start, min(stop, end), cut, scan, None, out)
            scan.add_chunk(out, pos, min(stop, end), 'partial' if cut else 'chunk', why)
            if cut:
                scan.lost.append(Lost(f'chunk at byte {pos}', f'cut by the end of the file '
                                      f'after {end - pos} bytes; ' +
                                      (why or f'{len(out)} whole messages read from it')))
        elif op == OP_MSGDATA and not cut:   # unchunked messages (not written by rosbag)
            out = []
            _walk(buf[pos:stop], stop - pos, None, None, out)
            scan.add_chunk(out, pos, stop, 'run', '')
        elif not cut:   # connections, chunk indexes
            if op == OP_CONNECTION:
                _connection(fields, buf[start:stop], scan)
            scan.bytes_read += stop - pos
        if cut:
            break
        pos = stop
    if pos >= end == index_pos:
        scan.bytes_read += size - end   # the index, intact (not needed)
    _report_index(scan, index_pos, size)


def _report_index(scan: StorageScan, index_pos: int, size: int) -> None:
    if index_pos == 0:
        scan.lost.append(Lost('index', 'never written (the recorder did not close the bag)'))
    elif index_pos > size:
        scan.lost.append(Lost('index', f'cut off (it was to start at byte {index_pos}; the file '
                                       f'ends at {size})'))


def _read_segment(path: Path, seg: Segment, ids: Set[int]) -> Iterator[Message]:
    """The messages of a chunk (or unchunked run) found by the scan, connections ``ids``."""
    with open(path, 'rb') as f:
        f.seek(seg.start)
        buf = f.read(seg.end - seg.start)
    out: List[Message] = []
    if seg.kind == 'run':
        _walk(buf, len(buf), None, ids, out)
    else:
        rec = _record(buf, 0, len(buf), cut_ok=True)
        why = 'not a chunk' if rec is None else _chunk(
            buf, rec[0], rec[1], min(rec[2], len(buf)), seg.kind == 'partial', None, ids, out)
        if why:
            raise OSError(f'{path}: the chunk at byte {seg.start} changed since it was read '
                          f'({why})')
    out.sort(key=lambda m: m[1])   # log-time order within a chunk, as rosbags reads one
    yield from out
