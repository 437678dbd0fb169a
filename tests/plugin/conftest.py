"""Fixtures for the widget tests: a real napari viewer under a (virtual) display.

`make test` runs them under Xvfb with Mesa; without a display they are skipped.
"""

from __future__ import annotations

import os

import pytest
import torch
from napari import settings as napari_settings
from napari.utils.notifications import NotificationSeverity, notification_manager
from qtpy.QtCore import QSettings

from napari_unet.plugin import predict_widget, result_layer
from napari_unet.plugin.preferences import PLUGIN


def pytest_collection_modifyitems(items):
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return
    skip = pytest.mark.skip(reason="needs a display: run under xvfb-run (as `make test` does)")
    for item in items:
        if "tests/plugin/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def settings(tmp_path, monkeypatch) -> QSettings:
    """The widgets remember their choices in a file of this test, not the user's settings."""
    path = str(tmp_path / "settings.ini")
    monkeypatch.setattr(predict_widget, "default_settings", lambda: QSettings(path, QSettings.Format.IniFormat))
    return predict_widget.default_settings()


@pytest.fixture(autouse=True)
def preferences(tmp_path, monkeypatch):
    """napari's settings of the plugin (its Preferences) in a folder of this test, not the user's."""
    monkeypatch.setattr(napari_settings, "_PLUGIN_SETTINGS", {})
    return napari_settings.get_plugin_settings(PLUGIN, path_dir=tmp_path / "napari").preferences


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The tests' own reference predictions on one thread, as the widget's worker does on two cores.

    Two OpenMP threads on a loaded two-core machine can make each small forward pass 50x slower.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def notifications(monkeypatch) -> list:
    """The notifications napari shows during the test."""
    records: list = []
    monkeypatch.setattr(notification_manager, "records", records)
    return records


def messages(records, severity=NotificationSeverity.ERROR) -> list[str]:
    return [str(n.message) for n in records if n.severity == severity]


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture
def answer(monkeypatch):
    """Answer the widget's overwrite questions: set ``answer.value`` (True = yes); the questions asked are kept."""

    class Answer:
        value = False
        asked: list[str] = []

    def question(parent, title, text, *args):
        Answer.asked.append(text)
        buttons = result_layer.QMessageBox.StandardButton
        return buttons.Yes if Answer.value else buttons.No

    Answer.asked = []
    monkeypatch.setattr(result_layer.QMessageBox, "question", staticmethod(question))
    return Answer


def wait_for(qtbot, widget, timeout: float = 60.0) -> None:
    """Wait until the widget's run has finished."""
    qtbot.waitUntil(lambda: widget.worker is None, timeout=int(timeout * 1000))
