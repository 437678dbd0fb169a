"""Training data from files: pair images with labels (and reviewed masks), read them, scale them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..models.config import ModelConfig
from ..errors import NapariUNetError
from ..io.pairing import pair
from ..predict.sizing import check_object_size
from ..io.stack_io import expand, read_stack
from ..labels.targets import object_diameters
from .data import Sample, make_samples

def pair_files(
    images: Sequence[str | os.PathLike],
    labels: Sequence[str | os.PathLike],
    masks: Sequence[str | os.PathLike] | None = None,
    *,
    by_order: bool = False,
) -> list[tuple[Path, Path, Path | None]]:
    """``(image, labels, mask or None)`` for each image; files or folders in, checked before any reading.

    Paired by name (:func:`~napari_unet.core.io.pairing.pair`), or in sorted order with ``by_order``.
    """
    image_files = expand(images)
    label_files = pair(image_files, expand(labels), "labels", by_order=by_order)
    mask_files = pair(image_files, expand(masks), "mask", by_order=by_order) if masks else [None] * len(image_files)
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
    """Give each sample the zoom that brings its median object to ``object_size`` pixels.

    Raises :class:`NapariUNetError` for a sample whose objects would need a zoom beyond what
    prediction allows (:func:`~napari_unet.core.predict.sizing.check_object_size`): labels of one or two
    pixels, say, which would be blown up twenty times into patches of gigabytes.
    """
    out = []
    for s in samples:
        own = median_object_size([s])
        if own:
            try:
                check_object_size(own, object_size)
            except ValueError as e:
                raise NapariUNetError(f"{s.name or 'a sample'}: its labelled objects are {own:.3g} px across "
                                      f"(median), too {'small' if own < object_size else 'large'} to train on: {e}") from None
        out.append(replace(s, zoom=float(object_size / own)) if own else s)
    return out


def check_objects(samples: Sequence[Sample]) -> list[str]:
    """Warnings for samples whose reviewed labels hold no object; :class:`NapariUNetError` when none holds one
    (an instances model would learn nothing but background, and no score could say whether it helped)."""
    empty = [s.name or f"sample {i}" for i, s in enumerate(samples) if not (s.labels[s.reviewed] > 0).any()]
    if samples and len(empty) == len(samples):
        raise NapariUNetError(
            f"the labels hold no objects where they were reviewed ({', '.join(empty)}): "
            "expected corrected labels with the objects painted in (0 is background)"
        )
    return [f"{name}: no labelled object in the reviewed region; it is trained on as background only" for name in empty]
