"""Turn raw intensities of any dtype into the network's float input."""

from __future__ import annotations

import numpy as np

from ..models.config import NormalizationConfig
from ..errors import ImageError

ZSCORE_EPS = 1e-6  # bioimage.io's default for zero_mean_unit_variance


def normalize(image: np.ndarray, config: NormalizationConfig = NormalizationConfig()) -> np.ndarray:
    """Normalise a ``(C, Y, X)`` image channel by channel.

    Parameters
    ----------
    image : ndarray of shape (C, Y, X), any real dtype
        One plane with its channels first.
    config : NormalizationConfig
        ``percentile`` maps the ``low`` / ``high`` percentiles of each channel
        to 0 / 1 (values outside are kept, not clipped); a constant channel
        becomes 0. ``zero_mean_unit_variance``: ``(x - mean) / (std + 1e-6)``
        per channel. ``none`` only casts.

    Returns
    -------
    ndarray of shape (C, Y, X), float32

    Raises
    ------
    ImageError
        If the image is empty, not numeric, or holds NaN or infinite values.
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise ImageError(f"expected one plane with channels (C, Y, X), got an array of shape {image.shape}")
    if image.size == 0:
        raise ImageError(f"the image is empty (shape {image.shape})")
    if not (np.issubdtype(image.dtype, np.number) or image.dtype == bool) or np.iscomplexobj(image):
        raise ImageError(f"expected a real-valued image, got dtype {image.dtype}")
    out = image.astype(np.float32, copy=True)
    if not np.isfinite(out).all():
        bad = np.count_nonzero(~np.isfinite(out))
        raise ImageError(f"the image holds {bad} NaN or infinite values out of {out.size}; expected finite numbers")
    if config.method == "none":
        return out
    if config.method == "zero_mean_unit_variance":
        for channel in out:
            channel -= channel.mean(dtype=np.float64)
            channel /= channel.std(dtype=np.float64) + ZSCORE_EPS
        return out
    for channel in out:
        lo, hi = np.percentile(channel, [config.low, config.high])
        if hi <= lo:
            lo, hi = float(channel.min()), float(channel.max())
        if hi > lo:
            channel -= lo
            channel /= hi - lo
        else:
            channel[...] = 0.0
    return out
