# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The outputs' thread (``vssm_ros.output_worker``): its CPU budget (``node.output_cpu_share``)
and its priority (``node.output_nice``)."""

import os
import sys
import threading

import pytest

from vssm_ros.output_worker import OutputWorker, lower_thread_priority

LINUX = sys.platform.startswith('linux')

WAIT_S = 10.0


class Clocks:
    """A wall clock the test moves, and a CPU clock each render advances by ``cost``."""

    def __init__(self, cost: float) -> None:
        self.now, self.cpu, self.cost = 100.0, 0.0, cost

    def render(self, frame, est, engine, defer):
        self.cpu += self.cost
        return [('out', frame)]


def make_worker(share, cost=0.1, nice=0):
    clocks, published = Clocks(cost), []
    worker = OutputWorker(clocks.render, lambda name, msg: published.append(msg),
                          lambda level, text: None, cpu_share=share,
                          clock=lambda: clocks.now, cpu_clock=lambda: clocks.cpu, nice=nice)
    return worker, clocks, published


def test_the_outputs_thread_keeps_to_its_share_of_a_core():
    # A render of 0.1 s of CPU at a quarter of a core: no estimate taken for the next 0.3 s.
    worker, clocks, published = make_worker(0.25)
    assert worker.offer(1, None, None)
    assert worker.wait_idle(WAIT_S)
    clocks.now += 0.29
    assert not worker.offer(2, None, None)
    clocks.now += 0.02
    assert worker.offer(3, None, None) and worker.wait_idle(WAIT_S)
    assert published == [1, 3] and worker.cooling == 1 and worker.rendered == 2
    worker.close()


def test_the_whole_core_is_no_limit_and_a_bad_share_is_refused():
    worker, clocks, published = make_worker(1.0)
    for k in range(3):
        assert worker.offer(k, None, None) and worker.wait_idle(WAIT_S)
    assert published == [0, 1, 2] and worker.cooling == 0
    worker.close()
    for share in (0.0, 1.5):
        with pytest.raises(ValueError, match='cpu_share'):
            make_worker(share)


def _own_nice():
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(not LINUX, reason='a thread of its own nice value is Linux only')
@pytest.mark.parametrize('nice', [0, 7])
def test_the_outputs_thread_renders_at_its_nice_value_and_the_rest_keeps_theirs(nice):
    base = _own_nice()
    seen = []
    worker = OutputWorker(lambda frame, est, engine, defer: seen.append(_own_nice()) or [],
                          lambda name, msg: None, lambda level, text: None, nice=nice)
    assert worker.offer(1, None, None) and worker.wait_idle(WAIT_S)
    worker.close()
    assert seen == [max(base, nice)]   # never a higher priority than the process has
    assert _own_nice() == base and os.getpriority(os.PRIO_PROCESS, 0) == base


@pytest.mark.skipif(not LINUX, reason='a thread of its own nice value is Linux only')
def test_a_refused_priority_is_logged_and_the_thread_goes_on(monkeypatch):
    def refuse(*args):
        raise PermissionError('not permitted')
    logged = []
    monkeypatch.setattr(os, 'setpriority', refuse)
    assert not lower_thread_priority(5, lambda level, text: logged.append((level, text)))
    assert logged and logged[0][0] == 'warn' and 'nice 5 refused' in logged[0][1]


def test_elsewhere_than_linux_the_process_priority_is_left_alone(monkeypatch):
    calls = []
    monkeypatch.setattr(sys, 'platform', 'darwin')
    monkeypatch.setattr(os, 'setpriority', lambda *a: calls.append(a), raising=False)
    assert not lower_thread_priority(19, lambda level, text: None)
    assert calls == []
