"""Where to correct next, in napari: Predict puts each object's uncertainty in the labels' features and a map
beside them; Label tools walk the objects least sure first; Mark reviewed changes what Correct & Train trains on."""

import numpy as np
import pytest
import tifffile
from napari.layers import Image

from napari_unet import predict
from napari_unet.core.labels.uncertainty import object_uncertainty
from napari_unet.core.training.review import DEFAULT_MARGIN

from ..conftest import DATA
from .conftest import messages, wait_for

pytestmark = pytest.mark.gui

KROMP = DATA / "kromp2020_train"


@pytest.fixture
def predicted(viewer, qtbot, notifications):
    """A crop of another lab's nuclei predicted by the default model with 'uncertainty' ticked."""
    image = tifffile.imread(KROMP / "images" / "Ganglioneuroblastoma_1.tif")[:256, :256]
    viewer.add_image(image, name="cells")
    widget = viewer.window.add_plugin_dock_widget("napari-unet", "Predict")[1]
    widget.model_combo.setCurrentIndex(widget.model_combo.findData("default"))
    widget.uncertainty_box.setChecked(True)
    widget.run()
    wait_for(qtbot, widget)
    assert not messages(notifications)
    return image, viewer.layers["cells instances"]


def test_predict_puts_each_objects_uncertainty_in_the_features_and_a_map_beside(viewer, predicted):
    image, labels = predicted
    table = labels.features
    ids = np.unique(labels.data[labels.data > 0])
    assert ids.size > 5 and sorted(table["index"]) == list(ids)
    # the scores are those of the core, for the same prediction
    prob = predict(image, "default", device="cpu", tile=256, batch_size=1)
    expected = object_uncertainty(prob, labels.data)
    by_id = dict(zip(table["index"], table["uncertainty"]))
    np.testing.assert_allclose([by_id[i] for i in expected.ids], expected.score, atol=1e-6)
    assert {"area", "centroid_y", "centroid_x", "existence_doubt", "shape_doubt"} <= set(table.columns)
    heat = viewer.layers["cells instances uncertainty"]
    assert isinstance(heat, Image) and heat.data.shape == labels.data.shape and heat.data.dtype == np.float32
    assert 0 <= heat.data.min() and heat.data.max() <= 1 and heat.data.max() > 0.1


def test_next_uncertain_walks_the_objects_least_sure_first(viewer, predicted):
    _, labels = predicted
    tools = viewer.window.add_plugin_dock_widget("napari-unet", "Label tools")[1]
    table = labels.features.sort_values(["uncertainty", "index"], ascending=[False, True], kind="stable")
    order = [int(i) for i in table["index"]]
    walked = [tools.go_to_uncertain(1) for _ in range(4)]
    assert walked == order[:4] and labels.selected_label == order[3]
    assert tools.go_to_uncertain(-1) == order[2]
    assert "uncertainty" in tools.status.text()
    # the view is on the object
    y, x = np.argwhere(labels.data == order[2]).mean(axis=0)
    np.testing.assert_allclose(viewer.scene.camera.center[-2:], (y, x), atol=1)
    # an object deleted by hand is skipped
    labels.data = np.where(labels.data == order[0], 0, labels.data)
    labels.selected_label = 0
    assert tools.go_to_uncertain(1) == order[1]


def test_mark_reviewed_adds_the_object_to_what_correct_and_train_trains_on(viewer, qtbot, predicted, answer):
    _, labels = predicted
    tools = viewer.window.add_plugin_dock_widget("napari-unet", "Label tools")[1]
    train = viewer.window.add_plugin_dock_widget("napari-unet", "Correct & Train")[1]
    train.labels_combo.setCurrentIndex(train.labels_combo.findText(labels.name))
    train.reviewed_combo.setCurrentIndex(train.reviewed_combo.findData("painted"))
    assert not train.reviewed_mask(train.current_pair()).any()  # nothing painted or marked yet

    label = tools.go_to_uncertain(1)
    assert tools.mark_reviewed() == 1
    reviewed = train.reviewed_mask(train.current_pair())
    inside = labels.data == label
    assert reviewed[inside].all()
    ys, xs = np.nonzero(reviewed)
    oy, ox = np.nonzero(inside)
    assert ys.min() == max(0, oy.min() - DEFAULT_MARGIN) and xs.max() == min(255, ox.max() + DEFAULT_MARGIN)
    assert reviewed.sum() < reviewed.size / 2  # that object and its surroundings, not the whole image

    # predicting the plane again forgets the marks, as it forgets what was painted
    answer.value = True
    predict = viewer.window.add_plugin_dock_widget("napari-unet", "Predict")[1]
    predict.target_combo.setCurrentIndex(predict.target_combo.findText(labels.name))
    predict.run()
    wait_for(qtbot, predict)
    assert not train.reviewed_mask(train.current_pair()).any()
