"""A widget's run ends with the widget: closing its dock stops the worker.

napari takes a closed dock's widget out of the window (its parent becomes
None) rather than deleting it, so nothing else would stop a run that has no
Stop button left on screen: it would train on, or write into a layer, unseen.
"""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QWidget


class _WhenRemoved(QObject):
    def __init__(self, widget: QWidget, callback: Callable[[], None]):
        super().__init__(widget)
        self._callback = callback
        widget.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.ParentChange and isinstance(watched, QWidget) and watched.parent() is None:
            self._callback()
        return False


def when_removed(widget: QWidget, callback: Callable[[], None]) -> None:
    """Call ``callback`` when ``widget`` is taken out of its window (its dock closed)."""
    _WhenRemoved(widget, callback)
