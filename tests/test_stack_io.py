import numpy as np
import pytest
import tifffile

from napari_unet import StackFileError
from napari_unet.core.io.stack_io import CheckedArray, LabelsTiffWriter, read_stack, write_labels


def test_a_2d_tiff_reads_with_yx_axes(tmp_path, rng):
    data = rng.integers(0, 4000, (30, 40), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", data)
    stack = read_stack(tmp_path / "a.tif")
    assert stack.axes == "YX"
    np.testing.assert_array_equal(np.asarray(stack.data), data)


def test_an_imagej_zyx_stack_reads_with_axes_and_scale(tmp_path, rng):
    data = rng.integers(0, 255, (5, 32, 48), dtype=np.uint8)
    tifffile.imwrite(
        tmp_path / "z.tif", data, imagej=True, resolution=(1 / 0.25, 1 / 0.25), metadata={"axes": "ZYX", "spacing": 2.0, "unit": "um"}
    )
    stack = read_stack(tmp_path / "z.tif")
    assert stack.axes == "ZYX" and stack.shape == (5, 32, 48)
    assert stack.scale == pytest.approx({"Z": 2.0, "Y": 0.25, "X": 0.25})
    assert stack.unit == "um"


def test_an_ome_tiff_reads_with_channels_and_physical_size(tmp_path, rng):
    data = rng.integers(0, 255, (3, 2, 32, 32), dtype=np.uint16)
    tifffile.imwrite(
        tmp_path / "o.ome.tif", data, ome=True, metadata={"axes": "ZCYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5, "PhysicalSizeZ": 1.5}
    )
    stack = read_stack(tmp_path / "o.ome.tif")
    assert stack.axes == "ZCYX"
    assert stack.scale == pytest.approx({"Z": 1.5, "Y": 0.5, "X": 0.5})


def test_uncompressed_files_are_memory_mapped_and_large_compressed_ones_opened_lazily(tmp_path, rng):
    data = rng.integers(0, 255, (4, 64, 64), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "raw.tif", data, photometric="minisblack")
    tifffile.imwrite(tmp_path / "zip.tif", data, photometric="minisblack", compression="zlib")
    assert isinstance(read_stack(tmp_path / "raw.tif").data, np.memmap)
    lazy = read_stack(tmp_path / "zip.tif", lazy=True).data
    assert not isinstance(lazy, np.ndarray)
    np.testing.assert_array_equal(lazy[2], data[2])


def test_a_file_that_is_not_a_tiff_is_refused(tmp_path):
    (tmp_path / "x.tif").write_text("hello")
    with pytest.raises(StackFileError, match="not a TIFF"):
        read_stack(tmp_path / "x.tif")


def test_a_truncated_tiff_is_refused(tmp_path, rng):
    data = rng.integers(0, 255, (4, 64, 64), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "t.tif", data, photometric="minisblack", compression="zlib")
    raw = (tmp_path / "t.tif").read_bytes()
    (tmp_path / "t.tif").write_bytes(raw[: len(raw) // 3])
    for lazy in (False, True):
        with pytest.raises(StackFileError, match="truncated or corrupt"):
            read_stack(tmp_path / "t.tif", lazy=lazy)


def test_a_plane_that_fails_to_decode_names_the_file(tmp_path):
    class Broken:
        shape, dtype = (2, 8, 8), np.uint8

        def __getitem__(self, key):
            raise RuntimeError("DeflateError: incomplete stream")

    with pytest.raises(StackFileError, match="x.tif at plane 1: truncated or corrupt.*incomplete stream"):
        CheckedArray(Broken(), tmp_path / "x.tif")[1]


def test_labels_round_trip_with_axes(tmp_path):
    labels = np.arange(2 * 3 * 4 * 5, dtype=np.uint32).reshape(2, 3, 4, 5) * 1000
    write_labels(tmp_path / "l.tif", labels, axes="TZYX")
    with tifffile.TiffFile(tmp_path / "l.tif") as tif:
        assert tif.series[0].axes == "TZYX"
        np.testing.assert_array_equal(tif.series[0].asarray(), labels)


def test_small_ids_are_written_as_uint16_for_imagej(tmp_path):
    write_labels(tmp_path / "l.tif", np.array([[0, 1], [2, 3]], np.int64))
    assert tifffile.imread(tmp_path / "l.tif").dtype == np.uint16


def test_an_interrupted_stream_leaves_the_previous_file_untouched(tmp_path):
    target = tmp_path / "labels.tif"
    target.write_bytes(b"previous result")
    with pytest.raises(RuntimeError, match="stop"):
        with LabelsTiffWriter(target, (3, 8, 8), axes="ZYX") as writer:
            writer.write(np.ones((8, 8)))
            raise RuntimeError("stop")
    assert target.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.tif"]


def test_an_incomplete_stream_is_an_error_and_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="only 1 of 3 planes"):
        with LabelsTiffWriter(tmp_path / "l.tif", (3, 8, 8)) as writer:
            writer.write(np.ones((8, 8)))
    assert list(tmp_path.iterdir()) == []


def test_written_files_get_ordinary_permissions_not_the_temporary_files(tmp_path):
    from napari_unet.core.io import files

    write_labels(tmp_path / "new.tif", np.ones((4, 4), np.uint8))
    kept = tmp_path / "kept.tif"
    kept.write_bytes(b"x")
    kept.chmod(0o640)
    write_labels(kept, np.ones((4, 4), np.uint8))
    assert (tmp_path / "new.tif").stat().st_mode & 0o777 == 0o666 & ~files._UMASK
    assert kept.stat().st_mode & 0o777 == 0o640
