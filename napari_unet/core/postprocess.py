"""From class probabilities to labels.

Instances come from a three-class output (background, interior, boundary):
the interiors, which the boundary class keeps apart where cells touch, are
the seeds of a watershed that grows them back over the boundary pixels,
inside the foreground. This is the approach of the DSB 2018 leaders and of
the U-Net paper's touching-cell weight map: it needs no object-shape prior
(unlike star-convex polygons), so it suits irregular cells as well as nuclei,
and it costs one watershed per image.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import relabel_sequential, watershed

from .config import ThresholdsConfig

BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2


def semantic_labels(prob: np.ndarray) -> np.ndarray:
    """Most probable class per pixel.

    Parameters
    ----------
    prob : ndarray of shape (K, Y, X)
        Class probabilities; for ``K == 1`` the foreground probability of a
        two-class (background / foreground) output, thresholded at 0.5.

    Returns
    -------
    ndarray of shape (Y, X), uint8 (uint16 for more than 256 classes)
    """
    if prob.shape[0] == 1:
        return (prob[0] >= 0.5).astype(np.uint8)
    dtype = np.uint8 if prob.shape[0] <= 256 else np.uint16
    return np.argmax(prob, axis=0).astype(dtype)


def foreground_probability(prob: np.ndarray) -> np.ndarray:
    """Probability that a pixel is not background (class 0).

    Parameters
    ----------
    prob : ndarray of shape (K, ...)
        Class probabilities, or for ``K == 1`` the foreground probability itself.

    Returns
    -------
    ndarray of shape (...), float32, in [0, 1]
    """
    fg = prob[0] if prob.shape[0] == 1 else 1.0 - prob[0]
    return np.clip(fg, 0.0, 1.0).astype(np.float32, copy=False)


def instance_labels(
    prob: np.ndarray,
    *,
    thresholds: ThresholdsConfig = ThresholdsConfig(),
    min_size: int = 10,
) -> np.ndarray:
    """Instance labels from background / interior / boundary probabilities.

    Parameters
    ----------
    prob : ndarray of shape (3, Y, X)
        Probabilities of background, interior and boundary.
    thresholds : ThresholdsConfig
        ``interior``: interior probability above which a pixel seeds an object;
        ``foreground``: ``1 - P(background)`` above which a pixel belongs to
        some object. A model's own are in its ``config.thresholds``.
    min_size : int
        Objects (and seeds) smaller than this many pixels are dropped.

    Returns
    -------
    ndarray of shape (Y, X), uint32
        0 is background; objects are numbered 1..n.
    """
    if prob.ndim != 3 or prob.shape[0] != 3:
        raise ValueError(f"expected (3, Y, X) background/interior/boundary probabilities, got shape {prob.shape}")
    interior = prob[INTERIOR]
    foreground = prob[BACKGROUND] < 1.0 - thresholds.foreground
    seeds, _ = ndi.label(interior > thresholds.interior)
    seeds = _drop_small(seeds, max(1, min_size // 2))
    labels = watershed(-interior, markers=seeds, mask=foreground | (seeds > 0))
    labels = _drop_small(labels, min_size)
    return relabel_sequential(labels.astype(np.uint32, copy=False))[0]


def _drop_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    sizes = np.bincount(labels.ravel())
    small = sizes < min_size
    small[0] = False
    if small.any():
        labels = labels.copy()
        labels[small[labels]] = 0
    return labels
