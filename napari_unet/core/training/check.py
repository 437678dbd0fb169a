""""Did it help?": a fine-tuned model against the model it started from, with the uncertainty of the answer.

Two questions, each answered on data the fine-tune never trained on:

- **the user's images**: AP averaged over IoU 0.5 to 0.9 (:data:`HELD_OUT_IOUS`)
  of both models on held-out corrections (whole images, or in turn each image
  a fold did not train on, see :mod:`.finetune`). Two corrected images of
  large cells hold a few dozen objects, which a fine-tune often finds at
  IoU 0.5 exactly as the parent did: AP@0.5 then ties and says nothing, while
  how well the outlines fit still tells the models apart;
- **forgetting**: AP@0.5 of both on the ``check`` crops of the parent's replay
  set (:mod:`.replay`): what the parent knew before the user's images (about
  700 objects for the default model). The tolerance is in AP@0.5, the score
  that says whether nuclei are still found at all, whatever the outline style
  of the user's corrections.

Each comparison is paired (both models on the same objects) and its
uncertainty is a bootstrap over regions: every held-out image is cut into a
grid of cells, each object counts in the cell of its centroid, and cells are
drawn with replacement. A gain whose interval spans 0 is a
gain the data cannot vouch for; the verdict says so.

A fine-tune is adopted when it is better on the user's held-out images (a
positive gain) and has not lost more than :data:`FORGETTING_TOLERANCE` on the
replay check beyond doubt (:func:`forgot`); otherwise the parent stays in use and the user can still choose the
fine-tuned model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..models.config import ModelConfig
from ..evaluation.metrics import IOU_THRESHOLDS, InstanceCounts, compact_labels, overlaps
from ..labels.postprocess import instance_labels
from .scoring import Prediction

FORGETTING_TOLERANCE = 0.02  # AP@0.5 a fine-tune may lose on the parent's own data and still be adopted
HELD_OUT_IOUS = IOU_THRESHOLDS  # 0.5, 0.55, ..., 0.9: the held-out check's score averages AP over these
FORGETTING_IOUS = (0.5,)  # and the forgetting check's, AP@0.5 alone
GRID = 4  # cells per side of each held-out image, for the bootstrap
RESAMPLES = 2000
LEVEL = 0.90


@dataclass(frozen=True)
class Comparison:
    """Parent and fine-tuned model on the same held-out data (``metric``, pooled over objects).

    ``low`` and ``high`` bound the gain (``finetuned - parent``) with
    :data:`LEVEL` confidence (paired bootstrap over regions). ``by_iou``:
    ``(IoU threshold, parent's AP, fine-tune's AP)`` at each threshold the
    score averages, for the record.
    """

    what: str
    parent: float
    finetuned: float
    low: float
    high: float
    objects: int
    metric: str = "AP@0.5"
    by_iou: tuple[tuple[float, float, float], ...] = ()

    @property
    def gain(self) -> float:
        return self.finetuned - self.parent

    def __str__(self) -> str:
        return (
            f"{self.what}: {self.metric} {self.parent:.3f} -> {self.finetuned:.3f} ({self.gain:+.3f}, "
            f"{LEVEL:.0%} interval {self.low:+.3f} to {self.high:+.3f}, {self.objects} objects)"
        )

    def as_dict(self) -> dict:
        keys = ("what", "metric", "parent", "finetuned", "low", "high", "objects")
        by_iou = [{"iou": t, "parent": a, "finetuned": b} for t, a, b in self.by_iou]
        return {k: getattr(self, k) for k in keys} | {"gain": self.gain, "by_iou": by_iou}


def region_counts(
    labels: np.ndarray,
    truth: np.ndarray,
    reviewed: np.ndarray,
    *,
    grid: int = GRID,
    thresholds: tuple[float, ...] = (0.5,),
) -> list[InstanceCounts]:
    """Counts of ``labels`` against ``truth`` at each IoU threshold (0.5 or above) in each cell of a
    ``grid`` x ``grid`` cut of the reviewed box.

    Objects are matched over the whole image (IoU strictly above the threshold, as
    :func:`~napari_unet.core.evaluation.metrics.match_instances`: from 0.5 up each
    object has one partner at most), then each counts in the cell of its
    centroid: a true object as a hit or a miss, an unmatched predicted object as
    a false positive. As there, an object with more than half of its pixels
    outside the reviewed region does not count. Always ``grid * grid`` cells,
    so that two predictions of the same image pair up cell by cell; none when
    nothing is reviewed.
    """
    thr = np.asarray(thresholds, dtype=np.float64)
    if thr.size == 0 or thr.min() < 0.5:
        raise ValueError(f"expected IoU thresholds of 0.5 or above, got {list(thresholds)}")
    ys, xs = np.nonzero(reviewed)
    if ys.size == 0:
        return []
    found = overlaps(labels, truth)
    rows = np.linspace(ys.min(), ys.max() + 1, grid + 1)[1:-1]
    cols = np.linspace(xs.min(), xs.max() + 1, grid + 1)[1:-1]

    def cells(lab: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if ids.size == 0:
            return np.zeros(0, np.int64), np.zeros(0, bool)
        cy, cx, inside = _centroids(lab, ids, reviewed)
        return np.searchsorted(rows, cy, side="right") * grid + np.searchsorted(cols, cx, side="right"), inside

    true_cell, true_in = cells(truth, found.true_ids)
    pred_cell, pred_in = cells(labels, found.pred_ids)
    tally = np.zeros((grid * grid, thr.size, 3), np.int64)  # tp, fp, fn per cell and threshold
    for k, t in enumerate(thr):
        matched = found.iou > t
        true_hit = np.zeros(found.true_ids.size, bool)
        true_hit[found.rows[matched]] = True
        pred_hit = np.zeros(found.pred_ids.size, bool)
        pred_hit[found.cols[matched]] = True
        np.add.at(tally[:, k, 0], true_cell[true_hit & true_in], 1)
        np.add.at(tally[:, k, 2], true_cell[~true_hit & true_in], 1)
        np.add.at(tally[:, k, 1], pred_cell[~pred_hit & pred_in], 1)
    return [InstanceCounts(thr, t[:, 0], t[:, 1], t[:, 2]) for t in tally]


def _centroids(labels: np.ndarray, ids: np.ndarray, reviewed: np.ndarray):
    """Centroid (y, x) of each object of ``ids`` (the nonzero ids of ``labels``, in order) and whether
    more than half of it is reviewed."""
    index, found = compact_labels(labels, "labels")  # not np.unique(return_inverse=True): a sort of every pixel
    assert np.array_equal(found, ids)
    n = ids.size + 1
    area = np.bincount(index, minlength=n)[1:]
    yy, xx = np.indices(labels.shape)
    cy = np.bincount(index, yy.ravel(), minlength=n)[1:] / area
    cx = np.bincount(index, xx.ravel(), minlength=n)[1:] / area
    seen = np.bincount(index, reviewed.ravel().astype(np.float64), minlength=n)[1:]
    return cy, cx, seen * 2 > area


def prediction_counts(
    predictions: list[Prediction], config: ModelConfig, *, thresholds: tuple[float, ...] = (0.5,)
) -> list[InstanceCounts]:
    """The region counts of each prediction at the IoU ``thresholds``, made into objects with the model's own
    post-processing thresholds."""
    counts = []
    for p in predictions:
        labels = instance_labels(p.prob, thresholds=config.thresholds, object_size=p.object_size)
        counts += region_counts(labels, p.labels, p.reviewed, thresholds=thresholds)
    return counts


def compare(
    what: str,
    parent: list[InstanceCounts],
    finetuned: list[InstanceCounts],
    *,
    seed: int = 0,
) -> Comparison:
    """Pooled AP of both, averaged over the IoU thresholds the counts were made at, and a paired bootstrap
    interval of the gain over the regions."""
    if len(parent) != len(finetuned) or not parent:
        raise ValueError(f"expected the same regions for both models, got {len(parent)} and {len(finetuned)}")
    thresholds = parent[0].thresholds
    if any(not np.array_equal(c.thresholds, thresholds) for c in [*parent, *finetuned]):
        raise ValueError("expected the counts of both models at the same IoU thresholds")
    p, f = count_table(parent).astype(np.float64), count_table(finetuned).astype(np.float64)
    draws = np.random.default_rng(seed).integers(len(p), size=(RESAMPLES, len(p)))
    gains = _ap(f[draws].sum(axis=1)).mean(axis=-1) - _ap(p[draws].sum(axis=1)).mean(axis=-1)
    tail = (1 - LEVEL) / 2
    low, high = np.quantile(gains, [tail, 1 - tail])
    objects = int(p[:, 0, 0].sum() + p[:, 0, 2].sum())  # the true objects: matched or missed
    before, after = _ap(p.sum(axis=0)), _ap(f.sum(axis=0))
    by_iou = tuple((float(t), float(a), float(b)) for t, a, b in zip(thresholds, before, after))
    return Comparison(what, float(before.mean()), float(after.mean()), float(low), float(high), objects,
                      metric=_metric(thresholds), by_iou=by_iou)


def count_table(counts: list[InstanceCounts]) -> np.ndarray:
    """The counts of each region as one array of shape (regions, IoU thresholds, 3): TP, FP, FN."""
    return np.stack([np.stack([c.tp, c.fp, c.fn], axis=-1) for c in counts])


def _metric(thresholds: np.ndarray) -> str:
    if thresholds.size == 1:
        return f"AP@{thresholds[0]:g}"
    return f"mean AP@{thresholds.min():g}:{thresholds.max():g}"


def _ap(counts: np.ndarray) -> np.ndarray:
    """TP / (TP + FP + FN) along the last axis (0 where nothing was found or expected)."""
    tp, total = counts[..., 0], counts.sum(axis=-1)
    return np.where(total > 0, tp / np.maximum(total, 1), 0.0)


def adopt(user: Comparison | None, forgetting: Comparison | None) -> bool | None:
    """Whether the fine-tune should replace its parent: better on the user's held-out images and not
    :func:`forgot`; None when nothing was held out."""
    if user is None:
        return None
    if forgot(forgetting):
        return False
    return user.gain > 0


def forgot(forgetting: Comparison | None) -> bool:
    """Whether the fine-tune lost more than :data:`FORGETTING_TOLERANCE` on the replay check, beyond doubt:
    the loss is over the tolerance and the whole interval is below zero. (The default model's 32 check
    crops hold about 700 objects, whose interval spans about 0.04: a point estimate alone would refuse good
    fine-tunes at random.)"""
    return forgetting is not None and forgetting.gain < -FORGETTING_TOLERANCE and forgetting.high < 0


def verdict(
    user: Comparison | None, forgetting: Comparison | None, *, blend: float = 1.0, pulled_back: bool = False
) -> str:
    """One paragraph for people: adopted or not, and why, with both numbers and their intervals.

    ``blend``: how far the model judged is from the parent toward the fine-tune (TrainConfig.blend);
    ``pulled_back``: it is half the share asked for, because the model at that share forgot."""
    decision = adopt(user, forgetting)
    parts = [str(c) for c in (user, forgetting) if c is not None]
    details = "; ".join(parts)
    if decision is None:
        return "not checked: no held-out corrections to compare the models on" + (f" ({details})" if details else "")
    if decision:
        sure = "" if user.low > 0 else " (the interval includes no gain: correct more images to be sure)"
        if pulled_back:
            return (
                f"adopted {blend:.0%} of the way from the parent to the fine-tune: twice as far it lost more "
                f"than {FORGETTING_TOLERANCE} on the data the parent was trained on, this one did not and is "
                f"better on your held-out corrections{sure}. {details}"
            )
        return f"adopted: better on your held-out corrections{sure}. {details}"
    if forgot(forgetting):
        why = f"it lost more than {FORGETTING_TOLERANCE} on the data the parent was trained on"
    elif user.by_iou and all(a == b for _, a, b in user.by_iou):  # a tie at every IoU
        why = ("it segments your held-out corrections exactly as the parent does, so they cannot tell whether it "
               "helps (correct an image the parent gets wrong)")
    else:
        why = "it is not better than the parent on your held-out corrections"
    return f"not adopted: {why}; keeping the parent (the fine-tuned version can still be chosen). {details}"
