"""`napari-unet train`: real files in, a model file with its provenance out; bad input in one line."""

import numpy as np
import pytest
import tifffile

from napari_unet import load_model
from napari_unet.cli import main

from .conftest import dsb_path

FLUO = "0a7d30b252359a10fd298b638b90cb9ada3acced4e0c0e5a3692013f432ee4e9"


@pytest.fixture
def pair(tmp_path):
    image = tifffile.imread(dsb_path("images", FLUO))[:192, :192]
    labels = tifffile.imread(dsb_path("labels", FLUO))[:192, :192]
    tifffile.imwrite(tmp_path / "cells.tif", image)
    tifffile.imwrite(tmp_path / "cells_labels.tif", labels)
    mask = np.zeros(labels.shape, np.uint8)
    mask[:, :128] = 1
    tifffile.imwrite(tmp_path / "cells_mask.tif", mask)
    return tmp_path / "cells.tif", tmp_path / "cells_labels.tif", tmp_path / "cells_mask.tif"


def test_train_from_scratch_writes_a_model_with_its_provenance(tmp_path, pair, capsys):
    image, labels, mask = pair
    out = tmp_path / "new.safetensors"
    args = ["train", "--images", str(image), "--labels", str(labels), "--masks", str(mask), "-o", str(out)]
    code = main(args + ["--from", "scratch", "--width", "4", "--depth", "2", "--steps", "3"])
    assert code == 0, capsys.readouterr().err
    model = load_model(out)
    provenance = model.config.provenance
    assert provenance["steps"] == 3 and provenance["data"] == ["cells.tif"]
    assert model.config.object_size > 0
    assert "validation" in capsys.readouterr().err


def test_fine_tuning_that_does_not_help_writes_nothing_unless_forced(tmp_path, pair, model_file, capsys):
    # The parent is untrained (AP@0.5 of 0 on real nuclei); one step at lr 1e-9 cannot beat it.
    image, labels, _ = pair
    out = tmp_path / "tuned.safetensors"
    args = ["train", "--images", str(image), "--labels", str(labels), "-o", str(out), "--from", str(model_file)]
    code = main(args + ["--steps", "1", "--config", str(_settings(tmp_path, lr=1e-9))])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "not adopted" in err and "not written" in err and not out.exists()
    assert main(args + ["--steps", "1", "--force"]) == 0
    assert load_model(out).config.provenance["parent"] is not None


def _settings(folder, **values):
    import json

    path = folder / "settings.json"
    path.write_text(json.dumps(values))
    return path


def test_unpaired_inputs_are_one_line(tmp_path, pair, capsys):
    image, labels, _ = pair
    code = main(["train", "--images", str(image), str(image), "--labels", str(labels), "-o", str(tmp_path / "m.safetensors")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2 image(s) but 1 labels file(s)" in err[0]


def test_bad_settings_are_one_line(tmp_path, pair, capsys):
    image, labels, _ = pair
    args = ["train", "--images", str(image), "--labels", str(labels), "-o", str(tmp_path / "m.safetensors")]
    assert main(args + ["--config", str(_settings(tmp_path, patch=7, steps=1))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "patch" in err[0]


def test_a_choice_the_settings_do_not_take_is_refused_with_those_they_do(tmp_path, pair, capsys):
    image, labels, _ = pair
    args = ["train", "--images", str(image), "--labels", str(labels), "-o", str(tmp_path / "m.safetensors")]
    with pytest.raises(SystemExit) as refused:
        main(args + ["--loss", "focal"])
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert "'focal'" in err and all(name in err for name in ("'ce_dice'", "'weighted_ce'", "'bce'"))
    assert not (tmp_path / "m.safetensors").exists()
