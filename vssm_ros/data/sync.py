# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Stamp pairing: the one approximate-time synchroniser (replay sources and the ROS node) and
the offline nearest-stamp association of TUM's ``associate.py``.

``StampPairer`` plays the role of message_filters' ApproximateTimeSynchronizer, with one
difference that makes it deterministic and causal: input 0 is the *pivot* (the colour image)
and every pivot is matched with the closest item of each other input within ``slop_s``. A pivot
is resolved as soon as every other input has delivered an item stamped at or after it (stamps
of one input only grow, so nothing closer can come later), so a match is emitted one message
late at most, in pivot-stamp order, each item used at most once.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Deque, List, Sequence, Tuple

import numpy as np

from vssm_ros.errors import SyncError


class StampPairer:
    """Approximate-time pairing of ``n_inputs`` streams (like message_filters).

    Args:
        n_inputs: number of inputs (>= 1); input 0 is the pivot (e.g. colour, depth, info).
        slop_s: largest stamp spread (seconds) within one matched tuple.
        queue_size: items kept per input while waiting for partners; beyond, the oldest is
            dropped (and counted).

    Attributes:
        dropped: items discarded without being matched (queue overflow, no partner within
            slop, or left over by ``flush``), per input. Shape: (n_inputs,), list of int.
        matched: number of tuples emitted.

    Stamps of one input must increase strictly: ``push`` raises SyncError otherwise (and
    keeps its state unchanged), so the caller decides whether to skip and count, or to stop.
    """

    def __init__(self, n_inputs: int, slop_s: float, queue_size: int) -> None:
        if n_inputs < 1:
            raise SyncError(f'StampPairer needs at least one input, got {n_inputs}')
        if slop_s < 0 or not np.isfinite(slop_s):
            raise SyncError(f'slop_s must be finite and >= 0, got {slop_s}')
        if queue_size < 1:
            raise SyncError(f'queue_size must be >= 1, got {queue_size}')
        self.n_inputs = int(n_inputs)
        self.slop_ns = int(round(slop_s * 1e9))
        self.queue_size = int(queue_size)
        self._queues: List[Deque[Tuple[int, Any]]] = [deque() for _ in range(self.n_inputs)]
        self._last: List[int | None] = [None] * self.n_inputs
        self.dropped: List[int] = [0] * self.n_inputs
        self.matched = 0

    @property
    def pending_pivot_stamp(self) -> int | None:
        """Stamp (ns) of the oldest pivot still waiting for partners, or None."""
        return self._queues[0][0][0] if self._queues[0] else None

    @property
    def last_stamps(self) -> Tuple[int | None, ...]:
        """The last stamp (ns) pushed on each input (None before the first)."""
        return tuple(self._last)

    def push(self, index: int, stamp_ns: int, item: Any) -> List[Tuple[Any, ...]]:
        """Add one item; return the tuples (one item per input, in input order) now matched.

        Raises:
            SyncError: ``index`` out of range, or ``stamp_ns`` not after the previous stamp of
                the same input.
        """
        if not 0 <= index < self.n_inputs:
            raise SyncError(f'input index {index} out of range for {self.n_inputs} inputs')
        stamp_ns = int(stamp_ns)
        last = self._last[index]
        if last is not None and stamp_ns <= last:
            raise SyncError(f'input {index}: stamp {stamp_ns} ns is not after the previous '
                            f'{last} ns (time went backwards by {(last - stamp_ns) * 1e-9:.6f} s)')
        self._last[index] = stamp_ns
        q = self._queues[index]
        q.append((stamp_ns, item))
        if len(q) > self.queue_size:
            q.popleft()
            self.dropped[index] += 1
        return self._match(final=False)

    def flush(self) -> List[Tuple[Any, ...]]:
        """At the end of the streams: emit what can still be matched, drop (and count) the rest."""
        out = self._match(final=True)
        for i, q in enumerate(self._queues):
            self.dropped[i] += len(q)
            q.clear()
        return out

    def _match(self, final: bool) -> List[Tuple[Any, ...]]:
        out = []
        pivots = self._queues[0]
        while pivots:
            t, pivot = pivots[0]
            if not final and any(self._last[j] is None or self._last[j] < t
                                 for j in range(1, self.n_inputs)):
                break  # a closer partner may still come
            chosen = [self._closest(j, t) for j in range(1, self.n_inputs)]
            pivots.popleft()
            if any(c is None for c in chosen):
                self.dropped[0] += 1
                continue
            stamps = [t] + [self._queues[j][k][0] for j, k in zip(range(1, self.n_inputs), chosen)]
            if max(stamps) - min(stamps) > self.slop_ns:
                self.dropped[0] += 1
                continue
            items = [pivot]
            for j, k in zip(range(1, self.n_inputs), chosen):
                q = self._queues[j]
                # Items before the chosen one are older than anything a later pivot could use.
                for _ in range(k):
                    q.popleft()
                    self.dropped[j] += 1
                items.append(q.popleft()[1])
            self.matched += 1
            out.append(tuple(items))
        if not final:
            self._drop_stale()
        return out

    def _closest(self, j: int, t: int) -> int | None:
        """Index in queue j of the item closest to stamp t within slop, or None."""
        best, best_d = None, None
        for k, (s, _) in enumerate(self._queues[j]):
            d = abs(s - t)
            if d <= self.slop_ns and (best_d is None or d < best_d):
                best, best_d = k, d
            if s > t:
                break  # later ones are further away
        return best

    def _drop_stale(self) -> None:
        """Drop partner items that no present or future pivot can use."""
        if self._queues[0]:
            horizon = self._queues[0][0][0] - self.slop_ns
        elif self._last[0] is not None:
            horizon = self._last[0] + 1 - self.slop_ns
        else:
            return
        for j in range(1, self.n_inputs):
            q = self._queues[j]
            while q and q[0][0] < horizon:
                q.popleft()
                self.dropped[j] += 1


def associate(stamps_a: Sequence[int], stamps_b: Sequence[int],
              max_diff_ns: int) -> List[Tuple[int, int]]:
    """One-to-one association of two stamp lists, greedy by smallest difference (TUM's
    ``associate.py``): all pairs within ``max_diff_ns`` sorted by |a - b|, each stamp used once.

    Args:
        stamps_a: stamps (ns). Shape: (N,).
        stamps_b: stamps (ns). Shape: (M,).
        max_diff_ns: largest accepted difference (ns).

    Returns:
        (index in a, index in b) pairs sorted by the index in a.
    """
    a = np.asarray(stamps_a, dtype=np.int64).reshape(-1)
    b = np.asarray(stamps_b, dtype=np.int64).reshape(-1)
    if a.size == 0 or b.size == 0:
        return []
    order_b = np.argsort(b, kind='stable')
    b_sorted = b[order_b]
    lo = np.searchsorted(b_sorted, a - max_diff_ns, side='left')
    hi = np.searchsorted(b_sorted, a + max_diff_ns, side='right')
    cands = []
    for i in range(a.size):
        for k in range(lo[i], hi[i]):
            j = int(order_b[k])
            cands.append((abs(int(a[i]) - int(b[j])), i, j))
    cands.sort()
    used_a, used_b, pairs = set(), set(), []
    for _, i, j in cands:
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            pairs.append((i, j))
    pairs.sort()
    return pairs
