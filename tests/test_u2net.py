"""U^2-Net and U^2-Net-p: the paper's sizes, side outputs, and model files that round-trip."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from napari_unet import load_model, predict
from napari_unet.core.models.config import ModelConfig, U2NetConfig, UNetConfig
from napari_unet.core.models.model import Model
from napari_unet.core.models.u2net import RSU, U2Net


def _params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_parameter_counts_are_the_papers():
    # Qin et al. 2020: U^2-Net 44.0 M parameters (176.3 MB), U^2-Net-p 1.1 M (4.7 MB)
    assert 1.10e6 < _params(U2Net(3, 1, variant="small")) < 1.15e6
    assert 43.9e6 < _params(U2Net(3, 1, variant="full")) < 44.1e6


def test_six_side_outputs_at_input_size_fused_by_a_1x1_conv():
    torch.manual_seed(0)
    net = U2Net(2, 3, variant="small").eval()
    x = torch.rand(2, 2, 32, 64)
    with torch.no_grad():
        sides, fused = net.forward_with_sides(x)
        assert len(sides) == 6 and all(s.shape == (2, 3, 32, 64) for s in sides)
        torch.testing.assert_close(fused, net.fuse(torch.cat(sides, 1)))
        torch.testing.assert_close(net(x), fused)


def test_the_size_rule_is_a_multiple_of_32():
    net = U2Net(1, 1)
    assert net.margin == 0 and net.size_multiple == 32
    assert net.output_size(96) == 96 and net.valid_input_size(50) == 64
    with pytest.raises(ValueError, match="multiple of 32, got 50"):
        net.output_size(50)


def test_rsu_4f_does_not_pool_and_rsu_l_adds_its_input_convolution():
    torch.manual_seed(0)
    dilated = RSU(4, 3, 4, 8, dilated=True).eval()
    with torch.no_grad():
        assert dilated(torch.rand(1, 3, 11, 13)).shape == (1, 8, 11, 13)  # any size: no pooling
    assert [m[0].dilation[0] for m in dilated.encoder] == [1, 2, 4] and dilated.bottom[0].dilation[0] == 8
    block = RSU(5, 3, 4, 8).eval()
    assert [m[0].dilation[0] for m in block.encoder] == [1, 1, 1, 1] and block.bottom[0].dilation[0] == 2
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        for conv in block.decoder[0]:  # zero the output convolution: only the residual is left
            if isinstance(conv, torch.nn.BatchNorm2d):
                conv.weight.zero_()
                conv.bias.zero_()
        torch.testing.assert_close(block(x), block.inp(x))


def _u2net_p_model() -> Model:
    torch.manual_seed(0)
    config = ModelConfig(
        network=U2NetConfig(variant="small"), task="semantic", class_names=("background", "nuclei"), tile=64, overlap=16
    )
    return Model.from_config(config)


def test_a_u2net_p_model_file_round_trips_and_weighs_about_4_6_mb(tmp_path):
    model = _u2net_p_model()
    path = model.save(tmp_path / "u2netp.safetensors")
    assert 4.4e6 < path.stat().st_size < 4.8e6
    loaded = load_model(path)
    assert loaded.config == model.config and isinstance(loaded.network, U2Net)
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        np.testing.assert_array_equal(loaded.network.eval()(x).numpy(), model.network.eval()(x).numpy())


def test_a_one_channel_model_predicts_a_foreground_probability_of_any_image_size(rng):
    prob = predict(rng.random((40, 45), dtype=np.float32), _u2net_p_model(), device="cpu")
    assert prob.shape == (1, 40, 45) and 0 <= prob.min() and prob.max() <= 1


def test_a_description_without_an_architecture_is_a_unet(tmp_path):
    # Files written before the architecture was a choice have no tag in older writers' output.
    assert isinstance(ModelConfig(network={"depth": 2}).network, UNetConfig)
    torch.manual_seed(0)
    model = Model.from_config(ModelConfig(network={"depth": 2, "width": 4}))
    description = json.loads(model.config.model_dump_json())
    del description["network"]["architecture"]
    path = tmp_path / "old.safetensors"
    tensors = {k: v.contiguous() for k, v in model.network.state_dict().items()}
    save_file(tensors, str(path), metadata={"napari_unet": json.dumps(description), "format_version": "1"})
    assert load_model(path).config == model.config


def test_config_errors_name_the_architectures_and_the_classes():
    with pytest.raises(ValueError, match="'unet', 'u2net'"):
        ModelConfig(network={"architecture": "resnet"})
    with pytest.raises(ValueError, match="depth"):
        ModelConfig(network={"architecture": "u2net", "depth": 3})
    with pytest.raises(ValueError, match="background and foreground of the one-channel output, got 1 names"):
        ModelConfig(network=U2NetConfig(), task="semantic", class_names=("nuclei",))
