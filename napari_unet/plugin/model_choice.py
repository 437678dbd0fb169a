"""What the Predict and Correct & Train widgets share about choosing a model: :class:`ModelCombo`.

Both list the shipped models and the model files used lately (one list, kept
in the settings under ``predict/recent_models``), and both load the chosen
model once per version of its file, so a file trained again is read again.
"""

from __future__ import annotations

from pathlib import Path

from collections.abc import Callable

from napari.utils.notifications import show_error
from qtpy.QtCore import QSettings, Qt
from qtpy.QtWidgets import QComboBox, QFileDialog

from ..core.errors import NapariUNetError
from ..core.models.model import BUILTIN_MODELS, MODEL_SUFFIX, Model, builtin_model_path, load_model
from ..core.models.package import PACKAGE_SUFFIX
from .preferences import Preferences

RECENT_MODELS = 5
RECENT_KEY = "predict/recent_models"
CHOOSE_FILE = "\0choose"


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


class ModelCombo(QComboBox):
    """The model list: ``extra()`` items first (a widget's own, such as a trained version), the shipped
    models, the recent files, and *Choose file...*, which opens a file dialog.

    ``remember``: whether choosing a model makes it the one new widgets start with (the ``model``
    preference, :mod:`.preferences`).
    """

    def __init__(self, settings: QSettings, *, where: str, extra: Callable[[], list[tuple[str, str]]] = list,
                 remember: bool = True):
        super().__init__()
        self.settings, self.where, self.extra, self.remember = settings, where, extra, remember
        self.preferences = Preferences(settings)
        preferred = self.preferences.get("model")
        if remember and preferred not in BUILTIN_MODELS and Path(preferred).is_file():  # set in napari's Preferences
            self.preferences.set("model", remember_model(settings, preferred))
        self.files = ModelFiles()
        self.activated.connect(self._on_activated)
        self.fill()

    def fill(self, wanted: str | None = None) -> None:
        """List the models again, keeping ``wanted`` (by default the current choice) selected."""
        current = self.currentData()
        if wanted is None:
            wanted = current if current not in (None, CHOOSE_FILE) else self.preferences.get("model")
        self.clear()
        for label, data in self.extra():
            self.addItem(label, data)
        add_model_items(self, self.settings)
        if self.count() == 0:
            self.addItem("no model: choose a file", "")
        self.addItem("Choose file...", CHOOSE_FILE)
        index = self.findData(wanted)
        self.setCurrentIndex(index if index >= 0 else 0)

    @property
    def offers_a_model(self) -> bool:
        """Whether any model is listed (else only a hint to choose a file)."""
        return self.findData("") < 0

    def _on_activated(self, index: int) -> None:
        if self.itemData(index) != CHOOSE_FILE:
            if self.remember:
                self.preferences.set("model", self.itemData(index))
            return
        recent = recent_models(self.settings)
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose a napari-unet model", str(Path(recent[0]).parent) if recent else "",
            f"napari-unet models (*{MODEL_SUFFIX} *{PACKAGE_SUFFIX});;All files (*)",
        )
        if path:
            self.set_model(path)
        else:
            self.fill()

    def set_model(self, path: str) -> bool:
        """Choose a model file (or a shipped model's name) and remember it; False, with a notification, if unusable."""
        try:
            self.load(path)
        except (NapariUNetError, OSError) as error:
            show_error(f"cannot use model {path}: {error}")
            self.fill()
            return False
        if path not in BUILTIN_MODELS:
            path = remember_model(self.settings, path)
        if self.remember:
            self.preferences.set("model", path)
        self.fill(path)
        return True

    def load(self, choice: str | None = None) -> Model:
        """The model ``choice`` (by default the one selected), loaded once per version of its file."""
        choice = self.currentData() if choice is None else choice
        if not choice or choice == CHOOSE_FILE:
            raise NapariUNetError(
                f"no model chosen, and this installation has no shipped model ({', '.join(BUILTIN_MODELS)}); "
                f"choose a model file (.safetensors) under '{self.where}' with 'Choose file...'"
            )
        return self.files.load(choice)
