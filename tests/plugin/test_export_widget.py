"""Correct & Train's *Save version...* as a bioimage.io package: written in a worker, read back as the same model."""

import numpy as np
import pytest
from napari.utils.notifications import NotificationSeverity

from napari_unet import load_model, segment

from ..conftest import small_model
from .conftest import messages

pytestmark = pytest.mark.gui


def test_save_version_as_a_bioimageio_package(viewer, qtbot, tmp_path, notifications):
    image = (np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8)
    viewer.add_image(image, name="cells")
    widget = viewer.window.add_plugin_dock_widget("napari-unet", "Correct & Train")[1]
    model = small_model(4)
    assert widget.set_model(str(model.save(tmp_path / "start.safetensors")))
    widget._add_version("start: mine", widget.current_model())
    saved = widget.save_version(str(tmp_path / "mine.zip"))
    assert saved == tmp_path / "mine.zip"
    qtbot.waitUntil(lambda: widget.export_worker is None, timeout=120_000)
    assert not messages(notifications), messages(notifications)
    assert any("exported model version" in m for m in messages(notifications, NotificationSeverity.INFO))
    back = load_model(saved)
    assert back.config == model.config
    np.testing.assert_array_equal(segment(image, back, device="cpu"), segment(image, model, device="cpu"))
