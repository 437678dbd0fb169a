"""Starting the widgets' workers so that Qt keeps a thread of its own.

napari runs each worker on Qt's global thread pool, whose size is the number
of cores. Qt uses the same pool for its own short jobs, and the GUI thread
waits for them: converting an image (each frame of napari's activity spinner,
shown while a worker runs) is split over the pool. With every pool thread
running a worker (two at once on a 2-core machine: Predict beside Correct &
Train or Batch), the GUI thread waited for a worker to end: 12 to 19 s frozen.
So the pool is kept one thread larger than the workers in it.
"""

from __future__ import annotations

from qtpy.QtCore import QThreadPool


def start_worker(worker) -> None:
    """Start a napari worker (created with ``_start_thread=False``), leaving a pool thread free for Qt."""
    pool = QThreadPool.globalInstance()
    pool.setMaxThreadCount(max(pool.maxThreadCount(), pool.activeThreadCount() + 2))
    worker.start()
