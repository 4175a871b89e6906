# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
"""When the node saves its map by itself (``node.autosave_period_s``), and what came of it.

``LiveSlam``'s worker thread calls ``save_if_due`` between frames: when the period has passed
and frames were processed since the last autosave, the session saves its map (atomically,
under the engine lock, as ``~/save_map`` does) to its own file beside ``node.map_path``. The
policy (skip an unchanged map, count failures, retry a period later, never stop) is the
timer and the counts here, readable and tested on their own.
"""

from __future__ import annotations

import collections
import os
import time
from pathlib import Path
from typing import Any, Callable, ContextManager, Counter, Dict

from vssm_ros.errors import VssmError

Log = Callable[[str, str], None]


def autosave_path(map_path: str) -> str:
    """The autosave's file beside ``node.map_path``: ``vssm_map.safetensors`` ->
    ``vssm_map.autosave.safetensors``. A separate file, so that a run in slam mode never
    replaces a map saved on purpose (yesterday's warehouse); after a crash, load it with
    ``node.map_path`` set to it."""
    path = Path(os.path.expanduser(map_path))
    return str(path.with_name(f'{path.stem}.autosave{path.suffix or ".safetensors"}'))


class Autosave:
    """The autosave timer of one node.

    Args:
        period_s: seconds between saves; <= 0: off.
        localization: localisation mode (the map does not change: off).
        log: called with (level, text).
        clock: monotonic seconds.
    """

    def __init__(self, period_s: float, localization: bool, log: Log,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.period_s = float(period_s)
        self.enabled = self.period_s > 0 and not localization
        self.log, self.clock = log, clock
        self.counts: Counter[str] = collections.Counter()
        self.last_error = ''
        self._next = clock() + self.period_s
        self._frames_saved = 0   # frames processed at the last save
        if self.period_s > 0 and localization:
            log('info', 'map autosave off in localization mode (the map does not change)')

    def due(self) -> bool:
        """Whether a save is due now."""
        return self.enabled and self.clock() >= self._next

    def changed(self, frames_processed: int) -> bool:
        """Whether frames were processed since the last save (else there is nothing new to
        save, and the period starts again)."""
        if frames_processed != self._frames_saved:
            return True
        self._next = self.clock() + self.period_s
        return False

    def save_if_due(self, lock: ContextManager, session: Any, map_path: str) -> None:
        """Save ``session``'s map (a ``SlamSession``) to ``autosave_path(map_path)`` when due
        and frames were processed since the last autosave; under ``lock`` from the check on,
        so that a ~/reset in between leaves nothing to save rather than an error."""
        if not self.due():
            return
        with lock:
            frames = session.counts['frames_processed']
            if session.engine is None or not self.changed(frames):
                return
            try:
                ok, text = True, session.save_map(autosave_path(map_path))
            except (VssmError, OSError) as err:
                ok, text = False, str(err)
        self.done(ok, text, frames)

    def done(self, ok: bool, text: str, frames_processed: int) -> None:
        """Report an autosave: counted and logged; a failure is retried a period later."""
        self._next = self.clock() + self.period_s
        if ok:
            self.counts['autosaves'] += 1
            self._frames_saved = frames_processed
            self.log('info', f'autosave: {text}')
            return
        self.counts['autosave_failures'] += 1
        self.last_error = text
        self.log('warn', f'autosave failed ({self.counts["autosave_failures"]} so far), next '
                 f'try in {self.period_s:g} s: {text}')

    def stats(self) -> Dict[str, Any]:
        """For the diagnostics: the counts, and the last failure's reason when there was one."""
        out: Dict[str, Any] = {'autosaves': self.counts['autosaves'],
                               'autosave_failures': self.counts['autosave_failures']}
        if self.last_error:
            out['autosave_last_error'] = self.last_error
        return out
