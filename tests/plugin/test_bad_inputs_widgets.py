"""The widgets on bad input: the same one-line message as the command line, and the layers as they were."""

import numpy as np
import pytest
import tifffile

from napari_unet.plugin.batch_widget import BatchWidget

from ..conftest import small_model
from .conftest import messages, wait_for

pytestmark = pytest.mark.gui


def _layers(viewer) -> list[tuple[str, str, bytes]]:
    return [(layer.name, type(layer).__name__, np.asarray(layer.data).tobytes()) for layer in viewer.layers]


def _one_line(records) -> str:
    (message,) = messages(records)
    assert "\n" not in message.strip(), message
    return message


def test_predict_on_an_image_with_nan_says_so_and_leaves_no_layer_behind(viewer, qtbot, tmp_path, notifications):
    image = np.ones((64, 64), np.float32)
    image[3, 4] = np.nan
    viewer.add_image(image, name="broken")
    before = _layers(viewer)
    widget = viewer.window.add_plugin_dock_widget("napari-unet", "Predict")[1]
    assert widget.set_model(str(small_model(4).save(tmp_path / "m.safetensors")))
    widget.run()
    wait_for(qtbot, widget)
    assert "NaN" in _one_line(notifications)
    assert _layers(viewer) == before


def test_correct_and_train_on_labels_without_objects_says_so_and_keeps_the_layers(
    viewer, qtbot, tmp_path, notifications
):
    viewer.add_image(np.random.default_rng(0).random((96, 96)).astype(np.float32), name="cells")
    viewer.add_labels(np.zeros((96, 96), np.uint16), name="corrected")
    before = _layers(viewer)
    widget = viewer.window.add_plugin_dock_widget("napari-unet", "Correct & Train")[1]
    assert widget.set_model(str(small_model(4).save(tmp_path / "m.safetensors")))
    widget.project_edit.setText(str(tmp_path / "project"))
    widget.reviewed_combo.setCurrentIndex(widget.reviewed_combo.findData("whole"))
    widget.unit_combo.setCurrentIndex(widget.unit_combo.findData("steps"))
    widget.length_spin.setValue(2)
    widget.train()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60000)
    assert "hold no objects" in _one_line(notifications)
    assert _layers(viewer) == before


def test_batch_on_a_truncated_file_names_it_and_keeps_the_layers(make_napari_viewer, qtbot, tmp_path, notifications):
    viewer = make_napari_viewer()
    widget = BatchWidget(viewer)
    viewer.window.add_dock_widget(widget)
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, np.arange(4 * 64 * 64, dtype=np.uint16).reshape(4, 64, 64), photometric="minisblack")
    path.write_bytes(path.read_bytes()[:5000])
    before = _layers(viewer)
    widget.inputs.setText(str(path))
    widget.output.setText(str(tmp_path / "out.tif"))
    widget.model.setText(str(small_model(4).save(tmp_path / "m.safetensors")))
    worker = widget.run()
    with qtbot.waitSignal(worker.finished, timeout=60000):
        pass
    assert "cut.tif" in widget.status.text() and "\n" not in widget.status.text()
    assert _layers(viewer) == before and not (tmp_path / "out.tif").exists()
