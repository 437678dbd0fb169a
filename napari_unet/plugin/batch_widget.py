"""Batch widget: segment TIFF files, a folder or a stack layer into labels, and open them lazily.

It builds the same core calls as ``napari-unet segment``
(:func:`~napari_unet.core.batch.run.iter_segment_files`) and runs them in a
worker thread. Stop asks the run to end at its next step: the generator is
then closed where it stands, so a TIFF being written is dropped and a zarr
store keeps its finished planes for the next run to resume. Each output is
opened in the worker, lazily, and shown as a Labels layer over the file, never
read whole; the same output written again replaces its layer's data. Run after
a Stop skips the outputs the last run finished with the same settings (and
not touched since). One progress bar covers the whole run.
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import napari
import numpy as np
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QWidget,
)

from ..core.io.axes import guess_axes
from ..core.batch.jobs import BatchOptions, BatchReport, FileDone, Job, check_writable, plan_jobs
from ..core.batch.run import describe, iter_segment_files
from ..core.devices import DEVICE_CHOICES, cpu_cores, steps_on_threads
from ..core.predict.inference import Segmenter, as_model
from ..core.io.labels_store import open_labels
from ..core.progress import Progress
from ..core.io.stack_io import Stack, read_stack
from .form import action_buttons, column, form, message_label, row
from .lifetime import when_removed
from .object_size_box import ObjectSizeBox
from .throttle import Throttle
from .workers import start_worker

FILES = "TIFF files or folder (below)"


class BatchWidget(QWidget):
    """Choose inputs (files, a folder or an image layer) and an output; Run, watch, Stop."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.worker = None
        self._written: dict[Path, tuple] = {}  # outputs this widget wrote, and what they were written from
        self._settings = ""
        self._stop = threading.Event()

        self.source = QComboBox()
        self.inputs = QLineEdit()
        self.inputs.setPlaceholderText("stack.tif; other.tif  or  a folder")
        self.output = QLineEdit()
        self.output.setPlaceholderText("labels.zarr, labels.tif, or a folder for several inputs")
        self.model = QLineEdit("default")
        self.object_size = ObjectSizeBox(estimated_from="each input (its first plane)")
        self.labels = QComboBox()
        self.labels.addItems(["instances", "semantic"])
        self.min_size = QSpinBox()
        self.min_size.setRange(1, 10**6)
        self.min_size.setValue(10)
        self.min_size.setSuffix(" px")
        self.min_size.setToolTip("objects smaller than this are dropped")
        self.stitch_z = QDoubleSpinBox()
        self.stitch_z.setRange(0.0, 0.95)
        self.stitch_z.setSingleStep(0.05)
        self.stitch_z.setSpecialValueText("off")
        self.stitch_z.setToolTip("link objects of consecutive z planes whose overlap (IoU) is above this")
        self.device = QComboBox()
        self.device.addItems(DEVICE_CHOICES)
        self.run_button, self.stop_button = action_buttons("Run")
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.status = message_label()
        files = _with_buttons(self.inputs, ("Files…", self._choose_files), ("Folder…", self._choose_folder))
        column(
            self,
            form(
                ("Input", self.source),
                ("", files),
                ("Output", _with_buttons(self.output, ("…", self._choose_output))),
                ("Model", _with_buttons(self.model, ("…", self._choose_model))),
                ("Object size", self.object_size),
                ("Labels", self.labels),
                ("Smallest object", self.min_size),
                ("Link across z", self.stitch_z),
                ("Device", self.device),
            ),
            row(self.run_button, self.stop_button),
            self.progress,
            self.status,
            stretch=True,
        )

        self.run_button.clicked.connect(self.run)
        self.stop_button.clicked.connect(self.stop)
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self._refresh_layers()
        when_removed(self, self._on_closed)

    def _on_closed(self) -> None:
        """The dock was closed: a run in progress stops, since no Stop button is left on screen."""
        if self.stop_button.isEnabled():
            self.stop()
            show_info("napari-unet: Batch was closed; its run was stopped (finished outputs are kept)")

    def run(self):
        """Check the choices, then segment in a worker thread; returns the worker (None if the choices are bad)."""
        try:
            jobs = self._jobs()
            options = BatchOptions(
                labels=self.labels.currentText(), min_size=self.min_size.value(), stitch_z=self.stitch_z.value() or None
            )
        except (ValueError, OSError) as e:
            self._fail(str(e))
            return None
        self._stop.clear()
        model = self.model.text().strip() or "default"
        segmenter = dict(device=self.device.currentText(), object_size=self.object_size.object_size())
        settings = repr((model, segmenter, options))
        kept = [job for job in jobs if self._written.get(job.output) == _written_key(job, settings)]
        jobs = [job for job in jobs if job not in kept]
        if not jobs:
            self.status.setText(f"all {len(kept)} output(s) were written by the last run with these settings")
            return None
        self._settings = settings
        self.worker = create_worker(_segment, jobs, model, segmenter, options, self._stop, _start_thread=False)
        self.worker.yielded.connect(self._on_update)
        self.worker.returned.connect(self._on_done)
        self.worker.errored.connect(lambda e: self._fail(str(e)))
        self.worker.finished.connect(self._on_finished)
        self.run_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.progress.setValue(0)
        self.status.setText("loading the model…")
        start_worker(self.worker)
        return self.worker

    def stop(self) -> None:
        """Ask the run to end at its next step."""
        self._stop.set()
        self.status.setText("stopping…")

    def _jobs(self) -> list[Job]:
        output = self.output.text().strip()
        if not output:
            raise ValueError("choose an output: labels.zarr, labels.tif, or a folder for several inputs")
        if self.source.currentIndex() > 0:
            jobs = [Job(self._layer_stack(self.source.currentText()), Path(output))]
        else:
            inputs = [p.strip() for p in self.inputs.text().split(";") if p.strip()]
            if not inputs:
                raise ValueError("choose TIFF files or a folder, or an image layer")
            jobs = plan_jobs(inputs, output)
            if any(job.output.parent == Path(output) for job in jobs):
                Path(output).mkdir(exist_ok=True)
        for job in jobs:
            check_writable(job)
        return jobs

    def _layer_stack(self, name: str) -> Stack:
        """A layer's data as a stack: in-memory arrays are copied (the worker must not see edits), lazy ones not."""
        layer = self.viewer.layers[name]
        data = layer.data
        if isinstance(data, np.ndarray) and not isinstance(data, np.memmap):
            data = data.copy()
        axes = (layer.metadata or {}).get("axes")
        if not axes or len(axes) != data.ndim:
            axes = guess_axes(data.shape)
        spatial = [a for a in axes if a not in "CS"]
        scale = {a: float(s) for a, s in zip(spatial, layer.scale) if a in "ZYX"}
        return Stack(data, axes, scale)

    def _on_update(self, update: Progress | FileDone | Opened) -> None:
        if isinstance(update, Progress):
            self.progress.setValue(int(1000 * update.fraction))
            self.status.setText(update.stage)
        elif isinstance(update, Opened):
            self._written[update.job.output] = _written_key(update.job, self._settings)
            self._open(update)
        elif update.error is not None:
            show_warning(f"napari-unet: {update.job.name} failed: {update.error}")

    def _on_done(self, report: BatchReport | None) -> None:
        if report is None:
            self.status.setText("stopped; Run again resumes zarr outputs of files")
        elif report.failed:
            self._fail(describe(report))
        else:
            self.status.setText(f"done: {len(report.written)} written")
            show_info(f"napari-unet: {len(report.written)} labels written")

    def _on_finished(self) -> None:
        self.run_button.setEnabled(True)
        self.stop_button.setEnabled(False)

    def _fail(self, message: str) -> None:
        self.status.setText(message)
        show_error(f"napari-unet: {message}")

    def _open(self, opened: Opened) -> None:
        """Add an output (opened in the worker, lazily) as a Labels layer, or refresh the one already shown."""
        name = opened.job.output.stem
        scale = [opened.scale.get(a, 1.0) for a in opened.axes]
        layer = next((la for la in self.viewer.layers if la.name == name and isinstance(la, napari.layers.Labels)), None)
        if layer is not None and layer.metadata.get("source") == str(opened.job.output):
            layer.data = opened.data  # the same output written again: no second copy
            return
        metadata = {"axes": opened.axes, "source": str(opened.job.output)}
        self.viewer.add_labels(opened.data, name=name, scale=scale, metadata=metadata)

    def _refresh_layers(self, event=None) -> None:
        current = self.source.currentText()
        self.source.clear()
        self.source.addItem(FILES)
        self.source.addItems([layer.name for layer in self.viewer.layers if isinstance(layer, napari.layers.Image)])
        index = self.source.findText(current)
        self.source.setCurrentIndex(max(index, 0))

    def _choose_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "TIFF files", "", "TIFF (*.tif *.tiff)")
        if files:
            self.inputs.setText("; ".join(files))
            self.source.setCurrentIndex(0)

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of TIFF files")
        if folder:
            self.inputs.setText(folder)
            self.source.setCurrentIndex(0)

    def _choose_output(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Labels", "labels.zarr", "zarr store (*.zarr);;TIFF (*.tif)")
        if path:
            self.output.setText(path)

    def _choose_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Model", "", "models (*.safetensors *.zip);;All files (*)")
        if path:
            self.model.setText(path)


def _segment(
    jobs: list[Job], model: str, segmenter: dict, options: BatchOptions, stop: threading.Event
) -> Generator[Progress | FileDone, None, BatchReport | None]:
    """Runs in the worker: load the model, segment every job; returns None when stopped.

    ``segmenter`` holds the :class:`~napari_unet.core.predict.inference.Segmenter` options (device, object size).
    Stop is looked at before each step, so none starts after it. A file that
    was finished by the step Stop arrived during is still reported and opened:
    it is complete, and the user should see that it was kept.
    """
    segmenter = Segmenter(as_model(model), **segmenter)
    gen = steps_on_threads(iter_segment_files(jobs, segmenter, options), max(1, cpu_cores() - 1))  # a core for the viewer
    finished = 0
    throttle = Throttle()
    try:
        while not stop.is_set():
            try:
                update = next(gen)
            except StopIteration as done:
                return done.value
            if isinstance(update, Progress):  # one bar for the whole run, not one per file
                if stop.is_set():
                    break
                if not throttle.due(last=update.done >= update.total):
                    continue
                overall = (finished + update.fraction) / len(jobs)
                yield Progress(round(1000 * overall), 1000, f"{update.stage}: file {finished + 1} of {len(jobs)}")
                continue
            finished += 1
            yield update
            if update.error is None:
                yield _opened(update.job)  # opening the output here keeps the file work off the main thread
        return None
    finally:
        gen.close()  # ends the run where it stands: a partial TIFF is dropped, zarr planes are kept


@dataclass(frozen=True)
class Opened:
    """A finished output, opened lazily in the worker, for the main thread to show."""

    job: Job
    data: object
    axes: str
    scale: dict


def _opened(job: Job) -> Opened:
    path = job.output
    if path.suffix.lower() == ".zarr":
        data, attrs = open_labels(path)
        return Opened(job, data, attrs["axes"], attrs.get("scale") or {})
    stack = read_stack(path, lazy=True, memmap=False)
    return Opened(job, stack.data, stack.axes, stack.scale)


def _written_key(job: Job, settings: str) -> tuple:
    """What makes an output written earlier still right: the same input, settings, and files untouched since."""
    stamp = job.output.stat().st_mtime_ns if job.output.exists() else None
    source = job.input if isinstance(job.input, Path) else id(job.input)
    return source, settings, stamp


def _with_buttons(edit: QLineEdit, *buttons) -> QWidget:
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(edit)
    for text, slot in buttons:
        button = QPushButton(text)
        button.clicked.connect(slot)
        layout.addWidget(button)
    return row
