"""The library under the plugin imports neither napari nor Qt: scripts, the CLI and clusters run it headless."""

import pkgutil
import subprocess
import sys

import napari_unet.core

CHECK = """
import importlib, sys
for name in {modules!r}:
    importlib.import_module(name)
import napari_unet, napari_unet.cli
gui = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "vispy")
print(",".join(sorted(m for m in sys.modules if m.split(".")[0] in gui)))
"""


def test_core_and_cli_import_no_napari_and_no_qt():
    modules = [f"napari_unet.core.{m.name}" for m in pkgutil.iter_modules(napari_unet.core.__path__)]
    assert "napari_unet.core.label_edit" in modules and "napari_unet.core.fallback" in modules
    out = subprocess.run(
        [sys.executable, "-c", CHECK.format(modules=modules)], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert out == ""
