"""Segment TIFF files plane by plane into labels TIFFs, with bounded memory.

Each input is opened lazily, each plane is read, predicted, labelled and
streamed to the output, so memory holds a plane or two whatever the stack's
size. Instance ids are unique across the whole stack. Outputs appear only
when complete (see :class:`~napari_unet.core.stack_io.LabelsTiffWriter`).
"""

from __future__ import annotations

import os
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .axes import plane_layout
from .errors import NapariUNetError
from .inference import Output, Segmenter, iter_labels
from .progress import Progress
from .stack_io import CheckedArray, LabelsTiffWriter, read_stack, tiff_files


@dataclass(frozen=True)
class Job:
    """One input file and where its labels go."""

    input: Path
    output: Path


def plan_jobs(inputs: Sequence[str | os.PathLike], output: str | os.PathLike) -> list[Job]:
    """Pair each input TIFF with its output path; check everything before any work starts.

    ``inputs`` are TIFF files or folders of them. With one input file,
    ``output`` is the labels file (or an existing folder to put it in); with
    several, ``output`` is a folder (created if missing) that receives
    ``<name>_labels.tif`` for each.

    Raises
    ------
    FileNotFoundError, NapariUNetError
        Missing inputs, no TIFF in a folder, an output that would overwrite an input.
    """
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = tiff_files(item)
            if not found:
                raise NapariUNetError(f"no .tif/.tiff files in folder {item}")
            files.extend(found)
        elif item.is_file():
            files.append(item)
        else:
            raise FileNotFoundError(f"no such file or folder: {item}")
    output = Path(output)
    single = len(files) == 1 and not any(Path(i).is_dir() for i in inputs)
    if single and not output.is_dir():
        jobs = [Job(files[0], output)]
    else:
        if output.exists() and not output.is_dir():
            raise NapariUNetError(f"{len(files)} inputs need an output folder, but {output} is a file")
        jobs = [Job(f, output / f"{f.stem}_labels.tif") for f in files]
    inputs_resolved = {f.resolve() for f in files}
    for job in jobs:
        if job.output.resolve() in inputs_resolved:
            raise NapariUNetError(f"the output {job.output} is one of the inputs; refusing to overwrite it")
        if job.output.suffix.lower() not in (".tif", ".tiff"):
            raise NapariUNetError(f"the output must be a .tif/.tiff file, got {job.output}")
    names = [j.output for j in jobs]
    if len(set(names)) != len(names):
        raise NapariUNetError("two inputs have the same name and would write the same output file")
    return jobs


def check_writable(job: Job) -> None:
    """Raise if ``job.output`` cannot be written (before spending time on it)."""
    folder = job.output.parent
    if not folder.is_dir():
        raise NapariUNetError(f"cannot write {job.output}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (job.output.exists() and not os.access(job.output, os.W_OK)):
        raise NapariUNetError(f"cannot write {job.output}: permission denied")


def iter_segment_file(
    job: Job,
    segmenter: Segmenter,
    *,
    axes: str | None = None,
    channels: Sequence[int] | None = None,
    output: Output = "instances",
    min_size: int = 10,
) -> Generator[Progress, None, Path]:
    """Segment one TIFF into a labels TIFF; a generator of tile progress that returns the output path."""
    stack = read_stack(job.input)
    layout = plane_layout(stack.shape, axes or stack.axes, segmenter.model.in_channels, channels)
    with LabelsTiffWriter(job.output, layout.out_shape, axes=layout.out_axes, dtype=np.uint32) as writer:
        yield from iter_labels(
            layout,
            CheckedArray(stack.data, job.input),
            segmenter,
            lambda _, labels: writer.write(labels),
            output=output,
            min_size=min_size,
            stage=job.input.name,
        )
    return job.output
