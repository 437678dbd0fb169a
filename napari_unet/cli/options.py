"""Arguments shared by several subcommands, parsed the same way everywhere."""

from __future__ import annotations

import argparse
import math

from pydantic import ValidationError

from ..core.devices import DEVICE_CHOICES
from ..core.errors import NapariUNetError


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default="default", help="model file (.safetensors), bioimage.io package (.zip), or 'default'"
    )
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES, help="where to run (default: auto)")


def add_image_set_options(parser: argparse.ArgumentParser, *, labels: str, masks: bool = False) -> None:
    """Images with their labels (``labels``: what the labels are), paired by name or by order."""
    parser.add_argument("--images", nargs="+", required=True, help="image TIFFs or folders")
    parser.add_argument("--labels", nargs="+", required=True, help=f"{labels} TIFFs or folders, one per image")
    if masks:
        parser.add_argument("--masks", nargs="+", help="reviewed-region TIFFs (nonzero = reviewed), one per image")
    parser.add_argument("--axes", help="axes of the images (default: from the files)")
    parser.add_argument("--channels", type=channel_list, help="image channels to feed the model, e.g. 0 or 1,0")
    parser.add_argument(
        "--pair-by-order",
        action="store_true",
        help=f"pair images with labels{' (and masks)' if masks else ''} in sorted order when their names do not pair",
    )


def add_tiling_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tile", type=positive_int, default=None, help="tile side in pixels (default: the model's)")
    parser.add_argument(
        "--overlap",
        type=overlap,
        default=None,
        help="what adjacent tiles share: a fraction of the tile below 1, or pixels from 1 up (default: the model's)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=4, help="tiles per forward pass (default 4)")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _finite(text: str, expected: str) -> float:
    """``text`` as a finite number, or the parser's error: "expected <expected>, got <text>"."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = _finite(text, "a positive number")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def settings_error(what: str, error: ValidationError) -> NapariUNetError:
    """A pydantic validation error as one line that names the settings, each field and what it got."""
    parts = []
    for e in error.errors():
        field = ".".join(str(p) for p in e["loc"]) or "settings"
        parts.append(f"{field}: {e['msg']} (got {e.get('input')!r})")
    return NapariUNetError(f"bad {what}: {'; '.join(parts)}")


def overlap(text: str) -> float:
    value = _finite(text, "a fraction in [0, 1) or whole pixels")
    if value < 0 or (value >= 1 and value != int(value)):
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1) or whole pixels, got {value}")
    return value


def channel_list(text: str) -> list[int]:
    try:
        return [int(c) for c in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected channel indices like 0 or 1,0, got {text!r}") from None


def object_size(text: str) -> float | str:
    if text == "auto":
        return text
    value = _finite(text, "a positive diameter in pixels or 'auto'")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive diameter in pixels or 'auto', got {text!r}")
    return value
