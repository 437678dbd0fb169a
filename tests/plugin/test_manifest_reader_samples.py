"""The plugin as napari finds it: manifest, widgets, reader, writer and sample data on a real viewer."""

import numpy as np
import pytest
import tifffile
from napari.layers import Image, Labels

from napari_unet.plugin.label_tools_widget import LabelToolsWidget
from napari_unet.plugin.predict_widget import PredictWidget
from napari_unet.plugin.reader import napari_get_reader

pytestmark = pytest.mark.gui


def test_the_widgets_are_found_through_the_manifest(viewer):
    for name, cls in [("Predict", PredictWidget), ("Label tools", LabelToolsWidget)]:
        _, widget = viewer.window.add_plugin_dock_widget("napari-unet", name)
        assert isinstance(widget, cls)


def test_the_reader_opens_tiffs_with_their_axes_and_pixel_size(viewer, tmp_path, rng):
    flat = rng.integers(0, 4000, (40, 50), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "cells.tif", flat)
    (layer,) = viewer.open(tmp_path / "cells.tif", plugin="napari-unet")
    assert isinstance(layer, Image) and layer.name == "cells" and not layer.rgb
    assert layer.metadata["axes"] == "YX"
    np.testing.assert_array_equal(layer.data, flat)

    viewer.layers.clear()
    stack = rng.integers(0, 255, (6, 30, 40), dtype=np.uint8)
    meta = {"axes": "ZYX", "spacing": 2.0, "unit": "um"}
    tifffile.imwrite(tmp_path / "stack.tif", stack, imagej=True, resolution=(4.0, 4.0), metadata=meta)
    (layer,) = viewer.open(tmp_path / "stack.tif", plugin="napari-unet")
    assert layer.data.shape == (6, 30, 40) and layer.metadata["axes"] == "ZYX"
    np.testing.assert_allclose(layer.scale, [2.0, 0.25, 0.25])
    assert [str(u) for u in layer.units] == ["micrometer"] * 3
    assert viewer.dims.nsteps[0] == 6

    viewer.layers.clear()
    colours = rng.integers(0, 4000, (3, 2, 20, 24), dtype=np.uint16)
    meta = {"axes": "ZCYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5, "PhysicalSizeZ": 1.5}
    tifffile.imwrite(tmp_path / "two_colours.ome.tif", colours, ome=True, metadata=meta)
    layers = viewer.open(tmp_path / "two_colours.ome.tif", plugin="napari-unet")
    assert [layer.name for layer in layers] == ["two_colours.ome ch0", "two_colours.ome ch1"]
    for c, layer in enumerate(layers):
        assert layer.data.shape == (3, 20, 24) and layer.metadata["axes"] == "ZYX"
        np.testing.assert_array_equal(np.asarray(layer.data), colours[:, c])
        np.testing.assert_allclose(layer.scale, [1.5, 0.5, 0.5])

    viewer.layers.clear()
    tifffile.imwrite(tmp_path / "he.tif", rng.integers(0, 255, (20, 30, 3), dtype=np.uint8), photometric="rgb")
    (layer,) = viewer.open(tmp_path / "he.tif", plugin="napari-unet")
    assert layer.rgb and layer.metadata["axes"] == "YXS"


def test_files_the_reader_cannot_read_get_none(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    fake = tmp_path / "fake.tif"
    fake.write_bytes(b"II*\x00" + b"\x00" * 20)
    png_named_tif = tmp_path / "image.tif"
    png_named_tif.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    for path in (text, fake, png_named_tif, tmp_path / "missing.tif", [str(text), str(fake)]):
        assert napari_get_reader(str(path) if not isinstance(path, list) else path) is None


def test_labels_are_saved_as_tiff_with_their_axes(tmp_path):
    labels = np.zeros((2, 10, 12), np.uint32)
    labels[1, 2:5, 3:6] = 70000
    layer = Labels(labels, metadata={"axes": "TYX"})
    out = tmp_path / "labels.tif"
    assert layer.save(str(out), plugin="napari-unet") == [str(out)]
    with tifffile.TiffFile(out) as tif:
        assert tif.series[0].axes == "TYX"
        np.testing.assert_array_equal(tif.asarray(), labels)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32])
def test_labels_saved_by_the_plugin_open_again_as_the_same_labels_layer(viewer, tmp_path, dtype):
    labels = np.zeros((3, 20, 24), dtype)
    labels[1, 2:5, 3:6], labels[2, 10:15, 4:9] = 7, np.iinfo(dtype).max
    Labels(labels, metadata={"axes": "ZYX"}).save(str(tmp_path / "cells.tif"), plugin="napari-unet")
    (layer,) = viewer.open(str(tmp_path / "cells.tif"), plugin="napari-unet")
    assert isinstance(layer, Labels) and layer.data.dtype == dtype and layer.metadata["axes"] == "ZYX"
    np.testing.assert_array_equal(layer.data, labels)
    layer.paint((1, 10, 10), 3)  # in memory, not a read-only map of the file
    assert layer.data[1, 10, 10] == 3


def test_label_tiffs_by_name_open_as_labels_and_images_as_images(viewer, tmp_path):
    ids = np.zeros((16, 16), np.uint16)
    ids[2:6, 2:6] = 1
    tifffile.imwrite(tmp_path / "a_labels.tif", ids)  # a ground truth from elsewhere: named so
    tifffile.imwrite(tmp_path / "a.tif", ids)  # integers, but nothing says labels
    tifffile.imwrite(tmp_path / "rgb_labels.tif", np.zeros((16, 16, 3), np.uint8), photometric="rgb")
    kinds = {}
    for name in ("a_labels.tif", "a.tif", "rgb_labels.tif"):
        (layer,) = viewer.open(str(tmp_path / name), plugin="napari-unet")
        kinds[name] = type(layer).__name__
    assert kinds == {"a_labels.tif": "Labels", "a.tif": "Image", "rgb_labels.tif": "Image"}


SAMPLES = {
    "nuclei_fluorescence": [(256, 256), (256, 256)],
    "nuclei_fluorescence_dense": [(520, 696), (520, 696)],
    "nuclei_he": [(256, 320, 3), (256, 320)],
    "nuclei_stack": [(5, 256, 256), (5, 256, 256)],
}


def test_the_samples_open_with_their_ground_truth(viewer):
    for key, shapes in SAMPLES.items():
        viewer.layers.clear()
        viewer.open_sample("napari-unet", key)
        image, truth = viewer.layers
        assert isinstance(image, Image) and isinstance(truth, Labels)
        assert [image.data.shape, truth.data.shape] == shapes
        assert image.rgb == (key == "nuclei_he") and not truth.visible
        ids = np.unique(truth.data)
        assert ids[0] == 0 and len(ids) > 20 and image.data.std() > 0
