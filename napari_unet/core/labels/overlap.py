"""Which objects of two label images share pixels, and how many: what matching objects (scores) and
linking them across planes (stack ids) are both made of."""

from __future__ import annotations

import numpy as np

MAX_ID = 2**32 - 1  # ids of either image must fit in 32 bits: a pair is one 64-bit key


def shared_pixels(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of objects of ``a`` and ``b`` (same shape, ids 0..:data:`MAX_ID`, 0 = background) that
    share pixels: ``(ids_a, ids_b, pixels)``, three 1-D arrays (one sort of the overlapping pixels,
    whatever the number of objects)."""
    both = (a > 0) & (b > 0)
    keys = a[both].astype(np.uint64) << np.uint64(32) | b[both].astype(np.uint64)
    keys, pixels = np.unique(keys, return_counts=True)
    return (keys >> np.uint64(32)).astype(np.int64), (keys & np.uint64(MAX_ID)).astype(np.int64), pixels
