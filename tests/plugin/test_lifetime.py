"""Runs end with their widget: a closed dock or a deleted target layer stops the worker; exiting never aborts."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tifffile

from ..conftest import dsb_path, small_model

pytestmark = pytest.mark.gui

FLUO = "0a7d30b252359a10fd298b638b90cb9ada3acced4e0c0e5a3692013f432ee4e9"


def _real(size=128):
    image = tifffile.imread(dsb_path("images", FLUO))[:size, :size]
    labels = tifffile.imread(dsb_path("labels", FLUO))[:size, :size].astype(np.uint16)
    return image, labels


def test_closing_the_dock_of_correct_and_train_stops_its_training(viewer, qtbot, tmp_path):
    image, labels = _real()
    viewer.add_image(image, name="cells")
    viewer.add_labels(labels, name="corrected")
    dock, widget = viewer.window.add_plugin_dock_widget("napari-unet", "Correct & Train")
    assert widget.set_model(str(small_model(4).save(tmp_path / "start.safetensors")))
    widget.extra_settings = dict(patch=64, batch_size=2, val_every=1000)
    widget.project_edit.setText(str(tmp_path / "project"))
    widget.reviewed_combo.setCurrentIndex(widget.reviewed_combo.findData("whole"))
    widget.unit_combo.setCurrentIndex(widget.unit_combo.findData("steps"))
    widget.length_spin.setValue(100000)
    results = []
    worker = widget.train()
    worker.returned.connect(results.append)
    qtbot.waitUntil(lambda: bool(widget.plot.loss), timeout=60000)  # training has started
    viewer.window.remove_dock_widget(dock)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60000)
    (result,) = results
    assert result.stopped and result.steps < 100000


def test_closing_the_dock_of_predict_stops_it_and_so_does_deleting_its_layer(viewer, qtbot):
    image = np.tile(_real(256)[0], (4, 4))  # 1024 x 1024: many tiles
    viewer.add_image(np.stack([image] * 6), name="stack", metadata={"axes": "ZYX"})
    dock, widget = viewer.window.add_plugin_dock_widget("napari-unet", "Predict")
    widget.scope_combo.setCurrentIndex(widget.scope_combo.findData("stack"))
    widget.run()
    target = widget._job.target
    qtbot.waitUntil(lambda: widget._progress is not None and widget._progress.n > 0, timeout=60000)
    viewer.layers.remove(target)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60000)
    assert "deleted" in widget.status.text()
    widget.run()
    qtbot.waitUntil(lambda: widget._progress is not None and widget._progress.n > 0, timeout=60000)
    viewer.window.remove_dock_widget(dock)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60000)
    assert widget.status.text().startswith("Stopped after"), widget.status.text()


@pytest.mark.parametrize("delay_ms", [0, 300, 1000])
def test_closing_the_viewer_soon_after_opening_correct_and_train_exits_cleanly(delay_ms):
    script = textwrap.dedent(
        f"""
        import time
        import napari
        from qtpy.QtWidgets import QApplication
        viewer = napari.Viewer()
        viewer.window.add_plugin_dock_widget("napari-unet", "Correct & Train")
        end = time.perf_counter() + {delay_ms} / 1000
        while time.perf_counter() < end:
            QApplication.processEvents()
        viewer.close()
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("name", ["Predict", "Correct & Train", "Batch", "Label tools"])
def test_a_closed_widget_is_collected(viewer, qtbot, name):
    """Nothing (the viewer's or the layers' events, a registry) keeps a closed widget alive."""
    import gc
    import weakref

    viewer.add_image(np.zeros((32, 32), np.uint8), name="cells")
    viewer.add_labels(np.zeros((32, 32), np.uint16), name="corrected")
    dock, widget = viewer.window.add_plugin_dock_widget("napari-unet", name)
    gone = weakref.ref(widget)
    viewer.window.remove_dock_widget(dock)
    del dock, widget
    viewer.add_labels(np.zeros((32, 32), np.uint16), name="after")  # events the widget followed still fire
    for _ in range(3):
        qtbot.wait(50)
        gc.collect()
    assert gone() is None, [type(r).__name__ for r in gc.get_referrers(gone())]
