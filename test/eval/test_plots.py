# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Plots: valid PNG files of the expected size, written atomically; depth colouring."""

import numpy as np
import pytest

from vssm_ros.eval.plots import colorize_depth, plot_image_strip, plot_trajectory

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
Image = pytest.importorskip('PIL.Image', reason='pillow (dev) decodes the PNG files')


def _check_png(path, size=None, min_bytes=10_000):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > min_bytes
    with Image.open(path) as im:
        im.load()  # decodes the whole file: a truncated PNG fails here
        if size is not None:
            assert im.size == size
        pixels = np.asarray(im.convert('RGB'))
    # Non-trivial content: many distinct colours, not a blank canvas.
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50
    return pixels


def _helix(n, seed=0):
    rng = np.random.default_rng(seed)
    s = np.linspace(0, 4 * np.pi, n)
    T = np.tile(np.eye(4), (n, 1, 1))
    T[:, :3, 3] = np.stack([np.cos(s), np.sin(s), 0.1 * s], axis=1)
    return T, rng


def test_plot_trajectory_with_ground_truth(tmp_path):
    T_gt, rng = _helix(200)
    T_est = T_gt.copy()
    T_est[:, :3, 3] += [5.0, 0.0, 1.0] + rng.normal(scale=0.02, size=(200, 3))
    path = tmp_path / 'plots' / 'trajectory.png'
    plot_trajectory(path, T_est, T_gt, title='helix', stamps_s=100 + np.arange(200) * 0.05,
                    dpi=60)
    _check_png(path, size=(660, 288), min_bytes=5_000)
    assert sorted(p.name for p in path.parent.iterdir()) == ['trajectory.png']


def test_plot_trajectory_estimate_only_and_degenerate(tmp_path):
    T, _ = _helix(50)
    plot_trajectory(tmp_path / 'a.png', T, dpi=50)
    _check_png(tmp_path / 'a.png', min_bytes=5_000)
    # A hovering estimate cannot be aligned; the plot is still made.
    still = np.tile(np.eye(4), (10, 1, 1))
    plot_trajectory(tmp_path / 'b.png', still, T[:10], dpi=50)
    _check_png(tmp_path / 'b.png', min_bytes=5_000)
    with pytest.raises(ValueError, match='one-to-one'):
        plot_trajectory(tmp_path / 'c.png', T, T[:10])
    assert not (tmp_path / 'c.png').exists()


def test_colorize_depth_invalid_is_black():
    depth = np.array([[np.nan, 0.0, 1.0], [2.0, 3.0, np.inf]], dtype=np.float32)
    rgb = colorize_depth(depth, 1.0, 3.0, cmap='viridis')
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8
    # For errors / stds a 0 is a value, not a missing reading.
    err = colorize_depth(depth, 0.0, 3.0, cmap='viridis', mask_nonpositive=False)
    np.testing.assert_allclose(err[0, 1], [68, 1, 84], atol=1)
    np.testing.assert_array_equal(err[0, 0], 0)
    np.testing.assert_array_equal(rgb[0, 0], 0)
    np.testing.assert_array_equal(rgb[0, 1], 0)
    np.testing.assert_array_equal(rgb[1, 2], 0)
    # viridis runs from dark purple (68, 1, 84) to yellow (253, 231, 37).
    np.testing.assert_allclose(rgb[0, 2], [68, 1, 84], atol=1)
    np.testing.assert_allclose(rgb[1, 1], [253, 231, 37], atol=1)
    assert rgb[1, 0].sum() > 0


def test_plot_image_strip(tmp_path):
    rng = np.random.default_rng(3)
    h, w = 60, 80
    yy, xx = np.mgrid[0:h, 0:w]
    obs = (1.0 + xx / w + 0.5 * yy / h).astype(np.float32)
    obs[10:20, 10:30] = np.nan  # a hole: drawn black
    pred = obs + rng.normal(scale=0.02, size=obs.shape)
    rgb = rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)
    rgb_pred = rgb / 255.0
    rows = [('observed', [obs, rgb]), ('predicted', [pred, rgb_pred]),
            ('|error|', np.abs(pred - obs), (0.0, 0.05))]
    path = tmp_path / 'strip.png'
    pixels = _check_png_and_black(path, rows)
    assert pixels.shape[2] == 3
    with pytest.raises(ValueError, match='at least one row'):
        plot_image_strip(tmp_path / 'none.png', [])
    with pytest.raises(ValueError, match='colour images'):
        plot_image_strip(tmp_path / 'bad.png', [('x', np.zeros((4, 4, 2)))])


def _check_png_and_black(path, rows):
    plot_image_strip(path, rows, depth_range=(1.0, 2.5), dpi=60)
    pixels = _check_png(path)
    # The NaN hole shows up as a block of pure black pixels (axes carry no ticks).
    black = np.all(pixels == 0, axis=2)
    assert black.sum() > 50
    return pixels
