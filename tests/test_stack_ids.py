"""Stack-wide instance ids: unique across planes, and linked across z by overlap."""

import numpy as np
import pytest

from napari_unet import ImageError
from napari_unet.core.labels.stack_ids import StackIds, overlaps


def _disk(shape, center, radius, value=1):
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return np.where((yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2, value, 0).astype(np.uint32)


def test_ids_continue_from_plane_to_plane():
    ids = StackIds("Z")
    a = np.array([[1, 2], [0, 3]], np.uint32)
    b = np.array([[2, 1], [0, 0]], np.uint32)
    np.testing.assert_array_equal(ids((0,), a), a)
    np.testing.assert_array_equal(ids((1,), b), [[5, 4], [0, 0]])
    np.testing.assert_array_equal(ids((2,), np.zeros((2, 2), np.uint8)), 0)
    assert ids.count == 5


def test_an_object_spanning_z_planes_keeps_one_id_and_new_objects_get_new_ids():
    shape = (40, 40)
    planes = [
        _disk(shape, (10, 10), 5, 1) + _disk(shape, (30, 30), 4, 2),
        _disk(shape, (11, 10), 5, 2) + _disk(shape, (30, 8), 3, 1),  # the first disk, moved by a pixel; a new one
        _disk(shape, (11, 11), 5, 1),
    ]
    ids = StackIds("Z", stitch_z=0.5)
    out = [ids((z,), p) for z, p in enumerate(planes)]
    first = out[0][10, 10]
    assert out[1][11, 10] == first and out[2][11, 11] == first
    assert out[1][30, 8] not in np.unique(out[0])  # no overlap: a new object
    assert ids.count == 3


def test_overlap_below_the_threshold_does_not_link():
    shape = (40, 40)
    a, b = _disk(shape, (20, 10), 6), _disk(shape, (20, 17), 6)
    _, _, iou = overlaps(a, b, np.bincount(a.ravel()), np.bincount(b.ravel()))
    assert 0.15 < iou[0] < 0.2
    linked = StackIds("Z", stitch_z=0.15)
    assert linked((0,), a).max() == linked((1,), b).max() == 1
    apart = StackIds("Z", stitch_z=0.2)
    assert apart((0,), a).max() == 1 and apart((1,), b).max() == 2


def test_each_object_links_to_at_most_one_so_chains_never_merge():
    shape = (30, 60)
    before = _disk(shape, (15, 20), 8, 1) + _disk(shape, (15, 40), 8, 2)
    after = _disk(shape, (15, 30), 14, 1)  # covers both, better the first (ties broken by id)
    ids = StackIds("Z", stitch_z=0.1)
    ids((0,), before)
    out = ids((1,), after)
    assert np.unique(out[out > 0]).tolist() == [1]


def test_links_follow_z_only_within_the_same_time_point():
    plane = _disk((20, 20), (10, 10), 5)
    ids = StackIds("TZ", stitch_z=0.5)
    got = {index: ids(index, plane).max() for index in np.ndindex(2, 3)}
    assert got == {(0, 0): 1, (0, 1): 1, (0, 2): 1, (1, 0): 2, (1, 1): 2, (1, 2): 2}


def test_links_follow_z_when_z_is_not_the_innermost_axis():
    plane = _disk((20, 20), (10, 10), 5)
    ids = StackIds("ZT", stitch_z=0.5)
    got = {index: ids(index, plane).max() for index in np.ndindex(3, 2)}
    assert got == {(0, 0): 1, (0, 1): 2, (1, 0): 1, (1, 1): 2, (2, 0): 1, (2, 1): 2}


def test_linking_needs_a_z_axis_and_a_threshold_in_0_1():
    with pytest.raises(ImageError, match="needs a Z axis"):
        StackIds("T", stitch_z=0.5)
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        StackIds("Z", stitch_z=1.0)
