"""Which pixels the user reviewed: the neighbourhood of what they changed, plane by plane.

:class:`ChangedPixels` accumulates the pixels of a labels array that were
edited (painted, filled, erased, written by a tool), one boolean plane at a
time and only for the planes touched. :func:`grow` widens a mask by a margin:
the pixels around a correction were looked at too, and the objects cut by the
edge of the correction need their surroundings to be learnt right.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

DEFAULT_MARGIN = 32


def grow(mask: np.ndarray, margin: int) -> np.ndarray:
    """``mask`` (2D) widened by ``margin`` pixels (Euclidean distance)."""
    mask = np.asarray(mask, dtype=bool)
    if margin <= 0 or not mask.any():
        return mask.copy()
    # Only the bounding box of the marks, widened, can change: a distance transform there, not on the whole plane.
    ys, xs = np.nonzero(mask)
    y0, y1 = max(0, ys.min() - margin), min(mask.shape[0], ys.max() + margin + 1)
    x0, x1 = max(0, xs.min() - margin), min(mask.shape[1], xs.max() + margin + 1)
    out = np.zeros_like(mask)
    out[y0:y1, x0:x1] = ndi.distance_transform_edt(~mask[y0:y1, x0:x1]) <= margin
    return out


class ChangedPixels:
    """Edited pixels of a labels array of ``shape`` (``(..., Y, X)``), kept per plane.

    ``mark_box`` takes a bounding box (a tuple of slices over all axes) and an
    optional mask of the changed pixels inside it; ``mark_points`` takes fancy
    indices (a tuple of integer arrays, one per axis).
    """

    def __init__(self, shape: Sequence[int]):
        self.shape = tuple(int(n) for n in shape)
        if len(self.shape) < 2:
            raise ValueError(f"labels must have at least 2 dimensions (Y, X), got shape {self.shape}")
        self.planes: dict[tuple[int, ...], np.ndarray] = {}

    def _plane(self, index: tuple[int, ...]) -> np.ndarray:
        if index not in self.planes:
            self.planes[index] = np.zeros(self.shape[-2:], bool)
        return self.planes[index]

    def mark_box(self, key: tuple[slice, ...], mask: np.ndarray | None = None) -> None:
        if len(key) != len(self.shape):
            raise ValueError(f"a box over {len(key)} axes for labels of {len(self.shape)} dimensions")
        ranges = [range(*s.indices(n)) for s, n in zip(key, self.shape)]
        (ys, xs) = ranges[-2:]
        if not ys or not xs:
            return
        box = (slice(ys.start, ys.stop, ys.step), slice(xs.start, xs.stop, xs.step))
        for offset, index in enumerate(np.ndindex(*[len(r) for r in ranges[:-2]])):
            plane_index = tuple(r[i] for r, i in zip(ranges[:-2], index))
            sub = True if mask is None else np.asarray(mask, bool)[index]
            self._plane(plane_index)[box] |= sub

    def mark_points(self, indices: tuple[np.ndarray, ...]) -> None:
        if len(indices) != len(self.shape):
            raise ValueError(f"indices over {len(indices)} axes for labels of {len(self.shape)} dimensions")
        indices = tuple(np.asarray(i, dtype=np.intp).ravel() for i in indices)
        if not indices[0].size:
            return
        lead = np.stack(indices[:-2], axis=1) if len(indices) > 2 else np.zeros((indices[0].size, 0), np.intp)
        for plane_index in {tuple(row) for row in lead.tolist()}:
            where = np.all(lead == plane_index, axis=1) if lead.shape[1] else slice(None)
            self._plane(tuple(plane_index))[indices[-2][where], indices[-1][where]] = True

    def clear(self, index: tuple[int, ...] | None = None) -> None:
        """Forget the marks of one plane (or of all)."""
        if index is None:
            self.planes.clear()
        else:
            self.planes.pop(tuple(index), None)

    def marked(self) -> list[tuple[int, ...]]:
        """Planes with at least one changed pixel."""
        return [i for i, p in self.planes.items() if p.any()]

    def reviewed(self, margin: int = DEFAULT_MARGIN) -> np.ndarray:
        """The changed pixels grown by ``margin``, as a boolean array of :attr:`shape`."""
        out = np.zeros(self.shape, bool)
        for index, plane in self.planes.items():
            out[index] = grow(plane, margin)
        return out
