"""bioimage.io model packages: the default and a fine-tuned model exported, passed by bioimage.io's own test,
read back as the same model (same labels on real images), with nothing reaching the network."""

import sys

import numpy as np
import pytest
import tifffile

from napari_unet import load_model, segment
from napari_unet.cli import main
from napari_unet.core.errors import ModelFileError, NapariUNetError
from napari_unet.core.exchange.bioimageio import check_package, export_bioimageio
from napari_unet.core.io.samples import read_sample
from napari_unet.core.progress import run
from napari_unet.core.training import FineTune, TrainConfig

from .test_finetune import _kromp_samples

SAMPLES = ["nuclei_fluorescence", "nuclei_fluorescence_dense", "nuclei_he"]  # H&E: the RGB as the model's grey input


def _same_labels(model, package):
    back = load_model(package)
    assert back.config == model.config
    for name in SAMPLES:
        image = read_sample(name)
        np.testing.assert_array_equal(segment(image, back, device="cpu"), segment(image, model, device="cpu"))


def test_the_default_model_package_passes_the_zoo_test_and_reads_back_as_the_same_model(tmp_path, offline, capsys):
    package = tmp_path / "nuclei.zip"
    assert main(["export", "default", "-o", str(package)]) == 0
    assert "bioimage.io model test: passed" in capsys.readouterr().err
    _same_labels(load_model("default"), package)
    assert main(["segment", str(tmp_path / "x.tif"), "-o", str(tmp_path / "y.tif"), "--model", str(package)]) == 2
    tifffile.imwrite(tmp_path / "cells.tif", read_sample("nuclei_fluorescence"))
    assert main(["segment", str(tmp_path / "cells.tif"), "-o", str(tmp_path / "cells_labels.tif"),
                 "--model", str(package)]) == 0
    np.testing.assert_array_equal(
        tifffile.imread(tmp_path / "cells_labels.tif"), segment(read_sample("nuclei_fluorescence"), "default")
    )


def test_a_fine_tuned_model_exports_passes_and_reads_back(tmp_path, offline):
    parent = load_model("default")
    samples = _kromp_samples(parent, ["Neuroblastoma_1"])
    tuned = run(FineTune(parent, samples, TrainConfig(steps=3, patch=64, batch_size=2, val_fraction=0)).run()).finetuned
    assert tuned.config.provenance["steps"] == 3
    package = export_bioimageio(tuned, tmp_path / "mine.zip", sample=read_sample("nuclei_fluorescence"),
                                name="my nuclei", authors=("A. Person",))
    passed, report = check_package(package)
    assert passed, report
    _same_labels(tuned, package)


def test_packages_and_exports_that_cannot_be_are_one_clear_message(tmp_path, monkeypatch, capsys):
    import zipfile

    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("rdf.yaml", "type: model\nname: someone else's\nformat_version: 0.5.4\n")
    with pytest.raises(ModelFileError, match="other.zip is not a valid bioimage.io model package"):
        load_model(other)
    assert main(["export", "default", "-o", str(tmp_path / "nuclei.tif")]) == 2
    assert "must be a .zip file" in capsys.readouterr().err
    (tmp_path / "notes.zip").write_text("mine")
    assert main(["export", "default", "-o", str(tmp_path / "notes.zip")]) == 2
    assert "refusing to replace it" in capsys.readouterr().err and (tmp_path / "notes.zip").read_text() == "mine"
    monkeypatch.setitem(sys.modules, "bioimageio.spec", None)  # the extra not installed
    with pytest.raises(NapariUNetError, match=r"pip install 'napari-unet\[bioimageio\]'"):
        export_bioimageio(load_model("default"), tmp_path / "x.zip", sample=read_sample("nuclei_fluorescence"))
    assert not (tmp_path / "x.zip").exists()
