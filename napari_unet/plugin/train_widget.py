"""Correct & Train: fine-tune the model on the labels the user corrected, and see the prediction improve.

Pick an image and the Labels layer holding the corrections, say what was
reviewed (the whole image, the inside of a Shapes layer, or, automatically,
the neighbourhood of what was painted, filled or erased since the last
prediction; a plane that no longer holds what the Predict widget wrote there,
with no edit seen by this widget, counts as a whole), and Train.
Several image / labels pairs, or planes of a stack, join one training set with
"Add to training set".

The run is core's :class:`~napari_unet.core.training.Trainer` in a napari
``thread_worker`` (see :mod:`.train_job`) with a progress bar, a live plot of
the loss and the validation score, the time left and Stop. Before it starts,
the corrections and reviewed masks are written into the project folder
(:mod:`napari_unet.core.training.project`), so nothing painted is lost; "Load
project" brings them back in a later session. Afterwards the verdict says
whether the fine-tuned model beat its parent on held-out reviewed pixels;
an improved model becomes the current version, and the plane on screen is
predicted again into a separate "prediction" layer (the corrections are never
overwritten). Every version stays in the list, to go back to or to save.
"""

from __future__ import annotations

import atexit
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import napari
import numpy as np
from napari.layers import Image, Labels, Shapes
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QPointF, QThreadPool
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QSpinBox,
    QWidget,
)

from ..core.axes import CHANNEL_AXES, plane_layout
from ..core.devices import cpu_cores, resolve_device, torch_threads
from ..core.errors import NapariUNetError
from ..core.model import BUILTIN_MODELS, MODEL_SUFFIX, Model
from ..core.progress import Notice, Progress
from ..core.training import Stage, TrainConfig, TrainResult, TrainUpdate
from ..core.training.project import default_project_folder, load_project
from ..core.training.review import DEFAULT_MARGIN, ChangedPixels
from ..core.training.trainer import warm_up
from . import predict_widget
from .form import action_buttons, column, form, message_label, row
from .lifetime import when_removed
from .layers import (
    PREDICTED,
    fingerprint,
    image_array,
    image_axes,
    is_writing_prediction,
    labels_shape,
    on_prediction_written,
    plane_at_cursor,
    smallest_label_dtype,
    widen_for,
    write_plane,
    writing_prediction,
)
from .model_choice import ModelFiles, add_model_items, remember_model
from .predict_job import Failure, FinishedPlane, Job, copy_for_worker, largest_label_elsewhere, predict_job
from .train_job import Prepared, Saved, TrainEntry, TrainJob, train_job
from .workers import start_worker

CHOOSE_FILE = "\0choose"
VERSION = "\0version"
REVIEWED = {
    "whole": "The whole image",
    "shapes": "Inside a Shapes layer",
    "painted": "Around what was painted",
}
UPDATE_INTERVAL = 0.1  # seconds between redraws of the progress, the plot and the time left
VAL_EVERY = 10  # steps between validation scores: several points a minute on a 2-core CPU, so the plot draws a curve
_warm_up = {"started": False, "done": False}
WARM_UP_WAIT = 60.0  # seconds an exiting interpreter waits for the warm-up worker


def warmed_up() -> bool:
    """Whether torch's optimizer machinery is imported (see :func:`~napari_unet.core.training.trainer.warm_up`)."""
    return _warm_up["done"]


_warmed = threading.Event()


def _warm_up_on_threads() -> None:
    try:
        with torch_threads(max(1, cpu_cores() - 1)):
            warm_up()
    finally:
        _warmed.set()


def _wait_for_warm_up() -> None:
    """At exit: until the warm-up has run, and its worker has left its thread (it still emits its
    signals after the function returns; an interpreter torn down under it crashes)."""
    _warmed.wait(WARM_UP_WAIT)
    QThreadPool.globalInstance().waitForDone(int(WARM_UP_WAIT * 1000))


def _start_warm_up() -> None:
    """Once a session, in a worker: the first training step then neither waits for imports nor stalls the viewer.

    An interpreter that exits while the worker is still importing torch's modules aborts (SIGABRT):
    the exit waits for it (a few seconds at most, once a session).
    """
    if _warm_up["started"]:
        return
    _warm_up["started"] = True
    atexit.register(_wait_for_warm_up)
    worker = create_worker(_warm_up_on_threads, _start_thread=False)
    worker.finished.connect(lambda: _warm_up.update(done=True))
    start_worker(worker)


@dataclass
class TrainPair:
    """An entry of the training set: which layers, what counts as reviewed, which plane."""

    image: Image
    labels: Labels
    reviewed: str
    shapes: Shapes | None
    margin: int
    plane: tuple[int, ...] | None  # None: every plane
    stored: np.ndarray | None = None  # a reviewed mask loaded from a project

    def describe(self) -> str:
        where = "" if self.plane is None else f" plane {list(self.plane)}"
        how = {"whole": "whole", "shapes": f"inside '{self.shapes.name}'" if self.shapes else "shapes",
               "painted": f"painted +{self.margin} px", "stored": "reviewed as stored"}[self.reviewed]
        return f"{self.image.name} / {self.labels.name}{where} ({how})"


class TrainPlot(QWidget):
    """Loss (blue, scaled to its range) and validation score (orange, 0..1) against the step."""

    def __init__(self):
        super().__init__()
        self.setMinimumHeight(110)
        self.loss: list[tuple[int, float]] = []
        self.score: list[tuple[int, float]] = []

    def clear(self) -> None:
        self.loss, self.score = [], []
        self.update()

    def add(self, update: TrainUpdate) -> None:
        self.loss.append((update.step, update.loss))
        if update.score is not None:
            self.score.append((update.step, float(update.score.value)))

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt's name
        painter = QPainter(self)
        w, h = self.width(), self.height()
        painter.fillRect(0, 0, w, h, QColor(30, 30, 30))
        painter.setPen(QColor(200, 200, 200))
        painter.drawText(4, 12, "loss")
        painter.setPen(QColor(255, 160, 40))
        painter.drawText(40, 12, "validation")
        if not self.loss:
            return
        last = max(self.loss[-1][0], 1)
        values = [v for _, v in self.loss]
        lo, hi = min(values), max(values)
        span = hi - lo or 1.0

        def line(points, lo, span, color):
            polygon = QPolygonF([QPointF(4 + (w - 8) * s / last, h - 4 - (h - 20) * (v - lo) / span) for s, v in points])
            painter.setPen(QPen(color, 1.5))
            painter.drawPolyline(polygon)

        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        line(self.loss, lo, span, QColor(80, 160, 255))
        if self.score:
            line(self.score, 0.0, 1.0, QColor(255, 160, 40))
            painter.setPen(QColor(255, 160, 40))
            painter.drawText(w - 60, 12, f"{self.score[-1][1]:.3f}")
        painter.setPen(QColor(80, 160, 255))
        painter.drawText(w - 120, 12, f"{self.loss[-1][1]:.3f}")


class TrainWidget(QWidget):
    """Choose the corrected labels and what was reviewed; Train, Stop; keep, compare and save model versions.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    settings : QSettings, optional
        Shared with the Predict widget (the model files used recently).
    """

    def __init__(self, viewer: napari.viewer.Viewer, settings=None):
        super().__init__()
        self.viewer = viewer
        self.settings = settings if settings is not None else predict_widget.default_settings()
        self.worker = None
        self.predict_worker = None
        self._job: TrainJob | None = None
        self._pairs_used: list[TrainPair] = []
        self._progress = None
        self._shown = 0.0
        self._model_files = ModelFiles()
        self._changes: dict[int, tuple[Labels, ChangedPixels]] = {}
        self.pairs: list[TrainPair] = []
        self.versions: list[tuple[str, Model]] = []
        self.extra_settings: dict = {}  # further TrainConfig fields (patch, batch_size, ...)
        self.last_project: Path | None = None

        self.image_combo = QComboBox()
        self.labels_combo = QComboBox()
        self.reviewed_combo = QComboBox()
        for key, text in REVIEWED.items():
            self.reviewed_combo.addItem(text, key)
        self.reviewed_combo.setCurrentIndex(self.reviewed_combo.findData("painted"))
        self.shapes_combo = QComboBox()
        self.margin_spin = QSpinBox()
        self.margin_spin.setRange(0, 1000)
        self.margin_spin.setValue(DEFAULT_MARGIN)
        self.margin_spin.setSuffix(" px")
        self.margin_spin.setToolTip("How far around the painted pixels counts as reviewed")
        self.scope_combo = QComboBox()
        self.scope_combo.addItem("Plane on screen", "plane")
        self.scope_combo.addItem("Whole stack", "stack")
        self.add_button = QPushButton("Add to training set")
        self.remove_button = QPushButton("Remove")
        self.pairs_list = QListWidget()
        self.pairs_list.setMaximumHeight(70)
        self.model_combo = QComboBox()
        self.length_spin = QSpinBox()
        self.length_spin.setRange(1, 1_000_000)
        self.length_spin.setValue(int(self.settings.value("train/length", 2)))
        self.unit_combo = QComboBox()
        self.unit_combo.addItem("minutes", "minutes")
        self.unit_combo.addItem("steps", "steps")
        self.unit_combo.setCurrentIndex(max(0, self.unit_combo.findData(self.settings.value("train/unit", "minutes"))))
        self.project_edit = QLineEdit()
        self.project_edit.setPlaceholderText("~/napari-unet-projects/<image name>")
        self.project_button = QPushButton("...")
        self.load_button = QPushButton("Load project")
        self.train_button, self.stop_button = action_buttons("Train")
        self.plot = TrainPlot()
        self.progress_label = QLabel("")
        self.verdict_label = message_label()
        self.versions_list = QListWidget()
        self.versions_list.setMaximumHeight(90)
        self.predict_button = QPushButton("Predict with version")
        self.save_button = QPushButton("Save version...")
        self.status = message_label()
        # Labels that change while training keep their size: a growing label would resize the dock,
        # and with it the canvas, which napari then redraws (slow without a GPU).
        lines = self.fontMetrics().lineSpacing()
        self.progress_label.setFixedHeight(lines + 4)
        self.verdict_label.setMinimumHeight(2 * lines + 4)
        self.status.setMinimumHeight(3 * lines + 4)
        column(
            self,
            form(
                ("image", self.image_combo),
                ("corrected labels", self.labels_combo),
                ("reviewed", self.reviewed_combo),
                ("shapes", self.shapes_combo),
                ("margin", self.margin_spin),
                ("planes", self.scope_combo),
                row(self.add_button, self.remove_button),
                ("training set", self.pairs_list),
                ("start from", self.model_combo),
                ("length", row(self.length_spin, self.unit_combo)),
                ("project", row(self.project_edit, self.project_button, self.load_button)),
            ),
            row(self.train_button, self.stop_button),
            self.plot,
            self.progress_label,
            self.verdict_label,
            QLabel("model versions"),
            self.versions_list,
            row(self.predict_button, self.save_button),
            self.status,
        )

        self._fill_models()
        self.refresh_choices()
        self._update_enabled()

        self.reviewed_combo.currentIndexChanged.connect(self._update_enabled)
        self.image_combo.currentIndexChanged.connect(self._update_enabled)
        self.model_combo.activated.connect(self._on_model_activated)
        self.add_button.clicked.connect(self.add_pair)
        self.remove_button.clicked.connect(self._remove_pair)
        self.project_button.clicked.connect(self._choose_project)
        self.load_button.clicked.connect(lambda: self.load_project())
        self.train_button.clicked.connect(self.train)
        self.stop_button.clicked.connect(self.stop)
        self.predict_button.clicked.connect(lambda: self.predict_current())
        self.save_button.clicked.connect(lambda: self.save_version())
        self.length_spin.valueChanged.connect(lambda v: self.settings.setValue("train/length", v))
        self.unit_combo.currentIndexChanged.connect(
            lambda: self.settings.setValue("train/unit", self.unit_combo.currentData())
        )
        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered, events.renamed):
            event.connect(self.refresh_choices)
        on_prediction_written(self._on_prediction_written)
        when_removed(self, self._on_closed)
        _start_warm_up()

    def _on_closed(self) -> None:
        """The dock was closed: a run in progress stops (its model is still checked and kept)."""
        if self.worker is not None:
            self.stop()
            show_info("napari-unet: Correct & Train was closed; its training was stopped")

    # ---- choices --------------------------------------------------------------------------------

    def refresh_choices(self, event=None) -> None:
        """List the viewer's Image, Labels and Shapes layers again; follow the edits of new Labels layers."""
        for combo, kind in ((self.image_combo, Image), (self.labels_combo, Labels), (self.shapes_combo, Shapes)):
            current = combo.currentData()
            layers = [layer for layer in self.viewer.layers if isinstance(layer, kind)]
            combo.blockSignals(True)
            combo.clear()
            for layer in layers:
                combo.addItem(layer.name, layer)
            ids = [layer.unique_id for layer in layers]
            active = self.viewer.layers.selection.active
            if current is not None and current.unique_id in ids:
                combo.setCurrentIndex(ids.index(current.unique_id))
            elif isinstance(active, kind) and active.unique_id in ids:
                combo.setCurrentIndex(ids.index(active.unique_id))
            elif layers:
                combo.setCurrentIndex(0 if kind is Image else len(layers) - 1)
            combo.blockSignals(False)
        for layer in self.viewer.layers:
            if isinstance(layer, Labels) and layer.unique_id not in self._changes:
                self._track(layer)
        self._update_enabled()

    def _track(self, layer: Labels) -> None:
        self._changes[layer.unique_id] = (layer, ChangedPixels(layer.data.shape))
        layer.events.paint.connect(lambda event, layer=layer: self._on_paint(layer, event))
        layer.events.data.connect(lambda event, layer=layer: self._on_new_data(layer))

    def _on_paint(self, layer: Labels, event) -> None:
        """Remember which pixels the user changed (a prediction written by a widget does not count)."""
        if is_writing_prediction(layer):
            return
        changes = self._changed(layer)
        for atom in event.value:
            if hasattr(atom, "slice_key"):
                changes.mark_box(atom.slice_key, atom.mask)
            else:
                changes.mark_points(atom[0])

    def _on_new_data(self, layer: Labels) -> None:
        if layer.unique_id in self._changes and self._changes[layer.unique_id][1].shape != tuple(layer.data.shape):
            self._changes[layer.unique_id] = (layer, ChangedPixels(layer.data.shape))

    def _on_prediction_written(self, layer, index) -> None:
        """A new prediction in a plane: what was painted there before no longer counts."""
        if layer.unique_id in self._changes:
            self._changes[layer.unique_id][1].clear(index)

    def _changed(self, layer: Labels) -> ChangedPixels:
        entry = self._changes.get(layer.unique_id)
        if entry is None or entry[1].shape != tuple(layer.data.shape):
            self._changes[layer.unique_id] = (layer, ChangedPixels(layer.data.shape))
        return self._changes[layer.unique_id][1]

    def _present(self, layer) -> bool:
        # The viewer a plugin gets hands out proxies of its layers: compare ids, not objects.
        return any(other.unique_id == layer.unique_id for other in self.viewer.layers)

    def _update_enabled(self, *_) -> None:
        mode = self.reviewed_combo.currentData()
        self.shapes_combo.setEnabled(mode == "shapes")
        self.margin_spin.setEnabled(mode == "painted")
        image = self.image_combo.currentData()
        stack = False
        if image is not None:
            try:
                stack = len(labels_shape(tuple(image_array(image).shape), image_axes(image))) > 2
            except NapariUNetError:
                stack = False
        self.scope_combo.setEnabled(stack)
        running = self.worker is not None
        self.train_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.save_button.setEnabled(bool(self.versions))
        self.predict_button.setEnabled(bool(self.versions) and not running)

    def _fill_models(self) -> None:
        current = self.model_combo.currentData()
        self.model_combo.clear()
        if self.versions:
            self.model_combo.addItem("version selected below", VERSION)
        add_model_items(self.model_combo, self.settings)
        self.model_combo.addItem("Choose file...", CHOOSE_FILE)
        wanted = current if current not in (None, CHOOSE_FILE) else self.settings.value("predict/model", "")
        index = self.model_combo.findData(wanted)
        self.model_combo.setCurrentIndex(index if index >= 0 else 0)

    def _on_model_activated(self, index: int) -> None:
        if self.model_combo.itemData(index) != CHOOSE_FILE:
            return
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose a napari-unet model", "", f"napari-unet models (*{MODEL_SUFFIX});;All files (*)"
        )
        if path:
            self.set_model(path)
        else:
            self._fill_models()

    def set_model(self, path: str) -> bool:
        """Start from the model file ``path`` (remembered with the Predict widget's recent models)."""
        try:
            self._load_model(path)
        except (NapariUNetError, OSError) as error:
            show_error(f"cannot use model {path}: {error}")
            return False
        if path not in BUILTIN_MODELS:
            path = remember_model(self.settings, path)
        self._fill_models()
        self.model_combo.setCurrentIndex(self.model_combo.findData(path))
        return True

    def _load_model(self, choice: str) -> Model:
        if choice == VERSION:
            row = self.versions_list.currentRow()
            if not 0 <= row < len(self.versions):
                raise NapariUNetError("no model version selected: select one in the list of model versions")
            return self.versions[row][1]
        if not choice or choice == CHOOSE_FILE:
            raise NapariUNetError(
                f"no model to start from: this installation has no shipped model ({', '.join(BUILTIN_MODELS)}); "
                "choose a model file (.safetensors) under 'start from'"
            )
        return self._model_files.load(choice)

    def current_model(self) -> Model:
        """The model training starts from (and Predict with version uses)."""
        return self._load_model(self.model_combo.currentData() or "")

    # ---- the training set -----------------------------------------------------------------------

    def current_pair(self) -> TrainPair:
        """The pair the choices above describe (checked: layers chosen, shapes that fit)."""
        image, labels = self.image_combo.currentData(), self.labels_combo.currentData()
        if image is None or labels is None:
            found = ", ".join(f"{type(layer).__name__} '{layer.name}'" for layer in self.viewer.layers) or "no layers"
            raise NapariUNetError(
                "Correct & Train needs an image layer and a Labels layer with the corrected labels "
                f"(predict one with the Predict widget, then correct it); found {found}"
            )
        axes = image_axes(image)
        expected = labels_shape(tuple(image_array(image).shape), axes)
        if tuple(labels.data.shape) != expected:
            raise NapariUNetError(
                f"the labels '{labels.name}' have shape {tuple(labels.data.shape)}; expected {expected} "
                f"for the image '{image.name}' (shape {tuple(image_array(image).shape)}, axes {axes})"
            )
        mode = self.reviewed_combo.currentData()
        shapes = self.shapes_combo.currentData() if mode == "shapes" else None
        if mode == "shapes" and shapes is None:
            raise NapariUNetError(
                "the reviewed region is 'inside a Shapes layer' but the viewer has no Shapes layer: "
                "add one (Layers > New Shapes layer) and draw the region you checked"
            )
        plane = None
        if len(expected) > 2 and self.scope_combo.currentData() == "plane":
            plane = plane_at_cursor(image, self.viewer, axes)
        return TrainPair(image, labels, mode, shapes, self.margin_spin.value(), plane)

    def add_pair(self) -> TrainPair | None:
        """Add the current image / labels / reviewed choice to the training set."""
        try:
            pair = self.current_pair()
        except NapariUNetError as error:
            show_error(str(error))
            return None
        self.pairs.append(pair)
        self.pairs_list.addItem(pair.describe())
        return pair

    def _remove_pair(self) -> None:
        row = self.pairs_list.currentRow()
        if 0 <= row < len(self.pairs):
            self.pairs.pop(row)
            self.pairs_list.takeItem(row)

    def reviewed_mask(self, pair: TrainPair) -> np.ndarray:
        """What counts as reviewed in ``pair``'s labels (a boolean array of their shape)."""
        shape = tuple(pair.labels.data.shape)
        if pair.reviewed == "whole":
            mask = np.ones(shape, bool)
        elif pair.reviewed == "shapes":
            mask = shapes_mask(pair.shapes, shape)
        elif pair.reviewed == "stored":
            mask = pair.stored | self._changed(pair.labels).reviewed(pair.margin)
        else:
            mask = self._changed(pair.labels).reviewed(pair.margin)
            marked = set(self._changed(pair.labels).marked())
            for index in np.ndindex(*shape[:-2]):
                # edited outside this widget's sight (before it opened, or without paint events): the whole plane
                recorded = PREDICTED.get((pair.labels.unique_id, index))
                if index not in marked and recorded is not None and recorded != fingerprint(pair.labels.data[index]):
                    mask[index] = True
        if pair.plane is not None:
            only = np.zeros(shape, bool)
            only[pair.plane] = mask[pair.plane]
            mask = only
        return mask

    def _entry(self, pair: TrainPair) -> TrainEntry:
        mask = self.reviewed_mask(pair)
        if not mask.any():
            hints = {
                "whole": "",
                "shapes": f": draw a rectangle or polygon in '{pair.shapes.name if pair.shapes else ''}' "
                "around the region you checked",
                "painted": ": paint (or fill, erase) corrections in the labels since the last prediction, "
                "or choose 'The whole image' or 'Inside a Shapes layer'",
                "stored": "",
            }
            where = "" if pair.plane is None else f" in plane {list(pair.plane)}"
            raise NapariUNetError(
                f"the reviewed region of '{pair.labels.name}'{where} is empty "
                f"(reviewed: {REVIEWED.get(pair.reviewed, 'as stored').lower()}), so there is nothing to train on"
                + hints[pair.reviewed]
            )
        axes = image_axes(pair.image)
        data = image_array(pair.image)
        labels = pair.labels.data
        if pair.plane is not None:
            iterated = [i for i, a in enumerate(axes) if a not in CHANNEL_AXES + "YX"]
            data, _ = copy_for_worker(data, iterated, pair.plane)
            key = tuple(slice(i, i + 1) for i in pair.plane)
            labels, mask = np.array(labels[key]), mask[key]
        else:
            data, labels = np.array(data), np.array(labels)
        return TrainEntry(pair.image.name, data, axes, labels, mask)

    # ---- training -------------------------------------------------------------------------------

    def train(self):
        """Save the training set into the project and start training; returns the worker, or None."""
        if self.worker is not None:
            return None
        try:
            job, pairs = self._prepare()
        except (NapariUNetError, OSError, ValueError) as error:
            show_error(str(error))
            self.status.setText(f"Not started: {error}")
            return None
        self._start(job, pairs)
        return self.worker

    def stop(self) -> None:
        """End the run after the current step; the model so far is still checked and listed."""
        if self._job is not None:
            self.status.setText("Stopping...")
            self._job.stop()

    def train_config(self) -> TrainConfig:
        length = {self.unit_combo.currentData(): self.length_spin.value()}
        settings = {"val_every": VAL_EVERY} | self.extra_settings | length
        if "minutes" in length:
            settings["steps"] = None
        else:
            settings["minutes"] = None
        return TrainConfig.model_validate(settings)

    def project_folder(self, pairs: list[TrainPair]) -> Path:
        text = self.project_edit.text().strip()
        return Path(text).expanduser() if text else default_project_folder(pairs[0].image.name)

    def _prepare(self) -> tuple[TrainJob, list[TrainPair]]:
        pairs = list(self.pairs) or [self.current_pair()]
        model = self.current_model()
        for pair in pairs:
            if not self._present(pair.image) or not self._present(pair.labels):
                raise NapariUNetError(
                    f"the training set lists '{pair.image.name}' / '{pair.labels.name}', but the viewer no longer "
                    "holds both: remove the pair from the training set or open the layers again"
                )
            plane_layout(tuple(image_array(pair.image).shape), image_axes(pair.image), model.in_channels)
        entries = [self._entry(pair) for pair in pairs]
        config = self.train_config()
        folder = self.project_folder(pairs)
        folder.mkdir(parents=True, exist_ok=True)  # a folder that cannot be made stops here, with nothing started
        self.last_project = folder
        if not self.versions or not any(m is model for _, m in self.versions):
            self._add_version(f"start: {self.model_combo.currentText()}", model)
        return TrainJob(entries, model, config, "auto", max(1, cpu_cores() - 1), folder), pairs

    def _start(self, job: TrainJob, pairs: list[TrainPair]) -> None:
        self._job, self._pairs_used = job, pairs
        self.plot.clear()
        self._shown = 0.0
        self._progress = progress(total=1000, desc="napari-unet: training")
        worker = create_worker(train_job, job, _start_thread=False)
        worker.yielded.connect(self._on_update)
        worker.returned.connect(self._on_result)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self._update_enabled()
        self.verdict_label.setText("")
        self.status.setText(f"Training on {len(job.entries)} image(s)... (project: {self.last_project})")
        start_worker(worker)

    def _on_update(self, update) -> None:
        if isinstance(update, Failure):
            self._job.failed = True
            self.status.setText(f"Failed: {update.message}")
            if update.error is not None:
                raise update.error
            show_error(update.message)
            return
        if isinstance(update, Saved):
            self.status.setText(f"Stored the training set (run {update.run}) in {update.folder}; preparing...")
            return
        if isinstance(update, Prepared):
            runs = f" in {update.runs} runs, each image held out in turn" if update.runs > 1 else ""
            self.status.setText(f"Training on {update.n_train} plane(s), validating on {update.n_val}{runs}...")
            return
        if isinstance(update, Notice):
            show_warning(update.message)
            return
        if isinstance(update, Stage):
            self.status.setText(f"{update.name[0].upper()}{update.name[1:]}... ({update.seconds:.0f} s)")
            return
        self.plot.add(update)
        now = time.perf_counter()
        if now - self._shown < UPDATE_INTERVAL:
            return
        self._shown = now
        self._progress.update(int(update.fraction * 1000) - self._progress.n)
        left = f", {update.seconds_left:.0f} s left" if update.seconds_left is not None else ""
        score = f", validation {self.plot.score[-1][1]:.3f}" if self.plot.score else ""
        self.progress_label.setText(f"step {update.step}: loss {update.loss:.4f}{score}{left}")
        self.plot.update()

    def _on_result(self, result: TrainResult | None) -> None:
        if result is None:
            return
        if result.history:  # the last updates may have come between two redraws
            last = result.history[-1]
            score = f", validation {self.plot.score[-1][1]:.3f}" if self.plot.score else ""
            self.progress_label.setText(f"step {last.step}: loss {last.loss:.4f}{score}")
        self.plot.update()
        if result.steps == 0:
            self.verdict_label.setText("Stopped before the first step: the model is unchanged.")
            show_info("napari-unet training stopped before the first step: the model is unchanged")
            return
        verdict = result.verdict()
        stopped = " (stopped)" if result.stopped else ""
        text = f"{result.steps} steps{stopped}, {result.time_split()}. {verdict}"
        self.verdict_label.setText(text)
        adopted = result.model is result.finetuned
        (show_info if adopted else show_warning)(f"napari-unet training: {text}")
        n = sum(1 for name, _ in self.versions if name.startswith("v")) + 1
        score = f" {result.best_score}" if result.best_score is not None else ""
        label = f"v{n}:{score}" + ("" if adopted else " (not adopted)")
        started_from = self._job.model if self._job is not None else result.parent
        parent_row = next((i for i, (_, m) in enumerate(self.versions) if m is started_from), None)
        self._add_version(label, result.finetuned, select=adopted)
        if adopted:
            self.model_combo.setCurrentIndex(self.model_combo.findData(VERSION))
            self.predict_current()
        elif parent_row is not None:
            self.versions_list.setCurrentRow(parent_row)

    def _on_finished(self) -> None:
        job = self._job
        self.worker = self._job = None
        if self._progress is not None:
            self._progress.close()
            self._progress = None
        self._update_enabled()
        if job is not None and job.result is None and not job.failed:
            self.status.setText("Training ended without a result.")
        elif job is not None and job.result is not None:
            self.status.setText(f"Done; the training set is kept in {self.last_project}.")

    def _add_version(self, label: str, model: Model, select: bool = True) -> None:
        self.versions.append((label, model))
        self.versions_list.addItem(label)
        if select:
            self.versions_list.setCurrentRow(len(self.versions) - 1)
        if self.model_combo.findData(VERSION) < 0:
            self._fill_models()
        self._update_enabled()

    # ---- versions: predict with one, save one, load a project ------------------------------------

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
            displayed = axes[:-1] if image.rgb else axes
            keep = [i for i, a in enumerate(displayed) if a not in CHANNEL_AXES]
            target = self.viewer.add_labels(
                np.zeros(out_shape, smallest_label_dtype(0)),
                name=name,
                scale=[image.scale[i] for i in keep],
                translate=[image.translate[i] for i in keep],
                metadata={"axes": "".join(displayed[i] for i in keep)},
            )
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
            widen_for(layer, int(update.data.max()) if update.data.size else 0)
            with writing_prediction(layer, index):
                write_plane(layer, index, update.data)
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
        """Write the selected version to a model file (atomically), with its provenance."""
        try:
            model = self.selected_version()
        except NapariUNetError as error:
            show_error(str(error))
            return None
        if path is None:
            start = str(self.last_project or "")
            path, _ = QFileDialog.getSaveFileName(
                self, "Save the model version", start, f"napari-unet models (*{MODEL_SUFFIX})"
            )
            if not path:
                return None
        path = Path(path)
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

    def _choose_project(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Project folder", self.project_edit.text())
        if folder:
            self.project_edit.setText(folder)

    def load_project(self, folder: str | None = None) -> list[TrainPair]:
        """Open the corrections of a project's latest training run as layers, and put them in the training set."""
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Load a napari-unet project", self.project_edit.text())
            if not folder:
                return []
        try:
            entries = load_project(folder)
        except (NapariUNetError, OSError) as error:
            show_error(str(error))
            return []
        added = []
        for entry in entries:
            if entry.image is None:
                show_warning(f"{entry.labels_file.name}: the project holds no image for it; skipped")
                continue
            axes = entry.axes if entry.axes and len(entry.axes) == entry.image.ndim else None
            rgb = bool(axes) and axes[-1] == "S"
            image = self.viewer.add_image(
                entry.image, name=entry.image_name, rgb=rgb, metadata={"axes": axes} if axes else {}
            )
            labels = self.viewer.add_labels(entry.labels, name=f"{entry.image_name} corrected (run {entry.run})")
            pair = TrainPair(image, labels, "stored", None, self.margin_spin.value(), None, entry.reviewed)
            self.pairs.append(pair)
            self.pairs_list.addItem(pair.describe())
            added.append(pair)
        self.project_edit.setText(str(folder))
        show_info(f"loaded {len(added)} image(s) of training run {entries[0].run} from {folder}")
        return added


def shapes_mask(shapes: Shapes, shape: tuple[int, ...]) -> np.ndarray:
    """The inside of the shapes of ``shapes`` as a boolean array of ``shape``.

    2D shapes over a stack mark the same region in every plane.
    """
    if len(shapes.data) == 0:
        return np.zeros(shape, bool)
    if shapes.ndim == len(shape):
        return np.asarray(shapes.to_masks(mask_shape=shape)).any(axis=0)
    if shapes.ndim == 2:
        plane = np.asarray(shapes.to_masks(mask_shape=shape[-2:])).any(axis=0)
        return np.broadcast_to(plane, shape).copy()
    raise NapariUNetError(
        f"the Shapes layer '{shapes.name}' has {shapes.ndim} dimensions; expected 2 or {len(shape)} "
        f"(those of the labels, shape {shape})"
    )
