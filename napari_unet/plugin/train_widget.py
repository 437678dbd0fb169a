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

import time
from pathlib import Path

import napari
from napari.layers import Image, Labels, Shapes
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import QComboBox, QLabel, QLineEdit, QListWidget, QPushButton, QSpinBox, QWidget

from ..core.io.axes import plane_layout
from ..core.devices import cpu_cores
from ..core.errors import NapariUNetError
from ..core.models.model import Model, check_own
from ..core.progress import Notice
from ..core.training import Stage, TrainConfig, TrainResult
from ..core.training.project import default_project_folder
from ..core.training.review import DEFAULT_MARGIN, ChangedPixels
from . import predict_widget
from .form import action_buttons, column, form, message_label, row, scope_combo
from .layer_choice import fill_layer_combo, present
from .lifetime import when_removed
from .layers import image_array, image_axes, labels_shape
from .model_choice import ModelCombo
from .preferences import Preferences
from .run_on import RunOn
from .predict_job import Failure
from .train_job import Prepared, Saved, TrainJob, train_job
from .train_plot import TrainPlot
from .training_set import REVIEWED, TrainingSet, TrainPair
from .versions import VERSION, Versions
from .warm_up import start_warm_up
from .workers import start_worker

UPDATE_INTERVAL = 0.1  # seconds between redraws of the progress, the plot and the time left
VAL_EVERY = 10  # steps between validation scores: several points a minute on a 2-core CPU, so the plot draws a curve


class TrainWidget(TrainingSet, Versions, QWidget):
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
        self._changes: dict[int, tuple[Labels, ChangedPixels]] = {}
        self._connections: list[tuple[object, object]] = []  # (emitter, callback): undone when the dock closes
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
        self.scope_combo = scope_combo()
        self.preferences = Preferences(self.settings)
        self.add_button = QPushButton("Add to training set")
        self.remove_button = QPushButton("Remove")
        self.pairs_list = QListWidget()
        self.pairs_list.setMaximumHeight(70)
        self.model_combo = ModelCombo(
            self.settings, where="start from", remember=False,
            extra=lambda: [("version selected below", VERSION)] if self.versions else [],
        )
        self.length_spin = QSpinBox()
        self.length_spin.setRange(1, 1_000_000)
        self.length_spin.setValue(int(self.settings.value("train/length", 2)))
        self.unit_combo = QComboBox()
        self.unit_combo.addItem("minutes", "minutes")
        self.unit_combo.addItem("steps", "steps")
        self.unit_combo.setCurrentIndex(max(0, self.unit_combo.findData(self.settings.value("train/unit", "minutes"))))
        self.project_edit = QLineEdit()
        projects = self.preferences.projects_folder() or Path("~/napari-unet-projects")
        self.project_edit.setPlaceholderText(str(projects / "<image name>"))
        self.run_on = RunOn(self.preferences, self.settings)
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
                ("run on", self.run_on.widget),
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

        self.refresh_choices()
        self._update_enabled()

        self.reviewed_combo.currentIndexChanged.connect(self._update_enabled)
        self.image_combo.currentIndexChanged.connect(self._update_enabled)
        self.add_button.clicked.connect(self.add_pair)
        self.remove_button.clicked.connect(self._remove_pair)
        self.project_button.clicked.connect(self._choose_project)
        self.load_button.clicked.connect(lambda: self.load_project())
        self.train_button.clicked.connect(self.train)
        self.stop_button.clicked.connect(self.stop)
        self.predict_button.clicked.connect(lambda: self.predict_current())
        self.save_button.clicked.connect(lambda: self.save_version())
        self.length_spin.valueChanged.connect(lambda v: self.settings.setValue("train/length", v))
        unit = self.unit_combo
        unit.currentIndexChanged.connect(lambda: self.settings.setValue("train/unit", unit.currentData()))
        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered, events.renamed):
            self._connect(event, self.refresh_choices)
        when_removed(self, self._on_closed)
        start_warm_up()

    def _on_closed(self) -> None:
        """The dock was closed: a run in progress stops (its model is still checked and kept), and the
        widget lets go of the viewer's and the layers' events, so that nothing keeps it alive."""
        if self.worker is not None:
            self.stop()
            show_info("napari-unet: Correct & Train was closed; its training was stopped")
        for emitter, callback in self._connections:
            emitter.disconnect(callback)
        self._connections.clear()
        self._changes.clear()

    def _connect(self, emitter, callback) -> None:
        emitter.connect(callback)
        self._connections.append((emitter, callback))

    # ---- choices --------------------------------------------------------------------------------

    def refresh_choices(self, event=None) -> None:
        """List the viewer's Image, Labels and Shapes layers again; follow the edits of new Labels layers."""
        for combo, kind in ((self.image_combo, Image), (self.labels_combo, Labels), (self.shapes_combo, Shapes)):
            fill_layer_combo(combo, self.viewer, kind, first=kind is Image)
        for layer in self.viewer.layers:
            if isinstance(layer, Labels) and layer.unique_id not in self._changes:
                self._track(layer)
        self._update_enabled()


    def _present(self, layer) -> bool:
        return present(self.viewer, layer)

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

    def set_model(self, path: str) -> bool:
        """Start from the model file ``path`` (remembered with the Predict widget's recent models)."""
        return self.model_combo.set_model(path)

    def current_model(self) -> Model:
        """The model training starts from: the version selected below, or the model chosen."""
        if self.model_combo.currentData() == VERSION:
            return self.selected_version()
        return self.model_combo.load()

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
        if text:
            return Path(text).expanduser()
        return default_project_folder(pairs[0].image.name, self.preferences.projects_folder())

    def _prepare(self) -> tuple[TrainJob, list[TrainPair]]:
        scheduler = self.run_on.scheduler()  # an address that is not one stops here, before anything is written
        pairs = list(self.pairs) or [self.current_pair()]
        model = self.current_model()
        check_own(model, "fine-tune")  # another tool's bioimage.io package: refused before anything is written
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
        return TrainJob(entries, model, config, "auto", max(1, cpu_cores() - 1), folder, scheduler), pairs

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
        else:  # the model in use stays selected; the new version is one click away
            if parent_row is not None:
                self.versions_list.setCurrentRow(parent_row)
            self.verdict_label.setText(
                f"{text}\nTo try the fine-tuned version anyway, select '{label}' under model versions and press "
                "'Predict with version'."
            )

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


    # ---- versions: predict with one, save one, load a project ------------------------------------


