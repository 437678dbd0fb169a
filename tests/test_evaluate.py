"""Evaluation: each number of the report checked by hand, and the classical baseline on synthetic cells."""

import math

import numpy as np
import pytest
import tifffile

from napari_unet.core.evaluation import evaluate as evaluate_module
from napari_unet.core.evaluation.baseline import otsu_watershed
from napari_unet.core.models.config import ModelConfig
from napari_unet.core.evaluation.evaluate import evaluate, format_table, write_report
from napari_unet.core.evaluation.metrics import match_instances
from napari_unet.core.models.model import Model
from napari_unet.core.labels.postprocess import semantic_labels


class _KnownOutput:
    """Stands in for the network's segmenter: the image file holds what the model "predicts".

    Semantic: the foreground probability. Instances: the predicted labels.
    """

    def __init__(self, model, **kwargs):
        self.model = model

    def new_image(self):
        pass

    def iter_probabilities(self, plane):
        yield None
        if self.model.config.task == "semantic":
            return np.stack([1 - plane[0], plane[0]])
        return plane

    def labels(self, prob, *, output, min_size=10):
        return semantic_labels(prob) if output == "semantic" else prob[0].astype(np.uint32)


@pytest.fixture
def known_output(monkeypatch):
    monkeypatch.setattr(evaluate_module, "Segmenter", _KnownOutput)


def _files(tmp_path, images, labels):
    paths = []
    for i, (image, label) in enumerate(zip(images, labels)):
        tifffile.imwrite(tmp_path / f"im{i}.tif", np.asarray(image))
        tifffile.imwrite(tmp_path / f"im{i}_labels.tif", np.asarray(label))
        paths.append((tmp_path / f"im{i}.tif", tmp_path / f"im{i}_labels.tif"))
    return [p for p, _ in paths], [q for _, q in paths]


def _semantic_model():
    config = ModelConfig(network={"depth": 1, "width": 2, "out_channels": 2}, task="semantic", class_names=("bg", "fg"))
    return Model.from_config(config)


def test_semantic_report_by_hand(tmp_path, known_output):
    prob = [np.array([[0.9, 0.6], [0.4, 0.1]], np.float32), np.array([[1.0, 0.0]], np.float32)]
    truth = [np.array([[1, 0], [1, 0]], np.uint8), np.array([[7, 0]], np.uint16)]  # nonzero = foreground
    images, labels = _files(tmp_path, prob, truth)
    report = evaluate(_semantic_model(), images, labels)
    pooled = report["results"]["model"]["pooled"]
    # predictions [[1, 1], [0, 0]] and [[1, 0]]: 4 of 6 pixels right; fg: TP 2, FP 1, FN 1
    assert pooled["pixel_accuracy"] == pytest.approx(4 / 6)
    assert pooled["pixel_error"] == pytest.approx(2 / 6)
    assert pooled["mean_class_accuracy"] == pytest.approx(2 / 3)
    assert pooled["class_iou"] == pytest.approx({"bg": 0.5, "fg": 0.5})
    assert pooled["mean_iou"] == pytest.approx(0.5)
    assert pooled["dice_foreground"] == pytest.approx(2 / 3)
    assert pooled["mae"] == pytest.approx((1.4 / 4 + 0) / 2)
    # curves averaged over the images: best at levels 154..229, P = (1 + 1) / 2, R = (1/2 + 1) / 2
    assert pooled["max_f_beta"] == pytest.approx(1.3 * 0.75 / (0.3 + 0.75))
    first = report["results"]["model"]["per_image"][0]
    assert first["image"] == "im0.tif" and first["pixel_accuracy"] == pytest.approx(0.5)
    assert first["max_f_beta"] == pytest.approx(0.65 / 0.8)
    assert report["task"] == "semantic" and report["planes"] == 2


def test_instance_report_by_hand_pools_objects_over_images(tmp_path, known_output):
    predicted = [np.array([[1, 1, 0, 2]], np.uint16), np.zeros((1, 4), np.uint16)]
    truth = [np.array([[1, 1, 0, 0]], np.uint16), np.array([[0, 3, 3, 0]], np.uint16)]
    images, labels = _files(tmp_path, predicted, truth)
    model = Model.from_config(ModelConfig(network={"depth": 1, "width": 2}))
    report = evaluate(model, images, labels)
    pooled = report["results"]["model"]["pooled"]
    assert pooled["tp"] == [1] * 9 and pooled["fp"] == [1] * 9 and pooled["fn"] == [1] * 9
    assert pooled["average_precision"] == pytest.approx([1 / 3] * 9)
    assert pooled["f1"] == pytest.approx([0.5] * 9)
    per_image = report["results"]["model"]["per_image"]
    assert per_image[0]["average_precision"][0] == pytest.approx(0.5) and per_image[1]["recall"][0] == 0
    table = format_table(report)
    assert "AP@0.50" in table and "0.3333" in table and "mean AP@0.50:0.90" in table


def test_the_json_report_is_written_atomically_with_nan_as_null(tmp_path, known_output):
    images, labels = _files(tmp_path, [np.zeros((2, 2), np.float32)], [np.zeros((2, 2), np.uint8)])
    report = evaluate(_semantic_model(), images, labels)
    path = write_report(report, tmp_path / "report.json")
    text = path.read_text()
    assert '"max_f_beta": null' in text and "NaN" not in text


def test_labels_of_the_wrong_shape_or_too_many_classes_say_what_was_found(tmp_path, known_output):
    images, labels = _files(tmp_path, [np.zeros((4, 4), np.float32)], [np.zeros((4, 5), np.uint8)])
    with pytest.raises(ValueError, match=r"has shape \(4, 5\) but im0.tif needs labels of shape \(4, 4\)"):
        evaluate(_semantic_model(), images, labels)
    three = Model.from_config(
        ModelConfig(network={"depth": 1, "width": 2, "out_channels": 3}, task="semantic", class_names=("a", "b", "c"))
    )
    images, labels = _files(tmp_path, [np.zeros((4, 4), np.float32)], [np.full((4, 4), 5, np.uint8)])
    with pytest.raises(ValueError, match=r"class ids in 0..2, found 5..5"):
        evaluate(three, images, labels)
    with pytest.raises(ValueError, match="this model has 3 classes"):
        evaluate(three, images, labels, baseline="otsu")


def _disks(shape, centres, radius):
    yy, xx = np.indices(shape)
    labels = np.zeros(shape, np.uint16)
    for i, (cy, cx) in enumerate(centres, start=1):
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = i
    return labels


@pytest.mark.parametrize("bright_objects", [True, False])
def test_the_baseline_finds_objects_of_either_polarity_and_splits_touching_ones(bright_objects):
    truth = _disks((96, 128), [(30, 30), (30, 49), (70, 90)], 10)  # the first two touch
    rng = np.random.default_rng(0)
    image = np.where(truth > 0, 200.0, 40.0) if bright_objects else np.where(truth > 0, 40.0, 200.0)
    image = image + rng.normal(0, 5, truth.shape)
    found = otsu_watershed(image)
    counts = match_instances(found, truth)
    assert counts.tp[0] == 3 and counts.fp[0] == 0
    assert otsu_watershed(np.full((8, 8), 3.0)).max() == 0


def test_the_baseline_is_scored_next_to_the_model(tmp_path, known_output):
    truth = _disks((64, 64), [(20, 20), (44, 44)], 8)
    images, labels = _files(tmp_path, [truth.astype(np.float32)], [truth])
    model = Model.from_config(ModelConfig(network={"depth": 1, "width": 2}))
    report = evaluate(model, images, labels, baseline="otsu")
    assert list(report["results"]) == ["model", "otsu"]
    assert report["results"]["otsu"]["pooled"]["average_precision"][0] == pytest.approx(1.0)
    assert math.isclose(report["results"]["model"]["pooled"]["average_precision"][-1], 1.0)


def test_a_given_object_size_reaches_the_model_as_well_as_the_baseline(tmp_path, monkeypatch):
    from napari_unet.core.predict.inference import Segmenter

    made = []

    class Recording(Segmenter):
        def __init__(self, model, **kwargs):
            super().__init__(model, **kwargs)
            made.append(self)

    monkeypatch.setattr(evaluate_module, "Segmenter", Recording)
    model = Model.from_config(ModelConfig(network={"depth": 1, "width": 2}, object_size=20.0, tile=64, overlap=8))
    image = np.zeros((32, 32), np.uint8)
    images, labels = _files(tmp_path, [image], [image.astype(np.uint16)])
    for given, scale in ((40.0, 0.5), (None, None)):
        list(evaluate_module.iter_evaluate(model, images, labels, object_size=given, device="cpu"))
        if given is not None:
            assert made[-1].scale == pytest.approx(scale)  # input shrunk to the size the model was trained at
        else:
            assert made[-1]._auto  # estimated from the image
