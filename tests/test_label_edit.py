"""Label edits for correcting by hand: exact results on small arrays."""

import numpy as np
import pytest

from napari_unet.core.labels.label_edit import (
    centroid,
    merge_labels,
    object_ids,
    relabel_sequential,
    remove_small_objects,
    step_object,
)

LABELS = np.array(
    [
        [0, 3, 3, 0, 0],
        [0, 3, 3, 0, 9],
        [5, 0, 0, 0, 9],
        [0, 0, 7, 7, 7],
    ],
    dtype=np.uint16,
)


def test_object_ids_leave_out_the_background():
    np.testing.assert_array_equal(object_ids(LABELS), [3, 5, 7, 9])
    assert object_ids(np.zeros((3, 3), np.uint8)).size == 0


@pytest.mark.parametrize(
    "current, step, expected",
    [(3, 1, 5), (9, 1, 3), (3, -1, 9), (7, -1, 5), (0, 1, 3), (0, -1, 9), (6, 1, 7), (6, -1, 5), (3, 2, 7), (10, 1, 3)],
)
def test_stepping_goes_through_the_ids_in_order_and_wraps(current, step, expected):
    assert step_object(LABELS, current, step) == expected


def test_stepping_without_objects_gives_none():
    assert step_object(np.zeros((4, 4), np.uint16), 0, 1) is None


def test_centroid_is_the_mean_pixel_position():
    assert centroid(LABELS, 3) == (0.5, 1.5)
    assert centroid(LABELS, 7) == (3.0, 3.0)
    assert centroid(LABELS[None].repeat(2, 0), 5) == (0.5, 2.0, 0.0)
    with pytest.raises(ValueError, match="label 4 is not in the labels"):
        centroid(LABELS, 4)


def test_small_objects_are_removed_and_counted():
    out, removed = remove_small_objects(LABELS, 3)
    expected = LABELS.copy()
    expected[LABELS == 5] = 0
    expected[LABELS == 9] = 0
    np.testing.assert_array_equal(out, expected)
    assert removed == 2 and out.dtype == LABELS.dtype
    assert LABELS[2, 0] == 5  # the input is left alone


def test_an_id_spread_over_planes_is_measured_as_one_object():
    stack = np.zeros((2, 4, 4), np.uint32)
    stack[0, 0, 0] = stack[1, 0, 0] = 4
    assert remove_small_objects(stack, 2)[1] == 0
    assert remove_small_objects(stack, 3)[1] == 1


def test_merging_makes_one_object_of_two():
    out = merge_labels(LABELS, 3, 9)
    assert set(np.unique(out)) == {0, 3, 5, 7}
    assert (out == 3).sum() == 6
    for keep, merge, message in [(3, 3, "with itself"), (0, 3, "background"), (3, 4, "label 4 is not")]:
        with pytest.raises(ValueError, match=message):
            merge_labels(LABELS, keep, merge)


def test_relabelling_numbers_objects_from_one_in_id_order():
    out = relabel_sequential(LABELS)
    assert out.dtype == LABELS.dtype
    np.testing.assert_array_equal(np.unique(out), [0, 1, 2, 3, 4])
    assert out[0, 1] == 1 and out[2, 0] == 2 and out[3, 2] == 3 and out[1, 4] == 4
