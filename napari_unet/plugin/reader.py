"""Reader: TIFF / OME-TIFF / ImageJ stacks as image layers with their axes and scale."""

from __future__ import annotations

from pathlib import Path

from ..core.errors import StackFileError
from ..core.stack_io import Stack, is_tiff, read_stack


def napari_get_reader(path):
    """Return a reader for a TIFF file, or None for anything else (napari tries other readers)."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    if Path(path).suffix.lower() not in (".tif", ".tiff") or not is_tiff(path):
        return None
    return read_tiff


def read_tiff(path) -> list[tuple]:
    """One image layer (or one per channel) from a TIFF file, lazily for large files."""
    if isinstance(path, list):
        path = path[0]
    try:
        stack = read_stack(path)
    except StackFileError:
        raise
    return [layer_data(stack)]


def layer_data(stack: Stack) -> tuple:
    """``(data, kwargs, "image")`` for napari, channels split and scale set from the file."""
    axes = stack.axes
    kwargs: dict = {"name": stack.path.stem if stack.path else "image", "metadata": {"axes": axes}}
    spatial = [a for a in axes if a not in "CS"]
    kwargs["scale"] = [stack.scale.get(a, 1.0) for a in spatial]
    if stack.unit:
        kwargs["units"] = _napari_unit(stack.unit)
    if "S" in axes and stack.shape[axes.index("S")] in (3, 4) and axes.endswith("S"):
        kwargs["rgb"] = True
    elif "C" in axes:
        kwargs["channel_axis"] = axes.index("C")
        kwargs["metadata"] = {"axes": axes.replace("C", "")}
    return stack.data, kwargs, "image"


def _napari_unit(unit: str) -> str:
    return {"µm": "micrometer", "um": "micrometer", "\\u00B5m": "micrometer", "micron": "micrometer", "nm": "nanometer"}.get(
        unit, unit
    )
