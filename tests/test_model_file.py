"""Model files: one file, round-trips exactly, and anything foreign is refused without running it."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from napari_unet import ModelFileError, load_model
from napari_unet.core.models.config import ModelConfig, UNetConfig, choices
from napari_unet.core.models.model import Model
from napari_unet.core.training import TrainConfig


def test_a_saved_model_loads_with_the_same_config_and_outputs(tmp_path, model):
    model = Model(model.network, model.config.model_copy(update={"provenance": {"data": "unit test", "steps": 3}}))
    path = model.save(tmp_path / "m.safetensors")
    loaded = load_model(path)
    assert loaded.config == model.config
    assert loaded.config.provenance == {"data": "unit test", "steps": 3}
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        np.testing.assert_array_equal(loaded.network.eval()(x).numpy(), model.network.eval()(x).numpy())


def test_saving_over_an_existing_file_is_atomic(tmp_path, model, monkeypatch):
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"precious")

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("napari_unet.core.models.model.save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_a_file_that_is_not_safetensors_is_refused(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ModelFileError, match="not a napari-unet model file"):
        load_model(path)


def test_a_pickle_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "executed"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pt"
    torch.save({"state_dict": Evil()}, path)
    with pytest.raises(ModelFileError):
        load_model(path)
    assert not marker.exists()


def test_a_foreign_safetensors_file_is_refused(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(3)}, str(path), metadata={"framework": "something else"})
    with pytest.raises(ModelFileError, match="no 'napari_unet' header"):
        load_model(path)


def test_an_invalid_description_is_refused(tmp_path, model):
    path = tmp_path / "bad.safetensors"
    config = json.loads(model.config.model_dump_json())
    config["network"]["depth"] = 99
    tensors = {k: v.contiguous() for k, v in model.network.state_dict().items()}
    save_file(tensors, str(path), metadata={"napari_unet": json.dumps(config), "format_version": "1"})
    with pytest.raises(ModelFileError, match="invalid model description"):
        load_model(path)


def test_weights_that_do_not_fit_the_architecture_are_refused(tmp_path, model):
    path = tmp_path / "mismatch.safetensors"
    other = ModelConfig(network={"depth": 2, "width": 8}).model_dump_json()
    tensors = {k: v.contiguous() for k, v in model.network.state_dict().items()}
    save_file(tensors, str(path), metadata={"napari_unet": other, "format_version": "1"})
    with pytest.raises(ModelFileError, match="do not fit"):
        load_model(path)


def test_a_missing_model_names_what_is_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"expected a model file \(.safetensors\) or one of 'default'"):
        load_model(tmp_path / "nope.safetensors")


def test_config_errors_say_what_was_found():
    with pytest.raises(ValueError, match="got 2 names"):
        ModelConfig(task="semantic", network={"out_channels": 3}, class_names=("a", "b"))
    with pytest.raises(ValueError, match="extra"):
        ModelConfig(network={"depht": 3})


def test_choices_are_the_values_a_setting_takes():
    assert choices(TrainConfig, "keep") == ("best", "last")
    assert choices(UNetConfig, "upsampling") == ("bilinear", "transposed")
    with pytest.raises(TypeError, match="TrainConfig.lr is not a Literal"):
        choices(TrainConfig, "lr")
