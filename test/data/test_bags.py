# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Bag reading (a real ROS 1 bag, our own ROS 2 bags) and writing."""

import shutil

import numpy as np
import pytest

from vssm_ros.data import messages as M
from vssm_ros.data.bags import BAG_FORMATS, BagReader, bag_msg_types, bag_typestore, write_bag
from vssm_ros.errors import BagError

IMU_COUNT = 11865  # /imu/data in husky_imu_odom_gps.bag


def _imu_items(fmt, n=50, t0=1_000_000_000):
    types = bag_msg_types(fmt)
    rng = np.random.default_rng(0)
    for k in range(n):
        t = t0 + k * 10_000_000
        yield ('/imu', 'sensor_msgs/msg/Imu', t,
               M.imu_msg(types, t, 'imu', rng.normal(size=3), rng.normal(size=3)))


def _bag_path(tmp_path, fmt, name='b'):
    return tmp_path / (f'{name}.bag' if fmt == 'ros1' else name)


def test_real_ros1_bag_topics_rate_and_gravity(ros1_imu_bag):
    with BagReader(ros1_imu_bag) as bag:
        assert bag.kind == 'ros1'
        topics = bag.topics
        assert topics['/imu/data'].msgtype == 'sensor_msgs/msg/Imu'
        assert topics['/imu/data'].count == IMU_COUNT
        assert topics['/husky_velocity_controller/odom'].msgtype == 'nav_msgs/msg/Odometry'
        assert bag.topics_of_type('sensor_msgs/msg/NavSatFix') == ['/fix']

        def stamps_and_acc(start_s, stop_s):
            rows = [(M.header_stamp_ns(m), *M.imu_from_msg(m).acc, *M.imu_from_msg(m).gyro)
                    for _, _, m in bag.messages(['/imu/data'], bag.start_ns + int(start_s * 1e9),
                                                bag.start_ns + int(stop_s * 1e9))]
            return np.array(rows)

        head, tail = stamps_and_acc(0, 1), stamps_and_acc(394, 396)
        first, last = int(head[0, 0]), int(tail[-1, 0])
        rate = (IMU_COUNT - 1) / ((last - first) * 1e-9)
        assert abs(rate - 30.013) < 0.01, rate  # measured: 30.0133 Hz over 395.29 s

        # 20-30 s: the steadiest stretch (mean |gyro| 0.028 rad/s); gravity is on +y.
        steady = stamps_and_acc(20, 30)
        assert 290 <= len(steady) <= 310
        assert np.linalg.norm(steady[:, 4:7], axis=1).mean() < 0.05
        g = np.linalg.norm(steady[:, 1:4], axis=1).mean()
        assert abs(g - 9.81) < 0.2, g  # measured 9.809
        assert 9.7 < steady[:, 2].mean() < 9.9


def test_missing_and_wrong_paths(tmp_path):
    with pytest.raises(BagError, match=f'bag not found: {tmp_path / "nope.bag"}'):
        BagReader(tmp_path / 'nope.bag')
    with pytest.raises(BagError, match='directory without metadata.yaml: not a ROS 2 bag'):
        BagReader(tmp_path)
    (tmp_path / 'x.txt').write_text('hi')
    with pytest.raises(BagError, match=r'expected a ROS 1 .bag file or a ROS 2 bag directory'):
        BagReader(tmp_path / 'x.txt')


def test_truncated_ros1_bag(ros1_imu_bag, tmp_path):
    data = ros1_imu_bag.read_bytes()
    half = tmp_path / 'half.bag'
    half.write_bytes(data[:len(data) // 2])
    with pytest.raises(BagError, match=f'cannot open bag {half} \\(truncated or corrupt\\?\\)'):
        with BagReader(half):
            pass


@pytest.mark.parametrize('fmt', ['mcap', 'sqlite3'])
def test_truncated_ros2_bag(tmp_path, fmt):
    path = _bag_path(tmp_path, fmt)
    write_bag(path, fmt, _imu_items(fmt, n=500))
    (store,) = [p for p in path.iterdir() if p.suffix in ('.mcap', '.db3')]
    raw = store.read_bytes()
    store.write_bytes(raw[:len(raw) // 2])
    with pytest.raises(BagError, match='truncated or corrupt'):
        with BagReader(path) as bag:
            list(bag.messages(['/imu']))


@pytest.mark.parametrize('fmt', BAG_FORMATS)
def test_write_read_round_trip_and_missing_topics(tmp_path, fmt):
    path = _bag_path(tmp_path, fmt)
    counts = write_bag(path, fmt, _imu_items(fmt))
    assert counts == {'/imu': 50}
    expect = list(_imu_items(fmt))
    with BagReader(path) as bag:
        assert bag.topics == {'/imu': bag.topics['/imu']} and bag.topics['/imu'].count == 50
        got = list(bag.messages(['/imu']))
        assert [g[1] for g in got] == [e[2] for e in expect]
        for (_, _, m), (_, _, _, e) in zip(got, expect):
            a, b = M.imu_from_msg(m), M.imu_from_msg(e)
            assert a.stamp_ns == b.stamp_ns and np.array_equal(a.acc, b.acc)
        with pytest.raises(BagError, match=r'lacks the topic\(s\) /camera/rgb; it has: /imu '
                                           r'\(sensor_msgs/msg/Imu, 50\)'):
            bag.require(['/camera/rgb'])
        with pytest.raises(BagError, match='lacks'):
            next(bag.messages(['/nope']))


def test_failed_write_leaves_nothing(tmp_path):
    def broken():
        yield from _imu_items('mcap', n=5)
        raise RuntimeError('generator failed')

    with pytest.raises(RuntimeError, match='generator failed'):
        write_bag(tmp_path / 'b', 'mcap', broken())
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(BagError, match='cannot serialise a sensor_msgs/msg/Imu'):
        write_bag(tmp_path / 'c', 'mcap', [('/imu', 'sensor_msgs/msg/Imu', 0, object())])
    assert list(tmp_path.iterdir()) == []


def test_existing_bag_is_kept_unless_overwrite(tmp_path):
    path = tmp_path / 'b.bag'
    write_bag(path, 'ros1', _imu_items('ros1', n=3))
    with pytest.raises(BagError, match='exists already'):
        write_bag(path, 'ros1', _imu_items('ros1', n=4))
    write_bag(path, 'ros1', _imu_items('ros1', n=4), overwrite=True)
    with BagReader(path) as bag:
        assert bag.topics['/imu'].count == 4
    assert [p.name for p in tmp_path.iterdir()] == ['b.bag']
    with pytest.raises(BagError, match='needs the .bag suffix'):
        write_bag(tmp_path / 'x', 'ros1', [])
    with pytest.raises(BagError, match="unknown bag format 'zip'"):
        write_bag(tmp_path / 'x', 'zip', [])


def test_ros1_tfmessage_matches_the_real_definition():
    # tf2_msgs/TFMessage md5 as published by ROS 1 (so rosbag play / rqt accept our bags).
    store = bag_typestore('ros1')
    assert store.generate_msgdef('tf2_msgs/msg/TFMessage')[1] == \
        '94810edda583a504dfda3829e70d7eec'


def test_tf_static_is_latched_in_ros2(tmp_path):
    types = bag_msg_types('mcap')
    write_bag(tmp_path / 'b', 'mcap', [('/tf_static', 'tf2_msgs/msg/TFMessage', 1,
                                        M.tf_message(types, [('a', 'b', np.eye(4), 1)]))])
    meta = (tmp_path / 'b' / 'metadata.yaml').read_text()
    assert 'durability: transient_local' in meta
    shutil.rmtree(tmp_path / 'b')
