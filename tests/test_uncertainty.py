"""Each object's uncertainty: what it measures, that it finds the default model's mistakes on real data,
and `segment --uncertainty`'s outputs."""

import csv

import numpy as np
import pytest
import tifffile

from napari_unet import load_model, predict
from napari_unet.cli import main
from napari_unet.core.evaluation.metrics import overlaps
from napari_unet.core.labels.uncertainty import object_uncertainty, pixel_uncertainty, score_map
from napari_unet.core.predict.inference import Segmenter

from .conftest import DATA

KROMP = DATA / "kromp2020_train"


def _disc(shape, centre, radius):
    yy, xx = np.indices(shape)
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def _objects():
    """Labels of a sure disc (1), a disc whose interior peak is only 0.9 (2), and two discs merged into one (3),
    with probabilities to match."""
    shape = (80, 120)
    labels = np.zeros(shape, np.uint32)
    labels[_disc(shape, (20, 20), 10)] = 1
    labels[_disc(shape, (20, 60), 10)] = 2
    labels[_disc(shape, (60, 40), 10) | _disc(shape, (60, 59), 10)] = 3
    prob = np.zeros((3,) + shape, np.float32)
    prob[0] = 1.0
    for i, peak in ((1, 0.99999), (2, 0.9), (3, 0.99999)):
        inside = labels == i
        prob[1][inside], prob[0][inside] = peak, 1 - peak
    return prob, labels


def test_a_weak_object_and_a_merged_one_are_less_sure_than_a_sure_one():
    prob, labels = _objects()
    scores = object_uncertainty(prob, labels)
    assert list(scores.ids) == [1, 2, 3]
    sure, weak, merged = scores.score
    assert scores.existence[0] == 0 and weak > sure + 0.2 and merged > sure + 0.05
    assert scores.existence[1] > scores.existence[0] and scores.shape[2] > scores.shape[0]
    assert list(scores.order())[-1] == 1 and list(scores.order())[0] == 2
    np.testing.assert_array_equal(scores.area, [np.sum(labels == i) for i in (1, 2, 3)])
    np.testing.assert_allclose(scores.centroid[0], [20, 20], atol=0.01)

    image = score_map(labels, scores)
    assert image.dtype == np.float32 and image.shape == labels.shape
    assert (image[labels == 0] == 0).all() and np.allclose(image[labels == 2], scores.score[1])
    entropy = pixel_uncertainty(prob)
    assert entropy.shape == labels.shape and entropy.min() >= 0 and entropy.max() <= 1
    assert entropy[labels == 2].mean() > entropy[labels == 1].mean()


def test_no_objects_and_mismatched_shapes():
    prob, labels = _objects()
    empty = object_uncertainty(prob, np.zeros_like(labels))
    assert empty.ids.size == 0 and empty.score.size == 0 and empty.centroid.shape == (0, 2)
    with pytest.raises(ValueError, match="same plane"):
        object_uncertainty(prob[:, :10], labels)


def _auroc(score, wrong):
    from scipy.stats import rankdata

    ranks = rankdata(score)
    n1, n0 = wrong.sum(), (~wrong).sum()
    return (ranks[wrong].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)


def test_on_another_labs_nuclei_the_least_sure_objects_are_the_default_models_mistakes():
    model = load_model("default")
    wrong, score = [], []
    for name in ("Ganglioneuroblastoma_1", "Neuroblastoma_10", "normal_16", "Neuroblastoma_6"):
        image = tifffile.imread(KROMP / "images" / f"{name}.tif")
        truth = tifffile.imread(KROMP / "labels" / f"{name}.tif")
        seg = Segmenter(model, device="cpu", object_size="auto")
        prob = predict(image, seg)  # RGB files: the model's grey input, as every user gets it
        labels = seg.labels(prob)
        scores = object_uncertainty(prob, labels)
        found = overlaps(labels, truth)
        matched = np.zeros(found.pred_ids.size, bool)
        matched[found.cols[found.iou > 0.5]] = True
        wrong += list(~matched[np.searchsorted(found.pred_ids, scores.ids)])
        score += list(scores.score)
    wrong, score = np.array(wrong), np.array(score)
    assert wrong.sum() >= 20  # enough mistakes to judge by
    assert _auroc(score, wrong) > 0.8
    top = np.argsort(-score)[: len(score) // 10]
    assert wrong[top].mean() > 2 * wrong.mean()  # the tenth least sure: at least twice as often wrong as any


@pytest.fixture
def cells(tmp_path):
    name = "Ganglioneuroblastoma_1"
    image = tifffile.imread(KROMP / "images" / f"{name}.tif")[:256, :256]
    path = tmp_path / "cells.tif"
    tifffile.imwrite(path, image)
    return path


def test_segment_writes_the_uncertainty_beside_the_labels(cells, tmp_path, capsys):
    assert main(["segment", str(cells), "-o", str(tmp_path / "cells_labels.tif"), "--uncertainty"]) == 0
    assert "cells_uncertainty.tif" in capsys.readouterr().err
    labels = tifffile.imread(tmp_path / "cells_labels.tif")
    image = tifffile.imread(tmp_path / "cells_uncertainty.tif")
    assert image.dtype == np.float32 and image.shape == labels.shape
    assert (image[labels == 0] == 0).all() and 0 <= image.min() and image.max() <= 1
    with open(tmp_path / "cells_uncertainty.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    ids = np.unique(labels[labels > 0])
    assert sorted(int(r["label"]) for r in rows) == list(ids) and len(ids) > 5
    for r in rows:
        inside = image[labels == int(r["label"])]
        assert np.allclose(inside, float(r["uncertainty"]), atol=1e-5)
        assert int(r["area"]) == inside.size

    # -o out.tif -> out_uncertainty.tif; the default name of a folder's outputs is NAME_labels.tif
    assert main(["segment", str(cells), "-o", str(tmp_path / "out.tif"), "--uncertainty"]) == 0
    assert (tmp_path / "out_uncertainty.tif").is_file() and (tmp_path / "out_uncertainty.csv").is_file()


def test_segment_uncertainty_refuses_what_it_cannot_write_and_touches_nothing(cells, tmp_path, capsys):
    assert main(["segment", str(cells), "-o", str(tmp_path / "out.zarr"), "--uncertainty"]) == 2
    assert "choose a .tif output" in capsys.readouterr().err and not (tmp_path / "out.zarr").exists()
    (tmp_path / "out_uncertainty.csv").write_text("my notes\n")
    assert main(["segment", str(cells), "-o", str(tmp_path / "out.tif"), "--uncertainty"]) == 2
    err = capsys.readouterr().err
    assert "out_uncertainty.csv exists and was not written by napari-unet" in err
    assert (tmp_path / "out_uncertainty.csv").read_text() == "my notes\n" and not (tmp_path / "out.tif").exists()
    assert main(["segment", str(cells), "-o", str(tmp_path / "sem.tif"), "--uncertainty", "--labels", "semantic"]) == 2
    assert "needs instance labels" in capsys.readouterr().err
