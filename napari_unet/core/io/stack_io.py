"""Read TIFF / OME-TIFF / ImageJ stacks with their axes; write labels TIFFs atomically.

Reading is lazy where it can be: an uncompressed file is memory-mapped, a
compressed one larger than :data:`LAZY_BYTES` is opened as a zarr array over
the TIFF, so a plane is decoded only when it is used. Writing streams planes
(:class:`LabelsTiffWriter`) into a temporary file beside the target that
replaces it only once complete; BigTIFF is used when the data needs it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile

from .axes import guess_axes
from ..errors import NapariUNetError, StackFileError
from .files import atomic_path

LAZY_BYTES = 256 * 2**20
BIGTIFF_BYTES = 2**32 - 2**25
TIFF_SUFFIXES = (".tif", ".tiff")
SOFTWARE = "napari-unet"  # the Software tag of the labels TIFFs written here


@dataclass
class Stack:
    """An image or stack read from a file.

    Attributes
    ----------
    data : array-like
        ``numpy.ndarray``, ``numpy.memmap`` or ``zarr.Array`` in file order.
    axes : str
        One letter per dimension, as tifffile names them (``TZCYXS`` ...).
    scale : dict of str to float
        Pixel size per axis where the file says (e.g. ``{"Z": 2.0, "Y": 0.3, "X": 0.3}``).
    unit : str or None
        Unit of ``scale``.
    """

    data: object
    axes: str
    scale: dict[str, float] = field(default_factory=dict)
    unit: str | None = None
    path: Path | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data.dtype)


def is_tiff(path: str | os.PathLike) -> bool:
    """True when the file starts with a TIFF or BigTIFF signature."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def read_stack(path: str | os.PathLike, *, lazy: bool | None = None, memmap: bool = True) -> Stack:
    """Open the first series of a TIFF file.

    Parameters
    ----------
    path : path-like
        A TIFF, OME-TIFF or ImageJ hyperstack.
    lazy : bool, optional
        Keep the pixels on disk (memory-map or zarr) rather than reading them.
        By default: memory-map when the file allows it, zarr when it is larger
        than :data:`LAZY_BYTES`, read into memory otherwise.
    memmap : bool
        Allow memory-mapping. Pass False (with ``lazy=True``) to stream through
        a stack: the pages of a memory map that have been read stay resident,
        and count in the process's memory, until it is closed, whereas zarr
        reads each plane into a fresh array.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    StackFileError
        If the file is not a readable TIFF.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if not is_tiff(path):
        raise StackFileError(f"{path} is not a TIFF file (expected a .tif/.tiff image; its header is not TIFF)")
    try:
        with _tifffile_errors() as errors, tifffile.TiffFile(path) as tif:
            if not tif.series or not tif.series[0].shape:
                raise StackFileError(f"{path} holds no image")
            series = tif.series[0]
            axes, shape = _axes(series, tif.pages[0]), tuple(series.shape)
            if 0 in shape:
                raise StackFileError(f"{path} holds an empty image of shape {shape}")
            scale, unit = _scale(tif, axes)
            nbytes = int(np.prod(shape, dtype=np.int64)) * series.dtype.itemsize
            data = None
            if lazy is not False and memmap and series.dataoffset is not None:
                data = tifffile.memmap(path, series=0, mode="r")
            elif lazy or (lazy is None and nbytes > LAZY_BYTES):
                data = _zarr(path)
            if data is None:
                data = series.asarray()
            if errors:
                raise StackFileError(f"cannot read {path}: truncated or corrupt ({errors[0]})")
    except StackFileError:
        raise
    except Exception as e:  # tifffile and its many decoders raise many kinds
        raise StackFileError(f"cannot read {path} as a TIFF stack (truncated or corrupt?): {e}") from e
    return Stack(data, axes, scale, unit, path)


def _axes(series, page) -> str:
    """The series' axes; guessed from its shape (as for an array, :func:`~.axes.guess_axes`) where the file
    does not name them: tifffile calls an axis it cannot name ``Q``, and takes the second axis of a plain
    4D array written without axes for 4 planar samples (RGBA), whose averaging to grey would drop a plane."""
    axes = series.axes.upper()
    planar_four = "S" in axes and series.shape[axes.index("S")] == 4 and page.planarconfig == 2
    if "Q" in axes or planar_four:
        try:
            return guess_axes(series.shape)
        except ValueError:
            return axes  # left for the caller's check, which says what to pass as --axes
    return axes


@contextlib.contextmanager
def _tifffile_errors() -> Iterator[list[str]]:
    """Collect the errors tifffile logs instead of raising.

    On a truncated file tifffile falls back to whatever pages it can read,
    giving an array of another shape; it only logs. Those logs are errors here.
    """
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler = Collect(level=logging.ERROR)
    logger = logging.getLogger("tifffile")
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


class CheckedArray:
    """A lazy array whose read errors name the file: truncated or corrupt data
    found while reading a plane becomes a :class:`StackFileError`."""

    def __init__(self, data, path: Path):
        self.data, self.path = data, path
        self.shape, self.dtype, self.ndim = tuple(data.shape), np.dtype(data.dtype), len(data.shape)

    def __getitem__(self, key) -> np.ndarray:
        try:
            return np.asarray(self.data[key])
        except Exception as e:  # decoders raise many kinds
            raise StackFileError(f"cannot read {self.path}{_plane(key)}: truncated or corrupt data ({e})") from e


def _plane(key) -> str:
    """`` at plane 3`` / `` at plane (1, 2)`` for an index into a stack; nothing for slices alone."""
    index = [int(k) for k in (key if isinstance(key, tuple) else (key,)) if isinstance(k, (int, np.integer))]
    if not index:
        return ""
    return f" at plane {index[0]}" if len(index) == 1 else f" at plane {tuple(index)}"


def _zarr(path: Path):
    import zarr

    store = tifffile.imread(path, aszarr=True, series=0)
    return zarr.open(store, mode="r")


def _scale(tif: tifffile.TiffFile, axes: str) -> tuple[dict[str, float], str | None]:
    """Pixel sizes from OME or ImageJ metadata; empty when the file says nothing."""
    if tif.is_ome and tif.ome_metadata:
        with contextlib.suppress(ET.ParseError):
            pixels = next((el for el in ET.fromstring(tif.ome_metadata).iter() if el.tag.endswith("Pixels")), None)
            if pixels is not None:
                scale = {
                    a: float(pixels.attrib[f"PhysicalSize{a}"]) for a in "ZYX" if f"PhysicalSize{a}" in pixels.attrib
                }
                return {a: s for a, s in scale.items() if a in axes and s > 0}, pixels.attrib.get("PhysicalSizeXUnit", "µm")
    if tif.is_imagej and tif.imagej_metadata:
        meta = tif.imagej_metadata
        scale: dict[str, float] = {}
        if "Z" in axes and float(meta.get("spacing", 0) or 0) > 0:
            scale["Z"] = float(meta["spacing"])
        page = tif.pages.first
        for a, tag in (("X", "XResolution"), ("Y", "YResolution")):
            value = page.tags.get(tag)
            if value is not None and meta.get("unit"):
                num, den = value.value
                if num > 0 and den > 0:
                    scale[a] = den / num
        return scale, meta.get("unit")
    return {}, None


def is_labels_output(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a labels TIFF that napari-unet wrote (its ``Software`` tag says so)."""
    try:
        with tifffile.TiffFile(path) as tif:
            return tif.pages[0].software == SOFTWARE
    except Exception:  # noqa: BLE001 - whatever cannot be read as such a TIFF is not one
        return False


def write_labels(
    path: str | os.PathLike, labels: np.ndarray, *, axes: str | None = None, keep_dtype: bool = False
) -> Path:
    """Write a labels array to a TIFF atomically (deflate-compressed, BigTIFF when needed), tagged as
    napari-unet's (:func:`is_labels_output`).

    ``uint16`` is used when the ids fit (readable by ImageJ), else ``uint32``; with
    ``keep_dtype``, an unsigned array of at most 32 bits keeps its own type (a layer saved
    and opened again is the same layer).
    """
    labels = np.asarray(labels)
    if labels.ndim < 2:
        raise ValueError(f"labels must have at least 2 dimensions (Y, X), got shape {labels.shape}")
    if labels.dtype.kind not in "iub":
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise ValueError("labels must not be negative")
    dtype = np.uint16 if labels.size == 0 or labels.max() < 2**16 else np.uint32
    if keep_dtype and labels.dtype in (np.uint8, np.uint16, np.uint32):
        dtype = labels.dtype
    with LabelsTiffWriter(path, labels.shape, axes=axes, dtype=dtype) as writer:
        for plane in labels.reshape(-1, *labels.shape[-2:]):
            writer.write(plane)
    return Path(path)


class LabelsTiffWriter:
    """Stream planes of a labels stack into one TIFF series; the file appears only when complete.

    >>> with LabelsTiffWriter("out.tif", (10, 512, 512), axes="ZYX") as w:
    ...     for plane in planes:
    ...         w.write(plane)

    tifffile pulls the planes from a one-slot queue in a writer thread, so at
    most two planes are in memory. If the body raises, or fewer planes than the
    shape needs were written, nothing is left under ``path``.
    """

    _END = object()

    def __init__(self, path: str | os.PathLike, shape: tuple[int, ...], *, axes: str | None = None, dtype=np.uint32):
        self.path = Path(path)
        self.shape = tuple(int(n) for n in shape)
        self.axes = axes
        self.dtype = np.dtype(dtype)
        self.n_planes = int(np.prod(self.shape[:-2], dtype=np.int64))
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._written = 0
        self._atomic = None

    def __enter__(self) -> LabelsTiffWriter:
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        self._thread = threading.Thread(target=self._run, args=(tmp,), daemon=True)
        self._thread.start()
        return self

    def write(self, plane: np.ndarray) -> None:
        """Append the next ``(Y, X)`` plane."""
        plane = np.asarray(plane)
        if plane.shape != self.shape[-2:]:
            raise ValueError(f"expected a plane of shape {self.shape[-2:]}, got {plane.shape}")
        if self._written >= self.n_planes:
            raise ValueError(f"all {self.n_planes} planes are already written")
        self._put(plane.astype(self.dtype, copy=False))
        self._written += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        complete = exc_type is None and self._written == self.n_planes
        self._put(self._END if complete else None, final=True)
        self._thread.join()
        if complete and self._error is None:
            self._atomic.__exit__(None, None, None)
            return
        if exc_type is None and self._written < self.n_planes:
            error = ValueError(f"only {self._written} of {self.n_planes} planes were written")
        else:
            error = self._error or _Aborted("aborted")
        self._atomic.__exit__(type(error), error, None)
        if exc_type is None:
            raise error

    def _put(self, item, final: bool = False) -> None:
        while self._thread.is_alive():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        if not final and self._error is not None:
            raise self._error

    def _planes(self) -> Iterator[np.ndarray]:
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if item is None:
                raise _Aborted
            yield item

    def _run(self, tmp: Path) -> None:
        nbytes = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
        metadata = {"axes": self.axes} if self.axes else {}
        try:
            with tifffile.TiffWriter(tmp, bigtiff=nbytes > BIGTIFF_BYTES) as tif:
                tif.write(
                    self._planes(),
                    shape=self.shape,
                    dtype=self.dtype,
                    photometric="minisblack",
                    compression="zlib",
                    metadata=metadata,
                    software=SOFTWARE,
                )
        except _Aborted:
            self._error = _Aborted("aborted")
        except BaseException as e:  # reported to the caller's thread
            self._error = e


class _Aborted(Exception):
    """The caller stopped writing before the stack was complete."""


def expand(paths) -> list[Path]:
    """Files as given, folders replaced by their TIFF files (sorted); missing paths and empty folders refused."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            try:
                found = tiff_files(p)
            except PermissionError:
                raise NapariUNetError(f"cannot list the folder {p}: permission denied") from None
            if not found:
                raise NapariUNetError(f"no .tif/.tiff files in folder {p}")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"no such file or folder: {p}")
    return out


def tiff_files(folder: str | os.PathLike) -> list[Path]:
    """The ``.tif`` / ``.tiff`` files directly in ``folder``, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in TIFF_SUFFIXES and p.is_file())
