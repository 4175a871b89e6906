# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Flights with ground truth for the dynamics: the Blackbird splits on disk, the writer, errors."""

import dataclasses

import numpy as np
import pytest

from vssm_ros.config import SyntheticConfig
from vssm_ros.data.flight_log import (FlightLog, load_blackbird_split, synthetic_flight_log,
                                      write_blackbird_split)
from vssm_ros.data.synthetic import generate_flight
from vssm_ros.errors import SourceError

h5py = pytest.importorskip('h5py')


@pytest.fixture(scope='module')
def synthetic():
    return synthetic_flight_log(generate_flight(SyntheticConfig(duration_s=1.5, width=16,
                                                                height=12)))


def test_the_real_val_split(blackbird_dir):
    f = load_blackbird_split(blackbird_dir / 'val')
    n = len(f)
    assert n == 3000 and f.dt == pytest.approx(0.01, abs=1e-6)
    assert f.p.shape == f.v.shape == f.acc.shape == f.gyro.shape == f.thrust.shape == (n, 3)
    np.testing.assert_allclose(np.linalg.norm(f.q, axis=1), 1.0, atol=1e-9)
    assert np.all(f.thrust[:, :2] == 0) and np.all(f.thrust[:, 2] < 0)   # along IMU -z
    # Frames: world z up, IMU in the IMU frame: R acc + g is the motion-capture acceleration.
    from scipy.spatial.transform import Rotation

    R = Rotation.from_quat(f.q).as_matrix()
    a_imu = np.einsum('nij,nj->ni', R, f.acc) + (0.0, 0.0, -9.81)
    a_gt = np.gradient(f.v, f.t, axis=0)
    for k in range(3):
        assert np.corrcoef(a_imu[:, k], a_gt[:, k])[0, 1] > 0.6
    assert np.abs(a_imu.mean(0) - a_gt.mean(0)).max() < 0.2
    # Velocity is the derivative of position.
    assert np.sqrt(np.mean((np.gradient(f.p, f.t, axis=0) - f.v) ** 2)) < 0.02
    assert f.controls('imu').shape == (n, 6) and f.controls('thrust').shape == (n, 6)
    calib = load_blackbird_split(blackbird_dir / 'val', calibrated=True)
    assert calib.acc.shape == f.acc.shape


def test_write_and_read_back(tmp_path, synthetic):
    write_blackbird_split(tmp_path / 'val', synthetic)
    back = load_blackbird_split(tmp_path / 'val')
    for field in ('t', 'p', 'v', 'acc', 'gyro', 'thrust'):
        np.testing.assert_allclose(getattr(back, field), getattr(synthetic, field), atol=1e-9)
    np.testing.assert_allclose(np.abs(np.sum(back.q * synthetic.q, axis=1)), 1.0, atol=1e-9)
    part = synthetic.slice(10, 20)
    assert len(part) == 10 and part.t[0] == synthetic.t[10]
    with pytest.raises(ValueError, match='controls'):
        synthetic.controls('rpm')


def _corrupt(tmp_path, synthetic, **arrays):
    write_blackbird_split(tmp_path, synthetic)
    with h5py.File(tmp_path / 'data.hdf5', 'a') as fh:
        for k, v in arrays.items():
            del fh[k]
            if v is not None:
                fh[k] = v
    return tmp_path


def test_bad_flights_say_what_is_wrong(tmp_path, synthetic):
    with pytest.raises(SourceError, match='missing'):
        load_blackbird_split(tmp_path / 'nothing')
    d = _corrupt(tmp_path / 'a', synthetic, thrust=None)
    with pytest.raises(SourceError, match='thrust'):
        load_blackbird_split(d)
    d = _corrupt(tmp_path / 'b', synthetic, gyro_raw=synthetic.gyro[:-1])
    with pytest.raises(SourceError, match='gyro_raw has shape'):
        load_blackbird_split(d)
    d = _corrupt(tmp_path / 'c', synthetic, ts=synthetic.t + 0.5)
    with pytest.raises(SourceError, match='stamps'):
        load_blackbird_split(d)
    backwards = dataclasses.replace(synthetic, t=synthetic.t[::-1].copy())
    write_blackbird_split(tmp_path / 'd', backwards)
    with pytest.raises(SourceError, match='increasing'):
        load_blackbird_split(tmp_path / 'd')
    write_blackbird_split(tmp_path / 'e', synthetic)
    (tmp_path / 'e' / 'data.hdf5').write_bytes(b'not hdf5')
    with pytest.raises(SourceError, match='HDF5'):
        load_blackbird_split(tmp_path / 'e')
    write_blackbird_split(tmp_path / 'f', synthetic)
    (tmp_path / 'f' / 'stamped_groundtruth_imu.txt').write_text('1 2 3\n')
    with pytest.raises(SourceError, match='11 columns'):
        load_blackbird_split(tmp_path / 'f')
    short = FlightLog(**{k: v[:5] if isinstance(v, np.ndarray) else v
                         for k, v in dataclasses.asdict(synthetic).items()})
    write_blackbird_split(tmp_path / 'g', synthetic)
    write_blackbird_split(tmp_path / 'h', short)
    (tmp_path / 'g' / 'data.hdf5').replace(tmp_path / 'h' / 'data.hdf5')
    with pytest.raises(SourceError, match='samples'):
        load_blackbird_split(tmp_path / 'h')
