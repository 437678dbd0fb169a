"""The Batch widget on a real viewer: files and layers in, lazy Labels layers out, Stop, and bad choices."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import tifffile
import zarr

import napari_unet
from napari_unet.cli import main
from napari_unet.core.io.labels_store import PartialStore, partial_path
from napari_unet.core.models.model import Model
from napari_unet.plugin import batch_widget
from napari_unet.plugin.batch_widget import BatchWidget

pytestmark = pytest.mark.gui


@pytest.fixture
def widget(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = BatchWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return widget


def _run_to_the_end(widget, qtbot):
    worker = widget.run()
    assert worker is not None, widget.status.text()
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    return worker


def _stack_file(widget, path, data, output, model_file):
    """Write ``data`` as a TIFF stack at ``path`` and choose it, ``output`` and ``model_file`` in the widget."""
    tifffile.imwrite(path, data, photometric="minisblack")
    widget.inputs.setText(str(path))
    widget.output.setText(str(output))
    widget.model.setText(str(model_file))


def test_the_widget_is_offered_by_the_plugin_manifest():
    import npe2

    manifest = npe2.PluginManifest.from_distribution("napari-unet")
    assert "Batch" in [w.display_name for w in manifest.contributions.widgets]


def test_a_stack_file_is_segmented_into_zarr_and_opened_lazily_as_labels(widget, qtbot, tmp_path, rng, model_file):
    stack = tmp_path / "s.tif"
    _stack_file(widget, stack, rng.integers(0, 4000, (3, 40, 48), dtype=np.uint16), tmp_path / "s.zarr", model_file)
    widget.device.setCurrentText("cpu")
    widget.min_size.setValue(1)
    _run_to_the_end(widget, qtbot)
    layer = widget.viewer.layers["s"]
    assert layer._type_string == "labels"
    assert isinstance(layer.data, zarr.Array) and layer.data.shape == (3, 40, 48)
    cli = tmp_path / "cli.zarr"
    # The model's own overlap, 16 pixels, is a quarter of its 64-pixel tile.
    assert main(["segment", str(stack), "-o", str(cli), "--model", str(model_file), "--min-size", "1"]) == 0
    labels = zarr.open_array(cli / "0")[...]
    assert labels.max() > 0
    np.testing.assert_array_equal(layer.data[...], labels)
    assert widget.status.text().startswith("done")


def test_an_image_layer_is_segmented_into_a_tiff(widget, qtbot, tmp_path, rng, model, model_file):
    data = rng.integers(0, 4000, (2, 36, 40), dtype=np.uint16)
    widget.viewer.add_image(data, name="cells")
    widget.source.setCurrentText("cells")
    widget.output.setText(str(tmp_path / "cells_labels.tif"))
    widget.model.setText(str(model_file))
    widget.stitch_z.setValue(0.5)
    widget.min_size.setValue(1)
    _run_to_the_end(widget, qtbot)
    expected = napari_unet.segment(data, model, axes="ZYX", stitch_z=0.5, min_size=1)
    assert expected.max() > 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "cells_labels.tif"), expected)
    assert np.asarray(widget.viewer.layers["cells_labels"].data[...]).shape == (2, 36, 40)


def test_the_object_size_field_reaches_the_model_as_the_cli_option_does(widget, qtbot, tmp_path, rng, model):
    sized = Model(model.network, model.config.model_copy(update={"object_size": 20.0}))
    model_file = sized.save(tmp_path / "sized.safetensors")
    stack = tmp_path / "s.tif"
    _stack_file(widget, stack, rng.integers(0, 4000, (2, 40, 48), dtype=np.uint16), tmp_path / "widget.tif", model_file)
    widget.labels.setCurrentText("semantic")
    widget.object_size.set_object_size(40.0)
    _run_to_the_end(widget, qtbot)
    cli = tmp_path / "cli.tif"
    args = ["segment", str(stack), "--model", str(model_file), "--labels", "semantic"]
    assert main([*args, "-o", str(cli), "--object-size", "40"]) == 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "widget.tif"), tifffile.imread(cli))
    assert main([*args, "-o", str(tmp_path / "native.tif"), "--object-size", "20"]) == 0
    assert not np.array_equal(tifffile.imread(cli), tifffile.imread(tmp_path / "native.tif"))


def test_stop_ends_the_run_and_a_rerun_resumes_the_zarr_store(widget, qtbot, tmp_path, rng, model_file, monkeypatch):
    out = tmp_path / "long.zarr"
    _stack_file(widget, tmp_path / "long.tif", rng.integers(0, 4000, (30, 64, 64), dtype=np.uint16), out, model_file)
    # Planes of 64 x 64 px take milliseconds: the run could end before a Stop pressed on a progress update reaches
    # it. So the run is held once a tenth of it is done, until Stop is pressed.
    reached = threading.Event()
    segment_files = batch_widget.iter_segment_files

    def held(*args, **kwargs):
        for update in segment_files(*args, **kwargs):
            yield update
            if getattr(update, "fraction", 0.0) >= 0.1 and not reached.is_set():
                reached.set()
                assert widget._stop.wait(60), "Stop was not pressed"

    monkeypatch.setattr(batch_widget, "iter_segment_files", held)
    worker = widget.run()
    qtbot.waitUntil(reached.is_set, timeout=120_000)
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        widget.stop()
    assert widget.status.text().startswith("stopped")
    assert not out.exists()
    pending = PartialStore(partial_path(out)).pending()
    assert 0 < len(pending) < 30
    _run_to_the_end(widget, qtbot)
    assert out.exists() and widget.viewer.layers["long"].data.shape == (30, 64, 64)


def test_a_bad_choice_is_shown_and_starts_nothing(widget, tmp_path, rng, model_file):
    stack = tmp_path / "s.tif"
    tifffile.imwrite(stack, rng.integers(0, 4000, (40, 48), dtype=np.uint16))
    widget.inputs.setText(str(stack))
    widget.output.setText(str(tmp_path / "missing" / "s.zarr"))
    assert widget.run() is None
    assert "does not exist" in widget.status.text()
    assert widget.run_button.isEnabled()


def test_a_file_finished_as_stop_arrives_is_reported_and_no_other_starts(tmp_path, rng, model_file, monkeypatch):
    """Stop pressed during the step that finishes a file: that output is complete, so it is shown, not dropped."""
    import threading

    from napari_unet.core.batch.jobs import FileDone, Job
    from napari_unet.plugin import batch_widget

    stop = threading.Event()
    real = batch_widget.iter_segment_files

    def stop_as_the_first_file_finishes(*args, **kwargs):
        gen = real(*args, **kwargs)
        for update in gen:
            if isinstance(update, FileDone):
                stop.set()
            yield update

    monkeypatch.setattr(batch_widget, "iter_segment_files", stop_as_the_first_file_finishes)
    jobs = []
    for name in ("a", "b"):
        tifffile.imwrite(tmp_path / f"{name}.tif", rng.integers(0, 4000, (2, 40, 48), dtype=np.uint16))
        jobs.append(Job(tmp_path / f"{name}.tif", tmp_path / f"{name}_labels.tif"))
    segment = batch_widget._segment(jobs, str(model_file), {"device": "cpu"}, batch_widget.BatchOptions(), stop)
    updates = []
    with pytest.raises(StopIteration) as done:
        while True:
            updates.append(next(segment))
    assert done.value.value is None  # stopped
    finished = [u for u in updates if isinstance(u, FileDone)]
    assert [u.job.output.name for u in finished] == ["a_labels.tif"] and finished[0].error is None
    opened = [u for u in updates if isinstance(u, batch_widget.Opened)]
    assert [u.job.output.name for u in opened] == ["a_labels.tif"] and opened[0].data.shape == (2, 40, 48)
    assert not (tmp_path / "b_labels.tif").exists()
