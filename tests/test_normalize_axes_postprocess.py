import numpy as np
import pytest

from napari_unet import ImageError
from napari_unet.core.io.axes import guess_axes, plane_layout
from napari_unet.core.models.config import NormalizationConfig
from napari_unet.core.predict.normalize import normalize
from napari_unet.core.labels.postprocess import instance_labels, semantic_labels


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32, np.float64])
def test_percentile_normalisation_maps_the_percentiles_to_0_and_1(dtype, rng):
    image = (rng.random((1, 50, 60)) * 200).astype(dtype)
    out = normalize(image, NormalizationConfig(low=0, high=100))
    assert out.dtype == np.float32
    assert out.min() == pytest.approx(0) and out.max() == pytest.approx(1)


def test_a_constant_channel_becomes_zero():
    out = normalize(np.full((2, 8, 8), 7, np.uint16))
    assert not out.any()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_values_are_refused(bad):
    image = np.ones((1, 8, 8), np.float32)
    image[0, 2, 3] = bad
    with pytest.raises(ImageError, match="1 NaN or infinite values"):
        normalize(image)


def test_an_empty_image_is_refused():
    with pytest.raises(ImageError, match="empty"):
        normalize(np.zeros((1, 0, 5)))


@pytest.mark.parametrize(
    "shape, axes",
    [((10, 12), "YX"), ((10, 12, 3), "YXS"), ((5, 10, 12), "ZYX"), ((2, 5, 10, 12), "TZYX"), ((2, 5, 10, 12, 3), "TZYXS")],
)
def test_axes_are_guessed_like_napari_does(shape, axes):
    assert guess_axes(shape) == axes


def test_a_one_channel_model_reads_rgb_as_grey_and_refuses_multichannel_fluorescence():
    rgb = np.zeros((8, 10, 3), np.uint8)
    rgb[..., 0] = 30
    layout = plane_layout(rgb.shape, None, 1)
    (_, plane), = layout.planes(rgb)
    assert plane.shape == (1, 8, 10) and plane.max() == 10
    with pytest.raises(ImageError, match="expects 1 channel.*has 3 along axis 'C'.*channels"):
        plane_layout((3, 4, 6), "CYX", 1)


def test_channels_are_picked_in_the_order_asked():
    stack = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    layout = plane_layout(stack.shape, "ZCYX", 2, channels=[2, 0])
    planes = list(layout.planes(stack))
    assert layout.out_axes == "ZYX" and layout.out_shape == (2, 4, 5)
    np.testing.assert_array_equal(planes[1][1], stack[1, [2, 0]])


def test_a_model_with_more_channels_than_the_image_is_refused():
    with pytest.raises(ImageError, match="expects 3 channel.*has 1"):
        plane_layout((8, 8), None, 3)


def test_wrong_dimensionality_is_refused():
    with pytest.raises(ImageError, match="at least 2 dimensions"):
        plane_layout((8,), None, 1)
    with pytest.raises(ImageError, match="name 2 dimensions but the image has 3"):
        plane_layout((2, 8, 8), "YX", 1)


def _disk(shape, center, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


def test_touching_objects_are_split_by_their_boundary_class():
    shape = (40, 60)
    a, b = _disk(shape, (20, 20), 10), _disk(shape, (20, 39), 10)
    from scipy.ndimage import binary_erosion

    interior = binary_erosion(a, iterations=2) | binary_erosion(b, iterations=2)
    foreground = a | b
    prob = np.zeros((3, *shape), np.float32)
    prob[1] = interior
    prob[2] = foreground & ~interior
    prob[0] = ~foreground
    labels = instance_labels(prob)
    assert labels.dtype == np.uint32
    assert set(np.unique(labels)) == {0, 1, 2}
    assert np.array_equal(labels > 0, foreground)
    assert len(np.unique(labels[a & ~b])) == 1 and len(np.unique(labels[b & ~a])) == 1


def _cone(shape, center, radius, low=0.9, high=0.999):
    """Interior probability rising from ``low`` at the rim of a disk to ``high`` at its centre."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    d = np.hypot(yy - center[0], xx - center[1]) / radius
    return np.where(d <= 1, low + (high - low) * (1 - d), 0.0)


def _probabilities(interior):
    prob = np.zeros((3, *interior.shape), np.float32)
    prob[1] = interior
    prob[0] = interior < 0.5
    prob[2] = 1 - prob[0] - prob[1]
    return prob


def test_a_seed_holding_two_objects_is_split_when_the_object_size_is_known():
    # Two nuclei the network is unsure between: their interiors join at the 0.9
    # threshold through a neck of 0.91-0.92, and fall apart above it.
    shape = (40, 60)
    interior = np.maximum(_cone(shape, (20, 20), 11), _cone(shape, (20, 39), 11))
    prob = _probabilities(interior)
    assert instance_labels(prob).max() == 1  # one seed at the threshold
    labels = instance_labels(prob, object_size=22)
    assert labels.max() == 2
    assert labels[20, 20] != labels[20, 39] and labels[20, 20] > 0 and labels[20, 39] > 0
    assert np.array_equal(labels > 0, interior >= 0.5)


def test_a_seed_is_not_split_into_parts_smaller_than_a_quarter_of_an_object():
    # One nucleus with two bright specks on it (9 px each): at 0.95 they are
    # apart, but far smaller than a quarter of a 22 px object (95 px).
    shape = (40, 40)
    interior = np.where(_disk(shape, (20, 20), 11), 0.93, 0.0)
    interior[12:15, 12:15] = interior[25:28, 25:28] = 0.99
    labels = instance_labels(_probabilities(interior), object_size=22)
    assert labels.max() == 1
    # the same picture with the specks grown to 100 px each (more than 95) is split
    interior[8:18, 8:18] = interior[23:33, 23:33] = 0.99
    assert instance_labels(_probabilities(interior), object_size=22).max() == 2


def test_objects_below_min_size_are_dropped():
    prob = np.zeros((3, 20, 20), np.float32)
    prob[0] = 1
    prob[:, 2:4, 2:4] = [[[0]], [[1]], [[0]]]  # 4 px object
    prob[:, 10:16, 10:16] = [[[0]], [[1]], [[0]]]  # 36 px object
    labels = instance_labels(prob, min_size=10)
    assert labels.max() == 1 and labels[12, 12] == 1 and labels[3, 3] == 0


def test_semantic_labels_are_the_argmax():
    prob = np.array([[[0.2, 0.7]], [[0.8, 0.3]]], np.float32)
    np.testing.assert_array_equal(semantic_labels(prob), [[1, 0]])
