import json

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_unet.core.models.config import IGNORE_INDEX
from napari_unet.core.evaluation.metrics import (
    InstanceCounts,
    class_iou,
    confusion_matrix,
    dice,
    f_beta,
    mae,
    match_instances,
    max_f_beta,
    mean_class_accuracy,
    mean_iou,
    overlaps,
    pixel_accuracy,
    precision_recall_curve,
)

I = IGNORE_INDEX

# Five annotated pixels, (t, p): (0, 0) (1, 1) (2, 1) (2, 2) (0, 0); the ignored one is predicted 7.
PRED = np.array([[0, 1, 1], [2, 7, 0]])
TARGET = np.array([[0, 1, 2], [2, I, 0]])


def test_confusion_matrix_counts_annotated_pixels_only():
    expected = [[2, 0, 0], [0, 1, 0], [0, 1, 1]]
    np.testing.assert_array_equal(confusion_matrix(PRED, TARGET, num_classes=3), expected)


def test_semantic_metrics_by_hand():
    assert pixel_accuracy(PRED, TARGET) == pytest.approx(4 / 5)
    # recall: class 0 2/2, class 1 1/1, class 2 1/2
    assert mean_class_accuracy(PRED, TARGET, num_classes=3) == pytest.approx((1 + 1 + 0.5) / 3)
    # IoU: class 0 2/2, class 1 1/(2+1-1), class 2 1/(1+2-1)
    np.testing.assert_allclose(class_iou(PRED, TARGET, num_classes=3), [1, 0.5, 0.5])
    assert mean_iou(PRED, TARGET, num_classes=3) == pytest.approx(2 / 3)


def test_a_class_absent_from_both_is_nan_and_left_out_of_the_mean():
    iou = class_iou(PRED, TARGET, num_classes=4)
    assert np.isnan(iou[3])
    assert mean_iou(PRED, TARGET, num_classes=4) == pytest.approx(2 / 3)


def test_a_class_only_predicted_counts_in_mean_iou_but_not_in_mean_class_accuracy():
    pred, target = np.array([[0, 1]]), np.array([[0, 0]])
    np.testing.assert_allclose(class_iou(pred, target, num_classes=2), [0.5, 0.0])
    assert mean_iou(pred, target, num_classes=2) == pytest.approx(0.25)
    assert mean_class_accuracy(pred, target, num_classes=2) == pytest.approx(0.5)


def test_ignore_index_none_counts_every_pixel():
    pred, target = np.array([[1, 0]]), np.array([[1, 255]])
    assert pixel_accuracy(pred, target, ignore_index=None) == 0.5
    with pytest.raises(ValueError, match=r"target class ids .*must lie in \[0, 3\), found values from 1 to 255"):
        confusion_matrix(pred, target, num_classes=3, ignore_index=None)


def test_nothing_annotated_gives_nan():
    target = np.full((2, 2), I)
    assert np.isnan(pixel_accuracy(np.zeros((2, 2), int), target))
    assert np.isnan(mean_iou(np.zeros((2, 2), int), target, num_classes=2))
    assert np.isnan(mean_class_accuracy(np.zeros((2, 2), int), target, num_classes=2))


def test_bad_semantic_inputs_say_what_was_found():
    with pytest.raises(ValueError, match=r"same shape, got \(2, 3\) and \(3, 2\)"):
        pixel_accuracy(PRED, TARGET.T)
    with pytest.raises(ValueError, match="integer class ids, got dtype float32"):
        pixel_accuracy(PRED.astype(np.float32), TARGET)
    with pytest.raises(ValueError, match=r"pred class ids must lie in \[0, 2\).*from 0 to 2"):
        mean_iou(PRED, TARGET, num_classes=2)


def test_dice_by_hand_skips_ignored_pixels():
    # annotated: pred 1 1 0, target 1 0 1 -> 2 * 1 / (2 + 2)
    assert dice(np.array([[1, 1, 0, 1]]), np.array([[1, 0, 1, I]])) == pytest.approx(0.5)
    assert dice(np.array([[True, False]]), np.array([[3, 0]])) == 1.0
    assert np.isnan(dice(np.zeros((2, 2), bool), np.zeros((2, 2), np.uint8)))


# --- instances ---------------------------------------------------------------


def _scene() -> tuple[np.ndarray, np.ndarray]:
    """True / predicted labels with IoUs 0.75 (1-5), 0.5 (2-9), a lone prediction and a missed object."""
    true = np.zeros((8, 8), np.int32)
    pred = np.zeros((8, 8), np.int32)
    true[0:4, 0:4] = 1  # 16 px
    pred[0:4, 0:3] = 5  # 12 px inside it: IoU 0.75
    true[0:4, 6:8] = 2  # 8 px
    pred[0:2, 6:8] = 9  # 4 px inside it: IoU 0.5, not above 0.5
    pred[6:8, 6:8] = 3  # no partner
    true[6:8, 0:2] = 7  # never found
    return pred, true


def test_instance_counts_by_hand():
    pred, true = _scene()
    counts = match_instances(pred, true, thresholds=(0.4, 0.5, 0.75))
    np.testing.assert_array_equal(counts.tp, [2, 1, 0])
    np.testing.assert_array_equal(counts.fp, [1, 2, 3])
    np.testing.assert_array_equal(counts.fn, [1, 2, 3])
    np.testing.assert_allclose(counts.average_precision, [2 / 4, 1 / 5, 0])
    np.testing.assert_allclose(counts.precision, [2 / 3, 1 / 3, 0])
    np.testing.assert_allclose(counts.recall, [2 / 3, 1 / 3, 0])
    np.testing.assert_allclose(counts.f1, [4 / 6, 2 / 6, 0])


def test_default_thresholds_are_0_5_to_0_9():
    pred, true = _scene()
    counts = match_instances(pred, true)
    np.testing.assert_allclose(counts.thresholds, np.linspace(0.5, 0.9, 9))
    np.testing.assert_array_equal(counts.tp, [1, 1, 1, 1, 1, 0, 0, 0, 0])


def test_ids_with_gaps_and_huge_values_give_the_same_counts():
    pred, true = _scene()
    big_pred = pred.astype(np.int64) * 10**12
    big_true = np.where(true > 0, true.astype(np.uint64) + 2**40, 0)
    a = match_instances(pred, true, thresholds=(0.4, 0.5))
    b = match_instances(big_pred, big_true, thresholds=(0.4, 0.5))
    assert a.as_dict() == b.as_dict()


def test_overlaps_list_each_overlapping_pair_once_with_areas_and_ids():
    truth = np.array([[5, 5, 5, 0, 9, 9]])
    pred = np.array([[3, 3, 40, 40, 40, 0]])
    o = overlaps(pred, truth)
    np.testing.assert_array_equal(o.true_ids, [5, 9])
    np.testing.assert_array_equal(o.pred_ids, [3, 40])
    np.testing.assert_array_equal(o.true_area, [3, 2])
    np.testing.assert_array_equal(o.pred_area, [2, 3])
    pairs = {(o.true_ids[r], o.pred_ids[c]): (n, iou) for r, c, n, iou in zip(o.rows, o.cols, o.inter, o.iou)}
    assert pairs == {(5, 3): (2, pytest.approx(2 / 3)), (5, 40): (1, pytest.approx(1 / 5)), (9, 40): (1, 0.25)}
    empty = overlaps(np.zeros((2, 2), int), truth[:, :2].repeat(2, 0))
    assert empty.rows.size == 0 and empty.pred_area.size == 0 and empty.true_area.tolist() == [4]
    with pytest.raises(ValueError, match="non-negative object ids"):
        overlaps(np.array([[-1, 0]]), np.array([[1, 0]]))


def test_below_0_5_the_most_matches_win_over_the_largest_single_iou():
    # true A = x 1..10, B = x 11..15; pred Q = x 0..2, P = x 3..13.
    # IoU A-P 8/13, A-Q 2/11, B-P 3/13: A-P alone has the larger total IoU,
    # A-Q + B-P match both objects.
    true = np.array([[0] + [1] * 10 + [2] * 5])
    pred = np.array([[1] * 3 + [2] * 11 + [0] * 2])
    counts = match_instances(pred, true, thresholds=(0.1, 0.2, 0.5))
    np.testing.assert_array_equal(counts.tp, [2, 1, 1])
    np.testing.assert_array_equal(counts.fn, [0, 1, 1])
    np.testing.assert_array_equal(counts.fp, [0, 1, 1])


def test_objects_mostly_in_the_ignored_region_are_not_counted():
    pred, true = _scene()
    bottom = np.zeros(true.shape, bool)
    bottom[5:, :] = True  # the lone prediction and the missed object
    counts = match_instances(pred, true, thresholds=(0.5,), ignore=bottom)
    assert (counts.tp[0], counts.fp[0], counts.fn[0]) == (1, 1, 1)

    top_left = np.zeros(true.shape, bool)
    top_left[0:4, 0:4] = True  # the matched pair 1-5: no longer a true positive, nor a false positive
    counts = match_instances(pred, true, thresholds=(0.5,), ignore=top_left)
    assert (counts.tp[0], counts.fp[0], counts.fn[0]) == (0, 2, 2)

    half = np.zeros(true.shape, bool)
    half[6:8, 0:1] = True  # exactly half of the missed object: still a miss
    assert match_instances(pred, true, thresholds=(0.5,), ignore=half).fn[0] == 2


def test_counts_pool_over_images_and_serialise_to_json():
    pred, true = _scene()
    one = match_instances(pred, true, thresholds=(0.5, 0.75))
    empty = match_instances(np.zeros((4, 4), int), np.zeros((4, 4), int), thresholds=(0.5, 0.75))
    total = sum([one, one, empty])
    assert isinstance(total, InstanceCounts)
    np.testing.assert_array_equal(total.tp, 2 * one.tp)
    np.testing.assert_array_equal(total.fn, 2 * one.fn)
    assert np.isnan(empty.average_precision).all()
    d = json.loads(json.dumps(empty.as_dict(), allow_nan=False))
    assert d["average_precision"] == [None, None] and d["tp"] == [0, 0]
    with pytest.raises(ValueError, match="different IoU thresholds"):
        one + match_instances(pred, true)


def test_matching_agrees_with_a_pair_by_pair_count_on_random_objects():
    rng = np.random.default_rng(3)
    field = ndi.gaussian_filter(rng.random((96, 96)), 2)
    true, _ = ndi.label(field > 0.52)
    noisy = ndi.gaussian_filter(field + 0.03 * rng.standard_normal(field.shape), 1)
    pred, _ = ndi.label(noisy > 0.51)
    counts = match_instances(pred, true, thresholds=(0.5, 0.7))
    ious = []
    for t in range(1, true.max() + 1):
        for p in range(1, pred.max() + 1):
            a, b = true == t, pred == p
            inter = np.count_nonzero(a & b)
            if inter:
                ious.append(inter / np.count_nonzero(a | b))
    expected = [sum(v > thr for v in ious) for thr in (0.5, 0.7)]
    np.testing.assert_array_equal(counts.tp, expected)
    assert counts.tp[0] > 0
    np.testing.assert_array_equal(counts.tp + counts.fn, [true.max()] * 2)
    np.testing.assert_array_equal(counts.tp + counts.fp, [pred.max()] * 2)


def test_bad_instance_inputs_say_what_was_found():
    pred, true = _scene()
    with pytest.raises(ValueError, match="non-negative object ids.*found -1"):
        match_instances(pred, np.where(true > 0, -1, 0))
    with pytest.raises(ValueError, match=r"IoUs in \[0, 1\]"):
        match_instances(pred, true, thresholds=(0.5, 1.5))
    with pytest.raises(ValueError, match=r"bool mask of shape \(8, 8\), got int64 of shape \(8, 8\)"):
        match_instances(pred, true, ignore=np.zeros((8, 8), np.int64))


# --- probability maps --------------------------------------------------------

PROB = np.array([0.9, 0.6, 0.4, 0.1])
GT = np.array([1, 0, 1, 0])


def test_max_f_beta_by_hand():
    # levels floor(10 p) = 9, 6, 4, 1. Best with beta^2 = 0.3: k = 7..9, only the 0.9 pixel:
    # P = 1, R = 1/2, F = 1.3 * 0.5 / (0.3 + 0.5). With beta^2 = 1: k = 2..4, P = 2/3, R = 1, F1 = 0.8.
    assert max_f_beta(PROB, GT, thresholds=10) == pytest.approx(0.65 / 0.8)
    assert max_f_beta(PROB, GT, beta2=1.0, thresholds=10) == pytest.approx(0.8)
    assert max_f_beta(GT.astype(float), GT) == pytest.approx(1.0)
    assert np.isnan(max_f_beta(PROB, np.zeros(4)))


def test_max_f_beta_thresholds_are_those_of_an_8_bit_map():
    rng = np.random.default_rng(0)
    prob = rng.integers(0, 256, (32, 32)) / 255
    gt = rng.random((32, 32)) < prob
    best = 0.0
    for k in range(1, 256):
        p = prob * 255 >= k - 1e-9
        tp = np.count_nonzero(p & gt)
        if tp:
            prec, rec = tp / np.count_nonzero(p), tp / np.count_nonzero(gt)
            best = max(best, 1.3 * prec * rec / (0.3 * prec + rec))
    assert max_f_beta(prob, gt) == pytest.approx(best)


def test_mae_by_hand():
    assert mae(PROB, GT) == pytest.approx((0.1 + 0.6 + 0.6 + 0.1) / 4)


def test_probability_maps_outside_0_1_are_refused():
    with pytest.raises(ValueError, match=r"target values must lie in \[0, 1\], found values from 0.0 to 255.0.*255"):
        mae(PROB, GT * 255)
    with pytest.raises(ValueError, match=r"same shape, got \(4,\) and \(2, 2\)"):
        max_f_beta(PROB, GT.reshape(2, 2))


def test_precision_recall_curve_and_f_beta_by_hand():
    # levels floor(10 p) = 9, 6, 4, 1 with foreground at 0.9 and 0.4
    precision, recall = precision_recall_curve(PROB, GT, thresholds=10)
    np.testing.assert_allclose(precision, [1 / 2, 2 / 3, 2 / 3, 2 / 3, 1 / 2, 1 / 2, 1, 1, 1, 0])
    np.testing.assert_allclose(recall, [1, 1, 1, 1, 1 / 2, 1 / 2, 1 / 2, 1 / 2, 1 / 2, 0])
    np.testing.assert_allclose(f_beta([1, 2 / 3, 0], [1 / 2, 1, 0], beta2=0.3), [0.65 / 0.8, (1.3 * 2 / 3) / 1.2, 0])
    assert np.isnan(precision_recall_curve(PROB, np.zeros(4))[1]).all()
