"""The network predictor: its rewrites of the network change the speed, never the result."""

import numpy as np
import pytest
import torch
from torch import nn

from napari_unet.core.predict.predictor import NetworkPredictor, convolve_before_upsampling

from .conftest import small_model


@pytest.mark.parametrize("upsampling", ["bilinear", "transposed"])
@pytest.mark.parametrize("padding", [True, False])
def test_the_prepared_network_gives_the_plain_networks_probabilities(upsampling, padding, rng):
    model = small_model(depth=2, width=4, upsampling=upsampling, padding=padding)
    net = model.network.eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    n = net.valid_input_size(64)
    batch = rng.random((3, 1, n, n), dtype=np.float32)
    with torch.no_grad():
        expected = torch.softmax(net(torch.from_numpy(batch)), 1).numpy()
    got = NetworkPredictor(net, "cpu")(batch)
    np.testing.assert_allclose(got, expected, atol=2e-6)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items()), "the caller's network changed"


def test_pointwise_convolutions_move_before_the_upsampling_they_follow():
    net = small_model(depth=2, width=4, upsampling="bilinear").network
    prepared = NetworkPredictor(net, "cpu").network
    for up in prepared.ups:
        assert isinstance(up.up[0], nn.Conv2d) and isinstance(up.up[1], nn.Upsample)
    assert isinstance(net.ups[0].up[0], nn.Upsample), "the caller's network changed"


@pytest.mark.parametrize(
    "layers",
    [
        lambda: nn.Sequential(nn.Upsample(scale_factor=2, mode="bicubic"), nn.Conv2d(4, 2, 1)),
        lambda: nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(4, 2, 1, padding=1)),
        lambda: nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(4, 2, 3)),
    ],
)
def test_layers_that_do_not_commute_are_left_in_place(layers):
    seq = layers()
    kinds = [type(m) for m in seq]
    assert [type(m) for m in convolve_before_upsampling(seq)] == kinds
