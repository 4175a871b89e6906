# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Keyframe fusion on the tracking thread or beside it (PTAM's split of tracking and mapping).

Synchronous: a keyframe is fused before the next frame is tracked. Asynchronous
(``inference.async_mapping``): a keyframe's preparation (``core.map.integrate.prepare``: the
candidate voxels and their new values, most of its cost) runs on one worker thread while the
next ``inference.mapping_lag_frames`` frames are tracked against the map without it; then the
engine thread commits it (``core.map.integrate.commit``, the free-space carving and the memory
budget) under the map's write lock (``MapLock``), which tracking and every reader of the map
hold for reading. Both are deterministic: which frames see a keyframe depends on the data
only, so a run is reproducible bit for bit on any machine. In real time (the node) the worker
commits each keyframe as soon as it is prepared (``KeyframeMapper``, not ``wait``).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterator, Optional, Tuple

import torch


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
        if self._writer == me:   # nested: the outer write releases
            yield
            return
        if getattr(self._local, 'reads', 0):
            raise RuntimeError('MapLock: a thread that reads the map cannot start writing')
        with self._cond:
            self._waiting += 1
            while self._writer is not None or self._readers:
                self._cond.wait()
            self._waiting -= 1
            self._writer = me
        try:
            yield
        finally:
            with self._cond:
                self._writer = None
                self._cond.notify_all()


def leave_a_core() -> None:
    """The calling (tracking) thread's torch intra-op threads become one fewer than the
    machine's cores (at least one), so that it and a busy second thread (the mapping thread,
    the replay's reader) do not oversubscribe the CPU (OpenMP keeps the setting per thread;
    on the 2-core CPU the demo ran 16 frames/s with tracking and mapping on two intra-op
    threads each, 24 with one each)."""
    cores = os.cpu_count() or 1
    if torch.get_num_threads() >= cores:
        torch.set_num_threads(max(1, cores - 1))


COMMITTED = object()
"""What a worker's job returns when it committed the keyframe itself (not ``wait``)."""


class KeyframeMapper:
    """Runs keyframe updates, in order: on the caller's thread, or prepared on one worker
    thread beside tracking and committed by the caller a fixed number of steps later.

    Asynchronous and deterministic: a keyframe's ``prepare`` (which reads the map and writes
    nothing) runs on the worker while the engine thread tracks the next frames; ``step``,
    called once per frame after tracking, commits it on the engine thread once ``lag`` steps
    have passed, waiting for the worker if it is not done. Which frames see a keyframe thus
    depends on the data only, never on timing: a run gives the same result on any machine.
    A new keyframe commits the one before first (its ``prepare`` reads that one's writes), so
    at most one keyframe is ever pending.

    Not ``wait`` (real time): the worker commits the keyframe itself as soon as its
    preparation is done, under the write lock (it waits for the frame being tracked to let go
    of the map, and the tracking thread's next read waits for the commit); the tracking
    thread thus spends none of its own time on the commit (20-60 ms a keyframe live, about
    a frame's tracking) and waits for the worker only at the end of the lag. While a
    keyframe is pending (``busy``) the engine puts off the next one (which would wait for
    it); which frames see a keyframe then depends on timing.

    Args:
        asynchronous: prepare on a worker thread beside tracking.
        lag: steps (frames) between a keyframe's submission and its commit (>= 1).
        wait: at the end of the lag, wait for the preparation (deterministic).
        on_wait: called at each asynchronous commit with the seconds the engine thread
            waited for it: for the preparation and the map's readers (the write lock), or,
            not ``wait``, for the worker's preparation and commit.
        worker_threads: torch intra-op threads of the worker (0: torch's default): OpenMP
            keeps this per thread, and two threads each using every core oversubscribe it.

    Attributes:
        lock: the map's read/write lock: tracking and the map's readers read, commits write.
    """

    def __init__(self, asynchronous: bool, lag: int = 1, worker_threads: int = 1,
                 wait: bool = True, on_wait: Optional[Callable[[float], None]] = None) -> None:
        self.lock = MapLock()
        self.asynchronous = bool(asynchronous)
        self.lag = max(1, int(lag))
        self.wait = bool(wait)
        self.on_wait = on_wait
        self.worker_threads = int(worker_threads)
        self._pool: Optional[ThreadPoolExecutor] = None
        # The pending keyframe: (the prepare's future, commit), and the steps left.
        self._job: Optional[Tuple[Future, Callable[[Any], None]]] = None
        self._steps_left = 0

    def fuse(self, prepare: Callable[[], Any], commit: Callable[[Any], None],
             now: bool = False) -> None:
        """Run ``commit(prepare())``: ``prepare`` reads the map, ``commit`` writes it (under
        the write lock). Synchronous, or ``now``: before returning. Asynchronous: ``prepare``
        on the worker, ``commit`` at the ``lag``-th ``step`` from now."""
        if not self.asynchronous or now:
            self.drain()
            with self.lock.read():
                job = prepare()
            with self.lock.write():
                commit(job)
            return
        self.drain()
        if self._pool is None:
            # Only once a keyframe goes to the worker: a run that fuses every keyframe at once
            # (no IMU) keeps all of the cores for tracking.
            leave_a_core()
            self._pool = ThreadPoolExecutor(1, thread_name_prefix='vssm-mapping',
                                            initializer=self._init_worker)
        on_worker = None if self.wait else commit
        self._job = (self._pool.submit(self._prepare, prepare, on_worker), commit)
        self._steps_left = self.lag

    def _init_worker(self) -> None:
        if self.worker_threads > 0:
            torch.set_num_threads(self.worker_threads)

    def _prepare(self, prepare: Callable[[], Any],
                 commit: Optional[Callable[[Any], None]] = None) -> Any:
        """The worker's job: ``prepare``, and ``commit`` its result when given (then the
        job is done: returns ``COMMITTED``)."""
        with self.lock.read():
            job = prepare()
        if commit is None:
            return job
        with self.lock.write():
            commit(job)
        return COMMITTED

    @property
    def pending(self) -> int:
        """Keyframes submitted and not committed yet (0 or 1)."""
        return int(self._job is not None)

    @property
    def busy(self) -> bool:
        """Whether a keyframe is pending and new ones should wait if they can (not ``wait``:
        a new keyframe would wait for the pending one's preparation)."""
        return self._job is not None and not self.wait

    def step(self) -> None:
        """One frame was tracked: commit the pending keyframe once its lag is over, waiting
        for its preparation (not ``wait``: as soon as its preparation is done, waiting for it
        only at the end of the lag); a preparation's error is raised here, in the caller's
        thread."""
        if self._job is None:
            return
        self._steps_left -= 1
        if self._steps_left <= 0 or (not self.wait and self._job[0].done()):
            self.drain()

    def drain(self) -> None:
        """Commit the pending keyframe, if any (the map then holds every keyframe so far);
        its preparation's error is raised here."""
        if self._job is None:
            return
        (future, commit), self._job = self._job, None
        t0 = time.perf_counter()
        job = future.result()
        if job is COMMITTED:   # the worker committed it (not ``wait``)
            if self.on_wait is not None:
                self.on_wait(time.perf_counter() - t0)
            return
        with self.lock.write():
            if self.on_wait is not None:
                self.on_wait(time.perf_counter() - t0)
            commit(job)

    def close(self) -> None:
        """Finish the updates and stop the worker (its errors are dropped: the map is done)."""
        try:
            self.drain()
        except Exception:   # noqa: BLE001 (closing: nothing left to report it to)
            pass
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
