"""The Label tools widget on a real viewer: navigation moves the view, edits are one undo step each."""

import numpy as np
import pytest

from .conftest import messages

pytestmark = pytest.mark.gui


def _stack():
    labels = np.zeros((3, 40, 60), np.uint16)
    labels[0, 5:15, 5:15] = 4  # 100 px
    labels[1, 20:30, 40:52] = 9  # 120 px
    labels[1, 2:4, 2:4] = 11  # 4 px: a speck
    labels[2, 30:36, 10:20] = 12  # 60 px
    labels[2, 30:36, 20:26] = 13  # touches 12: one nucleus split in two
    return labels


def test_label_tools_step_through_objects_and_edit_undoably(viewer, notifications):
    labels = _stack()
    layer = viewer.add_labels(labels.copy(), name="cells", scale=(1.0, 0.5, 0.5))
    widget = viewer.window.add_plugin_dock_widget("napari-unet", "Label tools")[1]
    assert widget.layer_combo.currentText() == "cells"

    layer.selected_label = 4
    assert widget.go_to_object(1) == 9
    assert layer.selected_label == 9
    assert viewer.dims.point[0] == 1  # the plane of object 9
    np.testing.assert_allclose(viewer.scene.camera.center[-2:], (24.5 * 0.5, 45.5 * 0.5))
    widget.previous_button.click()
    assert layer.selected_label == 4 and viewer.dims.point[0] == 0

    widget.min_size_spin.setValue(10)
    assert widget.delete_small() == 1
    assert not (layer.data == 11).any() and (layer.data == 4).sum() == 100

    widget.merge_spin.setValue(13)
    widget.keep_spin.setValue(12)
    widget.merge_button.click()
    assert not (layer.data == 13).any() and (layer.data == 12).sum() == 96

    widget.relabel_button.click()
    np.testing.assert_array_equal(np.unique(layer.data), [0, 1, 2, 3])

    for _ in range(3):
        layer.undo()
    np.testing.assert_array_equal(layer.data, labels)

    widget.merge_spin.setValue(5)
    widget.merge_button.click()
    assert "label 5 is not in the labels" in messages(notifications)[0]
