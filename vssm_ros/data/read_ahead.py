# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""Reading a recording ahead of the SLAM loop, on a thread of its own.

Decoding a frame (a TUM folder's two PNGs: ~11 ms at 640x480; a bag's messages) is work the
replay's loop would otherwise do between steps. The decoders release the GIL (zlib, Pillow's
codecs), so on a second core it overlaps with tracking. The items come out in the same order,
and an error of the reader is raised where the loop reaches it, so a replay gives the same
result either way.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Iterable, Iterator, List, Optional, TypeVar

T = TypeVar('T')

_DONE = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def read_ahead(items: Iterable[T], depth: int = 2,
               ends_chunk: Optional[Callable[[T], bool]] = None) -> Iterator[T]:
    """``items``, produced by a background thread up to ``depth`` chunks ahead of the
    consumer: a chunk is the items up to one for which ``ends_chunk`` is true (a frame and
    the IMU samples before it), or one item when it is None.

    The reader stops when the consumer stops early (``close()``, a ``break``, an exception or
    garbage collection of the generator) once its next item is made. ``depth`` < 1: no
    thread, ``items`` as they are.
    """
    if depth < 1:
        yield from items
        return
    buf: 'queue.Queue' = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(x) -> bool:
        while not stop.is_set():
            try:
                buf.put(x, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        chunk: List[T] = []
        try:
            for x in items:
                chunk.append(x)
                if ends_chunk is None or ends_chunk(x):
                    if not put(chunk):
                        return
                    chunk = []
        except BaseException as err:   # noqa: BLE001 (handed to the consumer's thread)
            put(chunk)
            put(_Failure(err))
            return
        put(chunk)
        put(_DONE)

    thread = threading.Thread(target=produce, name='vssm-read-ahead', daemon=True)
    thread.start()
    try:
        while True:
            x = buf.get()
            if x is _DONE:
                return
            if isinstance(x, _Failure):
                raise x.error
            yield from x
    finally:
        stop.set()
        thread.join(timeout=5.0)
