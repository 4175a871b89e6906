# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Keyframe fusion on the tracking thread or beside it (PTAM's split of tracking and mapping).

Synchronous (the replay, the node in lockstep): a keyframe is fused before the next frame is
tracked, so a run is deterministic. Asynchronous (``inference.async_mapping``, the node's
real-time mode): a keyframe's fusion runs on one worker thread while the next frames are
tracked against the map as it is; only the writes (``core.map.integrate.commit``, the
free-space carving and the memory budget) hold the map lock, which tracking and every reader
of the map hold too. Which frames see a keyframe then depends on timing, not only on the data:
results are no longer reproducible bit for bit, in exchange for the mapping's share of a
frame's time (on two cores, about a fifth of it on the demo flight; see docs/performance.md).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, List, Optional


class KeyframeMapper:
    """Runs keyframe updates, in order, on the caller's thread or on one worker thread.

    Args:
        asynchronous: fuse on a worker thread beside tracking.

    Attributes:
        lock: the map lock (re-entrant): tracking and the map's readers hold it, the worker
            takes it for the writes.
    """

    def __init__(self, asynchronous: bool) -> None:
        self.lock = threading.RLock()
        self.asynchronous = bool(asynchronous)
        self._pool: Optional[ThreadPoolExecutor] = None
        self._jobs: List[Future] = []

    def fuse(self, prepare: Callable[[], Any], commit: Callable[[Any], None]) -> None:
        """Run ``commit(prepare())``: ``prepare`` reads the map, ``commit`` writes it (under
        the lock). Synchronous: now. Asynchronous: on the worker, after the updates submitted
        before; an error surfaces at the next ``check`` or ``drain``."""
        if not self.asynchronous:
            with self.lock:
                commit(prepare())
            return
        self.check()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix='vssm-mapping')
        self._jobs.append(self._pool.submit(self._run, prepare, commit))

    def _run(self, prepare: Callable[[], Any], commit: Callable[[Any], None]) -> None:
        job = prepare()
        with self.lock:
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
