"""Rescale images so that objects have the size the model was trained at.

Users image at 10x to 100x: the same nucleus may be 8 or 150 pixels across.
An instance model records the object diameter it was trained at
(``ModelConfig.object_size``); prediction resizes each plane by
``scale = model size / image size`` and resizes the probabilities back, so
labels are always at the image's own resolution.

When the user does not give the size, :func:`estimate_scale` finds it the way
a person would: segment a crop, measure the median object, zoom so that
it matches, and check again (a few iterations on crops of at most
:data:`CROP` pixels, so the cost does not grow with the image). Objects far
larger than the model knows can come out in pieces of about the trained size,
which looks settled; so every zoom is searched for again from a much smaller
one (:data:`BELOW`: an eighth of it, 0.125 at most), and the smaller wins
where it settles on at least :data:`MIN_OBJECTS` objects. If nothing is found
at the native scale, that search from far below comes first too; only if it
does not settle is a ladder of zooms tried, where the one that finds the most
objects of plausible size wins (pieces outnumber whole nuclei, so the ladder
is the last resort). The eighth matters: a model fine-tuned on nuclei of one
size breaks nuclei twice as large into pieces too, so for nuclei of 100 to
180 px a search from a quarter of the zoom settled on the pieces. The pieces
can also grow ever smaller as the search zooms in after them, until it finds
nothing: then too the search from below decides, and the ladder only if it
does not settle. Crowded small objects made far too small merge into clumps,
which can look settled as well: between two settled zooms, the one that holds
up at half of it wins. A search whose measurements fall on both sides of the
trained size takes its next zoom between them (a fine-tuned model can draw
objects that grow faster than the zoom, and a plain step then swings past the
right zoom and back for ever: nuclei of 160 px were left in pieces at the
native zoom).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ..errors import ImageError
from ..progress import Progress, run
from ..labels.targets import object_diameters

CROP = 512
TOLERANCE = math.log(1.15)
STOP_BELOW = TOLERANCE  # the search from below stops this far (log zoom) below the zoom already settled
LADDER = (0.125, 0.25, 0.5, 2.0, 4.0)
LIMITS = (1 / 16, 8.0)
ESTIMATING = Progress(0, 1, "estimating the object size")  # yielded while the estimate's model runs
LabelCrop = Callable[[np.ndarray], Generator[Any, None, np.ndarray]]
BELOW = (8.0, 0.125)  # the search from far below starts at the settled zoom / BELOW[0], at most at BELOW[1]
MIN_OBJECTS = 3  # a smaller zoom settled on fewer objects than this is one clump of many (see estimate_scale)


def check_object_size(size: float, trained: float) -> None:
    """Refuse an object size that would zoom an image beyond :data:`LIMITS`, the zooms the estimate keeps to.

    A 0.01 px size would ask for a 2000x larger image (hundreds of GiB), a 1 px one runs for minutes
    and finds nothing: neither is a size anybody means.
    """
    lo, hi = trained / LIMITS[1], trained / LIMITS[0]
    if not lo <= size <= hi:
        raise ImageError(
            f"object size {size:g} px is out of range: the model was trained at {trained:g} px and zooms images "
            f"by {LIMITS[0]:g} to {LIMITS[1]:g}, so give a diameter from {lo:g} to {hi:g} px, or 'auto'"
        )


def rescale(x: np.ndarray, scale: float) -> np.ndarray:
    """Resize a ``(C, Y, X)`` float image by ``scale`` (bilinear, anti-aliased when shrinking).

    The same numbers as ``skimage.transform.resize(..., order=1, mode="reflect",
    anti_aliasing=scale < 1)``: a Gaussian of :func:`smoothing_sigma` first
    when shrinking, then :func:`linear_resize`.
    """
    if scale == 1.0:
        return x
    shape = (max(1, round(x.shape[1] * scale)), max(1, round(x.shape[2] * scale)))
    if scale < 1:
        sigma = [0.0] + [smoothing_sigma(n / m) for n, m in zip(x.shape[1:], shape)]
        x = ndi.gaussian_filter(x, sigma, mode="mirror")
    return linear_resize(x, shape, mode="reflect")


def resize_to(prob: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize ``(K, y, x)`` probabilities to ``(K, *shape)`` (bilinear)."""
    if prob.shape[1:] == tuple(shape):
        return prob
    return linear_resize(prob, shape, mode="edge")


def smoothing_sigma(factor: float) -> float:
    """Gaussian sigma (input pixels) that keeps a shrink by ``factor`` (input / output size) from aliasing.

    ``(factor - 1) / 2``, as scikit-image's anti-aliased resize; 0 when not shrinking.
    """
    return max(0.0, (factor - 1) / 2)


def linear_resize(x: np.ndarray, shape: tuple[int, int], *, mode: str = "edge") -> np.ndarray:
    """Bilinear resize of the last two axes of a ``(C, Y, X)`` array to ``shape``, as float32.

    Pixel centres map onto pixel centres (output pixel ``j`` samples input
    position ``(j + 0.5) * n / m - 0.5``), as ``skimage.transform.resize`` with
    ``order=1`` does; beyond the outer pixel centres the image continues by
    ``mode``: ``"edge"`` repeats the edge pixel, ``"reflect"`` mirrors about it.
    One pass per axis that changes, two gathers and a blend each: several
    times faster than the general spline code of ``scipy.ndimage.zoom``.
    """
    if mode not in ("edge", "reflect"):
        raise ValueError(f"mode must be 'edge' or 'reflect', got {mode!r}")
    out = np.asarray(x, dtype=np.float32)
    for axis, m in ((1, int(shape[0])), (2, int(shape[1]))):
        n = out.shape[axis]
        if n == m:
            continue
        position = (np.arange(m) + 0.5) * (n / m) - 0.5
        below = np.floor(position).astype(np.intp)
        weight = (position - below).astype(np.float32).reshape([m if a == axis else 1 for a in range(3)])
        a = np.take(out, _inside(below, n, mode), axis=axis)
        b = np.take(out, _inside(below + 1, n, mode), axis=axis)
        b -= a  # a + (b - a) * weight, in place: two arrays of the output's size, not five
        b *= weight
        b += a
        out = b
    return out


def _inside(index: np.ndarray, n: int, mode: str) -> np.ndarray:
    """Indices of an axis of length ``n``, those outside folded back in by ``mode``."""
    if n == 1:
        return np.zeros_like(index)
    if mode == "edge":
        return np.clip(index, 0, n - 1)
    period = 2 * (n - 1)
    index = np.abs(index) % period
    return np.where(index >= n, period - index, index)


def median_diameter(labels: np.ndarray) -> float | None:
    d = object_diameters(labels)
    return float(np.median(d)) if d.size else None


def estimate_scale(
    x: np.ndarray,
    label_crop: Callable[[np.ndarray], np.ndarray],
    object_size: float,
    *,
    iterations: int = 3,
    iterations_below: int = 5,
) -> float:
    """The zoom that brings the objects of ``x`` to ``object_size`` pixels (see :func:`iter_estimate_scale`;
    here ``label_crop`` returns the labels at once)."""

    def at_once(crop: np.ndarray) -> Generator[Progress, None, np.ndarray]:
        return label_crop(crop)
        yield  # a generator that never yields

    return run(iter_estimate_scale(x, at_once, object_size, iterations=iterations, iterations_below=iterations_below))


def iter_estimate_scale(
    x: np.ndarray,
    label_crop: Callable[[np.ndarray], Generator[Any, None, np.ndarray]],
    object_size: float,
    *,
    iterations: int = 3,
    iterations_below: int = 5,
) -> Generator[Progress, None, float]:
    """The zoom that brings the objects of ``x`` to ``object_size`` pixels; a generator.

    It yields :data:`ESTIMATING` whenever ``label_crop`` (a generator, the model at work on a crop)
    yields, so that a caller can stop it between batches of tiles rather than only after the
    several crops an estimate measures.

    Parameters
    ----------
    x : ndarray of shape (C, Y, X), float32
        Normalised plane.
    label_crop : callable
        A generator function: instance labels ``(y, x)`` of a normalised ``(C, y, x)`` image (the model
        at work), returned when done.
    object_size : float
        Diameter (pixels) the model was trained at.
    iterations : int
        Most measurements of the search from the native zoom. More let a
        search that climbs after ever smaller pieces of large nuclei zoom on
        until it finds nothing at all (a 2x fluorescence image went 15x wrong
        with five, when such a search went straight to the ladder).
    iterations_below : int
        Most measurements of the search from far below. Near its trained size
        a model draws objects at about that size whatever the zoom, so this
        search gains little per step and can take four or five to settle
        (with three, large H&E nuclei at 2x were left at the zoom of their
        pieces).

    Returns
    -------
    float
        Scale factor; 1.0 when no objects are found at any zoom.
    """
    scale, _, seen = yield from _settle(x, label_crop, object_size, 1.0, iterations)
    if scale is None:
        # Nothing at all at the native zoom: nuclei far larger than the model knows (drawn as nothing, or
        # as pieces at some zooms of the ladder, which then outnumber the whole nuclei), or far smaller.
        # The search from far below finds the first; the ladder is left for the second.
        lower, settled, count = yield from _settle(
            x, label_crop, object_size, min(1 / BELOW[0], BELOW[1]), iterations_below, ceiling=1.0
        )
        if lower is not None and settled and count >= MIN_OBJECTS:
            return lower
        return (yield from _ladder(x, label_crop, object_size))
    # Objects much larger than the model knows break into pieces of about the trained size,
    # which can look settled at a zoom that is still too large, and can even hold up at half of
    # it. So check again from well below, and keep the smaller zoom where that one settles on
    # several objects (tiny objects made far too small can settle as one clump of all of them).
    # Once that search comes up to within STOP_BELOW of the zoom already settled, it has found
    # nothing smaller: it stops there, which saves its last measurements when the first zoom is right.
    lower, settled, count = yield from _settle(
        x, label_crop, object_size, min(scale / BELOW[0], BELOW[1]), iterations_below, ceiling=scale * math.exp(-STOP_BELOW)
    )
    found_below = lower is not None and settled and count >= MIN_OBJECTS
    if not seen:
        # The search from the native zoom found objects, zoomed in after them, and found nothing
        # there: pieces of objects far larger than the model knows, growing ever smaller.
        return lower if found_below else (yield from _ladder(x, label_crop, object_size))
    if not found_below or lower >= scale:
        return scale
    # Unless the larger zoom holds up at half of it and the smaller does not: crowded objects
    # made far too small merge into clumps of about the trained size, which can look settled
    # too, but not at half of that zoom.
    if (yield from _holds(x, label_crop, object_size, scale)) and not (
        yield from _holds(x, label_crop, object_size, lower)
    ):
        return scale
    return lower


def _labels(label_crop: LabelCrop, crop: np.ndarray) -> Generator[Progress, None, np.ndarray]:
    """``label_crop(crop)``, yielding :data:`ESTIMATING` whenever it yields."""
    work = label_crop(crop)
    while True:
        try:
            next(work)
        except StopIteration as done:
            return done.value
        yield ESTIMATING


def _holds(x: np.ndarray, label_crop: LabelCrop, object_size: float, scale: float) -> Generator[Progress, None, bool]:
    """Whether ``scale`` still looks right from half of it (objects measured there at half the size)."""
    d = median_diameter((yield from _labels(label_crop, _crop(x, scale / 2, CROP // 2))))
    return d is not None and abs(math.log(object_size / (2 * d))) < 2 * TOLERANCE


def _settle(
    x: np.ndarray,
    label_crop: LabelCrop,
    object_size: float,
    scale: float,
    iterations: int,
    ceiling: float = math.inf,
) -> Generator[Progress, None, tuple[float | None, bool, int]]:
    """Zoom, measure, re-zoom from ``scale``.

    The scale reached, whether it stopped moving, and how many objects the last measurement saw:
    ``None`` if the first measurement saw none; the zoom that saw none, unsettled, if a later one
    did; the zoom wanted, unsettled, as soon as it reaches ``ceiling``.

    Each step zooms by the ratio of the trained size to the median measured, unless the last two
    measurements lie on both sides of the trained size: then the zoom between them where the measured
    size would match, on the line through the two (in logarithms). A model whose objects grow faster
    than the zoom (a fine-tuned one drew 17 px at one zoom and 23 px at 1.15 times it) overshoots
    each ratio step by as much as it corrects, and would swing between two zooms for ever.
    """
    below = above = None  # (log zoom, log of trained / measured size) of the last measurement on each side
    for step in range(iterations):
        d = object_diameters((yield from _labels(label_crop, _crop(x, scale))))
        if not d.size:
            return (scale if step else None), False, 0
        error = math.log(object_size / float(np.median(d)))
        wanted = float(np.clip(scale * math.exp(error), *LIMITS))
        if wanted >= ceiling:
            return wanted, False, d.size
        if abs(math.log(wanted / scale)) < TOLERANCE:
            return wanted, True, d.size
        if error > 0:
            below = (math.log(scale), error)
        else:
            above = (math.log(scale), error)
        if below is not None and above is not None:
            (zoom_lo, error_lo), (zoom_hi, error_hi) = below, above
            wanted = float(np.clip(math.exp(zoom_lo + (zoom_hi - zoom_lo) * error_lo / (error_lo - error_hi)), *LIMITS))
        scale = wanted
    return scale, False, d.size


def _crop(x: np.ndarray, scale: float, crop: int | None = None) -> np.ndarray:
    """The centre of ``x``, rescaled, at most ``crop`` (default :data:`CROP`) pixels square after rescaling."""
    crop = CROP if crop is None else crop
    side = max(1, int(crop / scale))
    y0 = max(0, (x.shape[1] - side) // 2)
    x0 = max(0, (x.shape[2] - side) // 2)
    return rescale(x[:, y0 : y0 + side, x0 : x0 + side], scale)


def _ladder(x: np.ndarray, label_crop: LabelCrop, object_size: float) -> Generator[Progress, None, float]:
    best, best_count = 1.0, 0
    for scale in LADDER:
        d = object_diameters((yield from _labels(label_crop, _crop(x, scale))))
        plausible = int(((d > object_size / 2) & (d < object_size * 2)).sum())
        if plausible > best_count:
            best, best_count = scale * object_size / float(np.median(d)), plausible
    return float(np.clip(best, *LIMITS))
