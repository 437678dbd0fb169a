"""Training core: ignored pixels never count, Stop is prompt, a bad fine-tune is not adopted."""

import dataclasses
import re
import threading
import time

import numpy as np
import pytest
import tifffile
import torch
from scipy import ndimage as ndi

from napari_unet import segment
from napari_unet.core.models.config import IGNORE_INDEX, ModelConfig
from napari_unet.core.models.model import Model
from napari_unet.core.predict.sizing import rescale
from napari_unet.core.labels.targets import BOUNDARY, INTERIOR, instance_targets
from napari_unet.core.training import AugmentConfig, TrainConfig, Trainer, make_samples, split_validation
from napari_unet.core.training.data import PatchSampler, Sample, resample, sampling_weights, share_by_group

from .conftest import dsb_path, small_model

FLUO = "0a7d30b252359a10fd298b638b90cb9ada3acced4e0c0e5a3692013f432ee4e9"


def _real_crop(size=128):
    image = tifffile.imread(dsb_path("images", FLUO))[:size, :size]
    labels = tifffile.imread(dsb_path("labels", FLUO))[:size, :size]
    return image, labels


def _small_trainer(
    *, validate: bool, from_scratch: bool = False, score_seconds: float | None = None, **settings
) -> Trainer:
    """A small model (seed 3) on a real 128-pixel crop, pairs of 64-pixel patches, validated
    on its own training samples when ``validate``; ``settings`` are the rest of the TrainConfig."""
    image, labels = _real_crop(128)
    model = small_model(seed=3)
    samples = make_samples(image, labels, model.config)
    config = TrainConfig(patch=64, batch_size=2, val_fraction=0.0, **settings)
    return Trainer(model, samples, samples if validate else [], config, device="cpu", from_scratch=from_scratch,
                   score_seconds=score_seconds)


def test_targets_outside_the_reviewed_region_are_ignored_and_do_not_shape_the_inside():
    labels = np.zeros((10, 10), np.uint16)
    labels[2:8, 2:8] = 1
    reviewed = np.zeros((10, 10), bool)
    reviewed[:, :5] = True
    garbage = labels.copy()
    garbage[:, 5:] = 7  # a different id right next to the reviewed object
    a, b = instance_targets(labels, reviewed), instance_targets(garbage, reviewed)
    assert (a[:, 5:] == IGNORE_INDEX).all()
    np.testing.assert_array_equal(a, b)
    assert a[4, 4] == 1 and a[2, 3] == 2 and a[0, 0] == 0


@pytest.mark.parametrize(
    "loss, border, rims",
    [("ce_dice", "gaps", "patch"), ("ce_dice", "gaps", "image"), ("weighted_ce", "gaps", "patch"),
     ("weighted_ce_dice", "contacts", "patch")],
)
def test_labels_outside_the_reviewed_region_do_not_influence_training(loss, border, rims):
    image, labels = _real_crop()
    reviewed = np.zeros(labels.shape, bool)
    reviewed[16:96, 16:96] = True
    garbage = labels.copy()
    garbage[~reviewed] = np.random.default_rng(1).integers(0, 50, (~reviewed).sum())
    weights = []
    for lab in (np.where(reviewed, labels, 0), garbage):
        model = small_model(seed=4)
        samples = make_samples(image, lab, model.config, reviewed=reviewed)
        config = TrainConfig(steps=2, patch=64, batch_size=2, loss=loss, border=border, rims=rims, val_fraction=0)
        trainer = Trainer(model, samples, [], config, device="cpu")
        run_to_end(trainer.run())
        weights.append(torch.cat([p.detach().flatten() for p in trainer.result.finetuned.network.parameters()]))
    torch.testing.assert_close(weights[0], weights[1], rtol=0, atol=0)
    assert not torch.equal(weights[0], torch.cat([p.flatten() for p in small_model(seed=4).network.parameters()]))


def run_to_end(gen):
    for _ in gen:
        pass


def test_patches_are_drawn_only_around_reviewed_pixels():
    image, labels = _real_crop()
    reviewed = np.zeros(labels.shape, bool)
    reviewed[40:60, 40:60] = True
    (sample,) = make_samples(image, labels, small_model().config, reviewed=reviewed)
    sampler = PatchSampler([sample], patch=32, augment=TrainConfig(steps=1).augment, object_bias=0.5,
                           rng=np.random.default_rng(0))
    _, targets, _ = sampler.batch(16)
    assert ((targets != IGNORE_INDEX).sum(axis=(1, 2)) > 0).all()


def _rim_faults(targets, labels):
    """4-neighbour pairs in the patches where an interior pixel meets the interior of another object
    or the background: places where the boundary class fails to part them."""
    faults = 0
    for axis in (1, 2):
        t = np.moveaxis(targets, axis, 0)
        lab = np.moveaxis(labels, axis, 0)
        ta, tb, la, lb = t[1:], t[:-1], lab[1:], lab[:-1]
        meet = (la != lb) & (ta != IGNORE_INDEX) & (tb != IGNORE_INDEX)
        faults += int((meet & (((ta == INTERIOR) & (tb != BOUNDARY)) | ((tb == INTERIOR) & (ta != BOUNDARY)))).sum())
    return faults


@pytest.mark.parametrize("zoom", [0.5, 1.0, 2.0])
def test_rims_redrawn_on_each_patch_part_every_object_at_any_zoom(zoom):
    # Resampled from the image's own target, a one-pixel rim breaks where a patch is shrunk or
    # rotated (nearest-neighbour sampling skips some of its pixels), so that touching interiors
    # meet, and thickens where it is enlarged; drawn again on the patch's labels it is the patch's
    # own one-pixel rim.
    image, labels = _real_crop()
    (sample,) = make_samples(image, labels, small_model().config)
    sample = dataclasses.replace(sample, zoom=zoom)
    faults, thick = {}, {}
    for redraw in (False, True):
        sampler = PatchSampler([sample], patch=64, augment=TrainConfig(steps=1).augment, object_bias=1.0,
                               rng=np.random.default_rng(0), redraw_rims=redraw)
        _, targets, patch_labels = sampler.batch(32)
        reviewed = targets != IGNORE_INDEX
        own = np.stack([instance_targets(lab, rev) for lab, rev in zip(patch_labels, reviewed)])
        assert (own[reviewed] == INTERIOR).any() and (own[reviewed] == BOUNDARY).any()
        if redraw:
            np.testing.assert_array_equal(targets, own)
        faults[redraw] = _rim_faults(targets, patch_labels)
        thick[redraw] = ((targets == BOUNDARY) & (own == INTERIOR)).sum() / (own == BOUNDARY).sum()
    assert faults[True] == 0 and thick[True] == 0
    if zoom == 0.5:
        assert faults[False] > 0, "a shrunk patch of the image's rims should show breaks"
    if zoom == 2.0:
        assert thick[False] > 0.1, f"an enlarged patch of the image's rims should be thicker, got {thick[False]:.2f}"


def _noise_patches(zoom, antialias):
    """16 patches of 64 px from white noise (std 1) shrunk or enlarged by ``zoom``, geometry only."""
    image = np.random.default_rng(0).normal(size=(1, 512, 512)).astype(np.float32)
    sample = Sample(image, np.zeros((512, 512), np.uint16), np.ones((512, 512), bool), np.zeros((512, 512), np.uint8),
                    zoom=zoom)
    augment = AugmentConfig(flips=False, elastic=False, intensity=False, antialias=antialias)
    sampler = PatchSampler([sample], patch=64, augment=augment, object_bias=0.0, rng=np.random.default_rng(1))
    return sampler.batch(16)[0], image


@pytest.mark.parametrize("zoom", [0.25, 0.5])
def test_a_shrunk_patch_is_smoothed_as_prediction_smooths_the_image_it_shrinks(zoom):
    # Prediction shrinks an image to the model's object size with an anti-aliased resize; patches
    # shrunk by plain bilinear sampling keep the fine texture that resize smooths away (white noise
    # keeps most of its contrast), so the network would train on images unlike those it is shown.
    smoothed, image = _noise_patches(zoom, antialias=True)
    plain, _ = _noise_patches(zoom, antialias=False)
    shown = rescale(image, zoom).std()
    off_smoothed, off_plain = abs(np.log(smoothed.std() / shown)), abs(np.log(plain.std() / shown))
    assert off_smoothed < off_plain / 2, (smoothed.std(), plain.std(), shown)


@pytest.mark.parametrize("zoom", [1.0, 2.0])
def test_patches_at_or_above_the_image_size_are_not_smoothed(zoom):
    smoothed, _ = _noise_patches(zoom, antialias=True)
    plain, _ = _noise_patches(zoom, antialias=False)
    np.testing.assert_array_equal(smoothed, plain)


def test_smoothing_only_the_part_a_patch_covers_equals_smoothing_the_whole_image():
    # patches at the centre, across a corner (mirrored) and far outside one edge
    image = np.random.default_rng(0).random((2, 300, 400)).astype(np.float32)
    grid = np.mgrid[:64, :64].astype(np.float64) - 31.5
    for cy, cx, zoom in [(150, 200, 0.5), (10, 390, 0.5), (-100, 200, 0.3), (150, 200, 0.9)]:
        cos, sin = np.cos(0.7) / zoom, np.sin(0.7) / zoom
        coords = np.stack([cos * grid[0] - sin * grid[1] + cy, sin * grid[0] + cos * grid[1] + cx])
        whole = [ndi.gaussian_filter(c, (1 / zoom - 1) / 2, mode="mirror") for c in image]
        expected = np.stack([ndi.map_coordinates(c, coords, order=1, mode="mirror") for c in whole])
        np.testing.assert_allclose(resample(image, coords, zoom), expected, atol=1e-6)


def test_rims_are_redrawn_for_instances_models_only_and_only_when_asked():
    image, labels = _real_crop()
    model = small_model()
    samples = make_samples(image, labels, model.config)
    for rims, redraw in (("patch", True), ("image", False)):
        trainer = Trainer(model, samples, [], TrainConfig(steps=1, rims=rims), device="cpu")
        assert trainer.sampler.redraw_rims is redraw
    config = ModelConfig(network={"depth": 2, "width": 4, "out_channels": 2}, task="semantic",
                         class_names=("background", "nuclei"), tile=64, overlap=16)
    semantic = Model.from_config(config)
    samples = make_samples(image, labels, config)
    trainer = Trainer(semantic, samples, [], TrainConfig(steps=1, rims="patch"), device="cpu")
    assert trainer.sampler.redraw_rims is False


def _small_and_large_samples(n_small):
    """``n_small`` 64 x 64 images of 8 objects, then one 256 x 256 image of a single object (id 99)."""
    rng = np.random.default_rng(0)
    small_labels = np.repeat(np.repeat(np.arange(1, 9, dtype=np.uint16).reshape(2, 4), 32, 0), 16, 1)
    large_labels = np.full((256, 256), 99, np.uint16)
    config = small_model().config
    return [
        s
        for labels in [small_labels] * n_small + [large_labels]
        for s in make_samples(rng.integers(0, 255, labels.shape).astype(np.uint8), labels, config)
    ]


@pytest.mark.parametrize("sampling, share", [("area", (0.85, 1.0)), ("objects", (0.0, 0.25))])
def test_images_are_picked_by_area_or_by_objects(sampling, share):
    # A small image of 8 objects and one 16 times larger holding a single object: by area the
    # large one gives 16 of 17 patches, by objects 1 of 9.
    samples = _small_and_large_samples(1)
    sampler = PatchSampler(samples, patch=32, augment=TrainConfig(steps=1).augment, object_bias=0.5,
                           sampling=sampling, rng=np.random.default_rng(0))
    _, _, labels = sampler.batch(200)
    from_large = np.mean([(patch == 99).any() for patch in labels])
    assert share[0] <= from_large <= share[1], (sampling, from_large)


@pytest.mark.parametrize("sampling", ["area", "objects"])
def test_a_group_given_a_share_of_the_patches_gets_it(sampling):
    # By area the large image gives 65536 / (65536 + 8 * 4096) = 67% of the patches, by objects
    # 1 / 65 = 1.5%; given a share of 40% it gets 40% either way, and the small images keep
    # equal shares of the rest.
    samples = _small_and_large_samples(8)
    groups = ["small"] * 8 + ["large"]
    weighted = share_by_group(samples, groups, {"large": 0.4}, sampling)
    p = sampling_weights(weighted, sampling)
    p /= p.sum()
    np.testing.assert_allclose(p, [0.6 / 8] * 8 + [0.4])
    assert [s.name for s in weighted] == [s.name for s in samples]
    assert all(s.weight == 1.0 for s in samples), "the samples given are left as they were"
    sampler = PatchSampler(weighted, patch=32, augment=TrainConfig(steps=1).augment, object_bias=0.5,
                           sampling=sampling, rng=np.random.default_rng(0))
    _, _, labels = sampler.batch(400)
    from_large = np.mean([(patch == 99).any() for patch in labels])
    assert 0.33 <= from_large <= 0.47, (sampling, from_large)


@pytest.mark.parametrize(
    "shares, message",
    [
        ({"HE": 0.3}, "no samples in the group"),
        ({"large": 0.0}, "must be in (0, 1]"),
        ({"large": 1.0}, "expected less than 1 while other groups ['small']"),
        ({"large": 0.5, "small": 0.4}, "expected 1, as every group is named"),
    ],
)
def test_shares_that_cannot_be_met_are_refused(shares, message):
    samples = _small_and_large_samples(8)
    with pytest.raises(ValueError, match=re.escape(message)):
        share_by_group(samples, ["small"] * 8 + ["large"], shares, "area")


def test_stop_ends_the_run_at_the_next_step_with_a_usable_model():
    image, labels = _real_crop(256)
    model = small_model(seed=2)
    samples = make_samples(image, labels, model.config)
    trainer = Trainer(model, samples, [], TrainConfig(minutes=10, patch=64, batch_size=2), device="cpu")
    returned = {}

    def work():
        gen = trainer.run()
        returned["at_stop"] = next(gen).step
        trainer.stop()
        returned["after"] = [update.step for update in gen]

    thread = threading.Thread(target=work)
    thread.start()
    try:
        thread.join(timeout=120)
        assert not thread.is_alive(), "the run did not end after Stop"
    finally:
        trainer.stop()
        thread.join()
    # Stop lands at the next step: at most the step under way when it came is reported after it.
    assert {s for s in returned["after"] if s > returned["at_stop"]} <= {returned["at_stop"] + 1}
    result = trainer.result
    assert result.stopped and result.steps >= 1
    labels_out = segment(image, result.model, device="cpu")
    assert labels_out.shape == image.shape


def test_the_validation_split_holds_out_a_band_of_a_single_image():
    image, labels = _real_crop(256)
    (sample,) = make_samples(image, labels, small_model().config)
    train, val = split_validation([sample], 0.25, np.random.default_rng(0))
    assert len(train) == len(val) == 1
    overlap = (train[0].target != IGNORE_INDEX) & (val[0].target != IGNORE_INDEX)
    assert not overlap.any()
    assert 0.2 < val[0].reviewed.mean() < 0.3


def test_the_validation_split_by_group_holds_out_each_group_and_keeps_the_plain_split_as_it_was():
    image, labels = _real_crop(64)
    (sample,) = make_samples(image, labels, small_model().config)
    samples = [dataclasses.replace(sample, name=f"{i}") for i in range(25)]
    groups = ["fluorescence"] * 20 + ["H&E"] * 4 + ["brightfield"]
    train, val = split_validation(samples, 0.1, np.random.default_rng(0), groups=groups)
    group_of = {s.name: g for s, g in zip(samples, groups)}
    held = [group_of[s.name] for s in val]
    # 10% of each group, at least one of a group of two or more; a group of one stays in training
    assert sorted(held) == ["H&E", "fluorescence", "fluorescence"]
    assert {s.name for s in train} | {s.name for s in val} == {s.name for s in samples}
    assert not {s.name for s in train} & {s.name for s in val}
    # drawn from all at once (no groups), the same seed gives the split it always gave
    train_plain, val_plain = split_validation(samples, 0.1, np.random.default_rng(0))
    order = np.random.default_rng(0).permutation(25)
    assert [s.name for s in val_plain] == [f"{i}" for i in order[:2]]
    with pytest.raises(ValueError, match="one group per sample"):
        split_validation(samples, 0.1, np.random.default_rng(0), groups=groups[:-1])


def test_u2net_p_is_trained_on_its_six_side_outputs_and_the_fused_one(monkeypatch):
    from napari_unet.core.models.config import ModelConfig, U2NetConfig
    from napari_unet.core.models.model import Model
    from napari_unet.core.training import AugmentConfig
    from napari_unet.core.training import trainer as trainer_module

    image, labels = _real_crop(64)
    config = ModelConfig(network=U2NetConfig(), task="semantic", class_names=("background", "nuclei"), tile=64)
    torch.manual_seed(0)
    model = Model.from_config(config)
    samples = make_samples(image, (labels > 0).astype(np.uint8), config)
    sides_seen = []
    real = trainer_module.deep_supervision

    def spy(sides, fused, target, **kwargs):
        sides_seen.append(len(sides))
        return real(sides, fused, target, **kwargs)

    monkeypatch.setattr(trainer_module, "deep_supervision", spy)
    still = AugmentConfig(flips=False, rotate=False, elastic=False, intensity=False)
    cfg = TrainConfig(steps=6, patch=64, batch_size=2, loss="ce", lr=3e-3, schedule="constant", augment=still,
                      val_fraction=0)
    trainer = Trainer(model, samples, [], cfg, device="cpu", from_scratch=True)
    run_to_end(trainer.run())
    losses = [u.loss for u in trainer.result.history]
    assert sides_seen == [6] * 6
    assert 7 * 0.3 < losses[0] < 7 * 1.5  # seven binary cross-entropies, near ln 2 each at the start
    assert np.mean(losses[-2:]) < 0.8 * losses[0]


def test_a_two_class_model_trains_and_validates_on_instance_labels_taken_as_foreground():
    from napari_unet.core.training import score

    image, labels = _real_crop(128)
    config = ModelConfig(network={"depth": 2, "width": 4, "out_channels": 2}, task="semantic",
                         class_names=("background", "nuclei"), tile=64, overlap=16)
    samples = make_samples(image, labels, config)
    assert labels.max() > 1 and set(np.unique(samples[0].target)) == {0, 1}
    result = score(Model.from_config(config).network, samples, config, device="cpu")
    assert result.name == "mean IoU" and 0 <= result.value <= 1


@pytest.mark.parametrize("ema", [0.0, 0.6])
def test_ema_keeps_the_moving_average_of_the_weights_and_batch_norm_statistics(ema):
    trainer = _small_trainer(validate=False, steps=4, ema=ema, tune_thresholds=False)
    expected = None
    for _ in trainer.run():
        state = {k: v.detach().clone().float() for k, v in trainer.network.state_dict().items()}
        if expected is None or not ema:
            expected = state
        else:
            expected = {k: ema * expected[k] + (1 - ema) * state[k] for k in state}
    kept = trainer.result.model.network.state_dict()
    last = trainer.network.state_dict()
    for key, value in expected.items():
        if "num_batches_tracked" in key:
            continue
        torch.testing.assert_close(kept[key].float(), value, rtol=1e-5, atol=1e-6)
    # With averaging on, what is kept is not simply the last step's weights.
    moved = any(not torch.allclose(kept[k].float(), last[k].float()) for k in kept if "num_batches" not in k)
    assert moved == bool(ema)


@pytest.mark.parametrize("keep, kept_at, score", [("best", 0, 0.9), ("last", 2, 0.7)])
def test_the_best_scored_or_the_last_weights_are_kept(keep, kept_at, score, monkeypatch):
    from napari_unet.core.training.scoring import Score

    scores = iter([0.9, 0.5, 0.7])  # validation at steps 2, 4 and 6: best first, last not the worst
    monkeypatch.setattr(Trainer, "_score", lambda self, network: Score(next(scores), "AP@0.5", {}))
    trainer = _small_trainer(validate=True, steps=6, val_every=2, keep=keep, tune_thresholds=False)
    validated = []
    for update in trainer.run():
        if update.score is not None:
            validated.append({k: v.detach().clone() for k, v in trainer.network.state_dict().items()})
    assert len(validated) == 3
    assert trainer.result.best_score.value == pytest.approx(score)
    kept = trainer.result.model.network.state_dict()
    for key, value in validated[kept_at].items():
        torch.testing.assert_close(kept[key], value)
    # the first and last checkpoints differ, so the comparison above tells them apart
    assert any(not torch.equal(validated[0][k], validated[2][k]) for k in kept if kept[k].is_floating_point())


@pytest.mark.parametrize("score_last", [True, False])
def test_a_caller_that_checks_the_result_itself_spares_the_runs_last_validation(score_last, monkeypatch):
    from napari_unet.core.training.scoring import Score

    scored = []
    monkeypatch.setattr(Trainer, "_score", lambda self, network: scored.append(1) or Score(0.5, "AP@0.5", {}))
    trainer = _small_trainer(validate=True, steps=5, val_every=2, keep="last", tune_thresholds=False)
    trainer.score_last = score_last
    at = [u.step for u in trainer.run() if u.score is not None]
    assert at == ([2, 4, 5] if score_last else [2, 4]) and len(scored) == len(at)
    # without its own last score, the run claims none for the weights it returns (step 4's is not theirs)
    assert (trainer.result.best_score is not None) == score_last


@pytest.mark.parametrize("keep", ["best", "last"])
def test_scores_that_only_draw_the_progress_wait_while_validation_is_over_its_share_of_the_time(keep, monkeypatch):
    from napari_unet.core.training.scoring import Score
    from napari_unet.core.training.trainer import VALIDATION_SHARE

    def slow_score(self, network):  # a held-out image that takes long to predict
        time.sleep(0.2)
        return Score(0.5, "AP@0.5", {})

    monkeypatch.setattr(Trainer, "_score", slow_score)
    trainer = _small_trainer(validate=True, steps=10, val_every=1, keep=keep, tune_thresholds=False)
    trainer.score_last = False
    at = [u.step for u in trainer.run() if u.score is not None]
    if keep == "best":  # the scores pick the weights kept: each one is taken
        assert at == list(range(1, 11))
    else:  # the first score is drawn at once; the next waits until 0.2 s more would be VALIDATION_SHARE of the run
        assert at == [1] and trainer.result.seconds < 0.4 / VALIDATION_SHARE - 0.2


@pytest.mark.parametrize("expected", [1e-6, 0.2])
def test_a_score_expected_to_take_long_waits_from_the_first_one(expected, monkeypatch):
    from napari_unet.core.training.scoring import Score
    from napari_unet.core.training.trainer import VALIDATION_SHARE

    def slow_score(self, network):
        time.sleep(0.2)
        return Score(0.5, "AP@0.5", {})

    monkeypatch.setattr(Trainer, "_score", slow_score)
    trainer = _small_trainer(validate=True, steps=10, val_every=1, keep="last", tune_thresholds=False,
                             score_seconds=expected)
    trainer.score_last = False
    at = [u.step for u in trainer.run() if u.score is not None]
    if expected < 0.01:  # the caller expects a quick score (it fits after any step): drawn at once; the next waits
        assert at == [1]
    else:  # 0.2 s fits in VALIDATION_SHARE of the run only after 3.8 s: this run of 10 small steps draws none
        assert trainer.result.seconds < 0.2 / VALIDATION_SHARE - 0.2 and at == []


def test_the_same_seed_trains_the_same_weights_and_another_seed_does_not():
    # The model card's claim that `make default-model` rebuilds the shipped weights rests on this:
    # patches, augmentation and every step follow TrainConfig.seed (the script seeds the initial
    # weights itself, before building the network; here they are the same for all three runs).
    def train(seed):
        trainer = _small_trainer(validate=True, from_scratch=True, steps=4, val_every=2, ema=0.5, seed=seed)
        for _ in trainer.run():
            pass
        return trainer.result.model.network.state_dict(), trainer.result.model.config.thresholds

    (a, ta), (b, tb), (c, _) = train(0), train(0), train(1)
    assert ta == tb
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


@pytest.mark.parametrize("amp", [True, False])
def test_mixed_precision_computes_in_bfloat16_on_a_cpu_that_has_it_and_keeps_float32_weights(amp):
    from napari_unet.core.devices import mixed_precision

    trainer = _small_trainer(validate=False, steps=2, amp=amp, tune_thresholds=False)
    seen = []
    first_conv = next(m for m in trainer.network.modules() if isinstance(m, torch.nn.Conv2d))
    first_conv.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    run_to_end(trainer.run())
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    expected = torch.bfloat16 if amp and native else torch.float32
    assert mixed_precision(torch.device("cpu")) == (torch.bfloat16 if native else None)
    assert seen == [expected, expected]
    # the weights are trained (and kept) in float32 either way, and the steps' losses are real numbers
    assert all(v.dtype == torch.float32 for v in trainer.result.model.network.state_dict().values()
               if v.is_floating_point())
    assert all(np.isfinite(u.loss) for u in trainer.result.history)
