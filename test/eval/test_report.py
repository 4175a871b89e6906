# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Run reports (vssm_ros/eval/report.py): tracking health over a run and the summary lines
(the figures while OK among them)."""

import numpy as np

from vssm_ros.eval.report import summary_table, tracking_report


def test_tracking_report_counts_changes_and_lost_spells():
    stamps = (np.arange(10) * 50_000_000 + 10**18).astype(np.int64)   # 20 Hz
    st = ['OK', 'OK', 'DEGRADED', 'LOST', 'LOST', 'LOST', 'DEGRADED', 'OK', 'LOST', 'LOST']
    r = tracking_report(stamps, st, relocalisations=1, b_a=np.array([0.1, 0.0, -0.05]),
                        b_g=np.zeros(3))
    assert r['status_frames'] == {'OK': 3, 'DEGRADED': 2, 'LOST': 5}
    assert [c[1] for c in r['changes']] == ['OK', 'DEGRADED', 'LOST', 'DEGRADED', 'OK',
                                            'LOST']
    np.testing.assert_allclose([c[0] for c in r['changes']], [0, 0.1, 0.15, 0.3, 0.35, 0.4])
    np.testing.assert_allclose(r['lost_spells'], [[0.15, 0.3], [0.4, 0.45]])
    assert r['relocalisations'] == 1
    assert r['bias'] == {'acc': [0.1, 0.0, -0.05], 'gyro': [0.0, 0.0, 0.0]}
    sig = tracking_report(stamps[:3], st[:3], signals=[{}, {'rmse': 1.0}, {'rmse': np.nan}])
    assert sig['signals'] == {'rmse': [1.0, 1.0, 1.0]}
    empty = tracking_report(np.zeros(0, np.int64), [])
    assert empty['status_frames'] == {'OK': 0, 'DEGRADED': 0, 'LOST': 0}
    assert empty['bias'] is None and empty['lost_spells'] == []


def test_summary_lines_show_tracking_and_bias():
    m = {'frames': {'processed': 10, 'received': 10, 'failed': 0},
         'ate': {'rmse': 0.5, 'max': 1.0, 'n': 10,
                 'ok_frames': {'rmse': 0.012, 'max': 0.02, 'n': 8}},
         'uncertainty': {'nees_mean': 3.1, 'coverage': 0.9, 'ok_frames': {'coverage': 0.93}},
         'tracking': {'status_frames': {'OK': 8, 'DEGRADED': 1, 'LOST': 1},
                      'lost_spells': [[0.2, 0.3]], 'relocalisations': 1,
                      'bias': {'acc': [0.05, 0.0, 0.0], 'gyro': [0.0, 0.001, 0.0]}}}
    text = summary_table(m)
    assert '8 OK, 1 DEGRADED, 1 LOST frames; 1 times lost, 1 relocalisations' in text
    assert ('ATE rmse 1.20 cm (max 2.00 cm), 93% inside the 95% ellipsoid (8 frames' in text)
    assert 'acc [+0.050, +0.000, +0.000]' in text and 'gyro [+0.0000, +0.0010' in text
