"""``segment --uncertainty``: beside each labels TIFF, how sure the model is of each object.

Two files, named after the labels output (``cells_labels.tif`` ->
``cells_uncertainty.tif``; ``out.tif`` -> ``out_uncertainty.tif``):

- a float32 TIFF of the labels' shape, each object's pixels holding its score
  (:func:`~napari_unet.core.labels.uncertainty.object_uncertainty`: 0 sure .. 1
  doubtful, higher = look sooner), the background 0;
- a CSV with a row per object and plane: the plane's index over the stack's
  leading axes, the label id, the score (and its two halves), the area and the
  centroid (y, x).

Both are streamed and appear only when complete, as the labels do; they may
replace earlier ones of napari-unet's, anything else only with ``overwrite``.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from ..errors import NapariUNetError
from ..io.files import atomic_path
from ..io.stack_io import LabelsTiffWriter, is_labels_output
from ..labels.uncertainty import object_uncertainty, score_map

COLUMNS = ("label", "uncertainty", "existence_doubt", "shape_doubt", "area", "centroid_y", "centroid_x")


def uncertainty_paths(labels_path: str | os.PathLike) -> tuple[Path, Path]:
    """The uncertainty TIFF and CSV beside the labels TIFF ``labels_path``."""
    path = Path(labels_path)
    stem = path.stem[: -len("_labels")] if path.stem.endswith("_labels") else path.stem
    return path.with_name(f"{stem}_uncertainty{path.suffix}"), path.with_name(f"{stem}_uncertainty.csv")


def check_uncertainty_outputs(labels_path: str | os.PathLike, *, overwrite: bool = False) -> None:
    """Raise if the uncertainty outputs of ``labels_path`` would replace files that are not napari-unet's."""
    image, table = uncertainty_paths(labels_path)
    for path, ours in ((image, is_labels_output), (table, _is_our_table)):
        if path.exists() and (path.is_dir() or not (overwrite or ours(path))):
            raise NapariUNetError(
                f"{path} exists and was not written by napari-unet; refusing to replace it "
                "(choose another output, or --overwrite)"
            )


def _is_our_table(path: Path) -> bool:
    try:
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError):
        return False
    return tuple(header[-len(COLUMNS):]) == COLUMNS


class UncertaintyOutputs:
    """Writes the uncertainty TIFF and CSV of one labels output, plane by plane (:meth:`add`)."""

    def __init__(self, labels_path: str | os.PathLike, shape: tuple[int, ...], axes: str):
        self.image_path, self.table_path = uncertainty_paths(labels_path)
        self.axes = axes
        self._image = LabelsTiffWriter(self.image_path, shape, axes=axes, dtype=np.float32)
        self._table = None

    def __enter__(self) -> UncertaintyOutputs:
        self._image.__enter__()
        self._atomic = atomic_path(self.table_path)
        tmp = self._atomic.__enter__()
        self._file = open(tmp, "w", newline="")
        self._table = csv.writer(self._file)
        self._table.writerow([*self.axes[:-2], *COLUMNS])
        return self

    def add(self, index: tuple[int, ...], labels: np.ndarray, prob: np.ndarray) -> None:
        """The next plane (``index`` over the leading axes): its final labels and the probabilities they came from."""
        scores = object_uncertainty(prob, labels)
        self._image.write(score_map(labels, scores))
        columns = scores.table()
        for row in zip(*(columns[c] for c in COLUMNS)):
            self._table.writerow([*index, int(row[0]), *(f"{v:.6g}" for v in row[1:4]), int(row[4]),
                                  *(f"{v:.2f}" for v in row[5:])])

    def __exit__(self, exc_type, exc, tb) -> None:
        self._file.close()
        try:
            self._image.__exit__(exc_type, exc, tb)
        except BaseException as error:
            self._atomic.__exit__(type(error), error, None)
            raise
        self._atomic.__exit__(exc_type, exc, tb)
