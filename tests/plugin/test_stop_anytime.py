"""Stop lands at the next forward pass, whatever the run is doing: counted, not timed.

Predict and Batch are stopped at each kind of moment a run goes through: while
the object size is estimated (several crops through the model), while the
tiles of a plane run, and between the planes of a stack. A forward pass is the
longest piece of work that cannot be interrupted (one batch of tiles: well under
a second on a CPU), so "Stop -> Run enabled again within 2 s" holds when at most
one pass starts after Stop. Each pass is counted where the network is called.

Stop is pressed on the main thread, as a user does, while the worker waits at
the update that marks the moment (:func:`stop_at`): how soon the main thread
gets to that update then cannot move Stop to a later moment than the test names.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import tifffile
from qtpy.QtCore import Qt

from napari_unet.core.predict import predictor
from napari_unet.core.models.config import ModelConfig
from napari_unet.core.models.model import Model
from napari_unet.core.progress import Progress
from napari_unet.core.predict.sizing import ESTIMATING
from napari_unet.plugin.batch_widget import BatchWidget
from napari_unet.plugin.predict_job import FinishedPlane
from napari_unet.plugin.predict_widget import PredictWidget

from .conftest import wait_for

pytestmark = pytest.mark.gui


def _estimating(update) -> bool:
    return isinstance(update, Progress) and ESTIMATING.stage in update.stage


def _tiles(update) -> bool:
    return isinstance(update, Progress) and ESTIMATING.stage not in update.stage and update.done >= 2


def _plane_done(update) -> bool:
    """Predict hands over each finished plane; Batch's progress passes the first of the three planes."""
    return isinstance(update, FinishedPlane) or (
        isinstance(update, Progress) and ESTIMATING.stage not in update.stage and update.fraction > 0.34
    )


MOMENTS = {"estimating the object size": _estimating, "running tiles": _tiles, "between planes": _plane_done}


class Passes:
    """Counts the network's forward passes, and those that start after :meth:`stop_now`."""

    def __init__(self, monkeypatch):
        self.total = 0
        self.at_stop: int | None = None
        self._lock = threading.Lock()
        call = predictor.NetworkPredictor.__call__

        def counted(this, batch):
            with self._lock:
                self.total += 1
            return call(this, batch)

        monkeypatch.setattr(predictor.NetworkPredictor, "__call__", counted)

    def stop_now(self, stop) -> None:
        if self.at_stop is None:
            with self._lock:
                self.at_stop = self.total
            stop()

    @property
    def after_stop(self) -> int:
        assert self.at_stop is not None, "the moment to stop never came"
        return self.total - self.at_stop


def stop_at(worker, moment: str, passes: Passes, stop) -> None:
    """Press ``stop`` on the main thread at the first update of ``moment``; the worker waits there until it is pressed.

    The main thread's slot is connected first, so its call is queued before the
    worker's own (direct) slot starts to wait for it.
    """
    pressed = threading.Event()

    def on_main_thread(update) -> None:
        if not pressed.is_set() and MOMENTS[moment](update):
            passes.stop_now(stop)
            pressed.set()

    def in_worker(update) -> None:
        if not pressed.is_set() and MOMENTS[moment](update):
            pressed.wait(60)

    worker.yielded.connect(on_main_thread)
    worker.yielded.connect(in_worker, Qt.ConnectionType.DirectConnection)


def _sized_model(tmp_path) -> str:
    """A small model that records the object size it was trained at, so that "auto" estimates it."""
    model = Model.from_config(ModelConfig(network=dict(depth=2, width=4), tile=64, overlap=16, object_size=12.0))
    return str(model.save(tmp_path / "sized.safetensors"))


def _image(rng, planes: int) -> np.ndarray:
    """Bright discs on a dark background, so that the estimate finds objects and measures several crops."""
    yy, xx = np.mgrid[:600, :600]
    discs = (((yy % 40) - 20) ** 2 + ((xx % 40) - 20) ** 2 < 100).astype(np.float32)
    return np.stack([(discs * 3000 + rng.integers(0, 300, discs.shape)).astype(np.uint16) for _ in range(planes)])


@pytest.mark.parametrize("moment", MOMENTS)
def test_predict_stops_at_the_next_forward_pass_at_any_moment(viewer, qtbot, tmp_path, rng, moment, monkeypatch):
    viewer.add_image(_image(rng, 3), name="stack")
    widget = PredictWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.set_model(_sized_model(tmp_path))
    widget.scope_combo.setCurrentIndex(widget.scope_combo.findData("stack"))
    passes = Passes(monkeypatch)
    worker = widget.run()
    assert worker is not None, widget.status.text()
    stop_at(worker, moment, passes, widget.stop)
    wait_for(qtbot, widget, timeout=120)
    assert passes.after_stop <= 1, f"{passes.after_stop} forward passes started after Stop ({moment})"
    assert widget.run_button.isEnabled() and "Stopped" in widget.status.text()


@pytest.mark.parametrize("moment", MOMENTS)
def test_batch_stops_at_the_next_forward_pass_at_any_moment(make_napari_viewer, qtbot, tmp_path, rng, moment, monkeypatch):
    viewer = make_napari_viewer()
    widget = BatchWidget(viewer)
    viewer.window.add_dock_widget(widget)
    tifffile.imwrite(tmp_path / "stack.tif", _image(rng, 3), photometric="minisblack")
    widget.inputs.setText(str(tmp_path / "stack.tif"))
    widget.output.setText(str(tmp_path / "stack_labels.tif"))
    widget.model.setText(_sized_model(tmp_path))
    widget.device.setCurrentText("cpu")
    passes = Passes(monkeypatch)
    worker = widget.run()
    assert worker is not None, widget.status.text()
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        stop_at(worker, moment, passes, widget.stop)
    assert passes.after_stop <= 1, f"{passes.after_stop} forward passes started after Stop ({moment})"
    assert widget.run_button.isEnabled() and widget.status.text().startswith("stopped")
    assert not (tmp_path / "stack_labels.tif").exists()
