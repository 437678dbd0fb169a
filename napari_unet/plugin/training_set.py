"""Correct & Train's training set: image / labels pairs, what counts as reviewed in them (the whole image,
the inside of shapes, or around what the user painted since the last prediction), and projects.

:class:`TrainingSet` holds the widget's part for it (a mixin: the widget's form supplies the choices).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from napari.layers import Image, Labels, Shapes
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import QFileDialog

from ..core.io.axes import CHANNEL_AXES
from ..core.errors import NapariUNetError
from ..core.training.project import load_project
from ..core.training.review import ChangedPixels
from .layers import (
    fingerprint,
    follow_predictions,
    image_array,
    image_axes,
    is_writing_prediction,
    labels_shape,
    plane_at_cursor,
    predicted_fingerprint,
    reviewed_marks,
)
from .predict_job import copy_for_worker
from .train_job import TrainEntry


REVIEWED = {
    "whole": "The whole image",
    "shapes": "Inside a Shapes layer",
    "painted": "Around what was painted",
}


@dataclass
class TrainPair:
    """An entry of the training set: which layers, what counts as reviewed, which plane."""

    image: Image
    labels: Labels
    reviewed: str
    shapes: Shapes | None
    margin: int
    plane: tuple[int, ...] | None  # None: every plane
    stored: np.ndarray | None = None  # a reviewed mask loaded from a project

    def describe(self) -> str:
        where = "" if self.plane is None else f" plane {list(self.plane)}"
        how = {"whole": "whole", "shapes": f"inside '{self.shapes.name}'" if self.shapes else "shapes",
               "painted": f"painted +{self.margin} px", "stored": "reviewed as stored"}[self.reviewed]
        return f"{self.image.name} / {self.labels.name}{where} ({how})"


def shapes_mask(shapes: Shapes, shape: tuple[int, ...]) -> np.ndarray:
    """The inside of the shapes of ``shapes`` as a boolean array of ``shape``.

    2D shapes over a stack mark the same region in every plane.
    """
    if len(shapes.data) == 0:
        return np.zeros(shape, bool)
    if shapes.ndim == len(shape):
        return np.asarray(shapes.to_masks(mask_shape=shape)).any(axis=0)
    if shapes.ndim == 2:
        plane = np.asarray(shapes.to_masks(mask_shape=shape[-2:])).any(axis=0)
        return np.broadcast_to(plane, shape).copy()
    raise NapariUNetError(
        f"the Shapes layer '{shapes.name}' has {shapes.ndim} dimensions; expected 2 or {len(shape)} "
        f"(those of the labels, shape {shape})"
    )


class TrainingSet:
    """The training set's part of :class:`~.train_widget.TrainWidget`: the pairs, the edits followed, the project."""

    def _track(self, layer: Labels) -> None:
        self._changes[layer.unique_id] = (layer, ChangedPixels(layer.data.shape))
        self._connect(layer.events.paint, lambda event, layer=layer: self._on_paint(layer, event))
        self._connect(layer.events.data, lambda event, layer=layer: self._on_new_data(layer))
        self._connect(follow_predictions(layer), lambda event, layer=layer: self._on_prediction_written(layer, event.plane))

    def _on_paint(self, layer: Labels, event) -> None:
        """Remember which pixels the user changed (a prediction written by a widget does not count)."""
        if is_writing_prediction(layer):
            return
        changes = self._changed(layer)
        for atom in event.value:
            if hasattr(atom, "slice_key"):
                changes.mark_box(atom.slice_key, atom.mask)
            else:
                changes.mark_points(atom[0])

    def _on_new_data(self, layer: Labels) -> None:
        if layer.unique_id in self._changes and self._changes[layer.unique_id][1].shape != tuple(layer.data.shape):
            self._changes[layer.unique_id] = (layer, ChangedPixels(layer.data.shape))

    def _on_prediction_written(self, layer, index) -> None:
        """A new prediction in a plane: what was painted there before no longer counts."""
        if layer.unique_id in self._changes:
            self._changes[layer.unique_id][1].clear(index)

    def _changed(self, layer: Labels) -> ChangedPixels:
        entry = self._changes.get(layer.unique_id)
        if entry is None or entry[1].shape != tuple(layer.data.shape):
            self._changes[layer.unique_id] = (layer, ChangedPixels(layer.data.shape))
        return self._changes[layer.unique_id][1]

    def current_pair(self) -> TrainPair:
        """The pair the choices above describe (checked: layers chosen, shapes that fit)."""
        image, labels = self.image_combo.currentData(), self.labels_combo.currentData()
        if image is None or labels is None:
            found = ", ".join(f"{type(layer).__name__} '{layer.name}'" for layer in self.viewer.layers) or "no layers"
            raise NapariUNetError(
                "Correct & Train needs an image layer and a Labels layer with the corrected labels "
                f"(predict one with the Predict widget, then correct it); found {found}"
            )
        axes = image_axes(image)
        expected = labels_shape(tuple(image_array(image).shape), axes)
        if tuple(labels.data.shape) != expected:
            raise NapariUNetError(
                f"the labels '{labels.name}' have shape {tuple(labels.data.shape)}; expected {expected} "
                f"for the image '{image.name}' (shape {tuple(image_array(image).shape)}, axes {axes})"
            )
        mode = self.reviewed_combo.currentData()
        shapes = self.shapes_combo.currentData() if mode == "shapes" else None
        if mode == "shapes" and shapes is None:
            raise NapariUNetError(
                "the reviewed region is 'inside a Shapes layer' but the viewer has no Shapes layer: "
                "add one (Layers > New Shapes layer) and draw the region you checked"
            )
        plane = None
        if len(expected) > 2 and self.scope_combo.currentData() == "plane":
            plane = plane_at_cursor(image, self.viewer, axes)
        return TrainPair(image, labels, mode, shapes, self.margin_spin.value(), plane)

    def add_pair(self) -> TrainPair | None:
        """Add the current image / labels / reviewed choice to the training set."""
        try:
            pair = self.current_pair()
        except NapariUNetError as error:
            show_error(str(error))
            return None
        self.pairs.append(pair)
        self.pairs_list.addItem(pair.describe())
        return pair

    def _remove_pair(self) -> None:
        row = self.pairs_list.currentRow()
        if 0 <= row < len(self.pairs):
            self.pairs.pop(row)
            self.pairs_list.takeItem(row)

    def reviewed_mask(self, pair: TrainPair) -> np.ndarray:
        """What counts as reviewed in ``pair``'s labels (a boolean array of their shape)."""
        shape = tuple(pair.labels.data.shape)
        if pair.reviewed == "whole":
            mask = np.ones(shape, bool)
        elif pair.reviewed == "shapes":
            mask = shapes_mask(pair.shapes, shape)
        elif pair.reviewed == "stored":
            mask = pair.stored | self._changed(pair.labels).reviewed(pair.margin)
        else:
            mask = self._changed(pair.labels).reviewed(pair.margin)
            marked = set(self._changed(pair.labels).marked())
            for index in np.ndindex(*shape[:-2]):
                # edited outside this widget's sight (before it opened, or without paint events): the whole plane
                recorded = predicted_fingerprint(pair.labels, index)
                if index not in marked and recorded is not None and recorded != fingerprint(pair.labels.data[index]):
                    mask[index] = True
        if pair.reviewed in ("painted", "stored"):
            for index, marks in reviewed_marks(pair.labels).items():  # objects marked reviewed in Label tools
                mask[index] |= marks
        if pair.plane is not None:
            only = np.zeros(shape, bool)
            only[pair.plane] = mask[pair.plane]
            mask = only
        return mask

    def _entry(self, pair: TrainPair) -> TrainEntry:
        mask = self.reviewed_mask(pair)
        if not mask.any():
            hints = {
                "whole": "",
                "shapes": f": draw a rectangle or polygon in '{pair.shapes.name if pair.shapes else ''}' "
                "around the region you checked",
                "painted": ": paint (or fill, erase) corrections in the labels since the last prediction, "
                "or choose 'The whole image' or 'Inside a Shapes layer'",
                "stored": "",
            }
            where = "" if pair.plane is None else f" in plane {list(pair.plane)}"
            raise NapariUNetError(
                f"the reviewed region of '{pair.labels.name}'{where} is empty "
                f"(reviewed: {REVIEWED.get(pair.reviewed, 'as stored').lower()}), so there is nothing to train on"
                + hints[pair.reviewed]
            )
        axes = image_axes(pair.image)
        data = image_array(pair.image)
        labels = pair.labels.data
        if pair.plane is not None:
            iterated = [i for i, a in enumerate(axes) if a not in CHANNEL_AXES + "YX"]
            data, _ = copy_for_worker(data, iterated, pair.plane)
            key = tuple(slice(i, i + 1) for i in pair.plane)
            labels, mask = np.array(labels[key]), mask[key]
        else:
            data, labels = np.array(data), np.array(labels)
        return TrainEntry(pair.image.name, data, axes, labels, mask)

    def _choose_project(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Project folder", self.project_edit.text())
        if folder:
            self.project_edit.setText(folder)

    def load_project(self, folder: str | None = None) -> list[TrainPair]:
        """Open the corrections of a project's latest training run as layers, and put them in the training set."""
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Load a napari-unet project", self.project_edit.text())
            if not folder:
                return []
        try:
            entries = load_project(folder)
        except (NapariUNetError, OSError) as error:
            show_error(str(error))
            return []
        added = []
        for entry in entries:
            if entry.image is None:
                show_warning(f"{entry.labels_file.name}: the project holds no image for it; skipped")
                continue
            axes = entry.axes if entry.axes and len(entry.axes) == entry.image.ndim else None
            rgb = bool(axes) and axes[-1] == "S"
            image = self.viewer.add_image(
                entry.image, name=entry.image_name, rgb=rgb, metadata={"axes": axes} if axes else {}
            )
            labels = self.viewer.add_labels(entry.labels, name=f"{entry.image_name} corrected (run {entry.run})")
            pair = TrainPair(image, labels, "stored", None, self.margin_spin.value(), None, entry.reviewed)
            self.pairs.append(pair)
            self.pairs_list.addItem(pair.describe())
            added.append(pair)
        self.project_edit.setText(str(folder))
        show_info(f"loaded {len(added)} image(s) of training run {entries[0].run} from {folder}")
        return added
