# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The rate-limited outputs on their own thread (the node in real time).

A full render for the predicted images, the cost field for the cost slice and the map cloud
cost about as much CPU as tracking and mapping together at their default rates on the demo
flight (docs/performance.md); on the tracking thread they delay the next frame. Here one
thread renders them from the newest estimate it is offered while the engine thread goes on
(while the engine lags they are put off, as on the engine thread: the CPU is tracking's);
the map's read/write lock (``core.mapping.MapLock``) lets a render and tracking read the map at
once, and a keyframe's commit waits for them. An offer made while the thread is busy is not
taken: the outputs due then are rendered at a later frame (their stamps stay the estimates').
Nor is one made while the thread cools down after a render (``node.output_cpu_share``): on a
small CPU the outputs stretch their periods rather than take the cores tracking needs. On Linux
the thread also runs at a lower priority (``node.output_nice``): the scheduler gives it the CPU
that tracking, mapping and the inputs leave.

The replay and the node in lockstep keep rendering them on the engine thread, in order, so
that their output bags do not depend on timing.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, Callable, Optional, Tuple

import torch

Publish = Callable[[str, Any], None]
Log = Callable[[str, str], None]


class OutputWorker:
    """One thread that renders the rate-limited outputs of the estimates it is offered.

    Args:
        render: ``(frame, estimate, engine, defer) -> [(output name, message)]`` (the
            session's ``OutputSchedule.for_frame``).
        publish: called from the thread with (output name, message).
        log: called with (level, text) when a render fails (it is counted, the thread goes
            on).
        torch_threads: torch intra-op threads of the thread (0: torch's default): OpenMP
            keeps this setting per thread.
        cpu_share: the share of one CPU core the thread may use on average: after a render
            that took ``c`` seconds of the thread's CPU, offers are refused for
            ``c (1 / cpu_share - 1)`` seconds. 1: no limit.
        clock, cpu_clock: monotonic seconds, and the calling thread's CPU seconds.
        nice: the thread's nice value on Linux (0: the process's; never below it); ignored
            elsewhere.
    """

    def __init__(self, render: Callable[[Any, Any, Any, bool], list], publish: Publish, log: Log,
                 torch_threads: int = 0, cpu_share: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 cpu_clock: Callable[[], float] = time.thread_time, nice: int = 0) -> None:
        if not 0 < cpu_share <= 1:
            raise ValueError(f'cpu_share must be in (0, 1], got {cpu_share}')
        self.render, self.publish, self.log = render, publish, log
        self.torch_threads = int(torch_threads)
        self.cpu_share = float(cpu_share)
        self.clock, self.cpu_clock = clock, cpu_clock
        self.nice = int(nice)
        self.rendered = 0
        self.failures = 0
        self.cooling = 0          # offers refused while the thread cooled down
        self._ready_at = float('-inf')
        self._cond = threading.Condition()
        self._job: Optional[Tuple[Any, Any, Any, bool]] = None
        self._busy = False
        self._stopping = False
        self._thread: Optional[threading.Thread] = None

    def offer(self, frame: Any, estimate: Any, engine: Any, defer: bool = False) -> bool:
        """Hand over the newest estimate when the thread is idle; whether it was taken.
        ``defer``: a newer frame waits (``OutputSchedule.for_frame``: the outputs are put off,
        for at most a few periods, so that they do not take the CPU from tracking)."""
        with self._cond:
            if self._busy or self._stopping:
                return False
            if self.clock() < self._ready_at:
                self.cooling += 1
                return False
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name='vssm-outputs',
                                                daemon=True)
                self._thread.start()
            self._job, self._busy = (frame, estimate, engine, defer), True
            self._cond.notify_all()
            return True

    def wait_idle(self, timeout_s: Optional[float] = None) -> bool:
        """Wait until the render in progress, if any, is published; whether it was."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._busy, timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Finish the render in progress and stop the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        if self.nice > 0:
            lower_thread_priority(self.nice, self.log)
        if self.torch_threads > 0:
            torch.set_num_threads(self.torch_threads)
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._job is not None or self._stopping)
                if self._job is None:   # stopping, nothing left
                    return
                job = self._job
            cpu0 = self.cpu_clock()
            try:
                for name, msg in self.render(*job):
                    self.publish(name, msg)
                self.rendered += 1
            except Exception as err:   # noqa: BLE001 (a failed render must not stop the rest)
                self.failures += 1
                self.log('warn', f'outputs at {getattr(job[1], "stamp_ns", "?")} ns not '
                                 f'published: {type(err).__name__}: {err}')
            cooldown = (self.cpu_clock() - cpu0) * (1.0 / self.cpu_share - 1.0)
            with self._cond:
                self._ready_at = self.clock() + cooldown
                self._job, self._busy = None, False
                self._cond.notify_all()


def lower_thread_priority(nice: int, log: Log) -> bool:
    """Give the calling thread the nice value ``nice`` (Linux: a thread's own; never a higher
    priority than it has). Whether it was set: not elsewhere than Linux, nor where the
    system refuses (logged)."""
    if not sys.platform.startswith('linux'):
        return False   # there PRIO_PROCESS of a thread id would renice the whole process
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, max(nice, os.getpriority(os.PRIO_PROCESS, tid)))
    except OSError as err:
        log('warn', f'the outputs thread keeps its priority (nice {nice} refused: {err})')
        return False
    return True
