# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The outputs' thread (``vssm_ros.output_worker``): its CPU budget (``node.output_cpu_share``)."""

import pytest

from vssm_ros.output_worker import OutputWorker

WAIT_S = 10.0


class Clocks:
    """A wall clock the test moves, and a CPU clock each render advances by ``cost``."""

    def __init__(self, cost: float) -> None:
        self.now, self.cpu, self.cost = 100.0, 0.0, cost

    def render(self, frame, est, engine, defer):
        self.cpu += self.cost
        return [('out', frame)]


def make_worker(share, cost=0.1):
    clocks, published = Clocks(cost), []
    worker = OutputWorker(clocks.render, lambda name, msg: published.append(msg),
                          lambda level, text: None, cpu_share=share,
                          clock=lambda: clocks.now, cpu_clock=lambda: clocks.cpu)
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
