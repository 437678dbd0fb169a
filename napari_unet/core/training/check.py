""""Did it help?": a fine-tuned model against the model it started from, with the uncertainty of the answer.

Two questions, each answered on data the fine-tune never trained on:

- **the user's images**: AP@0.5 of both models on held-out corrections (whole
  images, or in turn each image a fold did not train on, see :mod:`.finetune`);
- **forgetting**: AP@0.5 of both on the ``check`` crops of the parent's replay
  set (:mod:`.replay`): what the parent knew before the user's images.

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
from ..evaluation.metrics import InstanceCounts, overlaps
from ..labels.postprocess import instance_labels
from .scoring import Prediction

FORGETTING_TOLERANCE = 0.02  # AP@0.5 a fine-tune may lose on the parent's own data and still be adopted
GRID = 4  # cells per side of each held-out image, for the bootstrap
RESAMPLES = 2000
LEVEL = 0.90


@dataclass(frozen=True)
class Comparison:
    """Parent and fine-tuned model on the same held-out data (AP@0.5 pooled over objects).

    ``low`` and ``high`` bound the gain (``finetuned - parent``) with
    :data:`LEVEL` confidence (paired bootstrap over regions).
    """

    what: str
    parent: float
    finetuned: float
    low: float
    high: float
    objects: int

    @property
    def gain(self) -> float:
        return self.finetuned - self.parent

    def __str__(self) -> str:
        return (
            f"{self.what}: AP@0.5 {self.parent:.3f} -> {self.finetuned:.3f} ({self.gain:+.3f}, "
            f"{LEVEL:.0%} interval {self.low:+.3f} to {self.high:+.3f}, {self.objects} objects)"
        )

    def as_dict(self) -> dict:
        keys = ("what", "parent", "finetuned", "low", "high", "objects")
        return {k: getattr(self, k) for k in keys} | {"gain": self.gain}


def region_counts(
    labels: np.ndarray, truth: np.ndarray, reviewed: np.ndarray, *, grid: int = GRID
) -> list[InstanceCounts]:
    """AP@0.5 counts of ``labels`` against ``truth`` in each cell of a ``grid`` x ``grid`` cut of the reviewed box.

    Objects are matched over the whole image (IoU above 0.5, as
    :func:`~napari_unet.core.evaluation.metrics.match_instances`), then each counts in
    the cell of its centroid: a true object as a hit or a miss, an unmatched
    predicted object as a false positive. As there, an object with more than
    half of its pixels outside the reviewed region does not count. Always
    ``grid * grid`` cells, so that two predictions of the same image pair up
    cell by cell; none when nothing is reviewed.
    """
    found = overlaps(labels, truth)
    matched = found.iou > 0.5
    true_hit = np.zeros(found.true_ids.size, bool)
    true_hit[found.rows[matched]] = True
    pred_hit = np.zeros(found.pred_ids.size, bool)
    pred_hit[found.cols[matched]] = True
    ys, xs = np.nonzero(reviewed)
    if ys.size == 0:
        return []
    rows = np.linspace(ys.min(), ys.max() + 1, grid + 1)[1:-1]
    cols = np.linspace(xs.min(), xs.max() + 1, grid + 1)[1:-1]
    tally = np.zeros((grid * grid, 3), np.int64)  # tp, fp, fn per cell
    for lab, ids, hit, kinds in ((truth, found.true_ids, true_hit, (0, 2)), (labels, found.pred_ids, pred_hit, (None, 1))):
        if ids.size == 0:
            continue
        cy, cx, inside = _centroids(lab, ids, reviewed)
        cell = np.searchsorted(rows, cy, side="right") * grid + np.searchsorted(cols, cx, side="right")
        for hit_kind, which in ((kinds[0], hit), (kinds[1], ~hit)):
            if hit_kind is not None:
                np.add.at(tally[:, hit_kind], cell[which & inside], 1)
    one = np.array([0.5])
    return [InstanceCounts(one, t[:1], t[1:2], t[2:3]) for t in tally]


def _centroids(labels: np.ndarray, ids: np.ndarray, reviewed: np.ndarray):
    """Centroid (y, x) of each object of ``ids`` (the nonzero ids of ``labels``, in order) and whether
    more than half of it is reviewed."""
    values, index = np.unique(labels.ravel(), return_inverse=True)
    first = int(values.size > 0 and values[0] == 0)  # the background's bin, when there is background
    assert np.array_equal(values[first:], ids)
    area = np.bincount(index)
    yy, xx = np.indices(labels.shape)
    cy = np.bincount(index, yy.ravel()) / area
    cx = np.bincount(index, xx.ravel()) / area
    seen = np.bincount(index, reviewed.ravel().astype(np.float64))
    return cy[first:], cx[first:], (seen * 2 > area)[first:]


def prediction_counts(predictions: list[Prediction], config: ModelConfig) -> list[InstanceCounts]:
    """The region counts of each prediction, made into objects with the model's own thresholds."""
    counts = []
    for p in predictions:
        labels = instance_labels(p.prob, thresholds=config.thresholds, object_size=p.object_size)
        counts += region_counts(labels, p.labels, p.reviewed)
    return counts


def compare(
    what: str,
    parent: list[InstanceCounts],
    finetuned: list[InstanceCounts],
    *,
    seed: int = 0,
) -> Comparison:
    """Pooled AP@0.5 of both, and a paired bootstrap interval of the gain over the regions."""
    if len(parent) != len(finetuned) or not parent:
        raise ValueError(f"expected the same regions for both models, got {len(parent)} and {len(finetuned)}")
    p = np.array([(c.tp[0], c.fp[0], c.fn[0]) for c in parent], dtype=np.float64)
    f = np.array([(c.tp[0], c.fp[0], c.fn[0]) for c in finetuned], dtype=np.float64)
    draws = np.random.default_rng(seed).integers(len(p), size=(RESAMPLES, len(p)))
    gains = _ap(f[draws].sum(axis=1)) - _ap(p[draws].sum(axis=1))
    gains = gains[np.isfinite(gains)]
    tail = (1 - LEVEL) / 2
    low, high = (np.quantile(gains, [tail, 1 - tail]) if gains.size else (np.nan, np.nan))
    objects = int(p[:, 0].sum() + p[:, 2].sum())  # the true objects: matched or missed
    return Comparison(what, float(_ap(p.sum(axis=0))), float(_ap(f.sum(axis=0))), float(low), float(high), objects)


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
    the loss is over the tolerance and the whole interval is below zero. (The check crops hold a few
    hundred objects, whose interval spans about 0.05: a point estimate alone would refuse good
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
    else:
        why = "it is not better than the parent on your held-out corrections"
    return f"not adopted: {why}; keeping the parent (the fine-tuned version can still be chosen). {details}"
