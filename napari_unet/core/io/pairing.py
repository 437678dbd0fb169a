"""Pair image files with their labels (or reviewed masks) by name: ``a.tif`` ~ ``a_labels.tif``.

Pairing by sorted order as soon as one name does not match would quietly
score or train an image against another image's labels; so names decide, and
order only when the caller says so (``--pair-by-order``).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import NapariUNetError

LABEL_SUFFIXES = ("", "_labels", "_label", "_masks", "_mask", "_seg")


def pair(images: list[Path], others: list[Path], what: str, *, by_order: bool = False) -> list[Path]:
    """For each image, its ``what`` file (labels, mask): the one whose name is the image's plus one of
    :data:`LABEL_SUFFIXES`. ``by_order``: the files in the order given instead. One image and one file
    pair whatever their names.

    Raises :class:`NapariUNetError` naming the images without a file, and the files left over.
    """
    if len(images) != len(others):
        raise NapariUNetError(f"{len(images)} image(s) but {len(others)} {what} file(s); expected one for each")
    if by_order or len(images) == 1:
        return list(others)
    by_stem = {p.stem: p for p in others}
    matched = [next((by_stem[i.stem + s] for s in LABEL_SUFFIXES if i.stem + s in by_stem), None) for i in images]
    if all(m is not None for m in matched) and len(set(matched)) == len(matched):
        return matched  # type: ignore[return-value]
    alone = [i.name for i, m in zip(images, matched) if m is None]
    spare = sorted(p.name for p in set(others) - set(matched))
    raise NapariUNetError(
        f"cannot pair the {what} files with the images by name: no {what} file for {', '.join(alone) or '-'} "
        f"(expected NAME.tif or NAME_labels.tif for NAME.tif); not paired: {', '.join(spare) or '-'}. "
        "Rename them, or pass --pair-by-order to pair them in sorted order"
    )
