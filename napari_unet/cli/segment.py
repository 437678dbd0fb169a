"""``napari-unet segment``: TIFF files or folders to labels TIFFs or zarr stores, here or on a dask cluster."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.batch.jobs import FORMATS, BatchOptions, FileDone, check_writable, plan_jobs
from ..core.batch.run import describe, iter_segment_files
from ..core.batch.cluster import parse_scheduler
from ..core.batch.uncertainty import check_uncertainty_outputs, uncertainty_paths
from ..core.errors import NapariUNetError
from ..core.predict.inference import OUTPUTS, Segmenter, as_model
from ..core.progress import Notice, Progress, run
from .options import add_model_options, add_tiling_options, channel_list, object_size, positive_int
from .progressbar import ProgressBar


def add_parser(sub) -> None:
    p = sub.add_parser(
        "segment",
        help="segment TIFF images or stacks into labels",
        description="Segment TIFF files (or folders of them) plane by plane into labels TIFFs or zarr stores.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="TIFF file or folder of TIFF files")
    p.add_argument(
        "-o", "--output", required=True, help="labels TIFF or zarr store (NAME.zarr), or a folder for several inputs"
    )
    p.add_argument(
        "--overwrite", action="store_true",
        help="replace existing output files that napari-unet did not write (its own are replaced anyway)",
    )
    p.add_argument("--format", choices=FORMATS, help="output format (default: the output's suffix; tif for a folder)")
    add_model_options(p)
    add_tiling_options(p)
    p.add_argument(
        "--labels", choices=OUTPUTS, help="kind of labels (default: what the model was trained for)"
    )
    p.add_argument("--axes", help="axes of the input, e.g. ZYX or TZCYX (default: from the file)")
    p.add_argument("--channels", type=channel_list, help="input channels to feed the model, e.g. 0 or 1,0")
    p.add_argument("--min-size", type=positive_int, default=10, help="drop objects smaller than this (pixels)")
    p.add_argument(
        "--object-size",
        type=object_size,
        default="auto",
        help="typical object diameter in pixels, or 'auto' to estimate it (default); "
        "the image is rescaled to the size the model was trained at",
    )
    p.add_argument(
        "--stitch-z",
        type=iou_threshold,
        metavar="THRESHOLD",
        help="give one id to objects of consecutive z planes that overlap with an IoU above THRESHOLD (e.g. 0.3)",
    )
    p.add_argument(
        "--uncertainty",
        action="store_true",
        help="also write how sure the model is of each object, beside each labels TIFF: NAME_uncertainty.tif "
        "(each object's pixels hold its score, 0 sure .. 1 doubtful; background 0) and NAME_uncertainty.csv "
        "(a row per object: label, score, area, centroid)",
    )
    p.add_argument(
        "--scheduler",
        help="segment on dask: local (one worker per core), local:N (N workers) or the scheduler address "
        "tcp://HOST:PORT of a running cluster; needs a zarr output",
    )
    p.set_defaults(run=main)


def iou_threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an overlap in (0, 1), got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected an overlap in (0, 1), got {value}")
    return value


def main(args: argparse.Namespace) -> int:
    if args.scheduler is not None:
        parse_scheduler(args.scheduler)
    jobs = plan_jobs(args.inputs, args.output, format=args.format)
    output = Path(args.output)
    if any(job.output.parent == output for job in jobs):  # several inputs: a folder, made if missing
        output.mkdir(exist_ok=True)
    replaced = [job.output for job in jobs if check_writable(job, overwrite=args.overwrite)]
    if args.uncertainty:
        if any(job.to_zarr for job in jobs):
            raise NapariUNetError("--uncertainty is written beside TIFF labels: choose a .tif output, not zarr")
        for job in jobs:
            check_uncertainty_outputs(job.output, overwrite=args.overwrite)
    model = as_model(args.model)
    options = BatchOptions(
        axes=args.axes,
        channels=args.channels,
        labels=args.labels or model.config.task,
        min_size=args.min_size,
        stitch_z=args.stitch_z,
        uncertainty=args.uncertainty,
    )
    segmenter = Segmenter(
        model,
        device=args.device,
        tile=args.tile,
        overlap=args.overlap,
        batch_size=args.batch_size,
        object_size=args.object_size,
    )
    with _Report(replaced, args.uncertainty) as report:
        result = run(
            iter_segment_files(jobs, segmenter, options, scheduler=args.scheduler, model_file=args.model),
            report.update,
        )
    if result.failed:
        if len(jobs) > 1:
            print(f"napari-unet: error: {describe(result)}", file=sys.stderr)
        return 2
    return 0


class _Report:
    """A progress bar per stage, and a line per finished input."""

    def __init__(self, replaced: list[Path], uncertainty: bool = False):
        self._replaced, self._uncertainty = set(replaced), uncertainty
        self._bar: ProgressBar | None = None
        self._stage: str | None = None

    def update(self, update: Progress | Notice | FileDone) -> None:
        if isinstance(update, FileDone):
            self._close()
            if update.error is None:
                note = " (replaced the file that was there)" if update.job.output in self._replaced else ""
                print(f"{update.job.input} -> {update.job.output}{note}", file=sys.stderr)
                if self._uncertainty:
                    print(f"  and {', '.join(map(str, uncertainty_paths(update.job.output)))}", file=sys.stderr)
            else:
                print(f"napari-unet: error: {' '.join(update.error.split())}", file=sys.stderr)
            return
        if isinstance(update, Notice):  # e.g. a fallback to smaller tiles
            print(f"napari-unet: {update.message}", file=sys.stderr)
            return
        if update.stage != self._stage:
            self._close()
            self._bar, self._stage = ProgressBar(desc=update.stage).__enter__(), update.stage
        self._bar.update(update)

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
        self._bar, self._stage = None, None

    def __enter__(self) -> _Report:
        return self

    def __exit__(self, *exc) -> None:
        self._close()
