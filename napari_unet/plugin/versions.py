"""Correct & Train's model versions: listed after each run, predicted with aside, saved.

:class:`Versions` holds the widget's part for them (a mixin: the widget's form supplies the list).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from napari.layers import Image, Labels
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import QFileDialog

from ..core.io.axes import CHANNEL_AXES, plane_layout
from ..core.devices import cpu_cores, resolve_device
from ..core.errors import NapariUNetError
from ..core.exchange.bioimageio import export_bioimageio, shipped_sample
from ..core.models.model import MODEL_SUFFIX, Model
from ..core.models.package import PACKAGE_SUFFIX
from ..core.progress import Notice, Progress
from . import predict_widget
from .layers import image_array, image_axes, labels_shape, plane_at_cursor
from .predict_job import Failure, FinishedPlane, Job, copy_for_worker, largest_label_elsewhere, predict_job
from .result_layer import add_result_layer, write_labels
from .workers import start_worker


VERSION = "\0version"  # the model list's item for the version selected in the list of versions
NATIVE = f"napari-unet models (*{MODEL_SUFFIX})"
BIOIMAGEIO = f"bioimage.io model package (*{PACKAGE_SUFFIX})"


class Versions:
    """The model versions' part of :class:`~.train_widget.TrainWidget`."""

    export_worker = None  # a bioimage.io export in progress

    def _add_version(self, label: str, model: Model, select: bool = True) -> None:
        self.versions.append((label, model))
        self.versions_list.addItem(label)
        if select:
            self.versions_list.setCurrentRow(len(self.versions) - 1)
        if self.model_combo.findData(VERSION) < 0:
            self.model_combo.fill()
        self._update_enabled()

    def selected_version(self) -> Model:
        row = self.versions_list.currentRow()
        if not 0 <= row < len(self.versions):
            raise NapariUNetError("no model version selected: select one in the list of model versions")
        return self.versions[row][1]

    def predict_current(self, image: Image | None = None):
        """Predict the plane on screen of ``image`` (the training image by default) with the selected version,
        into the layer '<image> prediction' (never into the corrected labels); returns the worker."""
        if self.predict_worker is not None:
            return None
        try:
            model = self.selected_version()
            image = image or (self._pairs_used[0].image if self._pairs_used else self.image_combo.currentData())
            if image is None or not self._present(image):
                raise NapariUNetError("no image to predict: choose an image layer")
            job = self._predict_job(image, model)
        except (NapariUNetError, OSError, ValueError) as error:
            show_error(str(error))
            return None
        worker = create_worker(predict_job, job, _start_thread=False)
        worker.yielded.connect(lambda update: self._on_predicted(job, update))
        worker.finished.connect(self._on_predict_finished)
        self.predict_worker = worker
        start_worker(worker)
        return worker

    def _predict_job(self, image: Image, model: Model) -> Job:
        axes = image_axes(image)
        shape = tuple(image_array(image).shape)
        plane_layout(shape, axes, model.in_channels)
        out_shape = labels_shape(shape, axes)
        iterated = [i for i, a in enumerate(axes) if a not in CHANNEL_AXES + "YX"]
        origin = plane_at_cursor(image, self.viewer, axes) if iterated else None
        data, planes = copy_for_worker(image_array(image), iterated, origin)
        output = "instances" if model.config.task == "instances" else "semantic"
        name = f"{image.name} prediction"
        corrected = {p.labels.unique_id for p in self.pairs + self._pairs_used}
        target = next(
            (
                layer
                for layer in self.viewer.layers
                if layer.name == name and isinstance(layer, Labels) and tuple(layer.data.shape) == out_shape
                and layer.unique_id not in corrected
            ),
            None,
        )
        new = target is None
        if new:
            target = add_result_layer(self.viewer, image, axes, out_shape, output, name, model)
        on_cpu = resolve_device("auto").type == "cpu"
        tile = min(model.config.tile, predict_widget.CPU_TILE) if on_cpu else None
        job = Job(data, axes, model, output, planes, origin, "auto", tile, max(1, cpu_cores() - 1), target, new)
        job.dtype = np.dtype(target.data.dtype)
        if output == "instances" and origin is not None:
            job.offset = largest_label_elsewhere(target.data, origin)
        return job

    def _on_predicted(self, job: Job, update) -> None:
        if isinstance(update, FinishedPlane):
            layer = job.target
            if not self._present(layer):
                return
            index = job.layer_index(update.index)
            write_labels(layer, index, update.data, undoable=False, data_fingerprint=update.fingerprint)
            job.written += 1
            self.status.setText(f"Predicted the plane on screen with the selected version into '{layer.name}'.")
        elif isinstance(update, Failure):
            show_error(update.message)
        elif isinstance(update, Notice):
            show_warning(update.message)
        elif isinstance(update, Progress):
            pass

    def _on_predict_finished(self) -> None:
        self.predict_worker = None

    def save_version(self, path: str | None = None) -> Path | None:
        """Write the selected version to a model file (atomically), with its provenance; or, to a ``.zip``, as a
        bioimage.io model package (in a worker: :attr:`export_worker`)."""
        try:
            model = self.selected_version()
        except NapariUNetError as error:
            show_error(str(error))
            return None
        package = False
        if path is None:
            start = str(self.last_project or "")
            path, chosen = QFileDialog.getSaveFileName(
                self, "Save the model version", start, f"{NATIVE};;{BIOIMAGEIO}"
            )
            if not path:
                return None
            package = chosen == BIOIMAGEIO
        path = Path(path)
        if package or path.suffix.lower() == PACKAGE_SUFFIX:
            return self._export(model, path.with_suffix(PACKAGE_SUFFIX))
        if path.suffix != MODEL_SUFFIX:
            path = path.with_name(path.name + MODEL_SUFFIX)
        try:
            model.save(path)
        except OSError as error:
            show_error(f"cannot save the model to {path}: {error}")
            return None
        show_info(f"saved model version '{self.versions_list.currentItem().text()}' to {path}")
        self.status.setText(f"Saved {path}.")
        return path

    def _export(self, model: Model, path: Path) -> Path:
        """Export ``model`` as a bioimage.io package in a worker (some seconds: tracing, test tensors, a cover)."""
        label = self.versions_list.currentItem().text()
        self.status.setText(f"Exporting '{label}' as a bioimage.io package to {path}...")
        worker = create_worker(
            export_bioimageio, model, path, sample=shipped_sample(model.in_channels), name=f"napari-unet {label}",
            _start_thread=False,
        )
        worker.returned.connect(lambda done: (show_info(f"exported model version '{label}' to {done}"),
                                              self.status.setText(f"Exported {done} (bioimage.io model package).")))
        worker.errored.connect(lambda error: (show_error(f"cannot export to {path}: {error}"),
                                              self.status.setText(f"Not exported: {error}")))
        worker.finished.connect(lambda: setattr(self, "export_worker", None))
        self.export_worker = worker
        start_worker(worker)
        return path
