"""The overlap-tile predictor: exact where it must be, bounded where it cannot be."""

import numpy as np
import pytest
import torch

from napari_unet import predict
from napari_unet.core.predict.predictor import NetworkPredictor
from napari_unet.core.progress import run
from napari_unet.core.predict.tiling import mirror_pad, padding_for, predict_tiles, window

from .conftest import small_model

SHAPES = [(301, 517), (37, 50), (1, 300), (300, 1), (1, 1), (64, 64)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("overlap", [0.0, 0.25, 24])
def test_a_pointwise_predictor_is_reproduced_exactly(shape, overlap, rng):
    image = rng.random((2, *shape), dtype=np.float32)
    out = run(predict_tiles(image, lambda b: b * 2 + 1, tile=32, overlap=overlap, multiple=8, batch_size=3))
    np.testing.assert_allclose(out, image * 2 + 1, rtol=1e-6)


def test_a_predictor_that_loses_a_margin_is_placed_exactly(rng):
    image = rng.random((1, 70, 45), dtype=np.float32)
    out = run(predict_tiles(image, lambda b: b[:, :, 5:-5, 5:-5] + 1, tile=32, overlap=0.25, margin=5))
    np.testing.assert_allclose(out, image + 1, rtol=1e-6)


def test_the_window_ramps_sum_to_one_across_the_overlap():
    w = window(64, 16)
    assert w[0] == 0 and w[3] == 0 and w[20:44].min() == 1
    stride = 64 - 16
    np.testing.assert_allclose(w[stride:] + w[: 64 - stride], 1.0, rtol=1e-6, atol=1e-7)


def _whole_image_reference(net, image, *, tile, overlap, multiple, margin=0):
    """One forward pass over the image mirror-padded exactly as the tiler pads it."""
    pads = padding_for(image.shape[1:], tile=tile, overlap=overlap, margin=margin, multiple=multiple)
    padded = mirror_pad(image, ((0, 0), *pads))
    with torch.no_grad():
        prob = torch.softmax(net(torch.from_numpy(padded[None])), 1)[0].numpy()
    (top, _), (left, _) = pads  # output pixel j is padded pixel j + margin
    return prob[:, top - margin : top - margin + image.shape[1], left - margin : left - margin + image.shape[2]]


@pytest.mark.parametrize("shape", SHAPES)
def test_tiling_equals_one_whole_image_pass_when_the_halo_covers_the_receptive_field(shape, rng):
    # depth 2 / width 4: receptive-field radius < 32 px; overlap 128 leaves a 32 px dead zone per tile side
    model = small_model(depth=2, width=4)
    image = rng.random((1, *shape), dtype=np.float32)
    opts = dict(tile=256, overlap=128, multiple=4)
    tiled = run(predict_tiles(image, NetworkPredictor(model.network, "cpu"), batch_size=2, **opts))
    whole = _whole_image_reference(model.network.eval(), image, **opts)
    np.testing.assert_allclose(tiled, whole, atol=2e-5)


def _original_unet(depth: int, seed: int = 0):
    return small_model(seed=seed, depth=depth, width=4, padding=False, batch_norm=False, upsampling="transposed")


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("overlap", [0.0, 0.25])
def test_the_original_unet_tiled_equals_one_whole_image_pass_whatever_the_overlap(shape, overlap, rng):
    # Unpadded convolutions: every output pixel sees its whole receptive field, so tiles agree exactly.
    model = _original_unet(depth=3)
    net = model.network
    tile = net.valid_input_size(160)
    assert tile % net.size_multiple  # 164: not a multiple of 8, as the unpadded U-Net's sizes are not
    image = rng.random((1, *shape), dtype=np.float32)
    opts = dict(tile=tile, overlap=overlap, margin=net.margin, multiple=net.size_multiple)
    tiled = run(predict_tiles(image, NetworkPredictor(net, "cpu"), batch_size=3, **opts))
    whole = _whole_image_reference(net.eval(), image, **opts)
    np.testing.assert_allclose(tiled, whole, atol=2e-5)


def test_the_original_unet_at_depth_4_gives_the_same_labels_whatever_the_tile(rng):
    model = _original_unet(depth=4, seed=1)
    image = rng.random((150, 123), dtype=np.float32)
    small, large = (predict(image, model, device="cpu", tile=t) for t in (220, 316))
    np.testing.assert_allclose(small, large, atol=2e-5)


def test_tiling_with_a_short_halo_stays_within_the_stated_tolerance(rng):
    # Tiles that see only part of the receptive field cannot be exact. For an
    # untrained network on noise (a worst case: every input pixel matters), the
    # blended output stays within a mean of 0.015 and a 99th percentile of 0.12
    # of the whole-image pass, and the winning class agrees on > 97% of pixels.
    model = small_model(depth=2, width=4, seed=0)
    image = rng.random((1, 301, 517), dtype=np.float32)
    opts = dict(tile=64, overlap=0.25, multiple=4)
    tiled = run(predict_tiles(image, NetworkPredictor(model.network, "cpu"), **opts))
    whole = _whole_image_reference(model.network.eval(), image, **opts)
    diff = np.abs(tiled - whole)
    assert diff.mean() < 0.015
    assert np.percentile(diff, 99) < 0.12
    assert (tiled.argmax(0) == whole.argmax(0)).mean() > 0.97


def test_progress_is_reported_per_batch_and_closing_the_generator_stops_the_work(rng):
    calls = []

    def predictor(batch):
        calls.append(len(batch))
        return batch

    gen = predict_tiles(rng.random((1, 100, 100), dtype=np.float32), predictor, tile=32, overlap=0, batch_size=4)
    first = next(gen)
    assert first.done == 4 and first.total == 16
    gen.close()
    assert calls == [4]


def test_a_predictor_returning_the_wrong_shape_is_reported(rng):
    with pytest.raises(ValueError, match="expected"):
        run(predict_tiles(rng.random((1, 40, 40), dtype=np.float32), lambda b: b[:, :, :-1], tile=32))
