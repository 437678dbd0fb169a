"""Reader: TIFF / OME-TIFF / ImageJ stacks as image layers with their axes and scale; labels TIFFs as
Labels layers.

A TIFF is labels when napari-unet wrote it (the writer, ``segment``, Batch: their ``Software``
tag says so), or when its name ends in ``_labels`` and it holds integers on one channel; it
opens as a Labels layer with its own dtype, ready to paint and to train on.

The file is opened (lazily when large, see :func:`~napari_unet.core.io.stack_io.read_stack`)
when napari asks whether this plugin can read it, so a TIFF that cannot be read
gets ``None`` and napari tries its other readers.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from ..core.errors import StackFileError
from ..core.io.stack_io import TIFF_SUFFIXES, Stack, is_labels_output, read_stack

PAINTABLE_BYTES = 2**30  # labels up to this size are read into memory, where they can be painted

# Units as TIFF files spell them, to the names napari (pint) knows.
_UNITS = {
    "µm": "micrometer",
    "μm": "micrometer",
    "um": "micrometer",
    "\\u00b5m": "micrometer",
    "micron": "micrometer",
    "microns": "micrometer",
    "micrometer": "micrometer",
    "nm": "nanometer",
    "nanometer": "nanometer",
    "mm": "millimeter",
    "millimeter": "millimeter",
}


def napari_get_reader(path):
    """The reader for one TIFF file that opens, or None (napari then tries other readers)."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    if Path(str(path)).suffix.lower() not in TIFF_SUFFIXES:
        return None
    try:
        stack = read_stack(path)
    except (StackFileError, OSError):
        return None
    return functools.partial(_read, stack)


def _read(stack: Stack, path=None) -> list[tuple]:
    return [labels_data(stack) if is_labels(stack) else layer_data(stack)]


def is_labels(stack: Stack) -> bool:
    """Whether a stack holds labels: written by napari-unet, or named ``*_labels`` with integers and no channels."""
    if stack.path is not None and is_labels_output(stack.path):
        return True
    named = stack.path is not None and stack.path.stem.lower().endswith("_labels")
    return named and stack.dtype.kind in "iu" and not any(a in "CS" for a in stack.axes)


def labels_data(stack: Stack) -> tuple:
    """``(data, kwargs, "labels")``: the ids as stored, with the stack's axes and scale."""
    name = stack.path.stem if stack.path else "labels"
    axes = "".join(a for a in stack.axes if a not in "CS")
    kwargs = _placement(stack, name, axes)
    data = stack.data
    if data.size * data.dtype.itemsize <= PAINTABLE_BYTES:
        data = np.array(data)  # in memory, so that it can be painted (a memory map of the file is read-only)
    return data, kwargs, "labels"


def layer_data(stack: Stack) -> tuple:
    """``(data, kwargs, "image")`` for napari: RGB kept as RGB, other channels split into layers.

    Every layer gets its axes (without the channel axis) in ``metadata["axes"]``,
    the pixel size the file gives as ``scale`` and its unit as ``units``.
    """
    axes = stack.axes
    name = stack.path.stem if stack.path else "image"
    channel = next((a for a in axes if a in "CS"), None)
    rgb = channel == "S" and axes.endswith("S") and stack.shape[-1] in (3, 4)
    kept = axes if rgb else axes.replace(channel, "") if channel else axes
    spatial = kept.replace("S", "")
    kwargs = _placement(stack, name, kept, spatial)
    if rgb:
        kwargs["rgb"] = True
    elif channel:
        n = stack.shape[axes.index(channel)]
        kwargs["channel_axis"] = axes.index(channel)
        kwargs["name"] = [f"{name} ch{i}" for i in range(n)]
    return stack.data, kwargs, "image"


def _placement(stack: Stack, name: str, axes: str, spatial: str | None = None) -> dict:
    """A layer's name, its axes (``metadata["axes"]``), and the file's pixel size and unit over ``spatial``
    (default: ``axes``)."""
    kwargs: dict = {"name": name, "metadata": {"axes": axes}}
    kwargs["scale"] = [stack.scale.get(a, 1.0) for a in (axes if spatial is None else spatial)]
    unit = _UNITS.get((stack.unit or "").strip().lower())
    if unit and stack.scale:
        kwargs["units"] = unit
    return kwargs
