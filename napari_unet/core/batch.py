"""Segment TIFF stacks, files or folders of them, into labels with bounded memory.

Each input is opened lazily and read one plane at a time (through zarr, not
a memory map, whose pages would stay resident); each plane is predicted,
labelled and written out before the next is read, so memory holds a plane
or two whatever the stack's size.

Two outputs, with the same labels for the same input:

- a TIFF (``.tif``): planes are streamed into it and ids made unique on the
  way (:class:`~napari_unet.core.stack_ids.StackIds`); the file appears only
  when complete (:class:`~napari_unet.core.stack_io.LabelsTiffWriter`);
- a zarr store (``.zarr``): planes go into a store that can be resumed,
  in this process or on a dask cluster, and a last pass numbers the ids
  (:mod:`~napari_unet.core.labels_store`).

Bad inputs: everything that can be checked before any work is (readable
headers, axes, channels against the model, outputs that can be written);
files whose axes or channels differ from the others' stop the run before it
starts, since the same options cannot suit both. A file found unreadable or
truncated, before or during the run, is reported and skipped, the others
are segmented, and the run reports the failures at the end. An error writing
(a full disk, say) stops the run; outputs completed before it are kept.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Generator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .axes import PlaneLayout, plane_layout
from .errors import ImageError, NapariUNetError, StackFileError
from .inference import OUTPUTS, Output, Segmenter, iter_labels
from .labels_store import PartialStore, complete_store, drop_scratch, is_done
from .model import Model
from .progress import Progress
from .stack_ids import StackIds
from .stack_io import CheckedArray, LabelsTiffWriter, Stack, expand, is_labels_output, read_stack

TIFF_SUFFIXES = (".tif", ".tiff")
ZARR_SUFFIX = ".zarr"
FORMATS = ("tif", "zarr")


@dataclass(frozen=True)
class Job:
    """One input and where its labels go.

    ``input`` is a TIFF file, or a :class:`~napari_unet.core.stack_io.Stack`
    already in hand (a napari layer's data, say); ``output`` ends in
    ``.tif``/``.tiff`` or ``.zarr``.
    """

    input: Path | Stack
    output: Path

    @property
    def name(self) -> str:
        if isinstance(self.input, Path):
            return self.input.name
        return self.input.path.name if self.input.path else self.output.name

    @property
    def to_zarr(self) -> bool:
        return self.output.suffix.lower() == ZARR_SUFFIX


@dataclass(frozen=True)
class BatchOptions:
    """What to make of every input; checked once, here.

    Attributes
    ----------
    axes : str, optional
        Axes of the inputs (``TZCYXS`` subset); from each file by default.
    channels : tuple of int, optional
        Input channels to feed the model, in order.
    labels : {"instances", "semantic"}
        Instance ids (unique in each stack) or class ids.
    min_size : int
        Objects smaller than this many pixels are dropped.
    stitch_z : float, optional
        Give one id to objects of consecutive z planes whose IoU is above this, in (0, 1).
    """

    axes: str | None = None
    channels: tuple[int, ...] | None = None
    labels: Output = "instances"
    min_size: int = 10
    stitch_z: float | None = None

    def __post_init__(self):
        if self.labels not in OUTPUTS:
            raise ValueError(f"labels must be {' or '.join(map(repr, OUTPUTS))}, got {self.labels!r}")
        if self.min_size < 1:
            raise ValueError(f"min_size must be at least 1, got {self.min_size}")
        if self.stitch_z is not None:
            if not 0.0 < self.stitch_z < 1.0:
                raise ValueError(f"the z-stitching threshold is an overlap (IoU) in (0, 1), got {self.stitch_z}")
            if self.labels != "instances":
                raise ValueError("linking objects across z needs instance labels, not semantic ones")
        if self.channels is not None:
            object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))


@dataclass(frozen=True)
class FileDone:
    """Yielded when an input is finished: written (or already complete), or failed with ``error``."""

    job: Job
    error: str | None = None


@dataclass
class BatchReport:
    """What a batch run did."""

    written: list[Job] = field(default_factory=list)
    failed: list[tuple[Job, str]] = field(default_factory=list)


def plan_jobs(
    inputs: Sequence[str | os.PathLike], output: str | os.PathLike, *, format: str | None = None
) -> list[Job]:
    """Pair each input TIFF with its output path; check everything before any work starts.

    ``inputs`` are TIFF files or folders of them. With one input file,
    ``output`` is the labels file or zarr store (or an existing folder to put
    it in); with several, ``output`` is a folder (created if missing) that
    receives ``<name>_labels.tif`` (or ``.zarr``) for each.

    Parameters
    ----------
    format : {"tif", "zarr"}, optional
        Output format; by default from the suffix of ``output``, TIFF for a folder.

    Raises
    ------
    FileNotFoundError, NapariUNetError
        Missing inputs, no TIFF in a folder, an output that would overwrite an input.
    """
    if format is not None and format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    files = expand(inputs)
    output = Path(output)
    single = len(files) == 1 and not any(Path(i).is_dir() for i in inputs)
    if single and (not output.is_dir() or output.suffix.lower() == ZARR_SUFFIX):
        jobs = [Job(files[0], output)]
    else:
        if output.exists() and not output.is_dir():
            raise NapariUNetError(f"{len(files)} inputs need an output folder, but {output} is a file")
        if not output.exists() and output.suffix.lower() in TIFF_SUFFIXES + (ZARR_SUFFIX,):
            raise NapariUNetError(
                f"{len(files)} inputs need an output folder, but {output} names a {output.suffix} file; "
                "give a folder (one output is written in it per input)"
            )
        suffix = ZARR_SUFFIX if format == "zarr" else ".tif"
        jobs = [Job(f, output / f"{f.stem}_labels{suffix}") for f in files]
    inputs_resolved = {f.resolve() for f in files}
    for job in jobs:
        if job.output.resolve() in inputs_resolved:
            raise NapariUNetError(f"the output {job.output} is one of the inputs; refusing to overwrite it")
        kind = job.output.suffix.lower()
        if kind not in TIFF_SUFFIXES + (ZARR_SUFFIX,):
            raise NapariUNetError(f"the output must be a .tif/.tiff file or a .zarr store, got {job.output}")
        if format is not None and (kind == ZARR_SUFFIX) != (format == "zarr"):
            raise NapariUNetError(f"the output {job.output} does not match the format {format!r}")
    names = [j.output for j in jobs]
    if len(set(names)) != len(names):
        raise NapariUNetError("two inputs have the same name and would write the same output")
    return jobs


def check_writable(job: Job, *, overwrite: bool = False) -> bool:
    """Raise if ``job.output`` cannot be written (before spending time on it); True when it would
    replace an existing output.

    What is there may be replaced when napari-unet wrote it (a labels TIFF
    tagged as ours, a labels store); anything else, say a ground-truth
    ``<name>_labels.tif``, only with ``overwrite``.
    """
    folder = job.output.parent
    if not folder.is_dir():
        raise NapariUNetError(f"cannot write {job.output}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise NapariUNetError(f"cannot write {job.output}: permission denied in folder {folder}")
    if job.to_zarr:
        return complete_store(job.output) is not None  # raises for something that is not a labels store
    if not job.output.exists():
        return False
    if job.output.is_dir():
        raise NapariUNetError(f"cannot write {job.output}: it is a folder")
    if not os.access(job.output, os.W_OK):
        raise NapariUNetError(f"cannot write {job.output}: the file is read-only")
    if not overwrite and not is_labels_output(job.output):
        raise NapariUNetError(
            f"{job.output} exists and was not written by napari-unet; refusing to replace it "
            "(choose another output, or --overwrite)"
        )
    return True


def open_input(job: Job, in_channels: int, options: BatchOptions) -> tuple[Stack, PlaneLayout]:
    """The input's stack, opened lazily for streaming, and how its planes feed the model.

    Raises
    ------
    StackFileError
        The file cannot be read.
    ImageError
        Its axes do not fit the model or the options.
    """
    stack = read_stack(job.input, lazy=True, memmap=False) if isinstance(job.input, Path) else job.input
    try:
        layout = plane_layout(stack.shape, options.axes or stack.axes, in_channels, options.channels)
    except ImageError as e:
        raise ImageError(f"{job.name}: {e}") from None
    if options.stitch_z is not None and "Z" not in layout.out_axes[:-2]:
        raise ImageError(f"linking objects across z needs a Z axis, but {job.name} has axes {layout.axes!r}")
    return stack, layout


def check_inputs(jobs: Sequence[Job], in_channels: int, options: BatchOptions) -> list[PlaneLayout | StackFileError]:
    """Open every input before any work; an unreadable file is returned as its error, to report and skip.

    Files are closed again (a folder may hold more than a process may keep
    open); each is opened anew when its turn comes.

    Raises
    ------
    ImageError
        An input that does not fit the model or the options, or inputs whose
        axes or channels differ while axes or channels were given (the same
        ones cannot suit them all). Without them, each file is segmented with
        its own axes: a folder of grey and RGB images is fine.
    """
    checked: list[PlaneLayout | StackFileError] = []
    for job in jobs:
        try:
            checked.append(open_input(job, in_channels, options)[1])
        except StackFileError as e:
            checked.append(e)
    kinds: dict[tuple[str, int], str] = {}
    for job, layout in zip(jobs, checked):
        if not isinstance(layout, StackFileError):
            n_channels = layout.shape[layout.axes.index(layout.channel_axis)] if layout.channel_axis else 1
            kinds.setdefault((layout.axes, n_channels), f"{job.name} has axes {layout.axes} and shape {layout.shape}")
    if len(kinds) > 1 and (options.axes is not None or options.channels is not None):
        raise ImageError(
            "the inputs differ in their axes or channels, so the same --axes / --channels cannot suit them all: "
            + "; ".join(kinds.values())
            + ". Segment them in separate runs."
        )
    return checked


def model_digest(model: Model) -> str:
    """SHA-256 of a model's config and weights: the same however the model was loaded."""
    h = hashlib.sha256(model.config.model_dump_json().encode())
    for name, tensor in sorted(model.network.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def signature(job: Job, layout: PlaneLayout, segmenter: Segmenter, options: BatchOptions, digest: str) -> dict:
    """What determines a store's raw planes: a resumed store must have been started with the same.

    An input given as an array has no identity to compare, so its stores are never resumed.
    """
    if isinstance(job.input, Path):
        st = job.input.stat()
        source = {"path": str(job.input.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    else:
        source = {"array": uuid.uuid4().hex}
    return {
        "input": source,
        "model": digest,
        "axes": layout.axes,
        "shape": list(layout.shape),
        "channels": None if layout.channels is None else list(layout.channels),
        "to_grey": layout.to_grey,
        "labels": options.labels,
        "min_size": options.min_size,
        "tile": segmenter.tile,
        "overlap": segmenter.overlap,
        "scale": segmenter.scale,
    }


def iter_plane_labels(
    segmenter: Segmenter, layout: PlaneLayout, data, index: tuple[int, ...], options: BatchOptions
) -> Generator[Progress, None, np.ndarray]:
    """Labels of one plane, ids from 1 (before stack numbering); a generator of tile progress."""
    prob = yield from segmenter.iter_probabilities(layout.plane(data, index))
    return segmenter.labels(prob, output=options.labels, min_size=options.min_size)


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
        :mod:`~napari_unet.core.cluster`), loading ``model_file`` on each worker.
    """
    if client is not None:
        _check_cluster_job(job)
    stack, layout = open_input(job, segmenter.model.in_channels, options)
    data = CheckedArray(stack.data, stack.path or Path(job.name))
    if not job.to_zarr:
        with LabelsTiffWriter(job.output, layout.out_shape, axes=layout.out_axes, dtype=np.uint32) as writer:
            yield from iter_labels(
                layout,
                data,
                segmenter,
                lambda _, labels: writer.write(labels),
                output=options.labels,
                min_size=options.min_size,
                stitch_z=options.stitch_z,
                stage=job.name,
            )
        return job.output
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
