# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Pinhole camera rays. Directions are scaled to unit optical-axis component (z = 1), so a
sample at ``depth * dir`` has z-depth ``depth``, the quantity RGB-D sensors report."""

from __future__ import annotations

from typing import Tuple

import torch


def pixel_grid(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Pixel centres (u, v) of a full image, row-major. Shape: (H*W, 2)."""
    v, u = torch.meshgrid(torch.arange(height, device=device, dtype=dtype),
                          torch.arange(width, device=device, dtype=dtype), indexing='ij')
    return torch.stack((u.reshape(-1), v.reshape(-1)), dim=-1)


def pixel_rays(K: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Camera-frame ray directions with z = 1 for pixels (u, v). Shape: (N, 2) -> (N, 3)."""
    x = (uv[:, 0] - K[0, 2]) / K[0, 0]
    y = (uv[:, 1] - K[1, 2]) / K[1, 1]
    return torch.stack((x, y, torch.ones_like(x)), dim=-1)


def sample_pixels(valid: torch.Tensor, n: int, generator: torch.Generator | None = None
                  ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` pixel indices among the valid ones, without host syncs (fixed shape).

    Args:
        valid: validity mask of the image. Shape: (H, W), bool.
        n: number of samples.
    Returns:
        flat indices (n,) and whether each drawn pixel is valid (n,) — all False when the image
        has no valid pixel (callers then skip the frame).
    """
    w = valid.reshape(-1).to(torch.float32)
    # A tiny floor keeps multinomial defined on an empty mask, and drawing with replacement keeps
    # the shape fixed whatever the mask; the returned validity says which draws are real.
    idx = torch.multinomial(w + 1e-12, n, replacement=True, generator=generator)
    return idx, valid.reshape(-1)[idx]
