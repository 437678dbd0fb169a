"""Object-size estimation: the zoom that brings a user's objects to the size the model was trained at."""

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_unet.core.predict.sizing import estimate_scale, linear_resize, rescale, resize_to
from napari_unet.core.labels.targets import object_diameters

TRAINED = 20.0


def _discs(diameter: float, side: int = 600, step: int | None = None) -> np.ndarray:
    """A (1, Y, X) image of bright discs of ``diameter`` px on a grid ``step`` px apart."""
    yy, xx = np.mgrid[:side, :side]
    image = np.zeros((side, side), np.float32)
    step = step or int(diameter * 1.6) + 2
    for cy in range(step // 2, side - step // 2, step):
        for cx in range(step // 2, side - step // 2, step):
            image[(yy - cy) ** 2 + (xx - cx) ** 2 < (diameter / 2) ** 2] = 1.0
    return image[None]


def _grid(shape: tuple[int, int], every: float = TRAINED) -> np.ndarray:
    """Lines every ``every`` px: where a model cuts objects far larger than it knows."""
    grid = np.zeros(shape, bool)
    grid[:: int(every)], grid[:, :: int(every)] = True, True
    return grid


def _model_like(x: np.ndarray) -> np.ndarray:
    """Labels as a model trained at 20 px gives them: objects far larger than that come out in
    pieces of about 20 px (texture taken for boundaries), tiny ones are missed."""
    labels, _ = ndi.label(x[0] > 0.5)
    d = object_diameters(labels)
    big = np.isin(labels, np.flatnonzero(d > 2.5 * TRAINED) + 1)
    pieces, _ = ndi.label((labels > 0) & ~(big & _grid(labels.shape)))
    sizes = np.bincount(pieces.ravel())
    pieces[sizes[pieces] < 6] = 0
    return pieces


@pytest.mark.parametrize("diameter", [8, 14, 20, 35, 60, 100])
def test_the_estimate_brings_objects_of_any_size_to_the_trained_size(diameter):
    scale = estimate_scale(_discs(diameter), _model_like, TRAINED)
    assert scale == pytest.approx(TRAINED / diameter, rel=0.2), (diameter, scale, TRAINED / diameter)


def test_large_objects_broken_into_pieces_of_the_trained_size_are_not_taken_for_settled():
    # At the native zoom 100 px discs come out as 20 px pieces: measured alone, that looks right.
    assert np.median(object_diameters(_model_like(_discs(100)))) == pytest.approx(TRAINED, rel=0.15)
    assert estimate_scale(_discs(100), _model_like, TRAINED) < 0.3


def _clusters(diameter: float = 48, gap: float = 14, cluster_gap: float = 36, n: int = 4, k: int = 4) -> np.ndarray:
    """A (1, Y, X) image of k x k clusters, each of n x n discs ``gap`` px apart (crowded nuclei)."""
    period = n * diameter + (n - 1) * gap + cluster_gap
    side = int(k * period)
    yy, xx = np.mgrid[:side, :side]
    image = np.zeros((side, side), np.float32)
    step = diameter + gap
    for cy in [c + diameter / 2 + i * step for c in np.arange(0, side, period) for i in range(n)]:
        for cx in [c + diameter / 2 + j * step for c in np.arange(0, side, period) for j in range(n)]:
            image[(yy - cy) ** 2 + (xx - cx) ** 2 < (diameter / 2) ** 2] = 1.0
    return image[None]


def _blurry_model(x: np.ndarray) -> np.ndarray:
    """Labels as a model gives them for objects far below its trained size: gaps of a pixel or
    two are not seen, so crowded objects merge into clumps."""
    mask = x[0] > 0.5
    return ndi.label(ndi.binary_closing(mask, np.ones((3, 3)), border_value=0) | mask)[0]


def test_crowded_objects_merged_into_clumps_at_a_far_smaller_zoom_do_not_win_over_a_zoom_that_holds():
    # At 1/4.5 of the right zoom each cluster of 16 nuclei is one clump of about the trained size,
    # and the search from below settles there; the right zoom holds up when checked at half of it.
    x = _clusters()
    scale = estimate_scale(x, _blurry_model, TRAINED)
    assert scale == pytest.approx(TRAINED / 48, rel=0.15)


def test_tiny_objects_shrunk_into_a_single_clump_do_not_win_over_a_zoom_that_holds():
    # A patch of 6 px nuclei 3 px apart on a dim tissue background: far below the right zoom the
    # whole patch is one clump, which settles at the trained size and holds up at half of it.
    # One object is no measure.
    side, patch = 512, 160
    yy, xx = np.mgrid[:side, :side]
    image = np.zeros((side, side), np.float32)
    lo = (side - patch) // 2
    image[lo : lo + patch, lo : lo + patch] = 0.4
    for cy in range(lo, lo + patch, 9):
        for cx in range(lo, lo + patch, 9):
            image[(yy - cy) ** 2 + (xx - cx) ** 2 < 9] = 1.0
    scale = estimate_scale(image[None], _blurry_model, TRAINED)
    assert scale > 1.5, scale


def _speckled_discs(diameter: float = 68, spot: float = 5, side: int = 700) -> np.ndarray:
    """A (1, Y, X) image of large dim discs, each speckled with small bright spots (chromatin)."""
    yy, xx = np.mgrid[:side, :side]
    image = np.zeros((side, side), np.float32)
    step = int(diameter * 1.4)
    for cy in range(step // 2, side - step // 2, step):
        for cx in range(step // 2, side - step // 2, step):
            image[(yy - cy) ** 2 + (xx - cx) ** 2 < (diameter / 2) ** 2] = 0.5
    spots = (yy % (2 * spot) == spot) & (xx % (2 * spot) == spot) & (image > 0)
    image[ndi.binary_dilation(spots, iterations=int(spot // 2))] = 1.0
    return image[None]


def _speckle_model(x: np.ndarray) -> np.ndarray:
    """Labels as a model trained at 20 px gives them for speckled nuclei: a nucleus up to 2.5x the
    trained size is one object; a larger one comes out as its bright spots, at any zoom."""
    labels, _ = ndi.label(x[0] > 0.3)
    d = object_diameters(labels)
    big = np.isin(labels, np.flatnonzero(d > 2.5 * TRAINED) + 1)
    spots, _ = ndi.label(big & (x[0] > 0.75))
    out = np.where(big, spots + labels.max(), labels) * (labels > 0)
    out[big & (spots == 0)] = 0
    return out


def test_large_objects_whose_pieces_hold_up_at_half_the_zoom_lose_to_the_search_from_below():
    # 68 px nuclei speckled with 5 px spots: zoomed until the spots are 20 px (4x), the model
    # finds spots, and at half of that zoom it finds spots of half the size: that zoom settles
    # and holds up. From far below, the nuclei themselves settle, many of them, and win.
    x = _speckled_discs()
    pieces = object_diameters(_speckle_model(x))
    assert np.median(pieces) < 8  # at the native zoom the model sees only the spots
    assert estimate_scale(x, _speckle_model, TRAINED) == pytest.approx(TRAINED / 68, rel=0.2)


def _lagging_model(x: np.ndarray) -> np.ndarray:
    """Labels as a model trained at 20 px gives them when its outlines lag behind the zoom: an
    object under 16 px is drawn as it is, one near the trained size at 16 px (4/5 of it)
    whatever its size, a larger one 8 px smaller than it is, and one over 1.8 times the trained
    size comes out in pieces (texture taken for boundaries)."""
    labels, _ = ndi.label(x[0] > 0.5)
    d = object_diameters(labels)
    big = np.isin(labels, np.flatnonzero(d > 1.8 * TRAINED) + 1)
    out, _ = ndi.label(big & ~_grid(labels.shape))
    whole = np.flatnonzero(d <= 1.8 * TRAINED) + 1
    drawn = np.where(d < 0.8 * TRAINED, d, np.where(d <= 1.2 * TRAINED, 0.8 * TRAINED, d - 0.4 * TRAINED))
    yy, xx = np.mgrid[: labels.shape[0], : labels.shape[1]]
    for i, (cy, cx) in zip(whole, ndi.center_of_mass(labels > 0, labels, whole)):
        out[(yy - cy) ** 2 + (xx - cx) ** 2 < (drawn[i - 1] / 2) ** 2] = out.max() + 1
    return out


def test_a_search_from_below_that_settles_slowly_still_wins_over_the_zoom_of_pieces():
    # 40 px nuclei come out in pieces; zoomed in until the pieces are of the trained size (2.6x),
    # that settles. From far below, objects near the trained size are drawn too small,
    # so each step gains little: three steps do not settle, and the zoom of the pieces was
    # kept; four do, at 0.69, against the right 0.5.
    x = _discs(40)
    assert estimate_scale(x, _lagging_model, TRAINED, iterations_below=3) > 2
    scale = estimate_scale(x, _lagging_model, TRAINED)
    assert TRAINED / 40 <= scale < 0.75, scale


def _shattering_model(x: np.ndarray) -> np.ndarray:
    """Labels as a model trained at 20 px gives them for large textured nuclei: an object up to
    1.8 times the trained size is one object, a larger one comes out in pieces of half the
    trained size whatever the zoom, and one over 5 times it is not seen at all."""
    labels, _ = ndi.label(x[0] > 0.5)
    d = object_diameters(labels)
    whole = np.isin(labels, np.flatnonzero(d <= 1.8 * TRAINED) + 1)
    big = np.isin(labels, np.flatnonzero((d > 1.8 * TRAINED) & (d <= 5 * TRAINED)) + 1)
    pieces, _ = ndi.label(big & ~_grid(labels.shape, every=TRAINED // 2))
    return np.where(whole, labels + pieces.max(), pieces)


def test_a_search_that_zooms_in_after_pieces_until_it_finds_nothing_leaves_it_to_the_search_from_below():
    # 82 px nuclei come out in 10 px pieces; zoomed in after them (2x), the one nucleus in the
    # centre crop is too large to be seen at all. The ladder of zooms counts the pieces at 0.5x as
    # the most plausible objects (5x too large); from far below the nuclei themselves settle, whole.
    x = _discs(82, side=5 * 222, step=222)
    assert np.median(object_diameters(_shattering_model(x))) < 0.6 * TRAINED
    assert estimate_scale(x, _shattering_model, TRAINED) == pytest.approx(TRAINED / 82, rel=0.2)


def _fine_tuned_model(x: np.ndarray, unseen: float = np.inf) -> np.ndarray:
    """Labels as a model fine-tuned on nuclei of its trained size gives them: an object up to 1.6 times
    that size is one object, a larger one comes out in pieces of the trained size, and one over
    ``unseen`` times it is not seen at all."""
    labels, _ = ndi.label(x[0] > 0.5)
    d = object_diameters(labels)
    whole = np.isin(labels, np.flatnonzero(d <= 1.6 * TRAINED) + 1)
    big = np.isin(labels, np.flatnonzero((d > 1.6 * TRAINED) & (d <= unseen * TRAINED)) + 1)
    pieces, _ = ndi.label(big & ~_grid(labels.shape))
    return np.where(whole, labels + pieces.max(), pieces)


def test_nuclei_in_pieces_even_at_twice_the_trained_size_are_found_from_an_eighth_of_the_zoom():
    # 180 px nuclei come out in 20 px pieces at the native zoom (settled), and at a quarter of it
    # (45 px) still in pieces: a search from there settled on the pieces (80 px). From an eighth
    # of the zoom (22 px) the nuclei are whole and settle.
    x = _discs(180, side=1200, step=290)
    assert estimate_scale(x, _fine_tuned_model, TRAINED) == pytest.approx(TRAINED / 180, rel=0.2)


def test_when_nothing_is_seen_at_the_native_zoom_the_search_from_far_below_comes_before_the_ladder():
    # 107 px nuclei are not seen at all at the native zoom; on the ladder, their pieces at 0.5x
    # (53 px nuclei) outnumber the whole nuclei at 0.125x and 0.25x, and won (39 px).
    x = _discs(107, side=1200, step=170)

    def model(crop):
        return _fine_tuned_model(crop, unseen=5)

    assert not model(x).any()
    assert estimate_scale(x, model, TRAINED) == pytest.approx(TRAINED / 107, rel=0.2)


def test_the_search_from_below_stops_when_it_comes_up_to_the_zoom_already_settled():
    # Objects of the trained size settle at the native zoom at once; from far below, the first
    # measurement already asks for that zoom, so the model is not run there a second time.
    crops = []

    def counted(x):
        crops.append(x.shape)
        return _model_like(x)

    assert estimate_scale(_discs(20), counted, TRAINED) == pytest.approx(1.0, rel=0.05)
    assert len(crops) == 2, crops


# rescale and resize_to: the same numbers as scikit-image's resize, which they replace for speed

RESIZES = [((1, 64, 64), (56, 56)), ((3, 100, 37), (213, 11)), ((2, 5, 7), (13, 2)), ((1, 1, 9), (3, 4)), ((1, 9, 9), (9, 20))]


@pytest.mark.parametrize("mode", ["edge", "reflect"])
@pytest.mark.parametrize("shape,out", RESIZES)
def test_linear_resize_samples_as_scikit_image_resize_does(shape, out, mode):
    from skimage.transform import resize

    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    expected = resize(x, (shape[0], *out), order=1, mode=mode, anti_aliasing=False, preserve_range=True)
    got = linear_resize(x, out, mode=mode)
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize("scale", [0.23, 0.5, 0.8, 1.7, 3.0])
def test_rescale_matches_scikit_image_anti_aliased_resize(scale):
    from skimage.transform import resize

    x = np.random.default_rng(1).normal(size=(2, 61, 90)).astype(np.float32)
    shape = (2, round(61 * scale), round(90 * scale))
    expected = resize(x, shape, order=1, mode="reflect", anti_aliasing=scale < 1, preserve_range=True)
    np.testing.assert_allclose(rescale(x, scale), expected, atol=1e-5)


def test_probabilities_resized_back_match_scikit_image():
    from skimage.transform import resize

    prob = np.random.default_rng(2).random((3, 40, 52), dtype=np.float32)
    expected = resize(prob, (3, 97, 31), order=1, mode="edge", anti_aliasing=False, preserve_range=True)
    np.testing.assert_allclose(resize_to(prob, (97, 31)), expected, atol=1e-6)


def test_linear_resize_refuses_a_mode_it_does_not_know():
    with pytest.raises(ValueError, match="mode must be 'edge' or 'reflect', got 'wrap'"):
        linear_resize(np.zeros((1, 4, 4), np.float32), (8, 8), mode="wrap")


def _overshooting_model(x: np.ndarray) -> np.ndarray:
    """Labels as a model trained at 20 px gives them when its outlines exaggerate how far an object is from that
    size: one of ``d`` px is drawn ``20 (d / 20)^2`` px across (15 px as 11, 27 px as 36), and one over 2.5 times
    the trained size comes out in pieces. Each step of a plain search lands as far past the right zoom as it
    started before it."""
    labels, _ = ndi.label(x[0] > 0.5)
    d = object_diameters(labels)
    big = np.isin(labels, np.flatnonzero(d > 2.5 * TRAINED) + 1)
    out, _ = ndi.label(big & ~_grid(labels.shape))
    whole = np.flatnonzero(d <= 2.5 * TRAINED) + 1
    yy, xx = np.mgrid[: labels.shape[0], : labels.shape[1]]
    for i, (cy, cx) in zip(whole, ndi.center_of_mass(labels > 0, labels, whole)):
        drawn = TRAINED * (d[i - 1] / TRAINED) ** 2
        out[(yy - cy) ** 2 + (xx - cx) ** 2 < (drawn / 2) ** 2] = out.max() + 1
    return out


def test_a_search_that_overshoots_each_step_still_settles_between_the_zooms_it_swings_between():
    # 120 px nuclei come out in pieces of the trained size at the native zoom. From far below (1/8) they are
    # 15 px, drawn 11: the plain step zooms to 0.22, where they are 27 px, drawn 36, and back to 1/8, for
    # ever; the pieces' zoom was kept. Between the two the right zoom, 1/6, is found.
    x = _discs(120, side=1400)
    assert np.median(object_diameters(_overshooting_model(x))) == pytest.approx(TRAINED, rel=0.2)
    scale = estimate_scale(x, _overshooting_model, TRAINED)
    assert scale == pytest.approx(TRAINED / 120, rel=0.1), scale
