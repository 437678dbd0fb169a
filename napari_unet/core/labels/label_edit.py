"""Edits of instance labels that hand tools make tedious.

Painting, filling and erasing are the viewer's job; these work on whole label
images or stacks ``(..., Y, X)`` at once: step from object to object, drop the
specks a prediction leaves, merge an object that was split in two, and number
the objects 1..n again. Each returns a new array (the input is not modified)
so the caller can write only what changed, as one undoable step.
"""

from __future__ import annotations

import numpy as np
from skimage.segmentation import relabel_sequential as _relabel_sequential


def object_ids(labels: np.ndarray) -> np.ndarray:
    """The ids present in ``labels`` (0, the background, excluded), ascending."""
    labels = np.asarray(labels)
    if labels.size == 0:
        return np.zeros(0, labels.dtype)
    largest = int(labels.max())
    if labels.dtype.kind in "ui" and int(labels.min()) >= 0 and largest <= 4 * labels.size:
        # Counting is linear where sorting is not: 20x faster on a 4096 x 4096 plane.
        ids = np.flatnonzero(np.bincount(labels.ravel().astype(np.intp, copy=False), minlength=1))
    else:
        ids = np.unique(labels)
    return ids[ids != 0].astype(labels.dtype, copy=False)


def step_object(labels: np.ndarray, current: int, step: int = 1) -> int | None:
    """The id ``step`` objects after ``current`` in id order (before it when negative), wrapping round.

    ``current`` need not be present (e.g. 0, or an id just deleted): the step
    starts from where it would be. None when there are no objects.
    """
    ids = object_ids(labels)
    if ids.size == 0:
        return None
    if step == 0:
        raise ValueError("step must not be 0")
    position = int(np.searchsorted(ids, current))
    present = position < ids.size and ids[position] == current
    index = position + step - (1 if step > 0 and not present else 0)
    return int(ids[index % ids.size])


def centroid(labels: np.ndarray, label: int) -> tuple[float, ...]:
    """Mean position, one coordinate per axis of ``labels``, of the pixels of ``label``.

    Raises
    ------
    ValueError
        If ``label`` is not in ``labels``.
    """
    where = np.nonzero(np.asarray(labels) == label)
    if where[0].size == 0:
        raise ValueError(f"label {label} is not in the labels (expected one of their ids)")
    return tuple(float(w.mean()) for w in where)


def remove_small_objects(labels: np.ndarray, min_size: int) -> tuple[np.ndarray, int]:
    """Labels without the objects smaller than ``min_size`` pixels, and how many were removed.

    Size counts all the pixels of an id, so an id spread over the planes of a
    stack is measured as one (3D) object.
    """
    labels = np.asarray(labels)
    if min_size < 1:
        raise ValueError(f"min_size must be at least 1 pixel, got {min_size}")
    flat = labels.ravel()
    if flat.size == 0 or not flat.any():
        return labels.copy(), 0
    out = labels.copy()
    if int(flat.max()) <= 4 * flat.size:  # ids about as many as pixels or fewer (as labelling makes them): counted by id
        sizes = np.bincount(flat)
        small = (sizes < min_size) & (sizes > 0)
        small[0] = False
        if small.any():
            out[small[labels]] = 0
        return out, int(small.sum())
    ids, sizes = np.unique(flat[flat != 0], return_counts=True)
    small = ids[sizes < min_size]
    if small.size:
        out[np.isin(labels, small)] = 0
    return out, int(small.size)


def merge_labels(labels: np.ndarray, keep: int, merge: int) -> np.ndarray:
    """Labels where the object ``merge`` becomes part of the object ``keep``.

    Raises
    ------
    ValueError
        If either id is 0 (the background) or absent, or they are the same.
    """
    labels = np.asarray(labels)
    if keep == merge:
        raise ValueError(f"cannot merge label {keep} with itself; expected two different labels")
    if keep == 0 or merge == 0:
        raise ValueError("cannot merge with the background (label 0); expected two object labels")
    for label in (keep, merge):
        if not (labels == label).any():
            raise ValueError(f"label {label} is not in the labels (expected one of their ids)")
    out = labels.copy()
    out[labels == merge] = keep
    return out


def relabel_sequential(labels: np.ndarray) -> np.ndarray:
    """Labels numbered 1..n in the order of their ids, the dtype kept."""
    labels = np.asarray(labels)
    relabelled = _relabel_sequential(labels)[0]
    return relabelled.astype(labels.dtype, copy=False)
