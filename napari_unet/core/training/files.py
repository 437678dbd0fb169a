"""Training data from files: pair images with labels (and reviewed masks), read them, scale them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..config import ModelConfig
from ..errors import NapariUNetError
from ..stack_io import expand, read_stack
from ..targets import object_diameters
from .data import Sample, make_samples

LABEL_SUFFIXES = ("", "_labels", "_label", "_masks", "_mask", "_seg")


def pair(images: list[Path], others: list[Path], what: str) -> list[Path]:
    """For each image, its labels (or mask) file: by name (``a.tif`` ~ ``a_labels.tif``), else by order."""
    if len(images) != len(others):
        raise NapariUNetError(f"{len(images)} image(s) but {len(others)} {what} file(s); expected one for each")
    by_stem = {p.stem: p for p in others}
    matched = []
    for image in images:
        hit = next((by_stem[image.stem + s] for s in LABEL_SUFFIXES if image.stem + s in by_stem), None)
        matched.append(hit)
    if all(m is not None for m in matched) and len(set(matched)) == len(matched):
        return matched  # type: ignore[return-value]
    return list(others)


def pair_files(
    images: Sequence[str | os.PathLike],
    labels: Sequence[str | os.PathLike],
    masks: Sequence[str | os.PathLike] | None = None,
) -> list[tuple[Path, Path, Path | None]]:
    """``(image, labels, mask or None)`` for each image; files or folders in, checked before any reading."""
    image_files = expand(images)
    label_files = pair(image_files, expand(labels), "labels")
    mask_files = pair(image_files, expand(masks), "mask") if masks else [None] * len(image_files)
    return list(zip(image_files, label_files, mask_files))


def load_samples(
    files: Sequence[tuple[Path, Path, Path | None]],
    config: ModelConfig,
    *,
    axes: str | None = None,
    channels: Sequence[int] | None = None,
) -> list[Sample]:
    """Read ``(image, labels, reviewed mask or None)`` files (see :func:`pair_files`) into training samples."""
    samples: list[Sample] = []
    for image_file, label_file, mask_file in files:
        stack = read_stack(image_file)
        lab = np.asarray(read_stack(label_file).data)
        reviewed = np.asarray(read_stack(mask_file).data) > 0 if mask_file is not None else None
        try:
            samples += make_samples(
                np.asarray(stack.data),
                lab,
                config,
                reviewed=reviewed,
                axes=axes or stack.axes,
                channels=channels,
                name=image_file.name,
            )
        except ValueError as e:
            raise NapariUNetError(f"{image_file.name} with {label_file.name}: {e}") from e
    if not samples:
        raise NapariUNetError("no reviewed pixels in the training data")
    return samples


def median_object_size(samples: Sequence[Sample]) -> float | None:
    """Median equivalent diameter (pixels) of the reviewed objects over all samples."""
    sizes = [object_diameters(np.where(s.reviewed, s.labels, 0)) for s in samples]
    sizes = np.concatenate(sizes) if sizes else np.array([])
    return float(np.median(sizes)) if sizes.size else None


def scale_to(samples: Sequence[Sample], object_size: float) -> list[Sample]:
    """Give each sample the zoom that brings its median object to ``object_size`` pixels."""
    out = []
    for s in samples:
        own = median_object_size([s])
        out.append(replace(s, zoom=float(object_size / own)) if own else s)
    return out
