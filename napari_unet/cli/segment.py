"""``napari-unet segment``: TIFF files or folders to labels TIFFs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.batch import check_writable, iter_segment_file, plan_jobs
from ..core.inference import Segmenter, as_model
from ..core.progress import run
from .options import add_model_options, add_tiling_options, channel_list, object_size, positive_int
from .progressbar import ProgressBar


def add_parser(sub) -> None:
    p = sub.add_parser(
        "segment",
        help="segment TIFF images or stacks into labels",
        description="Segment TIFF files (or folders of them) plane by plane into labels TIFFs.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="TIFF file or folder of TIFF files")
    p.add_argument("-o", "--output", required=True, help="labels TIFF, or a folder for several inputs")
    add_model_options(p)
    add_tiling_options(p)
    p.add_argument("--labels", choices=("instances", "semantic"), default="instances", help="kind of labels")
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
    p.set_defaults(run=main)


def main(args: argparse.Namespace) -> int:
    jobs = plan_jobs(args.inputs, args.output)
    output = Path(args.output)
    if any(job.output.parent == output for job in jobs):  # several inputs: a folder, made if missing
        output.mkdir(exist_ok=True)
    for job in jobs:
        check_writable(job)
    model = as_model(args.model)
    segmenter = Segmenter(
        model,
        device=args.device,
        tile=args.tile,
        overlap=args.overlap,
        batch_size=args.batch_size,
        object_size=args.object_size,
    )
    for job in jobs:
        with ProgressBar(desc=job.input.name) as bar:
            gen = iter_segment_file(
                job, segmenter, axes=args.axes, channels=args.channels, output=args.labels, min_size=args.min_size
            )
            run(gen, bar.update)
        print(f"{job.input} -> {job.output}", file=sys.stderr)
    return 0
