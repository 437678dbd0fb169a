"""``napari-unet export``: a model as a bioimage.io model package, checked by bioimage.io's own test."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.errors import NapariUNetError
from ..core.exchange.bioimageio import (
    DEFAULT_AUTHOR,
    DEFAULT_LICENSE,
    U_NET_PAPER,
    check_package,
    export_bioimageio,
    shipped_sample,
)
from ..core.io.stack_io import read_stack
from ..core.models.model import load_model
from ..core.models.package import PACKAGE_SUFFIX, is_package



def add_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="write a model as a bioimage.io model package (.zip) for Fiji, ilastik, QuPath, the model zoo",
        description="Write a model as a bioimage.io model package (spec 0.5): weights as a PyTorch state dict with "
        "the architecture's source and as TorchScript, the normalisation as preprocessing, test tensors and a cover "
        "from a real image, documentation from the model's provenance, and napari-unet's post-processing in the "
        "package's config (napari-unet reads the package back as the same model: --model NAME.zip). The package is "
        "then checked with bioimage.io's own model test. Needs pip install 'napari-unet[bioimageio]'.",
    )
    p.add_argument("model", help="'default', a model file (.safetensors) or a package napari-unet wrote")
    p.add_argument("-o", "--output", required=True, help=f"the package to write (NAME{PACKAGE_SUFFIX})")
    p.add_argument(
        "--sample", help="an image TIFF for the test tensors and the cover (default: a sample image shipped with "
        "napari-unet that has the model's channels)"
    )
    p.add_argument("--name", help="the model's name in the package")
    p.add_argument("--description", help="one sentence on what the model does")
    p.add_argument("--author", action="append", help=f"an author (repeat for several; default: {DEFAULT_AUTHOR!r})")
    p.add_argument(
        "--cite", action="append", metavar="TEXT=DOI",
        help=f"a citation, its text and DOI (repeat for several; default: the U-Net paper, {U_NET_PAPER[1]})",
    )
    p.add_argument("--license", default=DEFAULT_LICENSE, help=f"SPDX licence id (default {DEFAULT_LICENSE})")
    p.add_argument("--no-test", action="store_true", help="skip bioimage.io's model test")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file that is not a model package")
    p.set_defaults(run=main)


def main(args: argparse.Namespace) -> int:
    output = Path(args.output)
    if output.suffix.lower() != PACKAGE_SUFFIX:
        raise NapariUNetError(f"the package must be a {PACKAGE_SUFFIX} file, got {output}")
    if not output.parent.is_dir():
        raise NapariUNetError(f"cannot write {output}: folder {output.parent} does not exist")
    if output.exists() and not (args.overwrite or is_package(output)):
        raise NapariUNetError(f"{output} exists and is not a model package; refusing to replace it (or --overwrite)")
    cite = tuple(_citation(c) for c in args.cite) if args.cite else (U_NET_PAPER,)
    model = load_model(args.model)
    sample = _sample(args.sample, model.in_channels)
    export_bioimageio(
        model, output, sample=sample, name=args.name, description=args.description,
        authors=tuple(args.author or (DEFAULT_AUTHOR,)), cite=cite, license=args.license,
    )
    print(f"wrote {output}", file=sys.stderr)
    if args.no_test:
        return 0
    passed, report = check_package(output)
    print(f"bioimage.io model test: {'passed' if passed else 'FAILED'}", file=sys.stderr)
    if not passed:
        print(report, file=sys.stderr)
        return 1
    return 0


def _citation(text: str) -> tuple[str, str]:
    what, sep, doi = text.rpartition("=")
    if not sep or not what.strip() or not doi.strip():
        raise NapariUNetError(f"--cite expects TEXT=DOI, e.g. 'Smith et al. 2024=10.1000/xyz', got {text!r}")
    return what.strip(), doi.strip()


def _sample(path: str | None, channels: int):
    return read_stack(path).data if path is not None else shipped_sample(channels)
