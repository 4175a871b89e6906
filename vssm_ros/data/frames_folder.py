# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Folders of PNG frames with nanosecond timestamp files, as the Blackbird dataset ships its
rendered cameras: reading (colour and depth paired by stamp) and writing.

Layout of one camera folder (``Camera_Left_RGB``, ``Camera_Left_Depth``, ...)::

    nSecTimestamps.txt    one stamp per line, integer nanoseconds, strictly increasing
    images/*.png          the frames (or the PNGs directly beside nSecTimestamps.txt)

Line k of ``nSecTimestamps.txt`` is the stamp of the k-th PNG in file-name order (numbers in
names compare as numbers, so ``2.png`` < ``10.png``): Blackbird names its depth PNGs by their
stamps, and RGB frames extracted from its ``lossless.mov`` with ffmpeg are numbered in video
order (``%06d.png``). Colour PNGs are 8-bit (grey or RGB(A), converted to RGB); depth PNGs are
16-bit, ``depth_scale`` units per metre, 0 invalid.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Tuple, Union

import numpy as np

from vssm_ros.config import CameraConfig, FramesFolderConfig
from vssm_ros.data.atomic import atomic_dir, atomic_write_text
from vssm_ros.data.sync import associate
from vssm_ros.data.tum import depth_to_png, read_rgbd_pngs, write_png
from vssm_ros.errors import MessageError, SourceError
from vssm_ros.types import Frame

PathLike = Union[str, os.PathLike]

TIMESTAMPS_FILE = 'nSecTimestamps.txt'
"""Per-camera timestamp file (Blackbird's name)."""
IMAGES_DIR = 'images'
"""Subfolder holding a camera's PNGs (where Blackbird's downloader unpacks lossless.tar)."""
DEFAULT_DEPTH_SCALE = 1000.0
"""Depth PNG units per metre when camera.depth_scale is 0 (millimetres)."""


def read_timestamps(path: PathLike) -> np.ndarray:
    """The stamps of a ``nSecTimestamps.txt``: one integer (ns) per line; blank lines and lines
    starting with '#' are skipped.

    Shape: (N,), int64.

    Raises:
        SourceError: missing file, a line that is not a non-negative integer, or stamps that do
            not increase strictly (file and line named).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding='utf-8')
    except FileNotFoundError:
        raise SourceError(f'timestamps file not found: {path} (each camera folder needs '
                          f'{TIMESTAMPS_FILE}: one stamp in nanoseconds per frame, in frame '
                          'order)') from None
    except (OSError, UnicodeDecodeError) as err:
        raise SourceError(f'cannot read {path}: {err}') from err
    stamps: List[int] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        if not line.isdigit():
            raise SourceError(f'{path}:{lineno}: expected a stamp in integer nanoseconds, got '
                              f'{line!r}')
        stamp = int(line)
        if stamps and stamp <= stamps[-1]:
            raise SourceError(f'{path}:{lineno}: stamp {stamp} is not after the previous one '
                              f'({stamps[-1]}); stamps must increase strictly, in frame order')
        stamps.append(stamp)
    return np.asarray(stamps, dtype=np.int64)


def _natural_key(name: str) -> Tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r'(\d+)', name))


def frame_files(folder: PathLike) -> List[Path]:
    """The PNGs of a camera folder in frame order: those in ``images/`` if it exists, else those
    beside the timestamps file; sorted by name, numbers compared as numbers."""
    folder = Path(folder)
    where = folder / IMAGES_DIR if (folder / IMAGES_DIR).is_dir() else folder
    files = [p for p in where.iterdir() if p.suffix.lower() == '.png' and p.is_file()]
    return sorted(files, key=lambda p: _natural_key(p.name))


@dataclass(frozen=True)
class CameraFrames:
    """One camera folder: a stamp for each PNG."""

    folder: Path
    """The camera folder."""
    stamps_ns: np.ndarray
    """Stamps (ns) in frame order. Shape: (N,), int64."""
    files: Tuple[Path, ...]
    """The PNGs in frame order."""

    @classmethod
    def open(cls, folder: PathLike, role: str) -> 'CameraFrames':
        """Read a camera folder's timestamps and list its PNGs.

        Raises:
            SourceError: missing folder or timestamps file, bad stamps, no PNGs, or a count of
                stamps different from the count of PNGs.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise SourceError(f'{role} frames folder not found: {folder}')
        stamps = read_timestamps(folder / TIMESTAMPS_FILE)
        files = frame_files(folder)
        if not files:
            raise SourceError(f'no PNG frames in {folder} (nor in its {IMAGES_DIR}/ subfolder)')
        if len(files) != len(stamps):
            raise SourceError(f'{folder}: {len(stamps)} stamps in {TIMESTAMPS_FILE} but '
                              f'{len(files)} PNG frames; they must correspond one to one')
        return cls(folder, stamps, tuple(files))

    def __len__(self) -> int:
        return len(self.files)


class FramesFolder:
    """The colour and depth frames of a folder, paired by stamp.

    Args:
        path: the folder holding the two camera folders.
        cfg: the camera folder names.
        slop_s: largest stamp difference (seconds) of a colour/depth pair.

    Attributes:
        rgb, depth: the camera folders.
        pairs: (colour index, depth index) of each frame, in stamp order.
        unpaired: colour and depth frames without a partner within ``slop_s``.
    """

    def __init__(self, path: PathLike, cfg: FramesFolderConfig, slop_s: float) -> None:
        self.path = Path(path)
        self.rgb = CameraFrames.open(self.path / cfg.rgb_dir, 'colour')
        self.depth = CameraFrames.open(self.path / cfg.depth_dir, 'depth')
        self.pairs = associate(self.rgb.stamps_ns, self.depth.stamps_ns,
                               int(round(slop_s * 1e9)))
        self.unpaired = {'rgb': len(self.rgb) - len(self.pairs),
                         'depth': len(self.depth) - len(self.pairs)}

    def __len__(self) -> int:
        return len(self.pairs)

    def stamp(self, index: int) -> int:
        """Stamp (ns) of frame ``index``: its colour image's."""
        return int(self.rgb.stamps_ns[self.pairs[index][0]])

    def image_size(self) -> Tuple[int, int]:
        """(width, height) of the first colour frame (read from its header only)."""
        from PIL import Image, UnidentifiedImageError
        path = self.rgb.files[self.pairs[0][0]] if self.pairs else self.rgb.files[0]
        try:
            with Image.open(path) as img:
                return int(img.size[0]), int(img.size[1])
        except (OSError, UnidentifiedImageError) as err:
            raise SourceError(f'cannot read image {path}: {err}') from err

    def load(self, index: int, K: np.ndarray, T_body_cam: np.ndarray,
             camera: CameraConfig) -> Frame:
        """Read frame ``index``: colour as RGB uint8, depth in metres (NaN invalid).

        Shape: K (3, 3), T_body_cam (4, 4).

        Raises:
            SourceError: an unreadable PNG.
            MessageError: a depth PNG that is not 16-bit, or colour and depth of different sizes.
        """
        i, j = self.pairs[index]
        rgb, depth = read_rgbd_pngs(self.rgb.files[i], self.depth.files[j],
                                    camera.depth_scale or DEFAULT_DEPTH_SCALE, camera.min_depth,
                                    camera.max_depth)
        return Frame(self.stamp(index), rgb, depth, np.array(K, dtype=np.float64),
                     np.array(T_body_cam, dtype=np.float64))


def write_frames_folder(path: PathLike, frames: Iterable[Frame],
                        cfg: FramesFolderConfig = FramesFolderConfig(),
                        depth_scale: float = DEFAULT_DEPTH_SCALE,
                        overwrite: bool = False) -> Dict[str, int]:
    """Write Frames as a frames folder that ``FramesFolder`` reads back: colour PNGs numbered
    in order (``000000.png``, as ffmpeg extracts a video), depth PNGs named by their stamps
    (as Blackbird's), both in ``images/`` with a ``nSecTimestamps.txt``. Depth is stored as
    uint16 ``round(depth * depth_scale)``, 0 where NaN or beyond 65535 units. The folder is
    assembled under a temporary name and renamed when complete.

    Returns:
        Counts: 'frames'.

    Raises:
        SourceError: the folder exists (and not ``overwrite``).
        MessageError: colour and depth of different sizes.
    """
    path = Path(path)
    if not depth_scale > 0:
        raise MessageError(f'depth_scale must be > 0, got {depth_scale}')
    if path.exists() and not overwrite:
        raise SourceError(f'{path} exists already; not overwriting it')
    n = 0
    with atomic_dir(path) as tmp:
        rgb_dir, depth_dir = tmp / cfg.rgb_dir / IMAGES_DIR, tmp / cfg.depth_dir / IMAGES_DIR
        rgb_dir.mkdir(parents=True)
        depth_dir.mkdir(parents=True)
        stamps: List[str] = []
        for frame in frames:
            if frame.rgb.shape[:2] != frame.depth.shape[:2]:
                raise MessageError(f'frame at {frame.stamp_ns} ns: rgb {frame.rgb.shape[:2]} and '
                                   f'depth {frame.depth.shape[:2]} differ in size')
            write_png(rgb_dir / f'{n:06d}.png', np.asarray(frame.rgb, dtype=np.uint8))
            write_png(depth_dir / f'{int(frame.stamp_ns)}.png',
                      depth_to_png(frame.depth, depth_scale))
            stamps.append(str(int(frame.stamp_ns)))
            n += 1
        text = '\n'.join(stamps) + '\n'
        atomic_write_text(tmp / cfg.rgb_dir / TIMESTAMPS_FILE, text)
        atomic_write_text(tmp / cfg.depth_dir / TIMESTAMPS_FILE, text)
    return {'frames': n}
