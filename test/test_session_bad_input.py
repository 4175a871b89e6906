# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""SlamSession's bad-input accounting, the one both drivers report (issue 17): counts by
reason with the first examples (metrics.json, diagnostics), IMU gaps, implausible IMU."""

import numpy as np

from vssm_ros.config import VssmConfig
from vssm_ros.session import BAD_EXAMPLES, SlamSession
from vssm_ros.types import ImuSample

G = np.array([0.0, 0.0, 9.81])
T0 = 1_700_000_000_000_000_000


def _imu(t_ms, acc=G, gyro=np.zeros(3)):
    return ImuSample(T0 + int(t_ms * 1e6), np.asarray(acc, float), np.asarray(gyro, float))


def test_counts_keep_the_first_examples_of_each_reason():
    logs = []
    s = SlamSession(VssmConfig(), log=lambda lvl, t: logs.append(t))
    for k in range(5):
        s.bad('rgb_encoding', f'example {k}')
    s.bad('depth_data_size', 'only one', n=4)
    s.bad('never', 'not counted', n=0)
    assert s.bad_counts() == {'depth_data_size': 4, 'rgb_encoding': 5}
    assert s.bad_input_examples() == {
        'depth_data_size': ['only one'],
        'rgb_encoding': [f'example {k}' for k in range(BAD_EXAMPLES)]}
    stats = s.stats()
    assert stats['bad.rgb_encoding'] == 5
    assert stats['bad_examples.rgb_encoding'] == 'example 0 | example 1 | example 2'
    assert logs == ['example 0', 'only one (4 so far)']   # throttled per reason


def test_imu_gaps_out_of_range_and_repeats():
    s = SlamSession(VssmConfig())   # engine.motion.max_imu_gap 0.1 s
    stream = [_imu(0), _imu(5), _imu(5), _imu(4), _imu(10, acc=[1e308, 0, 0]),
              _imu(15, gyro=[0, 0, -500.0]), _imu(20, acc=[-999.0, 0, 0]), _imu(420), _imu(425)]
    kept = [s.add_imu(x) for x in stream]
    assert kept == [True, True, False, False, False, False, True, True, True]
    assert s.bad_counts() == {'imu_gap': 1, 'imu_out_of_range': 2, 'imu_stamp_repeated': 1,
                              'imu_time_backwards': 1}
    assert s.bad_input_examples()['imu_gap'] == [
        f'no IMU sample for 0.400 s before {T0 + 420_000_000} ns (more than '
        'engine.motion.max_imu_gap = 0.1 s)']
    assert s.counts['imu_received'] == len(stream)
    # After a reset the next sample opens a new stream: no gap.
    s.reset()
    assert s.add_imu(_imu(5000)) and s.bad_counts()['imu_gap'] == 1
