# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Trajectory and map accuracy metrics: association, Umeyama alignment, ATE, RPE, depth L1,
NEES and covariance coverage.

NumPy only. The definitions follow the TUM RGB-D benchmark tools and evo (which the tests use
as an oracle), so the numbers are comparable with published ones:

- ATE: translation error ``|p_gt_i - (s R p_est_i + t)|`` after aligning the estimate to the
  ground truth with Umeyama's method (SE(3) by default, Sim(3) for monocular-style scale).
- RPE: ``E_ij = (T_gt_i^-1 T_gt_j)^-1 (T_est_i^-1 T_est_j)`` for pose pairs ``(i, j)`` a fixed
  number of frames (or seconds) apart; translation norm and rotation angle of ``E_ij``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Dict, Optional, Tuple

import numpy as np

from vssm_ros.errors import SyncError

__all__ = [
    'CHI2_3DOF_95', 'AteResult', 'RpeResult', 'associate', 'umeyama_alignment',
    'align_trajectory', 'ate', 'rpe', 'depth_l1', 'chi2_quantile', 'nees_and_coverage',
    'trajectory_metrics', 'rotation_angle',
]

# chi-square quantile for 3 degrees of freedom at probability 0.95.
CHI2_3DOF_95 = 7.814727903251178


# --------------------------------------------------------------------------- association

def associate(t_a: np.ndarray, t_b: np.ndarray,
              max_diff: float = 0.02) -> Tuple[np.ndarray, np.ndarray]:
    """Pair stamps one-to-one by nearest time, like TUM's ``associate.py``.

    All pairs with ``|t_a[i] - t_b[j]| <= max_diff`` are candidates; they are taken greedily,
    closest first, and each stamp is used at most once. Neither input needs to be sorted.
    Integer stamps are nanoseconds, float stamps seconds (``max_diff`` is always seconds).

    Args:
        t_a: stamps. Shape: (N,).
        t_b: stamps. Shape: (M,).
        max_diff: largest accepted difference, seconds.

    Returns:
        ``(idx_a, idx_b)``: int arrays of matched indices, ordered by ``idx_a``. Shape: (K,).
    """
    t_a = _as_seconds(t_a, 't_a')
    t_b = _as_seconds(t_b, 't_b')
    if not max_diff >= 0:
        raise ValueError(f'max_diff must be >= 0 seconds, got {max_diff}')
    empty = np.zeros(0, dtype=np.int64)
    if len(t_a) == 0 or len(t_b) == 0:
        return empty, empty
    order_b = np.argsort(t_b, kind='stable')
    sorted_b = t_b[order_b]
    lo = np.searchsorted(sorted_b, t_a - max_diff, side='left')
    hi = np.searchsorted(sorted_b, t_a + max_diff, side='right')
    counts = hi - lo  # candidates per stamp of a
    if counts.sum() == 0:
        return empty, empty
    cand_a = np.repeat(np.arange(len(t_a)), counts)
    # Position inside each window: a running index minus the window's start offset.
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    cand_b_sorted = np.repeat(lo, counts) + (np.arange(counts.sum()) - starts)
    cand_b = order_b[cand_b_sorted]
    diff = np.abs(t_a[cand_a] - t_b[cand_b])
    keep = diff <= max_diff  # the window bounds are inclusive in float too; keep it exact
    cand_a, cand_b, diff = cand_a[keep], cand_b[keep], diff[keep]
    # Closest first; ties broken by index so the result does not depend on sort internals.
    order = np.lexsort((cand_b, cand_a, diff))
    used_a = np.zeros(len(t_a), dtype=bool)
    used_b = np.zeros(len(t_b), dtype=bool)
    out_a, out_b = [], []
    for k in order:
        i, j = cand_a[k], cand_b[k]
        if used_a[i] or used_b[j]:
            continue
        used_a[i] = used_b[j] = True
        out_a.append(i)
        out_b.append(j)
    idx_a = np.asarray(out_a, dtype=np.int64)
    idx_b = np.asarray(out_b, dtype=np.int64)
    by_a = np.argsort(idx_a)
    return idx_a[by_a], idx_b[by_a]


# --------------------------------------------------------------------------- alignment

def umeyama_alignment(src: np.ndarray, dst: np.ndarray,
                      with_scale: bool = False) -> Tuple[np.ndarray, np.ndarray, float]:
    """Least-squares similarity transform mapping ``src`` onto ``dst`` (Umeyama 1991).

    Minimises ``sum_i |dst_i - (s R src_i + t)|^2`` over rotations ``R`` (det +1), translations
    ``t`` and, with ``with_scale``, the scale ``s`` (else ``s = 1``).

    Args:
        src: points to move. Shape: (N, 3).
        dst: target points. Shape: (N, 3).
        with_scale: estimate Sim(3) instead of SE(3).

    Returns:
        ``(R, t, s)``: Shape: (3, 3), (3,), scalar.

    Raises:
        ValueError: shapes differ, fewer than 3 points, or the points are degenerate
            (collinear), so the rotation is not determined.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 3 or src.shape != dst.shape:
        raise ValueError(f'umeyama_alignment needs two (N, 3) arrays, got {src.shape} and '
                         f'{dst.shape}')
    n = src.shape[0]
    if n < 3:
        raise ValueError(f'umeyama_alignment needs at least 3 points, got {n}')
    mu_src = src.mean(axis=0)
    mu_dst = dst.mean(axis=0)
    src_c = src - mu_src  # (N, 3)
    dst_c = dst - mu_dst  # (N, 3)
    sigma = dst_c.T @ src_c / n  # (3, 3) cross-covariance
    U, d, Vt = np.linalg.svd(sigma)
    # Rank 2 is enough (planar points); rank < 2 (a line or a point) leaves a free rotation.
    if np.count_nonzero(d > max(d[0], 1.0) * 1e-12) < 2:
        raise ValueError(f'degenerate point set for alignment (singular values {d}); the points '
                         'are collinear or coincident')
    S = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        S[2, 2] = -1.0  # reflection -> rotation
    R = U @ S @ Vt
    if with_scale:
        var_src = np.mean(np.sum(src_c ** 2, axis=1))
        s = float(np.trace(np.diag(d) @ S) / var_src)
    else:
        s = 1.0
    t = mu_dst - s * R @ mu_src
    return R, t, s


def align_trajectory(T_est: np.ndarray, T_gt: np.ndarray, with_scale: bool = False
                     ) -> Tuple[np.ndarray, np.ndarray, float]:
    """Align an estimated trajectory to ground truth by its positions (Umeyama).

    The alignment ``(s, R, t)`` acts on the estimate from the left: positions become
    ``s R p + t`` and orientations ``R R_est``.

    Args:
        T_est: estimated poses, associated one-to-one with ``T_gt``. Shape: (N, 4, 4).
        T_gt: ground-truth poses. Shape: (N, 4, 4).
        with_scale: also estimate a scale.

    Returns:
        ``(T_est_aligned, T_align, s)``: the moved estimate, Shape: (N, 4, 4); the alignment
        as a 4x4 matrix whose top-left block is ``s R``, Shape: (4, 4); the scale.
    """
    T_est = _as_poses(T_est, 'T_est')
    T_gt = _as_poses(T_gt, 'T_gt')
    _same_length(T_est, T_gt)
    R, t, s = umeyama_alignment(T_est[:, :3, 3], T_gt[:, :3, 3], with_scale=with_scale)
    out = T_est.copy()
    out[:, :3, :3] = R @ T_est[:, :3, :3]
    out[:, :3, 3] = s * T_est[:, :3, 3] @ R.T + t
    T_align = np.eye(4)
    T_align[:3, :3] = s * R
    T_align[:3, 3] = t
    return out, T_align, s


# --------------------------------------------------------------------------- ATE / RPE

def _stats(errors: np.ndarray) -> Dict[str, float]:
    if errors.size == 0:
        nan = float('nan')
        return dict(rmse=nan, mean=nan, median=nan, max=nan, std=nan)
    return dict(rmse=float(np.sqrt(np.mean(errors ** 2))), mean=float(np.mean(errors)),
                median=float(np.median(errors)), max=float(np.max(errors)),
                std=float(np.std(errors)))


@dataclass
class AteResult:
    """Absolute trajectory error (translation, metres).

    Attributes:
        rmse, mean, median, max, std: statistics of ``errors``.
        n: number of poses compared.
        errors: per-pose translation error after alignment. Shape: (N,).
        alignment: the transform applied to the estimate (top-left block ``s R``; identity when
            not aligned). Shape: (4, 4).
        scale: the scale of the alignment (1 for SE(3)).
    """

    rmse: float
    mean: float
    median: float
    max: float
    std: float
    n: int
    errors: np.ndarray = field(repr=False)
    alignment: np.ndarray = field(repr=False)
    scale: float = 1.0

    def to_dict(self) -> Dict[str, object]:
        """The statistics and the alignment as JSON-serialisable values (no per-pose errors)."""
        out = {k: v for k, v in asdict(self).items() if k not in ('errors', 'alignment')}
        out['alignment'] = self.alignment.tolist()
        return out


def ate(T_est: np.ndarray, T_gt: np.ndarray, align: bool = True,
        with_scale: bool = False) -> AteResult:
    """Absolute trajectory error: translation error after aligning the estimate to gt.

    Args:
        T_est: estimated poses, associated one-to-one with ``T_gt``. Shape: (N, 4, 4), or
            positions only, Shape: (N, 3).
        T_gt: ground truth, same form. Shape: (N, 4, 4) or (N, 3).
        align: align with Umeyama first (the usual ATE); if False compare as given. When the
            estimate's positions are degenerate (coincident), only the centroids are aligned.
        with_scale: Sim(3) alignment (only with ``align``).
    """
    p_est = _positions(T_est, 'T_est')
    p_gt = _positions(T_gt, 'T_gt')
    _same_length(p_est, p_gt)
    T_align = np.eye(4)
    s = 1.0
    if align:
        try:
            R, t, s = umeyama_alignment(p_est, p_gt, with_scale=with_scale)
        except ValueError:
            # A static estimate (all positions coincide) fixes no rotation: align the
            # centroids only, so a baseline that never moves still gets a number.
            R, s = np.eye(3), 1.0
            t = p_gt.mean(axis=0) - p_est.mean(axis=0)
        p_est = s * p_est @ R.T + t
        T_align[:3, :3] = s * R
        T_align[:3, 3] = t
    errors = np.linalg.norm(p_est - p_gt, axis=1)  # (N,)
    return AteResult(**_stats(errors), n=len(errors), errors=errors, alignment=T_align,
                     scale=float(s))


@dataclass
class RpeResult:
    """Relative pose error over pose pairs a fixed distance apart.

    Attributes:
        trans_rmse, trans_mean, trans_median, trans_max: translation error statistics, metres.
        rot_rmse_deg, rot_mean_deg, rot_max_deg: rotation angle statistics, degrees.
        n: number of pairs.
        delta: the pair distance (frames, or seconds when ``delta_unit == 's'``).
        delta_unit: ``'frames'`` or ``'s'``.
        trans_errors: Shape: (n,). rot_errors_deg: Shape: (n,).
    """

    trans_rmse: float
    trans_mean: float
    trans_median: float
    trans_max: float
    rot_rmse_deg: float
    rot_mean_deg: float
    rot_max_deg: float
    n: int
    delta: float
    delta_unit: str
    trans_errors: np.ndarray = field(repr=False)
    rot_errors_deg: np.ndarray = field(repr=False)

    def to_dict(self) -> Dict[str, object]:
        """The statistics as JSON-serialisable values (no per-pair errors)."""
        return {k: v for k, v in asdict(self).items()
                if k not in ('trans_errors', 'rot_errors_deg')}


def rpe(T_est: np.ndarray, T_gt: np.ndarray, delta: int = 1, delta_s: Optional[float] = None,
        stamps: Optional[np.ndarray] = None, all_pairs: bool = True,
        with_scale: bool = False) -> RpeResult:
    """Relative pose error (drift), as in evo's ``evo_rpe`` and TUM's ``evaluate_rpe.py``.

    For each pair ``(i, j)``: ``E = (T_gt_i^-1 T_gt_j)^-1 (T_est_i^-1 T_est_j)``; the
    translational error is ``|trans(E)|`` and the rotational error the angle of ``rot(E)``.

    Args:
        T_est: estimated poses, associated one-to-one with ``T_gt``. Shape: (N, 4, 4).
        T_gt: ground-truth poses. Shape: (N, 4, 4).
        delta: pair distance in frames (used when ``delta_s`` is None).
        delta_s: pair distance in seconds: ``j`` is the pose whose stamp is closest to
            ``stamps[i] + delta_s`` (pairs running past the end are dropped). Needs ``stamps``.
        stamps: stamps of the pairs (seconds, or int nanoseconds). Shape: (N,).
        all_pairs: every ``i`` starts a pair (TUM); if False, only ``i = 0, delta, 2 delta...``
            (evo's default; identical for ``delta = 1``). Only for frame deltas.
        with_scale: Sim(3)-align the estimate first (only the scale changes the result).
    """
    T_est = _as_poses(T_est, 'T_est')
    T_gt = _as_poses(T_gt, 'T_gt')
    _same_length(T_est, T_gt)
    n = len(T_est)
    if with_scale:
        T_est, _, _ = align_trajectory(T_est, T_gt, with_scale=True)
    if delta_s is not None:
        if stamps is None:
            raise ValueError('rpe with delta_s needs the stamps')
        t = _as_seconds(stamps, 'stamps')
        if t.shape != (n,):
            raise ValueError(f'expected {n} stamps, got shape {t.shape}')
        if not delta_s > 0:
            raise ValueError(f'delta_s must be > 0 seconds, got {delta_s}')
        if np.any(np.diff(t) < 0):
            raise SyncError('rpe with delta_s needs stamps in increasing order')
        if n < 2:
            i = j = np.zeros(0, dtype=np.int64)
        else:
            target = t + delta_s
            hi = np.clip(np.searchsorted(t, target), 1, n - 1)
            j = np.where(np.abs(t[hi - 1] - target) <= np.abs(t[hi] - target), hi - 1, hi)
            # A pair must reach (about) delta_s: drop starts whose target lies past the end.
            spacing = float(np.median(np.diff(t)))
            keep = (j > np.arange(n)) & (target <= t[-1] + 0.5 * spacing)
            i = np.arange(n)[keep]
            j = j[keep]
        dval, unit = float(delta_s), 's'
    else:
        if int(delta) != delta or delta < 1:
            raise ValueError(f'delta must be a positive number of frames, got {delta}')
        delta = int(delta)
        starts = np.arange(n - delta) if all_pairs else np.arange(0, n - delta, delta)
        i, j = starts, starts + delta
        dval, unit = float(delta), 'frames'
    rel_gt = _inv(T_gt[i]) @ T_gt[j]  # (P, 4, 4)
    rel_est = _inv(T_est[i]) @ T_est[j]  # (P, 4, 4)
    E = _inv(rel_gt) @ rel_est
    trans = np.linalg.norm(E[:, :3, 3], axis=1)
    rot = np.degrees(rotation_angle(E[:, :3, :3]))
    ts, rs = _stats(trans), _stats(rot)
    return RpeResult(trans_rmse=ts['rmse'], trans_mean=ts['mean'], trans_median=ts['median'],
                     trans_max=ts['max'], rot_rmse_deg=rs['rmse'], rot_mean_deg=rs['mean'],
                     rot_max_deg=rs['max'], n=int(len(i)), delta=dval, delta_unit=unit,
                     trans_errors=trans, rot_errors_deg=rot)


def rotation_angle(R: np.ndarray) -> np.ndarray:
    """Angle of rotation matrices, radians, accurate near 0 and near pi.

    ``atan2(|vee(R - R^T)| / 2, (tr R - 1) / 2)``: unlike ``arccos`` of the trace this keeps
    full precision for tiny angles.

    Shape: (..., 3, 3) -> (...).
    """
    R = np.asarray(R, dtype=np.float64)
    sin_vec = np.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0],
                        R[..., 1, 0] - R[..., 0, 1]], axis=-1)
    sin = 0.5 * np.linalg.norm(sin_vec, axis=-1)
    cos = 0.5 * (np.trace(R, axis1=-2, axis2=-1) - 1.0)
    return np.arctan2(sin, cos)


# --------------------------------------------------------------------------- depth, calibration

def depth_l1(pred: np.ndarray, obs: np.ndarray) -> Dict[str, float]:
    """Absolute depth error over pixels valid in both images.

    Invalid pixels are NaN, inf, or ``<= 0`` (a 0 depth is a missing Kinect/RealSense reading).

    Args:
        pred: predicted depth, metres. Shape: (..., H, W).
        obs: observed depth, metres. Same shape.

    Returns:
        ``dict(median, mean, n)`` in metres; median and mean are NaN when ``n == 0``.
    """
    pred = np.asarray(pred, dtype=np.float64)
    obs = np.asarray(obs, dtype=np.float64)
    if pred.shape != obs.shape:
        raise ValueError(f'depth_l1: predicted {pred.shape} and observed {obs.shape} depth '
                         'images differ in shape')
    with np.errstate(invalid='ignore'):
        valid = np.isfinite(pred) & np.isfinite(obs) & (pred > 0) & (obs > 0)
    err = np.abs(pred[valid] - obs[valid])
    n = int(err.size)
    if n == 0:
        return dict(median=float('nan'), mean=float('nan'), n=0)
    return dict(median=float(np.median(err)), mean=float(np.mean(err)), n=n)


def _lower_gamma_regularized(a: float, x: float) -> float:
    """P(a, x), the regularised lower incomplete gamma function (Numerical Recipes 6.2)."""
    if x <= 0:
        return 0.0
    log_pref = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1.0:
        # Series: P = x^a e^-x / Gamma(a+1) * sum_n x^n / ((a+1)...(a+n)).
        term = total = 1.0 / a
        ap = a
        for _ in range(1000):
            ap += 1.0
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-16:
                break
        return min(1.0, total * math.exp(log_pref))
    # Continued fraction for Q = 1 - P (modified Lentz).
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for k in range(1, 1000):
        an = -k * (k - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        step = d * c
        h *= step
        if abs(step - 1.0) < 1e-16:
            break
    return max(0.0, 1.0 - math.exp(log_pref) * h)


def chi2_quantile(prob: float, dof: int) -> float:
    """Quantile of the chi-square distribution (bisection on its CDF, ~1e-12 relative).

    Used instead of scipy, which is not a runtime dependency.
    """
    if not 0.0 < prob < 1.0:
        raise ValueError(f'prob must be in (0, 1), got {prob}')
    if dof < 1:
        raise ValueError(f'dof must be >= 1, got {dof}')
    if dof == 3 and prob == 0.95:
        return CHI2_3DOF_95
    lo, hi = 0.0, max(1.0, float(dof))
    while _lower_gamma_regularized(0.5 * dof, 0.5 * hi) < prob:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _lower_gamma_regularized(0.5 * dof, 0.5 * mid) < prob:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * hi:
            break
    return 0.5 * (lo + hi)


def nees_and_coverage(pos_err: np.ndarray, cov: np.ndarray,
                      prob: float = 0.95) -> Dict[str, float]:
    """Normalised estimation error squared and covariance coverage.

    ``nees_i = e_i^T cov_i^-1 e_i``; for a calibrated estimator its mean is the dimension
    (3 for positions) and a fraction ``prob`` of the errors lies inside the chi-square
    ``prob`` ellipsoid. Larger NEES / lower coverage = over-confident.

    Args:
        pos_err: estimate minus truth. Shape: (N, D) (D = 3 for positions).
        cov: the estimator's covariances, symmetric positive definite. Shape: (N, D, D).
        prob: probability of the ellipsoid.

    Returns:
        ``dict(nees_mean, nees_median, coverage, threshold, prob, n)``.
    """
    e = np.asarray(pos_err, dtype=np.float64)
    cov = np.asarray(cov, dtype=np.float64)
    if e.ndim != 2 or cov.shape != e.shape + (e.shape[1],):
        raise ValueError(f'nees_and_coverage needs errors (N, D) and covariances (N, D, D), got '
                         f'{e.shape} and {cov.shape}')
    if e.shape[0] == 0:
        raise ValueError('nees_and_coverage: no samples')
    try:
        L = np.linalg.cholesky(cov)  # (N, D, D)
    except np.linalg.LinAlgError as err:
        raise ValueError('nees_and_coverage: a covariance is not positive definite') from err
    # |L^-1 e|^2 = e^T cov^-1 e, without forming the inverse.
    white = np.linalg.solve(L, e[..., None])[..., 0]  # (N, D)
    nees = np.sum(white ** 2, axis=1)
    threshold = chi2_quantile(prob, e.shape[1])
    return dict(nees_mean=float(np.mean(nees)), nees_median=float(np.median(nees)),
                coverage=float(np.mean(nees <= threshold)), threshold=float(threshold),
                prob=float(prob), n=int(len(nees)))


# --------------------------------------------------------------------------- all together

def trajectory_metrics(est_stamps: np.ndarray, T_est: np.ndarray, gt_stamps: np.ndarray,
                       T_gt: np.ndarray, max_diff: float = 0.02, with_scale: bool = False,
                       rpe_delta: int = 1) -> Dict[str, object]:
    """Associate an estimate with ground truth by stamp, then ATE and RPE.

    Args:
        est_stamps: estimate stamps (float seconds or int nanoseconds). Shape: (N,).
        T_est: estimated poses. Shape: (N, 4, 4).
        gt_stamps: ground-truth stamps (same convention). Shape: (M,).
        T_gt: ground-truth poses. Shape: (M, 4, 4).
        max_diff: largest stamp difference for a pair, seconds.
        with_scale: Sim(3) alignment for ATE and RPE.
        rpe_delta: RPE pair distance, frames (of the associated sequence).

    Returns:
        A JSON-serialisable dict: ``n_est``, ``n_gt``, ``n_matched``, ``max_diff_s``,
        ``ate`` (``AteResult.to_dict``), ``rpe`` (``RpeResult.to_dict``, None with fewer than
        ``rpe_delta + 1`` pairs).

    Raises:
        SyncError: fewer than 3 stamps can be paired (nothing to align).
    """
    T_est = _as_poses(T_est, 'T_est')
    T_gt = _as_poses(T_gt, 'T_gt')
    t_est = _as_seconds(est_stamps, 'est_stamps')
    t_gt = _as_seconds(gt_stamps, 'gt_stamps')
    if len(t_est) != len(T_est) or len(t_gt) != len(T_gt):
        raise ValueError(f'stamps and poses differ in length: estimate {len(t_est)} vs '
                         f'{len(T_est)}, ground truth {len(t_gt)} vs {len(T_gt)}')
    idx_est, idx_gt = associate(t_est, t_gt, max_diff)
    if len(idx_est) < 3:
        span = (lambda t: f'[{t.min():.3f}, {t.max():.3f}]' if len(t) else '[]')
        raise SyncError(
            f'only {len(idx_est)} of {len(t_est)} estimated poses have ground truth within '
            f'{max_diff} s (estimate stamps {span(t_est)}, ground truth {span(t_gt)}); '
            'need at least 3')
    A, B = T_est[idx_est], T_gt[idx_gt]
    ate_res = ate(A, B, align=True, with_scale=with_scale)
    rpe_res = rpe(A, B, delta=rpe_delta, with_scale=with_scale) if len(A) > rpe_delta else None
    return dict(n_est=int(len(t_est)), n_gt=int(len(t_gt)), n_matched=int(len(idx_est)),
                max_diff_s=float(max_diff), ate=ate_res.to_dict(),
                rpe=None if rpe_res is None else rpe_res.to_dict())


# --------------------------------------------------------------------------- helpers

def _as_seconds(stamps: np.ndarray, name: str) -> np.ndarray:
    """Stamps as float64 seconds; integer dtypes are nanoseconds. Shape: (N,)."""
    s = np.asarray(stamps)
    if s.ndim != 1:
        raise ValueError(f'{name} must be one-dimensional, got shape {s.shape}')
    if np.issubdtype(s.dtype, np.integer):
        return s.astype(np.float64) * 1e-9
    s = s.astype(np.float64)
    if not np.all(np.isfinite(s)):
        raise ValueError(f'{name} contains non-finite stamps')
    return s


def _as_poses(T: np.ndarray, name: str) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.ndim != 3 or T.shape[1:] != (4, 4):
        raise ValueError(f'{name} must have shape (N, 4, 4), got {T.shape}')
    return T


def _positions(T: np.ndarray, name: str) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.ndim == 2 and T.shape[1] == 3:
        return T
    return _as_poses(T, name)[:, :3, 3]


def _same_length(a: np.ndarray, b: np.ndarray) -> None:
    if len(a) != len(b):
        raise ValueError(f'estimate and ground truth must be associated one-to-one; got {len(a)} '
                         f'and {len(b)} poses (use associate() first)')


def _inv(T: np.ndarray) -> np.ndarray:
    """Inverse of rigid transforms. Shape: (..., 4, 4)."""
    R = T[..., :3, :3]
    Rt = np.swapaxes(R, -1, -2)
    out = np.zeros_like(T)
    out[..., :3, :3] = Rt
    out[..., :3, 3] = -(Rt @ T[..., :3, 3, None])[..., 0]
    out[..., 3, 3] = 1.0
    return out
