"""The Predict widget's run: what is fixed when Run is pressed, and the worker that does it.

The worker (:func:`predict_job`) runs in a napari ``thread_worker``: it drives
core's :func:`~napari_unet.core.predict.inference.iter_planes` and readies each finished
plane for the layer (id offset, dtype, fingerprint) so the main thread only
writes it. Errors come back as a :class:`Failure` instead of being raised, as the
worker would turn a ``RuntimeError`` (torch's errors) into a mere warning.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass, field

import numpy as np

from ..core.devices import steps_on_threads
from ..core.errors import NapariUNetError
from ..core.labels.uncertainty import ObjectScores
from ..core.predict.inference import PlaneResult, Segmenter, iter_planes
from ..core.models.model import Model
from ..core.progress import Notice, Progress
from .layers import fingerprint


@dataclass(frozen=True)
class Failure:
    """The worker could not finish: a message for the user, and the error when it is a bug."""

    message: str
    error: BaseException | None = None


@dataclass(frozen=True)
class FinishedPlane:
    """A plane ready to write: ``index`` in the layer, values in the layer's dtype and their fingerprint."""

    index: tuple[int, ...]
    data: np.ndarray
    fingerprint: int | None
    uncertainty: tuple[np.ndarray, ObjectScores] | None = None  # per pixel, and per object (ids as in ``data``)


@dataclass(frozen=True)
class SizeEstimate:
    """The object diameter (pixels) estimated from the image, for the user to see (and keep or correct)."""

    pixels: float


@dataclass
class Job:
    """Everything a run needs, fixed when Run is pressed."""

    image: object
    axes: str
    model: Model
    output: str
    planes: list[tuple[int, ...]] | None
    origin: tuple[int, ...] | None
    device: str
    tile: int | None
    threads: int
    target: object  # the Labels (or, for probabilities, Image) layer written into
    new_target: bool
    object_size: float | str = "auto"
    uncertainty: bool = False
    estimated_size: float | None = None
    dtype: np.dtype | None = None
    offset: int = 0
    approved: dict[tuple[int, ...], int] = field(default_factory=dict)
    written: int = 0
    failed: bool = False
    stop_reason: str | None = None  # why the widget stopped the run, when not the Stop button
    started: float = field(default_factory=time.perf_counter)

    def layer_index(self, index: tuple[int, ...]) -> tuple[int, ...]:
        """The plane of the layer that ``index`` (a plane of :attr:`image`) stands for."""
        return self.origin if self.origin is not None else index


def predict_job(job: Job) -> Generator[Progress | Notice | SizeEstimate | FinishedPlane | Failure, None, None]:
    """The worker: predicts the job's planes, and readies each one for the layer in this thread."""
    try:
        segmenter = Segmenter(job.model, device=job.device, tile=job.tile, batch_size=1, object_size=job.object_size)
        planes = iter_planes(
            job.image, segmenter, axes=job.axes, output=job.output, planes=job.planes, uncertainty=job.uncertainty
        )
        for update in steps_on_threads(planes, job.threads):
            yield finish_plane(job, update) if isinstance(update, PlaneResult) else update
        if segmenter.estimates_size and segmenter.image_object_size is not None:
            yield SizeEstimate(segmenter.image_object_size)  # one estimate per run (the first plane's)
    except (NapariUNetError, FileNotFoundError) as error:
        yield Failure(str(error))
    except Exception as error:  # noqa: BLE001 - the worker would turn a RuntimeError into a mere warning
        yield Failure(f"prediction failed: {type(error).__name__}: {error}", error)


def finish_plane(job: Job, result: PlaneResult) -> FinishedPlane:
    """Offset instance ids, cast to the layer's dtype and fingerprint: heavy work kept off the main thread."""
    data, sure = result.data, result.uncertainty
    if job.output == "instances" and job.offset:
        data[data > 0] += job.offset
        sure = None if sure is None else (sure[0], sure[1].shifted(job.offset))
    if job.dtype is not None and (data.size == 0 or data.max() <= np.iinfo(job.dtype).max):
        data = data.astype(job.dtype, copy=False)
        return FinishedPlane(result.index, data, fingerprint(data), sure)
    return FinishedPlane(result.index, data, None, sure)


def copy_for_worker(data, iterated: list[int], origin: tuple[int, ...] | None):
    """The image for the worker, and its planes to predict.

    The plane on screen is copied alone (iterated axes kept, of length 1); a
    whole image is copied when it lives in writable memory. Read-only data
    (memory-mapped files, zarr, dask) is read by the worker as it is.
    """
    if origin is None:
        if isinstance(data, np.ndarray) and data.flags.writeable:
            data = data.copy()
        return data, None
    key = [slice(None)] * len(data.shape)
    for axis, i in zip(iterated, origin):
        key[axis] = slice(i, i + 1)
    plane = data[tuple(key)]
    plane = np.array(plane) if isinstance(plane, np.ndarray) else np.asarray(plane)
    return plane, [(0,) * len(origin)]


def largest_label_elsewhere(labels, index: tuple[int, ...]) -> int:
    """The largest id in the planes other than ``index``: a new plane's ids start above it."""
    largest = 0
    for other in np.ndindex(*labels.shape[: len(index)]):
        if other != index:
            largest = max(largest, int(np.max(labels[other])))
    return largest
