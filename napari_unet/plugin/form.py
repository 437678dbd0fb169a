"""The few layout pieces every dock widget of the plugin is made of.

Each widget is a form of labelled choices, a row of buttons (the action and
its Stop), and a word-wrapped status line below; these helpers build them
the same way everywhere, so the docks look and read alike.
"""

from __future__ import annotations

from qtpy.QtWidgets import QComboBox, QFormLayout, QHBoxLayout, QLabel, QLayout, QPushButton, QVBoxLayout, QWidget


def message_label() -> QLabel:
    """An empty, word-wrapped label for status messages and verdicts."""
    label = QLabel("")
    label.setWordWrap(True)
    return label


def action_buttons(text: str) -> tuple[QPushButton, QPushButton]:
    """The action button and its Stop button, which starts disabled."""
    stop = QPushButton("Stop")
    stop.setEnabled(False)
    return QPushButton(text), stop


def row(*items: QWidget | QLayout) -> QHBoxLayout:
    """Widgets (or layouts) side by side."""
    layout = QHBoxLayout()
    for item in items:
        _add(layout, item)
    return layout


def form(*rows: tuple[str, QWidget | QLayout] | QLayout) -> QFormLayout:
    """A form of ``(label, field)`` rows; a bare layout spans the whole row."""
    layout = QFormLayout()
    for entry in rows:
        if isinstance(entry, tuple):
            layout.addRow(*entry)
        else:
            layout.addRow(entry)
    return layout


def column(parent: QWidget, *items: QWidget | QLayout, stretch: bool = False) -> QVBoxLayout:
    """Lay ``items`` out top to bottom in ``parent``, with space left at the bottom if ``stretch``."""
    layout = QVBoxLayout(parent)
    for item in items:
        _add(layout, item)
    if stretch:
        layout.addStretch()
    return layout


def _add(layout: QHBoxLayout | QVBoxLayout, item: QWidget | QLayout) -> None:
    if isinstance(item, QLayout):
        layout.addLayout(item)
    else:
        layout.addWidget(item)


def scope_combo() -> QComboBox:
    """Which planes: the one on screen (data ``plane``) or the whole stack (``stack``)."""
    combo = QComboBox()
    combo.addItem("Plane on screen", "plane")
    combo.addItem("Whole stack", "stack")
    return combo
