"""The Predict widget on a real viewer: results equal the library's, Stop stops, edits are never lost silently.

Random small models stand in for a trained one: the widget must give exactly
what `napari_unet.segment` / `predict` give on the same data with the same options.
"""

import re
import time

import numpy as np
import pytest
import torch
from napari.layers import Image, Labels
from napari.utils.notifications import NotificationSeverity

from napari_unet import predict, segment
from napari_unet.core.predict.inference import Segmenter
from napari_unet.core.models.model import Model
from napari_unet.core.predict.predictor import NetworkPredictor

from ..conftest import small_model
from .conftest import messages, wait_for

pytestmark = pytest.mark.gui


def _widget(viewer):
    return viewer.window.add_plugin_dock_widget("napari-unet", "Predict")[1]


def _choose(widget, combo, data):
    index = combo.findData(data)
    assert index >= 0, f"{data!r} is not offered"
    combo.setCurrentIndex(index)


def test_predict_writes_the_labels_segment_gives_into_a_new_layer(viewer, qtbot, tmp_path, notifications):
    viewer.open_sample("napari-unet", "nuclei_he")
    model = small_model(4, in_channels=3)  # a seed whose random weights find objects on this image
    widget = _widget(viewer)
    assert widget.set_model(str(model.save(tmp_path / "rgb.safetensors")))
    assert widget.image_combo.currentText() == "nuclei (H&E)"
    widget.run()
    wait_for(qtbot, widget)
    layer = viewer.layers["nuclei (H&E) instances"]
    image = viewer.layers["nuclei (H&E)"].data
    assert isinstance(layer, Labels) and layer.data.shape == image.shape[:2] and layer.data.dtype == np.uint16
    expected = segment(image, model, device="cpu", tile=64, batch_size=1)  # "auto" tile: the model's 64
    np.testing.assert_array_equal(layer.data, expected)
    assert layer.data.max() >= 10
    assert layer.metadata["axes"] == "YX"
    assert not messages(notifications) and "Done" in widget.status.text()


def test_probabilities_go_into_an_image_layer_and_semantic_labels_into_labels(
    viewer, qtbot, rng, model, model_file, notifications
):
    image = rng.integers(0, 255, (90, 110), dtype=np.uint8)
    viewer.add_image(image, name="cells")
    widget = _widget(viewer)
    widget.set_model(str(model_file))
    _choose(widget, widget.output_combo, "probabilities")
    widget.run()
    wait_for(qtbot, widget)
    prob = viewer.layers["cells probabilities"]
    assert isinstance(prob, Image) and prob.data.shape == (3, 90, 110)
    np.testing.assert_allclose(prob.data, predict(image, model, tile=64, batch_size=1), atol=1e-6)

    _choose(widget, widget.output_combo, "semantic")
    widget.run()
    wait_for(qtbot, widget)
    semantic = viewer.layers["cells semantic"]
    np.testing.assert_array_equal(semantic.data, segment(image, model, output="semantic", tile=64, batch_size=1))
    assert not messages(notifications)


def test_the_object_size_field_rescales_like_the_library_and_auto_reports_its_estimate(
    viewer, qtbot, rng, tmp_path, notifications
):
    """A model that records its training size: a given size zooms the image, "auto" estimates it and says so."""
    base = small_model()
    model = Model(base.network, base.config.model_copy(update={"object_size": 20.0}))
    image = rng.integers(0, 255, (90, 110), dtype=np.uint8)
    viewer.add_image(image, name="cells")
    widget = _widget(viewer)
    widget.set_model(str(model.save(tmp_path / "sized.safetensors")))
    _choose(widget, widget.output_combo, "semantic")
    assert widget.size_box.object_size() == "auto"

    widget.size_box.set_object_size(40.0)
    widget.run()
    wait_for(qtbot, widget)
    given = viewer.layers["cells semantic"].data.copy()
    expected = segment(image, model, output="semantic", tile=64, batch_size=1, object_size=40.0)
    np.testing.assert_array_equal(given, expected)
    assert not np.array_equal(given, segment(image, model, output="semantic", tile=64, batch_size=1, object_size=None))
    assert "estimated" not in widget.status.text()

    widget.size_box.set_object_size("auto")
    widget.run()
    wait_for(qtbot, widget)
    seg = Segmenter(model, device="cpu", tile=64, batch_size=1)
    seg.prepare(image[None].astype(np.float32))
    np.testing.assert_array_equal(
        viewer.layers["cells semantic"].data, segment(image, seg, output="semantic", axes="YX")
    )
    assert f"Object size estimated at {seg.image_object_size:.0f} px" in widget.status.text()
    assert not messages(notifications)


def test_the_plane_on_screen_then_the_whole_stack(viewer, qtbot, model, model_file, answer):
    viewer.open_sample("napari-unet", "nuclei_stack")
    stack = viewer.layers["nuclei stack (5 planes)"].data
    widget = _widget(viewer)
    widget.set_model(str(model_file))
    _choose(widget, widget.output_combo, "semantic")
    assert widget.scope_combo.isEnabled()
    viewer.dims.set_point(0, 3)
    widget.run()
    wait_for(qtbot, widget)
    layer = viewer.layers["nuclei stack (5 planes) semantic"]
    expected = segment(stack, model, axes="TYX", output="semantic", tile=64, batch_size=1)
    np.testing.assert_array_equal(layer.data[3], expected[3])
    assert not layer.data[[0, 1, 2, 4]].any()

    # The model file changes (as after fine-tuning): re-running reads it again and updates the same layer,
    # and the plane predicted before is not a user's edit, so there is no question.
    retrained = small_model(1)
    retrained.save(model_file)
    assert widget.target_combo.currentText() == layer.name
    _choose(widget, widget.scope_combo, "stack")
    widget.run()
    wait_for(qtbot, widget)
    updated = segment(stack, retrained, axes="TYX", output="semantic", tile=64, batch_size=1)
    assert not np.array_equal(updated[3], expected[3])
    np.testing.assert_array_equal(layer.data, updated)
    assert answer.asked == [] and len(viewer.layers) == 3


def test_edits_are_only_overwritten_after_asking_and_can_be_undone(viewer, qtbot, rng, model_file, answer):
    viewer.add_image(rng.integers(0, 255, (64, 80), dtype=np.uint8), name="cells")
    widget = _widget(viewer)
    widget.set_model(str(model_file))
    _choose(widget, widget.output_combo, "semantic")
    widget.run()
    wait_for(qtbot, widget)
    layer = viewer.layers["cells semantic"]
    predicted = layer.data.copy()
    layer.brush_size = 5
    layer.paint((20, 30), 7)  # the user corrects something
    edited = layer.data.copy()
    assert (edited == 7).sum() > 0

    answer.value = False
    widget.run()
    assert len(answer.asked) == 1 and "not this widget's last prediction" in answer.asked[0]
    assert widget.worker is None
    np.testing.assert_array_equal(layer.data, edited)

    answer.value = True
    widget.run()
    wait_for(qtbot, widget)
    np.testing.assert_array_equal(layer.data, predicted)
    layer.undo()
    np.testing.assert_array_equal(layer.data, edited)


def test_an_existing_labels_layer_chosen_as_target_is_written_undoably(viewer, qtbot, rng, model, model_file, answer):
    image = rng.integers(0, 255, (64, 80), dtype=np.uint8)
    viewer.add_image(image, name="cells")
    mine = viewer.add_labels(np.zeros((64, 80), np.uint16), name="mine")
    widget = _widget(viewer)
    widget.set_model(str(model_file))
    _choose(widget, widget.output_combo, "semantic")
    widget.target_combo.setCurrentIndex(widget.target_combo.findText("mine"))
    widget.run()
    wait_for(qtbot, widget)
    assert answer.asked == [] and [layer.name for layer in viewer.layers] == ["cells", "mine"]
    np.testing.assert_array_equal(mine.data, segment(image, model, output="semantic", tile=64, batch_size=1))
    mine.undo()
    assert not mine.data.any()


@pytest.mark.perf
def test_stop_ends_a_running_prediction_within_a_second(viewer, qtbot, rng, model_file, notifications):
    viewer.add_image(rng.integers(0, 255, (2048, 2048), dtype=np.uint8), name="big")
    widget = _widget(viewer)
    widget.set_model(str(model_file))
    worker = widget.run()
    ended = []
    worker.aborted.connect(lambda: ended.append(time.perf_counter()))  # the worker's loop has stopped
    qtbot.waitUntil(lambda: widget._progress.n >= 3, timeout=30000)
    total = widget._progress.total
    start = time.perf_counter()
    widget.stop_button.click()
    wait_for(qtbot, widget, timeout=5)
    idle = time.perf_counter() - start
    print(f"Stop: prediction ended after {(ended[0] - start) * 1000:.0f} ms, widget idle after {idle * 1000:.0f} ms")
    assert ended[0] - start < 1.0
    # Then napari takes the empty new layer away (a few hundred ms of its own on a loaded 2-core machine).
    assert idle < 2.0
    assert widget._progress.n < total
    assert [layer.name for layer in viewer.layers] == ["big"]
    assert "Stopped" in widget.status.text() and widget.run_button.isEnabled()
    assert "prediction stopped" in " ".join(messages(notifications, NotificationSeverity.INFO))


def test_bad_inputs_give_notifications_that_say_what_was_expected(
    viewer, tmp_path, rng, model_file, notifications, monkeypatch
):
    monkeypatch.setattr("napari_unet.plugin.model_choice.builtin_model_path", lambda name: None)  # none shipped
    widget = _widget(viewer)
    widget.run()  # no image layer, no model
    viewer.add_image(rng.integers(0, 255, (40, 50), dtype=np.uint8), name="grey")
    widget.run()  # no model
    widget.set_model(str(small_model(in_channels=3).save(tmp_path / "rgb.safetensors")))
    widget.run()  # a 3-channel model on a grey image
    viewer.add_image(np.zeros((2, 2, 2, 2, 2, 8, 8), np.uint8), name="7d")
    widget.image_combo.setCurrentIndex(widget.image_combo.findText("7d"))
    widget.run()  # dimensions it cannot name
    (bad_file := tmp_path / "not_a_model.safetensors").write_bytes(b"nonsense")
    assert not widget.set_model(str(bad_file))
    errors = messages(notifications)
    assert len(errors) == 5, errors
    assert "Predict needs an image layer" in errors[0] and "found no image layer" in errors[0]
    assert "no model chosen" in errors[1] and "choose a model file" in errors[1]
    assert "the model expects 3 channel(s) but the image has 1" in errors[2]
    assert "'7d' has 7 dimensions" in errors[3] and "expected at most 5" in errors[3]
    assert "not a napari-unet model file" in errors[4]
    assert widget.worker is None and [layer.name for layer in viewer.layers] == ["grey", "7d"]


def test_running_out_of_memory_retries_with_smaller_tiles_and_says_so(
    viewer, qtbot, rng, model, model_file, monkeypatch, notifications
):
    original = NetworkPredictor.__call__

    def limited(self, batch):
        if batch.shape[-1] > 32:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
        return original(self, batch)

    monkeypatch.setattr(NetworkPredictor, "__call__", limited)
    image = rng.integers(0, 255, (100, 100), dtype=np.uint8)
    viewer.add_image(image, name="cells")
    widget = _widget(viewer)
    widget.set_model(str(model_file))
    _choose(widget, widget.output_combo, "semantic")
    widget.run()
    wait_for(qtbot, widget)
    warnings = messages(notifications, NotificationSeverity.WARNING)
    assert len(warnings) == 1, warnings
    found = re.fullmatch(r"out of memory on cpu with (\d+)-pixel tiles; retrying with (\d+)-pixel tiles", warnings[0])
    assert found and int(found[2]) <= 32 < int(found[1])
    expected = segment(image, model, output="semantic", tile=int(found[2]), batch_size=1)
    np.testing.assert_array_equal(viewer.layers["cells semantic"].data, expected)


def test_the_model_is_remembered_and_a_missing_shipped_model_is_explained(viewer, tmp_path, model_file, monkeypatch):
    monkeypatch.setattr("napari_unet.plugin.model_choice.builtin_model_path", lambda name: None)  # none shipped
    widget = _widget(viewer)
    assert widget.model_combo.currentData() == ""
    assert "no shipped model" in widget.status.text()
    monkeypatch.setattr(
        "napari_unet.plugin.model_choice.QFileDialog.getOpenFileName", lambda *a, **k: (str(model_file), "")
    )
    widget.model_combo.activated.emit(widget.model_combo.findText("Choose file..."))
    assert widget.model_combo.currentData() == str(model_file.resolve())

    from napari_unet.plugin.predict_widget import PredictWidget

    later = PredictWidget(viewer)  # a new session reads the same settings
    assert later.model_combo.currentData() == str(model_file.resolve())
    devices = {later.device_combo.itemText(i): later.device_combo.model().item(i).isEnabled() for i in range(4)}
    assert devices["auto"] and devices["cpu"] and devices["cuda"] == torch.cuda.is_available()
    later.deleteLater()


def test_another_tools_bioimageio_package_predicts_semantic_labels(viewer, qtbot, tmp_path, notifications):
    pytest.importorskip("bioimageio.spec", reason="the bioimageio extra is part of the test environment")
    from ..test_zoo_packages import _package

    package = _package(tmp_path / "zoo", "foreground")
    viewer.open_sample("napari-unet", "nuclei_fluorescence")
    widget = _widget(viewer)
    assert widget.output_combo.currentData() == "instances"
    assert widget.set_model(package)
    assert widget.output_combo.currentData() == "semantic" and "Semantic" in widget.status.text()
    widget.run()
    wait_for(qtbot, widget)
    layer = viewer.layers[f"{widget.image_combo.currentText()} semantic"]
    image = viewer.layers[widget.image_combo.currentText()].data
    expected = segment(image, package, device="cpu", tile=256, batch_size=1)  # the widget's CPU tile
    np.testing.assert_array_equal(layer.data, expected)
    assert 0 < np.mean(layer.data == 1) < 0.9 and not messages(notifications)
