"""A terminal progress bar for core generators (silent when stderr is not a terminal)."""

from __future__ import annotations

import sys

from tqdm import tqdm

from ..core.progress import Notice, Progress


class ProgressBar:
    """Context manager whose :meth:`update` takes the updates of core generators.

    :class:`~napari_unet.core.progress.Progress` moves the bar;
    :class:`~napari_unet.core.progress.Notice` is printed on stderr (terminal or not).
    """

    def __init__(self, desc: str = "", unit: str = "tile"):
        self._bar = tqdm(desc=desc, unit=unit, disable=not sys.stderr.isatty(), leave=False)

    def update(self, progress: Progress | Notice) -> None:
        if isinstance(progress, Notice):
            tqdm.write(f"napari-unet: {progress.message}", file=sys.stderr)
            return
        if self._bar.total != progress.total:
            self._bar.total = progress.total
        self._bar.n = progress.done
        self._bar.refresh()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        self._bar.close()
