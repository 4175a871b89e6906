# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Time ``core.imu.preintegrate`` against the sequential loop it replaced (the test oracle).

A frame normally carries 5 to 10 IMU samples; a node that falls behind hands over 40 or 160 at
once, where the loop's cost (about 40 small torch ops per sample) added tens of milliseconds.
Prints the median time per call over 50 calls, float32 on the CPU with one thread (the
node's setting), no batch dimensions, noise densities set (the covariance is computed).

Usage: OMP_NUM_THREADS=1 .venv/bin/python tools/bench_preintegrate.py
"""

import argparse
import os
import statistics
import sys
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, 'test', 'core'))

from test_imu import _preintegrate_loop  # noqa: E402  (the oracle lives with the tests)

from vssm_ros.core.imu import preintegrate  # noqa: E402


def _inputs(n: int, seed: int = 0):
    """n samples at 200 Hz of a ~5 rad/s turn with jitter, float32."""
    g = torch.Generator().manual_seed(seed)
    acc = torch.randn(n, 3, generator=g) * 3.0 + torch.tensor([0.0, 0.0, 9.81])
    gyro = torch.randn(1, 3, generator=g) * 2.9 + torch.randn(n, 3, generator=g)
    dt = 0.005 * (0.8 + 0.4 * torch.rand(n, generator=g))
    b_a, b_g = 0.2 * torch.randn(3, generator=g), 0.05 * torch.randn(3, generator=g)
    return acc, gyro, dt, b_a, b_g


def _median_ms(fn, reps: int) -> float:
    """Median wall time of ``fn()`` in ms, after a few warm-up calls (allocator, dispatch)."""
    for _ in range(5):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=[5, 10, 40, 160])
    parser.add_argument('--reps', type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(1)
    noise = dict(acc_noise=0.08, gyro_noise=0.01)
    print(f'torch {torch.__version__}, float32, CPU, 1 thread, median of {args.reps} calls')
    print(f'{"N":>5} {"loop ms":>9} {"new ms":>8} {"speed-up":>9}')
    with torch.no_grad():
        for n in args.sizes:
            x = _inputs(n)
            old = _median_ms(lambda: _preintegrate_loop(*x, **noise), args.reps)
            new = _median_ms(lambda: preintegrate(*x, **noise), args.reps)
            print(f'{n:>5} {old:>9.3f} {new:>8.3f} {old / new:>8.1f}x')


if __name__ == '__main__':
    main()
