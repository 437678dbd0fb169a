"""Long work as generators: each ``yield`` reports progress and is a place to stop.

A generator function in core yields :class:`Progress` (or a richer update,
such as a :class:`Notice` for the user) and *returns* its result. :func:`run` drives one to the end for callers that
just want the result; napari's ``thread_worker`` drives the same generator in
a worker thread and can quit between yields.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` steps of ``stage`` are finished."""

    done: int
    total: int
    stage: str = ""

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


@dataclass(frozen=True)
class Notice:
    """Something the user should be told while the work goes on (e.g. a fallback to smaller tiles)."""

    message: str


def run(generator: Generator[Any, None, T], callback: Callable[[Any], None] | None = None) -> T:
    """Run ``generator`` to the end, passing each update to ``callback``; return its result."""
    while True:
        try:
            update = next(generator)
        except StopIteration as stop:
            return stop.value
        if callback is not None:
            callback(update)
