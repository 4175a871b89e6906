# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""The scene families of the synthetic flight (``synthetic.layout``) and their loops.

- 'room': one room of ``room_size``; a loop around its centre 1.2 m from the walls, the camera
  facing the centre with a slow pan; obstacles anywhere clear of the loop.
- 'hall': one large hall of ``hall_size``; a loop through its open middle 3.5 m from the walls,
  the camera facing away from the centre (towards the walls, within ``depth_max``) with a pan;
  4 x ``n_obstacles`` shelves, crates and pillars standing along the walls.
- 'rooms': four rooms of ``room_size`` each in a 2 x 2 grid, separated by thin walls with a
  floor-to-ceiling doorway where the loop crosses them; the loop passes through the rooms'
  centres (room A first, then the others, then back to A), the camera looking along the
  direction of travel; ``ceil(n_obstacles / 2)`` obstacles in each room.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

from vssm_ros.config import SyntheticConfig
from vssm_ros.data.synthetic.scene import Scene
from vssm_ros.data.synthetic.trajectory import _Trajectory
from vssm_ros.errors import ConfigError

# A box obstacle or a cylinder keeps this much room (metres) to every point of the flight loop;
# the test bar is 0.5 m, the extra is margin for the loop's sampling.
_CLEARANCE = 0.75
# The room loop keeps this distance (metres) to the walls: the camera never faces a wall closer
# than about 0.8 m, and obstacles fit between the loop and the walls.
_WALL_MARGIN = 1.2
# The hall loop keeps this distance (metres) to the walls; its obstacles stand within 2 m of them.
_HALL_MARGIN = 3.5
# Interior walls of the 'rooms' layout: thickness and doorway width (metres).
_WALL_THICKNESS = 0.2
_DOOR_WIDTH = 1.8
# Any flight keeps at least this distance (metres) to every surface, else generation fails.
_MIN_CLEARANCE = 0.6
# (centre, half extents, yaw) of a box; (centre xy, radius, (bottom, top)) of a cylinder.
_Box = Tuple[Sequence[float], Sequence[float], float]
_Cyl = Tuple[Sequence[float], float, Tuple[float, float]]


def make_trajectory(cfg: SyntheticConfig, rng: np.random.Generator) -> _Trajectory:
    """The loop of the config's layout (its rate w0 is set afterwards to the peak speed).

    Raises:
        ConfigError: the room or hall is too small for the flight.
    """
    if cfg.layout == 'hall':
        Lx, Ly, Lz = cfg.hall_size
        if min(Lx, Ly) < 2 * _HALL_MARGIN + 3.0 or Lz < 2.5:
            raise ConfigError(f'synthetic.hall_size: {tuple(cfg.hall_size)} is too small; the '
                              f'flight needs x and y >= {2 * _HALL_MARGIN + 3.0} m and z >= 2.5 m')
        traj = _loop_trajectory(cfg, rng, (Lx / 2, Ly / 2), Lx / 2 - _HALL_MARGIN,
                                Ly / 2 - _HALL_MARGIN, (0.04, 0.1))
        traj.yaw_offset = np.pi   # face the walls: the far side is beyond the depth range
    elif cfg.layout == 'rooms':
        Lx, Ly, Lz = cfg.room_size
        if min(Lx, Ly) < 5.0 or Lz < 2.5:
            raise ConfigError(f'synthetic.room_size: {tuple(cfg.room_size)} is too small for '
                              f"layout 'rooms'; each room needs x and y >= 5 m and z >= 2.5 m")
        # Through the four rooms' centres (radii size / sqrt(2)), starting at one of them.
        traj = _loop_trajectory(cfg, rng, (Lx, Ly), Lx / np.sqrt(2), Ly / np.sqrt(2),
                                (0.02, 0.05), room_centres=True)
        traj.yaw_mode = 'travel'
    else:
        Lx, Ly, Lz = cfg.room_size
        if min(Lx, Ly) < 2 * _WALL_MARGIN + 1.5 or Lz < 2.5:
            raise ConfigError(f'synthetic.room_size: {tuple(cfg.room_size)} is too small; the '
                              f'flight needs x and y >= {2 * _WALL_MARGIN + 1.5} m and z >= 2.5 m')
        traj = _loop_trajectory(cfg, rng, (Lx / 2, Ly / 2), Lx / 2 - _WALL_MARGIN,
                                Ly / 2 - _WALL_MARGIN, (0.04, 0.1))
    if cfg.yaw == 'velocity':
        traj.yaw_mode, traj.yaw_offset = 'travel', 0.0
    if cfg.start == 'moving':
        traj.moving = True
    elif cfg.start == 'centre':
        # Spiral out slowly enough that the radial speed stays below 0.8 x the peak speed
        # (35/16 is the septic step's peak slope).
        loop = traj.loop(np.linspace(0, 2 * np.pi, 2000, endpoint=False))
        r_max = float(np.linalg.norm(loop - traj.center, axis=1).max())
        traj.out_s = max(cfg.ramp_s, 35 / 16 * r_max / (0.8 * cfg.peak_speed))
    return traj


def _loop_trajectory(cfg: SyntheticConfig, rng: np.random.Generator,
                     center_xy: Tuple[float, float], reach_x: float, reach_y: float,
                     share: Tuple[float, float], room_centres: bool = False) -> _Trajectory:
    """An ellipse of radii reach_x, reach_y around center_xy at 1.5 m height, plus two harmonics
    per axis (their share of the reach drawn from the seed within ``share``), starting at a
    random angle (``room_centres``: at one of the ellipse's diagonal points)."""
    # Small enough that the main ellipse dominates the velocity too (no cusps, no inner loops).
    sx, sy = rng.uniform(*share, 2), rng.uniform(*share, 2)
    direction = rng.choice([-1, 1])
    if room_centres:
        start = np.pi / 4 + np.pi / 2 * int(rng.integers(4))
    else:
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
    center = np.array([center_xy[0], center_xy[1], 1.5])
    return _Trajectory(center=center, amp=amp, harm=harm, phase=phase,
                       pan_amp=float(rng.uniform(0.3, 0.5)), pan_harm=int(direction * 2),
                       pan_phase=float(rng.uniform(0, 2 * np.pi)), look_at=center[:2].copy(),
                       hover_s=cfg.hover_s, ramp_s=cfg.ramp_s)


def flight_path(traj: _Trajectory) -> np.ndarray:
    """Points of the whole flight path, whatever part of it the duration covers: the closed
    loop (and so the hover point) and, for a start at the centre, the spiral out to it.

    Shape: (M, 3).
    """
    path = traj.loop(np.linspace(0, 2 * np.pi, 2000, endpoint=False))
    if traj.out_s:
        t = np.linspace(traj.hover_s, traj.hover_s + traj.out_s, 500)
        path = np.vstack([path, traj.state(t).p])
    return path


def make_scene(cfg: SyntheticConfig, traj: _Trajectory, rng: np.random.Generator) -> Scene:
    """The scene of the config's layout around the flight path of ``traj``.

    Raises:
        ConfigError: the obstacles do not fit, or the path comes too close to a wall.
    """
    scene = _make_scene(cfg, traj, rng)
    scene.set_texture(cfg.texture)
    return scene


def _make_scene(cfg: SyntheticConfig, traj: _Trajectory, rng: np.random.Generator) -> Scene:
    path = flight_path(traj)
    if cfg.layout == 'hall':
        scene = _place_along_walls(cfg, np.asarray(cfg.hall_size, dtype=float), path, rng,
                                   4 * cfg.n_obstacles)
    elif cfg.layout == 'rooms':
        L = np.asarray(cfg.room_size, dtype=float)
        walls, rooms = _interior_walls(L, traj)
        per_room = (cfg.n_obstacles + 1) // 2
        regions = [(r[0, :2], r[1, :2], per_room) for r in rooms]
        scene = _place_obstacles(cfg, np.array([2 * L[0], 2 * L[1], L[2]]), regions, path, rng,
                                 walls=walls, rooms=rooms)
    else:
        L = np.asarray(cfg.room_size, dtype=float)
        return _place_obstacles(cfg, L, [(np.zeros(2), L[:2], cfg.n_obstacles)], path, rng)
    clearance = float(scene.distance(path).min())
    if clearance < _MIN_CLEARANCE:
        raise ConfigError(f'synthetic: the {cfg.layout!r} flight passes {clearance:.2f} m from a '
                          f'surface (needs {_MIN_CLEARANCE} m); use a bigger room or hall')
    return scene


def make_room_around(cfg: SyntheticConfig, room_size: np.ndarray, path: np.ndarray,
                     rng: np.random.Generator) -> Scene:
    """A room of ``room_size`` with ``cfg.n_obstacles`` obstacles clear of a given path (a
    Blackbird-style flight's positions), textured as ``cfg.texture``.

    Shape: room_size (3,), path (M, 3).

    Raises:
        ConfigError: the obstacles do not fit, or the path comes too close to a surface.
    """
    L = np.asarray(room_size, dtype=float)
    path = np.asarray(path, dtype=float)[::5]   # 20 Hz of a 100 Hz path: plenty for clearance
    scene = _place_obstacles(cfg, L, [(np.zeros(2), L[:2], cfg.n_obstacles)], path, rng)
    clearance = float(scene.distance(path).min())
    if clearance < _MIN_CLEARANCE:
        raise ConfigError(f'synthetic: the flight passes {clearance:.2f} m from a surface of its '
                          f'room (needs {_MIN_CLEARANCE} m)')
    scene.set_texture(cfg.texture)
    return scene


def _random_obstacle(rng: np.random.Generator, height: float) -> Tuple[bool, np.ndarray,
                                                                       float, float, float]:
    """A random box or cylinder's shape: is_box, half_xy (boxes), yaw, top, bounding radius."""
    is_box = rng.random() < 0.6
    # A third of the obstacles are floor-to-ceiling pillars.
    top = height if rng.random() < 0.35 else rng.uniform(0.4, height - 0.3)
    half_xy, yaw = np.zeros(2), 0.0
    if is_box:
        half_xy = rng.uniform(0.15, 0.6, 2)
        yaw = rng.uniform(-np.pi / 4, np.pi / 4) if rng.random() < 0.6 else 0.0
        radius = float(np.hypot(*half_xy))
    else:
        radius = float(rng.uniform(0.1, 0.4))
    return is_box, half_xy, yaw, top, radius


def _place_obstacles(cfg: SyntheticConfig, L: np.ndarray,
                     regions: Sequence[Tuple[np.ndarray, np.ndarray, int]], path: np.ndarray,
                     rng: np.random.Generator, walls: Sequence[_Box] = (),
                     rooms: Optional[np.ndarray] = None) -> Scene:
    """Boxes and cylinders placed by rejection sampling, clear of the path and of each other:
    ``count`` of them inside each region (xy min, xy max); ``walls`` are extra boxes first."""
    boxes: List[_Box] = []
    cyls: List[_Cyl] = []
    footprints = np.zeros((0, 3))   # (x, y, bounding radius) of those placed
    tries = 0
    for lo, hi, count in regions:
        placed = 0
        while placed < count:
            tries += 1
            if tries > 5000 * len(regions):
                raise ConfigError(
                    f'synthetic: could not place {cfg.n_obstacles} obstacles clear of the flight '
                    f'in a room of {tuple(cfg.room_size)} m (placed {len(boxes) + len(cyls)}); '
                    'use fewer obstacles or a bigger room')
            is_box, half_xy, yaw, top, radius = _random_obstacle(rng, L[2])
            # Inside the region with a gap to the walls (an obstacle in a wall hides its faces).
            if (hi - lo < 2 * radius + 0.1).any():
                continue
            xy = rng.uniform(lo + radius + 0.05, hi - radius - 0.05)
            box = ([*xy, top / 2], [*half_xy, top / 2], yaw) if is_box else None
            cyl = None if is_box else (xy, radius, (0.0, top))
            if not _fits(L, box, cyl, footprints, xy, radius, path):
                continue
            footprints = _place(box, cyl, xy, radius, footprints, boxes, cyls)
            placed += 1
    return _scene(L, list(walls) + boxes, cyls, cfg.seed, rooms)


def _place(box: Optional[_Box], cyl: Optional[_Cyl], xy: np.ndarray, radius: float,
           footprints: np.ndarray, boxes: List[_Box], cyls: List[_Cyl]) -> np.ndarray:
    """Add an obstacle that fits (a box, else the cylinder); returns the footprints with it.
    Shape: footprints (N, 3) -> (N + 1, 3)."""
    if box is not None:
        boxes.append(box)
    else:
        cyls.append(cyl)
    return np.vstack([footprints, [*xy, radius]])


def _fits(L: np.ndarray, box: Optional[_Box], cyl: Optional[_Cyl], footprints: np.ndarray,
          xy: np.ndarray, radius: float, path: np.ndarray) -> bool:
    """Whether a candidate obstacle keeps 0.2 m to those placed and _CLEARANCE to the path."""
    gaps = np.hypot(*(xy - footprints[:, :2]).T) - footprints[:, 2] - radius
    if (gaps < 0.2).any():
        return False
    cand = _scene(L, [box] if box else [], [cyl] if cyl else [], None)
    _, sdf = cand._sdfs(path)
    return sdf.min() >= _CLEARANCE


def _scene(L: np.ndarray, boxes: Sequence[_Box], cyls: Sequence[_Cyl],
           texture_seed: Optional[int], rooms: Optional[np.ndarray] = None) -> Scene:
    return Scene(
        L,
        np.array([b[0] for b in boxes]).reshape(-1, 3),
        np.array([b[1] for b in boxes]).reshape(-1, 3),
        np.array([b[2] for b in boxes]),
        np.array([c[0] for c in cyls]).reshape(-1, 2),
        np.array([c[1] for c in cyls]),
        np.array([c[2] for c in cyls]).reshape(-1, 2),
        texture_seed=texture_seed, rooms=rooms)


def _place_along_walls(cfg: SyntheticConfig, L: np.ndarray, path: np.ndarray,
                       rng: np.random.Generator, n: int) -> Scene:
    """Shelves (boxes along a wall), crates (small boxes, turned) and floor-to-ceiling pillars
    (cylinders) standing within 2 m of the hall's walls, clear of the path and of each other."""
    boxes: List[_Box] = []
    cyls: List[_Cyl] = []
    footprints = np.zeros((0, 3))   # (x, y, bounding radius) of those placed
    tries = 0
    while len(boxes) + len(cyls) < n:
        tries += 1
        if tries > 5000:
            raise ConfigError(f'synthetic: could not place {n} obstacles along the walls of a '
                              f'hall of {tuple(cfg.hall_size)} m (placed '
                              f'{len(boxes) + len(cyls)}); use fewer obstacles or a bigger hall')
        wall = int(rng.integers(4))   # x = 0, x = Lx, y = 0, y = Ly
        along = 1 if wall < 2 else 0   # the axis the wall runs along
        kind = rng.random()
        half_xy, yaw, top = np.zeros(2), 0.0, float(L[2])
        if kind < 0.4:   # a shelf, its long side along the wall
            half_along, half_depth = rng.uniform(0.6, 1.6), rng.uniform(0.2, 0.45)
            half_xy[along], half_xy[1 - along] = half_along, half_depth
            top = rng.uniform(1.2, min(2.5, L[2] - 0.3))
            depth, extent = half_depth, half_along
        elif kind < 0.7:   # a crate
            half_xy = rng.uniform(0.25, 0.6, 2)
            yaw = rng.uniform(-np.pi / 4, np.pi / 4)
            top = rng.uniform(0.4, 1.5)
            depth = extent = float(np.hypot(*half_xy))
        else:   # a pillar
            depth = extent = float(rng.uniform(0.15, 0.4))
        off = depth + rng.uniform(0.05, 0.8)   # of the centre from the wall
        pos = rng.uniform(extent + 0.1, L[along] - extent - 0.1)
        xy = np.zeros(2)
        xy[along] = pos
        xy[1 - along] = off if wall % 2 == 0 else L[1 - along] - off
        is_box = kind < 0.7
        radius = float(np.hypot(*half_xy)) if is_box else depth
        box = ([*xy, top / 2], [*half_xy, top / 2], yaw) if is_box else None
        cyl = None if is_box else (xy, depth, (0.0, top))
        if not _fits(L, box, cyl, footprints, xy, radius, path):
            continue
        footprints = _place(box, cyl, xy, radius, footprints, boxes, cyls)
    return _scene(L, boxes, cyls, cfg.seed)


def _crossings(loop: np.ndarray, axis: int, value: float) -> np.ndarray:
    """Where a closed loop crosses the plane ``p[axis] = value``: the other horizontal
    coordinate of each crossing, in the loop's order. Shape: loop (M, 3) -> (K,)."""
    q = loop[:, axis] - value
    k = np.flatnonzero(np.sign(q) != np.sign(np.roll(q, -1)))
    k1 = (k + 1) % len(loop)
    w = q[k] / (q[k] - q[k1])
    return loop[k, 1 - axis] + w * (loop[k1, 1 - axis] - loop[k, 1 - axis])


def _wall_segments(axis: int, at: float, lo: float, hi: float, doors: Sequence[float],
                   height: float) -> List[_Box]:
    """A thin full-height wall along ``axis`` (0: x, 1: y) at ``at`` on the other axis,
    spanning [lo, hi] with a doorway of _DOOR_WIDTH centred at each of ``doors``."""
    edges = [lo]
    for d in sorted(doors):
        edges += [d - _DOOR_WIDTH / 2, d + _DOOR_WIDTH / 2]
    edges.append(hi)
    boxes = []
    for a, b in zip(edges[::2], edges[1::2]):
        a, b = max(a, lo), min(b, hi)
        if b - a < 0.05:
            continue
        center, half = np.zeros(3), np.zeros(3)
        center[axis], center[1 - axis], center[2] = (a + b) / 2, at, height / 2
        half[axis], half[1 - axis], half[2] = (b - a) / 2, _WALL_THICKNESS / 2, height / 2
        boxes.append((center.tolist(), half.tolist(), 0.0))
    return boxes


def _interior_walls(L: np.ndarray, traj: _Trajectory) -> Tuple[List[_Box], np.ndarray]:
    """The 'rooms' layout's walls between its four rooms of size L (a cross at x = Lx and
    y = Ly, with a doorway where the loop crosses each arm), and the rooms as (min, max)
    corners in the order the loop visits them (the first holds the start).

    Shape: L (3,) -> walls, rooms (4, 2, 3).
    """
    loop = traj.loop(np.linspace(0, 2 * np.pi, 4000, endpoint=False))
    at_x, at_y = _crossings(loop, 0, L[0]), _crossings(loop, 1, L[1])
    if (len(at_x) != 2 or len(at_y) != 2 or (at_x < L[1]).sum() != 1
            or (at_y < L[0]).sum() != 1):
        raise ConfigError('synthetic: the rooms flight does not cross each inner wall once; '
                          'use other room_size')
    h = _WALL_THICKNESS / 2
    walls = _wall_segments(0, L[1], 0.0, 2 * L[0], at_y, L[2])
    walls += _wall_segments(1, L[0], 0.0, L[1] - h, at_x[at_x < L[1]], L[2])
    walls += _wall_segments(1, L[0], L[1] + h, 2 * L[1], at_x[at_x > L[1]], L[2])
    # Room index (x side + 2 y side) of each loop point, in the order first visited.
    quadrant = (loop[:, 0] > L[0]).astype(int) + 2 * (loop[:, 1] > L[1])
    order = [int(q) for q in dict.fromkeys(quadrant.tolist())]
    rooms = np.zeros((4, 2, 3))
    for i, q in enumerate(order):
        ix, iy = q % 2, q // 2
        rooms[i, 0] = [ix * (L[0] + h), iy * (L[1] + h), 0.0]
        rooms[i, 1] = [L[0] - h + ix * (L[0] + h), L[1] - h + iy * (L[1] + h), L[2]]
    return walls, rooms
