"""Every subcommand over a matrix of bad inputs: exit code 2, one line that names the file, nothing damaged.

Each case builds its files in ``tmp_path``, runs one command line, and then
checks that every file that existed before is byte-identical and that no
file was left behind, whatever the command got wrong.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_unet.cli import main
from napari_unet.core.io.stack_io import write_labels

from .conftest import dsb_path

FLUO = "0a7d30b252359a10fd298b638b90cb9ada3acced4e0c0e5a3692013f432ee4e9"


def _real(folder: Path, name: str = "cells") -> tuple[Path, Path]:
    image = tifffile.imread(dsb_path("images", FLUO))[:96, :96]
    labels = tifffile.imread(dsb_path("labels", FLUO))[:96, :96]
    tifffile.imwrite(folder / f"{name}.tif", image)
    tifffile.imwrite(folder / f"{name}_labels.tif", labels)
    return folder / f"{name}.tif", folder / f"{name}_labels.tif"


def _truncated(path: Path) -> Path:
    data = np.arange(64 * 64 * 4, dtype=np.uint16).reshape(4, 64, 64)
    tifffile.imwrite(path, data, photometric="minisblack", metadata={"axes": "ZYX"})
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 3])
    return path


def _train(image: Path, labels: Path, out: Path, *options: str) -> list[str]:
    return ["train", "--images", str(image), "--labels", str(labels), "-o", str(out), *options]


def _nan(path: Path) -> Path:
    data = np.ones((40, 40), np.float32)
    data[5, 5] = np.nan
    tifffile.imwrite(path, data)
    return path


# Each case: (what it writes into the folder -> the command line, text the error line must hold)
def segment_missing(d, m):
    return ["segment", str(d / "absent.tif"), "-o", str(d / "o.tif"), "--model", m], "absent.tif"


def segment_not_tiff(d, m):
    (d / "notes.tif").write_text("not an image")
    return ["segment", str(d / "notes.tif"), "-o", str(d / "o.tif"), "--model", m], "notes.tif"


def segment_truncated(d, m):
    return ["segment", str(_truncated(d / "cut.tif")), "-o", str(d / "o.tif"), "--model", m], "cut.tif"


def segment_nan(d, m):
    return ["segment", str(_nan(d / "nan.tif")), "-o", str(d / "o.tif"), "--model", m], "nan.tif"


def segment_output_is_input(d, m):
    image, _ = _real(d)
    return ["segment", str(image), "-o", str(image), "--model", m], "cells.tif"


def segment_over_ground_truth(d, m):
    image, truth = _real(d)
    return ["segment", str(image), "-o", str(truth), "--model", m], "cells_labels.tif"


def segment_ground_truth_in_output_folder(d, m):
    image, _ = _real(d)
    _real(d, "more")
    out = d / "out"
    out.mkdir()
    tifffile.imwrite(out / "cells_labels.tif", np.ones((96, 96), np.uint16))  # a user's own file
    return ["segment", str(image), str(d / "more.tif"), "-o", str(out), "--model", m], "cells_labels.tif"


def segment_several_into_a_file_name(d, m):
    image, _ = _real(d)
    _real(d, "more")
    return ["segment", str(image), str(d / "more.tif"), "-o", str(d / "two.tif"), "--model", m], "two.tif"


def segment_tiny_object_size(d, m):
    image, _ = _real(d)
    return ["segment", str(image), "-o", str(d / "o.tif"), "--model", "default", "--object-size", "0.01"], "0.01"


def segment_infinite_object_size(d, m):
    image, _ = _real(d)
    return ["segment", str(image), "-o", str(d / "o.tif"), "--model", m, "--object-size", "inf"], "'inf'"


def segment_nan_overlap(d, m):
    image, _ = _real(d)
    return ["segment", str(image), "-o", str(d / "o.tif"), "--model", m, "--overlap", "nan"], "'nan'"


def segment_model_folder(d, m):
    image, _ = _real(d)
    return ["segment", str(image), "-o", str(d / "o.tif"), "--model", str(d)], "is a folder"


def train_output_is_labels(d, m):
    image, labels = _real(d)
    return _train(image, labels, labels, "--steps", "1", "--from", m, "--force"), "cells_labels.tif"


def train_output_not_a_model(d, m):
    image, labels = _real(d)
    (d / "notes.safetensors").write_text("my notes")
    return _train(image, labels, d / "notes.safetensors", "--steps", "1", "--from", m), "notes.safetensors"


def train_output_not_safetensors(d, m):
    image, labels = _real(d)
    return _train(image, labels, d / "model.tif", "--steps", "1", "--from", m), "model.tif"


def train_output_folder_missing(d, m):
    image, labels = _real(d)
    return _train(image, labels, d / "no" / "m.safetensors", "--steps", "1", "--from", m), "m.safetensors"


def train_unpaired_names(d, m):
    a, _ = _real(d, "a")
    b, _ = _real(d, "b")
    (d / "b_labels.tif").rename(d / "other_labels.tif")
    return ["train", "--images", str(a), str(b), "--labels", str(d / "a_labels.tif"), str(d / "other_labels.tif"),
            "-o", str(d / "m.safetensors"), "--steps", "1", "--from", m], "other_labels.tif"


def train_empty_labels(d, m):
    image, labels = _real(d)
    tifffile.imwrite(labels, np.zeros((96, 96), np.uint16))
    return _train(image, labels, d / "m.safetensors", "--steps", "1", "--from", m), "cells.tif"


def train_single_pixel_labels(d, m):
    image, labels = _real(d)
    one = np.zeros((96, 96), np.uint16)
    one[40, 40] = 1
    tifffile.imwrite(labels, one)
    return _train(image, labels, d / "m.safetensors", "--steps", "1", "--from", "default"), "cells.tif"


def train_zero_minutes(d, m):
    image, labels = _real(d)
    return _train(image, labels, d / "m.safetensors", "--minutes", "0", "--from", m), "--minutes"


def train_missing_parent(d, m):
    image, labels = _real(d)
    return _train(image, labels, d / "m.safetensors", "--steps", "1", "--from", str(d / "gone.safetensors")), "scratch"


def train_truncated_labels(d, m):
    image, labels = _real(d)
    _truncated(labels)
    return _train(image, labels, d / "m.safetensors", "--steps", "1", "--from", m), "cells_labels.tif"


def evaluate_unpaired_names(d, m):
    a, _ = _real(d, "a")
    b, _ = _real(d, "b")
    (d / "b_labels.tif").rename(d / "zz_labels.tif")
    return ["evaluate", "--model", m, "--images", str(a), str(b), "--labels", str(d / "a_labels.tif"),
            str(d / "zz_labels.tif")], "zz_labels.tif"


def evaluate_report_into_missing_folder(d, m):
    image, labels = _real(d)
    return ["evaluate", "--model", m, "--images", str(image), "--labels", str(labels), "--json",
            str(d / "no" / "r.json")], "r.json"


CASES = [
    segment_missing, segment_not_tiff, segment_truncated, segment_nan, segment_output_is_input,
    segment_over_ground_truth, segment_ground_truth_in_output_folder, segment_several_into_a_file_name,
    segment_tiny_object_size, segment_infinite_object_size, segment_nan_overlap, segment_model_folder,
    train_output_is_labels, train_output_not_a_model, train_output_not_safetensors, train_output_folder_missing,
    train_unpaired_names, train_empty_labels, train_single_pixel_labels, train_zero_minutes, train_missing_parent,
    train_truncated_labels, evaluate_unpaired_names, evaluate_report_into_missing_folder,
]


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__)
def test_bad_input_exits_2_with_one_line_naming_it_and_damages_nothing(case, tmp_path, model_file, capsys):
    work = tmp_path / "work"
    work.mkdir()
    argv, named = case(work, str(model_file))
    before = _snapshot(work)
    try:
        code = main(argv)
    except SystemExit as e:  # argparse refuses an option's value itself
        code = e.code
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if "error:" in line]
    assert code == 2, err
    assert len(lines) == 1, err
    assert named in lines[0], lines[0]
    assert "Traceback" not in err
    assert _snapshot(work) == before  # nothing that was there changed, nothing was left behind


def test_ctrl_c_ends_a_run_with_one_line_and_exit_130_leaving_files_as_they_were(
    tmp_path, model_file, capsys, monkeypatch
):
    image, labels = _real(tmp_path)
    out = write_labels(tmp_path / "out.tif", np.ones((8, 8), np.uint16))
    before = _snapshot(tmp_path)

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("napari_unet.core.predict.inference.Segmenter.iter_prepare", interrupt)
    assert main(["segment", str(image), "-o", str(out), "--model", str(model_file)]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "napari-unet: interrupted"
    assert _snapshot(tmp_path) == before


def test_an_existing_model_is_replaced_and_the_command_says_so(tmp_path, model_file, capsys):
    image, labels = _real(tmp_path)
    out = tmp_path / "mine.safetensors"
    out.write_bytes(model_file.read_bytes())
    args = ["train", "--images", str(image), "--labels", str(labels), "-o", str(out), "--steps", "1",
            "--from", str(model_file), "--force"]
    assert main(args) == 0, capsys.readouterr().err
    assert f"replaced {out}" in capsys.readouterr().err


def test_a_foreign_output_is_replaced_only_when_asked(tmp_path, model_file, capsys):
    image, truth = _real(tmp_path)
    out = tmp_path / "theirs.tif"
    tifffile.imwrite(out, np.ones((96, 96), np.uint16))
    args = ["segment", str(image), "-o", str(out), "--model", str(model_file)]
    assert main(args) == 2
    assert main(args + ["--overwrite"]) == 0
    assert "replaced the file that was there" in capsys.readouterr().err
    assert main(args) == 0  # now it is ours
    assert tifffile.imread(out).shape == (96, 96)


def test_names_that_do_not_pair_pair_by_order_only_when_told(tmp_path, model_file, capsys):
    a, _ = _real(tmp_path, "a")
    b, _ = _real(tmp_path, "b")
    (tmp_path / "b_labels.tif").rename(tmp_path / "zz_labels.tif")
    args = ["evaluate", "--model", str(model_file), "--images", str(a), str(b),
            "--labels", str(tmp_path / "a_labels.tif"), str(tmp_path / "zz_labels.tif")]
    assert main(args) == 2
    assert main(args + ["--pair-by-order"]) == 0


def test_a_shape_only_4d_tiff_is_segmented_plane_by_plane_not_averaged_as_rgba(tmp_path, model_file):
    stack = (np.random.default_rng(0).random((3, 4, 32, 32)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "four.tif", stack)  # no axes: tifffile would call it planar RGBA
    assert main(["segment", str(tmp_path / "four.tif"), "-o", str(tmp_path / "o.tif"), "--model", str(model_file)]) == 0
    assert tifffile.imread(tmp_path / "o.tif").shape == (3, 4, 32, 32)


def test_a_semantic_model_segments_semantic_labels_without_being_told(tmp_path, capsys):
    from napari_unet import Model, ModelConfig

    model = Model.from_config(ModelConfig(network=dict(depth=1, width=2, out_channels=2), task="semantic",
                                          class_names=("background", "foreground"), tile=64, overlap=16))
    path = model.save(tmp_path / "semantic.safetensors")
    image, _ = _real(tmp_path)
    assert main(["segment", str(image), "-o", str(tmp_path / "o.tif"), "--model", str(path)]) == 0, \
        capsys.readouterr().err
    assert set(np.unique(tifffile.imread(tmp_path / "o.tif"))) <= {0, 1}
