"""What the Predict and Correct & Train widgets share about choosing a model.

Both list the shipped models and the model files used lately (one list, kept
in the settings under ``predict/recent_models``), and both load the chosen
model once per version of its file, so a file trained again is read again.
"""

from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import QSettings, Qt
from qtpy.QtWidgets import QComboBox

from ..core.model import BUILTIN_MODELS, Model, builtin_model_path, load_model

RECENT_MODELS = 5
RECENT_KEY = "predict/recent_models"


def recent_models(settings: QSettings) -> list[str]:
    """The model files used lately, newest first, those that still exist."""
    recent = settings.value(RECENT_KEY, []) or []
    if isinstance(recent, str):  # QSettings gives a lone string for a one-item list
        recent = [recent]
    return [p for p in recent if Path(p).is_file()]


def add_model_items(combo: QComboBox, settings: QSettings) -> None:
    """Add the shipped models that are installed (data: the name) and the recent files (data: the path)."""
    for name in BUILTIN_MODELS:
        if builtin_model_path(name) is not None:
            combo.addItem(f"{name} (shipped)", name)
    for path in recent_models(settings):
        combo.addItem(Path(path).name, path)
        combo.setItemData(combo.count() - 1, path, Qt.ItemDataRole.ToolTipRole)


def remember_model(settings: QSettings, path: str) -> str:
    """Put the model file ``path`` first among the recent ones; returns its resolved path."""
    path = str(Path(path).resolve())
    recent = [path] + [p for p in recent_models(settings) if p != path]
    settings.setValue(RECENT_KEY, recent[:RECENT_MODELS])
    return path


class ModelFiles:
    """Loads a shipped model (by name) or a model file, once per version of the file."""

    def __init__(self):
        self._loaded: dict[tuple, Model] = {}

    def load(self, choice: str) -> Model:
        path = builtin_model_path(choice) if choice in BUILTIN_MODELS else Path(choice)
        if path is None:
            raise FileNotFoundError(f"the shipped model {choice!r} is not installed; choose a model file")
        stat = Path(path).stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        if key not in self._loaded:
            self._loaded = {key: load_model(path)}  # one model at a time: the last one chosen
        return self._loaded[key]
