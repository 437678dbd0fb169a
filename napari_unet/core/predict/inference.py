"""Predict probabilities and labels for images and stacks of any size.

:class:`Segmenter` holds a model prepared for one device and does one plane
at a time, falling back to smaller tiles and then the CPU when the device runs
out of memory; :func:`iter_predict` / :func:`iter_segment` walk the planes of
an image or stack and are generators (progress, stop points);
:func:`predict` / :func:`segment` run them to the end. :func:`iter_planes`
hands over each plane as soon as it is done (for viewers that show them).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch

from ..io.axes import PlaneLayout, plane_layout
from ..errors import ImageError, InsufficientMemoryError
from .fallback import is_out_of_memory, memory_fallbacks, out_of_memory_message, release_cached_memory
from ..models.model import BUILTIN_MODELS, Model, builtin_model, load_model
from .normalize import normalize
from ..labels.postprocess import instance_labels, semantic_labels
from .predictor import NetworkPredictor
from ..progress import Notice, Progress, run
from .sizing import check_object_size, iter_estimate_scale, rescale, resize_to
from ..labels.stack_ids import StackIds
from ..labels.uncertainty import ObjectScores, object_uncertainty, pixel_uncertainty
from .tiling import count_tiles, predict_tiles

Output = Literal["instances", "semantic"]
OUTPUTS: tuple[str, ...] = get_args(Output)
PlaneOutput = Literal["instances", "semantic", "probabilities"]


@dataclass(frozen=True)
class PlaneResult:
    """A finished plane: its ``index`` over the iterated axes and its labels or probabilities; with
    ``uncertainty`` asked for, the per-pixel map and each object's score
    (:mod:`~napari_unet.core.labels.uncertainty`)."""

    index: tuple[int, ...]
    data: np.ndarray
    uncertainty: tuple[np.ndarray, ObjectScores] | None = None


class Segmenter:
    """A model ready to predict planes on one device.

    Parameters
    ----------
    model : Model
        The model.
    device : str or torch.device
        ``"auto"`` picks CUDA, then MPS, then CPU.
    tile : int, optional
        Largest tile side (memory grows with it); the model's own by default.
        Each plane uses the tile size up to this that computes the fewest pixels.
    overlap : float, optional
        Output shared by adjacent tiles: a fraction of the tile (< 1) or
        pixels (>= 1); the model's own (pixels) by default.
    batch_size : int
        Tiles per forward pass.
    object_size : float, "auto" or None
        Typical object diameter in the image (pixels). For a model that
        records the size it was trained at, each plane is rescaled to it and
        the result resized back. ``"auto"`` estimates it from the first plane
        (see :mod:`~napari_unet.core.predict.sizing`), with the shipped model
        the config names (``ModelConfig.sizing``, a fine-tune's) or with the
        model itself; None never rescales.

    When the device runs out of memory, the plane is predicted again with half
    the tile, then (from an accelerator) on the CPU; each step is yielded as a
    :class:`~napari_unet.core.progress.Notice` and kept for later planes.
    """

    def __init__(
        self,
        model: Model,
        *,
        device: str | torch.device = "auto",
        tile: int | None = None,
        overlap: float | None = None,
        batch_size: int = 4,
        object_size: float | Literal["auto"] | None = "auto",
    ):
        self.model = model
        self.requested_device = str(device)  # what other machines should resolve for themselves
        self.predictor = NetworkPredictor(model.network, device)
        network = model.network
        requested = tile if tile is not None else model.config.tile
        if requested < 1:
            raise ValueError(f"tile must be a positive number of pixels, got {requested}")
        self.tile = network.valid_input_size(max(requested, 2 * network.margin + network.size_multiple))
        self.overlap = model.config.overlap if overlap is None else overlap
        self.batch_size = batch_size
        self.margin = network.margin
        self.multiple = network.size_multiple
        self.min_tile = network.valid_input_size(2 * self.margin + self.multiple)
        self._fallbacks: list[tuple[int, torch.device]] | None = None
        trained = model.config.object_size if model.config.rescales else None
        if object_size not in (None, "auto") and not (
            isinstance(object_size, (int, float)) and math.isfinite(object_size) and object_size > 0
        ):
            raise ValueError(f"object_size must be a positive number of pixels, 'auto' or None, got {object_size!r}")
        if trained is not None and object_size not in (None, "auto"):
            check_object_size(float(object_size), trained)
        self._trained_size = trained
        self._auto = trained is not None and object_size == "auto"
        self._sizer: Segmenter | None = None  # the shipped model that estimates object sizes, once made
        self._own_sizing = model.config.sizing is None  # or the model itself, as it does without one
        self.scale: float | None = 1.0
        if self._auto:
            self.scale = None  # estimated from the first plane
        elif trained is not None and object_size is not None:
            self.scale = trained / float(object_size)

    @property
    def image_object_size(self) -> float | None:
        """The object diameter in the image (pixels) that the current zoom stands for.

        The size given, or the one estimated from the last image; None for a
        model that does not rescale, or before an estimate.
        """
        if self._trained_size is None or self.scale is None:
            return None
        return self._trained_size / self.scale

    @property
    def estimates_size(self) -> bool:
        """Whether the object size is estimated from each image (``object_size="auto"``)."""
        return self._auto

    def new_image(self) -> None:
        """Forget an estimated object size: the next plane belongs to another image."""
        if self._auto:
            self.scale = None

    def prepare(self, plane: np.ndarray) -> None:
        """Estimate the object size from this raw ``(C, Y, X)`` plane if it is still unknown."""
        run(self.iter_prepare(plane))

    def iter_prepare(self, plane: np.ndarray) -> Generator[Progress, None, None]:
        """:meth:`prepare` as a generator that yields while the estimate's model runs (a place to stop)."""
        if self.scale is None:
            yield from self._iter_scale(normalize(plane, self.model.config.normalization))

    def iter_prepare_normalized(self, x: np.ndarray) -> Generator[Progress | Notice, None, None]:
        """:meth:`iter_prepare` for a plane already normalized as the model's config says."""
        yield from self._iter_scale(x)

    def _iter_scale(self, x: np.ndarray) -> Generator[Progress | Notice, None, float]:
        if self.scale is None:
            sizer = yield from self._size_model()
            if sizer is None:
                self.scale = yield from iter_estimate_scale(x, self._label_crop, self._trained_size)
            else:
                sizer.new_image()
                yield from sizer._iter_scale(x)
                self.scale = self._trained_size / sizer.image_object_size
        return self.scale

    def _size_model(self) -> Generator[Notice, None, Segmenter | None]:
        """The segmenter of the shipped model that estimates object sizes for this one (``ModelConfig.sizing``),
        or None where the model estimates them itself.

        A fine-tune of the shipped model names it (:mod:`~napari_unet.core.training.finetune` says why), so that
        an image gets the same zoom from the shipped model and from each of its fine-tunes. The size found is
        the image's, in its pixels, whichever model measures it: this model zooms to its own trained size.
        """
        if self._sizer is not None or self._own_sizing:
            return self._sizer
        shipped, why = shipped_sizer(self.model)
        if shipped is None:
            self._own_sizing = True
            yield Notice(f"this model estimates object sizes with the shipped model {self.model.config.sizing!r}, "
                         f"which {why}: the model estimates them itself")
            return None
        self._sizer = Segmenter(shipped, device=self.predictor.device, batch_size=self.batch_size, object_size="auto")
        return self._sizer

    def _label_crop(self, x: np.ndarray) -> Generator[Progress, None, np.ndarray]:
        prob = yield from predict_tiles(x, self.predictor, batch_size=self.batch_size, **self._tiling(x.shape[1:]))
        return instance_labels(prob, thresholds=self.model.config.thresholds)

    @property
    def device(self) -> torch.device:
        return self.predictor.device

    def _tile_for(self, shape: tuple[int, int]) -> int:
        """The tile side, up to the configured one, that computes the fewest pixels for ``shape``."""
        network = self.model.network
        best, best_cost = self.tile, None
        tile = self.min_tile
        while tile <= self.tile:
            opts = dict(tile=tile, overlap=self.overlap, margin=self.margin, multiple=self.multiple)
            try:
                cost = count_tiles(shape, **opts) * tile * tile
            except ValueError:  # too small a tile to stride with this overlap
                cost = None
            if cost is not None and (best_cost is None or cost <= best_cost):
                best, best_cost = tile, cost
            larger = network.valid_input_size(tile + 1)
            if larger <= tile:  # a network of one input size
                break
            tile = larger
        return best

    def tiles(self, shape: tuple[int, int]) -> int:
        """Tiles needed for one plane of ``(Y, X)`` ``shape`` (after rescaling)."""
        scaled = self._scaled(shape)
        return count_tiles(scaled, **self._tiling(scaled))

    def _scaled(self, shape: tuple[int, int]) -> tuple[int, int]:
        s = self.scale or 1.0
        return (max(1, round(shape[0] * s)), max(1, round(shape[1] * s)))

    def _tiling(self, shape: tuple[int, int]) -> dict:
        return dict(tile=self._tile_for(shape), overlap=self.overlap, margin=self.margin, multiple=self.multiple)

    def iter_probabilities(self, plane: np.ndarray) -> Generator[Progress | Notice, None, np.ndarray]:
        """Class probabilities ``(K, Y, X)`` of one raw ``(C, Y, X)`` plane; a generator."""
        return (yield from self.iter_normalized(normalize(plane, self.model.config.normalization)))

    def iter_normalized(self, x: np.ndarray) -> Generator[Progress | Notice, None, np.ndarray]:
        """Class probabilities ``(K, Y, X)`` of an already normalised ``(C, Y, X)`` plane; a generator."""
        scale = yield from self._iter_scale(x)
        scaled = rescale(x, scale)
        while True:
            tiling = self._tiling(scaled.shape[1:])
            try:
                prob = yield from predict_tiles(scaled, self.predictor, batch_size=self.batch_size, **tiling)
                return resize_to(prob, x.shape[1:])
            except Exception as error:  # noqa: BLE001 - anything but running out of memory is re-raised
                if not is_out_of_memory(error):
                    raise
                found = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            # Outside the except block the traceback, and the tensors its frames hold, are gone.
            yield Notice(self._fall_back(tiling["tile"], found))

    def _fall_back(self, tile: int, found: str) -> str:
        """Switch to the next smaller setting after running out of memory; the message says which."""
        if self._fallbacks is None:
            self._fallbacks = memory_fallbacks(tile, self.device, self._halve)
        step = self._fallbacks.pop(0) if self._fallbacks else None
        message = out_of_memory_message(tile, self.device, found, step)
        if step is None:
            raise InsufficientMemoryError(message)
        new_tile, device = step
        if device != self.device:
            old = self.device
            self.predictor = NetworkPredictor(self.model.network, device)
            release_cached_memory(old)
        else:
            release_cached_memory(device)
        self.tile = new_tile
        return message

    def _halve(self, tile: int) -> int | None:
        half = self.model.network.valid_input_size(max(tile // 2, self.min_tile))
        return half if half < tile else None

    def labels(self, prob: np.ndarray, *, output: Output = "instances", min_size: int = 10) -> np.ndarray:
        """Labels ``(Y, X)`` from probabilities ``(K, Y, X)``."""
        if output == "instances":
            check_output(self.model, output)
            return instance_labels(
                prob, thresholds=self.model.config.thresholds, min_size=min_size, object_size=self.image_object_size
            )
        if output == "semantic":
            return semantic_labels(prob)
        raise ValueError(f"output must be {' or '.join(map(repr, OUTPUTS))}, got {output!r}")


def shipped_sizer(model: Model) -> tuple[Model | None, str | None]:
    """The shipped model that estimates object sizes of new images for ``model`` (``ModelConfig.sizing``), and None;
    or None and why it cannot (``model`` then estimates them itself). ``(None, None)`` where it names none."""
    name, config = model.config.sizing, model.config
    if name is None:
        return None, None
    shipped = builtin_model(name) if name in BUILTIN_MODELS else None
    if shipped is None:
        return None, "is not installed with this napari-unet"
    if (shipped.config.task, shipped.in_channels, shipped.config.normalization) != (
        config.task, model.in_channels, config.normalization
    ) or shipped.config.object_size is None:
        return None, "takes other input than this model"
    return shipped, None


def as_model(model: Model | str | os.PathLike) -> Model:
    """A :class:`Model` as it is, or loaded from a path or built-in name."""
    return model if isinstance(model, Model) else load_model(model)


def _layout(image, model: Model, axes: str | None, channels: Sequence[int] | None) -> PlaneLayout:
    shape = np.shape(image)
    dtype = np.dtype(getattr(image, "dtype", np.asarray(image).dtype))
    if not (np.issubdtype(dtype, np.number) or dtype == bool) or np.issubdtype(dtype, np.complexfloating):
        raise ImageError(f"expected a real-valued image, got dtype {dtype}")
    return plane_layout(shape, axes, model.in_channels, channels)


def _segmenter(model, segmenter_kwargs) -> tuple[Model, Segmenter]:
    if isinstance(model, Segmenter):
        if segmenter_kwargs:
            raise TypeError(f"a Segmenter is already set up: {', '.join(segmenter_kwargs)} cannot be given too")
        return model.model, model
    model = as_model(model)
    return model, Segmenter(model, **segmenter_kwargs)


def iter_predict(
    image,
    model: Model | Segmenter | str | os.PathLike,
    *,
    axes: str | None = None,
    channels: Sequence[int] | None = None,
    **segmenter_kwargs,
) -> Generator[Progress | Notice, None, np.ndarray]:
    """Class probabilities of every plane; a generator (see :func:`predict`)."""
    model, seg = _segmenter(model, segmenter_kwargs)
    layout = _layout(image, model, axes, channels)
    k = model.config.network.out_channels
    out = np.empty(layout.iter_shape + (k,) + layout.out_shape[-2:], dtype=np.float32)

    for update in _iter_planes(layout, image, seg, "tiles"):
        if isinstance(update, PlaneResult):
            out[update.index] = update.data
        else:
            yield update
    return out


def iter_segment(
    image,
    model: Model | Segmenter | str | os.PathLike,
    *,
    axes: str | None = None,
    channels: Sequence[int] | None = None,
    output: Output | None = None,
    min_size: int = 10,
    stitch_z: float | None = None,
    **segmenter_kwargs,
) -> Generator[Progress | Notice, None, np.ndarray]:
    """Labels of every plane; a generator (see :func:`segment`)."""
    model, seg = _segmenter(model, segmenter_kwargs)
    output = output or model.config.task
    layout = _layout(image, model, axes, channels)
    labels = np.zeros(layout.out_shape, dtype=np.uint32)
    yield from iter_labels(layout, image, seg, labels.__setitem__, output=output, min_size=min_size, stitch_z=stitch_z)
    return labels


def iter_labels(
    layout: PlaneLayout,
    image,
    seg: Segmenter,
    consume: Callable[[tuple[int, ...], np.ndarray], None],
    *,
    output: Output = "instances",
    min_size: int = 10,
    stitch_z: float | None = None,
    stage: str = "tiles",
    with_probabilities: Callable[[tuple[int, ...], np.ndarray, np.ndarray], None] | None = None,
) -> Generator[Progress | Notice, None, None]:
    """Label each plane in turn and hand it to ``consume(index, labels)``; a generator.

    Instance ids continue from plane to plane, so they are unique in the stack;
    with ``stitch_z`` objects overlapping across z planes share an id (see
    :class:`~napari_unet.core.labels.stack_ids.StackIds`). ``with_probabilities(index,
    labels, prob)``, when given, also gets the probabilities each plane's labels came from.
    """
    label = _labeller(seg, layout, output, min_size, stitch_z)
    for update in _iter_planes(layout, image, seg, stage):
        if isinstance(update, PlaneResult):
            labels = label(update.index, update.data)
            consume(update.index, labels)
            if with_probabilities is not None:
                with_probabilities(update.index, labels, update.data)
        else:
            yield update


def iter_planes(
    image,
    model: Model | Segmenter | str | os.PathLike,
    *,
    planes: Iterable[tuple[int, ...]] | None = None,
    output: PlaneOutput = "instances",
    axes: str | None = None,
    channels: Sequence[int] | None = None,
    min_size: int = 10,
    uncertainty: bool = False,
    **segmenter_kwargs,
) -> Generator[Progress | Notice | PlaneResult, None, None]:
    """Labels or probabilities of the chosen planes, each yielded as soon as it is done.

    Takes the arguments of :func:`segment`, and

    planes : iterable of tuple of int, optional
        Indices over the iterated axes (``()`` for a 2D image); all planes by default.
    output : {"instances", "semantic", "probabilities"}
        What each :class:`PlaneResult` holds: ``(Y, X)`` uint32 instance ids
        (unique over the planes done here), ``(Y, X)`` class ids, or ``(K, Y, X)``
        float32 probabilities.
    uncertainty : bool
        Instance labels only: each :class:`PlaneResult` also holds how sure the
        model is, per pixel and per object (no further model run).

    Yields :class:`~napari_unet.core.progress.Progress` after each batch of
    tiles, :class:`~napari_unet.core.progress.Notice` for fallbacks, and a
    :class:`PlaneResult` per plane.
    """
    if output not in ("instances", "semantic", "probabilities"):
        raise ValueError(f"output must be 'instances', 'semantic' or 'probabilities', got {output!r}")
    model, seg = _segmenter(model, segmenter_kwargs)
    layout = _layout(image, model, axes, channels)
    if output != "probabilities":
        check_output(model, output)
    if uncertainty and output != "instances":
        raise ValueError(f"the uncertainty is each object's: it needs instance labels, not {output}")
    label = (lambda index, prob: prob) if output == "probabilities" else _labeller(seg, layout, output, min_size)
    for update in _iter_planes(layout, image, seg, "tiles", planes):
        if not isinstance(update, PlaneResult):
            yield update
            continue
        labels = label(update.index, update.data)
        sure = (pixel_uncertainty(update.data), object_uncertainty(update.data, labels)) if uncertainty else None
        yield PlaneResult(update.index, labels, sure)


def check_output(model: Model, output: Output) -> None:
    """Raise :class:`ImageError` if ``model`` cannot give ``output`` labels."""
    if output == "instances" and model.config.task != "instances":
        raise ImageError(
            f"instance labels need a model trained for instances, this one is {model.config.task!r}; "
            "ask for semantic labels"
        )


def _labeller(
    seg: Segmenter, layout: PlaneLayout, output: Output, min_size: int, stitch_z: float | None = None
) -> Callable[[tuple[int, ...], np.ndarray], np.ndarray]:
    """``(index, prob) -> labels`` for consecutive planes; instance ids are unique over them
    (see :class:`~napari_unet.core.labels.stack_ids.StackIds`)."""
    ids = StackIds(layout.out_axes[:-2], stitch_z=stitch_z) if output == "instances" else None
    if stitch_z is not None and ids is None:
        raise ValueError("linking objects across z (stitch_z) needs instance labels, not semantic ones")

    def label(index: tuple[int, ...], prob: np.ndarray) -> np.ndarray:
        plane = seg.labels(prob, output=output, min_size=min_size)
        return plane if ids is None else ids(index, plane)

    return label


def _iter_planes(
    layout: PlaneLayout,
    image,
    seg: Segmenter,
    stage: str,
    indices: Iterable[tuple[int, ...]] | None = None,
) -> Generator[Progress | Notice | PlaneResult, None, None]:
    """Probabilities of each plane in turn, as :class:`PlaneResult`.

    Progress is counted in tiles over all the planes asked for.
    """
    indices = None if indices is None else [tuple(int(i) for i in index) for index in indices]
    n_planes = layout.n_planes if indices is None else len(indices)
    shape = layout.out_shape[-2:]
    per_plane = None
    seg.new_image()
    for i, (index, plane) in enumerate(layout.planes(image, indices)):
        if per_plane is None:  # the object size is estimated on the first plane, then tiles are known
            yield from seg.iter_prepare(plane)
            per_plane = seg.tiles(shape)
        gen = seg.iter_probabilities(plane)
        while True:
            try:
                update = next(gen)
            except StopIteration as stop:
                yield PlaneResult(index, stop.value)
                break
            if isinstance(update, Progress):
                yield Progress(i * per_plane + update.done, per_plane * n_planes, stage)
            else:  # a fallback changed the tiles a plane needs
                per_plane = seg.tiles(shape)
                yield update


def predict(image, model: Model | Segmenter | str | os.PathLike, **kwargs) -> np.ndarray:
    """Class probabilities of an image or stack.

    Parameters
    ----------
    image : array-like of shape (..., Y, X) with an optional channel axis
        Any real dtype; may be lazy (memory-mapped, zarr, dask).
    model : Model, path, name or Segmenter
        A model, a model file, or ``"default"``; or a :class:`Segmenter`
        already set up (then device, tile, overlap, batch_size and
        object_size are its own and cannot be given).
    axes : str, optional
        Axis letters (``TZCYXS`` subset); guessed when not given.
    channels : sequence of int, optional
        Image channels to feed the model, in order.
    device, tile, overlap, batch_size
        As for :class:`Segmenter` (``device="auto"``: CUDA, then MPS, then CPU).
    object_size : float, "auto" or None
        Object diameter in the image (pixels), for models that rescale to the
        size they were trained at; ``"auto"`` (default) estimates it.

    Returns
    -------
    ndarray of shape (..., K, Y, X), float32
        Probabilities of the model's ``K`` classes for every plane.
    """
    return run(iter_predict(image, model, **kwargs))


def segment(image, model: Model | Segmenter | str | os.PathLike, **kwargs) -> np.ndarray:
    """Labels of an image or stack.

    Takes the arguments of :func:`predict`, and

    output : {"instances", "semantic"}, optional
        Instance ids (0 = background, unique across the stack) or class ids;
        by default what the model was trained for.
    min_size : int
        Instances smaller than this many pixels are dropped.
    stitch_z : float, optional
        Give one id to objects of consecutive z planes whose intersection over
        union is above this (in (0, 1)), so an object spanning planes keeps one id.

    Returns
    -------
    ndarray of shape (..., Y, X), uint32
    """
    return run(iter_segment(image, model, **kwargs))
