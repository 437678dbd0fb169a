import math

import pytest
import torch

from napari_unet.core.models.unet import UNet


@pytest.mark.parametrize("upsampling", ["bilinear", "transposed"])
def test_padded_unet_keeps_the_input_size(upsampling):
    net = UNet(2, 5, depth=3, width=4, upsampling=upsampling).eval()
    out = net(torch.zeros(1, 2, 48, 80))
    assert out.shape == (1, 5, 48, 80)
    assert net.margin == 0 and net.size_multiple == 8


def test_padded_unet_rejects_sizes_off_the_pooling_grid():
    net = UNet(1, 2, depth=3, width=4)
    with pytest.raises(ValueError, match="multiple of 8"):
        net.output_size(50)
    assert net.valid_input_size(50) == 56


def test_unpadded_unet_is_the_papers_572_to_388():
    net = UNet(1, 2, depth=4, width=2, padding=False, batch_norm=False, upsampling="transposed").eval()
    assert net.output_size(572) == 388
    assert net.margin == 92
    with torch.no_grad():
        assert net(torch.zeros(1, 1, 572, 572)).shape == (1, 2, 388, 388)
    with pytest.raises(ValueError):
        net.output_size(573)


def test_unpadded_inputs_too_small_for_the_way_up_are_refused():
    net = UNet(1, 2, depth=4, width=2, padding=False, batch_norm=False)
    with pytest.raises(ValueError, match="too small"):
        net.output_size(140)  # a 1 px bottom: 2 px up-sampled, nothing left after two convolutions
    assert net.valid_input_size(1) == 188 and net.output_size(188) == 4


def test_he_initialisation_has_std_sqrt_2_over_fan_in():
    torch.manual_seed(0)
    net = UNet(1, 3, depth=2, width=64)
    conv = net.downs[1][0]  # 128 -> 256 channels, 3x3: fan_in = 128 * 9
    expected = math.sqrt(2 / (128 * 9))
    assert conv.weight.std().item() == pytest.approx(expected, rel=0.02)
