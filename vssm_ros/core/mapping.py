# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Keyframe fusion on the tracking thread or beside it (PTAM's split of tracking and mapping).

Synchronous (the replay, the node in lockstep): a keyframe is fused before the next frame is
tracked, so a run is deterministic. Asynchronous (``inference.async_mapping``, the node's
real-time mode): a keyframe's fusion runs on one worker thread while the next frames are
tracked against the map as it is; only the writes (``core.map.integrate.commit``, the
free-space carving and the memory budget) hold the map lock for writing (``MapLock``), which
tracking and every reader of the map hold for reading. Which frames see a keyframe then depends on timing, not only on the data:
results are no longer reproducible bit for bit, in exchange for the mapping's share of a
frame's time (on two cores, about a fifth of it on the demo flight; see docs/performance.md).
"""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterator, List, Optional


class MapLock:
    """The map's lock: readers (tracking, renders, the cost field, exports) share it, a writer
    (a keyframe's commit) holds it alone. Both are re-entrant in their thread, and a writer may
    read; a thread that reads may not start writing (it would wait for itself). A waiting
    writer keeps new readers out, so a stream of renders cannot starve the mapping.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0        # threads holding the read lock
        self._writer: Optional[int] = None
        self._writing = 0        # the writer's re-entrant depth
        self._waiting = 0        # writers waiting
        self._local = threading.local()

    @contextlib.contextmanager
    def read(self) -> Iterator[None]:
        """Hold the lock for reading (with other readers)."""
        depth = getattr(self._local, 'reads', 0)
        if depth or self._writer == threading.get_ident():
            self._local.reads = depth + 1   # nested, or the writer reading: already safe
            try:
                yield
            finally:
                self._local.reads = depth
            return
        with self._cond:
            while self._writer is not None or self._waiting:
                self._cond.wait()
            self._readers += 1
        self._local.reads = 1
        try:
            yield
        finally:
            self._local.reads = 0
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        """Hold the lock alone (readers and other writers wait)."""
        me = threading.get_ident()
        if self._writer == me:
            self._writing += 1
            try:
                yield
            finally:
                self._writing -= 1
            return
        if getattr(self._local, 'reads', 0):
            raise RuntimeError('MapLock: a thread that reads the map cannot start writing')
        with self._cond:
            self._waiting += 1
            while self._writer is not None or self._readers:
                self._cond.wait()
            self._waiting -= 1
            self._writer, self._writing = me, 1
        try:
            yield
        finally:
            with self._cond:
                self._writer, self._writing = None, 0
                self._cond.notify_all()


class KeyframeMapper:
    """Runs keyframe updates, in order, on the caller's thread or on one worker thread.

    Args:
        asynchronous: fuse on a worker thread beside tracking.

    Attributes:
        lock: the map's read/write lock: tracking and the map's readers read, commits write.
    """

    def __init__(self, asynchronous: bool) -> None:
        self.lock = MapLock()
        self.asynchronous = bool(asynchronous)
        self._pool: Optional[ThreadPoolExecutor] = None
        self._jobs: List[Future] = []

    def fuse(self, prepare: Callable[[], Any], commit: Callable[[Any], None]) -> None:
        """Run ``commit(prepare())``: ``prepare`` reads the map, ``commit`` writes it (under
        the lock). Synchronous: now. Asynchronous: on the worker, after the updates submitted
        before; an error surfaces at the next ``check`` or ``drain``."""
        if not self.asynchronous:
            with self.lock.read():
                job = prepare()
            with self.lock.write():
                commit(job)
            return
        self.check()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix='vssm-mapping')
        self._jobs.append(self._pool.submit(self._run, prepare, commit))

    def _run(self, prepare: Callable[[], Any], commit: Callable[[Any], None]) -> None:
        job = prepare()   # only this thread writes the map: no lock needed to read it
        with self.lock.write():
            commit(job)

    @property
    def pending(self) -> int:
        """Updates submitted and not finished."""
        return sum(not f.done() for f in self._jobs)

    def check(self) -> None:
        """Raise the error of a finished update, if one failed (in the caller's thread)."""
        done = [f for f in self._jobs if f.done()]
        self._jobs = [f for f in self._jobs if not f.done()]
        for f in done:
            f.result()

    def drain(self) -> None:
        """Wait for every update submitted (the map then holds every keyframe so far); raise
        the first error."""
        jobs, self._jobs = self._jobs, []
        errors = []
        for f in jobs:
            try:
                f.result()
            except Exception as err:   # wait for the others before raising
                errors.append(err)
        if errors:
            raise errors[0]

    def close(self) -> None:
        """Finish the updates and stop the worker (its errors are dropped: the map is done)."""
        try:
            self.drain()
        except Exception:   # noqa: BLE001 (closing: nothing left to report it to)
            pass
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
