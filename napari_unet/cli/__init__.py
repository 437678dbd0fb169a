"""The ``napari-unet`` command: one module per subcommand, over the same core the widgets use.

Bad input ends with one line on stderr, ``napari-unet: error: ...``, and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    # The subcommands import torch: done here, inside main's handling of Ctrl+C, not at import.
    from .. import __version__
    from . import evaluate, export, segment, train

    parser = argparse.ArgumentParser(prog="napari-unet", description="U-Net segmentation of microscopy images.")
    parser.add_argument("--version", action="version", version=f"napari-unet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (segment, train, evaluate, export):
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except KeyboardInterrupt:
        print("napari-unet: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as e:  # bad input: our errors are ValueErrors; files give OSErrors
        message = " ".join(str(e).split())
        print(f"napari-unet: error: {message}", file=sys.stderr)
        return 2
