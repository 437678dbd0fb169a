"""What a batch run is made of: the jobs (input -> output), their options and checks, one plane's labels.

See :mod:`.run` for the run itself.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io.axes import PlaneLayout, plane_layout
from ..errors import ImageError, NapariUNetError, StackFileError
from ..predict.inference import OUTPUTS, Output, Segmenter
from ..io.labels_store import complete_store
from ..models.model import Model
from ..progress import Progress
from ..io.stack_io import Stack, expand, is_labels_output, read_stack


TIFF_SUFFIXES = (".tif", ".tiff")
ZARR_SUFFIX = ".zarr"
FORMATS = ("tif", "zarr")


@dataclass(frozen=True)
class Job:
    """One input and where its labels go.

    ``input`` is a TIFF file, or a :class:`~napari_unet.core.io.stack_io.Stack`
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
    uncertainty : bool
        Also write each object's uncertainty beside the labels (TIFF outputs of instance labels; see
        :mod:`~napari_unet.core.batch.uncertainty`).
    """

    axes: str | None = None
    channels: tuple[int, ...] | None = None
    labels: Output = "instances"
    min_size: int = 10
    stitch_z: float | None = None
    uncertainty: bool = False

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
        if self.uncertainty and self.labels != "instances":
            raise ValueError("the uncertainty is each object's: it needs instance labels, not semantic ones")
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
