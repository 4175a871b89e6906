# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Metrics: exact cases by hand, statistics on fixed-seed samples, and evo as an oracle."""

import json
import math
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from vssm_ros.data.trajectory import read_tum_trajectory, write_tum_trajectory
from vssm_ros.errors import SyncError
from vssm_ros.eval.metrics import (CHI2_3DOF_95, align_trajectory, associate, ate,
                                   chi2_quantile, depth_l1, nees_and_coverage, rotation_angle,
                                   rpe, trajectory_metrics, umeyama_alignment)


def _rodrigues(w):
    theta = np.linalg.norm(w)
    if theta < 1e-15:
        return np.eye(3)
    k = w / theta
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * K + (1 - np.cos(theta)) * K @ K


def _se3(R, t):
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = t
    return T


def _random_trajectory(n, seed=0):
    rng = np.random.default_rng(seed)
    T = np.tile(np.eye(4), (n, 1, 1))
    for i in range(n):
        T[i, :3, :3] = _rodrigues(rng.normal(scale=1.0, size=3))
    T[:, :3, 3] = np.cumsum(rng.normal(scale=0.3, size=(n, 3)), axis=0)
    return T


# ----------------------------------------------------------------------------- associate

def test_associate_one_to_one_nearest():
    t_a = np.array([0.00, 0.10, 0.11, 0.30, 0.50])
    t_b = np.array([0.105, 0.31, 0.0, 0.9])  # unsorted
    ia, ib = associate(t_a, t_b, max_diff=0.02)
    # 0.10 and 0.11 both want 0.105 (diff 0.005 each; tie -> lower index); 0.5 has no partner.
    np.testing.assert_array_equal(ia, [0, 1, 3])
    np.testing.assert_array_equal(ib, [2, 0, 1])


def test_associate_max_diff_and_nanoseconds():
    t_a = np.array([1_000_000_000, 2_000_000_000], dtype=np.int64)  # ns
    t_b = np.array([1_015_000_000, 2_030_000_000], dtype=np.int64)
    ia, ib = associate(t_a, t_b, max_diff=0.02)
    np.testing.assert_array_equal(ia, [0])
    np.testing.assert_array_equal(ib, [0])
    ia, ib = associate(t_a, np.zeros(0), max_diff=0.02)
    assert ia.size == 0 and ib.size == 0


# ----------------------------------------------------------------------------- Umeyama

@pytest.mark.parametrize('with_scale', [False, True])
def test_umeyama_recovers_known_transform(with_scale):
    rng = np.random.default_rng(1)
    src = rng.normal(size=(50, 3))
    R = _rodrigues(np.array([0.3, -1.2, 2.5]))
    t = np.array([1.5, -2.0, 0.25])
    s = 1.7 if with_scale else 1.0
    dst = s * src @ R.T + t
    R_hat, t_hat, s_hat = umeyama_alignment(src, dst, with_scale=with_scale)
    np.testing.assert_allclose(R_hat, R, atol=1e-9)
    np.testing.assert_allclose(t_hat, t, atol=1e-9)
    assert s_hat == pytest.approx(s, abs=1e-9)


def test_umeyama_never_returns_a_reflection_and_rejects_lines():
    rng = np.random.default_rng(2)
    src = rng.normal(size=(20, 3))
    dst = src * np.array([1.0, 1.0, -1.0])  # a mirror image: best proper rotation, det +1
    R, _, _ = umeyama_alignment(src, dst)
    assert np.linalg.det(R) == pytest.approx(1.0, abs=1e-12)
    line = np.outer(np.arange(5.0), [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match='degenerate'):
        umeyama_alignment(line, line + 1.0)
    with pytest.raises(ValueError, match='at least 3'):
        umeyama_alignment(src[:2], dst[:2])


def test_align_trajectory_moves_orientations_too():
    T_gt = _random_trajectory(30, seed=3)
    T_x = _se3(_rodrigues(np.array([0.1, 0.2, -0.4])), [3.0, -1.0, 2.0])
    T_est = np.linalg.inv(T_x) @ T_gt
    aligned, T_align, s = align_trajectory(T_est, T_gt)
    np.testing.assert_allclose(aligned, T_gt, atol=1e-9)
    np.testing.assert_allclose(T_align, T_x, atol=1e-9)
    assert s == 1.0


# ----------------------------------------------------------------------------- ATE / RPE

def test_ate_of_rigidly_moved_trajectory():
    T_gt = _random_trajectory(40, seed=4)
    offset = np.array([0.3, -0.4, 1.2])  # |offset| = 1.3
    T_est = T_gt.copy()
    T_est[:, :3, 3] += offset
    res = ate(T_est, T_gt, align=True)
    assert res.rmse < 1e-12 and res.max < 1e-12 and res.n == 40
    np.testing.assert_allclose(res.alignment[:3, 3], -offset, atol=1e-12)
    raw = ate(T_est, T_gt, align=False)
    assert raw.rmse == pytest.approx(1.3, abs=1e-12)
    np.testing.assert_allclose(raw.errors, 1.3, atol=1e-12)
    assert raw.std == pytest.approx(0.0, abs=1e-12)
    # A rotation about the world origin is removed by the alignment as well.
    T_rot = _se3(_rodrigues(np.array([0.0, 0.0, 0.7])), offset) @ T_gt
    assert ate(T_rot, T_gt).rmse < 1e-12
    assert ate(T_rot, T_gt, align=False).rmse > 0.1


def test_ate_with_scale_and_known_noise():
    T_gt = _random_trajectory(200, seed=5)
    rng = np.random.default_rng(6)
    p_noise = rng.normal(scale=0.01, size=(200, 3))
    p_est = 0.5 * (T_gt[:, :3, 3] + p_noise)  # monocular-like: half scale
    res = ate(p_est, T_gt[:, :3, 3], with_scale=True)
    assert res.scale == pytest.approx(2.0, rel=2e-3)
    # The residual is the noise minus what a 7-parameter fit absorbs: close to its rms.
    assert res.rmse == pytest.approx(np.sqrt(np.mean(np.sum(p_noise ** 2, 1))), rel=0.05)


def test_rpe_of_constant_drift():
    n = 20
    T_gt = np.tile(np.eye(4), (n, 1, 1))
    T_gt[:, 0, 3] = np.arange(n) * 1.0  # 1 m steps along x
    T_est = np.tile(np.eye(4), (n, 1, 1))
    for i in range(n):
        # Each step 1.1 m forward in the body frame and 1 degree of extra yaw.
        T_est[i] = T_est[i - 1] @ _se3(_rodrigues(np.radians([0, 0, 1.0])), [1.1, 0, 0]) \
            if i else np.eye(4)
    res = rpe(T_est, T_gt, delta=1)
    assert res.n == n - 1 and res.delta_unit == 'frames'
    # E = rel_gt^-1 rel_est = [Rz(1 deg), (0.1, 0, 0)]: exact numbers for every pair.
    np.testing.assert_allclose(res.trans_errors, 0.1, atol=1e-12)
    np.testing.assert_allclose(res.rot_errors_deg, 1.0, atol=1e-10)
    assert res.rot_rmse_deg == pytest.approx(1.0, abs=1e-10)
    # Rigid motion of the whole estimate does not change the RPE.
    moved = rpe(_se3(_rodrigues(np.array([1.0, 2.0, 3.0])), [5, 6, 7]) @ T_est, T_gt)
    assert moved.trans_rmse == pytest.approx(0.1, abs=1e-12)
    # Pairs 3 frames (0.3 s) apart: gt advances 3 m; every pair compares 3 composed steps.
    stamps = np.arange(n) * 0.1
    by_time = rpe(T_est, T_gt, delta_s=0.3, stamps=stamps)
    by_frame = rpe(T_est, T_gt, delta=3)
    assert by_time.n == by_frame.n == n - 3
    np.testing.assert_allclose(by_time.trans_errors, by_frame.trans_errors, atol=1e-12)
    np.testing.assert_allclose(by_time.rot_errors_deg, 3.0, atol=1e-9)
    assert rpe(T_est, T_gt, delta=3, all_pairs=False).n == len(range(0, n - 3, 3))


def test_rotation_angle_precise_near_zero_and_pi():
    for theta in [1e-10, 1e-4, 1.0, np.pi - 1e-7, np.pi]:
        R = _rodrigues(theta * np.array([2.0, -1.0, 0.5]) / np.linalg.norm([2.0, -1.0, 0.5]))
        assert rotation_angle(R) == pytest.approx(theta, rel=1e-6)


# ----------------------------------------------------------------------------- depth, NEES

def test_depth_l1_masks_invalid_pixels():
    obs = np.array([[1.0, 2.0, np.nan], [0.0, 4.0, 5.0]], dtype=np.float32)
    pred = np.array([[1.5, 1.0, 3.0], [2.0, np.nan, 5.25]])
    out = depth_l1(pred, obs)
    assert out['n'] == 3
    assert out['median'] == pytest.approx(0.5)
    assert out['mean'] == pytest.approx((0.5 + 1.0 + 0.25) / 3)
    empty = depth_l1(np.full((2, 2), np.nan), np.ones((2, 2)))
    assert empty['n'] == 0 and np.isnan(empty['mean'])


def test_nees_and_coverage_on_samples_from_the_covariance():
    rng = np.random.default_rng(7)
    n = 20000
    A = rng.normal(size=(n, 3, 3))
    cov = A @ np.swapaxes(A, 1, 2) + 0.1 * np.eye(3)  # random SPD per sample
    err = (np.linalg.cholesky(cov) @ rng.normal(size=(n, 3, 1)))[..., 0]
    out = nees_and_coverage(err, cov)
    assert out['coverage'] == pytest.approx(0.95, abs=0.02)
    assert out['nees_mean'] == pytest.approx(3.0, abs=0.1)
    assert out['threshold'] == CHI2_3DOF_95 and out['n'] == n
    # Claiming half the standard deviation (over-confident) is caught.
    tight = nees_and_coverage(err, 0.25 * cov)
    assert tight['nees_mean'] == pytest.approx(12.0, rel=0.05)
    assert tight['coverage'] < 0.5
    with pytest.raises(ValueError, match='positive definite'):
        nees_and_coverage(err[:1], -np.eye(3)[None])


def _chi2_cdf_closed_form(x, dof):
    """Closed forms of the chi-square CDF for small dof (an oracle independent of the module)."""
    h = x / 2
    return {1: math.erf(math.sqrt(h)),
            2: 1 - math.exp(-h),
            3: math.erf(math.sqrt(h)) - math.sqrt(2 * x / math.pi) * math.exp(-h),
            4: 1 - math.exp(-h) * (1 + h),
            6: 1 - math.exp(-h) * (1 + h + h * h / 2)}[dof]


def test_chi2_quantile_inverts_the_cdf():
    for prob, dof in [(0.99, 3), (0.5, 3), (0.999, 3), (0.01, 3), (0.95, 1), (0.95, 2),
                      (0.68, 4), (0.95, 6), (0.3, 6)]:
        x = chi2_quantile(prob, dof)
        assert _chi2_cdf_closed_form(x, dof) == pytest.approx(prob, abs=1e-11)
    assert chi2_quantile(0.95, 2) == pytest.approx(-2 * math.log(0.05), rel=1e-11)
    # The bisection itself reproduces the constant used for the common case.
    assert chi2_quantile(0.95 + 1e-15, 3) == pytest.approx(CHI2_3DOF_95, rel=1e-9)
    assert _chi2_cdf_closed_form(CHI2_3DOF_95, 3) == pytest.approx(0.95, abs=1e-14)


def test_trajectory_metrics_json_and_sync_error():
    T_gt = _random_trajectory(50, seed=8)
    t_gt = 100.0 + np.arange(50) * 0.01
    T_est = T_gt[::2].copy()
    T_est[:, :3, 3] += [0.1, 0.0, 0.0]
    t_est = t_gt[::2] + 0.001
    out = trajectory_metrics(t_est, T_est, t_gt, T_gt, max_diff=0.005)
    text = json.dumps(out, allow_nan=False)
    assert json.loads(text)['n_matched'] == 25
    assert out['ate']['rmse'] < 1e-12
    assert out['rpe']['n'] == 24 and out['rpe']['trans_rmse'] < 1e-12
    with pytest.raises(SyncError, match='only 0 of 25'):
        trajectory_metrics(t_est + 10.0, T_est, t_gt, T_gt, max_diff=0.005)


# ----------------------------------------------------------------------------- evo oracle

def _evo(tool):
    exe = Path(sys.executable).parent / tool
    if not exe.exists():
        pytest.skip(f'{tool} (evo, a dev-only oracle) is not installed next to {sys.executable}')
    return exe


def _evo_stats(exe, args, tmp_path, name):
    out = tmp_path / f'{name}.zip'
    proc = subprocess.run([str(exe), 'tum', *map(str, args), '--save_results', str(out),
                           '--no_warnings', '--silent'], capture_output=True, text=True,
                          timeout=120, env={'HOME': str(tmp_path), 'PATH': '/usr/bin:/bin'})
    assert proc.returncode == 0, proc.stderr
    with zipfile.ZipFile(out) as zf:
        return json.loads(zf.read('stats.json'))


def test_ate_and_rpe_match_evo(tum_teddy_dir, tmp_path):
    evo_ape, evo_rpe = _evo('evo_ape'), _evo('evo_rpe')
    gt_path = tum_teddy_dir / 'groundtruth.txt'
    t_gt, T_gt = read_tum_trajectory(gt_path)
    # Estimate: every 3rd pose, moved by a known rigid transform, plus fixed-seed noise
    # (1 cm on positions, 0.5 deg on orientations).
    rng = np.random.default_rng(42)
    t_est = t_gt[::3]
    T_est = _se3(_rodrigues(np.array([0.2, -0.5, 1.1])), [1.0, -2.0, 0.5]) @ T_gt[::3]
    for i in range(len(T_est)):
        T_est[i, :3, :3] = T_est[i, :3, :3] @ _rodrigues(rng.normal(scale=np.radians(0.5),
                                                                    size=3))
    T_est[:, :3, 3] += rng.normal(scale=0.01, size=(len(T_est), 3))
    est_path = tmp_path / 'est.tum'
    write_tum_trajectory(est_path, t_est, T_est)

    t_e, T_e = read_tum_trajectory(est_path)
    ours = trajectory_metrics(t_e, T_e, t_gt, T_gt, max_diff=0.005)
    assert ours['n_matched'] == len(t_est)
    # Sanity: 1 cm isotropic noise gives ~1.7 cm ATE; the 1-2 m offset was aligned away.
    assert 0.01 < ours['ate']['rmse'] < 0.025

    common = [gt_path, est_path, '--t_max_diff', '0.005']
    ape = _evo_stats(evo_ape, [*common, '--align'], tmp_path, 'ape')
    assert ours['ate']['rmse'] == pytest.approx(ape['rmse'], abs=1e-6)
    assert ours['ate']['max'] == pytest.approx(ape['max'], abs=1e-6)
    assert ours['ate']['median'] == pytest.approx(ape['median'], abs=1e-6)

    rpe_t = _evo_stats(evo_rpe, [*common, '--delta', '1', '--delta_unit', 'f', '-r',
                                 'trans_part'], tmp_path, 'rpe_t')
    rpe_r = _evo_stats(evo_rpe, [*common, '--delta', '1', '--delta_unit', 'f', '-r',
                                 'angle_deg'], tmp_path, 'rpe_r')
    assert ours['rpe']['trans_rmse'] == pytest.approx(rpe_t['rmse'], abs=1e-6)
    assert ours['rpe']['trans_mean'] == pytest.approx(rpe_t['mean'], abs=1e-6)
    assert ours['rpe']['rot_rmse_deg'] == pytest.approx(rpe_r['rmse'], abs=1e-6)
