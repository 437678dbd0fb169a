"""The Correct & Train widget's run: the data fixed when Train is pressed, and the worker that trains.

The worker (:func:`train_job`) runs in a napari ``thread_worker``: it turns the
copied images, labels and reviewed masks into samples, holds part of them out
for validation (after storing them all in the project folder) and drives core's :class:`~napari_unet.core.training.FineTune`,
with torch on all cores but one (the viewer's). It yields :class:`Saved`, :class:`Prepared`,
then the run's :class:`~napari_unet.core.training.Stage` s and :class:`~napari_unet.core.training.TrainUpdate` s, and returns
the :class:`~napari_unet.core.training.TrainResult`. Errors come back as a
:class:`~.predict_job.Failure`.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.devices import steps_on_threads
from ..core.progress import Notice
from ..core.errors import NapariUNetError
from ..core.models.model import Model
from ..core.training import FineTune, Stage, TrainConfig, TrainResult, TrainUpdate, make_samples
from ..core.training.remote import RemoteFineTune
from ..core.training.files import check_objects, median_object_size, scale_to
from ..core.training.project import next_run, save_entries
from .predict_job import Failure


@dataclass
class TrainEntry:
    """One image (or plane of a stack) with its corrected labels and reviewed mask, copied for the worker."""

    name: str
    image: np.ndarray
    axes: str
    labels: np.ndarray
    reviewed: np.ndarray


@dataclass(frozen=True)
class Saved:
    """The training set is stored in the project folder, as training run ``run``."""

    folder: Path
    run: int


@dataclass(frozen=True)
class Prepared:
    """The samples are made: how many planes train and how many validate, in how many runs
    (more than one: each image is held out in turn)."""

    n_train: int
    n_val: int
    runs: int = 1


@dataclass
class TrainJob:
    """Everything a run needs, fixed when Train is pressed."""

    entries: list[TrainEntry]
    model: Model
    config: TrainConfig
    device: str
    threads: int
    project: Path | None = None
    scheduler: str | None = None  # train on a worker of this dask scheduler (None: here)
    trainer: FineTune | None = None
    stop_requested: bool = False
    result: TrainResult | None = None
    failed: bool = False
    started: float = field(default_factory=time.perf_counter)

    def stop(self) -> None:
        """End the run after the current step (from the main thread); the worker still returns its result."""
        self.stop_requested = True
        trainer = self.trainer
        if trainer is not None:
            trainer.stop()


def train_job(
    job: TrainJob,
) -> Generator[Saved | Prepared | Notice | Stage | TrainUpdate | Failure, None, TrainResult | None]:
    """The worker: the training set into the project, samples, validation split, training; returns the
    result (None when it failed: nothing is trained on what could not be stored)."""
    try:
        if job.project is not None:
            run = next_run(job.project)
            save_entries(job.project, run, [(e.name, e.image, e.labels, e.reviewed, e.axes) for e in job.entries])
            yield Saved(job.project, run)
        model, samples = job.model, []
        for entry in job.entries:
            try:
                samples += make_samples(
                    entry.image, entry.labels, model.config, reviewed=entry.reviewed, axes=entry.axes, name=entry.name
                )
            except ValueError as error:
                raise NapariUNetError(f"{entry.name}: {error}") from error
        if not samples:
            raise NapariUNetError("no reviewed pixels in the training set: mark a region as reviewed")
        if model.config.task == "instances":
            for warning in check_objects(samples):
                yield Notice(warning)
            size = model.config.object_size or median_object_size(samples)
            if size:
                model = Model(model.network, model.config.model_copy(update={"object_size": size}))
                samples = scale_to(samples, size)
        if job.scheduler is None:
            trainer = FineTune(model, samples, job.config, device=job.device)
        else:
            trainer = RemoteFineTune(job.scheduler, model, samples, job.config, device=job.device)
        job.trainer = trainer
        if job.stop_requested:
            trainer.stop()
        yield Prepared(trainer.n_train, trainer.n_val, len(trainer.folds))
        job.result = yield from steps_on_threads(trainer.run(), job.threads)
        return job.result
    except NapariUNetError as error:
        yield Failure(str(error))
    except OSError as error:
        yield Failure(f"cannot store the training set in the project folder {job.project}: {error}")
    except Exception as error:  # noqa: BLE001 - the worker would turn a RuntimeError into a mere warning
        yield Failure(f"training failed: {type(error).__name__}: {error}", error)
    return None
