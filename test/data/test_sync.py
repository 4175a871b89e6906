# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Approximate-time pairing and stamp association."""

import numpy as np
import pytest

from vssm_ros.data.sync import StampPairer, associate
from vssm_ros.errors import SyncError

MS = 1_000_000


def _feed(pairer, events):
    out = []
    for index, stamp, item in events:
        out += pairer.push(index, stamp, item)
    return out + pairer.flush()


def _jittered_events(n, jitter_ms, seed, period_ms=33, skip=()):
    """rgb (pivot), depth, info with jittered stamps, arriving in a shuffled log order that keeps
    each input's stamps increasing."""
    rng = np.random.default_rng(seed)
    events = []
    for k in range(n):
        t = 10**9 + k * period_ms * MS
        for i in range(3):
            if (i, k) in skip:
                continue
            stamp = t + (0 if i == 0 else int(rng.uniform(-jitter_ms, jitter_ms) * MS))
            arrival = stamp + rng.uniform(0, 20) * MS  # transport delay
            events.append((arrival, i, stamp, (i, k)))
    events.sort()
    return [(i, s, item) for _, i, s, item in events]


def test_jittered_triplets_all_matched_in_order():
    pairer = StampPairer(3, slop_s=0.02, queue_size=30)
    out = _feed(pairer, _jittered_events(60, jitter_ms=8, seed=0))
    assert len(out) == 60
    assert [m[0][1] for m in out] == list(range(60))  # pivot order
    assert all(m[1] == (1, m[0][1]) and m[2] == (2, m[0][1]) for m in out)  # right partners
    assert pairer.dropped == [0, 0, 0] and pairer.matched == 60


def test_missing_partners_drop_the_pivot_and_are_counted():
    skip = {(1, 5), (1, 6), (2, 20)}
    pairer = StampPairer(3, slop_s=0.01, queue_size=30)
    out = _feed(pairer, _jittered_events(40, jitter_ms=3, seed=1, skip=skip))
    assert sorted(m[0][1] for m in out) == sorted(set(range(40)) - {5, 6, 20})
    assert pairer.dropped[0] == 3
    # The info of frames 5, 6 and the depth of frame 20 found no pivot.
    assert pairer.dropped[1] == 1 and pairer.dropped[2] == 2


def test_faster_partner_matches_the_closest_and_drops_the_rest():
    pairer = StampPairer(2, slop_s=0.01, queue_size=30)
    events = []
    for k in range(20):  # pivot 30 Hz; partner 90 Hz, one of each three 1 ms from the pivot
        t = k * 33 * MS
        events += [(1, t - 10 * MS, 'early'), (1, t + 1 * MS, 'near'), (0, t + 1, k),
                   (1, t + 12 * MS, 'late')]
    events.sort(key=lambda e: (e[1], e[0]))
    out = _feed(pairer, events)
    assert len(out) == 20 and all(m[1] == 'near' for m in out)
    assert pairer.dropped == [0, 40]


def test_spread_beyond_slop_is_not_a_match():
    pairer = StampPairer(3, slop_s=0.010, queue_size=5)
    out = _feed(pairer, [(0, 100 * MS, 'a'), (1, 108 * MS, 'b'), (2, 92 * MS, 'c')])
    assert out == [] and pairer.dropped == [1, 1, 1]
    pairer = StampPairer(3, slop_s=0.010, queue_size=5)
    assert _feed(pairer, [(0, 100 * MS, 'a'), (1, 105 * MS, 'b'), (2, 96 * MS, 'c')]) == \
        [('a', 'b', 'c')]


def test_backwards_stamp_raises_and_keeps_state():
    pairer = StampPairer(2, slop_s=0.01, queue_size=5)
    pairer.push(0, 200, 'a')
    with pytest.raises(SyncError, match='input 0: stamp 100 ns is not after the previous 200'):
        pairer.push(0, 100, 'b')
    assert pairer.push(1, 200, 'x') == [('a', 'x')]


def test_queue_overflow_drops_oldest():
    pairer = StampPairer(2, slop_s=0.01, queue_size=3)
    for k in range(10):
        pairer.push(0, k * 100 * MS, k)
    assert pairer.dropped == [7, 0] and pairer.pending_pivot_stamp == 700 * MS
    assert pairer.push(1, 900 * MS, 'x') == [(9, 'x')]
    assert pairer.dropped == [9, 0]


def test_associate_is_greedy_one_to_one_within_max_diff():
    a = [0, 100, 200, 300]
    b = [5, 95, 102, 290, 500]
    assert associate(a, b, 20) == [(0, 0), (1, 2), (3, 3)]
    # b=95 is closer to 100 than 5 is to 0, but 102 is closest of all for 100.
    assert associate([100, 110], [104], 20) == [(0, 0)]
    assert associate([], [1], 5) == [] and associate([1], [100], 5) == []
