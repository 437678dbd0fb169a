"""Importing torch's optimizer machinery once a session, in a worker, when Correct & Train opens.

The first training step then neither waits for those imports nor stalls the viewer. The state is the
process's (one warm-up a session), as the imports are.
"""

from __future__ import annotations

import atexit
import threading

from napari.qt.threading import create_worker
from qtpy.QtCore import QThreadPool

from ..core.devices import cpu_cores, torch_threads
from ..core.training.trainer import warm_up
from .workers import start_worker


_warm_up = {"started": False, "done": False}
WARM_UP_WAIT = 60.0  # seconds an exiting interpreter waits for the warm-up worker


def warmed_up() -> bool:
    """Whether torch's optimizer machinery is imported (see :func:`~napari_unet.core.training.trainer.warm_up`)."""
    return _warm_up["done"]


_warmed = threading.Event()


def _warm_up_on_threads() -> None:
    try:
        with torch_threads(max(1, cpu_cores() - 1)):
            warm_up()
    finally:
        _warmed.set()


def _wait_for_warm_up() -> None:
    """At exit: until the warm-up has run, and its worker has left its thread (it still emits its
    signals after the function returns; an interpreter torn down under it crashes)."""
    _warmed.wait(WARM_UP_WAIT)
    QThreadPool.globalInstance().waitForDone(int(WARM_UP_WAIT * 1000))


def start_warm_up() -> None:
    """Once a session, in a worker: the first training step then neither waits for imports nor stalls the viewer.

    An interpreter that exits while the worker is still importing torch's modules aborts (SIGABRT):
    the exit waits for it (a few seconds at most, once a session).
    """
    if _warm_up["started"]:
        return
    _warm_up["started"] = True
    atexit.register(_wait_for_warm_up)
    worker = create_worker(_warm_up_on_threads, _start_thread=False)
    worker.finished.connect(lambda: _warm_up.update(done=True))
    start_worker(worker)
