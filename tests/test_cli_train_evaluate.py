"""`napari-unet train --arch ...` and `napari-unet evaluate`: real runs on TIFFs in tmp_path."""

import json

import numpy as np
import pytest
import tifffile

from napari_unet import load_model
from napari_unet.cli import main
from napari_unet.core.models.u2net import U2Net

from .conftest import dsb_path

FLUO = "0a7d30b252359a10fd298b638b90cb9ada3acced4e0c0e5a3692013f432ee4e9"


@pytest.fixture
def nuclei(tmp_path):
    image = tifffile.imread(dsb_path("images", FLUO))[:96, :96]
    labels = tifffile.imread(dsb_path("labels", FLUO))[:96, :96]
    tifffile.imwrite(tmp_path / "nuclei.tif", image)
    tifffile.imwrite(tmp_path / "nuclei_labels.tif", labels)
    return tmp_path / "nuclei.tif", tmp_path / "nuclei_labels.tif"


def _train(nuclei, out, *options):
    image, labels = nuclei
    args = ["train", "--images", str(image), "--labels", str(labels), "-o", str(out), "--from", "scratch",
            "--steps", "1", "--device", "cpu", *options]
    return main(args)


def test_train_u2net_p_for_foreground_with_the_options_it_was_given(nuclei, tmp_path):
    out = tmp_path / "u2netp.safetensors"
    options = ["--arch", "u2net-p", "--task", "semantic", "--classes", "1", "--loss", "bce", "--optimizer", "rmsprop",
               "--lr", "0.0005", "--patch", "40", "--batch-size", "1", "--seed", "3"]
    assert _train(nuclei, out, *options) == 0
    model = load_model(out)
    assert isinstance(model.network, U2Net) and model.config.network.variant == "small"
    assert model.config.class_names == ("background", "foreground")
    settings = model.config.provenance["train_config"]
    assert (settings["loss"], settings["optimizer"], settings["lr"]) == ("bce", "rmsprop", 0.0005)
    assert (settings["patch"], settings["batch_size"], settings["seed"]) == (40, 1, 3)
    # validated on a held-out band, with the instance labels taken as foreground there too
    assert model.config.provenance["validation"]["metric"] == "mean IoU"


def test_train_the_original_unet_unpadded_without_batch_norm(nuclei, tmp_path):
    out = tmp_path / "original.safetensors"
    assert _train(nuclei, out, "--arch", "unet-original", "--depth", "2", "--width", "4", "--task", "semantic") == 0
    network = load_model(out).config.network
    assert (network.padding, network.batch_norm, network.upsampling) == (False, False, "transposed")


def test_the_same_seed_gives_the_same_model(nuclei, tmp_path):
    weights = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.safetensors"
        assert _train(nuclei, out, "--depth", "2", "--width", "4", "--seed", "5", "--patch", "32") == 0
        weights.append(next(iter(load_model(out).network.state_dict().values())))
    np.testing.assert_array_equal(weights[0].numpy(), weights[1].numpy())


def test_evaluate_prints_the_model_next_to_the_baseline_and_writes_json(nuclei, tmp_path, model_file, capsys):
    image, labels = nuclei
    report = tmp_path / "report.json"
    code = main(["evaluate", "--model", str(model_file), "--images", str(image), "--labels", str(labels),
                 "--baseline", "otsu", "--json", str(report), "--device", "cpu"])
    assert code == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["metric", "model", "otsu"]
    assert rows[0].startswith("AP@0.50")
    data = json.loads(report.read_text())
    assert data["model"] == str(model_file) and data["task"] == "instances"
    assert len(data["results"]["otsu"]["per_image"]) == 1


def test_evaluate_with_unpaired_files_is_one_line(nuclei, tmp_path, model_file, capsys):
    image, labels = nuclei
    code = main(["evaluate", "--model", str(model_file), "--images", str(image), "--labels", str(labels), str(labels)])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["napari-unet: error: 1 image(s) but 2 labels file(s); expected one for each"]
