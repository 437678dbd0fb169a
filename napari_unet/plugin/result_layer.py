"""Where a prediction goes: a new layer placed over its image, and asking before labels are overwritten.

Shared by Predict (a layer per output, or one the user chose) and Correct &
Train (a "<image> prediction" layer beside the corrections).
"""

from __future__ import annotations

import numpy as np
from napari.layers import Image, Labels
from qtpy.QtWidgets import QMessageBox

from .layers import (
    CHANNEL_AXES,
    fingerprint,
    smallest_label_dtype,
    widen_for,
    write_plane,
    write_undoable,
    writing_prediction,
)


def add_result_layer(viewer, image, axes: str, out_shape: tuple[int, ...], output: str, name: str, model):
    """A new layer for ``model``'s ``output`` of ``image`` (axes ``axes``), of ``out_shape`` (its planes, no
    channels), on the image's scale, translation and units: an Image layer of class probabilities, or a
    Labels layer (uint8 for semantic labels, the smallest type that draws fast for instances)."""
    displayed = axes[:-1] if image.rgb else axes
    keep = [i for i, a in enumerate(displayed) if a not in CHANNEL_AXES]
    where = {
        "scale": [image.scale[i] for i in keep],
        "translate": [image.translate[i] for i in keep],
        "units": [image.units[i] for i in keep],
    }
    out_axes = "".join(displayed[i] for i in keep)
    if output == "probabilities":
        return viewer.add_image(
            np.zeros((model.config.network.out_channels, *out_shape), np.float32),
            name=name,
            scale=[1.0, *where["scale"]],
            translate=[0.0, *where["translate"]],
            units=["pixel", *where["units"]],
            contrast_limits=(0.0, 1.0),
            colormap="magma",
            blending="additive",
            metadata={"axes": "C" + out_axes, "napari_unet": "probabilities", "classes": model.class_names},
        )
    dtype = np.uint8 if output == "semantic" else smallest_label_dtype(0)
    return viewer.add_labels(np.zeros(out_shape, dtype), name=name, metadata={"axes": out_axes}, **where)


def planes_to_approve(target, planes: list[tuple[int, ...]], written: dict[tuple, int]) -> dict[tuple[int, ...], int]:
    """The planes of ``target`` that hold labels other than the last prediction written there (``written``:
    ``(layer id, plane) -> fingerprint``), with their fingerprints."""
    others = {}
    for index in planes:
        plane = np.asarray(target.data[index])
        if plane.any():
            fp = fingerprint(plane)
            if written.get((target.unique_id, index)) != fp:
                others[index] = fp
    return others


def overwrite_question(target, others: int, planes: int) -> str:
    which = "the plane to predict holds" if planes == 1 else f"{others} of the {planes} planes to predict hold"
    return (
        f"In '{target.name}', {which} labels that are not this widget's last prediction (edited by hand, "
        "or from elsewhere).\n\nOverwrite them? (Undo with Ctrl+Z.)"
    )


def ask(parent, question: str) -> bool:
    """Ask the user whether labels may be overwritten (No is the default)."""
    answer = QMessageBox.question(
        parent,
        "napari-unet: overwrite labels?",
        question,
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )
    return answer == QMessageBox.StandardButton.Yes


def write_labels(
    layer, index: tuple[int, ...], data: np.ndarray, *, undoable: bool, data_fingerprint: int | None = None
) -> bool:
    """Write a predicted plane into a Labels layer as a widget's prediction (:class:`.layers.writing_prediction`),
    widening the layer's type when the ids need it (then True); as one undo step when ``undoable``.

    ``data_fingerprint``: ``data``'s, when already known (computed in the worker); it stands for the
    plane written unless the layer's type differs from ``data``'s.
    """
    widened = widen_for(layer, int(data.max()) if data.size else 0)
    known = data_fingerprint if data.dtype == layer.data.dtype else None
    with writing_prediction(layer, index, known):  # the Correct & Train widget tells these writes from the user's
        if undoable:
            with layer.block_history():
                write_undoable(layer, index, data)
        else:
            write_plane(layer, index, data)
    return widened


def can_hold(layer, shape: tuple[int, ...], output: str) -> bool:
    """Whether ``layer`` can take a result of ``output`` for labels of ``shape``: a Labels layer of that shape, or,
    for probabilities, an Image layer made for them (classes first)."""
    if output == "probabilities":
        return (
            isinstance(layer, Image)
            and (layer.metadata or {}).get("napari_unet") == "probabilities"
            and tuple(layer.data.shape[1:]) == shape
        )
    return isinstance(layer, Labels) and tuple(layer.data.shape) == shape
