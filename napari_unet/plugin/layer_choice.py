"""Choosing layers: combo boxes of the viewer's layers of a kind, and whether a layer is still there.

The viewer a plugin gets hands out proxies of its layers: layers are compared by
``unique_id``, never as objects.
"""

from __future__ import annotations

from qtpy.QtWidgets import QComboBox


def fill_layer_combo(combo: QComboBox, viewer, kind: type, *, first: bool = False):
    """List the viewer's layers of ``kind`` in ``combo`` again (without signals), keeping the chosen one, else
    taking the active layer, else the last one (the first with ``first``); returns the layer chosen before."""
    current = combo.currentData()
    layers = [layer for layer in viewer.layers if isinstance(layer, kind)]
    combo.blockSignals(True)
    combo.clear()
    for layer in layers:
        combo.addItem(layer.name, layer)
    ids = [layer.unique_id for layer in layers]
    active = viewer.layers.selection.active
    if current is not None and current.unique_id in ids:
        combo.setCurrentIndex(ids.index(current.unique_id))
    elif isinstance(active, kind) and active.unique_id in ids:
        combo.setCurrentIndex(ids.index(active.unique_id))
    elif layers:
        combo.setCurrentIndex(0 if first else len(layers) - 1)
    combo.blockSignals(False)
    return current


def present(viewer, layer) -> bool:
    """Whether ``layer`` is still one of the viewer's layers."""
    return any(other.unique_id == layer.unique_id for other in viewer.layers)


def same_layer(a, b) -> bool:
    """Whether ``a`` and ``b`` (layers or None) are the same layer."""
    return a is None and b is None or (a is not None and b is not None and a.unique_id == b.unique_id)
