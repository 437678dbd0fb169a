"""Progress for the eye: at most ten updates a second, whatever the pace of the work.

A step of work can take a few milliseconds (a tile of a small model). Drawing a
progress bar for each one keeps the main thread busy: a ``QProgressBar`` whose
text changes repaints at once, inside napari's window, and a run that updates it
for every tile held the viewer up for seconds.
"""

from __future__ import annotations

import math
import time

PROGRESS_INTERVAL = 0.1  # seconds between progress updates shown


class Throttle:
    """Says whether an update is due: the first, the last, and then one every ``interval`` seconds."""

    def __init__(self, interval: float = PROGRESS_INTERVAL):
        self.interval = interval
        self._shown = -math.inf

    def due(self, last: bool = False) -> bool:
        now = time.perf_counter()
        if last or now - self._shown >= self.interval:
            self._shown = now
            return True
        return False
