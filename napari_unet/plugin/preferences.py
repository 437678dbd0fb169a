"""The plugin's preferences: the model the widgets start with, the device, the projects folder, the
dask scheduler that Correct & Train can train on.

They are declared in the manifest (``napari.yaml``, ``configurations: preferences``),
so napari (0.9 and later) lists them in its Preferences dialog under napari-unet
and saves them beside its own settings. A widget reads them when it opens and
writes a choice the user makes in it back (the model and device chosen last are
the ones the next widget starts with). With a napari that has no plugin settings,
the same values live in the widgets' ``QSettings``.
"""

from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import QSettings

PLUGIN = "napari-unet"
SECTION = "preferences"
# preference -> (its QSettings key where napari keeps no plugin settings, its default)
FALLBACK = {
    "model": ("predict/model", ""),
    "device": ("predict/device", "auto"),
    "projects_folder": ("train/projects_folder", ""),
    "scheduler": ("train/scheduler", ""),
}


class Preferences:
    """Read and write the preferences, in napari's plugin settings when napari has them."""

    def __init__(self, settings: QSettings):
        self._settings = settings
        self._napari = _napari_section()

    def get(self, name: str) -> str:
        key, default = FALLBACK[name]
        if self._napari is not None:
            return str(getattr(self._napari, name))
        return str(self._settings.value(key, default))

    def set(self, name: str, value: str) -> None:
        key, _ = FALLBACK[name]
        if self._napari is not None:
            setattr(self._napari, name, value)
        else:
            self._settings.setValue(key, value)

    def projects_folder(self) -> Path | None:
        """The folder under which Correct & Train keeps each image's project; None: the default."""
        text = self.get("projects_folder").strip()
        return Path(text).expanduser() if text else None


def _napari_section():
    """napari's settings of this plugin (``preferences``), or None where napari keeps no plugin settings."""
    try:
        from napari.settings import get_plugin_settings
    except ImportError:  # napari before 0.9
        return None
    try:
        return getattr(get_plugin_settings(PLUGIN), SECTION)
    except (KeyError, AttributeError):  # the manifest is not registered (napari-unet not installed as a plugin)
        return None
