# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Recovery of damaged bags: every intact message of a bag that cannot be opened normally.

The most common damage is a recording cut short (a power loss on a drone): an mcap without its
summary and footer, a sqlite3 file shorter than its header says, a ROS 1 bag without its index,
and a ROS 2 bag directory without metadata.yaml (rosbag2 writes it last). ``recover_bag`` reads
the storage files directly, without any index, in the order they were written:

- mcap (``bag_recovery_mcap``): a record-by-record scan; chunks whose CRC fails are skipped,
  the chunk cut by the end of the file gives the messages that were written whole before it;
- sqlite3 (``bag_recovery_sqlite``): SQLite itself, told to trust only the whole pages of the
  file, a plain read and then row by row past the rows it cannot read;
- ROS 1 (``bag_recovery_ros1``): a record-by-record scan of the chunks, as ``rosbag reindex``.

The result, ``RecoveredBag``, offers what ``BagReader`` needs of rosbags' ``AnyReader``
(``connections``, ``topics``, ``messages``, ``deserialize``, start and end time) and carries a
``RecoveryReport``: messages recovered per topic, time span, bytes read of the total, and what
was lost and why. Messages come in the order they were recorded (the receive order of a
recorder, i.e. log-time order), not re-sorted.
"""

from __future__ import annotations

import contextlib
import mmap
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from vssm_ros.errors import BagError

STORAGE_SUFFIXES = ('.mcap', '.db3')
"""Storage files of a ROS 2 bag directory that recovery reads."""


class ChannelDef(NamedTuple):
    """A topic of one storage file, as the file defines it."""

    topic: str
    msgtype: str
    """ROS 2 style ('sensor_msgs/msg/Image'), also for ROS 1."""
    msgdef_format: str
    """'msg', 'idl' or '' (no definition in the file)."""
    msgdef: str
    """The message definition text ('' when none)."""


class Segment(NamedTuple):
    """A stretch of a storage file whose messages were all read (a chunk, a run of rows)."""

    start: int
    """Where it starts: byte offset (mcap, ROS 1) or first row id (sqlite3)."""
    end: int
    """Where it ends (exclusive): byte offset or last row id + 1."""
    kind: str
    """Format-specific: 'chunk', 'partial' (a chunk cut by the end of the file), 'run', 'rows'."""
    counts: Dict[int, int]
    """Messages per channel id."""
    start_ns: int
    """Earliest log time in it."""
    end_ns: int
    """Latest log time in it."""


class Lost(NamedTuple):
    """Something of a storage file that could not be read."""

    what: str
    """Which part, e.g. 'chunk at byte 1048636 (1048620 bytes)'."""
    why: str
    """Why, with what is known of its messages, e.g. 'CRC mismatch; its 785 message records
    are not trusted' or 'cut by the end of the file after 424223 bytes; 319 whole messages
    read from it'."""


@dataclass
class StorageScan:
    """What a format scanner found in one storage file (filled by the scanner)."""

    path: Path
    channels: Dict[int, ChannelDef] = field(default_factory=dict)
    segments: List[Segment] = field(default_factory=list)
    lost: List[Lost] = field(default_factory=list)
    bytes_read: int = 0
    """Bytes of the file in intact records (with messages or not, e.g. indexes): the rest is
    what was lost."""
    bytes_total: int = 0
    """Size of the file."""
    reader: Any = None
    """``reader(segment, channel_ids) -> Iterator[(channel id, log ns, raw bytes)]``."""

    def add_chunk(self, msgs: Sequence[Tuple[int, int, Any]], start: int, end: int, kind: str,
                  why: str) -> None:
        """Record a chunk (or run of records) at bytes ``[start, end)`` of the mcap and ROS 1
        scanners: read, with its messages ``(channel id, log ns, raw)`` as a segment; or,
        with ``why``, lost (a 'partial' chunk's loss is recorded by its scanner, which
        knows where it was cut)."""
        if why:
            if kind != 'partial':
                self.lost.append(Lost(f'chunk at byte {start} ({end - start} bytes)', why))
            return
        self.bytes_read += end - start
        if msgs:
            counts: Dict[int, int] = {}
            for channel, _, _ in msgs:
                counts[channel] = counts.get(channel, 0) + 1
            stamps = [m[1] for m in msgs]
            self.segments.append(Segment(start, end, kind, counts, min(stamps), max(stamps)))


class NotThisFormat(Exception):
    """Raised by a scanner whose file does not start like its format (not a bag of it)."""


@contextlib.contextmanager
def mapped_storage(path: Path, magic: bytes, not_this: str
                   ) -> Iterator[Tuple[StorageScan, mmap.mmap, int]]:
    """A storage file memory-mapped for a scanner, with its ``StorageScan`` (``bytes_total``
    set) and its size; ``NotThisFormat(not_this)`` unless it starts with ``magic``."""
    scan = StorageScan(Path(path))
    with open(path, 'rb') as f:
        size = scan.bytes_total = f.seek(0, 2)
        if size < len(magic) or f.seek(0) != 0 or f.read(len(magic)) != magic:
            raise NotThisFormat(not_this)
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            yield scan, buf, size


@dataclass
class RecoveryReport:
    """What recovery found: attached to sources as ``recovery`` (None for an intact bag)."""

    path: str
    kind: str
    """'mcap', 'sqlite3' or 'ros1'."""
    damage: str
    """Why the bag could not be opened normally (the reader's error, or no metadata.yaml)."""
    files: List[str] = field(default_factory=list)
    per_topic: Dict[str, int] = field(default_factory=dict)
    """Messages recovered per topic."""
    start_ns: Optional[int] = None
    end_ns: Optional[int] = None
    bytes_read: int = 0
    bytes_total: int = 0
    lost: List[Lost] = field(default_factory=list)

    @property
    def messages(self) -> int:
        """Messages recovered, all topics."""
        return sum(self.per_topic.values())

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict (for metrics.json)."""
        span = (self.end_ns - self.start_ns) * 1e-9 if self.start_ns is not None else 0.0
        return {'path': self.path, 'kind': self.kind, 'damage': self.damage,
                'files': list(self.files), 'messages': self.messages,
                'per_topic': dict(sorted(self.per_topic.items())),
                'start_ns': self.start_ns, 'end_ns': self.end_ns, 'duration_s': span,
                'bytes_read': self.bytes_read, 'bytes_total': self.bytes_total,
                'lost': [lost._asdict() for lost in self.lost]}

    def warning_line(self) -> str:
        """One line for the user: what was recovered and what was lost."""
        d = self.to_dict()
        share = 100.0 * self.bytes_read / self.bytes_total if self.bytes_total else 0.0
        lost = '; '.join(f'{x.what}: {x.why}' for x in self.lost[:3])
        more = f' (+{len(self.lost) - 3} more)' if len(self.lost) > 3 else ''
        return (f'warning: bag {self.path} is damaged ({self.damage}); recovered '
                f'{self.messages} messages on {len(self.per_topic)} topics over '
                f'{d["duration_s"]:.2f} s from {self.bytes_read} of {self.bytes_total} bytes '
                f'({share:.1f} %); lost: {lost or "nothing found"}{more}')


class _Conn(NamedTuple):
    """A connection as ``BagReader`` sees it (the fields of rosbags' Connection it uses)."""

    id: int
    topic: str
    msgtype: str
    file_index: int
    channel_id: int


class _TopicInfo(NamedTuple):
    msgtype: Optional[str]
    msgcount: int


def _natural_key(path: Path) -> Tuple[Any, ...]:
    # rosbag2 names split files bag_0.mcap, bag_1.mcap, ..., bag_10.mcap.
    return tuple(int(s) if s.isdigit() else s for s in re.split(r'(\d+)', path.name))


def storage_files(directory: Path) -> List[Path]:
    """The .mcap / .db3 files of a ROS 2 bag directory, in recording order (by the index in
    their names, as rosbag2 numbers split files); files of one kind only."""
    found = [p for p in directory.iterdir() if p.is_file() and p.suffix in STORAGE_SUFFIXES]
    kinds = {p.suffix for p in found}
    if len(kinds) > 1:
        raise BagError(f'{directory} holds both .mcap and .db3 files; cannot tell which are the '
                       'bag')
    return sorted(found, key=_natural_key)


class RecoveredBag:
    """The intact messages of a damaged bag, read without an index (see the module docstring).

    Duck-types the part of rosbags' ``AnyReader`` that ``BagReader`` uses; it holds no open
    file between calls, so several readers may share it.
    """

    def __init__(self, scans: Sequence[StorageScan], fmt: str, report: RecoveryReport) -> None:
        self.scans = list(scans)
        self.fmt = fmt
        self.report = report
        self.connections: List[_Conn] = []
        self._counts: Dict[int, int] = {}
        for i, scan in enumerate(self.scans):
            for cid, ch in sorted(scan.channels.items()):
                n = sum(seg.counts.get(cid, 0) for seg in scan.segments)
                conn = _Conn(len(self.connections), ch.topic, ch.msgtype, i, cid)
                self.connections.append(conn)
                self._counts[conn.id] = n
        segs = [seg for scan in self.scans for seg in scan.segments if seg.counts]
        self.start_time = min((s.start_ns for s in segs), default=0)
        self.end_time = max((s.end_ns + 1 for s in segs), default=0)
        self._typestore = _typestore_from_definitions(
            [ch for scan in self.scans for ch in scan.channels.values()], fmt, report)

    @property
    def topics(self) -> Dict[str, _TopicInfo]:
        """Topic -> (message type, messages recovered)."""
        out: Dict[str, _TopicInfo] = {}
        for conn in self.connections:
            have = out.get(conn.topic)
            count = self._counts[conn.id] + (have.msgcount if have else 0)
            msgtype = conn.msgtype if have is None or have.msgtype == conn.msgtype else None
            out[conn.topic] = _TopicInfo(msgtype, count)
        return out

    def messages(self, connections: Sequence[_Conn] = (), start: Optional[int] = None,
                 stop: Optional[int] = None) -> Iterator[Tuple[_Conn, int, bytes]]:
        """(connection, log time ns, raw message) in recording order, only log times in
        [start, stop) when given."""
        wanted = connections or self.connections
        lo = -1 if start is None else start
        hi = 2 ** 63 if stop is None else stop
        for i, scan in enumerate(self.scans):
            by_channel = {c.channel_id: c for c in wanted if c.file_index == i}
            if not by_channel:
                continue
            for seg in scan.segments:
                if seg.end_ns < lo or seg.start_ns >= hi or not any(
                        seg.counts.get(cid) for cid in by_channel):
                    continue
                for cid, log_ns, raw in scan.reader(seg, set(by_channel)):
                    if lo <= log_ns < hi and cid in by_channel:
                        yield by_channel[cid], log_ns, raw

    def deserialize(self, raw: bytes, msgtype: str) -> Any:
        """The message object of raw bytes (CDR for ROS 2, ROS 1 serialisation for ROS 1)."""
        from vssm_ros.data.bags import bag_typestore
        store = self._typestore if msgtype in self._typestore.fielddefs else bag_typestore(
            self.fmt)
        if self.fmt == 'ros1':
            return store.deserialize_ros1(raw, msgtype)
        return store.deserialize_cdr(raw, msgtype)

    def close(self) -> None:
        """Nothing to close (files are opened per call)."""


def _typestore_from_definitions(channels: Sequence[ChannelDef], fmt: str,
                                report: RecoveryReport) -> Any:
    """A typestore of the definitions the bag carries (as rosbags' AnyReader builds it); types
    without a usable definition fall back to ``bag_typestore(fmt)`` when deserialising."""
    from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore
    typs: Dict[str, Any] = {}
    sep = '=' * 80 + '\n'
    for ch in {c.msgtype: c for c in channels if c.msgdef_format}.values():
        try:
            if ch.msgdef_format == 'msg':
                typs.update(get_types_from_msg(ch.msgdef, ch.msgtype))
            elif ch.msgdef.startswith(f'{sep}IDL: '):
                for part in ch.msgdef.split(sep)[1:]:
                    typs.update(get_types_from_idl(part.split('\n', 1)[1]))
            else:
                typs.update(get_types_from_idl(ch.msgdef))
        except Exception as err:  # a damaged definition: the built-in type is used instead
            report.lost.append(Lost(f'message definition of {ch.msgtype}',
                                    f'unreadable ({type(err).__name__}: {err}); using the '
                                    'built-in definition'))
    store = get_typestore(Stores.EMPTY)
    try:
        store.register(typs)
    except Exception as err:
        report.lost.append(Lost('message definitions', f'inconsistent ({err}); using the '
                                                       'built-in definitions'))
        store = get_typestore(Stores.EMPTY)
    return store


def _scanner(fmt: str) -> Any:
    if fmt == 'mcap':
        from vssm_ros.data.bag_recovery_mcap import scan_mcap
        return scan_mcap
    if fmt == 'sqlite3':
        from vssm_ros.data.bag_recovery_sqlite import scan_sqlite
        return scan_sqlite
    from vssm_ros.data.bag_recovery_ros1 import scan_ros1
    return scan_ros1


def recover_bag(path: Path, damage: str) -> RecoveredBag:
    """Read what is intact of a damaged bag (a ROS 1 ``.bag`` file or a ROS 2 bag directory).

    Args:
        path: the bag.
        damage: why it could not be opened normally (goes into the report).

    Raises:
        BagError: the path holds no bag of a known format (no storage file, not a file of the
            format), or no message could be recovered.
    """
    path = Path(path)
    if path.is_dir():
        files = storage_files(path)
        if not files:
            raise BagError(f'cannot open bag {path}: {damage}; and it holds no .mcap or .db3 '
                           'file to recover messages from')
        fmt = 'mcap' if files[0].suffix == '.mcap' else 'sqlite3'
    else:
        files, fmt = [path], 'ros1'
    report = RecoveryReport(str(path), fmt, damage, files=[str(f) for f in files])
    scan = _scanner(fmt)
    scans = []
    for f in files:
        try:
            scans.append(scan(f))
        except NotThisFormat as err:
            raise BagError(f'cannot open bag {path} (truncated or corrupt?): {damage}; and '
                           f'{f} is not a {fmt} file ({err}): not a bag, or damaged beyond '
                           'recovery') from err
        except OSError as err:
            raise BagError(f'cannot read {f}: {err}') from err
    bag = RecoveredBag(scans, fmt, report)
    report.per_topic = {t: info.msgcount for t, info in bag.topics.items()}
    report.bytes_read = sum(s.bytes_read for s in scans)
    report.bytes_total = sum(s.bytes_total for s in scans)
    report.lost[:0] = [lost for s in scans for lost in s.lost]
    if report.messages:
        report.start_ns, report.end_ns = bag.start_time, bag.end_time - 1
    else:
        lost = '; '.join(f'{x.what}: {x.why}' for x in report.lost) or 'nothing readable'
        raise BagError(f'cannot open bag {path} (truncated or corrupt?): {damage}; recovery '
                       f'found no intact message ({lost})')
    return bag
