# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Recovery of damaged bags: cut mcap, sqlite3 and ROS 1 files, ROS 2 bags without
metadata.yaml, a chunk that fails its CRC; what the sources and the replay make of them.

Oracles: for mcap and ROS 1 (uncompressed chunks) a message was written whole before a cut
when its raw bytes, found in the file in order, end before it; for sqlite3 when every page of
its row (leaf and overflow pages, found by walking the table's b-tree in the intact file) is
a whole page of the cut file.
"""

import binascii
import contextlib
import io
import json
import logging
import shutil
import struct
from collections import Counter
from pathlib import Path

import lz4.frame
import pytest

from vssm_ros.cli import replay
from vssm_ros.eval.report import summary_table
from vssm_ros.cli.paths import config_path
from vssm_ros.config import SyntheticConfig, VssmConfig, load_config
from vssm_ros.data.bag_recovery import recover_bag
from vssm_ros.data.bag_recovery_mcap import _decompress
from vssm_ros.data.bag_recovery_sqlite import connect
from vssm_ros.data.bags import BagReader, bag_msg_types, bag_typestore, stream_messages
from vssm_ros.data.sources import open_source
from vssm_ros.data.synthetic import generate_flight, realsense_layout, write_flight
from vssm_ros.data.trajectory import read_tum_trajectory
from vssm_ros.errors import BagError, SourceError
from vssm_ros.types import Frame, ImuSample

# 12 s of 64x48 frames at 10 Hz, IMU at 100 Hz: 1807 messages, 2.5 MB, three mcap chunks.
FLIGHT = SyntheticConfig(duration_s=12.0, width=64, height=48, camera_rate_hz=10.0,
                         imu_rate_hz=100.0)
STORE = {'mcap': 'rosbag2_mcap.mcap', 'sqlite3': 'rosbag2_sqlite3.db3'}
HUSKY_MESSAGES = 16806   # all topics of husky_imu_odom_gps.bag


@pytest.fixture(scope='module')
def flight_bags(tmp_path_factory):
    """The flight as mcap, sqlite3 and ROS 1 bags, with each bag's messages as rosbags reads
    them from the intact bag: [(topic, log ns, raw bytes)] (here in the order written)."""
    from rosbags.highlevel import AnyReader
    root = tmp_path_factory.mktemp('flight')
    bags = write_flight(generate_flight(FLIGHT), root, ('mcap', 'sqlite3', 'ros1'))
    intact = {}
    for fmt, path in bags.items():
        with AnyReader([path], default_typestore=bag_typestore('mcap')) as reader:
            intact[fmt] = [(c.topic, t, bytes(r)) for c, t, r in reader.messages()]
    return bags, intact


def _cut_copy(bag, fmt, frac, dest, metadata=True):
    """A copy of ``bag`` whose storage file is cut at ``frac`` of its bytes."""
    if fmt == 'ros1':
        raw = bag.read_bytes()
        dest = dest / bag.name
        dest.write_bytes(raw[:int(len(raw) * frac)])
        return dest, int(len(raw) * frac)
    dest = dest / bag.name
    dest.mkdir()
    raw = (bag / STORE[fmt]).read_bytes()
    (dest / STORE[fmt]).write_bytes(raw[:int(len(raw) * frac)])
    if metadata:
        shutil.copy(bag / 'metadata.yaml', dest / 'metadata.yaml')
    return dest, int(len(raw) * frac)


def _recovered(path):
    """[(topic, log ns, raw)] of a damaged bag, and its recovery report."""
    bag = recover_bag(path, 'test')
    return [(c.topic, t, bytes(r)) for c, t, r in bag.messages()], bag.report


def _written_before(file_bytes, msgs, cut):
    """How many of ``msgs`` (in file order) lie wholly in file_bytes[:cut]."""
    pos = n = 0
    for _, _, raw in msgs:
        at = file_bytes.find(raw, pos)
        assert at >= 0, 'message not found verbatim in the file'
        if at + len(raw) > cut:
            break
        n, pos = n + 1, at + len(raw)
    return n


def _chunk_offsets(mcap_path):
    """(start, end) of every chunk record of an intact mcap, from its summary (rosbags)."""
    from rosbags.rosbag2.storage_mcap import McapReader
    reader = McapReader(mcap_path)
    reader.open()
    try:
        return [(c.chunk_start_offset, c.chunk_start_offset + c.chunk_length)
                for c in reader.chunks]
    finally:
        reader.close()


@pytest.mark.parametrize('fmt', ['mcap', 'ros1'])
@pytest.mark.parametrize('frac', [0.97, 0.6, 0.2])
def test_cut_bag_gives_every_message_written_before_the_cut(flight_bags, tmp_path, fmt, frac):
    bags, intact = flight_bags
    path, cut = _cut_copy(bags[fmt], fmt, frac, tmp_path)
    raw = (bags[fmt] if fmt == 'ros1' else bags[fmt] / STORE[fmt]).read_bytes()
    n = _written_before(raw, intact[fmt], cut)
    got, report = _recovered(path)
    assert got == intact[fmt][:n]
    assert 0 < n < len(intact[fmt])
    assert report.per_topic == dict(Counter(t for t, _, _ in intact[fmt][:n]))
    assert report.start_ns == intact[fmt][0][1] and report.end_ns == intact[fmt][n - 1][1]
    assert report.bytes_total == cut and 0.9 * cut < report.bytes_read <= cut
    assert any('cut by the end of the file' in x.why for x in report.lost)
    if fmt == 'mcap':   # more than the chunks that were complete: the cut one gives its part
        complete = max(e for _, e in _chunk_offsets(bags[fmt] / STORE[fmt]) if e <= cut) \
            if frac > 0.5 else 0
        assert n > _written_before(raw, intact[fmt], complete)
    else:
        assert any(x.what == 'index' and 'cut off' in x.why for x in report.lost)


def _sqlite_row_pages(path, root_page=6):
    """{row id: [pages]} of the table whose b-tree root is ``root_page`` (rosbags: messages)."""
    raw = Path(path).read_bytes()
    page = struct.unpack('>H', raw[16:18])[0]
    usable = page - raw[20]
    rows = {}

    def varint(b, i):
        v = 0
        for k in range(9):
            c = b[i + k]
            if k == 8:
                return (v << 8) | c, i + 9
            v = (v << 7) | (c & 0x7F)
            if c < 0x80:
                return v, i + k + 1

    def walk(n):
        p = raw[(n - 1) * page:n * page]
        h = 100 if n == 1 else 0
        kind, cells = p[h], struct.unpack('>H', p[h + 3:h + 5])[0]
        hl = 12 if kind == 5 else 8
        ptrs = [struct.unpack('>H', p[h + hl + 2 * i:h + hl + 2 * i + 2])[0]
                for i in range(cells)]
        if kind == 5:   # interior table page: children, then the right-most child
            for q in ptrs:
                walk(struct.unpack('>I', p[q:q + 4])[0])
            walk(struct.unpack('>I', p[h + 8:h + 12])[0])
            return
        for q in ptrs:   # leaf table page: payload size, row id, payload, overflow chain
            size, i = varint(p, q)
            rid, i = varint(p, i)
            pages, x = [n], usable - 35
            if size > x:
                m = (usable - 12) * 32 // 255 - 23
                k = m + (size - m) % (usable - 4)
                ov = struct.unpack('>I', p[i + (k if k <= x else m):][:4])[0]
                while ov:
                    pages.append(ov)
                    ov = struct.unpack('>I', raw[(ov - 1) * page:(ov - 1) * page + 4])[0]
            rows[rid] = pages

    walk(root_page)
    return rows, page


@pytest.mark.parametrize('frac', [0.97, 0.9, 0.5])
def test_cut_sqlite3_gives_every_row_on_whole_pages(flight_bags, tmp_path, frac):
    import sqlite3
    bags, _ = flight_bags
    db = bags['sqlite3'] / STORE['sqlite3']
    path, cut = _cut_copy(bags['sqlite3'], 'sqlite3', frac, tmp_path)
    rows, page = _sqlite_row_pages(db)
    with contextlib.closing(sqlite3.connect(db)) as con:
        topics = dict(con.execute('SELECT id, name FROM topics'))
        table = con.execute('SELECT id, topic_id, timestamp, data FROM messages ORDER BY id')
        expect = [(topics[tid], t, bytes(d)) for rid, tid, t, d in table
                  if max(rows[rid]) * page <= cut]
    got, report = _recovered(path)
    assert got == expect
    assert 0.8 * frac * len(rows) < len(got) < len(rows)
    # SQLite sees the whole pages only (not the one the cut went through).
    con = connect(path / STORE['sqlite3'])
    assert next(con.execute('PRAGMA page_count'))[0] == cut // page
    con.close()
    assert report.messages == len(expect) and report.bytes_total == cut
    assert report.lost[0].why.startswith('past the end of the file')


def test_bags_without_metadata_yaml_are_read_whole(flight_bags, tmp_path):
    bags, intact = flight_bags
    for fmt in ('mcap', 'sqlite3'):
        path = tmp_path / fmt
        shutil.copytree(bags[fmt], path)
        (path / 'metadata.yaml').unlink()
        with pytest.raises(BagError, match='directory without metadata.yaml'):
            BagReader(path)   # only when asked to recover
        got, report = _recovered(path)
        assert got == intact[fmt]
        assert report.lost == [] and report.bytes_read == report.bytes_total


def test_source_of_a_cut_bag_reports_what_was_recovered(flight_bags, tmp_path, caplog):
    bags, intact = flight_bags
    assert open_source(bags['mcap']).recovery is None
    assert 'recovery' not in open_source(bags['mcap']).info
    path, cut = _cut_copy(bags['mcap'], 'mcap', 0.6, tmp_path, metadata=False)
    raw = (bags['mcap'] / STORE['mcap']).read_bytes()
    n = _written_before(raw, intact['mcap'], cut)
    with caplog.at_level(logging.WARNING):
        src = open_source(path)
    assert f'warning: bag {path} is damaged (no metadata.yaml' in caplog.text
    assert f'recovered {n} messages on 7 topics' in caplog.text
    d = src.info['recovery']
    assert d == src.recovery.to_dict()
    assert set(d) == {'path', 'kind', 'damage', 'files', 'messages', 'per_topic', 'start_ns',
                      'end_ns', 'duration_s', 'bytes_read', 'bytes_total', 'lost'}
    assert d['kind'] == 'mcap' and d['messages'] == n and d['bytes_total'] == cut
    assert d['lost'][0]['what'].startswith('chunk at byte')
    items = list(src)
    prefix = Counter(t for t, _, _ in intact['mcap'][:n])
    frames = min(prefix[t] for t in ('/camera/color/image_raw',
                                     '/camera/aligned_depth_to_color/image_raw',
                                     '/camera/color/camera_info'))
    assert sum(isinstance(i, Frame) for i in items) == frames
    assert sum(isinstance(i, ImuSample) for i in items) == prefix['/camera/imu']


def test_damage_does_not_hide_config_errors(flight_bags, tmp_path):
    bags, _ = flight_bags
    path, _ = _cut_copy(bags['sqlite3'], 'sqlite3', 0.97, tmp_path)
    cfg = load_config([], VssmConfig, overrides={'topics': {'imu': '/nope'}})
    for bag in (bags['sqlite3'], path):
        with pytest.raises(BagError, match=r'lacks the configured topic\(s\) /nope; it has: '):
            open_source(bag, cfg)


def test_what_is_not_a_bag_still_gives_a_clear_error(tmp_path):
    (tmp_path / 'notes.bag').write_text('not a bag\n' * 100)
    with pytest.raises(BagError, match=r'notes.bag is not a ros1 file \(no "#ROSBAG V2.0" line'):
        open_source(tmp_path / 'notes.bag')
    (tmp_path / 'd1').mkdir()
    (tmp_path / 'd1' / 'x.mcap').write_bytes(b'\x00' * 1000)
    with pytest.raises(BagError, match=r'x.mcap is not a mcap file \(no mcap magic'):
        open_source(tmp_path / 'd1')
    (tmp_path / 'd2').mkdir()
    (tmp_path / 'd2' / 'x.db3').write_bytes(b'')
    with pytest.raises(BagError, match=r'x.db3 is not a sqlite3 file \(no SQLite header'):
        open_source(tmp_path / 'd2')
    (tmp_path / 'd3').mkdir()
    with pytest.raises(SourceError, match='is not a replayable input'):
        open_source(tmp_path / 'd3')


def test_a_cut_that_leaves_no_message_says_so(flight_bags, tmp_path):
    bags, _ = flight_bags
    path, _ = _cut_copy(bags['sqlite3'], 'sqlite3', 0.005, tmp_path)
    with pytest.raises(BagError, match=r'cannot open bag .* recovery found no intact message '
                                       r'\(pages \d+-\d+: past the end of the file'):
        open_source(path)


def test_chunk_failing_its_crc_is_skipped_during_a_read(flight_bags, tmp_path):
    bags, intact = flight_bags
    path = tmp_path / 'crc'
    shutil.copytree(bags['mcap'], path)
    store = path / STORE['mcap']
    original = store.read_bytes()
    raw = bytearray(original)
    chunks = _chunk_offsets(store)
    assert len(chunks) == 3
    for start, _ in chunks:   # write the chunks' CRCs, as the mcap C++ writer does
        body = start + 9
        n = struct.unpack_from('<I', raw, body + 28)[0]
        size = struct.unpack_from('<Q', raw, body + 32 + n)[0]
        struct.pack_into('<I', raw, body + 24, binascii.crc32(raw[body + 40 + n:][:size]))
    start, end = chunks[1]
    mid = (start + end) // 2
    raw[mid:mid + 64] = b'\xff' * 64
    store.write_bytes(bytes(raw))
    src = open_source(path)
    assert src.recovery is None   # the index is intact: the damage shows only when read
    frames = sum(isinstance(i, Frame) for i in src)
    lost = Counter(t for t, _, r in intact['mcap'] if start < original.find(r) < end)
    assert src.recovery.messages == len(intact['mcap']) - sum(lost.values())
    assert src.recovery.damage.startswith('a read failed after a message on')
    assert src.recovery.lost[0].what == f'chunk at byte {start} ({end - start} bytes)'
    assert src.recovery.lost[0].why == (f'CRC mismatch; its {sum(lost.values())} message '
                                        'records are not trusted')
    rgb = '/camera/color/image_raw'
    assert frames == Counter(t for t, _, _ in intact['mcap'])[rgb] - lost[rgb] > 0


def test_garbage_in_the_middle_of_a_cut_mcap_is_skipped(flight_bags, tmp_path):
    bags, intact = flight_bags
    path, cut = _cut_copy(bags['mcap'], 'mcap', 0.97, tmp_path, metadata=False)
    store = path / STORE['mcap']
    original = (bags['mcap'] / STORE['mcap']).read_bytes()
    (_, end1), (start2, end2), (start3, _) = _chunk_offsets(bags['mcap'] / STORE['mcap'])
    raw = bytearray(store.read_bytes())
    raw[start2:start2 + 4096] = bytes(4096)   # the second chunk's header and first records
    store.write_bytes(bytes(raw))
    got, report = _recovered(path)
    n = _written_before(original, intact['mcap'], cut)
    expect = [m for m in intact['mcap'][:n] if not start2 < original.find(m[2]) < end2]
    assert got == expect and 0 < len(expect) < n
    assert report.lost[0] == (f'bytes {start2}-{start3}', 'not a readable record; skipped to '
                              'the next intact chunk')


def test_cut_zstd_chunks_and_lz4_streams(flight_bags, tmp_path):
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.rosbag2.enums import CompressionFormat, CompressionMode
    flight = generate_flight(FLIGHT)
    store = bag_typestore('mcap')
    path = tmp_path / 'zstd'
    writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
    writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    with writer:
        conns = {}
        for topic, msgtype, stamp, msg in stream_messages(
                flight.items(), realsense_layout(flight), bag_msg_types('mcap')):
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=store)
            writer.write(conns[topic], stamp, store.serialize_cdr(msg, msgtype))
    _, intact = flight_bags
    from rosbags.rosbag2.storage_mcap import McapReader
    reader = McapReader(path / 'zstd.mcap')
    reader.open()
    chunks = [(c.chunk_start_offset + c.chunk_length, sum(c.channel_count.values()))
              for c in reader.chunks]
    assert [c.compression for c in reader.chunks] == ['zstd'] * 3
    reader.close()
    raw = (path / 'zstd.mcap').read_bytes()
    cut = int(0.6 * len(raw))
    (path / 'zstd.mcap').write_bytes(raw[:cut])
    got, report = _recovered(path)
    assert got == intact['mcap'][:len(got)]
    # The whole chunks (one, 772 messages), and the zstd blocks of the cut one that were
    # written whole (measured: 1097 messages in all).
    whole = sum(n for end, n in chunks if end <= cut)
    assert whole < len(got) < len(intact['mcap'])
    data = bytes(range(256)) * 4000
    packed = lz4.frame.compress(data, block_size=lz4.frame.BLOCKSIZE_MAX64KB)
    part = _decompress(packed[:len(packed) // 2], 'lz4', whole=False)
    assert data.startswith(part) and len(part) >= 0.4 * len(data)


def test_replay_runs_on_a_cut_bag(tmp_path):
    tiny = SyntheticConfig(duration_s=1.5, width=80, height=60, camera_rate_hz=10.0,
                           hover_s=0.0, ramp_s=0.5)
    bag = write_flight(generate_flight(tiny), tmp_path, ('mcap',))['mcap']
    store = bag / STORE['mcap']
    raw = store.read_bytes()
    store.write_bytes(raw[:int(0.97 * len(raw))])
    (bag / 'metadata.yaml').unlink()
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = replay.main([str(bag), '--config', str(config_path('demo.yaml')), '--out',
                          str(tmp_path / 'out'), '--quiet', '--no-plots'])
    assert rc == 0, err.getvalue()
    stamps, _ = read_tum_trajectory(tmp_path / 'out' / 'trajectory.tum')
    assert len(stamps) == 15   # of 16 frames: the last one's depth image was cut
    # What was recovered is in metrics.json and the summary.
    metrics = json.loads((tmp_path / 'out' / 'metrics.json').read_text())
    rec = metrics['input']['recovery']
    assert rec['kind'] == 'mcap' and rec['messages'] > 0 and rec['lost']
    assert rec['bytes_total'] == len(raw[:int(0.97 * len(raw))])
    assert f"recovered {rec['messages']} messages" in summary_table(metrics)


def test_real_ros1_bag_cut_at_97_percent(ros1_imu_bag, tmp_path):
    from rosbags.highlevel import AnyReader
    with AnyReader([ros1_imu_bag]) as reader:
        intact = [(c.topic, t, bytes(r)) for c, t, r in reader.messages()]
    assert len(intact) == HUSKY_MESSAGES
    path, cut = _cut_copy(ros1_imu_bag, 'ros1', 0.97, tmp_path)
    got, report = _recovered(path)
    # Its chunks are bz2 (one bz2 block each): the cut chunk gives nothing, the nine before
    # it everything.
    assert got == intact[:15834]
    assert report.per_topic['/imu/data'] == Counter(t for t, _, _ in got)['/imu/data']
    assert report.lost[0].why.endswith('0 whole messages read from it')
    with BagReader(path, recover=True) as bag:
        assert bag.recovery is not None and bag.topics['/imu/data'].count == \
            report.per_topic['/imu/data']
        assert sum(1 for _ in bag.messages(['/imu/data'])) == report.per_topic['/imu/data']
