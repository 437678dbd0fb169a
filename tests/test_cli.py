"""`napari-unet segment`: real runs on TIFFs in tmp_path, and every bad input answered in one line."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_unet.cli import main
from napari_unet.core.io.stack_io import write_labels


@pytest.fixture
def image_file(tmp_path, rng):
    path = tmp_path / "cells.tif"
    tifffile.imwrite(path, rng.integers(0, 4000, (70, 90), dtype=np.uint16))
    return path


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("napari-unet: error: ")
    return err[0]


def test_segment_writes_labels_of_the_image_shape(tmp_path, image_file, model_file):
    out = tmp_path / "labels.tif"
    assert main(["segment", str(image_file), "-o", str(out), "--model", str(model_file), "--tile", "64"]) == 0
    labels = tifffile.imread(out)
    assert labels.shape == (70, 90) and labels.dtype == np.uint32


def test_segment_a_stack_gives_ids_unique_across_planes(tmp_path, rng, model_file):
    stack = tmp_path / "stack.tif"
    data = rng.integers(0, 255, (3, 40, 50), dtype=np.uint8)
    tifffile.imwrite(stack, data, photometric="minisblack", metadata={"axes": "ZYX"})
    out = tmp_path / "stack_labels.tif"
    assert main(["segment", str(stack), "-o", str(out), "--model", str(model_file), "--labels", "instances"]) == 0
    with tifffile.TiffFile(out) as tif:
        assert tif.series[0].axes == "ZYX"
        labels = tif.series[0].asarray()
    assert labels.shape == (3, 40, 50)
    ids = [set(np.unique(p)) - {0} for p in labels]
    assert all(not (a & b) for i, a in enumerate(ids) for b in ids[i + 1 :])


def test_segment_a_folder_writes_one_labels_file_per_image(tmp_path, rng, model_file):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.tif", "b.tiff"):
        tifffile.imwrite(folder / name, rng.integers(0, 255, (30, 30), dtype=np.uint8))
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    assert main(["segment", str(folder), "-o", str(out), "--model", str(model_file)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a_labels.tif", "b_labels.tif"]


def test_the_console_script_is_installed():
    exe = Path(sys.executable).parent / "napari-unet"
    result = subprocess.run([str(exe), "segment", "--help"], capture_output=True, text=True, check=True)
    assert "--overlap" in result.stdout and "--device" in result.stdout


def _write_nan_image(path):
    data = np.ones((30, 30), np.float32)
    data[3, 4] = np.nan
    tifffile.imwrite(path, data)


def _write_4d_with_too_many_channels(path):
    tifffile.imwrite(path, np.zeros((2, 5, 16, 16), np.uint8), metadata={"axes": "ZCYX"})


def _write_empty(path):
    tifffile.imwrite(path, np.zeros((0, 16), np.uint8))


BAD_INPUTS = {
    "missing file": (None, "no such file"),
    "not a TIFF": (lambda p: p.write_text("just text"), "not a TIFF file"),
    "wrong dimensionality": (_write_4d_with_too_many_channels, "expects 1 channel"),
    "empty image": (_write_empty, "empty"),
    "NaN-filled float image": (_write_nan_image, "NaN"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_gives_one_line_and_leaves_existing_files_untouched(case, tmp_path, capsys, model_file):
    make, expected = BAD_INPUTS[case]
    src = tmp_path / "input.tif"
    if make is not None:
        make(src)
    before = src.read_bytes() if src.exists() else None
    out = write_labels(tmp_path / "labels.tif", np.ones((8, 8), np.uint16))  # an earlier result, ours to replace
    earlier = out.read_bytes()
    code = main(["segment", str(src), "-o", str(out), "--model", str(model_file)])
    assert code == 2
    assert expected in _error_line(capsys)
    assert out.read_bytes() == earlier
    assert (src.read_bytes() if src.exists() else None) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["labels.tif", "model.safetensors"] + (["input.tif"] if make else [])
    )


def test_an_output_under_a_file_is_refused_before_any_work(tmp_path, capsys, image_file, model_file):
    code = main(["segment", str(image_file), "-o", str(image_file / "l.tif"), "--model", str(model_file)])
    assert code == 2
    assert "does not exist" in _error_line(capsys)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, where nobody may create files")
def test_an_unwritable_output_folder_is_refused(tmp_path, capsys, image_file, model_file):
    # /proc refuses new files even to root, so this holds for every user (chmod would not stop root).
    code = main(["segment", str(image_file), "-o", "/proc/self/labels.tif", "--model", str(model_file)])
    assert code == 2
    assert "cannot write /proc/self/labels.tif" in _error_line(capsys)


def test_an_output_in_a_missing_folder_is_refused(tmp_path, capsys, image_file, model_file):
    code = main(["segment", str(image_file), "-o", str(tmp_path / "nope" / "l.tif"), "--model", str(model_file)])
    assert code == 2
    assert "does not exist" in _error_line(capsys)


def test_an_output_that_is_the_input_is_refused(tmp_path, capsys, image_file, model_file):
    before = image_file.read_bytes()
    assert main(["segment", str(image_file), "-o", str(image_file), "--model", str(model_file)]) == 2
    assert "refusing to overwrite" in _error_line(capsys)
    assert image_file.read_bytes() == before


def test_a_bad_model_file_is_one_line(tmp_path, capsys, image_file):
    bad = tmp_path / "m.safetensors"
    bad.write_bytes(b"nope")
    assert main(["segment", str(image_file), "-o", str(tmp_path / "l.tif"), "--model", str(bad)]) == 2
    assert "not a napari-unet model file" in _error_line(capsys)


def test_an_unavailable_device_is_one_line(tmp_path, capsys, image_file, model_file):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the error path needs a machine without it")
    code = main(["segment", str(image_file), "-o", str(tmp_path / "l.tif"), "--model", str(model_file), "--device", "cuda"])
    assert code == 2
    assert "no CUDA GPU is available" in _error_line(capsys)
