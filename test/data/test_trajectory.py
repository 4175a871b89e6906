# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""TUM trajectory files: exact round trips, quaternion handling, errors that name the line."""

import numpy as np
import pytest

from vssm_ros.data.trajectory import read_tum_trajectory, write_tum_trajectory
from vssm_ros.errors import SourceError


def _rodrigues(w):
    """Rotation matrix of a rotation vector (independent of the module under test)."""
    theta = np.linalg.norm(w)
    if theta < 1e-15:
        return np.eye(3)
    k = w / theta
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(theta) * K + (1 - np.cos(theta)) * K @ K


def _random_poses(n, seed=0):
    rng = np.random.default_rng(seed)
    T = np.tile(np.eye(4), (n, 1, 1))
    for i in range(n):
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        T[i, :3, :3] = _rodrigues(axis * rng.uniform(0, np.pi))
    T[:, :3, 3] = rng.uniform(-50, 50, size=(n, 3))
    # Angles of exactly pi (trace -1) and 0 exercise every branch of the matrix->quaternion
    # conversion, the cases where naive formulas divide by zero.
    T[0, :3, :3] = _rodrigues(np.array([np.pi, 0, 0]))
    T[1, :3, :3] = _rodrigues(np.array([0, np.pi, 0]))
    T[2, :3, :3] = _rodrigues(np.array([0, 0, np.pi]))
    T[3, :3, :3] = np.eye(3)
    return T


def test_round_trip_seconds_exact_to_1e9(tmp_path):
    T = _random_poses(64)
    stamps = 1341841873.4151 + np.arange(64) * 0.0333333
    path = tmp_path / 'traj.tum'
    write_tum_trajectory(path, stamps, T)
    t_back, T_back = read_tum_trajectory(path)
    assert T_back.shape == (64, 4, 4)
    np.testing.assert_allclose(t_back, stamps, rtol=0, atol=1e-9)
    np.testing.assert_allclose(T_back, T, rtol=0, atol=1e-9)
    # No temporary file left beside the output.
    assert [p.name for p in tmp_path.iterdir()] == ['traj.tum']


def test_round_trip_nanoseconds_written_exactly(tmp_path):
    T = _random_poses(5, seed=1)
    stamps_ns = np.array([1341841873415100123, 1341841873448433456, 5, 0, 2_000_000_000],
                         dtype=np.int64)
    path = tmp_path / 'traj.tum'
    write_tum_trajectory(path, stamps_ns, T)
    first_fields = [line.split()[0] for line in path.read_text().splitlines()
                    if not line.startswith('#')]
    assert first_fields == ['1341841873.415100123', '1341841873.448433456', '0.000000005',
                            '0.000000000', '2.000000000']
    t_back, T_back = read_tum_trajectory(path)
    np.testing.assert_allclose(t_back, stamps_ns * 1e-9, rtol=1e-15, atol=0)
    np.testing.assert_allclose(T_back, T, rtol=0, atol=1e-9)


def test_quaternion_convention_and_normalisation(tmp_path):
    s = np.sqrt(0.5)
    path = tmp_path / 'q.tum'
    # 90 deg about z, xyzw; the second line stores the same quaternion scaled by 2 and negated.
    path.write_text('# comment\n\n'
                    f'1.0 1 2 3 0 0 {s} {s}\n'
                    f'2.0 4 5 6 0 0 {-2 * s} {-2 * s}\n')
    t, T = read_tum_trajectory(path)
    Rz = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    np.testing.assert_allclose(t, [1.0, 2.0])
    np.testing.assert_allclose(T[0, :3, :3], Rz, atol=1e-15)
    np.testing.assert_allclose(T[1, :3, :3], Rz, atol=1e-15)
    np.testing.assert_allclose(T[:, :3, 3], [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_allclose(T[:, 3], [[0, 0, 0, 1]] * 2)
    # Written back with w >= 0 and unit norm.
    out = tmp_path / 'q2.tum'
    write_tum_trajectory(out, t, T)
    q = np.loadtxt(out)[:, 4:]
    np.testing.assert_allclose(q, [[0, 0, s, s]] * 2, atol=1e-12)


def test_real_tum_ground_truth(tum_teddy_dir):
    t, T = read_tum_trajectory(tum_teddy_dir / 'groundtruth.txt')
    assert t.shape == (368,) and T.shape == (368, 4, 4)
    assert t[0] == pytest.approx(1341841873.4151, abs=1e-6)
    np.testing.assert_allclose(T[0, :3, 3], [-2.1837, 0.6821, 1.4854])
    assert np.all(np.diff(t) > 0)
    # 4-decimal quaternions were normalised: rotations are orthonormal to rounding.
    RtR = np.swapaxes(T[:, :3, :3], 1, 2) @ T[:, :3, :3]
    np.testing.assert_allclose(RtR, np.broadcast_to(np.eye(3), RtR.shape), atol=1e-12)


@pytest.mark.parametrize('bad_line, what', [
    ('3.0 1 2 3 0 0 0', 'expected 8 values'),
    ('3.0 1 2 x 0 0 0 1', 'not a number'),
    ('3.0 1 2 3 0 0 0 0', 'zero quaternion'),
    ('3.0 1 2 nan 0 0 0 1', 'non-finite'),
])
def test_malformed_line_is_named(tmp_path, bad_line, what):
    path = tmp_path / 'bad.tum'
    path.write_text(f'# header\n1.0 0 0 0 0 0 0 1\n{bad_line}\n2.0 0 0 0 0 0 0 1\n')
    with pytest.raises(SourceError) as info:
        read_tum_trajectory(path)
    msg = str(info.value)
    assert f'{path}:3:' in msg and what in msg


def test_missing_file_and_bad_shapes(tmp_path):
    with pytest.raises(SourceError, match='nope.tum'):
        read_tum_trajectory(tmp_path / 'nope.tum')
    with pytest.raises(ValueError, match='expected 2 stamps'):
        write_tum_trajectory(tmp_path / 'x.tum', np.zeros(3), np.tile(np.eye(4), (2, 1, 1)))
    assert not (tmp_path / 'x.tum').exists()


def test_empty_file(tmp_path):
    path = tmp_path / 'empty.tum'
    path.write_text('# nothing yet\n')
    t, T = read_tum_trajectory(path)
    assert t.shape == (0,) and T.shape == (0, 4, 4)
