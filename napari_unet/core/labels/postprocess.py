"""From class probabilities to labels.

Instances come from a three-class output (background, interior, boundary):
the interiors, which the boundary class keeps apart where cells touch, are
the seeds of a watershed that grows them back over the boundary pixels,
inside the foreground. This is the approach of the DSB 2018 leaders and of
the U-Net paper's touching-cell weight map: it needs no object-shape prior
(unlike star-convex polygons), so it suits irregular cells as well as nuclei,
and it costs one watershed per image.

Where the network is unsure of a boundary between touching nuclei, their
interiors join at the seed threshold. When the typical object size is known,
each seed is therefore looked at again at higher interior thresholds (a
component tree, as MSER walks one): a seed whose interior falls apart there
into two or more parts of at least a quarter of a typical object becomes
those parts. Parts smaller than that (noise at the top of one nucleus) never
split it.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import relabel_sequential, watershed

from ..models.config import ThresholdsConfig
from .label_edit import remove_small_objects

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
    object_size: float | None = None,
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
    object_size : float, optional
        Typical object diameter (pixels) at the resolution of ``prob``. With
        it, seeds that hold two or more objects at higher interior
        thresholds are split (see :func:`split_seeds`); without it, seeds
        are the connected regions above the interior threshold.

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
    if object_size is not None:
        seeds = split_seeds(seeds, interior, thresholds.interior, min_area=split_min_area(object_size))
    seeds = _drop_small(seeds, max(1, min_size // 2))
    labels = watershed(-interior, markers=seeds, mask=foreground | (seeds > 0))
    labels = _drop_small(labels, min_size)
    return relabel_sequential(labels.astype(np.uint32, copy=False))[0]


# Interior thresholds a seed is looked at again with, as fractions of the
# distance of the seed threshold t from 1: 1 - (1 - t) * f (0.95 ... 0.995 for t = 0.9).
SPLIT_LEVELS = (0.5, 0.3, 0.2, 0.1, 0.05)
# Least area of each part a seed splits into, in typical objects' areas.
SPLIT_AREA = 0.25


def split_min_area(object_size: float) -> float:
    """Least area (pixels) of a part an object is split into: ``SPLIT_AREA`` of a disk ``object_size`` across."""
    return SPLIT_AREA * np.pi * (object_size / 2) ** 2


def split_seeds(seeds: np.ndarray, interior: np.ndarray, threshold: float, *, min_area: float) -> np.ndarray:
    """Split seeds whose interior falls apart into several large parts at higher thresholds.

    Parameters
    ----------
    seeds : ndarray of shape (Y, X), int
        Connected regions of ``interior > threshold``, numbered 1..n.
    interior : ndarray of shape (Y, X), float
        Interior probability.
    threshold : float
        The threshold ``seeds`` were made at.
    min_area : float
        Least area (pixels) of a part for a split: a seed becomes its parts
        only when two or more of them are at least this large. Its pixels in
        no such part stop being seed (the watershed grows the parts over them).

    Returns
    -------
    ndarray of shape (Y, X), int32
        The seeds, split where they fall apart; numbered 1..m.
    """
    levels = [1.0 - (1.0 - threshold) * f for f in SPLIT_LEVELS]
    out = np.zeros(seeds.shape, dtype=np.int32)
    areas = np.bincount(seeds.ravel())
    next_id = 1
    for k, box in enumerate(ndi.find_objects(seeds), start=1):
        if box is None:
            continue
        own = seeds[box] == k
        # a seed smaller than two parts cannot split
        parts = _parts(own, interior[box], levels, min_area) if areas[k] >= 2 * min_area else [own]
        for part in parts:
            out[box][part] = next_id
            next_id += 1
    return out


def _parts(region: np.ndarray, interior: np.ndarray, levels: list[float], min_area: float) -> list[np.ndarray]:
    """``region`` as one part, or the parts it splits into at the first of ``levels`` that splits it."""
    for i, level in enumerate(levels):
        parts, n = ndi.label(region & (interior > level))
        if n < 2:
            continue
        sizes = np.bincount(parts.ravel())
        large = [j for j in range(1, n + 1) if sizes[j] >= min_area]
        if len(large) >= 2:
            return [p for j in large for p in _parts(parts == j, interior, levels[i + 1 :], min_area)]
    return [region]


def _drop_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    return remove_small_objects(labels, min_size)[0] if min_size > 1 else labels
