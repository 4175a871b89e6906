# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Atomic file writes: a reader never sees a half-written file, a crash never corrupts one.

A file is written to a temporary file beside it, flushed to disk (``fsync``) and renamed over
it (``os.replace``, atomic on POSIX file systems), then the folder is flushed too so that the
rename itself survives a power loss. A process killed at any moment (SIGKILL, a crash, power
lost) leaves the previous file or the new one, never a mix.

The temporary file of ``path`` has the fixed name ``.<name>.tmp`` and is locked (``flock``)
while it is written: a writer killed mid-write leaves at most that one file, which the next
write of the same path takes over (it is never a pile of temporary files the size of a map),
and two writers of the same path wait for each other instead of mixing their bytes. Where
the file system has no locks, each write uses a temporary file of its own (``mkstemp``), and a
killed writer's is left behind.

Files written into an ``atomic_dir`` while it is filled skip the folder flush; the whole tree
is flushed once before it is renamed into place (a folder of thousands of frames would
otherwise pay a folder flush per frame).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import IO, Iterator, Set, Tuple, Union

try:
    import fcntl
except ImportError:   # not POSIX: no flock, a unique temporary file per write
    fcntl = None

PathLike = Union[str, os.PathLike]

_NOFOLLOW = getattr(os, 'O_NOFOLLOW', 0)   # a planted link is never written through
_filling: Set[str] = set()   # the temporary trees of the atomic_dirs being filled
_filling_lock = threading.Lock()


def temp_path(path: PathLike) -> Path:
    """The temporary file ``atomic_open`` writes ``path`` through (where locks work)."""
    path = Path(path)
    return path.parent / f'.{path.name}.tmp'


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = 'w', **kwargs) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on clean exit fsync it, rename it over ``path``
    and fsync the folder.

    On an exception the temporary file is removed and ``path`` is left as it was.

    Raises:
        IsADirectoryError: ``path`` is a directory (before anything is written).
        OSError: the folder cannot be created or written.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, 'is a directory, not a file', str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _open_temp(path)
    try:
        fh = os.fdopen(fd, mode, **kwargs)
    except BaseException:
        _discard(tmp)
        os.close(fd)
        raise
    try:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())
        # Renamed while still locked: a writer waiting for the lock then finds the name gone
        # and starts a temporary file of its own.
        os.replace(tmp, path)
    except BaseException:
        _discard(tmp)   # before the lock goes with the file: a waiting writer may take it
        with contextlib.suppress(OSError):
            fh.close()
        raise
    fh.close()
    if not _in_filling_dir(path):
        _fsync_dir(path.parent)


def _in_filling_dir(path: Path) -> bool:
    with _filling_lock:
        if not _filling:
            return False
        folders = {str(p) for p in Path(os.path.abspath(path)).parents}
        return not _filling.isdisjoint(folders)


def _discard(tmp: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)


def _open_temp(path: Path) -> Tuple[int, Path]:
    """An empty temporary file for ``path``, locked by this open file: (fd, its name)."""
    if fcntl is None:
        return _unique_temp(path)
    tmp = temp_path(path)
    while True:
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:   # a file system without locks
            os.close(fd)
            return _unique_temp(path)
        try:
            # The writer we waited for may have renamed this file into place (or a failed
            # one removed it): then it is not ours to truncate.
            same = os.path.samestat(os.fstat(fd), os.stat(tmp, follow_symlinks=False))
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)   # a killed writer's leftover: taken over
            return fd, tmp
        os.close(fd)


def _unique_temp(path: Path) -> Tuple[int, Path]:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    # mkstemp creates 0600; give the file the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return fd, Path(tmp)


def _fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename in it) to disk, where the platform can."""
    if os.name == 'nt':   # folders cannot be opened there; NTFS journals renames
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:   # some file systems refuse fsync on a folder (EINVAL): nothing to do
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, 'wb') as fh:
        fh.write(data)


def atomic_write_text(path: PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, 'w', encoding='utf-8') as fh:
        fh.write(text)


@contextlib.contextmanager
def atomic_dir(path: PathLike) -> Iterator[Path]:
    """A temporary directory beside ``path`` to fill; on clean exit it replaces ``path`` (an
    existing directory there is removed only then), on an exception it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp'))
    key = os.path.abspath(tmp)
    with _filling_lock:
        _filling.add(key)
    try:
        yield tmp
        for folder, _, _ in os.walk(tmp):   # the entries of every folder of the tree
            _fsync_dir(Path(folder))
        if path.exists():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.old'))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        with _filling_lock:
            _filling.discard(key)
        shutil.rmtree(tmp, ignore_errors=True)
