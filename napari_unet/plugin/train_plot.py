"""The live plot of Correct & Train: the loss and the validation score against the step."""

from __future__ import annotations

from qtpy.QtCore import QPointF
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QWidget

from ..core.training import TrainUpdate


class TrainPlot(QWidget):
    """Loss (blue, scaled to its range) and validation score (orange, 0..1) against the step."""

    def __init__(self):
        super().__init__()
        self.setMinimumHeight(110)
        self.loss: list[tuple[int, float]] = []
        self.score: list[tuple[int, float]] = []

    def clear(self) -> None:
        self.loss, self.score = [], []
        self.update()

    def add(self, update: TrainUpdate) -> None:
        self.loss.append((update.step, update.loss))
        if update.score is not None:
            self.score.append((update.step, float(update.score.value)))

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt's name
        painter = QPainter(self)
        w, h = self.width(), self.height()
        painter.fillRect(0, 0, w, h, QColor(30, 30, 30))
        painter.setPen(QColor(200, 200, 200))
        painter.drawText(4, 12, "loss")
        painter.setPen(QColor(255, 160, 40))
        painter.drawText(40, 12, "validation")
        if not self.loss:
            return
        last = max(self.loss[-1][0], 1)
        values = [v for _, v in self.loss]
        lo, hi = min(values), max(values)
        span = hi - lo or 1.0

        def line(points, lo, span, color):
            polygon = QPolygonF([QPointF(4 + (w - 8) * s / last, h - 4 - (h - 20) * (v - lo) / span) for s, v in points])
            painter.setPen(QPen(color, 1.5))
            painter.drawPolyline(polygon)

        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        line(self.loss, lo, span, QColor(80, 160, 255))
        if self.score:
            line(self.score, 0.0, 1.0, QColor(255, 160, 40))
            painter.setPen(QColor(255, 160, 40))
            painter.drawText(w - 60, 12, f"{self.score[-1][1]:.3f}")
        painter.setPen(QColor(80, 160, 255))
        painter.drawText(w - 120, 12, f"{self.loss[-1][1]:.3f}")
