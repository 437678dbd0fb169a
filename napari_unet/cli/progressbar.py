"""A terminal progress bar for core generators (silent when stderr is not a terminal)."""

from __future__ import annotations

import sys

from tqdm import tqdm

from ..core.progress import Progress


class ProgressBar:
    """Context manager whose :meth:`update` takes :class:`~napari_unet.core.progress.Progress`."""

    def __init__(self, desc: str = "", unit: str = "tile"):
        self._bar = tqdm(desc=desc, unit=unit, disable=not sys.stderr.isatty(), leave=False)

    def update(self, progress: Progress) -> None:
        if self._bar.total != progress.total:
            self._bar.total = progress.total
        self._bar.n = progress.done
        self._bar.refresh()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        self._bar.close()
