"""The classical baseline a model must beat: Otsu threshold and distance-transform watershed.

No learning: smooth the image a little, threshold it at Otsu's level, take
the minority side of the threshold as the objects (bright nuclei on a dark
background in fluorescence, dark ones on a bright background in brightfield:
the polarity is chosen per image), and split touching objects with a
watershed of the distance to the background, seeded at its local maxima.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.filters import threshold_otsu
from skimage.segmentation import relabel_sequential, watershed

from ..labels.targets import object_diameters


def otsu_watershed(image: np.ndarray, *, object_size: float | None = None, min_size: int = 10) -> np.ndarray:
    """Instance labels of the objects in a grey image, without any model.

    Parameters
    ----------
    image : ndarray of shape (Y, X), real
        One grey plane (average the channels of a colour image first).
    object_size : float, optional
        Typical object diameter (pixels); seeds closer than a third of it
        are merged. By default the median diameter of the thresholded
        connected components.
    min_size : int
        Objects smaller than this many pixels are dropped.

    Returns
    -------
    ndarray of shape (Y, X), uint32
        0 is background; objects are numbered 1..n.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"expected one grey plane (Y, X), got shape {image.shape}")
    smooth = ndi.gaussian_filter(image, 1.0)
    if smooth.size == 0 or smooth.min() == smooth.max():
        return np.zeros(image.shape, np.uint32)
    bright = smooth > threshold_otsu(smooth)
    mask = bright if np.count_nonzero(bright) <= bright.size / 2 else ~bright
    mask = ndi.binary_fill_holes(ndi.binary_opening(mask))
    components, n = ndi.label(mask)
    if n == 0:
        return np.zeros(image.shape, np.uint32)
    if object_size is None:
        object_size = float(np.median(object_diameters(components)))
    distance = ndi.distance_transform_edt(mask)
    peaks = peak_local_max(
        distance, min_distance=max(1, round(object_size / 3)), labels=components, exclude_border=False
    )
    seeds = np.zeros(image.shape, np.int32)
    seeds[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    # Components without a peak (flat plateaus) keep one seed each.
    unseeded = np.setdiff1d(np.arange(1, n + 1), np.unique(components[seeds > 0]))
    if unseeded.size:
        extra = np.isin(components, unseeded)
        seeds[extra] = components[extra] + len(peaks)
    labels = watershed(-distance, seeds, mask=mask)
    sizes = np.bincount(labels.ravel())
    labels[(sizes < min_size)[labels]] = 0
    return relabel_sequential(labels.astype(np.uint32))[0]
