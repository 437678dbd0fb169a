"""Label tools: what napari's paint / fill / erase make tedious when correcting a prediction.

Step through the objects one by one (the view centres on each and selects it,
ready to paint), delete the specks below a size, merge an object that was split
in two, renumber the objects 1..n. The edits are core functions
(:mod:`napari_unet.core.labels.label_edit`); each is written back as one undoable
change of the layer (Ctrl+Z).
"""

from __future__ import annotations

import napari
import numpy as np
from napari.layers import Labels
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QComboBox,
    QGridLayout,
    QGroupBox,
    QLabel,
    QPushButton,
    QSpinBox,
    QWidget,
)

from ..core.labels.label_edit import (
    centroid,
    merge_labels,
    object_ids,
    relabel_sequential,
    remove_small_objects,
    step_object,
)
from ..core.training.review import DEFAULT_MARGIN, grow
from .form import column, form, message_label, row
from .layers import mark_reviewed, write_undoable
from .uncertainty_layers import SCORE, uncertain_order


class LabelToolsWidget(QWidget):
    """Object navigation and whole-layer edits for a Labels layer.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose Labels layers are edited.
    """

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__()
        self.viewer = viewer
        self._walked: dict[int, int] = {}  # layer id -> the object Next / Previous uncertain selected last
        self.layer_combo = QComboBox()
        self.previous_button = QPushButton("< Previous")
        self.next_button = QPushButton("Next >")
        self.previous_uncertain_button = QPushButton("< Previous uncertain")
        self.next_uncertain_button = QPushButton("Next uncertain >")
        self.mark_button = QPushButton("Mark reviewed")
        self.mark_button.setToolTip(
            f"Count the selected object (and {DEFAULT_MARGIN} px around it) as reviewed in Correct & Train, "
            "whether or not it was edited"
        )
        self.min_size_spin = QSpinBox()
        self.min_size_spin.setRange(1, 10**7)
        self.min_size_spin.setValue(30)
        self.delete_button = QPushButton("Delete smaller objects")
        self.merge_spin = QSpinBox()
        self.keep_spin = QSpinBox()
        for spin in (self.merge_spin, self.keep_spin):
            spin.setRange(1, 2**31 - 1)
        self.merge_button = QPushButton("Merge")
        self.relabel_button = QPushButton("Renumber objects 1..n")
        self.status = message_label()

        navigate = row(self.previous_button, self.next_button)
        edit = QGridLayout()
        edit.addWidget(QLabel("smaller than (px)"), 0, 0)
        edit.addWidget(self.min_size_spin, 0, 1)
        edit.addWidget(self.delete_button, 0, 2)
        edit.addWidget(QLabel("merge label"), 1, 0)
        edit.addWidget(self.merge_spin, 1, 1)
        edit.addWidget(QLabel("into"), 2, 0)
        edit.addWidget(self.keep_spin, 2, 1)
        edit.addWidget(self.merge_button, 1, 2, 2, 1)
        edit.addWidget(self.relabel_button, 3, 0, 1, 3)
        objects = QGroupBox("Objects")
        objects.setLayout(navigate)
        uncertain = QGroupBox("Least sure first (predicted with 'uncertainty')")
        walk = row(self.previous_uncertain_button, self.next_uncertain_button)
        uncertain.setLayout(column(None, walk, self.mark_button))
        edits = QGroupBox("Edit the whole layer (undo with Ctrl+Z)")
        edits.setLayout(edit)
        column(self, form(("labels", self.layer_combo)), objects, uncertain, edits, self.status)

        self.previous_button.clicked.connect(lambda: self.go_to_object(-1))
        self.next_button.clicked.connect(lambda: self.go_to_object(1))
        self.previous_uncertain_button.clicked.connect(lambda: self.go_to_uncertain(-1))
        self.next_uncertain_button.clicked.connect(lambda: self.go_to_uncertain(1))
        self.mark_button.clicked.connect(self.mark_reviewed)
        self.delete_button.clicked.connect(self.delete_small)
        self.merge_button.clicked.connect(self.merge)
        self.relabel_button.clicked.connect(self.relabel)
        self.layer_combo.currentIndexChanged.connect(self._describe)
        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered, events.renamed):
            event.connect(self.refresh_choices)
        self.viewer.layers.selection.events.active.connect(self._follow_active)
        self.refresh_choices()

    @property
    def layer(self) -> Labels | None:
        return self.layer_combo.currentData()

    def refresh_choices(self, event=None) -> None:
        """List the viewer's Labels layers again, keeping the choice (or taking the active one)."""
        current = self.layer
        layers = [layer for layer in self.viewer.layers if isinstance(layer, Labels)]
        ids = [layer.unique_id for layer in layers]
        active = self.viewer.layers.selection.active
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        for layer in layers:
            self.layer_combo.addItem(layer.name, layer)
        if current is not None and current.unique_id in ids:
            self.layer_combo.setCurrentIndex(ids.index(current.unique_id))
        elif isinstance(active, Labels) and active.unique_id in ids:
            self.layer_combo.setCurrentIndex(ids.index(active.unique_id))
        elif layers:
            self.layer_combo.setCurrentIndex(len(layers) - 1)
        self.layer_combo.blockSignals(False)
        self._describe()

    def _follow_active(self, event=None) -> None:
        """Work on the Labels layer the user selects in the layer list."""
        active = self.viewer.layers.selection.active
        if isinstance(active, Labels):
            ids = [self.layer_combo.itemData(i).unique_id for i in range(self.layer_combo.count())]
            if active.unique_id in ids:
                self.layer_combo.setCurrentIndex(ids.index(active.unique_id))

    def go_to_object(self, step: int) -> int | None:
        """Select the next (``step`` > 0) or previous object in id order and centre the view on it."""
        layer = self._layer_or_complain()
        if layer is None:
            return None
        data = np.asarray(layer.data)
        label = step_object(data, int(layer.selected_label), step)
        if label is None:
            show_info(f"'{layer.name}' has no objects")
            return None
        self._select(layer, label)
        self.merge_spin.setValue(label)
        self.status.setText(f"Object {label} selected ({self._count(data)}).")
        return label

    def go_to_uncertain(self, step: int) -> int | None:
        """Select the next (``step`` > 0) or previous object in order of uncertainty (least sure first) and
        centre the view on it."""
        layer = self._layer_or_complain()
        if layer is None:
            return None
        order = uncertain_order(layer)
        if not order:
            show_info(f"'{layer.name}' has no uncertainty scores: predict it with 'uncertainty' ticked in Predict")
            return None
        current = int(layer.selected_label)
        # On from the object this walk selected last; from the start when the user has selected another since.
        walking = current == self._walked.get(layer.unique_id) and current in order
        position = (order.index(current) + step) % len(order) if walking else (0 if step > 0 else -1)
        label = order[position]
        self._walked[layer.unique_id] = label
        self._select(layer, label)
        score = float(layer.features.loc[layer.features["index"] == label, SCORE].iloc[-1])
        rank = position % len(order) + 1
        self.status.setText(f"Object {label}: uncertainty {score:.2f}, {rank} of {len(order)} (least sure first).")
        return label

    def mark_reviewed(self) -> int:
        """Count the selected object, with a margin, as reviewed in Correct & Train; returns the planes marked."""
        layer = self._layer_or_complain()
        if layer is None:
            return 0
        label, data = int(layer.selected_label), np.asarray(layer.data)
        planes = 0
        for index in np.ndindex(*data.shape[:-2]):
            inside = data[index] == label
            if label and inside.any():
                mark_reviewed(layer, index, grow(inside, DEFAULT_MARGIN))
                planes += 1
        if planes == 0:
            show_info(f"'{layer.name}' has no object {label} to mark: select one (Next, Next uncertain, or the picker)")
            return 0
        self.status.setText(f"Object {label} marked reviewed, with {DEFAULT_MARGIN} px around it.")
        return planes

    def delete_small(self) -> int:
        """Delete the objects smaller than the size set; returns how many."""
        layer = self._layer_or_complain()
        if layer is None:
            return 0
        size = self.min_size_spin.value()
        new, removed = remove_small_objects(np.asarray(layer.data), size)
        self._write(layer, new)
        self.status.setText(f"Deleted {removed} object(s) smaller than {size} px ({self._count(new)}).")
        return removed

    def merge(self) -> bool:
        """Merge the object 'merge label' into 'into'."""
        layer = self._layer_or_complain()
        if layer is None:
            return False
        merge, keep = self.merge_spin.value(), self.keep_spin.value()
        try:
            new = merge_labels(np.asarray(layer.data), keep, merge)
        except ValueError as error:
            show_error(f"cannot merge in '{layer.name}': {error}")
            return False
        self._write(layer, new)
        layer.selected_label = keep
        self.status.setText(f"Label {merge} merged into {keep} ({self._count(new)}).")
        return True

    def relabel(self) -> None:
        """Number the objects 1..n, in the order of their ids."""
        layer = self._layer_or_complain()
        if layer is None:
            return
        new = relabel_sequential(np.asarray(layer.data))
        self._write(layer, new)
        self.status.setText(f"Renumbered: {self._count(new)}.")

    def _layer_or_complain(self) -> Labels | None:
        if self.layer is None:
            show_error("Label tools need a Labels layer: predict one, or add one (Layers > New Labels Layer)")
        return self.layer

    @staticmethod
    def _write(layer: Labels, new: np.ndarray) -> None:
        with layer.block_history():
            write_undoable(layer, (), new)

    def _select(self, layer: Labels, label: int) -> None:
        """Select object ``label`` of ``layer`` and show it: its plane, centred."""
        layer.selected_label = label
        self._centre_on(layer, centroid(np.asarray(layer.data), label))

    def _centre_on(self, layer: Labels, position: tuple[float, ...]) -> None:
        """Show the plane of ``position`` (data coordinates of ``layer``) and centre the camera on it."""
        world = np.asarray(layer.data_to_world(position))
        dims = self.viewer.dims
        offset = dims.ndim - len(world)
        for axis in range(offset, dims.ndim):
            if axis not in dims.displayed:
                dims.set_point(axis, float(world[axis - offset]))
        camera = self.viewer.scene.camera if hasattr(self.viewer, "scene") else self.viewer.camera  # napari < 0.9
        camera.center = tuple(float(world[axis - offset]) for axis in dims.displayed if axis >= offset)

    def _describe(self, *_) -> None:
        self.status.setText("" if self.layer is None else f"Editing '{self.layer.name}'.")

    @staticmethod
    def _count(data: np.ndarray) -> str:
        ids = object_ids(data)
        return f"{ids.size} objects" if ids.size else "no objects"
