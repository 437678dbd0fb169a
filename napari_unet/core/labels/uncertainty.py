"""How sure the model is of each object it found: a score that sends the user to its mistakes first.

A predicted object is wrong in one of two ways, and each has its sign in what
the prediction already holds (no extra model run):

- **it may not be an object at all** (a false positive: debris, noise, texture).
  Every object grows from a seed whose interior probability passed the model's
  threshold; for a real nucleus the peak of that probability is all but 1
  (``1 - peak`` below 1e-3 for nearly all matched objects of the benchmark), for
  a doubtful one it stays lower. *Existence doubt*: how many of the four
  decades from ``1 - peak = 1e-4`` to 1 the peak stops short of 1, as a fraction.
- **it may have the wrong shape**: two nuclei merged into one, or a fragment.
  Nuclei are nearly convex; merges are not. *Shape doubt*: the same in three
  decades of ``1 - solidity`` (object area over that of its convex hull).

The object's score is the mean of the two, between 0 (sure) and 1 (doubtful):
higher means look at it sooner. Chosen by measurement
(``benchmarks/review_order.py``, in docs/benchmarks.md): it flagged the objects
that match no true nucleus better than the flip-disagreement of two
predictions, the entropy of the class probabilities or the stability under
other thresholds, each of which costs more.

:func:`pixel_uncertainty` gives a per-pixel map to look at: the normalised
entropy of the class probabilities (0 where the model is sure, 1 where all
classes are as likely).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import regionprops

EXISTENCE_FLOOR = 1e-4  # 1 - peak interior probability at or below this: no doubt that it is an object
SHAPE_FLOOR = 1e-3  # 1 - solidity at or below this: no doubt about the shape
INTERIOR = 1  # the interior class of an instance model's (background, interior, boundary) output


@dataclass(frozen=True)
class ObjectScores:
    """Each object's uncertainty (``score``, 0 sure .. 1 doubtful: the mean of its ``existence`` and ``shape``
    doubts) with its ``area`` and ``centroid`` (y, x)."""

    ids: np.ndarray
    score: np.ndarray
    existence: np.ndarray
    shape: np.ndarray
    area: np.ndarray
    centroid: np.ndarray  # (n, 2)

    def shifted(self, offset: int) -> ObjectScores:
        """The same scores for labels whose ids were all raised by ``offset``."""
        return replace(self, ids=self.ids + int(offset))

    def order(self) -> np.ndarray:
        """The ids, least sure first (ties: smaller id first)."""
        return self.ids[np.lexsort((self.ids, -self.score))]

    def table(self) -> dict[str, np.ndarray]:
        """Columns for a napari ``features`` table or a CSV: label, uncertainty (and its two halves), area, centroid."""
        return {
            "label": self.ids,
            "uncertainty": self.score,
            "existence_doubt": self.existence,
            "shape_doubt": self.shape,
            "area": self.area,
            "centroid_y": self.centroid[:, 0],
            "centroid_x": self.centroid[:, 1],
        }


def object_uncertainty(prob: np.ndarray, labels: np.ndarray) -> ObjectScores:
    """The uncertainty of each object of ``labels`` ``(Y, X)``, made from the instance probabilities ``prob``
    ``(3, Y, X)`` they came from."""
    prob, labels = np.asarray(prob), np.asarray(labels)
    if prob.ndim != 3 or prob.shape[0] != 3 or prob.shape[1:] != labels.shape:
        raise ValueError(
            f"expected background / interior / boundary probabilities (3, Y, X) and labels (Y, X) of the same "
            f"plane, got {prob.shape} and {labels.shape}"
        )
    props = regionprops(labels.astype(np.int64, copy=False))
    ids = np.array([p.label for p in props], dtype=np.int64)
    if ids.size == 0:
        none = np.zeros(0)
        return ObjectScores(ids, none, none, none, np.zeros(0, np.int64), np.zeros((0, 2)))
    peak = np.asarray(ndi.maximum(prob[INTERIOR], labels, ids), dtype=np.float64)
    solidity = np.array([p.solidity for p in props])
    existence, shape = _doubt(1.0 - peak, EXISTENCE_FLOOR), _doubt(1.0 - solidity, SHAPE_FLOOR)
    area = np.array([p.area for p in props], dtype=np.int64)
    centroid = np.array([p.centroid for p in props], dtype=np.float64).reshape(-1, 2)
    return ObjectScores(ids, (existence + shape) / 2, existence, shape, area, centroid)


def _doubt(shortfall: np.ndarray, floor: float) -> np.ndarray:
    """``shortfall`` (0..1) as the fraction of the decades from ``floor`` to 1 that it covers: 0 at or below the
    floor, 1 at 1."""
    decades = -np.log10(floor)
    return np.clip(1.0 + np.log10(np.clip(shortfall, floor, 1.0)) / decades, 0.0, 1.0)


def score_map(labels: np.ndarray, scores: ObjectScores) -> np.ndarray:
    """A float32 image of ``labels``' shape: each object's pixels hold its score, the background 0."""
    labels = np.asarray(labels)
    lookup = np.zeros(int(labels.max(initial=0)) + 1, np.float32)
    lookup[scores.ids] = scores.score
    return lookup[labels]


def pixel_uncertainty(prob: np.ndarray) -> np.ndarray:
    """The normalised entropy of the class probabilities ``(K, Y, X)``: float32 ``(Y, X)`` in 0..1."""
    p = np.clip(np.asarray(prob, np.float32), 1e-7, 1.0)
    k = p.shape[0]
    if k < 2:  # one sigmoid output: the probability of foreground and its complement
        p = np.concatenate([p, 1 - p])
        k = 2
    return (-(p * np.log(p)).sum(axis=0) / np.log(k)).astype(np.float32)
