# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Tracking health: whether the estimate can be trusted, from signals the tracker measures.

Every frame gets a status:

- ``OK``: the rays agree with the map and the update agrees with the motion prior; keyframes
  are fused.
- ``DEGRADED``: tracked, but on weak evidence (few inliers, a poor fit, a pose the rays barely
  constrain) or just recovered; the estimate is published, the map is not updated.
- ``LOST``: the rays do not explain the map around the predicted pose (or there are none: a
  covered lens) for ``lost_after_s``. The engine coasts on the motion prior (its covariance
  grows) and tries to relocalise; nothing is fused.

A frame is *bad* when it cannot be tracked, when too few of its valid rays land on the map
within the band around their measured depth, or when the update moves the pose further from
the IMU prediction than the prediction's covariance allows (a chi-square test on the pose
innovation). It is *weak* when the rays that hit the map disagree with it, above the
residual bound, or when the view barely constrains the pose. Rays into space the map has not
seen count against neither: flying into new space (keyframes map it) must not look like
being lost, so the lost test needs most of the view unexplained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from vssm_ros.config import HealthConfig

OK, DEGRADED, LOST = 'OK', 'DEGRADED', 'LOST'
STATUSES = (OK, DEGRADED, LOST)


@dataclass
class TrackSignals:
    """What one frame's tracking measured.

    Attributes:
        tracked: enough usable rays to update the pose at all.
        valid_fraction: sampled rays with a valid depth measurement.
        hit_fraction: of the valid rays, those whose rendered ray hits the map.
        inlier_fraction: of the valid rays, those used at the optimum (hit, within the band,
            not down-weighted to zero).
        rmse: robust normalised depth residual of the used rays (about 1 when the noise model
            holds).
        innovation: chi-square of the pose update against the propagated prior
            (``e^T P^-1 e`` over the 6 pose dimensions).
        drift: chi-square of the estimated motion over the last ``drift_window_s`` against
            the IMU preintegrated over it (9 dimensions): each frame's update may be small
            while they add up to a drift the IMU contradicts (the map drifting along).
        min_info_std: the largest pose std (metres / radians) along the weakest direction of
            the rays' information alone (how badly the view constrains the pose).
    """

    tracked: bool
    valid_fraction: float
    hit_fraction: float = 0.0
    inlier_fraction: float = 0.0
    rmse: float = float('nan')
    innovation: float = 0.0
    min_info_std: float = float('inf')
    drift: float = 0.0

    def as_dict(self) -> dict:
        return {k: float(getattr(self, k)) for k in (
            'valid_fraction', 'hit_fraction', 'inlier_fraction', 'rmse', 'innovation',
            'min_info_std', 'drift')}


class HealthMonitor:
    """The status machine, updated once per frame with that frame's signals.

    Args:
        cfg: thresholds and times (``engine.health``).
    """

    def __init__(self, cfg: HealthConfig):
        self.cfg = cfg
        self.reset()

    def reset(self) -> None:
        self.status = OK
        self.reason = 'started'
        self.last_quality = 'good'
        self._bad_since: Optional[float] = None
        self._good_since: Optional[float] = None

    def quality(self, s: TrackSignals) -> str:
        """'bad', 'weak' or 'good', with ``self.reason`` saying why."""
        c = self.cfg
        if not s.tracked:
            self.reason = (f'too few usable rays (valid {s.valid_fraction:.0%}, inliers '
                           f'{s.inlier_fraction:.0%})')
            return 'bad'
        if s.inlier_fraction < c.lost_inlier_fraction:
            self.reason = f'inliers {s.inlier_fraction:.0%} < {c.lost_inlier_fraction:.0%}'
            return 'bad'
        if s.drift > c.max_drift:
            self.reason = (f'the motion over the last {c.drift_window_s:g} s disagrees with the '
                           f'IMU (chi2 {s.drift:.0f} > {c.max_drift:.0f})')
            return 'bad'
        if s.innovation > c.max_innovation:
            self.reason = (f'update disagrees with the motion prior (chi2 {s.innovation:.0f} '
                           f'> {c.max_innovation:.0f})')
            return 'bad'
        agreement = s.inlier_fraction / max(s.hit_fraction, 1e-9)
        if agreement < c.min_agreement:
            self.reason = (f'rays disagree with the map (inliers {agreement:.0%} of the rays '
                           f'that hit it < {c.min_agreement:.0%})')
            return 'weak'
        if not s.rmse <= c.max_rmse:
            self.reason = f'normalised residual {s.rmse:.2f} > {c.max_rmse:.2f}'
            return 'weak'
        if s.min_info_std > c.max_pose_std:
            self.reason = (f'the view constrains the pose poorly (std {s.min_info_std:.3f} '
                           f'> {c.max_pose_std:.3f} along its weakest direction)')
            return 'weak'
        self.reason = 'tracking'
        return 'good'

    def update(self, s: TrackSignals, t: float) -> str:
        """The status after a frame at time ``t`` (seconds) with signals ``s``."""
        q = self.last_quality = self.quality(s)
        c = self.cfg
        if q == 'bad':
            self._good_since = None
            if self._bad_since is None:
                self._bad_since = t
            if self.status == LOST or t - self._bad_since >= c.lost_after_s - 1e-6:
                self.status = LOST
            else:
                self.status = DEGRADED
            return self.status
        self._bad_since = None
        if self.status == LOST:
            # Leaving LOST takes a verified relocalisation (``relocalised``), not one lucky
            # frame tracked from a coasted prior.
            return self.status
        if q == 'weak':
            self._good_since = None
            self.status = DEGRADED
            return self.status
        if self._good_since is None:
            self._good_since = t
        if self.status == DEGRADED and t - self._good_since < c.ok_after_s - 1e-6:
            return self.status
        self.status = OK
        return self.status

    def relocalised(self, t: float) -> None:
        """A relocalisation was verified at time ``t``: DEGRADED until ``ok_after_s`` of good
        frames."""
        self.status = DEGRADED
        self.reason = 'relocalised'
        self._bad_since = None
        self._good_since = t
