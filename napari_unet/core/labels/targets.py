"""Training targets derived from what the user drew.

Instance labels become the three classes the instance model predicts:
background (0), interior (1) and boundary (2). The boundary is the inner rim
of each object (pixels touching another id or the background), so two
touching cells are kept apart by two rims of boundary. Pixels outside the
reviewed region get :data:`IGNORE_INDEX`: the loss skips them; they are never
taken as background.
"""

from __future__ import annotations

import numpy as np

from ..models.config import IGNORE_INDEX

BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2


def instance_targets(labels: np.ndarray, reviewed: np.ndarray | None = None) -> np.ndarray:
    """Background / interior / boundary classes of instance ``labels``.

    Parameters
    ----------
    labels : ndarray of shape (Y, X), integer
        Instance ids, 0 = background.
    reviewed : ndarray of shape (Y, X), bool, optional
        Pixels the user has checked; elsewhere the target is ``IGNORE_INDEX``.

    Returns
    -------
    ndarray of shape (Y, X), uint8
        Nothing outside ``reviewed`` influences it.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"expected a 2D label image (Y, X), got shape {labels.shape}")
    target = np.where(labels > 0, INTERIOR, BACKGROUND).astype(np.uint8)
    target[inner_boundaries(labels, reviewed)] = BOUNDARY
    return _ignore_outside(target, reviewed)


def semantic_targets(labels: np.ndarray, reviewed: np.ndarray | None = None, *, num_classes: int) -> np.ndarray:
    """Class ids as they are, checked against ``num_classes``; ``IGNORE_INDEX`` outside ``reviewed``.

    With two classes (background / foreground), every nonzero label is
    foreground, so instance labels serve as foreground masks as they are.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"expected a 2D label image (Y, X), got shape {labels.shape}")
    if num_classes == 2:
        return _ignore_outside((labels != 0).astype(np.uint8), reviewed)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"semantic labels must be class ids in 0..{num_classes - 1}, found {labels.min()}..{labels.max()}"
        )
    return _ignore_outside(labels.astype(np.uint8), reviewed)


def inner_boundaries(labels: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Pixels of an object with a 4-neighbour of another id (or background).

    With ``valid``, only pairs of valid pixels count: what lies outside the
    reviewed region cannot make a reviewed pixel a boundary.
    """
    edge = np.zeros(labels.shape, dtype=bool)
    for axis in (0, 1):
        differs = np.diff(labels, axis=axis) != 0
        if valid is not None:
            v = np.asarray(valid, dtype=bool)
            differs &= (v[1:, :] & v[:-1, :]) if axis == 0 else (v[:, 1:] & v[:, :-1])
        lo = [slice(None)] * 2
        hi = [slice(None)] * 2
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        edge[tuple(lo)] |= differs
        edge[tuple(hi)] |= differs
    return edge & (labels > 0)


def _ignore_outside(target: np.ndarray, reviewed: np.ndarray | None) -> np.ndarray:
    if reviewed is None:
        return target
    reviewed = np.asarray(reviewed, dtype=bool)
    if reviewed.shape != target.shape:
        raise ValueError(f"the reviewed mask has shape {reviewed.shape}, the labels {target.shape}")
    target[~reviewed] = IGNORE_INDEX
    return target


def object_diameters(labels: np.ndarray) -> np.ndarray:
    """Equivalent-circle diameter of each object in ``labels`` (pixels)."""
    areas = np.bincount(np.asarray(labels).ravel())[1:]
    areas = areas[areas > 0]
    return 2.0 * np.sqrt(areas / np.pi)

