"""The reviewed region around edits, and the project folder that keeps each run's corrections."""

import json

import numpy as np
import pytest

from napari_unet.core.errors import NapariUNetError
from napari_unet.core.training.project import INDEX_FILE, load_project, next_run, save_entries
from napari_unet.core.training.review import ChangedPixels, grow


def test_changed_pixels_per_plane_grown_by_a_margin():
    changes = ChangedPixels((3, 50, 60))
    mask = np.zeros((1, 3, 4), bool)
    mask[0, 1, 2] = True
    changes.mark_box((slice(1, 2), slice(10, 13), slice(20, 24)), mask)
    changes.mark_points((np.array([2, 2]), np.array([0, 49]), np.array([0, 59])))
    assert sorted(changes.marked()) == [(1,), (2,)]
    reviewed = changes.reviewed(margin=3)
    assert not reviewed[0].any()
    np.testing.assert_array_equal(reviewed[1], grow(np.pad(np.ones((1, 1), bool), ((11, 38), (22, 37))), 3))
    assert reviewed[1].sum() == 29  # a disc of radius 3
    assert reviewed[2, 0, 0] and reviewed[2, 49, 59] and reviewed[2, 3, 0] and not reviewed[2, 3, 1]
    changes.clear((1,))
    assert changes.marked() == [(2,)]


def test_a_project_keeps_every_run_and_reads_the_latest_back(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 300, (2, 20, 30)).astype(np.uint16)
    reviewed = rng.random((2, 20, 30)) > 0.5
    image = rng.random((2, 20, 30)).astype(np.float32)
    assert next_run(tmp_path / "p") == 1
    save_entries(tmp_path / "p", 1, [("a/b c.tif", image, labels, reviewed, "ZYX")])
    save_entries(tmp_path / "p", 2, [("x", None, labels[:1], reviewed[:1], None), ("x", None, labels[1:], reviewed[1:], None)])
    assert next_run(tmp_path / "p") == 3
    (first,) = load_project(tmp_path / "p", run=1)
    np.testing.assert_array_equal(first.labels, labels)
    np.testing.assert_array_equal(first.reviewed, reviewed)
    np.testing.assert_array_equal(first.image, image)
    assert first.image_name == "a/b c.tif" and first.axes == "ZYX" and first.labels_file.name == "run001_a_b_c.tif_labels.tif"
    latest = load_project(tmp_path / "p")
    assert [e.run for e in latest] == [2, 2] and latest[0].labels_file != latest[1].labels_file
    index = json.loads((tmp_path / "p" / INDEX_FILE).read_text())
    assert len(index["entries"]) == 3 and set(index["entries"][0]) >= {"image_name", "labels_file", "mask_file", "time"}
    latest[1].mask_file.unlink()
    with pytest.raises(NapariUNetError, match="missing"):
        load_project(tmp_path / "p")
    with pytest.raises(NapariUNetError, match="holds no napari-unet project"):
        load_project(tmp_path)
