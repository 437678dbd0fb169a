"""Segment the planes of a stack on a dask cluster, straight into a zarr store.

One task per plane: a worker reads the plane from the input file, segments
it and writes its labels and count into the store
(:meth:`~napari_unet.core.io.labels_store.PartialStore.write`), and returns the
count. Each worker loads the model once, from the model file named in the
task, and keeps it for the next tasks; it checks that what it loaded is the
model the run started with (a digest of config and weights). Workers need
the same files as the client: the inputs, the model and the store on a
shared file system.

The client only waits and reports progress; stopping cancels the planes not
started. Planes already written stay in the store, so a rerun resumes. The
ids are numbered afterwards, in the client, exactly as in a single-process
run, so the result is identical.

``distributed`` is imported only here, and only when a cluster is asked for.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from ..io.axes import PlaneLayout
from ..errors import NapariUNetError
from ..predict.inference import Segmenter
from ..io.labels_store import PartialStore
from ..progress import Progress, run
from ..io.stack_io import CheckedArray, read_stack


@dataclass(frozen=True)
class WorkerModel:
    """What a worker needs to build the run's :class:`Segmenter`: small, sent with every task."""

    file: str
    digest: str
    device: str
    tile: int
    overlap: float
    batch_size: int
    scale: float

    @classmethod
    def of(cls, segmenter: Segmenter, file: str | os.PathLike | None, digest: str) -> WorkerModel:
        if file is None:
            raise ValueError("a dask cluster needs the model's file to load on its workers")
        path = Path(file).expanduser()
        name = str(path.resolve()) if path.is_file() else str(file)  # workers may start elsewhere
        return cls(
            name, digest, segmenter.requested_device, segmenter.tile, segmenter.overlap, segmenter.batch_size,
            segmenter.scale if segmenter.scale is not None else 1.0,
        )


@dataclass(frozen=True)
class PlaneTask:
    """Everything a worker needs for any plane of one input."""

    input: str
    store: str
    layout: PlaneLayout
    model: WorkerModel
    labels: str
    min_size: int


def parse_scheduler(text: str) -> tuple[str, int | None]:
    """``("local", n_workers or None)`` or ``("address", None)`` for a ``--scheduler`` value.

    Raises
    ------
    ValueError
        For anything else, saying what is expected.
    """
    if text == "local":
        return "local", None
    if text.startswith("local:"):
        n = text.partition(":")[2]
        if n.isdigit() and int(n) > 0:
            return "local", int(n)
        raise ValueError(f"expected local:N with N a positive number of workers, got {text!r}")
    if "://" in text:
        return "address", None
    raise ValueError(f"the scheduler must be local, local:N or an address like tcp://host:8786, got {text!r}")


@contextlib.contextmanager
def connect(scheduler) -> Iterator:
    """A ``distributed.Client`` for ``scheduler`` (see :func:`parse_scheduler`), closed afterwards.

    ``local[:N]`` starts a cluster of N single-threaded worker processes on
    127.0.0.1 (N = the number of CPU cores by default) and stops it afterwards.
    A ``Client`` passed in is used as it is and left open.
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError as e:
        raise NapariUNetError("a dask cluster needs the 'distributed' package: pip install distributed") from e
    if isinstance(scheduler, Client):
        yield scheduler
        return
    kind, n_workers = parse_scheduler(scheduler)
    cluster = None
    try:
        if kind == "local":
            # One thread per worker: torch in each worker then uses one core (the nanny sets OMP_NUM_THREADS=1).
            cluster = LocalCluster(
                n_workers=n_workers or os.cpu_count() or 1,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
            client = Client(cluster)
        else:
            try:
                client = Client(scheduler, timeout="30s")
            except OSError as e:
                raise NapariUNetError(f"cannot reach the dask scheduler at {scheduler}: {e}") from e
        try:
            yield client
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()


def iter_segment_on_cluster(
    client,
    input: Path,
    store: Path,
    layout: PlaneLayout,
    model: WorkerModel,
    options,
    pending: list[int],
    stage: str,
) -> Generator[Progress, None, None]:
    """Segment the ``pending`` planes on the cluster into ``store``; a generator of progress in planes.

    The first error a plane raises is raised here, after the other planes are cancelled.
    """
    from distributed import as_completed

    input, store = str(Path(input).resolve()), str(Path(store).resolve())
    task = PlaneTask(input, store, layout, model, options.labels, options.min_size)
    futures = client.map(partial(segment_plane, task), pending, pure=False)
    done = layout.n_planes - len(pending)
    try:
        for future in as_completed(futures):
            future.result()
            done += 1
            yield Progress(done, layout.n_planes, f"{stage}: planes")
    finally:
        client.cancel(futures)


# What each worker process keeps between tasks: the model ready to predict, the open input.
_SEGMENTERS: dict[WorkerModel, Segmenter] = {}
_INPUTS: dict[tuple, CheckedArray] = {}
_LOCK = threading.Lock()


def segment_plane(task: PlaneTask, number: int) -> int:
    """Runs on a worker: segment plane ``number`` of the task's input into its store; returns its largest id."""
    from .jobs import BatchOptions, iter_plane_labels

    segmenter = _segmenter(task.model)
    data = _input(task.input)
    options = BatchOptions(labels=task.labels, min_size=task.min_size)
    labels = run(iter_plane_labels(segmenter, task.layout, data, task.layout.index(number), options))
    PartialStore(Path(task.store)).write(number, labels)
    return int(labels.max()) if labels.size else 0


def _segmenter(spec: WorkerModel) -> Segmenter:
    with _LOCK:
        if spec not in _SEGMENTERS:
            from .jobs import model_digest
            from ..models.model import load_model

            model = load_model(spec.file)
            if model_digest(model) != spec.digest:
                raise NapariUNetError(f"the model {spec.file} on this worker is not the one the run started with")
            segmenter = Segmenter(
                model, device=spec.device, tile=spec.tile, overlap=spec.overlap, batch_size=spec.batch_size
            )
            segmenter.scale = spec.scale  # decided once for the input by the client
            _SEGMENTERS[spec] = segmenter
        return _SEGMENTERS[spec]


def _input(path: str) -> CheckedArray:
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns)
    with _LOCK:
        if key not in _INPUTS:
            _INPUTS.clear()  # one input at a time: a run goes through its files in turn
            _INPUTS[key] = CheckedArray(read_stack(path, lazy=True, memmap=False).data, Path(path))
        return _INPUTS[key]
