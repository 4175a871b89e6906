# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The built-in synthetic drone flight: an analytic indoor scene, a smooth 6-DoF flight, sensors.

Everything is a deterministic function of a :class:`~vssm_ros.config.SyntheticConfig`:

- :class:`Scene`: a room (an axis-aligned box seen from inside) with box (rotated about z) and
  vertical-cylinder obstacles, each surface carrying its own smooth procedural texture. Ray casts
  and distances are exact and vectorised.
- The flight: a closed loop around the room centre (sums of sinusoids of a loop angle), started
  from a hover by a smooth ramp of the loop speed; the attitude follows the acceleration
  (quadrotor thrust axis along ``a - g``) and the yaw looks towards the room centre with a slow
  pan. Position, velocity, acceleration, jerk, attitude and angular velocity are closed-form.
- Sensors: an IMU in the body frame (white noise, bias random walk, initial bias; true biases
  kept) and an RGB-D camera (z-depth with ``sigma(z) = a + b z^2`` noise and dropouts), rendered
  lazily frame by frame.

Conventions: world z up with ``g = (0, 0, -9.81)``, body FLU, camera optical frame (z forward,
x right, y down), poses as 4x4 ``T_a_b`` (maps points from b to a), stamps in int nanoseconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import yaml

from vssm_ros.config import SyntheticConfig, to_dict
from vssm_ros.data.atomic import atomic_write_bytes, atomic_write_text
from vssm_ros.data.bags import BagLayout, write_stream
from vssm_ros.data.transforms import invert
from vssm_ros.data.tum import write_tum_folder
from vssm_ros.errors import ConfigError
from vssm_ros.types import Frame, ImuSample, PoseSample, StreamItem

GRAVITY = np.array([0.0, 0.0, -9.81])
"""Gravity in the world frame (m/s²)."""
EPOCH_NS = 1_700_000_000 * 10**9
"""Stamp of the flight's start (nanoseconds); IMU and camera share this clock."""
GENERATOR_VERSION = 1
"""Bumped whenever the generator's output changes, so cached flights are regenerated."""

# A box obstacle or a cylinder keeps this much room (metres) to every point of the flight loop;
# the test bar is 0.5 m, the extra is margin for the loop's sampling.
_CLEARANCE = 0.75
# The loop keeps this distance (metres) to the walls: the camera never faces a wall closer than
# about 0.8 m, and obstacles fit between the loop and the walls.
_WALL_MARGIN = 1.2
_N_WAVES = 9
# Optical axes in an FLU frame: x right = -y, y down = -z, z forward = x.
_R_FLU_OPT = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def _rot_z(yaw: np.ndarray) -> np.ndarray:
    """Rotations about z. Shape: (...,) -> (..., 3, 3)."""
    c, s = np.cos(yaw), np.sin(yaw)
    z, o = np.zeros_like(c), np.ones_like(c)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1),
                     np.stack([z, z, o], -1)], -2)


def _rot_y(pitch: float) -> np.ndarray:
    c, s = np.cos(pitch), np.sin(pitch)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _box_sdf(p: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Signed distance to origin-centred boxes. Shape: p (..., 3), half (..., 3) -> (...)."""
    q = np.abs(p) - half
    outside = np.linalg.norm(np.maximum(q, 0.0), axis=-1)
    inside = np.minimum(q.max(axis=-1), 0.0)
    return outside + inside


# ----------------------------------------------------------------------------------------------
# Scene


class Scene:
    """A room with box and cylinder obstacles, each surface with a procedural texture.

    Primitive ids: 0..5 are the room faces (x=0, x=Lx, y=0, y=Ly, floor, ceiling), then the
    boxes, then the cylinders. All queries are exact and vectorised.

    Args:
        room_size: the room spans [0, size] on each axis. Shape: (3,).
        box_center: box centres. Shape: (B, 3).
        box_half: box half extents in the box frame. Shape: (B, 3).
        box_yaw: box rotation about z (radians). Shape: (B,).
        cyl_center: cylinder axis positions x, y. Shape: (C, 2).
        cyl_radius: cylinder radii. Shape: (C,).
        cyl_z: cylinder bottom and top heights. Shape: (C, 2).
        texture_seed: seed of the per-primitive textures (None: no textures, geometry only).
    """

    def __init__(self, room_size: Sequence[float], box_center: np.ndarray,
                 box_half: np.ndarray, box_yaw: np.ndarray, cyl_center: np.ndarray,
                 cyl_radius: np.ndarray, cyl_z: np.ndarray,
                 texture_seed: Optional[int] = 0):
        self.room_size = np.asarray(room_size, dtype=float).reshape(3)
        self.box_center = np.asarray(box_center, dtype=float).reshape(-1, 3)
        self.box_half = np.asarray(box_half, dtype=float).reshape(-1, 3)
        self.box_yaw = np.asarray(box_yaw, dtype=float).reshape(-1)
        self.cyl_center = np.asarray(cyl_center, dtype=float).reshape(-1, 2)
        self.cyl_radius = np.asarray(cyl_radius, dtype=float).reshape(-1)
        self.cyl_z = np.asarray(cyl_z, dtype=float).reshape(-1, 2)
        # World -> box rotation. (B, 3, 3)
        self._R_box_world = np.transpose(_rot_z(self.box_yaw), (0, 2, 1))
        if texture_seed is not None:
            self._make_textures(texture_seed)

    @property
    def n_boxes(self) -> int:
        return len(self.box_center)

    @property
    def n_cylinders(self) -> int:
        return len(self.cyl_center)

    @property
    def n_primitives(self) -> int:
        return 6 + self.n_boxes + self.n_cylinders

    def _make_textures(self, seed: int) -> None:
        """Per primitive: a sum of sinusoids of the 3D point in three wavelength bands."""
        rng = np.random.default_rng([seed, 7])
        n = self.n_primitives
        # Wavelengths (metres) of the bands: room-scale shading, mid detail, fine detail.
        bands = [(1.0, 2.0, 0.5), (0.4, 0.8, 0.35), (0.2, 0.35, 0.25)]
        per = _N_WAVES // len(bands)
        dirs = rng.normal(size=(n, _N_WAVES, 3))
        # Room faces: keep the waves in the face's plane, else some would be constant on it.
        for face in range(6):
            dirs[face, :, face // 2] = 0.0
        dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
        wavelength = np.empty((n, _N_WAVES))
        amp = np.empty((n, _N_WAVES, 3))
        for b, (lo, hi, weight) in enumerate(bands):
            sl = slice(b * per, (b + 1) * per)
            wavelength[:, sl] = rng.uniform(lo, hi, size=(n, per))
            amp[:, sl] = weight * rng.uniform(-1.0, 1.0, size=(n, per, 3))
        self._tex_k = dirs * (2 * np.pi / wavelength)[..., None]   # (P, K, 3) rad/m
        self._tex_phase = rng.uniform(0, 2 * np.pi, size=(n, _N_WAVES))   # (P, K)
        self._tex_amp = amp   # (P, K, 3)
        self._tex_offset = rng.uniform(-0.7, 0.7, size=(n, 3))   # (P, 3)
        self._tex_k32 = np.ascontiguousarray(np.swapaxes(self._tex_k, 1, 2), np.float32)
        self._tex_phase32 = self._tex_phase.astype(np.float32)
        self._tex_amp32 = self._tex_amp.astype(np.float32)
        self._tex_offset32 = self._tex_offset.astype(np.float32)

    def colour(self, points: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Texture colour of points on primitives.

        Shape: points (N, 3), ids (N,) int -> (N, 3) float in [0, 1].
        """
        # float32 is plenty for a texture (phase error ~1e-5 rad) and its sin is 10x faster.
        points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
        ids = np.asarray(ids).reshape(-1)
        s = np.empty((len(points), 3), dtype=np.float32)
        # One matrix product per primitive (a gather of per-point wave tables is 5x slower).
        order = np.argsort(ids, kind='stable')
        bounds = np.searchsorted(ids[order], np.arange(self.n_primitives + 1))
        for pid in range(self.n_primitives):
            sel = order[bounds[pid]:bounds[pid + 1]]
            if len(sel):
                phase = points[sel] @ self._tex_k32[pid] + self._tex_phase32[pid]   # (M, K)
                s[sel] = np.sin(phase) @ self._tex_amp32[pid] + self._tex_offset32[pid]
        # tanh keeps colours inside (0.05, 0.95) without clipping to flat patches.
        return 0.5 + 0.45 * np.tanh(s).astype(np.float64)

    def raycast_ids(self, origins: np.ndarray,
                    dirs: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """First hit of rays: parameter t (hit = origin + t dir) and primitive id.

        Shape: origins (N, 3) or (3,) (one shared origin: faster), dirs (N, 3)
        -> t (N,) (inf: no hit), ids (N,) (-1: none).
        """
        d = np.asarray(dirs, dtype=float).reshape(-1, 3)
        o = np.asarray(origins, dtype=float)
        if o.shape not in ((3,), d.shape):
            raise ValueError(f'origins must have shape (3,) or {d.shape}, got {o.shape}')
        cols_o = [o[i] if o.ndim == 1 else np.ascontiguousarray(o[:, i]) for i in range(3)]
        cols_d = [np.ascontiguousarray(d[:, i]) for i in range(3)]
        d2 = cols_d[0] ** 2 + cols_d[1] ** 2 + cols_d[2] ** 2
        best_t = np.full(len(d), np.inf)
        best_id = np.full(len(d), -1, dtype=np.int64)
        L = self.room_size
        inside = bool(np.all((o > 0) & (o < L)))
        with np.errstate(divide='ignore', invalid='ignore'):
            if inside:
                # From inside the room every ray leaves it through the face of the axis whose
                # bounding plane it reaches first.
                t_axes = np.stack([np.where(cols_d[i] != 0, (np.where(cols_d[i] > 0, L[i], 0.0)
                                                             - cols_o[i]) / cols_d[i], np.inf)
                                   for i in range(3)])   # (3, N); inf for parallel axes
                axis = np.argmin(t_axes, axis=0)
                best_t = t_axes[axis, np.arange(len(d))]
                best_id = 2 * axis + (d[np.arange(len(d)), axis] > 0)
            # Otherwise: the six face rectangles (also seen from outside).
            for axis in range(3 * (not inside)):
                a, b = [i for i in range(3) if i != axis]
                for side, plane in enumerate((0.0, L[axis])):
                    t = (plane - cols_o[axis]) / cols_d[axis]
                    pa = cols_o[a] + t * cols_d[a]
                    pb = cols_o[b] + t * cols_d[b]
                    ok = ((t > 0) & (t < best_t) & (pa >= 0) & (pa <= L[a])
                          & (pb >= 0) & (pb <= L[b]))
                    best_t[ok] = t[ok]
                    best_id[ok] = 2 * axis + side
            for first, n, hit in ((6, self.n_boxes, self._raycast_box),
                                  (6 + self.n_boxes, self.n_cylinders, self._raycast_cylinder)):
                for k in range(n):
                    idx, t = hit(k, o, d, d2)
                    closer = t < best_t[idx]
                    best_t[idx[closer]] = t[closer]
                    best_id[idx[closer]] = first + k
        return best_t, best_id

    @staticmethod
    def _sphere_candidates(o: np.ndarray, d: np.ndarray, d2: np.ndarray, center: np.ndarray,
                           radius: float) -> np.ndarray:
        """Indices of the rays that meet a bounding sphere: a cheap cull before the exact
        test, as an obstacle covers a small part of an image.

        Shape: o (3,) or (N, 3), d (N, 3), d2 = |d|² (N,) -> (M,).
        """
        w = center - o
        if o.ndim == 1:
            b = d @ w
            w2 = w @ w
        else:
            b = (w * d).sum(axis=1)
            w2 = (w * w).sum(axis=1)
        r2 = radius * radius
        near = (w2 - b * b / d2 <= r2) & ((b > 0) | (w2 <= r2))
        return np.flatnonzero(near)

    def _raycast_box(self, k: int, o: np.ndarray, d: np.ndarray,
                     d2: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Hits of rays with box k: candidate ray indices (M,) and their t (M,) (inf: miss)."""
        idx = self._sphere_candidates(o, d, d2, self.box_center[k],
                                      float(np.linalg.norm(self.box_half[k])))
        R = self._R_box_world[k]
        o_loc = ((o if o.ndim == 1 else o[idx]) - self.box_center[k]) @ R.T   # (M, 3) or (3,)
        # Slab test in the box's frame. A direction component of exactly 0 gives +-inf bounds
        # (the caller silences the division warnings).
        inv = 1.0 / (d[idx] @ R.T)
        t1 = (-self.box_half[k] - o_loc) * inv
        t2 = (self.box_half[k] - o_loc) * inv
        t_near = np.minimum(t1, t2).max(axis=1)
        t_far = np.maximum(t1, t2).min(axis=1)
        # From inside a box the exit is the hit (only for held-out views inside obstacles).
        t = np.where(t_near > 0, t_near, t_far)
        t[~((t_near <= t_far) & (t_far > 0))] = np.inf
        return idx, t

    def _raycast_cylinder(self, k: int, o: np.ndarray, d: np.ndarray,
                          d2: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Hits of rays with cylinder k: candidate ray indices (M,) and their t (M,)."""
        z0, z1 = self.cyl_z[k]
        r = self.cyl_radius[k]
        center = np.array([*self.cyl_center[k], (z0 + z1) / 2])
        idx = self._sphere_candidates(o, d, d2, center, float(np.hypot(r, (z1 - z0) / 2)))
        oc = (o if o.ndim == 1 else o[idx]) - center
        ox, oy, oz = (oc[i] if o.ndim == 1 else oc[:, i] for i in range(3))
        oz = oz + center[2]
        dx, dy, dz = d[idx, 0], d[idx, 1], d[idx, 2]
        a = np.maximum(dx * dx + dy * dy, 1e-24)
        b = ox * dx + oy * dy   # half of the usual b
        disc = b * b - a * (ox * ox + oy * oy - r * r)
        root = np.sqrt(np.maximum(disc, 0.0))
        t_best = np.full(len(idx), np.inf)
        for sign in (-1.0, 1.0):   # the side
            t = (-b + sign * root) / a
            z = oz + t * dz
            ok = (disc >= 0) & (t > 0) & (z >= z0) & (z <= z1)
            np.minimum(t_best, np.where(ok, t, np.inf), out=t_best)
        for zc in (z0, z1):   # the caps
            t = (zc - oz) / dz
            px, py = ox + t * dx, oy + t * dy
            ok = (t > 0) & (px * px + py * py <= r * r)
            np.minimum(t_best, np.where(ok, t, np.inf), out=t_best)
        return idx, t_best

    def raycast(self, origins: np.ndarray,
                dirs: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Exact first hit of rays with the scene.

        Args:
            origins: ray origins, world frame. Shape: (N, 3), or (3,) for one shared origin.
            dirs: ray directions, world frame, not necessarily unit. Shape: (N, 3).

        Returns:
            t: ray parameter of the hit (``hit = origin + t * dir``; the distance for unit
                dirs), inf where nothing is hit. Shape: (N,).
            hit_point: world hit points (NaN where nothing is hit). Shape: (N, 3).
            rgb: surface colour in [0, 1] (0 where nothing is hit). Shape: (N, 3).
        """
        dirs = np.asarray(dirs, dtype=float).reshape(-1, 3)
        origins = np.asarray(origins, dtype=float)
        t, ids = self.raycast_ids(origins, dirs)
        ok = ids >= 0
        if ok.all():   # the usual case (views inside the room): no masking needed
            hit = origins + t[:, None] * dirs
            return t, hit, self.colour(hit, ids)
        hit = np.full(dirs.shape, np.nan)
        rgb = np.zeros(dirs.shape)
        hit[ok] = (origins if origins.ndim == 1 else origins[ok]) + t[ok, None] * dirs[ok]
        rgb[ok] = self.colour(hit[ok], ids[ok])
        return t, hit, rgb

    def _sdfs(self, points: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Signed distances: the room box (negative inside the room) and each obstacle
        (negative inside). Shape: (N, 3) -> (N,), (N, B + C)."""
        half = self.room_size / 2
        room = _box_sdf(points - half, half)
        cols = []
        if self.n_boxes:
            p_loc = np.einsum('bij,nbj->nbi', self._R_box_world,
                              points[:, None] - self.box_center)
            cols.append(_box_sdf(p_loc, self.box_half))
        if self.n_cylinders:
            r_xy = np.linalg.norm(points[:, None, :2] - self.cyl_center, axis=-1)
            zc = self.cyl_z.mean(axis=1)
            hz = (self.cyl_z[:, 1] - self.cyl_z[:, 0]) / 2
            q = np.stack([r_xy - self.cyl_radius, np.abs(points[:, None, 2] - zc) - hz], -1)
            cols.append(np.linalg.norm(np.maximum(q, 0.0), axis=-1)
                        + np.minimum(q.max(axis=-1), 0.0))
        obst = np.concatenate(cols, axis=1) if cols else np.zeros((len(points), 0))
        return room, obst

    def distance(self, points: np.ndarray) -> np.ndarray:
        """Unsigned distance (metres) to the nearest surface (room faces, obstacles); exact.

        Shape: (N, 3) -> (N,).
        """
        points = np.asarray(points, dtype=float).reshape(-1, 3)
        room, obst = self._sdfs(points)
        d = np.abs(room)
        if obst.shape[1]:
            d = np.minimum(d, np.abs(obst).min(axis=1))
        return d

    def occupied(self, points: np.ndarray) -> np.ndarray:
        """True inside an obstacle or outside the room. Shape: (N, 3) -> (N,) bool."""
        points = np.asarray(points, dtype=float).reshape(-1, 3)
        room, obst = self._sdfs(points)
        occ = room > 0
        if obst.shape[1]:
            occ |= (obst < 0).any(axis=1)
        return occ


# ----------------------------------------------------------------------------------------------
# Flight


@dataclass
class FlightState:
    """Closed-form ground truth at times t (seconds since the flight start).

    Attributes:
        t: times (seconds since start). Shape: (N,).
        p: body position, world frame. Shape: (N, 3).
        v: linear velocity, world frame. Shape: (N, 3).
        a: linear acceleration, world frame. Shape: (N, 3).
        R: body orientation, world <- body (FLU). Shape: (N, 3, 3).
        omega: angular velocity in the body frame (rad/s). Shape: (N, 3).
        yaw: heading of the body x axis (radians). Shape: (N,).
    """

    t: np.ndarray
    p: np.ndarray
    v: np.ndarray
    a: np.ndarray
    R: np.ndarray
    omega: np.ndarray
    yaw: np.ndarray

    @property
    def T_world_body(self) -> np.ndarray:
        """Poses. Shape: (N, 4, 4)."""
        T = np.tile(np.eye(4), (len(self.t), 1, 1))
        T[:, :3, :3] = self.R
        T[:, :3, 3] = self.p
        return T


class _Trajectory:
    """The loop p(theta) (sums of cosines of integer harmonics of the loop angle theta) and the
    time warp theta(t) = w0 * Phi(t), with Phi' a smootherstep from 0 (hover) to 1."""

    def __init__(self, center: np.ndarray, amp: np.ndarray, harm: np.ndarray, phase: np.ndarray,
                 pan_amp: float, pan_harm: int, pan_phase: float, look_at: np.ndarray,
                 hover_s: float, ramp_s: float, w0: float = 1.0):
        self.center = center        # (3,)
        self.amp = amp              # (3, K)
        self.harm = harm            # (3, K) integer harmonics (sign = direction of travel)
        self.phase = phase          # (3, K)
        self.pan_amp, self.pan_harm, self.pan_phase = pan_amp, pan_harm, pan_phase
        self.look_at = look_at      # (2,)
        self.hover_s, self.ramp_s = hover_s, ramp_s
        self.w0 = w0

    def loop(self, theta: np.ndarray, order: int = 0) -> np.ndarray:
        """d^order p / d theta^order. Shape: (N,) -> (N, 3)."""
        theta = np.asarray(theta, dtype=float)
        out = np.zeros((len(theta), 3))
        # Loops over the few terms keep the arrays long (a (N, 3, K) broadcast is slower).
        for i in range(3):
            for k in range(self.amp.shape[1]):
                if self.amp[i, k]:
                    h = float(self.harm[i, k])
                    out[:, i] += self.amp[i, k] * h ** order * np.cos(
                        h * theta + (self.phase[i, k] + order * np.pi / 2))
        return out + self.center if order == 0 else out

    def warp(self, t: np.ndarray) -> Tuple[np.ndarray, ...]:
        """theta and its first three time derivatives. Shape: (N,) -> 4 x (N,)."""
        T = self.ramp_s
        u = np.clip((t - self.hover_s) / T, 0.0, 1.0)
        phi = T * (2.5 * u ** 4 - 3 * u ** 5 + u ** 6) + np.maximum(t - self.hover_s - T, 0.0)
        r = 10 * u ** 3 - 15 * u ** 4 + 6 * u ** 5
        r1 = 30 * u ** 2 * (1 - u) ** 2 / T
        r2 = (60 * u - 180 * u ** 2 + 120 * u ** 3) / T ** 2
        return self.w0 * phi, self.w0 * r, self.w0 * r1, self.w0 * r2

    def state(self, t: np.ndarray) -> FlightState:
        t = np.atleast_1d(np.asarray(t, dtype=float))
        th, th1, th2, th3 = self.warp(t)
        f0, f1, f2, f3 = (self.loop(th, k) for k in range(4))
        c1, c2, c3 = th1[:, None], th2[:, None], th3[:, None]
        p = f0
        v = f1 * c1
        a = f2 * c1 ** 2 + f1 * c2
        j = f3 * c1 ** 3 + 3 * f2 * c1 * c2 + f1 * c3
        # Yaw: towards the look-at point plus a slow pan (a function of theta, so it is still
        # while hovering).
        d = self.look_at - p[:, :2]
        dd = -v[:, :2]
        pan_arg = self.pan_harm * th + self.pan_phase
        yaw = np.arctan2(d[:, 1], d[:, 0]) + self.pan_amp * np.sin(pan_arg)
        yaw_rate = ((d[:, 0] * dd[:, 1] - d[:, 1] * dd[:, 0]) / (d ** 2).sum(-1)
                    + self.pan_amp * self.pan_harm * np.cos(pan_arg) * th1)
        R, omega = _attitude(a, j, yaw, yaw_rate)
        return FlightState(t=t, p=p, v=v, a=a, R=R, omega=omega, yaw=yaw)


def _attitude(a: np.ndarray, j: np.ndarray, yaw: np.ndarray,
              yaw_rate: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Quadrotor attitude from acceleration and yaw (differential flatness), and its body
    angular velocity from the analytic derivatives.

    Shape: a, j (N, 3), yaw, yaw_rate (N,) -> R (N, 3, 3) world <- body, omega (N, 3).
    """
    f = a - GRAVITY
    fn = np.linalg.norm(f, axis=-1, keepdims=True)
    z = f / fn
    z_dot = (j - (z * j).sum(-1, keepdims=True) * z) / fn
    zero = np.zeros_like(yaw)
    xc = np.stack([np.cos(yaw), np.sin(yaw), zero], -1)
    xc_dot = yaw_rate[:, None] * np.stack([-np.sin(yaw), np.cos(yaw), zero], -1)
    u = np.cross(z, xc)
    u_dot = np.cross(z_dot, xc) + np.cross(z, xc_dot)
    un = np.linalg.norm(u, axis=-1, keepdims=True)
    y = u / un
    y_dot = (u_dot - (y * u_dot).sum(-1, keepdims=True) * y) / un
    x = np.cross(y, z)
    x_dot = np.cross(y_dot, z) + np.cross(y, z_dot)
    R = np.stack([x, y, z], -1)
    # R^T dR/dt = hat(omega): omega_x = z.y', omega_y = x.z', omega_z = y.x'.
    omega = np.stack([(z * y_dot).sum(-1), (x * z_dot).sum(-1), (y * x_dot).sum(-1)], -1)
    return R, omega


# ----------------------------------------------------------------------------------------------
# The flight with its sensors


@dataclass
class GroundTruth:
    """Ground-truth body states at a set of stamps.

    Attributes:
        stamps_ns: stamps (nanoseconds). Shape: (N,).
        T_world_body: poses. Shape: (N, 4, 4).
        v_world: linear velocities, world frame. Shape: (N, 3).
    """

    stamps_ns: np.ndarray
    T_world_body: np.ndarray
    v_world: np.ndarray


@dataclass
class ImuData:
    """IMU readings in the body frame (= IMU frame) and what produced them.

    Attributes:
        stamps_ns: stamps (nanoseconds). Shape: (N,).
        acc: measured specific force (m/s²). Shape: (N, 3).
        gyro: measured angular rate (rad/s). Shape: (N, 3).
        acc_true: noise- and bias-free specific force ``R^T (a - g)``. Shape: (N, 3).
        gyro_true: noise- and bias-free angular rate. Shape: (N, 3).
        acc_bias: true accelerometer bias at each sample. Shape: (N, 3).
        gyro_bias: true gyroscope bias at each sample. Shape: (N, 3).
    """

    stamps_ns: np.ndarray
    acc: np.ndarray
    gyro: np.ndarray
    acc_true: np.ndarray
    gyro_true: np.ndarray
    acc_bias: np.ndarray
    gyro_bias: np.ndarray


def _stamps(rate_hz: float, duration_s: float) -> np.ndarray:
    n = int(np.floor(duration_s * rate_hz + 1e-9)) + 1
    return EPOCH_NS + np.round(np.arange(n) * (1e9 / rate_hz)).astype(np.int64)


def _pinhole(cfg: SyntheticConfig) -> np.ndarray:
    f = (cfg.width / 2) / np.tan(np.deg2rad(cfg.fov_deg) / 2)
    # Pixel centres at integer coordinates (ROS/OpenCV): the image centre is (W-1)/2.
    return np.array([[f, 0.0, (cfg.width - 1) / 2],
                     [0.0, f, (cfg.height - 1) / 2],
                     [0.0, 0.0, 1.0]])


def _body_cam(tilt_deg: float) -> np.ndarray:
    # The camera pitched down by the tilt (a positive rotation about the body's y (left) axis).
    T = np.eye(4)
    T[:3, :3] = _rot_y(np.deg2rad(tilt_deg)) @ _R_FLU_OPT
    T[:3, 3] = (0.05, 0.0, 0.02)
    return T


class SyntheticFlight:
    """A generated flight: scene, ground truth, IMU data and a lazily rendered camera.

    Attributes:
        cfg: the config it was generated from.
        scene: the scene.
        K: camera intrinsics. Shape: (3, 3).
        T_body_cam: camera optical frame in the body frame. Shape: (4, 4).
        T_body_imu: IMU frame in the body frame (identity). Shape: (4, 4).
        imu: IMU readings, true values and biases.
        frame_stamps_ns: RGB-D frame stamps. Shape: (F,).
        gt_imu: ground truth at the IMU stamps.
        gt_frames: ground truth at the frame stamps.
        t0_ns: stamp of the flight's start (t = 0).
    """

    def __init__(self, cfg: SyntheticConfig, scene: Scene, traj: _Trajectory):
        self.cfg = cfg
        self.scene = scene
        self._traj = traj
        self.t0_ns = EPOCH_NS
        self.K = _pinhole(cfg)
        self.T_body_cam = _body_cam(cfg.camera_tilt_deg)
        self.T_body_imu = np.eye(4)
        self.frame_stamps_ns = _stamps(cfg.camera_rate_hz, cfg.duration_s)
        self.gt_frames = self._ground_truth(self.frame_stamps_ns)
        imu_stamps = _stamps(cfg.imu_rate_hz, cfg.duration_s)
        self.gt_imu = self._ground_truth(imu_stamps)
        self.imu = self._make_imu(imu_stamps)
        # Camera-frame ray directions with unit z, so the ray parameter is the z-depth. (HW, 3)
        u, v = np.meshgrid(np.arange(cfg.width, dtype=float), np.arange(cfg.height, dtype=float))
        self._rays_cam = np.stack([(u.ravel() - self.K[0, 2]) / self.K[0, 0],
                                   (v.ravel() - self.K[1, 2]) / self.K[1, 1],
                                   np.ones(u.size)], -1)

    # -- time and ground truth

    def seconds(self, stamps_ns: Union[int, np.ndarray]) -> np.ndarray:
        """Seconds since the flight start of stamps. Shape: (N,) -> (N,)."""
        return (np.asarray(stamps_ns, dtype=np.int64) - self.t0_ns) * 1e-9

    def state_at(self, t: Union[float, np.ndarray]) -> FlightState:
        """Closed-form ground truth at times t (seconds since the flight start; not stamps).

        Shape: t scalar or (N,) -> fields with a leading N (1 for a scalar).
        """
        return self._traj.state(t)

    def _ground_truth(self, stamps_ns: np.ndarray) -> GroundTruth:
        s = self.state_at(self.seconds(stamps_ns))
        return GroundTruth(stamps_ns=stamps_ns, T_world_body=s.T_world_body, v_world=s.v)

    def _make_imu(self, stamps_ns: np.ndarray) -> ImuData:
        cfg = self.cfg
        s = self.state_at(self.seconds(stamps_ns))
        acc_true = np.einsum('nji,nj->ni', s.R, s.a - GRAVITY)
        gyro_true = s.omega
        n = len(stamps_ns)
        dt = 1.0 / cfg.imu_rate_hz
        rng = np.random.default_rng([cfg.seed, 2])
        # Bias: a random initial value, then a random walk (density * sqrt(dt) per step).
        acc_bias = (rng.normal(0, cfg.acc_bias_init, 3)
                    + np.cumsum(np.vstack([np.zeros(3), rng.normal(
                        0, cfg.acc_bias_walk * np.sqrt(dt), (n - 1, 3))]), axis=0))
        gyro_bias = (rng.normal(0, cfg.gyro_bias_init, 3)
                     + np.cumsum(np.vstack([np.zeros(3), rng.normal(
                         0, cfg.gyro_bias_walk * np.sqrt(dt), (n - 1, 3))]), axis=0))
        # White noise: a density over a sample period dt has std density / sqrt(dt).
        acc = acc_true + acc_bias + rng.normal(0, cfg.acc_noise / np.sqrt(dt), (n, 3))
        gyro = gyro_true + gyro_bias + rng.normal(0, cfg.gyro_noise / np.sqrt(dt), (n, 3))
        return ImuData(stamps_ns=stamps_ns, acc=acc, gyro=gyro, acc_true=acc_true,
                       gyro_true=gyro_true, acc_bias=acc_bias, gyro_bias=gyro_bias)

    @property
    def n_frames(self) -> int:
        return len(self.frame_stamps_ns)

    # -- camera

    def render(self, T_world_cam: np.ndarray, noise: bool = False,
               rng: Optional[np.random.Generator] = None) -> Tuple[np.ndarray, np.ndarray]:
        """Render the scene from an arbitrary camera pose with this flight's camera model.

        Args:
            T_world_cam: camera optical frame in the world. Shape: (4, 4).
            noise: add the sensor model (depth noise and dropouts, colour noise).
            rng: random generator for the noise (default: seeded from the config seed).

        Returns:
            rgb: colour image. Shape: (H, W, 3), uint8.
            depth: z-depth in metres (along the optical axis), NaN where invalid (no hit,
                beyond ``depth_max``, dropped). Shape: (H, W), float32.
        """
        cfg = self.cfg
        T = np.asarray(T_world_cam, dtype=float)
        if T.shape != (4, 4):
            raise ValueError(f'T_world_cam must be 4x4, got shape {T.shape}')
        dirs = self._rays_cam @ T[:3, :3].T
        z, _, rgb = self.scene.raycast(T[:3, 3], dirs)
        z = z.reshape(cfg.height, cfg.width)
        rgb = rgb.reshape(cfg.height, cfg.width, 3) * 255.0
        valid = np.isfinite(z) & (z <= cfg.depth_max)
        if noise:
            if rng is None:
                rng = np.random.default_rng([cfg.seed, 3])
            sigma = cfg.depth_noise_a + cfg.depth_noise_b * np.where(valid, z, 0.0) ** 2
            z = z + sigma * rng.standard_normal(z.shape)
            valid &= rng.random(z.shape) >= cfg.depth_dropout
            rgb = rgb + cfg.rgb_noise * rng.standard_normal(rgb.shape)
        depth = np.where(valid, z, np.nan).astype(np.float32)
        rgb8 = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
        return rgb8, depth

    def T_world_cam(self, index: int) -> np.ndarray:
        """Camera pose at frame ``index``. Shape: (4, 4)."""
        return self.gt_frames.T_world_body[index] @ self.T_body_cam

    def frame(self, index: int, noise: bool = True) -> Frame:
        """Render frame ``index`` (its noise is seeded by the config seed and the index, so
        frames are reproducible in any order)."""
        if not 0 <= index < self.n_frames:
            raise IndexError(f'frame index {index} out of range [0, {self.n_frames})')
        rng = np.random.default_rng([self.cfg.seed, 4, index])
        rgb, depth = self.render(self.T_world_cam(index), noise=noise, rng=rng)
        return Frame(stamp_ns=int(self.frame_stamps_ns[index]), rgb=rgb, depth=depth,
                     K=self.K.copy(), T_body_cam=self.T_body_cam.copy())

    # -- streams

    def items(self, noise: bool = True) -> Iterator[StreamItem]:
        """ImuSample, Frame and ground-truth PoseSample (camera rate, with v_world) in time
        order; at equal stamps IMU first, then the frame, then its pose. Frames are rendered
        as they are reached."""
        events = ([(int(s), 0, i) for i, s in enumerate(self.imu.stamps_ns)]
                  + [(int(s), 1, i) for i, s in enumerate(self.frame_stamps_ns)]
                  + [(int(s), 2, i) for i, s in enumerate(self.gt_frames.stamps_ns)])
        events.sort()
        for stamp, kind, i in events:
            if kind == 0:
                yield ImuSample(stamp_ns=stamp, acc=self.imu.acc[i].copy(),
                                gyro=self.imu.gyro[i].copy())
            elif kind == 1:
                yield self.frame(i, noise=noise)
            else:
                yield PoseSample(stamp_ns=stamp,
                                 T_world_body=self.gt_frames.T_world_body[i].copy(),
                                 v_world=self.gt_frames.v_world[i].copy())


# ----------------------------------------------------------------------------------------------
# Generation


def _make_trajectory(cfg: SyntheticConfig, rng: np.random.Generator) -> _Trajectory:
    Lx, Ly, Lz = cfg.room_size
    reach_x, reach_y = Lx / 2 - _WALL_MARGIN, Ly / 2 - _WALL_MARGIN
    # Main ellipse plus two harmonics per axis (their share of the reach drawn from the seed).
    # Small enough that the main ellipse dominates the velocity too (no cusps, no inner loops).
    sx, sy = rng.uniform(0.04, 0.1, 2), rng.uniform(0.04, 0.1, 2)
    direction = rng.choice([-1, 1])
    start = rng.uniform(0, 2 * np.pi)
    amp = np.zeros((3, 3))
    harm = np.zeros((3, 3), dtype=np.int64)
    phase = np.zeros((3, 3))
    amp[0] = [reach_x * (1 - sx.sum()), reach_x * sx[0], reach_x * sx[1]]
    amp[1] = [reach_y * (1 - sy.sum()), reach_y * sy[0], reach_y * sy[1]]
    amp[2] = [0.3, 0.1, 0.0]   # height 1.5 +- 0.4 m
    harm[0] = harm[1] = direction * np.array([1, 2, 3])
    harm[2] = direction * np.array([2, 3, 1])
    phase[0] = [start, *rng.uniform(0, 2 * np.pi, 2)]
    phase[1] = [start - np.pi / 2, *rng.uniform(0, 2 * np.pi, 2)]
    phase[2] = rng.uniform(0, 2 * np.pi, 3)
    center = np.array([Lx / 2, Ly / 2, 1.5])
    return _Trajectory(center=center, amp=amp, harm=harm, phase=phase,
                       pan_amp=float(rng.uniform(0.3, 0.5)), pan_harm=int(direction * 2),
                       pan_phase=float(rng.uniform(0, 2 * np.pi)), look_at=center[:2].copy(),
                       hover_s=cfg.hover_s, ramp_s=cfg.ramp_s)


def _scale_speed(traj: _Trajectory, cfg: SyntheticConfig) -> None:
    """Set the loop rate w0 so that the peak speed over the IMU stamps is cfg.peak_speed."""
    t = (_stamps(cfg.imu_rate_hz, cfg.duration_s) - EPOCH_NS) * 1e-9

    def peak(w0: float) -> float:
        traj.w0 = w0
        th, th1, _, _ = traj.warp(t)
        return float(np.max(np.linalg.norm(traj.loop(th, 1), axis=-1) * th1))

    if peak(1.0) <= 0:
        raise ConfigError(f'synthetic: the flight never moves (duration_s={cfg.duration_s} '
                          f'<= hover_s={cfg.hover_s})')
    # The peak is continuous in w0 but not proportional to it (which part of the loop is flown
    # depends on w0 too), so bisect on log w0 rather than rescale.
    lo = hi = 1.0
    for _ in range(60):   # bracket the target within a factor of 2
        if peak(hi) < cfg.peak_speed:
            lo, hi = hi, hi * 2
        elif peak(lo) >= cfg.peak_speed:
            lo, hi = lo / 2, lo
        else:
            break
    for _ in range(40):
        mid = np.sqrt(lo * hi)
        lo, hi = (mid, hi) if peak(mid) < cfg.peak_speed else (lo, mid)
    traj.w0 = np.sqrt(lo * hi)


def _place_obstacles(cfg: SyntheticConfig, loop: np.ndarray,
                     rng: np.random.Generator) -> Scene:
    """Boxes and cylinders placed by rejection sampling, clear of the loop and of each other."""
    L = np.asarray(cfg.room_size, dtype=float)
    boxes, cyls = [], []
    footprints = np.zeros((0, 3))   # (x, y, bounding radius) of those placed
    tries = 0
    while len(boxes) + len(cyls) < cfg.n_obstacles:
        tries += 1
        if tries > 5000:
            raise ConfigError(f'synthetic: could not place {cfg.n_obstacles} obstacles clear of '
                              f'the flight in a room of {tuple(cfg.room_size)} m (placed '
                              f'{len(boxes) + len(cyls)}); use fewer obstacles or a bigger room')
        is_box = rng.random() < 0.6
        # A third of the obstacles are floor-to-ceiling pillars.
        top = L[2] if rng.random() < 0.35 else rng.uniform(0.4, L[2] - 0.3)
        if is_box:
            half_xy = rng.uniform(0.15, 0.6, 2)
            yaw = rng.uniform(-np.pi / 4, np.pi / 4) if rng.random() < 0.6 else 0.0
            radius = float(np.hypot(*half_xy))
        else:
            radius = float(rng.uniform(0.1, 0.4))
        # Inside the room with a gap to the walls (an obstacle in a wall hides its faces).
        if (L[:2] < 2 * radius + 0.1).any():
            continue
        xy = rng.uniform(radius + 0.05, L[:2] - radius - 0.05)
        gaps = np.hypot(*(xy - footprints[:, :2]).T) - footprints[:, 2] - radius
        if (gaps < 0.2).any():
            continue
        if is_box:
            cand = Scene(L, [[*xy, top / 2]], [[*half_xy, top / 2]], [yaw],
                         np.zeros((0, 2)), [], np.zeros((0, 2)), texture_seed=None)
        else:
            cand = Scene(L, np.zeros((0, 3)), np.zeros((0, 3)), [], [xy], [radius], [[0.0, top]],
                         texture_seed=None)
        _, sdf = cand._sdfs(loop)
        if sdf.min() < _CLEARANCE:
            continue
        footprints = np.vstack([footprints, [*xy, radius]])
        if is_box:
            boxes.append(([*xy, top / 2], [*half_xy, top / 2], yaw))
        else:
            cyls.append((xy, radius, (0.0, top)))
    return Scene(
        L,
        np.array([b[0] for b in boxes]).reshape(-1, 3),
        np.array([b[1] for b in boxes]).reshape(-1, 3),
        np.array([b[2] for b in boxes]),
        np.array([c[0] for c in cyls]).reshape(-1, 2),
        np.array([c[1] for c in cyls]),
        np.array([c[2] for c in cyls]).reshape(-1, 2),
        texture_seed=cfg.seed)


def generate_flight(cfg: SyntheticConfig = SyntheticConfig()) -> SyntheticFlight:
    """Generate the synthetic flight of a config (deterministic for a given config).

    Raises:
        ConfigError: the room is too small for the flight, or the obstacles do not fit.
    """
    Lx, Ly, Lz = cfg.room_size
    if min(Lx, Ly) < 2 * _WALL_MARGIN + 1.5 or Lz < 2.5:
        raise ConfigError(f'synthetic.room_size: {tuple(cfg.room_size)} is too small; the flight '
                          f'needs x and y >= {2 * _WALL_MARGIN + 1.5} m and z >= 2.5 m')
    rng = np.random.default_rng([cfg.seed, 1])
    traj = _make_trajectory(cfg, rng)
    _scale_speed(traj, cfg)
    # The whole closed loop (and so the hover point), whatever part of it the duration covers.
    loop = traj.loop(np.linspace(0, 2 * np.pi, 2000, endpoint=False))
    scene = _place_obstacles(cfg, loop, rng)
    return SyntheticFlight(cfg, scene, traj)


# ----------------------------------------------------------------------------------------------
# Writing and caching


FORMAT_PATHS = {'mcap': 'rosbag2_mcap', 'sqlite3': 'rosbag2_sqlite3', 'ros1': 'flight.bag',
                'tum': 'tum'}
"""Where ``write_flight`` puts each format inside its output directory."""


class RealSenseLayout(BagLayout):
    """A bag layout whose /tf_static has the chain the RealSense driver publishes:
    base_link -> camera_link (FLU, at the camera) -> camera_color_optical_frame, instead of one
    direct body -> optical transform; and base_link -> the IMU frame."""

    def static_transforms(self, T_body_cam: np.ndarray) -> List[Tuple[str, str, np.ndarray]]:
        T_link_opt = np.eye(4)
        T_link_opt[:3, :3] = _R_FLU_OPT
        T_body_link = np.asarray(T_body_cam, dtype=float) @ invert(T_link_opt)
        return [(self.body_frame, 'camera_link', T_body_link),
                ('camera_link', self.camera_frame, T_link_opt),
                (self.body_frame, self.imu_frame, np.asarray(self.T_body_imu, dtype=float))]


def realsense_layout(flight: SyntheticFlight) -> RealSenseLayout:
    """Topics and frames of a RealSense D435i-like camera on a drone (the bags' layout)."""
    return RealSenseLayout(
        rgb_topic='/camera/color/image_raw',
        rgb_info_topic='/camera/color/camera_info',
        depth_topic='/camera/aligned_depth_to_color/image_raw',
        depth_info_topic='/camera/aligned_depth_to_color/camera_info',
        imu_topic='/camera/imu',
        ground_truth_topic='/ground_truth/pose',
        ground_truth_type='pose',
        world_frame='world',
        body_frame='base_link',
        camera_frame='camera_color_optical_frame',
        imu_frame='camera_imu_frame',
        depth_encoding='16UC1',
        T_body_cam=flight.T_body_cam,
        T_body_imu=flight.T_body_imu)


def write_flight(flight: SyntheticFlight, out_dir: Union[str, os.PathLike],
                 formats: Sequence[str] = ('mcap', 'tum'), overwrite: bool = False,
                 progress: Optional[Callable[[int], None]] = None) -> Dict[str, Path]:
    """Write a flight as ROS bags with RealSense-like topics and/or a TUM RGB-D folder.

    Layout of ``out_dir``: ``rosbag2_mcap/`` (ROS 2, mcap), ``rosbag2_sqlite3/``,
    ``flight.bag`` (ROS 1), ``tum/`` (the TUM convention: ground truth is the colour camera's
    optical frame in the world, and there is no IMU), plus ``synthetic.yaml`` (the config, a
    ``synthetic:`` section, so the flight can be regenerated) and ``truth.npz`` (stamps, true
    IMU biases and noise-free IMU readings).

    Bag topics: ``/camera/color/image_raw`` (rgb8), ``/camera/color/camera_info``,
    ``/camera/aligned_depth_to_color/image_raw`` (16UC1 mm), its ``camera_info``,
    ``/camera/imu`` (sensor_msgs/Imu in camera_imu_frame = base_link), ``/ground_truth/pose``
    (geometry_msgs/PoseStamped, base_link in world, camera rate) and ``/tf_static``
    (base_link -> camera_link -> camera_color_optical_frame, base_link -> camera_imu_frame).

    Args:
        flight: the flight.
        out_dir: output directory (created).
        formats: any of 'mcap', 'sqlite3', 'ros1', 'tum'.
        overwrite: replace outputs that exist (else SourceError/BagError).
        progress: called with 1 after each frame written (e.g. a tqdm's ``update``).

    Returns:
        The path written for each format.
    """
    bad = [f for f in formats if f not in FORMAT_PATHS]
    if bad or not formats:
        raise ConfigError(f'unknown output format(s) {bad or list(formats)}; choose from '
                          f'{", ".join(FORMAT_PATHS)}')
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    layout = realsense_layout(flight)
    written: Dict[str, Path] = {}
    for fmt in dict.fromkeys(formats):   # unique, in order
        path = out / FORMAT_PATHS[fmt]
        items = _counting(flight.items(), progress)
        if fmt == 'tum':
            write_tum_folder(path, _tum_items(items, flight.T_body_cam), overwrite=overwrite)
        else:
            write_stream(path, fmt, items, layout=layout, overwrite=overwrite)
        written[fmt] = path
    atomic_write_text(out / 'synthetic.yaml', (
        '# The config of this synthetic flight (vssm-synth --config synthetic.yaml regenerates '
        'it)\n' + yaml.safe_dump({'synthetic': to_dict(flight.cfg)}, sort_keys=False)))
    imu = flight.imu
    buf = io.BytesIO()
    np.savez(buf, imu_stamps_ns=imu.stamps_ns, acc_bias=imu.acc_bias, gyro_bias=imu.gyro_bias,
             acc_true=imu.acc_true, gyro_true=imu.gyro_true, K=flight.K,
             T_body_cam=flight.T_body_cam, T_body_imu=flight.T_body_imu,
             frame_stamps_ns=flight.frame_stamps_ns,
             T_world_body=flight.gt_frames.T_world_body, v_world=flight.gt_frames.v_world)
    atomic_write_bytes(out / 'truth.npz', buf.getvalue())
    return written


def _counting(items: Iterator[StreamItem],
              progress: Optional[Callable[[int], None]]) -> Iterator[StreamItem]:
    for item in items:
        yield item
        if progress is not None and isinstance(item, Frame):
            progress(1)


def _tum_items(items: Iterator[StreamItem], T_body_cam: np.ndarray) -> Iterator[StreamItem]:
    # TUM's ground truth is the optical centre, and its reader treats the camera as the body.
    for item in items:
        if isinstance(item, PoseSample):
            yield PoseSample(item.stamp_ns, item.T_world_body @ T_body_cam)
        elif isinstance(item, Frame):
            yield dataclasses.replace(item, T_body_cam=np.eye(4))
        else:
            yield item


def config_hash(cfg: SyntheticConfig, formats: Sequence[str] = ()) -> str:
    """A short hash of the config, the formats and the generator version (names cached
    flights)."""
    doc = {'generator': GENERATOR_VERSION, 'config': to_dict(cfg), 'formats': list(formats)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def cached_flight_dir(cfg: SyntheticConfig, cache_root: Union[str, os.PathLike],
                      formats: Sequence[str] = ('mcap', 'tum'),
                      progress: Optional[Callable[[int], None]] = None) -> Path:
    """The directory of the flight of ``cfg`` written by ``write_flight``, generated on first
    use under ``cache_root/synthetic-<hash>``.

    The flight is written into a temporary directory and renamed, so the cache never holds a
    half-written flight, and two processes racing keep one complete copy.
    """
    root = Path(cache_root)
    final = root / f'synthetic-{config_hash(cfg, formats)}'
    if final.is_dir():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f'.{final.name}.', suffix='.tmp'))
    try:
        write_flight(generate_flight(cfg), tmp, formats, overwrite=True, progress=progress)
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():   # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


__all__ = ['Scene', 'FlightState', 'GroundTruth', 'ImuData', 'SyntheticFlight', 'GRAVITY',
           'EPOCH_NS', 'FORMAT_PATHS', 'generate_flight', 'write_flight', 'realsense_layout',
           'config_hash', 'cached_flight_dir']
