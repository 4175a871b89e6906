# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""TUM RGB-D folders: reading (rgb.txt / depth.txt association, 16-bit depth PNGs, ground
truth) and writing (so synthetic sequences can be replayed as TUM folders too).

Layout (Sturm et al., IROS 2012): ``rgb/*.png`` 8-bit colour, ``depth/*.png`` uint16 with
``depth_scale`` units per metre (5000) and 0 = no data, ``rgb.txt`` / ``depth.txt`` with
``timestamp filename`` lines, ``groundtruth.txt`` with ``timestamp tx ty tz qx qy qz qw`` (the
pose of the colour camera's optical centre in the motion-capture frame). The body is the camera
here: T_body_cam is the identity. An optional ``intrinsics.yaml`` (a ``camera:`` section as in
the config) carries the intrinsics, so folders written by ``write_tum_folder`` need no config.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Tuple, Union

import numpy as np

from vssm_ros.config import CameraConfig, load_config
from vssm_ros.data.atomic import atomic_dir, atomic_open, atomic_write_text
from vssm_ros.data.messages import depth_to_metres
from vssm_ros.data.sync import associate
from vssm_ros.data.transforms import matrix_to_pose, pose_to_matrix
from vssm_ros.errors import ConfigError, MessageError, SourceError
from vssm_ros.types import Frame, ImuSample, PoseSample

PathLike = Union[str, os.PathLike]

TUM_DEPTH_SCALE = 5000.0
"""Depth PNG units per metre in the TUM RGB-D benchmark."""
MAX_DIFF_NS = 20_000_000
"""Largest rgb/depth stamp difference accepted by the association (0.02 s, as associate.py)."""
INTRINSICS_FILE = 'intrinsics.yaml'


def seconds_to_ns(text: str) -> int:
    """Exact nanoseconds of a decimal seconds string ('1341841873.273798'), no float rounding."""
    s = text.strip()
    neg = s.startswith('-')
    if neg or s.startswith('+'):
        s = s[1:]
    whole, _, frac = s.partition('.')
    if not (whole or frac) or not (whole or '0').isdigit() or (frac and not frac.isdigit()):
        raise ValueError(f'not a time stamp in seconds: {text!r}')
    ns = int(whole or '0') * 1_000_000_000 + int((frac + '000000000')[:9])
    if len(frac) > 9 and int(frac[9]) >= 5:
        ns += 1
    return -ns if neg else ns


def ns_to_seconds_text(ns: int) -> str:
    """Exact decimal seconds of a stamp in nanoseconds (9 decimals)."""
    ns = int(ns)
    sign = '-' if ns < 0 else ''
    ns = abs(ns)
    return f'{sign}{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}'


def read_tum_list(path: PathLike) -> Tuple[List[int], List[str]]:
    """Stamps (ns) and file names of an rgb.txt / depth.txt (``#`` lines are comments).

    Raises:
        SourceError: missing file or a malformed line (the message names file and line).
    """
    path = Path(path)
    stamps, names = [], []
    for lineno, cols in _read_rows(path):
        if len(cols) < 2:
            raise SourceError(f'{path}:{lineno}: expected "timestamp filename", got '
                              f'{" ".join(cols)!r}')
        try:
            stamps.append(seconds_to_ns(cols[0]))
        except ValueError as err:
            raise SourceError(f'{path}:{lineno}: {err}') from err
        names.append(cols[1])
    return stamps, names


def read_tum_trajectory(path: PathLike) -> List[PoseSample]:
    """Poses of a ``timestamp tx ty tz qx qy qz qw`` file (groundtruth.txt), as PoseSamples.

    Raises:
        SourceError: missing file or a malformed line.
    """
    path = Path(path)
    out = []
    for lineno, cols in _read_rows(path):
        if len(cols) < 8:
            raise SourceError(f'{path}:{lineno}: expected 8 columns (timestamp tx ty tz qx qy qz '
                              f'qw), got {len(cols)}')
        try:
            stamp = seconds_to_ns(cols[0])
            v = np.array([float(c) for c in cols[1:8]])
            T = pose_to_matrix(v[:3], v[3:7])
        except (ValueError, MessageError) as err:
            raise SourceError(f'{path}:{lineno}: {err}') from err
        out.append(PoseSample(stamp, T))
    return out


def _read_rows(path: Path) -> Iterator[Tuple[int, List[str]]]:
    try:
        text = path.read_text(encoding='utf-8')
    except FileNotFoundError as err:
        raise SourceError(f'TUM file not found: {path}') from err
    except (OSError, UnicodeDecodeError) as err:
        raise SourceError(f'cannot read {path}: {err}') from err
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if line and not line.startswith('#'):
            yield lineno, line.replace(',', ' ').split()


def read_png(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as img:
            img.load()
            return _pil_to_array(img)
    except FileNotFoundError as err:
        raise SourceError(f'image not found: {path}') from err
    except (OSError, UnidentifiedImageError) as err:
        raise SourceError(f'cannot read image {path}: {err}') from err


def _pil_to_array(img) -> np.ndarray:
    if img.mode in ('I;16', 'I;16B', 'I;16L'):
        return np.asarray(img).astype(np.uint16)
    if img.mode == 'I':
        return np.asarray(img).astype(np.uint16)
    if img.mode != 'RGB':
        img = img.convert('RGB')
    return np.asarray(img, dtype=np.uint8)


def read_rgbd_pngs(rgb_path: Path, depth_path: Path, depth_scale: float, min_depth: float,
                   max_depth: float) -> Tuple[np.ndarray, np.ndarray]:
    """A colour PNG as RGB uint8 and a 16-bit depth PNG (``depth_scale`` units per metre, 0
    invalid) in metres, NaN where invalid.

    Shape: (H, W, 3), (H, W).

    Raises:
        SourceError: an unreadable PNG.
        MessageError: a depth PNG that is not 16-bit, or colour and depth of different sizes.
    """
    rgb = read_png(rgb_path)
    raw = read_png(depth_path)
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise MessageError(f'{depth_path}: expected a 16-bit single-channel depth PNG, got '
                           f'{raw.dtype} with shape {raw.shape}')
    if rgb.shape[:2] != raw.shape:
        raise MessageError(f'rgb {rgb_path.name} is {rgb.shape[1]}x{rgb.shape[0]} but depth '
                           f'{depth_path.name} is {raw.shape[1]}x{raw.shape[0]}; they must have '
                           'the same size (no resizing)')
    return rgb, depth_to_metres(raw, depth_scale, min_depth, max_depth)


def depth_to_png(depth: np.ndarray, depth_scale: float) -> np.ndarray:
    """Metres (NaN invalid) as 16-bit depth PNG pixels: ``round(depth * depth_scale)``, 0 where
    invalid or beyond 65535 units.

    Shape: (H, W) -> (H, W), uint16.
    """
    d = np.rint(np.asarray(depth, dtype=np.float64) * depth_scale)
    ok = np.isfinite(d) & (d > 0) & (d <= 65535)
    return np.where(ok, d, 0).astype(np.uint16)


@dataclass(frozen=True)
class TumEntry:
    """One associated rgb/depth pair."""

    stamp_ns: int
    """Colour image stamp (the frame's stamp)."""
    depth_stamp_ns: int
    """Depth image stamp."""
    rgb_path: Path
    depth_path: Path


class TumFolder:
    """A TUM RGB-D folder: the associated frames, intrinsics and ground truth.

    Args:
        path: the folder (with rgb.txt and depth.txt).
        camera: intrinsics and depth conventions from the config; the folder's
            intrinsics.yaml, when present, takes precedence (it describes this data).

    Attributes:
        entries: the associated frames in stamp order.
        K: intrinsics. Shape: (3, 3).
        depth_scale: PNG units per metre.
        intrinsics_source: where K came from (for ``info``).
        skipped: rgb images without a depth partner within 0.02 s.
    """

    def __init__(self, path: PathLike, camera: Optional[CameraConfig] = None) -> None:
        self.path = Path(path)
        camera = camera or CameraConfig()
        if not (self.path / 'rgb.txt').is_file():
            raise SourceError(f'{self.path} is not a TUM RGB-D folder: no rgb.txt')
        rgb_stamps, rgb_names = read_tum_list(self.path / 'rgb.txt')
        d_stamps, d_names = read_tum_list(self.path / 'depth.txt')
        pairs = associate(rgb_stamps, d_stamps, MAX_DIFF_NS)
        self.entries: List[TumEntry] = [
            TumEntry(rgb_stamps[i], d_stamps[j], self.path / rgb_names[i], self.path / d_names[j])
            for i, j in pairs]
        self.entries.sort(key=lambda e: e.stamp_ns)
        self.skipped = len(rgb_stamps) - len(self.entries)
        self.min_depth, self.max_depth = camera.min_depth, camera.max_depth

        own = self.path / INTRINSICS_FILE
        if own.is_file():
            cam = load_config([own], CameraConfig, section='camera')
            if not cam.has_intrinsics:
                raise ConfigError(f'{own}: the camera section needs fx, fy, cx, cy > 0')
            self.intrinsics_source = str(own)
            scale = cam.depth_scale or camera.depth_scale or TUM_DEPTH_SCALE
        elif camera.has_intrinsics:
            cam = camera
            self.intrinsics_source = 'config camera.fx/fy/cx/cy'
            scale = camera.depth_scale or TUM_DEPTH_SCALE
        else:
            raise ConfigError(
                f'TUM folder {self.path} has no {INTRINSICS_FILE} and the config sets no camera '
                'intrinsics: set camera.fx, camera.fy, camera.cx, camera.cy (for TUM freiburg3 '
                'use config/tum.yaml: fx 535.4, fy 539.2, cx 320.1, cy 247.6)')
        self.K = np.array([[cam.fx, 0.0, cam.cx], [0.0, cam.fy, cam.cy], [0.0, 0.0, 1.0]])
        self.depth_scale = float(scale)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def has_ground_truth(self) -> bool:
        return (self.path / 'groundtruth.txt').is_file()

    def load(self, entry: TumEntry) -> Frame:
        """Read one frame's images.

        Raises:
            MessageError: rgb and depth of different sizes, or a depth PNG that is not 16-bit.
        """
        rgb, depth = read_rgbd_pngs(entry.rgb_path, entry.depth_path, self.depth_scale,
                                    self.min_depth, self.max_depth)
        return Frame(entry.stamp_ns, rgb, depth, self.K.copy(), np.eye(4))

    def frames(self) -> Iterator[Frame]:
        """All frames in stamp order, read one at a time."""
        for e in self.entries:
            yield self.load(e)

    def ground_truth(self) -> List[PoseSample]:
        """The ground truth (body = camera optical centre), empty without groundtruth.txt."""
        if not self.has_ground_truth:
            return []
        return read_tum_trajectory(self.path / 'groundtruth.txt')


def write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format='PNG')
    with atomic_open(path, 'wb') as fh:
        fh.write(buf.getvalue())


def write_tum_folder(path: PathLike, items: Iterable[Union[Frame, ImuSample, PoseSample]],
                     depth_scale: float = TUM_DEPTH_SCALE, overwrite: bool = False
                     ) -> Dict[str, int]:
    """Write Frames and PoseSamples (ground truth) as a TUM RGB-D folder, plus intrinsics.yaml.

    Depth is stored as uint16 ``round(depth * depth_scale)`` (0 where NaN or beyond 65535
    units). Stamps are written with 9 decimals so they read back exactly. ImuSamples are not
    part of the format and are counted as 'skipped_imu'. The folder is assembled under a
    temporary name and renamed when complete.

    Returns:
        Counts: 'frames', 'ground_truth', 'skipped_imu'.

    Raises:
        SourceError: the folder exists (and not ``overwrite``).
        MessageError: frames with different intrinsics or rgb/depth sizes.
    """
    path = Path(path)
    if not depth_scale > 0:
        raise MessageError(f'depth_scale must be > 0, got {depth_scale}')
    if path.exists() and not overwrite:
        raise SourceError(f'{path} exists already; not overwriting it')
    counts = {'frames': 0, 'ground_truth': 0, 'skipped_imu': 0}
    with atomic_dir(path) as tmp:
        (tmp / 'rgb').mkdir()
        (tmp / 'depth').mkdir()
        rgb_lines = ['# color images', '# timestamp filename']
        depth_lines = ['# depth maps', '# timestamp filename']
        gt_lines = ['# ground truth trajectory', '# timestamp tx ty tz qx qy qz qw']
        K = None
        for item in items:
            if isinstance(item, Frame):
                name = ns_to_seconds_text(item.stamp_ns)
                if K is None:
                    K = np.asarray(item.K, dtype=np.float64)
                elif not np.allclose(item.K, K):
                    raise MessageError(f'frame at {name} s has intrinsics {item.K.tolist()} '
                                       f'different from that of the first frame, {K.tolist()}')
                if item.rgb.shape[:2] != item.depth.shape[:2]:
                    raise MessageError(f'frame at {name} s: rgb {item.rgb.shape[:2]} and depth '
                                       f'{item.depth.shape[:2]} differ in size')
                write_png(tmp / 'rgb' / f'{name}.png', np.asarray(item.rgb, dtype=np.uint8))
                write_png(tmp / 'depth' / f'{name}.png', depth_to_png(item.depth, depth_scale))
                rgb_lines.append(f'{name} rgb/{name}.png')
                depth_lines.append(f'{name} depth/{name}.png')
                counts['frames'] += 1
            elif isinstance(item, PoseSample):
                xyz, q = matrix_to_pose(item.T_world_body)
                nums = ' '.join(repr(float(v)) for v in (*xyz, *q))
                gt_lines.append(f'{ns_to_seconds_text(item.stamp_ns)} {nums}')
                counts['ground_truth'] += 1
            elif isinstance(item, ImuSample):
                counts['skipped_imu'] += 1
            else:
                raise MessageError(f'cannot write a {type(item).__name__} to a TUM folder')
        atomic_write_text(tmp / 'rgb.txt', '\n'.join(rgb_lines) + '\n')
        atomic_write_text(tmp / 'depth.txt', '\n'.join(depth_lines) + '\n')
        if counts['ground_truth']:
            atomic_write_text(tmp / 'groundtruth.txt', '\n'.join(gt_lines) + '\n')
        if K is not None:
            atomic_write_text(tmp / INTRINSICS_FILE, (
                '# Pinhole intrinsics of this folder (read by vssm_ros.data.tum)\n'
                'camera:\n'
                f'  fx: {float(K[0, 0])!r}\n  fy: {float(K[1, 1])!r}\n'
                f'  cx: {float(K[0, 2])!r}\n  cy: {float(K[1, 2])!r}\n'
                f'  depth_scale: {float(depth_scale)!r}\n'))
    return counts
