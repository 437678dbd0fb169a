"""The library and the command line import no GUI: no napari, no Qt, no widget toolkit."""

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import napari_unet.core

GUI_PACKAGES = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt", "vispy")
ROOT = Path(__file__).resolve().parents[1]


def gui_packages_loaded_by(modules: list[str]) -> list[str]:
    """The GUI packages in ``sys.modules`` of a fresh interpreter that imported ``modules``."""
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({GUI_PACKAGES!r}))))\n"
        "print(sys.modules['napari_unet'].__file__)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    loaded, package_file = done.stdout.splitlines()[-2:]
    assert Path(package_file).resolve().parent == ROOT / "napari_unet", f"imported {package_file}, not this tree"
    return json.loads(loaded)


def core_modules() -> list[str]:
    return [info.name for info in pkgutil.walk_packages(napari_unet.core.__path__, "napari_unet.core.")]


def test_core_and_cli_import_no_gui_package():
    modules = ["napari_unet", *core_modules(), "napari_unet.cli"]
    assert {"napari_unet.core.tiling", "napari_unet.core.predictor", "napari_unet.core.model"} <= set(modules)
    assert gui_packages_loaded_by(modules) == []


def test_the_check_sees_a_gui_import():
    assert "napari" in gui_packages_loaded_by(["napari_unet", "napari"])
