import math

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_unet.core.training.weightmap import border_radius, unet_weight_map


def _disks(shape, centres, radii) -> np.ndarray:
    yy, xx = np.indices(shape)
    labels = np.zeros(shape, np.int32)
    for i, ((cy, cx), r) in enumerate(zip(centres, radii), start=1):
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r**2] = i
    return labels


def _brute_force(labels, *, w0, sigma, contacts=False) -> np.ndarray:
    """w_c + border term from one full-image distance transform per object."""
    ids = np.unique(labels)
    ids = ids[ids > 0]
    d = np.sort(np.stack([ndi.distance_transform_edt(labels != i) for i in ids]), axis=0)
    fg = labels > 0
    n, n_fg = labels.size, np.count_nonzero(fg)
    wc = np.where(fg, n / (2 * n_fg), n / (2 * (n - n_fg)))
    border = w0 * np.exp(-((d[0] + d[1]) ** 2) / (2 * sigma**2))
    return wc + (border if contacts else np.where(fg, 0, border))


def test_border_term_by_hand():
    # background pixels at distances (1, 3), (2, 2), (3, 1) from the two objects: d1 + d2 = 4
    w = unet_weight_map(np.array([[1, 0, 0, 0, 2]]), w0=10, sigma=2, class_balance=False)
    assert w.dtype == np.float32 and w.shape == (1, 5)
    np.testing.assert_allclose(w, [[1] + [1 + 10 * math.exp(-16 / 8)] * 3 + [1]], rtol=1e-6)


def test_class_weights_give_both_classes_the_same_total_and_mean_one():
    labels = np.array([[0, 0], [0, 7]])
    w = unet_weight_map(labels)  # one object: no border term
    np.testing.assert_allclose(w, [[2 / 3, 2 / 3], [2 / 3, 2]], rtol=1e-6)
    assert w.mean() == pytest.approx(1)


def test_ignored_pixels_weigh_nothing_and_are_not_counted_in_the_class_frequencies():
    w = unet_weight_map(np.array([[1, 0, 0, 0]]), ignore=np.array([[False, False, False, True]]))
    np.testing.assert_allclose(w, [[1.5, 0.75, 0.75, 0]], rtol=1e-6)


def test_one_class_only_or_no_balance_gives_unit_class_weights():
    assert (unet_weight_map(np.zeros((3, 4), np.uint8)) == 1).all()
    assert (unet_weight_map(np.ones((3, 4), np.uint8)) == 1).all()
    assert (unet_weight_map(np.array([[0, 0], [0, 7]]), class_balance=False) == 1).all()


def test_the_map_peaks_in_the_one_pixel_gap_between_two_disks():
    # disk 1 reaches x = 42, disk 2 starts at x = 44: on row 32 the gap is the single pixel x = 43
    labels = _disks((64, 100), [(32, 30), (32, 56)], [12, 12])
    assert labels[32, 42] == 1 and labels[32, 43] == 0 and labels[32, 44] == 2
    w = unet_weight_map(labels, w0=10, sigma=5)
    w_bg, w_fg = w[0, 99], w[32, 30]
    n_fg = np.count_nonzero(labels)
    assert w_fg == pytest.approx(labels.size / (2 * n_fg), rel=1e-6)
    assert w_bg == pytest.approx(labels.size / (2 * (labels.size - n_fg)), rel=1e-3)
    assert np.unravel_index(np.argmax(w), w.shape) == (32, 43)
    # d1 = d2 = 1 there
    assert w[32, 43] == pytest.approx(w_bg + 10 * math.exp(-4 / 50), rel=1e-5)
    assert w[32, 43] > w_bg + 0.9 * 10
    np.testing.assert_allclose(w[labels > 0], w_fg)


@pytest.mark.parametrize("contacts", [False, True])
@pytest.mark.parametrize("sigma", [3.0, 5.0])
def test_the_fast_map_matches_full_distance_transforms_on_random_disks(sigma, contacts):
    rng = np.random.default_rng(7)
    centres = rng.integers(8, 120, (15, 2))
    labels = _disks((128, 128), centres, rng.integers(4, 10, 15))
    w = unet_weight_map(labels, w0=10, sigma=sigma, contacts=contacts)
    ref = _brute_force(labels, w0=10, sigma=sigma, contacts=contacts)
    assert np.abs(w - ref).max() < 1e-3 * 10
    assert (ref - ref.min() > 5).any()  # close pairs exist: the comparison is not trivial


def test_contacts_weigh_the_rims_where_cells_touch_and_leave_lone_cells_alone():
    # two 4 x 4 squares touching along x = 3 | 4, and a lone square far away
    labels = np.zeros((6, 30), np.int32)
    labels[1:5, 0:4], labels[1:5, 4:8], labels[1:5, 24:28] = 1, 2, 3
    w = unet_weight_map(labels, w0=10, sigma=2, class_balance=False, contacts=True)
    rim = 1 + 10 * math.exp(-1 / 8)  # d1 = 0 (own cell), d2 = 1 (the neighbour)
    np.testing.assert_allclose(w[1:5, 3], rim, rtol=1e-6)
    np.testing.assert_allclose(w[1:5, 4], rim, rtol=1e-6)
    np.testing.assert_allclose(w[1:5, 2], 1 + 10 * math.exp(-4 / 8), rtol=1e-6)
    np.testing.assert_array_equal(w[1:5, 24:28], 1)  # nothing within reach: no border term
    gaps = unet_weight_map(labels, w0=10, sigma=2, class_balance=False)
    np.testing.assert_array_equal(gaps[labels > 0], 1)  # the paper's map leaves the cells at w_c
    np.testing.assert_array_equal(w[labels == 0], gaps[labels == 0])  # and both weigh the background alike


def test_sparse_huge_ids_give_the_same_map():
    labels = _disks((40, 40), [(10, 10), (10, 24), (28, 18)], [6, 6, 6])
    huge = np.where(labels > 0, labels.astype(np.int64) * 10**9, 0)
    np.testing.assert_array_equal(unet_weight_map(huge), unet_weight_map(labels))


def test_the_cut_off_radius_neglects_less_than_1e_3_of_w0():
    for sigma in (1.0, 2.5, 5.0, 12.0):
        r = border_radius(sigma)
        assert math.exp(-(r**2) / (2 * sigma**2)) < 1e-3
        assert math.exp(-((r - 1) ** 2) / (2 * sigma**2)) >= 1e-3  # and no larger than needed


def test_bad_inputs_say_what_was_found():
    with pytest.raises(ValueError, match=r"2D integer instance label image, got float32 of shape \(4, 4\)"):
        unet_weight_map(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match=r"got int64 of shape \(2, 4, 4\)"):
        unet_weight_map(np.zeros((2, 4, 4), np.int64))
    with pytest.raises(ValueError, match="non-negative object ids.*found -3"):
        unet_weight_map(np.array([[0, -3]]))
    with pytest.raises(ValueError, match="sigma must be positive, got 0"):
        unet_weight_map(np.zeros((4, 4), np.int64), sigma=0)
    with pytest.raises(ValueError, match=r"bool mask of shape \(4, 4\), got bool of shape \(4, 5\)"):
        unet_weight_map(np.zeros((4, 4), np.int64), ignore=np.zeros((4, 5), bool))
