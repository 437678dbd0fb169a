"""Training data: what the user reviewed, split for validation, sampled as augmented patches.

A :class:`Sample` is one plane: the normalised image, its labels and the
reviewed mask. Pixels outside the reviewed region carry ``IGNORE_INDEX`` in
the target, so they never count. Patches are drawn around reviewed pixels,
with a bias towards objects, and resampled in one step for the geometric
augmentations (so the target stays aligned with the image exactly; a
shrunk image is smoothed first, as prediction smooths it); an
instances target's boundary class is then drawn again on the patch's own
labels (``TrainConfig.rims``), so that it stays one pixel wide at any zoom.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage as ndi

from ..io.axes import plane_layout
from ..models.config import IGNORE_INDEX, ModelConfig, choices
from ..predict.normalize import normalize
from ..predict.sizing import smoothing_sigma
from ..labels.targets import instance_targets, semantic_targets
from .config import AugmentConfig, TrainConfig


@dataclass
class Sample:
    """One reviewed plane.

    Attributes
    ----------
    image : ndarray of shape (C, Y, X), float32
        Normalised as the model expects.
    labels : ndarray of shape (Y, X), integer
        Instance ids or class ids, as drawn.
    reviewed : ndarray of shape (Y, X), bool
        Pixels the user checked.
    target : ndarray of shape (Y, X), uint8
        Training classes, ``IGNORE_INDEX`` where not reviewed.
    name : str
        Where it came from, for provenance.
    zoom : float
        Magnification applied when patches are drawn (model object size /
        this sample's object size), so every sample is seen at the model's scale.
    weight : float
        How often this sample gives a patch, relative to the others: it multiplies
        the sample's area or object count (see :class:`PatchSampler`).
    """

    image: np.ndarray
    labels: np.ndarray
    reviewed: np.ndarray
    target: np.ndarray
    name: str = ""
    zoom: float = 1.0
    weight: float = 1.0

    @property
    def n_reviewed(self) -> int:
        return int(self.reviewed.sum())


def make_samples(
    image,
    labels,
    config: ModelConfig,
    *,
    reviewed=None,
    axes: str | None = None,
    channels: Sequence[int] | None = None,
    name: str = "",
) -> list[Sample]:
    """Training samples from an image or stack and its labels (one per plane).

    Parameters
    ----------
    image : array-like
        Raw image or stack (any real dtype), axes as for prediction.
    labels : array-like
        Labels with the image's shape minus its channel axis.
    config : ModelConfig
        The model to train: channels, normalisation, task.
    reviewed : array-like of bool, optional
        Same shape as ``labels``; everything is reviewed when not given.
    """
    layout = plane_layout(np.shape(image), axes, config.network.in_channels, channels)
    labels = np.asarray(labels)
    if labels.shape != layout.out_shape:
        raise ValueError(f"labels of shape {labels.shape} do not fit the image: expected {layout.out_shape}")
    if labels.dtype.kind not in "iub":
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    reviewed = np.ones(labels.shape, bool) if reviewed is None else np.asarray(reviewed, dtype=bool)
    if reviewed.shape != labels.shape:
        raise ValueError(f"the reviewed mask has shape {reviewed.shape}, the labels {labels.shape}")
    samples = []
    for index, plane in layout.planes(image):
        lab, rev = labels[index], reviewed[index]
        if not rev.any():
            continue
        if config.task == "instances":
            target = instance_targets(lab, rev)
        else:
            target = semantic_targets(lab, rev, num_classes=config.num_classes)
        where = f"{name}{list(index)}" if index else name
        samples.append(Sample(normalize(plane, config.normalization), lab, rev, target, where))
    return samples


def draw_per_group(
    groups: Sequence[str], fraction: float, rng: np.random.Generator, *, keep_one: bool
) -> set[int]:
    """Indices of ``fraction`` of each group's members (at least one of each), drawn with ``rng``.

    Groups are drawn in sorted order of their keys, members in the order given,
    so the same groups and seed always give the same draw. ``keep_one`` leaves
    at least one member of every group undrawn (a group of one is never drawn).
    """
    drawn: set[int] = set()
    for key in sorted(set(groups)):
        members = [i for i, g in enumerate(groups) if g == key]
        n = max(1, round(fraction * len(members)))
        if keep_one:
            n = min(len(members) - 1, n)
        drawn.update(members[j] for j in rng.permutation(len(members))[:n])
    return drawn


def sampling_weights(samples: Sequence[Sample], sampling: str) -> np.ndarray:
    """How often each sample gives a patch (not normalised): its reviewed pixels ("area")
    or its labelled objects in them ("objects", at least one), times its ``weight``;
    0 for a sample with nothing reviewed."""
    allowed = choices(TrainConfig, "sampling")
    if sampling not in allowed:
        raise ValueError(f"sampling must be {' or '.join(map(repr, allowed))}, got {sampling!r}")
    out = []
    for s in samples:
        if not s.weight >= 0:
            raise ValueError(f"a sample's weight must be 0 or more, got {s.weight} for {s.name or 'a sample'}")
        reviewed = s.target != IGNORE_INDEX
        if sampling == "area":
            base = int(reviewed.sum())
        else:
            base = max(1, np.unique(s.labels[reviewed & (s.labels > 0)]).size) if reviewed.any() else 0
        out.append(base * s.weight)
    return np.array(out, dtype=np.float64)


def check_shares(shares: dict[str, float], groups: Sequence[str]) -> set[str]:
    """The groups that ``shares`` does not name; ValueError unless it names groups among
    ``groups`` with shares in (0, 1] that leave something for the groups not named (and add
    up to 1 when all are named)."""
    unknown = sorted(set(shares) - set(groups))
    if unknown:
        raise ValueError(f"no samples in the group(s) {unknown}; the groups are {sorted(set(groups))}")
    if any(not 0 < v <= 1 for v in shares.values()):
        raise ValueError(f"each share must be in (0, 1], got {shares}")
    rest = set(groups) - set(shares)
    total = sum(shares.values())
    if (rest and total >= 1) or (not rest and abs(total - 1) > 1e-9):
        raise ValueError(
            f"the shares add up to {total:g}: expected less than 1 while other groups {sorted(rest)} share the rest"
            if rest
            else f"the shares add up to {total:g}: expected 1, as every group is named"
        )
    return rest


def share_by_group(
    samples: Sequence[Sample], groups: Sequence[str], shares: dict[str, float], sampling: str
) -> list[Sample]:
    """The samples, weighted so that each group named in ``shares`` gives that share of the patches.

    Within a group, samples keep their relative weights (by area or objects,
    see :func:`sampling_weights`); the groups not named share what is left in
    the same proportions as before. Say ``{"rgb_brightfield/HE": 0.25}`` to see
    a rare modality in a quarter of the patches instead of in its share of the pixels.
    """
    _check_one_group_each(samples, groups)
    rest = check_shares(shares, groups)
    total = sum(shares.values())
    base = sampling_weights(samples, sampling)
    group_of = np.asarray(groups, dtype=object)
    weight = {g: base[group_of == g].sum() for g in set(groups)}
    if any(weight[g] == 0 for g in shares):
        raise ValueError(f"a group given a share has nothing reviewed to sample: {sorted(shares)}")
    rest_weight = sum(weight[g] for g in rest)
    factor = {g: shares[g] / weight[g] for g in shares}
    factor.update({g: (1 - total) / rest_weight if rest_weight else 0.0 for g in rest})
    # Scale so that the factors stay near 1 (the weights are relative).
    norm = base.sum()
    return [replace(s, weight=s.weight * factor[g] * norm) for s, g in zip(samples, groups)]


def split_validation(
    samples: list[Sample],
    fraction: float,
    rng: np.random.Generator,
    *,
    groups: Sequence[str] | None = None,
) -> tuple[list[Sample], list[Sample]]:
    """Hold out part of the reviewed data for validation.

    With five samples or more, whole samples are held out (at least one).
    With fewer, a band of each sample's reviewed region (``fraction`` of it,
    along its longer side) is held out and ignored for training, so even a
    single corrected image yields a validation score.

    ``groups`` (one key per sample, say the imaging modality) holds out whole
    samples, ``fraction`` of each group and at least one of every group of two
    or more: a group of few samples is then never left out of the validation
    score by chance, as it can be when samples are drawn from all at once.
    """
    if groups is not None:
        _check_one_group_each(samples, groups)
    if fraction <= 0 or not samples:
        return list(samples), []
    if groups is not None:
        held = draw_per_group(groups, fraction, rng, keep_one=True)
        return [s for i, s in enumerate(samples) if i not in held], [s for i, s in enumerate(samples) if i in held]
    if len(samples) >= 5:
        order = rng.permutation(len(samples))
        n_val = max(1, round(fraction * len(samples)))
        val = [samples[i] for i in order[:n_val]]
        train = [samples[i] for i in order[n_val:]]
        return train, val
    train, val = [], []
    for s in samples:
        band = _validation_band(s.reviewed, fraction)
        if band is None:
            train.append(s)
            continue
        train_target = s.target.copy()
        train_target[band] = IGNORE_INDEX
        train.append(replace(s, target=train_target, reviewed=s.reviewed & ~band))
        val.append(replace(s, reviewed=s.reviewed & band, target=np.where(band, s.target, IGNORE_INDEX).astype(np.uint8)))
    return train, val


def _check_one_group_each(samples: Sequence[Sample], groups: Sequence[str]) -> None:
    if len(groups) != len(samples):
        raise ValueError(f"expected one group per sample ({len(samples)}), got {len(groups)}")


def _validation_band(reviewed: np.ndarray, fraction: float) -> np.ndarray | None:
    ys, xs = np.nonzero(reviewed)
    if ys.size < 64 * 64:
        return None
    axis_coords = xs if np.ptp(xs) >= np.ptp(ys) else ys
    cut = np.quantile(axis_coords, 1 - fraction)
    band = np.zeros_like(reviewed)
    if axis_coords is xs:
        band[:, int(np.ceil(cut)) :] = True
    else:
        band[int(np.ceil(cut)) :, :] = True
    return band & reviewed


class PatchSampler:
    """Draw augmented training patches from samples.

    Parameters
    ----------
    samples : list of Sample
    patch : int
        Patch side.
    augment : AugmentConfig
    object_bias : float
        Probability that a patch is centred on a labelled object (else on any reviewed pixel).
    sampling : {"area", "objects"}
        Each sample is picked in proportion to its reviewed pixels, or to the
        labelled objects in them (at least one, so that a reviewed region with
        no objects in it is still trained on), times its ``weight``.
    rng : numpy.random.Generator
    redraw_rims : bool
        Instance targets: draw the boundary class again on each resampled
        patch, from its labels, so that it is the one-pixel inner rim of
        every object at the zoom the network sees (see ``TrainConfig.rims``).
        Resampled from the whole image's target instead, a rim breaks where
        the patch is shrunk (touching interiors then meet) and thickens where
        it is enlarged.
    """

    def __init__(
        self,
        samples: list[Sample],
        *,
        patch: int,
        augment: AugmentConfig,
        object_bias: float,
        sampling: str = "area",
        rng: np.random.Generator,
        redraw_rims: bool = False,
    ):
        samples = [s for s in samples if (s.target != IGNORE_INDEX).any()]
        if not samples:
            raise ValueError("no reviewed pixels to train on: mark a region as reviewed (or label some objects)")
        self.samples = samples
        self.patch = patch
        self.augment = augment
        self.object_bias = object_bias
        self.rng = rng
        self.redraw_rims = redraw_rims
        self._reviewed = [np.flatnonzero(s.target != IGNORE_INDEX) for s in samples]
        self._objects = [np.flatnonzero((s.target != IGNORE_INDEX) & (s.labels > 0)) for s in samples]
        # labels are only used inside the reviewed region (per-object loss weights)
        self._labels = [np.where(s.target != IGNORE_INDEX, s.labels, 0) for s in samples]
        weights = sampling_weights(samples, sampling)
        if not weights.sum() > 0:
            raise ValueError("every sample has weight 0: nothing to draw patches from")
        self._p = weights / weights.sum()

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``n`` patches: images ``(n, C, P, P)`` float32, targets ``(n, P, P)`` int64 and
        the labels they come from ``(n, P, P)`` (for per-object weights)."""
        return self.batch_with_sources(n)[:3]

    def batch_with_sources(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`batch`, and the index in :attr:`samples` each patch was drawn from ``(n,)``."""
        sources, patches = [], []
        for _ in range(n):
            sources.append(self.rng.choice(len(self.samples), p=self._p))
            patches.append(self._one(sources[-1]))
        images, targets, labels = (np.stack(p) for p in zip(*patches))
        return images, targets.astype(np.int64), labels, np.array(sources)

    def _one(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = self.rng
        s = self.samples[i]
        pool = self._objects[i] if self._objects[i].size and rng.random() < self.object_bias else self._reviewed[i]
        cy, cx = np.unravel_index(pool[rng.integers(pool.size)], s.target.shape)
        coords, zoom = self._coordinates(cy, cx, s.zoom)
        image = resample(s.image, coords, zoom if self.augment.antialias else 1.0)
        target = ndi.map_coordinates(s.target, coords, order=0, mode="constant", cval=IGNORE_INDEX)
        labels = ndi.map_coordinates(self._labels[i], coords, order=0, mode="constant", cval=0)
        if self.redraw_rims:
            target = instance_targets(labels, target != IGNORE_INDEX)
        if self.augment.intensity:
            image = self._intensity(image)
        return image.astype(np.float32, copy=False), target, labels

    def _coordinates(self, cy: float, cx: float, zoom: float) -> tuple[np.ndarray, float]:
        """Source coordinates (2, P, P) of each patch pixel (zoom, rotation, flips, elastic) and the zoom."""
        a, rng, p = self.augment, self.rng, self.patch
        grid = np.mgrid[:p, :p].astype(np.float64) - (p - 1) / 2
        lo, hi = a.scale
        zoom *= np.exp(rng.uniform(np.log(lo), np.log(hi))) if hi > lo else lo
        angle = rng.uniform(0, 2 * np.pi) if a.rotate else 0.0
        flip = -1.0 if a.flips and rng.random() < 0.5 else 1.0
        cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
        y = cos * grid[0] - sin * grid[1] * flip
        x = sin * grid[0] + cos * grid[1] * flip
        if a.elastic and a.elastic_sigma > 0:
            coarse = rng.normal(0, a.elastic_sigma, (2, a.elastic_grid, a.elastic_grid))
            up = self._upsampler
            y = y + up @ coarse[0] @ up.T
            x = x + up @ coarse[1] @ up.T
        return np.stack([y + cy, x + cx]), zoom

    @functools.cached_property
    def _upsampler(self) -> np.ndarray:
        """(P, grid) matrix of cubic-spline interpolation from the coarse grid to the patch.

        Interpolation is linear in the grid values, so one matrix serves every
        patch (a matrix product instead of a spline zoom per displacement field).
        """
        g, p = self.augment.elastic_grid, self.patch
        basis = np.eye(g)
        return np.stack([ndi.zoom(e, p / g, order=3, grid_mode=True, mode="nearest")[:p] for e in basis], axis=1)

    def _intensity(self, image: np.ndarray) -> np.ndarray:
        a, rng = self.augment, self.rng
        if a.invert and rng.random() < a.invert:
            image = 1.0 - image
        gamma = np.exp(rng.uniform(np.log(0.7), np.log(1.5)))
        image = np.sign(image) * np.abs(image) ** gamma
        image = image * rng.uniform(0.75, 1.25) + rng.uniform(-0.1, 0.1)
        if a.noise:
            image = image + rng.normal(0, rng.uniform(0, a.noise), image.shape)
        return image


def resample(image: np.ndarray, coords: np.ndarray, zoom: float) -> np.ndarray:
    """Bilinear samples of a ``(C, Y, X)`` image at ``coords``; smoothed first when ``zoom < 1``.

    The smoothing is that of prediction's anti-aliased resize (Gaussian of
    :func:`~napari_unet.core.predict.sizing.smoothing_sigma`, mirrored edges), applied
    to the part of the image the patch covers only.
    """
    if zoom >= 1:
        return np.stack([ndi.map_coordinates(c, coords, order=1, mode="mirror") for c in image])
    sigma = smoothing_sigma(1 / zoom)
    margin = int(np.ceil(4 * sigma)) + 2
    shape = np.array(image.shape[1:])
    first, last = coords.reshape(2, -1).min(axis=1), coords.reshape(2, -1).max(axis=1)
    # along an axis the patch leaves the image, sampling mirrors at the image's edges: keep the whole axis
    inside = (first >= 0) & (last <= shape - 1)
    lo = np.where(inside, np.maximum(np.floor(first).astype(int) - margin, 0), 0)
    hi = np.where(inside, np.minimum(np.ceil(last).astype(int) + margin + 1, shape), shape)
    crop = image[:, lo[0] : hi[0], lo[1] : hi[1]]
    local = coords - lo[:, None, None]
    return np.stack(
        [ndi.map_coordinates(ndi.gaussian_filter(c, sigma, mode="mirror"), local, order=1, mode="mirror") for c in crop]
    )
