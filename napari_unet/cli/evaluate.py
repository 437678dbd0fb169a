"""``napari-unet evaluate``: score a model on images with ground truth, next to the classical baseline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.errors import NapariUNetError
from ..core.evaluation.evaluate import BASELINES, format_table, iter_evaluate, write_report
from ..core.progress import run
from .options import add_image_set_options, add_model_options, add_tiling_options, positive_float, positive_int
from .progressbar import ProgressBar


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score a model on images with ground-truth labels",
        description="Predict each image and compare it with its labels: instance models get AP, precision, "
        "recall and F1 at IoU 0.5..0.9 (pooled over objects); semantic models get pixel accuracy, mean class "
        "accuracy, IoU, Dice, max F-beta and MAE. Prints a table and writes the full report as JSON.",
    )
    add_image_set_options(p, labels="ground-truth label")
    add_model_options(p)
    add_tiling_options(p)
    p.add_argument("--json", help="write the report (pooled and per image) to this JSON file")
    p.add_argument("--baseline", choices=BASELINES, help="also score the classical baseline (Otsu + watershed)")
    p.add_argument(
        "--object-size",
        type=positive_float,
        help="typical object diameter (px), for the model's rescaling and the baseline's seeds (default: estimated)",
    )
    p.add_argument("--min-size", type=positive_int, default=10, help="drop objects smaller than this (pixels)")
    p.set_defaults(run=main)


def main(args: argparse.Namespace) -> int:
    if args.json and not Path(args.json).parent.is_dir():
        raise NapariUNetError(f"cannot write {args.json}: folder {Path(args.json).parent} does not exist")
    gen = iter_evaluate(
        args.model,
        args.images,
        args.labels,
        baseline=args.baseline,
        object_size=args.object_size,
        min_size=args.min_size,
        axes=args.axes,
        channels=args.channels,
        pair_by_order=args.pair_by_order,
        device=args.device,
        tile=args.tile,
        overlap=args.overlap,
        batch_size=args.batch_size,
    )
    with ProgressBar(desc="evaluate", unit="plane") as bar:
        report = run(gen, bar.update)
    print(format_table(report))
    if args.json:
        write_report(report, args.json)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0
