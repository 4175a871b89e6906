# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Flights with ground-truth states and controls, for learning and evaluating dynamics.

Reads the Blackbird flights as pre-processed for learning inertial odometry (Cioffi et al.,
"Learned Inertial Odometry for Autonomous Drone Racing", RA-L 2023), one folder per split::

    <split>/data.hdf5                    ts (N,), accel_raw / accel_calib (N, 3) m/s²,
                                         gyro_raw / gyro_calib (N, 3) rad/s,
                                         thrust (N, 3) mass-normalised collective thrust
    <split>/stamped_groundtruth_imu.txt  ts x y z qx qy qz qw vx vy vz (header line '# ...')

World frame z up; orientation, IMU and thrust in the IMU frame (which is z-down on Blackbird: at
hover the accelerometer reads about (0, 0, -9.8) and the orientation is about 180° about x).
Reading the HDF5 file needs h5py, an optional dependency (``pip install h5py``, or the
package's ``train`` extra); nothing else in vssm_ros does.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np

from vssm_ros.data.atomic import atomic_open
from vssm_ros.data.transforms import matrix_to_quat
from vssm_ros.errors import SourceError

PathLike = Union[str, os.PathLike]

GROUND_TRUTH_FILE = 'stamped_groundtruth_imu.txt'
HDF5_FILE = 'data.hdf5'
STAMP_TOLERANCE_S = 1e-4
"""Largest difference between the HDF5 and the ground-truth stamps of one sample."""


@dataclass(frozen=True)
class FlightLog:
    """Ground-truth states and controls at the same stamps.

    Attributes:
        t: stamps (seconds), strictly increasing. Shape: (N,).
        p: position, world. Shape: (N, 3).
        q: orientation world <- IMU, xyzw. Shape: (N, 4).
        v: velocity, world. Shape: (N, 3).
        acc: specific force, IMU frame. Shape: (N, 3).
        gyro: angular rate, IMU frame. Shape: (N, 3).
        thrust: mass-normalised collective thrust vector, IMU frame. Shape: (N, 3).
        name: where it came from.
    """

    t: np.ndarray
    p: np.ndarray
    q: np.ndarray
    v: np.ndarray
    acc: np.ndarray
    gyro: np.ndarray
    thrust: np.ndarray
    name: str = ''

    def __len__(self) -> int:
        return int(len(self.t))

    def controls(self, kind: str) -> np.ndarray:
        """Controls ``(a, ω)`` per sample: 'imu' (accelerometer, gyro) or 'thrust' (thrust
        vector, gyro). Shape: (N, 6)."""
        if kind == 'imu':
            return np.concatenate((self.acc, self.gyro), axis=1)
        if kind == 'thrust':
            return np.concatenate((self.thrust, self.gyro), axis=1)
        raise ValueError(f"controls must be 'imu' or 'thrust', got {kind!r}")

    def slice(self, start: int, stop: int) -> 'FlightLog':
        """Samples ``start:stop``."""
        return dataclasses.replace(
            self, **{f.name: getattr(self, f.name)[start:stop]
                     for f in dataclasses.fields(self) if f.name != 'name'})

    @property
    def dt(self) -> float:
        """Median sample spacing (seconds)."""
        return float(np.median(np.diff(self.t)))


def load_blackbird_split(path: PathLike, calibrated: bool = False) -> FlightLog:
    """Read one split (folder with data.hdf5 and stamped_groundtruth_imu.txt).

    Args:
        path: the split's folder, e.g. ``blackbird_clover_5p0/train``.
        calibrated: read accel_calib / gyro_calib instead of accel_raw / gyro_raw.

    Raises:
        SourceError: missing files, missing h5py, unreadable or inconsistent data (the message
            says which).
    """
    path = Path(path)
    gt_path, h5_path = path / GROUND_TRUTH_FILE, path / HDF5_FILE
    for f in (gt_path, h5_path):
        if not f.is_file():
            raise SourceError(f'{path} is not a flight folder: {f.name} is missing (expected '
                              f'{HDF5_FILE} and {GROUND_TRUTH_FILE})')
    try:
        gt = np.loadtxt(gt_path, comments='#', ndmin=2, dtype=np.float64)
    except ValueError as err:
        raise SourceError(f'{gt_path}: not a table of numbers ({err})') from err
    if gt.shape[1] != 11:
        raise SourceError(f'{gt_path}: expected 11 columns (ts x y z qx qy qz qw vx vy vz), got '
                          f'{gt.shape[1]}')
    acc_key, gyro_key = ('accel_calib', 'gyro_calib') if calibrated else ('accel_raw', 'gyro_raw')
    h5 = _read_hdf5(h5_path, ('ts', acc_key, gyro_key, 'thrust'))
    n = len(h5['ts'])
    for key in (acc_key, gyro_key, 'thrust'):
        if h5[key].shape != (n, 3):
            raise SourceError(f'{h5_path}: {key} has shape {h5[key].shape}, expected ({n}, 3)')
    if len(gt) != n:
        raise SourceError(f'{path}: {HDF5_FILE} has {n} samples but {GROUND_TRUTH_FILE} has '
                          f'{len(gt)}')
    t = gt[:, 0]
    if np.max(np.abs(t - h5['ts'])) > STAMP_TOLERANCE_S:
        raise SourceError(f'{path}: the stamps of {HDF5_FILE} and {GROUND_TRUTH_FILE} differ by '
                          f'up to {np.max(np.abs(t - h5["ts"])):.3g} s')
    if n < 2 or not np.all(np.diff(t) > 0):
        raise SourceError(f'{gt_path}: stamps must be strictly increasing (and at least 2)')
    arrays = (gt, h5[acc_key], h5[gyro_key], h5['thrust'])
    if not all(np.all(np.isfinite(a)) for a in arrays):
        raise SourceError(f'{path}: non-finite values in the flight')
    q = gt[:, 4:8] / np.linalg.norm(gt[:, 4:8], axis=1, keepdims=True)
    return FlightLog(t=t, p=gt[:, 1:4], q=q, v=gt[:, 8:11], acc=h5[acc_key], gyro=h5[gyro_key],
                     thrust=h5['thrust'], name=str(path))


def _read_hdf5(path: Path, keys) -> dict:
    try:
        import h5py  # lazily: an optional dependency, only for training data
    except ImportError as err:
        raise SourceError(f'reading {path} needs h5py: pip install h5py (or install vssm_ros '
                          'with the "train" extra)') from err
    try:
        with h5py.File(path, 'r') as fh:
            missing = [k for k in keys if k not in fh]
            if missing:
                raise SourceError(f'{path}: datasets {missing} are missing (has: '
                                  f'{sorted(fh.keys())})')
            return {k: np.asarray(fh[k][()], dtype=np.float64) for k in keys}
    except OSError as err:
        raise SourceError(f'{path}: not a readable HDF5 file ({err})') from err


def write_blackbird_split(path: PathLike, flight: FlightLog) -> None:
    """Write a flight in the layout ``load_blackbird_split`` reads (raw and calibrated IMU
    equal), e.g. to train or test on synthetic flights. Needs h5py."""
    try:
        import h5py
    except ImportError as err:
        raise SourceError('writing data.hdf5 needs h5py: pip install h5py') from err
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    gt = np.concatenate((flight.t[:, None], flight.p, flight.q, flight.v), axis=1)
    with atomic_open(path / GROUND_TRUTH_FILE, 'w', encoding='utf-8') as fh:
        fh.write('# ts x y z qx qy qz qw vx vy vz\n')
        np.savetxt(fh, gt, fmt='%.12f')
    # h5py writes through its own file handle: write beside, then rename (atomic).
    tmp = path / f'.{HDF5_FILE}.tmp'
    with h5py.File(tmp, 'w') as fh:
        fh['ts'] = flight.t
        for key, value in (('accel', flight.acc), ('gyro', flight.gyro)):
            fh[f'{key}_raw'] = value
            fh[f'{key}_calib'] = value
        fh['thrust'] = flight.thrust
    os.replace(tmp, path / HDF5_FILE)


def synthetic_flight_log(flight) -> FlightLog:
    """A ``vssm_ros.data.synthetic.SyntheticFlight`` at its IMU stamps as a FlightLog (body
    frame = IMU frame). Its collective thrust is the body-z specific force (no drag)."""
    gt = flight.gt_imu
    acc = flight.imu.acc
    thrust = np.zeros_like(acc)
    thrust[:, 2] = flight.imu.acc_true[:, 2]
    return FlightLog(t=gt.stamps_ns * 1e-9, p=gt.T_world_body[:, :3, 3].copy(),
                     q=matrix_to_quat(gt.T_world_body[:, :3, :3]), v=gt.v_world.copy(),
                     acc=acc.copy(), gyro=flight.imu.gyro.copy(), thrust=thrust,
                     name='synthetic')
