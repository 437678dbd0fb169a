"""Axes of images and stacks, named as tifffile and napari name them.

``Y`` and ``X`` are the plane; ``C`` (channels) or ``S`` (samples, e.g. RGB)
give the model its input channels; every other axis (``T``, ``Z``, ...) is
iterated, one plane at a time.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ImageError

CHANNEL_AXES = "CS"


def guess_axes(shape: Sequence[int]) -> str:
    """Axes of an array when nothing says: ``YX``, ``YXS`` for RGB(A), else leading ``Z`` / ``TZ`` ..."""
    if len(shape) < 2:
        raise ImageError(f"expected an image with at least 2 dimensions (Y, X), got shape {tuple(shape)}")
    if len(shape) >= 3 and shape[-1] in (3, 4) and min(shape[-3:-1]) > 4:
        return _leading(len(shape) - 3) + "YXS"
    return _leading(len(shape) - 2) + "YX"


def _leading(n: int) -> str:
    if n > 3:
        raise ImageError(f"cannot guess the axes of an array with {n + 2} dimensions; name them (e.g. 'TZCYX')")
    return "QTZ"[3 - n :]


def check_axes(axes: str, shape: Sequence[int]) -> str:
    """Validate ``axes`` against ``shape``; returns it upper-cased."""
    axes = axes.upper()
    hint = "name them with --axes, e.g. TZCYX"
    if len(axes) != len(shape):
        raise ImageError(
            f"axes {axes!r} name {len(axes)} dimensions but the image has {len(shape)}: shape {tuple(shape)}; {hint}"
        )
    if len(set(axes)) != len(axes):
        raise ImageError(f"axes {axes!r} repeat a letter (shape {tuple(shape)}); {hint}")
    if not ("Y" in axes and "X" in axes):
        raise ImageError(f"axes {axes!r} must include Y and X")
    if sum(a in CHANNEL_AXES for a in axes) > 1:
        raise ImageError(f"axes {axes!r} have both C and S; expected at most one channel axis")
    for name, n in zip(axes, shape):
        if n == 0:
            raise ImageError(f"the image is empty: axis {name} has length 0 (shape {tuple(shape)})")
    return axes


@dataclass(frozen=True)
class PlaneLayout:
    """How an array of ``axes`` maps onto planes ``(C, Y, X)`` for a model.

    ``out_axes`` / ``out_shape`` describe the labels: the input's axes without
    the channel axis. ``channels`` selects input channels; ``to_grey`` averages
    RGB into one channel for one-channel models.
    """

    axes: str
    shape: tuple[int, ...]
    channel_axis: str | None
    channels: tuple[int, ...] | None
    to_grey: bool

    @property
    def out_axes(self) -> str:
        return "".join(a for a in self.axes if a != self.channel_axis)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return tuple(n for a, n in zip(self.axes, self.shape) if a != self.channel_axis)

    @property
    def iter_shape(self) -> tuple[int, ...]:
        """Shape of the iterated axes (everything but channel, Y and X)."""
        return self.out_shape[:-2]

    @property
    def n_planes(self) -> int:
        return int(np.prod(self.iter_shape, dtype=np.int64))

    def planes(
        self, array, indices: Sequence[tuple[int, ...]] | None = None
    ) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
        """Yield ``(index, plane)`` for each plane (or those of ``indices``); ``plane`` is ``(C, Y, X)``.

        ``array`` may be lazy (memory-map, zarr, dask): each plane is read on
        its own, so memory holds one plane at a time.
        """
        if indices is None:
            indices = list(np.ndindex(*self.iter_shape))
        for index in indices:
            if len(index) != len(self.iter_shape) or not all(0 <= i < n for i, n in zip(index, self.iter_shape)):
                raise ImageError(
                    f"plane {tuple(index)} asked for, but the planes over axes {self.out_axes[:-2]!r} "
                    f"have shape {self.iter_shape}"
                )
        for index in indices:
            yield index, self.plane(array, index)

    def plane(self, array, index: tuple[int, ...]) -> np.ndarray:
        """The ``(C, Y, X)`` plane at ``index`` (a position on the iterated axes); reads only that plane."""
        key = [slice(None)] * len(self.axes)
        for a, i in zip(self.out_axes[:-2], index):
            key[self.axes.index(a)] = i
        return self._channels_first(np.asarray(array[tuple(key)]))

    def index(self, number: int) -> tuple[int, ...]:
        """The index on the iterated axes of the ``number``-th plane, in the order of :meth:`planes`."""
        return tuple(int(i) for i in np.unravel_index(number, self.iter_shape))

    def _channels_first(self, plane: np.ndarray) -> np.ndarray:
        kept = [a for a in self.axes if a in "YX" or a == self.channel_axis]
        if self.channel_axis is None:
            return plane[np.newaxis]
        plane = np.moveaxis(plane, kept.index(self.channel_axis), 0)
        if self.to_grey:
            return plane[:3].astype(np.float32).mean(axis=0, keepdims=True)
        if self.channels is not None:
            plane = plane[list(self.channels)]
        return plane


def plane_layout(
    shape: Sequence[int], axes: str | None, in_channels: int, channels: Sequence[int] | None = None
) -> PlaneLayout:
    """Check that an array of ``shape`` / ``axes`` can feed a model of ``in_channels``.

    Parameters
    ----------
    shape : tuple of int
        Array shape.
    axes : str or None
        Axis letters (``TZCYXS`` subset); guessed when None.
    in_channels : int
        Channels the model expects.
    channels : sequence of int, optional
        Which channels of the image to feed the model, in order.

    Raises
    ------
    ImageError
        With what the model expects and what the image has.
    """
    shape = tuple(int(n) for n in shape)
    axes = check_axes(axes if axes is not None else guess_axes(shape), shape)
    channel_axis = next((a for a in axes if a in CHANNEL_AXES), None)
    n_image = shape[axes.index(channel_axis)] if channel_axis else 1
    if channels is not None:
        channels = tuple(int(c) for c in channels)
        bad = [c for c in channels if not 0 <= c < n_image]
        if bad:
            raise ImageError(f"channels {list(channels)} asked for, but the image has {n_image} channel(s) (0..{n_image - 1})")
        if len(channels) != in_channels:
            raise ImageError(f"the model expects {in_channels} channel(s), got {len(channels)} in channels={list(channels)}")
        if channel_axis is None:
            channels = None
        return PlaneLayout(axes, shape, channel_axis, channels, False)
    if n_image == in_channels:
        return PlaneLayout(axes, shape, channel_axis, None, False)
    if in_channels == 1 and channel_axis == "S" and n_image in (3, 4):
        return PlaneLayout(axes, shape, channel_axis, None, True)
    where = f" along axis {channel_axis!r}" if channel_axis else ""
    hint = "; choose which with channels=[...] (--channels on the command line)" if n_image > in_channels else ""
    raise ImageError(f"the model expects {in_channels} channel(s) but the image has {n_image}{where}{hint}")
