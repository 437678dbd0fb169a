"""Instance ids for a whole stack, from labels made one plane at a time.

Each plane is segmented on its own and numbers its objects from 1.
:class:`StackIds` takes the planes in stack order and renumbers them so that
ids are unique in the stack: the objects of each plane take the next unused
ids, in the order of their plane ids. Optionally an object that overlaps an
object of the previous z plane enough takes that object's id, so a nucleus
spanning several planes keeps one id.

The ids depend only on the planes' labels and their order, never on when or
where each plane was segmented: a streamed TIFF, a resumed zarr store and a
dask cluster run all pass the same planes through this, in the same order,
and get the same ids. Keeping only the previous z plane makes it streamable.
"""

from __future__ import annotations

import numpy as np

from ..errors import ImageError, NapariUNetError
from .overlap import MAX_ID, shared_pixels



class StackIds:
    """Renumber per-plane instance labels into ids unique in a stack; call once per plane, in order.

    Parameters
    ----------
    iter_axes : str
        Axes of the plane index (the stack's axes without channel, Y and X), e.g. ``"TZ"``.
    stitch_z : float, optional
        Link objects of consecutive z planes whose intersection over union is
        above this (in (0, 1)); a chain of linked objects keeps the id of its
        first. Each object links to at most one in the previous plane (the
        best overlapping), so chains never merge or split. None: no linking.

    Examples
    --------
    >>> ids = StackIds("Z", stitch_z=0.5)
    >>> stack_labels = [ids(index, plane) for index, plane in planes]
    """

    def __init__(self, iter_axes: str, *, stitch_z: float | None = None):
        if stitch_z is not None:
            if not 0.0 < stitch_z < 1.0:
                raise ValueError(f"the z-stitching threshold is an overlap (IoU) in (0, 1), got {stitch_z}")
            if "Z" not in iter_axes:
                raise ImageError(f"linking objects across z needs a Z axis; the stack's planes are along {iter_axes!r}")
        self.stitch_z = stitch_z
        self._z = iter_axes.index("Z") if stitch_z is not None else None
        self._next = 1
        # For each position on the other axes: the z, labels, id table and object areas of its last plane.
        self._previous: dict[tuple[int, ...], tuple[int, np.ndarray, np.ndarray, np.ndarray]] = {}

    @property
    def count(self) -> int:
        """Ids given so far (the largest id in the stack so far)."""
        return self._next - 1

    def __call__(self, index: tuple[int, ...], plane: np.ndarray) -> np.ndarray:
        """Stack ids ``(Y, X)`` uint32 for the labels of the plane at ``index`` (ids from 1, 0 = background)."""
        plane = np.asarray(plane)
        if plane.dtype.kind not in "ui":
            raise ValueError(f"expected integer labels, got dtype {plane.dtype}")
        areas = np.bincount(plane.ravel())
        table = np.zeros(len(areas), np.uint32)
        linked = self._links(index, plane, areas, table)
        present = np.flatnonzero(areas)
        new = present[(present > 0) & ~np.isin(present, linked)]
        if self._next - 1 + len(new) > MAX_ID:
            raise NapariUNetError(f"the stack has more than {MAX_ID} objects, the most 32-bit labels can number")
        table[new] = np.arange(self._next, self._next + len(new), dtype=np.uint32)
        self._next += len(new)
        if self._z is not None:
            key = index[: self._z] + index[self._z + 1 :]
            self._previous[key] = (index[self._z], plane, table, areas)
        return table[plane]

    def _links(self, index: tuple[int, ...], plane: np.ndarray, areas: np.ndarray, table: np.ndarray) -> np.ndarray:
        """Give the objects of ``plane`` that continue one of the previous z plane its id in ``table``.

        Returns the plane ids so linked.
        """
        if self._z is None:
            return np.empty(0, np.int64)
        key = index[: self._z] + index[self._z + 1 :]
        previous = self._previous.get(key)
        if previous is None or previous[0] != index[self._z] - 1:
            return np.empty(0, np.int64)
        _, before, before_table, before_areas = previous
        a, b, iou = overlaps(before, plane, before_areas, areas)
        keep = iou > self.stitch_z
        a, b, iou = a[keep], b[keep], iou[keep]
        taken_a, taken_b = set(), set()
        for i in np.lexsort((b, a, -iou)):  # best overlap first; ties by ids, so the result is deterministic
            if a[i] not in taken_a and b[i] not in taken_b:
                taken_a.add(a[i])
                taken_b.add(b[i])
                table[b[i]] = before_table[a[i]]
        return np.array(sorted(taken_b), np.int64)


def overlaps(a: np.ndarray, b: np.ndarray, areas_a: np.ndarray, areas_b: np.ndarray):
    """Every pair of objects of labels ``a`` and ``b`` (same shape) that share pixels, and their IoU.

    ``areas_a`` / ``areas_b`` are the pixel counts per id (``np.bincount``).
    Returns ``(ids_a, ids_b, iou)``, three 1-D arrays.
    """
    ids_a, ids_b, intersection = shared_pixels(a, b)
    union = areas_a[ids_a] + areas_b[ids_b] - intersection
    return ids_a, ids_b, intersection / union
