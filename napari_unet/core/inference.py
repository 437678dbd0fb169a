"""Predict probabilities and labels for images and stacks of any size.

:class:`Segmenter` holds a model prepared for one device and does one plane
at a time; :func:`iter_predict` / :func:`iter_segment` walk the planes of an
image or stack and are generators (progress, stop points);
:func:`predict` / :func:`segment` run them to the end.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Sequence
from typing import Literal

import numpy as np
import torch

from .axes import PlaneLayout, plane_layout
from .errors import ImageError
from .model import Model, load_model
from .normalize import normalize
from .postprocess import instance_labels, semantic_labels
from .predictor import NetworkPredictor
from .progress import Progress, run
from .stack_ids import StackIds
from .tiling import count_tiles, predict_tiles

Output = Literal["instances", "semantic"]


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
    """

    def __init__(
        self,
        model: Model,
        *,
        device: str | torch.device = "auto",
        tile: int | None = None,
        overlap: float | None = None,
        batch_size: int = 4,
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

    @property
    def device(self) -> torch.device:
        return self.predictor.device

    def _tile_for(self, shape: tuple[int, int]) -> int:
        """The tile side, up to the configured one, that computes the fewest pixels for ``shape``."""
        network = self.model.network
        best, best_cost = self.tile, None
        tile = network.valid_input_size(2 * self.margin + self.multiple)
        while tile <= self.tile:
            opts = dict(tile=tile, overlap=self.overlap, margin=self.margin, multiple=self.multiple)
            try:
                cost = count_tiles(shape, **opts) * tile * tile
            except ValueError:  # too small a tile to stride with this overlap
                cost = None
            if cost is not None and (best_cost is None or cost <= best_cost):
                best, best_cost = tile, cost
            tile = network.valid_input_size(tile + 1)
        return best

    def tiles(self, shape: tuple[int, int]) -> int:
        """Tiles needed for one plane of ``(Y, X)`` ``shape``."""
        return count_tiles(shape, **self._tiling(shape))

    def _tiling(self, shape: tuple[int, int]) -> dict:
        return dict(tile=self._tile_for(shape), overlap=self.overlap, margin=self.margin, multiple=self.multiple)

    def iter_probabilities(self, plane: np.ndarray) -> Generator[Progress, None, np.ndarray]:
        """Class probabilities ``(K, Y, X)`` of one raw ``(C, Y, X)`` plane; a generator."""
        return (yield from self.iter_normalized(normalize(plane, self.model.config.normalization)))

    def iter_normalized(self, x: np.ndarray) -> Generator[Progress, None, np.ndarray]:
        """Class probabilities ``(K, Y, X)`` of an already normalised ``(C, Y, X)`` plane; a generator."""
        return (yield from predict_tiles(x, self.predictor, batch_size=self.batch_size, **self._tiling(x.shape[1:])))

    def labels(self, prob: np.ndarray, *, output: Output = "instances", min_size: int = 10) -> np.ndarray:
        """Labels ``(Y, X)`` from probabilities ``(K, Y, X)``."""
        if output == "instances":
            if self.model.config.task != "instances":
                raise ImageError(
                    f"instance labels need a model trained for instances, this one is {self.model.config.task!r}; "
                    "ask for semantic labels"
                )
            return instance_labels(prob, min_size=min_size)
        if output == "semantic":
            return semantic_labels(prob)
        raise ValueError(f"output must be 'instances' or 'semantic', got {output!r}")


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
    model = as_model(model)
    return model, Segmenter(model, **segmenter_kwargs)


def iter_predict(
    image,
    model: Model | str | os.PathLike,
    *,
    axes: str | None = None,
    channels: Sequence[int] | None = None,
    **segmenter_kwargs,
) -> Generator[Progress, None, np.ndarray]:
    """Class probabilities of every plane; a generator (see :func:`predict`)."""
    model, seg = _segmenter(model, segmenter_kwargs)
    layout = _layout(image, model, axes, channels)
    k = model.config.network.out_channels
    out = np.empty(layout.iter_shape + (k,) + layout.out_shape[-2:], dtype=np.float32)

    def keep(index, prob):
        out[index] = prob

    yield from _walk(layout, image, seg, keep)
    return out


def iter_segment(
    image,
    model: Model | str | os.PathLike,
    *,
    axes: str | None = None,
    channels: Sequence[int] | None = None,
    output: Output = "instances",
    min_size: int = 10,
    stitch_z: float | None = None,
    **segmenter_kwargs,
) -> Generator[Progress, None, np.ndarray]:
    """Labels of every plane; a generator (see :func:`segment`)."""
    model, seg = _segmenter(model, segmenter_kwargs)
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
) -> Generator[Progress, None, None]:
    """Label each plane in turn and hand it to ``consume(index, labels)``; a generator.

    Instance ids continue from plane to plane, so they are unique in the stack;
    with ``stitch_z`` objects overlapping across z planes share an id (see
    :class:`~napari_unet.core.stack_ids.StackIds`).
    """
    ids = StackIds(layout.out_axes[:-2], stitch_z=stitch_z) if output == "instances" else None
    if stitch_z is not None and ids is None:
        raise ValueError("linking objects across z (stitch_z) needs instance labels, not semantic ones")

    def label(index, prob):
        plane = seg.labels(prob, output=output, min_size=min_size)
        consume(index, plane if ids is None else ids(index, plane))

    yield from _walk(layout, image, seg, label, stage)


def _walk(
    layout: PlaneLayout,
    image,
    seg: Segmenter,
    consume: Callable[[tuple[int, ...], np.ndarray], None],
    stage: str = "tiles",
) -> Generator[Progress, None, None]:
    """Probabilities of each plane in turn, handed to ``consume(index, prob)`` as soon as done.

    Progress is counted in tiles over the whole stack.
    """
    per_plane = seg.tiles(layout.out_shape[-2:])
    total = per_plane * layout.n_planes
    for i, (index, plane) in enumerate(layout.planes(image)):
        gen = seg.iter_probabilities(plane)
        while True:
            try:
                p = next(gen)
            except StopIteration as stop:
                consume(index, stop.value)
                break
            yield Progress(i * per_plane + p.done, total, stage)


def predict(image, model: Model | str | os.PathLike, **kwargs) -> np.ndarray:
    """Class probabilities of an image or stack.

    Parameters
    ----------
    image : array-like of shape (..., Y, X) with an optional channel axis
        Any real dtype; may be lazy (memory-mapped, zarr, dask).
    model : Model, path or name
        A model, a model file, or ``"default"``.
    axes : str, optional
        Axis letters (``TZCYXS`` subset); guessed when not given.
    channels : sequence of int, optional
        Image channels to feed the model, in order.
    device : str
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"mps"``.
    tile : int, optional
        Tile side (the model's default otherwise).
    overlap : float
        Fraction of a tile shared with each neighbour (default 0.25).
    batch_size : int
        Tiles per forward pass.

    Returns
    -------
    ndarray of shape (..., K, Y, X), float32
        Probabilities of the model's ``K`` classes for every plane.
    """
    return run(iter_predict(image, model, **kwargs))


def segment(image, model: Model | str | os.PathLike, **kwargs) -> np.ndarray:
    """Labels of an image or stack.

    Takes the arguments of :func:`predict`, and

    output : {"instances", "semantic"}
        Instance ids (0 = background, unique across the stack) or class ids.
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
