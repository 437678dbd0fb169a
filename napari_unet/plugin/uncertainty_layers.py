"""How sure the model is, shown with napari's own means.

- Each object's score (:mod:`napari_unet.core.labels.uncertainty`: 0 sure .. 1
  doubtful) goes into its Labels layer's ``features`` table, one row per object
  (``index`` is the label id, as napari reads it; for a stack, ``plane_0``... give
  the plane), so napari shows it under the cursor and its table tools can sort and
  colour by it. Predicting a plane again replaces that plane's rows.
- Where the model hesitates goes into an Image layer ``<labels> uncertainty``
  (the normalised entropy of the class probabilities), over the labels.
- :func:`uncertain_order` is the order Label tools' *Next uncertain* walks.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.labels.uncertainty import ObjectScores

SCORE = "uncertainty"


def show_uncertainty(viewer, labels_layer, index: tuple[int, ...], pixels: np.ndarray, scores: ObjectScores) -> None:
    """Plane ``index`` of ``labels_layer`` was just predicted: its objects' scores into the layer's features, and
    ``pixels`` into the plane of the uncertainty map (made on first use)."""
    set_object_scores(labels_layer, index, scores)
    name = f"{labels_layer.name} uncertainty"
    shape = tuple(labels_layer.data.shape)
    found = [layer for layer in viewer.layers if layer.name == name and tuple(layer.data.shape) == shape]
    if found:
        layer = found[0]
    else:
        layer = viewer.add_image(
            np.zeros(labels_layer.data.shape, np.float32), name=name, scale=labels_layer.scale,
            translate=labels_layer.translate, colormap="magma", contrast_limits=(0.0, 1.0), blending="additive",
            opacity=0.6, metadata={"axes": (labels_layer.metadata or {}).get("axes"), "napari_unet": "uncertainty"},
        )
        viewer.layers.selection.active = labels_layer
    layer.data[tuple(index)] = pixels
    layer.refresh()


def set_object_scores(layer, index: tuple[int, ...], scores: ObjectScores) -> None:
    """The objects of plane ``index`` and their scores as the rows of that plane in ``layer.features``."""
    columns = {"index": scores.ids} | {k: v for k, v in scores.table().items() if k != "label"}
    columns |= {f"plane_{axis}": np.full(scores.ids.size, i, np.int64) for axis, i in enumerate(index)}
    rows = pd.DataFrame(columns)
    table = layer.features
    if len(table):  # kept: the rows of other planes, and features the layer had of its own
        same = np.full(len(table), SCORE in table)  # the rows of this plane, from its last prediction
        for axis, i in enumerate(index):
            column = f"plane_{axis}"
            same &= table[column].to_numpy() == i if column in table else False
        rows = pd.concat([table[~same], rows], ignore_index=True)
    layer.features = rows


def uncertain_order(layer) -> list[int]:
    """The ids of ``layer``'s objects that have a score, least sure first (those no longer in the labels left out)."""
    table = layer.features
    if SCORE not in table or "index" not in table or len(table) == 0:
        return []
    ordered = table.sort_values([SCORE, "index"], ascending=[False, True], kind="stable")["index"].to_numpy()
    present = np.isin(ordered, np.unique(np.asarray(layer.data)))
    return [int(i) for i in ordered[present]]
