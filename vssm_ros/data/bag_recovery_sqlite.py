# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Recovery of the rows of a damaged rosbag2 sqlite3 file (see ``bag_recovery``).

SQLite itself reads the file, through apsw (which rosbags brings) with a small VFS that shows
SQLite only the whole pages of the file and fails a read past them. SQLite refuses a file
shorter than its header says ('database disk image is malformed') unless told to accept it
(``writable_schema``); some SQLite builds then zero-fill the page the cut went through and
return rows whose data is silently zeros there (measured with Python's sqlite3 on SQLite
3.40: one depth image of a flight cut at 90 %; apsw's SQLite 3.54 reports an I/O error
instead). With the VFS, on any build, a row is returned only when all its pages are in the
file.

The messages table is read by id in one plain pass; where that fails, row by row past the rows
it cannot read (the next 64 ids one by one, then further ids at doubling distances), and on in
one pass from the next readable row. ``immutable=1``: no journal or WAL file is read or made
beside the bag (rows still in a WAL are not recovered).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple
from urllib.parse import quote

from vssm_ros.data.bag_recovery import ChannelDef, Lost, NotThisFormat, Segment, StorageScan

MAGIC = b'SQLite format 3\x00'
VFS_NAME = 'vssm-whole-pages'
PROBE_IDS = 64
"""Ids tried one by one after a row that cannot be read, before jumping further."""
_DEF_FORMATS = {'ros2msg': 'msg', 'ros2idl': 'idl'}
_vfs: Any = None


def _whole_pages_vfs() -> str:
    """Register (once) the VFS that hides the page cut in half; returns its name."""
    global _vfs
    import apsw

    class WholePagesFile(apsw.VFSFile):
        def __init__(self, name: Any, flags: Any) -> None:
            super().__init__('', name, flags)
            size = super().xFileSize()
            head = super().xRead(100, 0) if size >= 100 else b''
            (page,) = struct.unpack('>H', head[16:18]) if len(head) >= 18 else (0,)
            page = 65536 if page == 1 else page
            self.limit = size - size % page if page else size

        def xFileSize(self) -> int:
            return self.limit

        def xRead(self, amount: int, offset: int) -> bytes:
            if offset + amount > self.limit:
                raise apsw.IOError(f'page at byte {offset} is past the end of the file')
            return super().xRead(amount, offset)

    class WholePagesVFS(apsw.VFS):
        def __init__(self) -> None:
            super().__init__(VFS_NAME, base='')

        def xOpen(self, name: Any, flags: Any) -> Any:
            return WholePagesFile(name, flags)

    if _vfs is None:
        _vfs = WholePagesVFS()
    return VFS_NAME


def connect(path: Path) -> Any:
    """A read-only apsw connection to a possibly damaged sqlite3 file (whole pages only)."""
    import apsw
    uri = f'file:{quote(str(Path(path).resolve()))}?immutable=1'
    con = apsw.Connection(uri, flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI,
                          vfs=_whole_pages_vfs())
    con.execute('PRAGMA writable_schema=ON')   # accept a file shorter than its header says
    return con


def scan_sqlite(path: Path) -> StorageScan:
    """Scan a rosbag2 sqlite3 file for its readable messages (see the module docstring)."""
    import apsw
    scan = StorageScan(Path(path))
    with open(path, 'rb') as f:
        head = f.read(100)
        scan.bytes_total = f.seek(0, 2)
    if len(head) < 100 or not head.startswith(MAGIC):
        raise NotThisFormat('no SQLite header at its start')
    page = struct.unpack('>H', head[16:18])[0]
    page = 65536 if page == 1 else page
    (pages,) = struct.unpack('>I', head[28:32])
    whole = scan.bytes_total // page
    if pages > whole:
        scan.lost.append(Lost(f'pages {whole + 1}-{pages}', f'past the end of the file (it '
                              f'holds {whole} whole pages of the {pages} its header declares)'))
    con = connect(path)
    try:
        _read_topics(con, scan)
        last_read = _scan_rows(con, scan)
    except apsw.Error as err:
        scan.lost.append(Lost('the whole file', f'SQLite cannot read it: {err}'))
        last_read = 0
    finally:
        con.close()
    scan.bytes_read = min(scan.bytes_total, whole * page if last_read else 0)
    scan.reader = lambda seg, ids: _read_segment(scan.path, seg, ids)
    return scan


def _read_topics(con: Any, scan: StorageScan) -> None:
    import apsw
    defs: Dict[str, Tuple[str, str]] = {}
    try:
        for topic_type, encoding, text in con.execute(
                'SELECT topic_type, encoding, encoded_message_definition '
                'FROM message_definitions'):
            defs[topic_type] = (_DEF_FORMATS.get(encoding, ''), text)
    except apsw.Error:
        pass   # older bags have no message_definitions: the built-in types are used
    for tid, name, msgtype in con.execute('SELECT id, name, type FROM topics ORDER BY id'):
        fmt, text = defs.get(msgtype, ('', ''))
        scan.channels[int(tid)] = ChannelDef(str(name), str(msgtype), fmt, text)


class _Run:
    """Consecutive rows read in one pass."""

    def __init__(self) -> None:
        self.first: Optional[int] = None
        self.last = 0
        self.counts: Dict[int, int] = {}
        self.t0, self.t1 = 2 ** 63, -1

    def add(self, rid: int, topic: int, stamp: int) -> None:
        self.first = rid if self.first is None else self.first
        self.last = rid
        self.counts[topic] = self.counts.get(topic, 0) + 1
        self.t0, self.t1 = min(self.t0, stamp), max(self.t1, stamp)

    def segment(self) -> Optional[Segment]:
        if self.first is None:
            return None
        return Segment(self.first, self.last + 1, 'rows', self.counts, self.t0, self.t1)


def _scan_rows(con: Any, scan: StorageScan) -> int:
    """Read the messages table by id, past unreadable rows. Returns the last id read."""
    import apsw
    last = 0
    while True:
        run, error = _Run(), None
        try:
            for rid, topic, stamp, _ in con.execute(
                    'SELECT id, topic_id, timestamp, data FROM messages WHERE id > ? '
                    'ORDER BY id', (last,)):
                run.add(rid, topic, stamp)
                last = rid
        except apsw.Error as err:
            error = err
        seg = run.segment()
        if seg is not None:
            scan.segments.append(seg)
        if error is None:
            return last
        nxt = _next_readable(con, last)
        what = (f'rows after id {last}' if nxt is None else f'row {last + 1}'
                if nxt == last + 2 else f'rows {last + 1}-{nxt - 1}')
        scan.lost.append(Lost(what, f'unreadable: {error}'))
        if nxt is None:
            return last
        last = nxt - 1


def _readable(con: Any, rid: int) -> Optional[bool]:
    """Whether row ``rid`` and its data can be read (None: there is no such row)."""
    import apsw
    try:
        row = con.execute('SELECT length(data), data FROM messages WHERE id = ?',
                          (rid,)).fetchone()
    except apsw.Error:
        return False
    return None if row is None else True


def _next_readable(con: Any, last: int) -> Optional[int]:
    """The next readable row id after a failure past ``last``, or None."""
    import apsw
    for rid in range(last + 1, last + 1 + PROBE_IDS):
        if _readable(con, rid):
            return rid
    step = PROBE_IDS
    while step < 2 ** 40:
        step *= 2
        try:
            row = con.execute('SELECT id FROM messages WHERE id >= ? ORDER BY id LIMIT 1',
                              (last + step,)).fetchone()
        except apsw.Error:
            continue
        if row is None:
            return None
        if _readable(con, int(row[0])):
            return int(row[0])
    return None


def _read_segment(path: Path, seg: Segment, ids: Set[int]) -> Iterator[Tuple[int, int, bytes]]:
    """The messages of a run of rows found by the scan, topics ``ids`` only."""
    import apsw
    con = connect(path)
    rows: List[Tuple[int, int, bytes]] = []
    try:
        # The cursor must not step past the run's last row: the next one may be unreadable.
        for rid, topic, stamp, data in con.execute(
                'SELECT id, topic_id, timestamp, data FROM messages WHERE id >= ? ORDER BY id',
                (seg.start,)):
            if rid >= seg.end:
                break
            if topic in ids:
                rows.append((int(topic), int(stamp), bytes(data)))
            if rid == seg.end - 1:
                break
            if len(rows) >= 256:
                yield from rows
                rows.clear()
    except apsw.Error as err:
        raise OSError(f'{path}: rows {seg.start}-{seg.end - 1} could be read before but not '
                      f'now: {err}') from err
    finally:
        con.close()
    yield from rows
