# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Reading a recording ahead of the loop: the same items in the same order, the reader's
error where the loop reaches it, and a reader that stops when the loop does."""

import threading
import time

import pytest

from vssm_ros.data.read_ahead import read_ahead


def _names():
    return {t.name for t in threading.enumerate()}


@pytest.mark.parametrize('depth', [0, 1, 3])
def test_the_items_come_in_order_in_chunks_or_one_by_one(depth):
    items = list(range(50))
    assert list(read_ahead(iter(items), depth)) == items
    # Chunks end at multiples of 7 (a frame and the IMU samples before it); the tail too.
    assert list(read_ahead(iter(items), depth, lambda x: x % 7 == 0)) == items


def test_the_reader_runs_ahead_by_at_most_its_depth_in_chunks():
    made = []

    def source():
        for i in range(40):
            made.append(i)
            yield i

    it = read_ahead(source(), 2, lambda x: x % 5 == 4)   # chunks of five
    assert next(it) == 0
    time.sleep(0.3)
    # The chunk being consumed, two queued, one more made and waiting to be queued.
    assert len(made) == 20
    it.close()


def test_an_error_of_the_reader_is_raised_where_the_loop_reaches_it():
    def source():
        yield from range(5)
        raise OSError('disk went away')

    it = read_ahead(source(), 2, lambda x: x % 2 == 1)
    got = []
    with pytest.raises(OSError, match='disk went away'):
        for x in it:
            got.append(x)
    assert got == [0, 1, 2, 3, 4]


def test_the_reader_stops_when_the_loop_stops_early():
    def endless():
        i = 0
        while True:
            yield i
            i += 1

    it = read_ahead(endless(), 2)
    for x in it:
        if x == 10:
            break
    it.close()
    time.sleep(0.3)
    assert 'vssm-read-ahead' not in _names()
