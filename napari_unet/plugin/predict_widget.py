"""Predict: segment the plane on screen, or the whole stack, into a Labels layer (or probabilities into an Image).

Only wiring: the work is :func:`napari_unet.core.predict.inference.iter_planes`, run in a
napari ``thread_worker`` on a copy of the image; each finished plane comes back
to the main thread and is written into the layer there. Stop quits the worker
at its next step (one tile: the widget predicts one tile per step, and on the
CPU caps the tile at :data:`CPU_TILE`, so a step stays well under a second).

Nothing the user drew is overwritten without asking: the widget remembers a
fingerprint of each plane it wrote, and a plane that holds labels and no longer
matches (painted, filled, erased, undone, or labels from elsewhere) is only
overwritten after a yes, as an undoable change.
"""

from __future__ import annotations

import contextlib
import time

import napari
import numpy as np
from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QSettings
from qtpy.QtWidgets import QCheckBox, QComboBox, QSpinBox, QWidget

from ..core.io.axes import CHANNEL_AXES, plane_layout
from ..core.devices import cpu_cores, resolve_device
from ..core.errors import NapariUNetError
from ..core.predict.inference import check_output
from ..core.models.model import Model
from ..core.progress import Notice, Progress
from .device_choice import DeviceCombo
from .form import action_buttons, column, form, message_label, row, scope_combo
from .layer_choice import fill_layer_combo, present, same_layer
from .lifetime import when_removed
from .layers import (
    fingerprint,
    image_array,
    image_axes,
    labels_shape,
    plane_at_cursor,
    predicted_fingerprint,
)
from .model_choice import ModelCombo
from .object_size_box import ObjectSizeBox
from .preferences import Preferences
from .predict_job import (
    Failure,
    FinishedPlane,
    Job,
    SizeEstimate,
    copy_for_worker,
    largest_label_elsewhere,
    predict_job,
)
from .result_layer import add_result_layer, ask, can_hold, overwrite_question, planes_to_approve, write_labels
from .throttle import Throttle
from .uncertainty_layers import show_uncertainty
from .workers import start_worker

OUTPUTS = {
    "instances": "Instances (an id per object)",
    "semantic": "Semantic (a class per pixel)",
    "probabilities": "Probabilities (Image layer)",
}
# Largest automatic tile on the CPU: a width-32, depth-4 U-Net takes ~0.5 s for a
# 256 x 256 tile on one core of the 2-core test machine, so Stop answers within a second.
CPU_TILE = 256
NEW_LAYER = "\0new"
UNCERTAINTY_TIP = (
    "Instance labels: also how sure the model is of each object (0 sure .. 1 doubtful), in the Labels layer's "
    "features (Label tools go to the least sure first), and a map of where it hesitates, as an Image layer"
)


def default_settings() -> QSettings:
    """Where the widget remembers its model between sessions."""
    return QSettings("napari-unet", "napari-unet")


class PredictWidget(QWidget):
    """Choose an image layer, a model and what to predict; Run, Stop.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose layers are read and written.
    settings : QSettings, optional
        Where the model choice is remembered (tests pass their own).
    """

    def __init__(self, viewer: napari.viewer.Viewer, settings: QSettings | None = None):
        super().__init__()
        self.viewer = viewer
        self.settings = settings if settings is not None else default_settings()
        self.worker = None
        self._job: Job | None = None
        self._progress = None
        self._throttle = Throttle()
        self._written: dict[tuple, int] = {}
        self._last_target: dict[tuple, object] = {}

        self.image_combo = QComboBox()
        self.model_combo = ModelCombo(self.settings, where="model")
        self.size_box = ObjectSizeBox()
        self.output_combo = QComboBox()
        for key, text in OUTPUTS.items():
            self.output_combo.addItem(text, key)
        self.uncertainty_box = QCheckBox("uncertainty")
        self.uncertainty_box.setToolTip(UNCERTAINTY_TIP)
        self.target_combo = QComboBox()
        self.scope_combo = scope_combo()
        self.device_combo = DeviceCombo(Preferences(self.settings))
        self.tile_spin = QSpinBox()
        self.tile_spin.setRange(0, 8192)
        self.tile_spin.setSingleStep(64)
        self.tile_spin.setSpecialValueText("auto")
        self.tile_spin.setToolTip(
            f"Largest tile side in pixels. auto: the model's own on a GPU, at most {CPU_TILE} on the CPU "
            "(short steps, so Stop is quick)."
        )
        self.run_button, self.stop_button = action_buttons("Run")
        self.status = message_label()
        column(
            self,
            form(
                ("image", self.image_combo),
                ("model", self.model_combo),
                ("object size", self.size_box),
                ("output", row(self.output_combo, self.uncertainty_box)),
                ("into", self.target_combo),
                ("planes", self.scope_combo),
                ("device", self.device_combo),
                ("tile", self.tile_spin),
            ),
            row(self.run_button, self.stop_button),
            self.status,
        )

        if not self.model_combo.offers_a_model:
            self.status.setText("This installation has no shipped model yet: choose a model file under 'model'.")
        self.refresh_choices()

        self.image_combo.currentIndexChanged.connect(lambda: self._refresh_targets(prefer_last=True))
        self.output_combo.currentIndexChanged.connect(lambda: self._refresh_targets(prefer_last=True))
        self.model_combo.currentIndexChanged.connect(self._match_output)
        self.run_button.clicked.connect(self.run)
        self.stop_button.clicked.connect(self.stop)
        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered, events.renamed):
            event.connect(self.refresh_choices)
        events.removed.connect(self._on_layer_removed)
        when_removed(self, self._on_closed)

    def _on_closed(self) -> None:
        """The dock was closed: a run in progress stops, since no Stop button is left on screen."""
        if self.worker is not None:
            self.stop()
            show_info("napari-unet: Predict was closed; its run was stopped")

    def _on_layer_removed(self, event=None) -> None:
        job = self._job
        if self.worker is not None and job is not None and not job.stop_reason and not self._present(job.target):
            job.stop_reason = f"the layer '{job.target.name}' it was writing into was deleted"
            self.stop()
            show_warning(f"napari-unet: '{job.target.name}' was deleted; the prediction into it was stopped")

    # ---- choices --------------------------------------------------------------------------------

    def refresh_choices(self, event=None) -> None:
        """List the viewer's image layers (and the layers a result can go into) again."""
        current = fill_layer_combo(self.image_combo, self.viewer, Image)
        self._refresh_targets(prefer_last=not same_layer(self.image_combo.currentData(), current))

    def _refresh_targets(self, *_, prefer_last: bool = False) -> None:
        image = self.image_combo.currentData()
        output = self.output_combo.currentData()
        current = self.target_combo.currentData()
        self.target_combo.clear()
        self.target_combo.addItem("new layer", NEW_LAYER)
        shape, stack = None, False
        if image is not None:
            try:
                axes = image_axes(image)
                shape = labels_shape(tuple(image_array(image).shape), axes)
                stack = len(shape) > 2
            except NapariUNetError:
                shape = None
        for layer in self.viewer.layers:
            if shape is not None and can_hold(layer, shape, output):
                self.target_combo.addItem(layer.name, layer)
        self.scope_combo.setEnabled(stack)
        if not stack:
            self.scope_combo.setCurrentIndex(0)
        ids = [None] + [self.target_combo.itemData(i).unique_id for i in range(1, self.target_combo.count())]
        remembered = self._last_target.get((image.unique_id, output)) if image is not None else None
        # After a run, or for another image or output, the layer last predicted into for them; else keep the choice.
        for wanted in (remembered, current) if prefer_last else (current,):
            if wanted not in (None, NEW_LAYER) and wanted.unique_id in ids:
                self.target_combo.setCurrentIndex(ids.index(wanted.unique_id))
                break

    def _present(self, layer) -> bool:
        return present(self.viewer, layer)

    def set_model(self, model: str) -> bool:
        """Choose a model file (or a shipped model's name) and remember it; False, with a notification, if unusable."""
        return self.model_combo.set_model(model)

    def _match_output(self, index: int = -1) -> None:
        """A model of a class per pixel (another tool's bioimage.io package, say) switches Instances to Semantic."""
        with contextlib.suppress(NapariUNetError, OSError):  # an unusable model is reported when it runs
            if self.model_combo.load().config.task == "semantic" and self.output_combo.currentData() == "instances":
                self.output_combo.setCurrentIndex(self.output_combo.findData("semantic"))
                self.status.setText(f"{self.model_combo.currentText()} gives a class per pixel: output set to Semantic.")

    # ---- running -------------------------------------------------------------------------------

    def run(self):
        """Start predicting with the current choices; returns the worker, or None (nothing started)."""
        if self.worker is not None:
            return None
        try:
            job = self._prepare()
        except (NapariUNetError, OSError, ValueError) as error:
            show_error(str(error))
            self.status.setText(f"Not started: {error}")
            return None
        if job is None:
            self.status.setText("Not started: the edited labels were kept.")
            return None
        self._start(job)
        return self.worker

    def stop(self) -> None:
        """Stop the running prediction after its current step."""
        if self.worker is not None:
            self.status.setText("Stopping...")
            self.worker.quit()

    def _prepare(self) -> Job | None:
        image = self.image_combo.currentData()
        if image is None:
            raise NapariUNetError(
                "Predict needs an image layer: open an image (File > Open, or File > Open Sample > napari-unet); "
                "found no image layer in the viewer"
            )
        model = self.model_combo.load()
        axes = image_axes(image)
        shape = tuple(image_array(image).shape)
        plane_layout(shape, axes, model.in_channels)  # raises with what the model expects and what the image has
        output = self.output_combo.currentData()
        if output != "probabilities":
            check_output(model, output)
        device = self.device_combo.currentData()
        on_cpu = resolve_device(device).type == "cpu"
        tile = self.tile_spin.value() or (min(model.config.tile, CPU_TILE) if on_cpu else None)
        out_shape = labels_shape(shape, axes)
        iterated = [i for i, a in enumerate(axes) if a not in CHANNEL_AXES + "YX"]
        whole = self.scope_combo.currentData() == "stack" or not iterated
        origin = None if whole else plane_at_cursor(image, self.viewer, axes)
        data, planes = copy_for_worker(image_array(image), iterated, origin)
        target, new = self._target(image, axes, out_shape, output, model)
        threads = max(1, cpu_cores() - 1)
        size = self.size_box.object_size()
        job = Job(data, axes, model, output, planes, origin, device, tile, threads, target, new, size)
        job.uncertainty = output == "instances" and self.uncertainty_box.isChecked()
        if output != "probabilities":
            layer_planes = [origin] if origin is not None else list(np.ndindex(*out_shape[:-2]))
            if not self._approve(job, layer_planes):
                if new:
                    self.viewer.layers.remove(target)
                return None
            job.dtype = np.dtype(target.data.dtype)
            if output == "instances" and origin is not None:
                job.offset = largest_label_elsewhere(target.data, origin)
        return job

    def _target(self, image, axes: str, out_shape, output: str, model: Model):
        """The layer the result goes into, made now when new (so the main thread pays for it before the run)."""
        chosen = self.target_combo.currentData()
        if chosen not in (None, NEW_LAYER) and self._present(chosen):
            expected = (model.config.network.out_channels, *out_shape) if output == "probabilities" else out_shape
            if tuple(chosen.data.shape) != expected:
                raise NapariUNetError(
                    f"layer {chosen.name!r} has shape {tuple(chosen.data.shape)}; "
                    f"expected {expected} for the {output} of {image.name!r} with this model"
                )
            return chosen, False
        layer = add_result_layer(self.viewer, image, axes, out_shape, output, f"{image.name} {output}", model)
        self._last_target[(image.unique_id, output)] = layer
        return layer, True

    def _approve(self, job: Job, planes: list[tuple[int, ...]]) -> bool:
        """Ask before overwriting planes that hold labels other than this widget's last prediction."""
        others = planes_to_approve(job.target, planes, self._written)
        if others and not ask(self, overwrite_question(job.target, len(others), len(planes))):
            return False
        job.approved = others
        return True

    def _start(self, job: Job) -> None:
        self._job = job
        flat = not any(a not in "YXCS" for a in job.axes)  # a 2D image (grey or with channels): one plane
        what = "the plane on screen" if job.origin is not None else "the image" if flat else "all planes"
        self._progress = progress(total=0, desc=f"napari-unet: predicting {job.output}")
        worker = create_worker(predict_job, job, _start_thread=False)
        worker.yielded.connect(self._on_update)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.run_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.status.setText(f"Predicting {job.output} of {what} into '{job.target.name}'...")
        start_worker(worker)

    # ---- results (main thread) -----------------------------------------------------------------

    def _on_update(self, update) -> None:
        job = self._job
        if job is None:
            return
        if isinstance(update, Progress):
            if not self._throttle.due(last=update.done >= update.total):
                return
            if self._progress.total != update.total:
                self._progress.total = update.total
            self._progress.update(update.done - self._progress.n)
        elif isinstance(update, Notice):
            show_warning(update.message)
            self.status.setText(update.message)
        elif isinstance(update, SizeEstimate):
            job.estimated_size = update.pixels
        elif isinstance(update, FinishedPlane):
            self._write(job, update)
        elif isinstance(update, Failure):
            job.failed = True
            self.status.setText(f"Failed: {update.message}")
            if update.error is not None:
                raise update.error
            show_error(update.message)

    def _write(self, job: Job, plane: FinishedPlane) -> None:
        index = job.layer_index(plane.index)
        layer = job.target
        if not self._present(layer):
            return
        if job.output == "probabilities":
            layer.data[(slice(None), *index)] = plane.data
            layer.refresh()
            job.written += 1
            return
        current = np.asarray(layer.data[index])
        if current.any() and fingerprint(current) not in (
            self._written.get((layer.unique_id, index)),
            job.approved.get(index),
        ):
            if not ask(
                self,
                f"Plane {index or ''} of '{layer.name}' was edited while predicting.\n\nOverwrite it? "
                "(Undo with Ctrl+Z.)"
            ):
                show_info(f"kept the edits in plane {index} of '{layer.name}'")
                return
        # Nothing to undo in a layer made for this result.
        undoable = not (job.new_target and not current.any())
        if write_labels(layer, index, plane.data, undoable=undoable, data_fingerprint=plane.fingerprint):
            show_info(f"'{layer.name}' now holds {layer.data.dtype} labels, to fit the ids (its undo history is reset)")
        self._written[(layer.unique_id, index)] = predicted_fingerprint(layer, index)  # computed once, when written
        job.written += 1
        if plane.uncertainty is not None:
            show_uncertainty(self.viewer, layer, index, *plane.uncertainty)

    def _on_finished(self) -> None:
        job, worker = self._job, self.worker
        self._job = self.worker = None
        self._progress.close()
        self.run_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        if job is None:
            return
        seconds = time.perf_counter() - job.started
        if worker.abort_requested:
            why = f": {job.stop_reason}" if job.stop_reason else ""
            show_info(f"prediction stopped{why}; {job.written} plane(s) written")
            self.status.setText(f"Stopped after {seconds:.1f} s{why}; {job.written} plane(s) written.")
        elif not job.failed:
            done = f"Done in {seconds:.1f} s: {job.written} plane(s) into '{job.target.name}'."
            if job.estimated_size is not None:
                done += (
                    f" Object size estimated at {job.estimated_size:.0f} px; if the objects are another size, "
                    "give it under 'object size'."
                )
            self.status.setText(done)
        if job.new_target and job.written == 0 and self._present(job.target):
            self.viewer.layers.remove(job.target)
        self._refresh_targets(prefer_last=True)

