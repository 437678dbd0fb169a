"""Between napari layers and the core's arrays: axes, the plane on screen, and writing labels back.

Used by the widgets, on the main thread only.
"""

from __future__ import annotations

import zlib

import numpy as np
from napari.utils.events import Event

from ..core.io.axes import CHANNEL_AXES
from ..core.errors import ImageError

_LEADING = "QTZ"


def image_array(layer):
    """An Image layer's pixels at full resolution (the first level of a multiscale layer)."""
    return layer.data[0] if layer.multiscale else layer.data


def image_axes(layer) -> str:
    """Axis letters of an Image layer's data.

    ``metadata["axes"]`` when it fits the data (the reader, the sample data and
    Predict set it); otherwise napari's convention: the last two axes are Y and X
    (then S for RGB), the ones before are iterated.
    """
    shape = tuple(image_array(layer).shape)
    axes = (layer.metadata or {}).get("axes")
    if not (isinstance(axes, str) and len(axes) == len(shape)):
        tail = "YXS" if layer.rgb else "YX"
        extra = len(shape) - len(tail)
        if extra > len(_LEADING):
            raise ImageError(
                f"layer {layer.name!r} has {len(shape)} dimensions (shape {shape}) and no axes in its metadata; "
                f"expected at most {len(_LEADING) + len(tail)}, or metadata['axes'] naming them (e.g. 'TZCYX')"
            )
        axes = _LEADING[len(_LEADING) - extra :] + tail
    axes = axes.upper()
    displayed = axes[:-1] if layer.rgb else axes
    if displayed[-2:] != "YX":
        raise ImageError(
            f"layer {layer.name!r} has axes {axes!r}; expected Y and X as the last axes (as napari shows them)"
        )
    return axes


def labels_shape(shape: tuple[int, ...], axes: str) -> tuple[int, ...]:
    """Shape of the labels of an image of ``shape`` / ``axes``: the channel axis dropped."""
    return tuple(n for a, n in zip(axes, shape) if a not in CHANNEL_AXES)


def plane_at_cursor(layer, viewer, axes: str) -> tuple[int, ...]:
    """Index over the iterated axes (not channels, Y, X) of the plane the viewer shows of ``layer``."""
    layer_axes = axes[:-1] if layer.rgb else axes
    point = np.asarray(layer.world_to_data(viewer.dims.point))[-len(layer_axes) :]
    return tuple(
        int(np.clip(np.round(p), 0, n - 1))
        for a, p, n in zip(layer_axes, point, image_array(layer).shape)
        if a not in CHANNEL_AXES + "YX"
    )


def fingerprint(array) -> int:
    """A checksum of an array's values, shape and dtype: equal fingerprints mean unchanged data."""
    array = np.ascontiguousarray(array)
    header = f"{array.shape}{array.dtype.str}".encode()
    return zlib.crc32(memoryview(array).cast("B"), zlib.crc32(header))


def write_undoable(layer, index: tuple[int, ...], values: np.ndarray) -> int:
    """Write ``values`` into the plane ``index`` of a Labels layer as an undoable change.

    Only the pixels that change are written (``Labels.data_setitem``, napari's
    own undo history); wrap several calls in ``layer.block_history()`` to make
    them one undo step. Returns the number of pixels changed.
    """
    current = np.asarray(layer.data[index])
    changed = np.nonzero(current != values)
    n = changed[0].size
    if n:
        where = tuple(np.full(n, i, dtype=np.intp) for i in index) + changed
        layer.data_setitem(where, values[changed])
    return n


def write_plane(layer, index: tuple[int, ...], values: np.ndarray) -> None:
    """Write ``values`` into the plane ``index`` of a layer, with no undo (a layer made for the result)."""
    layer.data[index] = values
    layer.refresh()


def widen_for(layer, largest: int) -> bool:
    """Give a Labels layer an integer dtype that holds ``largest``; True if its data had to be replaced.

    Replacing the data clears napari's undo history of the layer.
    """
    dtype = np.dtype(layer.data.dtype)
    if largest <= np.iinfo(dtype).max:
        return False
    for wider in (np.uint16, np.uint32, np.uint64):
        if largest <= np.iinfo(wider).max and np.dtype(wider).itemsize > dtype.itemsize:
            layer.data = np.asarray(layer.data).astype(wider)
            return True
    raise ImageError(f"label {largest} does not fit any integer type")


def smallest_label_dtype(largest: int) -> np.dtype:
    """uint16 unless ``largest`` needs more: napari draws 8/16-bit labels far faster than 32-bit ones,
    and 16 bits leave room for ids painted by hand."""
    return np.dtype(np.uint16 if largest <= np.iinfo(np.uint16).max else np.uint32)


# ---- predictions written into Labels layers, shared by the widgets ------------------------------

# Kept with the layer (in its metadata), so that it goes with the layer and no widget holds it.
PREDICTED = "napari_unet_predicted"  # plane index -> fingerprint of what a widget last wrote there
WRITING = "napari_unet_writing"  # present while a widget writes a prediction into the layer
WRITTEN_EVENT = "napari_unet_prediction"  # the layer's event after each prediction written (``plane``: its index)
REVIEWED = "napari_unet_reviewed"  # plane index -> (Y, X) bool: objects marked reviewed (Label tools), with a margin


class writing_prediction:
    """Context of a widget writing a prediction into plane ``index`` of ``layer``.

    Meanwhile :func:`is_writing_prediction` is true for the layer (its paint
    events are the widget's, not the user's); afterwards the plane's fingerprint
    is kept with the layer (:func:`predicted_fingerprint`) and the layer's event
    :data:`WRITTEN_EVENT` is emitted with the plane's index as ``plane``, for those that
    :func:`follow_predictions`.
    """

    def __init__(self, layer, index: tuple[int, ...], written: int | None = None):
        self.layer, self.index, self.written = layer, tuple(index), written  # written: the plane's fingerprint, if known

    def __enter__(self):
        self.layer.metadata[WRITING] = True
        return self

    def __exit__(self, exc_type, exc, tb):
        self.layer.metadata.pop(WRITING, None)
        if exc_type is None:
            written = self.written if self.written is not None else fingerprint(self.layer.data[self.index])
            self.layer.metadata.setdefault(PREDICTED, {})[self.index] = written
            self.layer.metadata.get(REVIEWED, {}).pop(self.index, None)  # marks of the last prediction: gone with it
            emitter = getattr(self.layer.events, WRITTEN_EVENT, None)
            if emitter is not None:
                emitter(plane=self.index)


def mark_reviewed(layer, index: tuple[int, ...], mask: np.ndarray) -> None:
    """Add ``mask`` (``(Y, X)``) to what counts as reviewed in plane ``index`` of ``layer``
    (see :func:`reviewed_marks`)."""
    marks = layer.metadata.setdefault(REVIEWED, {})
    index = tuple(int(i) for i in index)
    marks[index] = marks[index] | mask if index in marks else np.asarray(mask, bool).copy()


def reviewed_marks(layer) -> dict[tuple[int, ...], np.ndarray]:
    """What was marked reviewed in each plane since its last prediction: Correct & Train counts it as reviewed
    ("around what was painted"), edited or not."""
    return layer.metadata.get(REVIEWED, {})


def is_writing_prediction(layer) -> bool:
    return WRITING in layer.metadata


def predicted_fingerprint(layer, index: tuple[int, ...]) -> int | None:
    """The fingerprint of what a widget last wrote into plane ``index`` of ``layer``, None if nothing."""
    return layer.metadata.get(PREDICTED, {}).get(tuple(index))


def follow_predictions(layer):
    """The layer's event emitted after each prediction written into it (made on first use)."""
    if getattr(layer.events, WRITTEN_EVENT, None) is None:
        layer.events.add(**{WRITTEN_EVENT: Event})
    return getattr(layer.events, WRITTEN_EVENT)
