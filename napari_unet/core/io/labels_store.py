"""Labels in a zarr store, written plane by plane, resumable, and moved into place when complete.

While a run is under way its store lives beside the output as
``.NAME.zarr.partial``; it holds

- ``raw``: each plane's labels as segmented, ids from 1 in every plane;
- ``counts``: one number per plane (in plane order), its largest id, written
  after the plane's labels; -1 until then. A plane with a count is done, so
  a rerun of the same command skips it, whether the run stopped, was killed
  or ran on several machines at once (each plane has its own chunks, and
  zarr replaces a chunk file atomically);
- attributes: what made the planes (input, model, options), so that a
  rerun with other settings starts over instead of mixing results.

When every plane is done, one pass in plane order turns the raw labels into
ids unique in the stack (:class:`~napari_unet.core.labels.stack_ids.StackIds`,
the same numbering a streamed TIFF gets) and writes them as the array
``0``; the store is renamed to its final name, then ``raw`` and ``counts``
are dropped.

Why raw planes and a second pass rather than a running offset: planes done
out of order, or on other machines, cannot know how many objects came
before them. The pass reads and writes compressed labels only (a small
fraction of the time the network takes), and it is what makes the ids of a
single-process, a resumed and a cluster run identical. A fixed block of ids
per plane would avoid it but give ids that depend on the block size, differ
from the TIFF output and exhaust 32 bits on long stacks.

The final store is OME-Zarr (version 0.5) when its axes allow (a subset of
``TZYX`` in that order): a group whose ``ome.multiscales`` has one level,
``0``. Either way the group's ``napari_unet`` attribute names the axes.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Generator
from pathlib import Path

import numpy as np
import zarr

from ..errors import NapariUNetError
from ..progress import Progress

# What opening a leftover that is not (or no longer) a whole store of ours raises: zarr's own errors
# (ValueError), a missing array or metadata file, a missing key in its attributes.
UNREADABLE = (ValueError, KeyError, TypeError, FileNotFoundError, NotADirectoryError)
KEY = "napari_unet"
LABELS = "0"
CHUNK = 1024
OME_AXES = {"T": "time", "Z": "space", "Y": "space", "X": "space"}
OME_UNITS = {"µm": "micrometer", "um": "micrometer", "micron": "micrometer", "nm": "nanometer", "mm": "millimeter"}


def partial_path(output: Path) -> Path:
    """Where the store for ``output`` is built: hidden, beside it."""
    return output.with_name(f".{output.name}.partial")


def _plain(value):
    """``value`` as it reads back from JSON attributes (tuples become lists), for comparing."""
    return json.loads(json.dumps(value))


def complete_store(output: Path) -> dict | None:
    """The ``napari_unet`` attributes of a finished labels store at ``output``; None if there is nothing there.

    Raises
    ------
    NapariUNetError
        If something else is there, which a run must not replace.
    """
    if not output.exists():
        return None
    foreign = NapariUNetError(f"{output} exists and is not a napari-unet labels store; remove it or choose another output")
    try:
        attrs = zarr.open_group(output, mode="r").attrs.asdict()
    except Exception as e:  # zarr raises several kinds for what it cannot open
        raise foreign from e
    if KEY not in attrs or "signature" not in attrs[KEY]:
        raise foreign
    return attrs[KEY]


def is_done(output: Path, signature: dict, stitch_z: float | None) -> bool:
    """True when ``output`` is a finished store made with ``signature`` and ``stitch_z``."""
    attrs = complete_store(output)
    return attrs is not None and attrs["signature"] == _plain(signature) and attrs.get("stitch_z") == stitch_z


class PartialStore:
    """The store a run writes into; see the module's description.

    Parameters
    ----------
    path : Path
        The store's folder (:func:`partial_path` of the output).
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.group = zarr.open_group(self.path, mode="r+")
        self.raw = self.group["raw"]
        self.counts = self.group["counts"]
        self.signature = self.group.attrs[KEY]["signature"]

    @classmethod
    def open(cls, output: Path, shape: tuple[int, ...], signature: dict) -> PartialStore:
        """Resume the store for ``output`` if it was made with ``signature``, else start a new one.

        ``shape`` is the labels' shape, ``(..., Y, X)``.
        """
        path = partial_path(output)
        if path.exists():
            try:
                store = cls(path)
                if store.signature == _plain(signature) and store.raw.shape == tuple(shape):
                    return store
            except UNREADABLE:  # a leftover that is not a whole store of ours is started over
                pass
            except OSError as e:  # the disk or its permissions: the progress may be fine, so it is kept
                raise NapariUNetError(
                    f"cannot read the saved progress of {output.name} in {path}: {e}; it was left as it is"
                ) from e
            shutil.rmtree(path)
        group = zarr.open_group(path, mode="w")
        group.attrs[KEY] = {"signature": _plain(signature)}
        n_planes = int(np.prod(shape[:-2], dtype=np.int64))
        group.create_array("raw", shape=shape, chunks=plane_chunks(shape), dtype=np.uint32, fill_value=0)
        group.create_array("counts", shape=(n_planes,), chunks=(1,), dtype=np.int64, fill_value=-1, compressors=None)
        return cls(path)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.raw.shape)

    def pending(self) -> list[int]:
        """Numbers of the planes not done yet, in order."""
        return [int(i) for i in np.flatnonzero(self.counts[:] < 0)]

    def write(self, number: int, labels: np.ndarray) -> None:
        """Store the labels of plane ``number``, then mark it done."""
        index = np.unravel_index(number, self.shape[:-2])
        self.raw[tuple(int(i) for i in index)] = labels
        self.counts[number] = int(labels.max()) if labels.size else 0

    def iter_finish(
        self,
        output: Path,
        renumber: Callable[[tuple[int, ...], np.ndarray], np.ndarray] | None,
        attributes: Callable[[], dict],
        stage: str = "ids",
    ) -> Generator[Progress, None, Path]:
        """Write the final labels, plane by plane in order, and move the store to ``output``; a generator.

        ``renumber(index, plane)`` gives a plane's final labels (None: the raw
        labels are final). ``attributes()``, called after the pass (so it can
        tell what the pass found), goes under the store's ``napari_unet``
        attribute; its ``axes``, ``scale`` and ``unit`` also make the OME-Zarr
        metadata.
        """
        if self.pending():
            raise NapariUNetError(f"{len(self.pending())} planes of {self.path} are not segmented yet")
        shape = self.shape
        if LABELS in self.group:
            del self.group[LABELS]
        final = self.group.create_array(LABELS, shape=shape, chunks=plane_chunks(shape), dtype=np.uint32, fill_value=0)
        n = int(np.prod(shape[:-2], dtype=np.int64))
        for number, index in enumerate(np.ndindex(*shape[:-2])):
            plane = self.raw[index]
            final[index] = plane if renumber is None else renumber(index, plane)
            yield Progress(number + 1, n, stage)
        attrs = {"signature": self.signature} | _plain(attributes())
        ome = ome_metadata(attrs.get("axes", ""), attrs.get("scale") or {}, attrs.get("unit"), output.stem)
        self.group.attrs.put({KEY: attrs} | ({"ome": ome} if ome else {}))
        for leftover in self.path.rglob("*.partial"):  # temporary files of writes that a kill interrupted
            leftover.unlink()
        # Moved while it still holds its raw planes: killed before the move, a rerun finds every plane done.
        _replace_folder(self.path, output)
        drop_scratch(output)
        return output


def drop_scratch(output: Path) -> None:
    """Remove the raw planes and counts from a finished store (left there if a run was killed just after its move)."""
    group = zarr.open_group(output, mode="r+")
    for name in ("raw", "counts"):
        if name in group:
            del group[name]


def plane_chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Chunks of one plane's extent on the other axes, so planes are written independently."""
    return (1,) * (len(shape) - 2) + tuple(min(n, CHUNK) for n in shape[-2:])


def ome_metadata(axes: str, scale: dict[str, float], unit: str | None, name: str) -> dict | None:
    """OME-Zarr 0.5 ``ome`` attributes for one resolution level at ``0``; None if the axes do not allow it."""
    if not axes or "".join(a for a in "TZYX" if a in axes) != axes:
        return None
    ome_unit = OME_UNITS.get(unit or "")
    entries = []
    for a in axes:
        entry = {"name": a.lower(), "type": OME_AXES[a]}
        if ome_unit and a != "T":
            entry["unit"] = ome_unit
        entries.append(entry)
    transform = {"type": "scale", "scale": [float(scale.get(a, 1.0)) for a in axes]}
    dataset = {"path": LABELS, "coordinateTransformations": [transform]}
    return {"version": "0.5", "multiscales": [{"name": name, "axes": entries, "datasets": [dataset]}]}


def _replace_folder(source: Path, target: Path) -> None:
    """Move the folder ``source`` to ``target``, replacing a store already there only once ``source`` is in place."""
    if not target.exists():
        source.rename(target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    target.rename(old / target.name)
    source.rename(target)
    shutil.rmtree(old)


def open_labels(path: str | Path) -> tuple[zarr.Array, dict]:
    """The labels array of a finished store, lazily, and its ``napari_unet`` attributes."""
    path = Path(path)
    attrs = complete_store(path)
    if attrs is None:
        raise FileNotFoundError(f"no such labels store: {path}")
    return zarr.open_array(path / LABELS, mode="r"), attrs
