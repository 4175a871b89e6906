# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The synthetic scene: a room (an axis-aligned box seen from inside) with box (rotated about z)
and vertical-cylinder obstacles, each surface with its own smooth procedural texture.

Ray casts and distances are exact and vectorised.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

_N_WAVES = 9


def _rot_z(yaw: np.ndarray) -> np.ndarray:
    """Rotations about z. Shape: (...,) -> (..., 3, 3)."""
    c, s = np.cos(yaw), np.sin(yaw)
    z, o = np.zeros_like(c), np.ones_like(c)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1),
                     np.stack([z, z, o], -1)], -2)


def _rot_y(pitch: float) -> np.ndarray:
    """A rotation about y. Shape: () -> (3, 3)."""
    c, s = np.cos(pitch), np.sin(pitch)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _box_sdf(p: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Signed distance to origin-centred boxes. Shape: p (..., 3), half (..., 3) -> (...)."""
    q = np.abs(p) - half
    outside = np.linalg.norm(np.maximum(q, 0.0), axis=-1)
    inside = np.minimum(q.max(axis=-1), 0.0)
    return outside + inside


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
        rooms: the rooms of a multi-room layout as (min, max) corners, in the order the flight
            visits them (default: the one room, the whole box). Shape: (R, 2, 3).
    """

    def __init__(self, room_size: Sequence[float], box_center: np.ndarray,
                 box_half: np.ndarray, box_yaw: np.ndarray, cyl_center: np.ndarray,
                 cyl_radius: np.ndarray, cyl_z: np.ndarray,
                 texture_seed: Optional[int] = 0, rooms: Optional[np.ndarray] = None):
        self.room_size = np.asarray(room_size, dtype=float).reshape(3)
        self.rooms = (np.array([[np.zeros(3), self.room_size]]) if rooms is None
                      else np.asarray(rooms, dtype=float).reshape(-1, 2, 3))
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

    def set_texture(self, kind: str) -> None:
        """Change the textures: 'default' (as made), 'low_contrast' (the waves and offsets at a
        fifth: about a fifth of the contrast) or 'repetitive' (every surface the same tiled
        pattern: waves of 0.3 m along x, y and z, so a face shows a grid of 0.3 m period)."""
        if kind == 'default':
            return
        if kind == 'low_contrast':
            self._tex_amp = self._tex_amp * 0.2
            self._tex_offset = self._tex_offset * 0.2
        elif kind == 'repetitive':
            n = self.n_primitives
            k = np.zeros((n, _N_WAVES, 3))
            k[:, :3] = np.eye(3) * (2 * np.pi / 0.3)
            amp = np.zeros((n, _N_WAVES, 3))
            amp[:, :3] = [0.9, 0.8, 0.7]   # a warm grey: the same in every channel but a tint
            self._tex_k, self._tex_amp = k, amp
            self._tex_phase = np.zeros((n, _N_WAVES))
            self._tex_offset = np.zeros((n, 3))
        else:
            raise ValueError(f"texture must be 'default', 'low_contrast' or 'repetitive', got "
                             f'{kind!r}')
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
