"""Fine-tuning on corrections: replay, the held-out plan, the check and its verdict, where the time goes."""

import copy

import numpy as np
import pytest
import tifffile
import torch

from napari_unet import load_model
from napari_unet.core.evaluation.metrics import InstanceCounts, match_instances
from napari_unet.core.models.model import Model
from napari_unet.core.progress import run
from napari_unet.core.training import FineTune, Stage, TrainConfig, Trainer, make_samples
from napari_unet.core.training.check import (
    FORGETTING_TOLERANCE,
    GRID,
    HELD_OUT_IOUS,
    Comparison,
    adopt,
    compare,
    count_table,
    region_counts,
    verdict,
)
from napari_unet.core.training.files import scale_to
from napari_unet.core.training.losses import distillation
from napari_unet.core.predict import inference as inference_module
from napari_unet.core.training import finetune as finetune_module
from napari_unet.core.training.finetune import average_models, finest_layers, plan_folds, toward
from napari_unet.core.models.u2net import U2Net
from napari_unet.core.training import check_crops
from napari_unet.core.training import replay as replay_module
from napari_unet.core.training.replay import is_replay, load_replay

from .conftest import DATA, small_model

KROMP = DATA / "kromp2020_train"


def _kromp_samples(model, names, *, labels_of=None):
    """Samples of kromp2020 images at the model's object size; ``labels_of`` maps a name to the
    image whose labels it gets (wrong corrections)."""
    samples = []
    for name in names:
        image = tifffile.imread(KROMP / "images" / f"{name}.tif")
        labels = tifffile.imread(KROMP / "labels" / f"{(labels_of or {}).get(name, name)}.tif")
        samples += make_samples(image, labels, model.config, name=name)
    return scale_to(samples, model.config.object_size)


# --- replay -------------------------------------------------------------------------------------


def test_the_default_model_ships_a_replay_set_of_its_own_training_images_with_a_part_kept_to_check():
    replay = load_replay(load_model("default").config)
    assert replay is not None and len(replay.train) >= 16 and len(replay.check) >= 8
    train_images = {s.name for s in replay.train}
    assert not train_images & {s.name for s in replay.check}
    for s in replay.train + replay.check:
        assert s.image.shape[0] == 1 and s.image.shape[1:] == s.labels.shape and s.zoom == 1.0
        assert (s.labels[s.reviewed] > 0).any()
        # normalised as the model sees the whole image (by its percentiles), not raw counts: a crop of dark
        # H&E nuclei lies partly below its image's low percentile (down to -1.7 in the default's set)
        assert s.image.dtype == np.float32 and -3 < s.image.min() < 0.5 < s.image.max() < 10


def test_the_replay_set_is_read_once_shared_read_only_and_read_again_when_its_file_changes(tmp_path, monkeypatch):
    config = load_model("default").config
    first, again = load_replay(config), load_replay(config)
    assert first.train[0] is again.train[0] and first.train is not again.train  # one copy, lists of their own
    with pytest.raises(ValueError, match="read-only"):
        first.check[0].image[0, 0, 0] = 1.0
    # a changed file (say, a model updated in place) is read again
    mine_path = tmp_path / f"mine{replay_module.SUFFIX}"
    mine_path.write_bytes(replay_module.replay_path(config.replay).read_bytes())
    monkeypatch.setattr(replay_module, "replay_path", lambda name: mine_path)
    mine = load_replay(config)
    assert mine.train[0] is not first.train[0] and np.array_equal(mine.train[0].image, first.train[0].image)
    with np.load(mine_path) as f:
        arrays = dict(f)
    arrays["images"] = 255 - arrays["images"]
    np.savez_compressed(mine_path, **arrays)
    assert not np.array_equal(load_replay(config).train[0].image, mine.train[0].image)


@pytest.mark.parametrize("share", [0.25, 0.5, 0.75])
def test_replay_patches_make_the_share_of_the_batches_asked_for(share):
    parent = load_model("default")
    samples = _kromp_samples(parent, ["Neuroblastoma_1"])
    trainer = Trainer(parent, samples, [], TrainConfig(steps=1, replay=share, patch=64), device="cpu")
    replayed = np.array([is_replay(s) for s in trainer.sampler.samples])
    assert replayed.sum() == len(load_replay(parent.config).train) and (~replayed).sum() == 1
    assert trainer.sampler._p[replayed].sum() == pytest.approx(share)
    drawn = np.random.default_rng(0).choice(len(replayed), size=4000, p=trainer.sampler._p)
    assert abs(replayed[drawn].mean() - share) < 0.03


def test_no_replay_when_switched_off_from_scratch_or_for_a_model_that_has_none():
    parent = load_model("default")
    samples = _kromp_samples(parent, ["Neuroblastoma_1"])
    for trainer in (
        Trainer(parent, samples, [], TrainConfig(steps=1, replay=0.0), device="cpu"),
        Trainer(parent, samples, [], TrainConfig(steps=1), device="cpu", from_scratch=True),
        Trainer(small_model(), samples, [], TrainConfig(steps=1), device="cpu"),
    ):
        assert trainer.replay is None
        assert not any(is_replay(s) for s in trainer.sampler.samples)


def test_frozen_batch_norm_keeps_the_parents_statistics_and_training_them_moves_them():
    parent = load_model("default")
    samples = _kromp_samples(parent, ["Neuroblastoma_1"])
    config = dict(steps=2, patch=64, batch_size=2, val_fraction=0.0)
    frozen = run(Trainer(parent, samples, [], TrainConfig(batch_norm="frozen", **config), device="cpu").run())
    trained = run(Trainer(parent, samples, [], TrainConfig(batch_norm="train", **config), device="cpu").run())
    key = next(k for k in parent.network.state_dict() if k.endswith("running_mean"))
    before = parent.network.state_dict()[key]
    assert np.array_equal(frozen.finetuned.network.state_dict()[key], before)
    assert not np.allclose(trained.finetuned.network.state_dict()[key], before)


def test_distillation_compares_the_replay_patches_of_each_batch_only(monkeypatch):
    from napari_unet.core.training import trainer as trainer_module

    parent = load_model("default")
    samples = _kromp_samples(parent, ["Neuroblastoma_1"])
    seen = []

    def recording(logits, teacher, mask):
        seen.append(len(logits))
        return real(logits, teacher, mask)

    real = trainer_module.distillation
    monkeypatch.setattr(trainer_module, "distillation", recording)
    drawn = []
    config = TrainConfig(steps=6, patch=64, batch_size=4, replay=0.5, distill=1.0, val_fraction=0.0)
    trainer = Trainer(parent, samples, [], config, device="cpu")
    batch = trainer.sampler.batch_with_sources

    def recording_batch(n):
        out = batch(n)
        drawn.append(sum(is_replay(trainer.sampler.samples[i]) for i in out[3]))
        return out

    monkeypatch.setattr(trainer.sampler, "batch_with_sources", recording_batch)
    run(trainer.run())
    assert seen == [n for n in drawn if n] and 0 < sum(drawn) < 24
    # no teacher without replay, or with distill 0
    assert Trainer(parent, samples, [], TrainConfig(steps=1, replay=0.0, distill=1.0), device="cpu").teacher is None
    assert Trainer(parent, samples, [], TrainConfig(steps=1, distill=0.0), device="cpu").teacher is None


def _mean_kl_on_check_crops(model, parent, crops) -> float:
    network, reference = model.network.eval(), parent.network.eval()
    total = 0.0
    with torch.no_grad():
        for crop in crops:
            x = torch.from_numpy(crop.image[None])
            everywhere = torch.ones((1, *crop.image.shape[1:]), dtype=torch.bool)
            total += float(distillation(network(x), reference(x), everywhere))
    return total / len(crops)


def test_distillation_keeps_a_fine_tune_on_wrong_corrections_nearer_its_parent_on_crops_it_never_saw():
    """Labels of another image teach nonsense; with the parent's outputs as targets on the replay patches, the
    fine-tune's outputs on the held-apart check crops of the parent's data stay nearer the parent's."""
    parent = load_model("default")
    wrong = _kromp_samples(parent, ["Neuroblastoma_2"], labels_of={"Neuroblastoma_2": "Neuroblastoma_9"})
    crops = load_replay(parent.config).check[:8]
    base = dict(steps=30, patch=128, batch_size=4, lr=3e-3, replay=0.5, val_fraction=0.0, seed=1)
    kl = {}
    for distill in (0.0, 10.0):
        config = TrainConfig(distill=distill, **base)
        result = run(Trainer(parent, wrong, [], config, device="cpu").run())
        kl[distill] = _mean_kl_on_check_crops(result.finetuned, parent, crops)
    assert kl[10.0] < 0.7 * kl[0.0], kl


def test_the_default_model_ships_its_own_counts_on_its_replay_check_crops():
    parent = load_model("default")
    replay = load_replay(parent.config)
    stored = check_crops.stored_counts(parent, replay)
    assert stored is not None and len(stored) == len(replay.check) * GRID * GRID
    made = check_crops.replay_counts(parent, replay, device="cpu")
    # the same true objects, and the same score here (a CPU of another kind may round a border pixel otherwise)
    assert sum(c.tp + c.fn for c in stored) == sum(c.tp + c.fn for c in made)
    assert sum(stored).average_precision[0] == pytest.approx(sum(made).average_precision[0], abs=0.003)
    # another model's weights, or other thresholds, have none stored
    other = toward(parent, small_finetune_of(parent), 0.5)
    assert check_crops.stored_counts(other, replay) is None
    retuned = Model(parent.network, parent.config.model_copy(
        update={"thresholds": parent.config.thresholds.model_copy(update={"interior": 0.8})}))
    assert check_crops.stored_counts(retuned, replay) is None


def small_finetune_of(parent):
    """The parent with every weight moved a little (a model of the same architecture, other weights)."""
    changed = copy.deepcopy(parent.network)
    with torch.no_grad():
        for value in changed.parameters():
            value.mul_(1.01)
    return Model(changed, parent.config)


def test_the_parent_predicts_a_few_check_crops_to_confirm_its_stored_counts_all_where_they_differ(monkeypatch):
    parent = load_model("default")
    replay = load_replay(parent.config)
    predicted = []
    real = check_crops.replay_counts

    def counting(model, replay_set, *, device="cpu"):
        predicted.append(len(replay_set.check))
        return real(model, replay_set, device=device)

    monkeypatch.setattr(check_crops, "replay_counts", counting)
    counts, seconds = check_crops.parent_replay_counts(parent, replay, device="cpu")
    assert predicted == [check_crops.SPOT] and seconds > 0
    assert np.array_equal(count_table(counts), count_table(check_crops.stored_counts(parent, replay)))
    # stored counts this machine does not confirm are not used: every crop is predicted
    stored = check_crops.stored_counts(parent, replay)
    first = stored[0]
    wrong = [InstanceCounts(first.thresholds, first.tp + 1, first.fp, first.fn)] + stored[1:]
    monkeypatch.setattr(check_crops, "stored_counts", lambda model, replay_set: wrong)
    predicted.clear()
    counts, _ = check_crops.parent_replay_counts(parent, replay, device="cpu")
    # (those it predicted to confirm them count, the others are predicted now)
    assert predicted == [check_crops.SPOT, len(replay.check) - check_crops.SPOT]
    assert np.array_equal(count_table(counts), count_table(real(parent, replay)))
    # a GPU's arithmetic is not the CPU's: there the stored counts are not even read
    monkeypatch.setattr(check_crops, "stored_counts", lambda model, replay_set: pytest.fail("read on a GPU"))
    monkeypatch.setattr(check_crops, "resolve_device", lambda device: torch.device("cuda"))
    predicted.clear()
    check_crops.parent_replay_counts(parent, replay, device="cpu")
    assert predicted == [len(replay.check)]


def test_stored_counts_are_written_atomically_and_read_back_alike(tmp_path, monkeypatch):
    parent = load_model("default")
    replay = load_replay(parent.config)
    few = replay_module.ReplaySet(replay.name, [], replay.check[:2])
    path = tmp_path / f"default_nuclei{check_crops.SUFFIX}"
    monkeypatch.setattr(check_crops, "counts_path", lambda name: path)
    assert check_crops.write_counts(parent, few) == path and list(tmp_path.iterdir()) == [path]
    stored, made = check_crops.stored_counts(parent, few), check_crops.replay_counts(parent, few)
    assert np.array_equal(count_table(stored), count_table(made))
    path.write_text("{ not json")  # a damaged file: made anew, not trusted
    assert check_crops.stored_counts(parent, few) is None


# --- the held-out plan ----------------------------------------------------------------------------


def test_few_images_take_turns_being_held_out_many_give_whole_held_out_images_one_gives_a_band():
    parent = load_model("default")
    samples = _kromp_samples(parent, ["Neuroblastoma_1", "Neuroblastoma_2", "Neuroblastoma_3"])
    config = TrainConfig(steps=1)
    folds = plan_folds(samples, config)
    assert len(folds) == 3
    for i, (train, val) in enumerate(folds):
        assert [s.name for s in val] == [samples[i].name]
        assert sorted(s.name for s in train) == sorted(s.name for j, s in enumerate(samples) if j != i)
    many = [s for s in samples for _ in range(2)]  # six planes
    (train, val), = plan_folds(many, config)
    assert len(val) >= 1 and len(train) + len(val) == 6
    (train, val), = plan_folds(samples[:1], config)  # one image: a band of it
    assert len(train) == len(val) == 1 and not (train[0].reviewed & val[0].reviewed).any()
    assert plan_folds(samples, config, rotate=False)[0][1] != []  # from scratch: one run, still validated


def test_averaging_models_averages_their_weights():
    a, b = small_model(seed=1), small_model(seed=2)
    mean = average_models([a, b])
    for key, value in mean.network.state_dict().items():
        x, y = a.network.state_dict()[key], b.network.state_dict()[key]
        if value.is_floating_point():
            np.testing.assert_allclose(value, (x + y) / 2, rtol=1e-6, atol=1e-7)


def test_a_blend_lies_the_share_asked_for_of_the_way_from_the_parent_to_the_fine_tune():
    parent, tuned = small_model(seed=1), small_model(seed=2)
    for share in (0.25, 0.5, 1.0):
        blend = toward(parent, tuned, share)
        assert blend.config is tuned.config and blend.network is not tuned.network
        for key, value in blend.network.state_dict().items():
            x, y = parent.network.state_dict()[key], tuned.network.state_dict()[key]
            if value.is_floating_point():
                np.testing.assert_allclose(value, x + share * (y - x), rtol=1e-5, atol=1e-6)
    # the parent's weights are untouched
    torch.testing.assert_close(parent.network.state_dict(), small_model(seed=1).network.state_dict())


def test_a_blend_can_keep_the_finest_layers_nearer_the_parent():
    parent, tuned = small_model(seed=1), small_model(seed=2)
    finest = finest_layers(tuned.network)
    depth = tuned.network.depth
    assert finest == (f"ups.{depth - 2}.", f"ups.{depth - 1}.", "head.")
    blend = toward(parent, tuned, 0.7, 0.35)
    shares = set()
    for key, value in blend.network.state_dict().items():
        x, y = parent.network.state_dict()[key], tuned.network.state_dict()[key]
        if value.is_floating_point() and not torch.equal(x, y):
            share = 0.35 if key.startswith(finest) else 0.7
            np.testing.assert_allclose(value, x + share * (y - x), rtol=1e-5, atol=1e-6)
            shares.add(share)
    assert shares == {0.35, 0.7}
    # without a share of their own, they go as far as the rest
    torch.testing.assert_close(toward(parent, tuned, 0.7, None).network.state_dict(),
                               toward(parent, tuned, 0.7, 0.7).network.state_dict())


def test_finest_layers_are_the_last_levels_of_each_seed_network():
    u2net = U2Net(1, 3)
    n = len(u2net.decoder)
    finest = finest_layers(u2net)
    assert finest == (f"decoder.{n - 2}.", f"decoder.{n - 1}.", f"sides.{n - 1}.", f"sides.{n}.", "fuse.")
    names = [name for name, _ in u2net.named_parameters()]
    assert all(any(name.startswith(p) for name in names) for p in finest)  # each names real layers
    assert not any(name.startswith(finest) for name in names if name.startswith("encoder."))
    assert finest_layers(torch.nn.Conv2d(1, 3, 3)) == ()  # a network that names none: one share throughout


# --- the check -------------------------------------------------------------------------------------


def test_region_counts_add_up_to_the_whole_images_counts_and_leave_out_objects_not_reviewed():
    truth = np.zeros((80, 80), np.uint16)
    pred = np.zeros_like(truth)
    for k, (y, x) in enumerate([(5, 5), (5, 45), (45, 5), (45, 45), (25, 25)], start=1):
        truth[y : y + 10, x : x + 10] = k
    pred[5:15, 5:15] = 1  # a match
    pred[45:55, 47:57] = 2  # IoU 8/12 > 0.5: a match
    pred[60:70, 60:70] = 3  # a false positive
    reviewed = np.ones_like(truth, bool)
    cells = region_counts(pred, truth, reviewed, grid=4)
    whole = match_instances(pred, truth, thresholds=(0.5,))
    assert len(cells) == 16 and sum(c.tp[0] + c.fp[0] + c.fn[0] > 0 for c in cells) == 6  # six hold an object
    assert sum(int(c.tp[0]) for c in cells) == whole.tp[0] == 2
    assert sum(int(c.fp[0]) for c in cells) == whole.fp[0] == 1
    assert sum(int(c.fn[0]) for c in cells) == whole.fn[0] == 3
    reviewed[:, 40:] = False
    inside = region_counts(pred, truth, reviewed, grid=4)  # the grid covers the reviewed box
    assert [sum(int(getattr(c, k)[0]) for c in inside) for k in ("tp", "fp", "fn")] == [1, 0, 2]
    assert len(inside) == 16 and sum(c.tp[0] + c.fp[0] + c.fn[0] > 0 for c in inside) == 3
    assert region_counts(pred, truth, np.zeros_like(reviewed)) == []
    # at several IoU thresholds: the shifted square (IoU 8/12) matches up to 0.65, not from 0.7 on
    reviewed[:] = True
    cells = region_counts(pred, truth, reviewed, thresholds=HELD_OUT_IOUS)
    pooled = sum(cells)
    np.testing.assert_array_equal(pooled.thresholds, HELD_OUT_IOUS)
    for k in ("tp", "fp", "fn"):
        np.testing.assert_array_equal(getattr(pooled, k), getattr(match_instances(pred, truth), k))
    assert pooled.tp.tolist() == [2, 2, 2, 2, 1, 1, 1, 1, 1]
    # ids far beyond the number of pixels (another program's labels) count the same
    renumbered = [region_counts(p, t, reviewed, thresholds=HELD_OUT_IOUS) for p, t in
                  [(pred.astype(np.int64) * 10**9, truth), (pred, truth.astype(np.uint32) * 70_001)]]
    for counts in renumbered:
        for a, b in zip(counts, cells):
            for k in ("tp", "fp", "fn"):
                np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    with pytest.raises(ValueError, match="0.5 or above"):
        region_counts(pred, truth, reviewed, thresholds=(0.3, 0.5))


def _counts(tp, fp, fn):
    return match_instances(*_objects(tp, fp, fn), thresholds=(0.5,))


def _objects(tp, fp, fn):
    """Labels with ``tp`` matched, ``fp`` unmatched predicted and ``fn`` missed objects."""
    n = tp + fp + fn
    pred, truth = np.zeros((8, 8 * max(n, 1)), np.uint16), np.zeros((8, 8 * max(n, 1)), np.uint16)
    for k in range(n):
        box = (slice(2, 6), slice(8 * k + 2, 8 * k + 6))
        if k < tp + fp:
            pred[box] = k + 1
        if k < tp or k >= tp + fp:
            truth[box] = k + 1
    return pred, truth


def test_compare_gives_pooled_scores_and_a_paired_interval_of_the_gain():
    parent = [_counts(3, 1, 1), _counts(2, 2, 0), _counts(4, 0, 1)]
    same = compare("x", parent, parent)
    assert same.parent == same.finetuned == pytest.approx(9 / 14) and same.low == same.high == 0.0
    assert same.objects == 11
    perfect = [_counts(4, 0, 0), _counts(2, 0, 0), _counts(5, 0, 0)]
    better = compare("x", parent, perfect)
    assert better.gain == pytest.approx(1 - 9 / 14) and better.low > 0
    assert compare("x", perfect, parent).high < 0
    with pytest.raises(ValueError, match="same regions"):
        compare("x", parent, parent[:2])


def test_the_held_out_score_tells_apart_fine_tunes_that_find_the_same_nuclei_with_better_outlines():
    truth = np.zeros((64, 64), np.uint16)
    loose, tight = np.zeros_like(truth), np.zeros_like(truth)
    for k, (y, x) in enumerate([(4, 4), (4, 36), (36, 4), (36, 36)], start=1):
        truth[y : y + 20, x : x + 20] = k
        loose[y : y + 20, x + 6 : x + 26] = k  # IoU 14/26: found at 0.5, nowhere above
        tight[y : y + 20, x + 1 : x + 21] = k  # IoU 19/21
    reviewed = np.ones_like(truth, bool)
    at_half = compare("x", region_counts(loose, truth, reviewed), region_counts(tight, truth, reviewed))
    assert at_half.gain == 0 and at_half.metric == "AP@0.5"  # a tie: AP@0.5 cannot choose
    before = region_counts(loose, truth, reviewed, thresholds=HELD_OUT_IOUS)
    after = region_counts(tight, truth, reviewed, thresholds=HELD_OUT_IOUS)
    held_out = compare("x", before, after)
    assert held_out.metric == "mean AP@0.5:0.9" and "mean AP@0.5:0.9 0.111 -> 1.000" in str(held_out)
    assert held_out.parent == pytest.approx(1 / 9) and held_out.finetuned == 1.0 and held_out.objects == 4
    assert [round(t, 2) for t, _, _ in held_out.by_iou] == [round(t, 2) for t in HELD_OUT_IOUS]
    assert held_out.as_dict()["by_iou"][0] == {"iou": 0.5, "parent": 1.0, "finetuned": 1.0}
    assert adopt(held_out, None) is True and adopt(compare("x", after, before), None) is False
    with pytest.raises(ValueError, match="same IoU thresholds"):
        compare("x", before, region_counts(tight, truth, reviewed))


def _comparison(gain, low=None):
    return Comparison("x", 0.5, 0.5 + gain, gain - 0.05 if low is None else low, gain + 0.05, 100)


def test_a_fine_tune_is_adopted_only_when_better_on_held_out_corrections_and_it_did_not_forget():
    assert adopt(_comparison(0.04), _comparison(0.0)) is True
    assert adopt(_comparison(0.04), _comparison(-FORGETTING_TOLERANCE + 0.001)) is True
    # a loss beyond the tolerance refuses the fine-tune when its interval is below zero, not when it is noise
    assert adopt(_comparison(0.04), _comparison(-FORGETTING_TOLERANCE - 0.001)) is True
    beyond_doubt = Comparison("x", 0.5, 0.5 - FORGETTING_TOLERANCE - 0.01, -0.06, -0.001, 300)
    assert adopt(_comparison(0.04), beyond_doubt) is False
    assert adopt(_comparison(0.0), _comparison(0.0)) is False
    assert adopt(_comparison(-0.01), None) is False
    assert adopt(None, _comparison(0.0)) is None
    text = verdict(_comparison(0.04), Comparison("x", 0.5, 0.45, -0.09, -0.01, 300))
    assert text.startswith("not adopted") and "the data the parent was trained on" in text
    assert "+0.040" in text and "-0.050" in text and "interval" in text
    assert "correct more images" in verdict(_comparison(0.01, low=-0.02), _comparison(0.0))
    # a tie at every IoU is no evidence either way: the verdict says what would be
    tie = Comparison("x", 0.9, 0.9, -0.01, 0.01, 40, "mean AP@0.5:0.9", ((0.5, 0.9, 0.9), (0.9, 0.77, 0.77)))
    text = verdict(tie, _comparison(0.0))
    assert text.startswith("not adopted: it segments your held-out corrections exactly as the parent does")
    assert "correct an image the parent gets wrong" in text


# --- whole runs on real data -------------------------------------------------------------------------


def test_a_fine_tune_on_wrong_corrections_is_refused_by_the_images_it_did_not_train_on():
    parent = load_model("default")
    names = ["Neuroblastoma_2", "Neuroblastoma_9"]
    # each image gets the other's labels: wrong everywhere, and the held-out image shows it
    samples = _kromp_samples(parent, names, labels_of={"Neuroblastoma_2": "Neuroblastoma_9",
                                                       "Neuroblastoma_9": "Neuroblastoma_2"})
    config = TrainConfig(steps=40, lr=3e-3, replay=0.2, val_every=20)
    finetune = FineTune(parent, samples, config, device="cpu")
    updates = []
    result = run(finetune.run(), updates.append)
    assert result.folds == 2 and result.steps == 40
    assert result.user_check.gain < 0 and result.improved is False
    assert result.model is parent and result.finetuned is not parent
    assert result.verdict().startswith("not adopted")
    assert result.finetuned.config.provenance["check"]["held_out"]["gain"] == result.user_check.gain
    stages = [u.name for u in updates if isinstance(u, Stage)]
    assert stages[0].startswith("scoring the parent") and stages[3].startswith("checking")
    assert [s.startswith("run ") for s in stages[1:3]] == [True, True]
    assert len(stages) == 4 or stages[4].startswith("the fine-tune forgot")  # and then, pulled back, refused too
    steps = [u.step for u in updates if not isinstance(u, Stage)]
    assert steps == list(range(1, 41))  # one count through both runs


def test_the_time_split_accounts_for_the_whole_run(monkeypatch):
    parent = load_model("default")
    samples = _kromp_samples(parent, ["Neuroblastoma_1", "Neuroblastoma_5"])
    searches = []
    search = inference_module.iter_estimate_scale
    monkeypatch.setattr(inference_module, "iter_estimate_scale", lambda *a: searches.append(1) or search(*a))
    result = run(FineTune(parent, samples, TrainConfig(steps=6, patch=128, val_every=3), device="cpu").run())
    timing = result.timing
    assert set(timing) >= {"steps", "validation", "parent", "checks", "preparation"}
    assert sum(timing.values()) == pytest.approx(result.seconds, rel=1e-6)
    assert min(timing["steps"], timing["parent"], timing["checks"]) > 0
    # a score of a run's held-out image would take about what the parent's did: far more than VALIDATION_SHARE
    # of three steps, so none is drawn
    assert timing["validation"] == 0
    split = result.time_split()
    assert split.startswith(f"{result.seconds:.0f} s: ") and "training steps" in split and "checks" in split
    # a fine-tune of the shipped model zooms new images as the shipped model does (tests/test_size_model.py), so
    # the check zooms each held-out image as it did for the parent: one size search for each, not one more per run
    assert result.finetuned.config.sizing == "default" and parent.config.sizing is None
    assert len(searches) == len(samples) == 2


def test_a_fine_tune_stopped_before_it_starts_returns_the_parent_untouched():
    parent = load_model("default")
    finetune = FineTune(parent, _kromp_samples(parent, ["Neuroblastoma_1", "Neuroblastoma_5"]),
                        TrainConfig(steps=10), device="cpu")
    finetune.stop()
    result = run(finetune.run())
    assert result.steps == 0 and result.stopped and result.model is parent and result.improved is False


def test_the_checks_judge_the_blend_that_is_kept(monkeypatch):
    parent = load_model("default")
    samples = _kromp_samples(parent, ["Neuroblastoma_1", "Neuroblastoma_5"])
    made, judged = [], []
    real_toward = finetune_module.toward

    def recording_toward(start, model, share, finest=None):
        made.append((start, (share, finest), real_toward(start, model, share, finest)))
        return made[-1][2]

    def user_check(self, models, parent_val, sizes):
        judged.extend(models)
        return _comparison(0.03, low=0.01)

    monkeypatch.setattr(finetune_module, "toward", recording_toward)
    monkeypatch.setattr(FineTune, "_user_check", user_check)
    monkeypatch.setattr(FineTune, "_forgetting_check", lambda self, model, replay, parent: _comparison(0.0))
    share, finest = 0.6, 0.3  # a blend asked for, not the default one
    config = TrainConfig(steps=4, patch=128, val_every=2, blend=share, blend_finest=finest)
    result = run(FineTune(parent, samples, config, device="cpu").run())
    assert [s for _, s, _ in made] == [(share, finest)] * 2 and all(start is parent for start, _, _ in made)
    assert len(judged) == 2 and all(a is b for a, (_, _, b) in zip(judged, made))  # each run's, on its held-out image
    assert result.improved and (result.blend, result.blend_finest) == (share, finest) and not result.pulled_back
    expected = average_models(judged).network.state_dict()
    torch.testing.assert_close(result.model.network.state_dict(), expected)
    assert result.model.config.provenance["blend"] == share and result.model.config.provenance["blend_finest"] == finest
    assert result.verdict().startswith("adopted: better")


@pytest.mark.parametrize("closer_forgets", [False, True])
def test_a_fine_tune_that_forgot_is_pulled_back_to_half_its_share_and_checked_again(monkeypatch, closer_forgets):
    parent = load_model("default")
    samples = _kromp_samples(parent, ["Neuroblastoma_1", "Neuroblastoma_5"])
    checked: list = []
    forgot_it = Comparison("x", 0.5, 0.5 - FORGETTING_TOLERANCE - 0.02, -0.07, -0.01, 300)

    judged: list = []

    def user_check(self, models, parent_val, sizes):
        judged.append(models)
        return _comparison(0.05 if not checked else 0.03, low=0.01)

    def forgetting_check(self, model, replay, replay_parent):
        checked.append(model)
        return forgot_it if len(checked) == 1 or closer_forgets else _comparison(-0.01, low=-0.04)

    monkeypatch.setattr(FineTune, "_user_check", user_check)
    monkeypatch.setattr(FineTune, "_forgetting_check", forgetting_check)
    updates = []
    config = TrainConfig(steps=4, patch=128, val_every=2, blend=0.5, blend_finest=0.3)
    result = run(FineTune(parent, samples, config, device="cpu").run(), updates.append)
    assert any(isinstance(u, Stage) and "25% of the way from the parent" in u.name for u in updates)
    blended, closer = checked
    assert len(judged) == 1  # the held-out corrections judge only the model the verdict is about
    # half the share: halfway between the parent and the blend the checks refused
    expected = {k: (v + parent.network.state_dict()[k]) / 2 for k, v in blended.network.state_dict().items()
                if v.is_floating_point()}
    for key, value in closer.network.state_dict().items():
        if key in expected:
            torch.testing.assert_close(value, expected[key])
    if closer_forgets:
        assert result.model is parent and result.blend == 0.5 and result.finetuned.network is blended.network
        assert not result.pulled_back and result.verdict().startswith("not adopted")
    else:
        assert result.model is result.finetuned and result.finetuned.network is closer.network
        assert result.blend == 0.25 and result.pulled_back and result.finetuned.config.provenance["blend"] == 0.25
        assert result.blend_finest == config.blend_finest / 2 == result.finetuned.config.provenance["blend_finest"]
        assert result.verdict().startswith("adopted 25% of the way from the parent to the fine-tune")
