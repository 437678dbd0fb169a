"""Overlap-tile prediction of images of any size with any tile predictor.

The image is mirror-padded, cut into tiles that overlap their neighbours,
the tiles go through ``predictor`` in batches, and the outputs are blended
with a smooth window and normalised by the summed weights. The predictor is
any callable ``(B, C, T, T) -> (B, K, T - 2m, T - 2m)`` on float32 arrays, so
this module knows nothing of networks; ``m`` (``margin``) is what an unpadded
network loses on each side (0 for padded ones).

Exactness: tile origins lie on a grid of ``multiple`` pixels (pass the
network's down-sampling factor), so a translation-equivariant network gives,
wherever every contributing tile sees its full receptive field, exactly what
one pass over the whole mirror-padded image gives (see :func:`padding_for`).
An unpadded network (the U-Net paper's) sees its full receptive field in
every output pixel, so its tiled prediction is that whole-image pass
everywhere: the overlap-tile strategy, with no seams.

The window is zero over the outer quarter of the overlap on each side (pixels
near a tile edge, the least reliable, never count), rises as a raised cosine
over the middle half, and is one elsewhere. Adjacent ramps sum to one.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass

import numpy as np

from ..progress import Progress

Predictor = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class TileLayout:
    """Where the tiles of one axis go.

    ``before`` / ``after``: mirror padding added to the image; ``starts``:
    tile origins in padded coordinates; ``overlap``: pixels shared by the
    outputs of adjacent tiles; ``tile``: input side; ``margin``: pixels the
    predictor loses on each side.
    """

    before: int
    after: int
    starts: tuple[int, ...]
    overlap: int
    tile: int
    margin: int

    @property
    def padded(self) -> int:
        return self.starts[-1] + self.tile


def layout(length: int, *, tile: int, overlap: float, margin: int = 0, multiple: int = 1) -> TileLayout:
    """Plan the tiles along one axis of ``length`` pixels.

    ``overlap`` is what a tile's output shares with each neighbour: below 1, a
    fraction of the tile (as in MONAI's ``sliding_window_inference``); from 1
    up, pixels. The stride is rounded down to a multiple of ``multiple`` so
    tiles stay on the network's pooling grid; the padded length is the tile
    plus a whole number of grid steps, so the last tile is on the grid too
    (the tile itself need not be a multiple: an unpadded U-Net's are not).
    """
    if length < 1:
        raise ValueError(f"cannot tile an axis of length {length}")
    out_tile = tile - 2 * margin
    if out_tile < 1:
        raise ValueError(f"tile {tile} is too small for a predictor that loses {margin} pixels per side")
    wanted = overlap_pixels(overlap, out_tile)
    stride = (out_tile - wanted) // multiple * multiple
    shared = out_tile - stride if stride >= multiple else wanted
    before = margin + shared // 2
    minimum = before + length + margin + (shared - shared // 2)
    padded = tile + max(0, -(-(minimum - tile) // multiple)) * multiple
    if padded == tile:
        starts = [0]
    elif stride < multiple:
        raise ValueError(
            f"tiles of {tile} px cannot overlap by {wanted} px and still advance by at least {multiple} px "
            f"(the tile is the --tile asked for, rounded up to a size the model takes; the overlap is --overlap "
            f"or the model's default): give a larger --tile or a smaller --overlap"
        )
    else:
        starts = list(range(0, padded - tile + 1, stride))
        if starts[-1] + tile < padded:
            starts.append(padded - tile)
    return TileLayout(before, padded - before - length, tuple(starts), shared, tile, margin)


def overlap_pixels(overlap: float, out_tile: int) -> int:
    """Pixels shared by adjacent tile outputs: a fraction (< 1) of ``out_tile``, or pixels (>= 1)."""
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0 (a fraction below 1, or pixels), got {overlap}")
    if overlap < 1:
        return round(overlap * out_tile)
    if overlap != int(overlap):
        raise ValueError(f"an overlap of 1 or more is in pixels and must be whole, got {overlap}")
    return min(int(overlap), out_tile)


def window(size: int, overlap: int) -> np.ndarray:
    """1D blending weights of an output tile of ``size`` pixels, float32."""
    w = np.ones(size, dtype=np.float32)
    if overlap <= 0:
        return w
    dead = overlap // 4
    ramp = overlap - 2 * dead
    up = np.sin(0.5 * np.pi * (np.arange(ramp) + 0.5) / ramp) ** 2
    w[:dead] = 0.0
    w[dead : dead + ramp] = up
    w[size - dead :] = 0.0
    w[size - dead - ramp : size - dead] = np.minimum(w[size - dead - ramp : size - dead], up[::-1])
    return w


def mirror_pad(image: np.ndarray, pads: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Mirror-pad (reflect without repeating the edge), even beyond the image size.

    Axes of length 1 have nothing to mirror and are repeated instead.
    """
    for axis, (lo, hi) in enumerate(pads):
        if lo == 0 and hi == 0:
            continue
        widths = [(0, 0)] * image.ndim
        widths[axis] = (lo, hi)
        mode = "reflect" if image.shape[axis] > 1 else "edge"
        image = np.pad(image, widths, mode=mode)
    return image


def predict_tiles(
    image: np.ndarray,
    predictor: Predictor,
    *,
    tile: int,
    overlap: float = 0.25,
    margin: int = 0,
    multiple: int = 1,
    batch_size: int = 4,
) -> Generator[Progress, None, np.ndarray]:
    """Predict a whole ``(C, Y, X)`` image tile by tile; a generator.

    Yields a :class:`~napari_unet.core.progress.Progress` after each batch of
    tiles (a place to stop) and returns the blended ``(K, Y, X)`` float32
    output. Run it to the end with :func:`napari_unet.core.progress.run`.

    Parameters
    ----------
    image : ndarray of shape (C, Y, X), float32
        Normalised input.
    predictor : callable
        ``(B, C, tile, tile) float32 -> (B, K, tile - 2 margin, tile - 2 margin)``.
    tile : int
        Input tile side, a size the predictor takes.
    overlap : float
        Output shared with each neighbour: a fraction of the tile (< 1) or pixels (>= 1).
    margin : int
        Pixels the predictor loses on each side (0 for padded networks).
    multiple : int
        Tile origins are kept on this grid.
    batch_size : int
        Tiles per predictor call.
    """
    if image.ndim != 3:
        raise ValueError(f"expected an image of shape (C, Y, X), got shape {image.shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ly, lx = (layout(n, tile=tile, overlap=overlap, margin=margin, multiple=multiple) for n in image.shape[1:])
    padded = mirror_pad(image, ((0, 0), (ly.before, ly.after), (lx.before, lx.after)))
    padded = np.ascontiguousarray(padded, dtype=np.float32)
    out_tile = tile - 2 * margin
    weights = np.outer(window(out_tile, ly.overlap), window(out_tile, lx.overlap))
    origins = [(y, x) for y in ly.starts for x in lx.starts]
    total = len(origins)
    acc: np.ndarray | None = None
    wsum = np.zeros(padded.shape[1:], dtype=np.float32)
    done = 0
    for batch_origins in _batches(origins, batch_size):
        batch = np.stack([padded[:, y : y + tile, x : x + tile] for y, x in batch_origins])
        out = np.asarray(predictor(batch), dtype=np.float32)
        if out.ndim != 4 or out.shape[0] != len(batch) or out.shape[2:] != (out_tile, out_tile):
            raise ValueError(
                f"the predictor returned shape {out.shape} for input {batch.shape}, "
                f"expected ({len(batch)}, K, {out_tile}, {out_tile})"
            )
        if acc is None:
            acc = np.zeros((out.shape[1], *padded.shape[1:]), dtype=np.float32)
        for (y, x), o in zip(batch_origins, out):
            ys = slice(y + margin, y + margin + out_tile)
            xs = slice(x + margin, x + margin + out_tile)
            acc[:, ys, xs] += o * weights
            wsum[ys, xs] += weights
        done += len(batch_origins)
        yield Progress(done, total, "tiles")
    assert acc is not None
    ys = slice(ly.before, ly.before + image.shape[1])
    xs = slice(lx.before, lx.before + image.shape[2])
    result = acc[:, ys, xs]
    result /= wsum[ys, xs]
    return result


def padding_for(shape: tuple[int, int], *, tile: int, overlap: float, margin: int = 0, multiple: int = 1):
    """The ``((top, bottom), (left, right))`` mirror padding :func:`predict_tiles` applies."""
    ly, lx = (layout(n, tile=tile, overlap=overlap, margin=margin, multiple=multiple) for n in shape)
    return (ly.before, ly.after), (lx.before, lx.after)


def count_tiles(shape: tuple[int, int], *, tile: int, overlap: float, margin: int = 0, multiple: int = 1) -> int:
    """How many tiles :func:`predict_tiles` runs for an image of ``(Y, X)`` ``shape``."""
    ly, lx = (layout(n, tile=tile, overlap=overlap, margin=margin, multiple=multiple) for n in shape)
    return len(ly.starts) * len(lx.starts)


def _batches(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
