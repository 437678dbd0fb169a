"""Segment TIFF stacks, files or folders of them, into labels with bounded memory.

Each input is opened lazily and read one plane at a time (through zarr, not
a memory map, whose pages would stay resident); each plane is predicted,
labelled and written out before the next is read, so memory holds a plane
or two whatever the stack's size.

Two outputs, with the same labels for the same input:

- a TIFF (``.tif``): planes are streamed into it and ids made unique on the
  way (:class:`~napari_unet.core.labels.stack_ids.StackIds`); the file appears only
  when complete (:class:`~napari_unet.core.io.stack_io.LabelsTiffWriter`);
- a zarr store (``.zarr``): planes go into a store that can be resumed,
  in this process or on a dask cluster, and a last pass numbers the ids
  (:mod:`~napari_unet.core.io.labels_store`).

Bad inputs: everything that can be checked before any work is (readable
headers, axes, channels against the model, outputs that can be written);
files whose axes or channels differ from the others' stop the run before it
starts, since the same options cannot suit both. A file found unreadable or
truncated, before or during the run, is reported and skipped, the others
are segmented, and the run reports the failures at the end. An error writing
(a full disk, say) stops the run; outputs completed before it are kept.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from ..io.axes import PlaneLayout
from ..errors import ImageError, NapariUNetError, StackFileError
from ..predict.inference import Segmenter, iter_labels
from ..io.labels_store import PartialStore, drop_scratch, is_done
from ..progress import Progress
from ..labels.stack_ids import StackIds
from ..io.stack_io import CheckedArray, LabelsTiffWriter
from .uncertainty import UncertaintyOutputs
from .jobs import (
    BatchOptions,
    BatchReport,
    FileDone,
    Job,
    check_inputs,
    iter_plane_labels,
    model_digest,
    open_input,
    signature,
)


def iter_segment_file(
    job: Job,
    segmenter: Segmenter,
    options: BatchOptions = BatchOptions(),
    *,
    client=None,
    model_file: str | None = None,
) -> Generator[Progress, None, Path]:
    """Segment one input into its output; a generator of progress that returns the output path.

    Parameters
    ----------
    job : Job
        Input and output.
    segmenter : Segmenter
        The model on its device.
    options : BatchOptions
        What to make of the input.
    client : distributed.Client, optional
        Segment the planes on this dask cluster (zarr output only; see
        :mod:`~napari_unet.core.batch.cluster`), loading ``model_file`` on each worker.
    """
    if client is not None:
        _check_cluster_job(job)
    stack, layout = open_input(job, segmenter.model.in_channels, options)
    data = CheckedArray(stack.data, stack.path or Path(job.name))
    if not job.to_zarr:
        side = UncertaintyOutputs(job.output, layout.out_shape, layout.out_axes) if options.uncertainty else None
        # The labels close first: if they fail, the uncertainty outputs are not kept either.
        with side if side is not None else nullcontext(), LabelsTiffWriter(
            job.output, layout.out_shape, axes=layout.out_axes, dtype=np.uint32
        ) as writer:
            yield from iter_labels(
                layout,
                data,
                segmenter,
                lambda _, labels: writer.write(labels),
                output=options.labels,
                min_size=options.min_size,
                stitch_z=options.stitch_z,
                stage=job.name,
                with_probabilities=None if side is None else side.add,
            )
        return job.output
    if options.uncertainty:
        raise NapariUNetError(
            f"the uncertainty is written beside TIFF labels; name the output NAME.tif, not {job.output.name}"
        )
    # One object size for the whole input, from its first plane, whatever order the planes are done in
    # (resumed runs, cluster workers): the labels must not depend on scheduling.
    segmenter.new_image()
    yield from segmenter.iter_prepare(layout.plane(data, layout.index(0)))
    digest = model_digest(segmenter.model)
    sig = signature(job, layout, segmenter, options, digest)
    if is_done(job.output, sig, options.stitch_z):
        drop_scratch(job.output)
        return job.output
    store = PartialStore.open(job.output, layout.out_shape, sig)
    pending = store.pending()
    if client is not None:
        from .cluster import WorkerModel, iter_segment_on_cluster

        model = WorkerModel.of(segmenter, model_file, digest)
        yield from iter_segment_on_cluster(client, job.input, store.path, layout, model, options, pending, job.name)
    else:
        yield from _iter_fill(store, pending, segmenter, layout, data, options, job.name)
    ids = StackIds(layout.out_axes[:-2], stitch_z=options.stitch_z) if options.labels == "instances" else None

    def attributes() -> dict:
        return {
            "axes": layout.out_axes,
            "scale": {a: s for a, s in stack.scale.items() if a in layout.out_axes},
            "unit": stack.unit,
            "labels": options.labels,
            "stitch_z": options.stitch_z,
            "objects": None if ids is None else ids.count,
        }

    return (yield from store.iter_finish(job.output, ids, attributes, stage=f"{job.name}: ids"))


def _check_cluster_job(job: Job) -> None:
    if not job.to_zarr:
        raise NapariUNetError(
            f"a dask cluster writes into zarr stores; name the output NAME.zarr, not {job.output.name}"
        )
    if not isinstance(job.input, Path):
        raise NapariUNetError(f"a dask cluster reads its inputs from files, and {job.name} is an array")


def _iter_fill(
    store: PartialStore,
    pending: list[int],
    segmenter: Segmenter,
    layout: PlaneLayout,
    data,
    options: BatchOptions,
    stage: str,
) -> Generator[Progress, None, None]:
    """Segment the ``pending`` planes here, one after the other, into ``store``; progress in tiles.

    A plane's last step is reported once it is stored, so stopping there keeps it.
    """
    per_plane = segmenter.tiles(layout.out_shape[-2:])
    done = (layout.n_planes - len(pending)) * per_plane
    total = layout.n_planes * per_plane
    for number in pending:
        gen = iter_plane_labels(segmenter, layout, data, layout.index(number), options)
        while True:
            try:
                p = next(gen)
            except StopIteration as stop:
                store.write(number, stop.value)
                break
            if p.done < per_plane:
                yield Progress(done + p.done, total, stage)
        done += per_plane
        yield Progress(done, total, stage)


def iter_segment_files(
    jobs: Sequence[Job],
    segmenter: Segmenter,
    options: BatchOptions = BatchOptions(),
    *,
    scheduler=None,
    model_file: str | None = None,
) -> Generator[Progress | FileDone, None, BatchReport]:
    """Segment every job; a generator of :class:`Progress` and one :class:`FileDone` per job.

    Parameters
    ----------
    jobs : sequence of Job
        From :func:`plan_jobs`, or made by hand.
    segmenter : Segmenter
        The model on its device.
    options : BatchOptions
        What to make of each input.
    scheduler : str or distributed.Client, optional
        ``"local"`` / ``"local:N"`` (a cluster of N worker processes on this
        machine), the address of a dask scheduler (``"tcp://host:8786"``), or
        a connected client; None segments here, in this process.
    model_file : str, optional
        The model's file (or built-in name) for the workers to load; needed with ``scheduler``.

    Returns
    -------
    BatchReport
        The jobs written (or already complete) and those that failed, with why.

    Raises
    ------
    ImageError
        Before any work, if an input does not fit the model or the options,
        or the inputs differ in axes or channels.
    OSError
        An output could not be written; the outputs done before are kept.
    """
    if scheduler is not None:
        if model_file is None:
            raise ValueError("a dask cluster needs the model's file (model_file) to load on its workers")
        for job in jobs:
            _check_cluster_job(job)
    checked = check_inputs(jobs, segmenter.model.in_channels, options)
    report = BatchReport()
    if scheduler is None:
        connection = nullcontext(None)
    else:
        from .cluster import connect

        connection = connect(scheduler)
    with connection as client:
        for job, layout in zip(jobs, checked):
            if isinstance(layout, StackFileError):
                report.failed.append((job, str(layout)))
                yield FileDone(job, str(layout))
                continue
            try:
                yield from iter_segment_file(job, segmenter, options, client=client, model_file=model_file)
            except (StackFileError, ImageError) as e:  # this input is bad: report it, go on with the others
                message = str(e) if job.name in str(e) else f"{job.name}: {e}"
                report.failed.append((job, message))
                yield FileDone(job, message)
                continue
            report.written.append(job)
            yield FileDone(job)
    return report


def describe(report: BatchReport) -> str:
    """One line on a run's failures, for messages."""
    names = ", ".join(job.name for job, _ in report.failed)
    total = len(report.written) + len(report.failed)
    return f"{len(report.failed)} of {total} inputs failed ({names}); the others were written"
