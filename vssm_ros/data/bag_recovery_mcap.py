# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Recovery scan of an mcap file without its summary (see ``bag_recovery``).

Reads the data section record by record (https://mcap.dev/spec): schemas, channels, messages
and chunks. A chunk is decompressed and its CRC checked; one that fails is reported lost and
skipped. The record cut by the end of the file, when it is a chunk, is decompressed as far as
it goes and gives every message written whole before the cut (an uncompressed or zstd chunk
gives all of them; lz4 loses the last block). After a record that does not parse, the scan
looks for the next intact chunk (a chunk header whose sizes fit and whose data decompresses to
its CRC). The ``mcap`` package's ``StreamReader`` was not used: it reads a chunk whole, so a
cut chunk would be lost entirely; lz4 and zstd come with rosbags already.
"""

from __future__ import annotations

import mmap
import struct
import sys
from binascii import crc32
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

from vssm_ros.data.bag_recovery import ChannelDef, Lost, Segment, StorageScan, mapped_storage

MAGIC = b'\x89MCAP0\r\n'
OP_FOOTER, OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK, OP_DATA_END = 0x02, 3, 4, 5, 6, 0x0F
_KNOWN_OPS = set(range(0x01, 0x10))   # 0x80-0xFF are user records (skipped)
_DEF_FORMATS = {'ros2msg': 'msg', 'ros2idl': 'idl', 'omgidl': 'idl'}
_U16, _U32, _U64 = struct.Struct('<H'), struct.Struct('<I'), struct.Struct('<Q')
_CHUNK_HEAD = struct.Struct('<QQQI')   # start, end, uncompressed size, uncompressed CRC
_MESSAGE_HEAD = struct.Struct('<HIQQ')   # channel, sequence, log time, publish time
Message = Tuple[int, int, bytes]   # (channel id, log time ns, raw)


def _zstd() -> object:
    if sys.version_info >= (3, 14):
        from compression import zstd
    else:
        from backports import zstd
    return zstd


def _decompress(data: bytes, compression: str, whole: bool) -> bytes:
    """A chunk's records; ``whole=False``: as much as a cut-off stream gives."""
    if compression == '':
        return bytes(data)
    if compression == 'zstd':
        return _zstd().ZstdDecompressor().decompress(data)
    if compression == 'lz4':
        import lz4.frame
        return lz4.frame.LZ4FrameDecompressor().decompress(data) if not whole else \
            lz4.frame.decompress(data)
    raise ValueError(f'unsupported chunk compression {compression!r}')


def _records(buf: bytes, pos: int, end: int) -> Iterator[Tuple[int, int, int]]:
    """(opcode, body start, body end) of the complete, plausible records in buf[pos:end]."""
    while pos + 9 <= end:
        op = buf[pos]
        (length,) = _U64.unpack_from(buf, pos + 1)
        if (op not in _KNOWN_OPS and op < 0x80) or length > end - pos - 9:
            return
        yield op, pos + 9, pos + 9 + length
        pos += 9 + length


def _string(buf: bytes, pos: int) -> Tuple[str, int]:
    (n,) = _U32.unpack_from(buf, pos)
    return bytes(buf[pos + 4:pos + 4 + n]).decode(), pos + 4 + n


class _Defs:
    """Schemas and channels met so far."""

    def __init__(self, scan: StorageScan) -> None:
        self.scan = scan
        self.schemas: Dict[int, Tuple[str, str, str]] = {}

    def add(self, buf: bytes, op: int, start: int) -> None:
        (rid,) = _U16.unpack_from(buf, start)
        if op == OP_SCHEMA:
            name, p = _string(buf, start + 2)
            encoding, p = _string(buf, p)
            text, _ = _string(buf, p)
            self.schemas[rid] = (name, _DEF_FORMATS.get(encoding, ''), text)
        else:
            (schema_id,) = _U16.unpack_from(buf, start + 2)
            topic, _ = _string(buf, start + 4)
            name, fmt, text = self.schemas.get(schema_id, ('', '', ''))
            self.scan.channels[rid] = ChannelDef(topic, name, fmt, text)


def _walk(buf: bytes, pos: int, end: int, defs: Optional[_Defs], ids: Optional[Set[int]],
          out: List[Message]) -> int:
    """Append the messages of the records in buf[pos:end] (definitions go to ``defs``); only
    channels in ``ids`` when given. Returns where the complete records end."""
    stop = pos
    for op, start, stop in _records(buf, pos, end):
        if op == OP_MESSAGE and stop - start >= _MESSAGE_HEAD.size:
            channel, _, log_ns, _ = _MESSAGE_HEAD.unpack_from(buf, start)
            if ids is None or channel in ids:
                out.append((channel, log_ns, bytes(buf[start + _MESSAGE_HEAD.size:stop])))
        elif op in (OP_SCHEMA, OP_CHANNEL) and defs is not None:
            defs.add(buf, op, start)
    return stop


def _chunk_head(buf: bytes, start: int, end: int) -> Optional[Tuple[int, int, str, int, int]]:
    """(uncompressed size, CRC, compression, records start, records length) of a chunk whose
    body starts at ``start`` (``end``: end of its record, or of the file when cut), or None
    when its header does not look like one."""
    try:
        t0, t1, size, crc = _CHUNK_HEAD.unpack_from(buf, start)
        compression, p = _string(buf, start + _CHUNK_HEAD.size)
        (length,) = _U64.unpack_from(buf, p)
    except (struct.error, UnicodeDecodeError):
        return None
    if compression not in ('', 'zstd', 'lz4') or t0 > t1 or not 0 < length <= 2 ** 40:
        return None
    return size, crc, compression, p + 8, length


def _chunk(buf: bytes, pos: int, end: int, cut: bool, defs: Optional[_Defs],
           ids: Optional[Set[int]], out: List[Message]) -> str:
    """Read the chunk record at ``pos``: '' when its messages are in ``out``, else why not.
    ``cut``: the record runs past the end of the file (``end``)."""
    head = _chunk_head(buf, pos + 9, end)
    if head is None:
        return 'not a valid chunk header'
    size, crc, compression, rec_start, rec_len = head
    if not cut and rec_start + rec_len != end:
        return 'chunk sizes do not add up'
    data = buf[rec_start:min(rec_start + rec_len, end)]
    try:
        raw = _decompress(data, compression, whole=not cut)
    except Exception as err:
        return f'cannot decompress ({type(err).__name__}: {err})'
    if not cut and (len(raw) != size or (crc and crc32(raw) != crc)):
        n = sum(op == OP_MESSAGE for op, _, _ in _records(raw, 0, len(raw)))
        return (f'{"CRC" if len(raw) == size else "size"} mismatch; its {n} message records '
                'are not trusted')
    if _walk(raw, 0, min(len(raw), size), defs, ids, out) != size and not cut:
        return 'records do not fill the chunk'
    return ''


def _resync(buf: bytes, pos: int, size: int) -> Optional[int]:
    """The offset of the next intact chunk record after ``pos`` (or of a chunk cut by the end
    of the file whose sizes add up and that gives a message), or None."""
    while True:
        pos = buf.find(b'\x06', pos, size - 9)
        if pos < 0:
            return None
        (length,) = _U64.unpack_from(buf, pos + 1)
        if 40 <= length <= size - pos - 9:
            if _chunk(buf, pos, pos + 9 + length, False, None, set(), []) == '':
                return pos
        elif length > size - pos - 9:
            head = _chunk_head(buf, pos + 9, size)
            out: List[Message] = []
            if head is not None and head[3] + head[4] == pos + 9 + length and \
                    _chunk(buf, pos, size, True, None, None, out) == '' and out:
                return pos
        pos += 1


def scan_mcap(path: Path) -> StorageScan:
    """Scan an mcap file for its intact messages (see the module docstring)."""
    with mapped_storage(path, MAGIC, 'no mcap magic at its start') as (scan, buf, size):
        defs = _Defs(scan)
        scan.bytes_read = len(MAGIC)
        pos: Optional[int] = len(MAGIC)
        while pos is not None:
            pos = _scan_from(buf, pos, size, defs, scan)
    scan.reader = lambda seg, ids: _read_segment(scan.path, seg, ids)
    return scan


def _scan_from(buf: mmap.mmap, pos: int, size: int, defs: _Defs,
               scan: StorageScan) -> Optional[int]:
    """Read records from ``pos`` on; at a damaged one, where to go on (None: done)."""
    run: List[Message] = []
    run_start = pos
    while pos < size:
        rec = next(_records(buf, pos, size), None)
        if rec is None or rec[0] == OP_CHUNK and _chunk_head(buf, pos + 9, size) is None:
            _flush_run(scan, run, run_start, pos)
            return _damaged(buf, pos, size, defs, scan)
        op, start, end = rec
        if op in (OP_FOOTER, OP_DATA_END):   # the summary follows: nothing more to read
            scan.bytes_read += size - pos
            break
        if op == OP_MESSAGE:
            if not run:
                run_start = pos
            _walk(buf, pos, end, defs, None, run)
        else:
            _flush_run(scan, run, run_start, pos)
            if op == OP_CHUNK:
                out: List[Message] = []
                why = _chunk(buf, pos, end, False, defs, None, out)
                scan.add_chunk(out, pos, end, 'chunk', why)
            else:   # definitions, message indexes, attachments, ...
                if op in (OP_SCHEMA, OP_CHANNEL):
                    defs.add(buf, op, start)
                scan.bytes_read += end - pos
        pos = end
    _flush_run(scan, run, run_start, pos)
    return None


def _damaged(buf: mmap.mmap, pos: int, size: int, defs: _Defs,
             scan: StorageScan) -> Optional[int]:
    """The record at ``pos`` does not fit or parse. A chunk cut by the end of the file gives
    the messages written whole before the cut; then the next intact chunk, if any (garbage in
    the middle of the file), is where the scan goes on."""
    nxt = _resync(buf, pos + 1, size)
    end = size if nxt is None else nxt
    if pos + 9 <= size and buf[pos] == OP_CHUNK and \
            pos + 9 + _U64.unpack_from(buf, pos + 1)[0] > end:
        out: List[Message] = []
        why = _chunk(buf, pos, end, True, defs, None, out)
        where = 'the end of the file' if nxt is None else f'damage at byte {nxt}'
        scan.lost.append(Lost(f'chunk at byte {pos}', f'cut by {where} after {end - pos} '
                              f'bytes; ' + (why or f'{len(out)} whole messages read from it')))
        if not why:
            scan.add_chunk(out, pos, end, 'partial', '')
    elif nxt is not None:
        scan.lost.append(Lost(f'bytes {pos}-{nxt}', 'not a readable record; skipped to the '
                                                    'next intact chunk'))
    if nxt is None:
        scan.lost.append(Lost('summary and footer', f'missing (no intact record after byte '
                                                    f'{pos}; the file ends at {size})'))
    return nxt


def _flush_run(scan: StorageScan, run: List[Message], start: int, end: int) -> None:
    if run:
        scan.add_chunk(list(run), start, end, 'run', '')
        run.clear()


def _read_segment(path: Path, seg: Segment, ids: Set[int]) -> Iterator[Message]:
    """The messages of a segment found by the scan, channels ``ids`` only."""
    out: List[Message] = []
    with open(path, 'rb') as f:
        f.seek(seg.start)
        buf = f.read(seg.end - seg.start)
    if seg.kind == 'run':
        _walk(buf, 0, len(buf), None, ids, out)
    else:
        why = _chunk(buf, 0, len(buf), seg.kind == 'partial', None, ids, out)
        if why:
            raise OSError(f'{path}: the chunk at byte {seg.start} changed since it was read '
                          f'({why})')
    out.sort(key=lambda m: m[1])   # log-time order within a chunk, as rosbags reads one
    yield from out
