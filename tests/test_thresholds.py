"""Post-processing thresholds: saved with the model, used by prediction, tuned on validation data."""

from dataclasses import replace

import numpy as np
import pytest

from napari_unet.core.models.config import ModelConfig, ThresholdsConfig
from napari_unet.core.models.model import Model, load_model
from napari_unet.core.labels.postprocess import instance_labels
from napari_unet.core.training import TrainConfig, Trainer, make_samples
from napari_unet.core.training.scoring import Prediction, predict_samples, score_predictions
from napari_unet.core.training.thresholds import tune_thresholds

from .conftest import small_model


def _unsure_pair():
    """Two touching discs whose neck the network finds almost as interior as their centres."""
    yy, xx = np.mgrid[:40, :60]
    a = (yy - 20) ** 2 + (xx - 20) ** 2 < 12**2
    b = (yy - 20) ** 2 + (xx - 40) ** 2 < 12**2
    truth = np.zeros((40, 60), np.uint16)
    truth[a], truth[b & ~a] = 1, 2
    centre = ((yy - 20) ** 2 + (xx - 20) ** 2 < 7**2) | ((yy - 20) ** 2 + (xx - 40) ** 2 < 7**2)
    prob = np.zeros((3, 40, 60), np.float32)
    fg = a | b
    prob[1] = np.where(centre, 0.95, np.where(fg, 0.65, 0.0))
    prob[2] = np.where(fg, 1 - prob[1], 0.0)
    prob[0] = 1 - prob[1] - prob[2]
    return prob, truth


def test_instance_labels_follow_the_thresholds():
    prob, truth = _unsure_pair()
    assert instance_labels(prob).max() == 1  # at 0.5 the neck joins the two seeds
    assert instance_labels(prob, thresholds=ThresholdsConfig(interior=0.8)).max() == 2


def test_tuning_finds_thresholds_that_separate_what_the_defaults_merge():
    prob, truth = _unsure_pair()
    predictions = [Prediction(prob, truth, np.ones(truth.shape, bool), (truth > 0).astype(np.uint8))]
    config = ModelConfig(network=dict(width=4, depth=1))
    thresholds, score = tune_thresholds(predictions, config)
    assert 0.65 < thresholds.interior < 0.95
    assert score.value == 1.0
    # ties keep the model's own: where every choice scores alike nothing moves
    flat = [Prediction(np.stack([np.ones((8, 8)), np.zeros((8, 8)), np.zeros((8, 8))]).astype(np.float32),
                       np.zeros((8, 8), np.uint16), np.ones((8, 8), bool), np.zeros((8, 8), np.uint8))]
    own = config.model_copy(update={"thresholds": ThresholdsConfig(interior=0.65, foreground=0.35)})
    assert tune_thresholds(flat, own)[0] == own.thresholds


def test_the_validation_score_splits_seeds_at_the_samples_object_size(rng):
    prob, truth = _unsure_pair()
    config = ModelConfig(network=dict(width=4, depth=1))
    whole = np.ones(truth.shape, bool)
    target = (truth > 0).astype(np.uint8)
    joined = score_predictions([Prediction(prob, truth, whole, target)], config)
    split = score_predictions([Prediction(prob, truth, whole, target, object_size=24)], config)
    assert joined.value < 1.0 and split.value == 1.0
    # predict_samples gives each sample the object size of its own pixels: the model's over its zoom
    image = rng.random((40, 60)).astype(np.float32)
    sized = config.model_copy(update={"object_size": 20.0})
    sample = replace(make_samples(image, truth, sized)[0], zoom=0.5)
    (p,) = predict_samples(small_model().network, [sample], sized)
    assert p.object_size == 40.0 and p.prob.shape[1:] == p.labels.shape


def test_thresholds_travel_in_the_model_file_and_drive_segmentation(tmp_path):
    prob, _ = _unsure_pair()
    model = small_model()
    tuned = Model(model.network, model.config.model_copy(update={"thresholds": ThresholdsConfig(interior=0.8)}))
    tuned.save(tmp_path / "m.safetensors")
    loaded = load_model(tmp_path / "m.safetensors")
    assert loaded.config.thresholds == ThresholdsConfig(interior=0.8, foreground=0.5)
    from napari_unet.core.predict.inference import Segmenter

    assert Segmenter(loaded, device="cpu").labels(prob).max() == 2
    assert Segmenter(model, device="cpu").labels(prob).max() == 1


def _samples(rng):
    labels = np.zeros((96, 96), np.uint16)
    labels[10:40, 10:40], labels[50:85, 45:80], labels[15:35, 60:85] = 1, 2, 3
    image = (labels > 0).astype(np.float32) + rng.normal(0, 0.2, labels.shape).astype(np.float32)
    return make_samples(image, labels, small_model().config)


def test_a_finished_run_adopts_tuned_thresholds_and_tunes_the_parent_alike(rng, monkeypatch):
    from napari_unet.core.training import trainer as trainer_module
    from napari_unet.core.training.scoring import Score

    calls = []

    def fake_tune(predictions, config):
        calls.append(len(predictions))
        return ThresholdsConfig(interior=0.9, foreground=0.7), Score(0.99 - 0.01 * len(calls), "AP@0.5", {})

    monkeypatch.setattr(trainer_module, "tune_thresholds", fake_tune)
    samples = _samples(rng)
    parent = small_model()
    config = TrainConfig(steps=2, patch=64, batch_size=2, val_every=2, val_fraction=0)
    result = _result(Trainer(parent, samples, samples, config, device="cpu").run())
    assert len(calls) == 2  # the parent, then the fine-tuned model, on the same validation samples
    assert result.parent_score.value == pytest.approx(0.98)  # the parent at its best thresholds
    assert result.best_score.value == pytest.approx(0.97)
    assert result.improved is False and result.model is parent  # compared on equal terms
    assert result.finetuned.config.thresholds == ThresholdsConfig(interior=0.9, foreground=0.7)
    assert result.finetuned.config.provenance["thresholds_tuned"] == {"interior": 0.9, "foreground": 0.7}
    assert parent.config.thresholds == ThresholdsConfig()  # the parent itself is never changed


def test_a_stopped_run_returns_without_tuning(rng, monkeypatch):
    from napari_unet.core.training import trainer as trainer_module

    def no_tuning(*args):
        raise AssertionError("a stopped run must not tune")

    monkeypatch.setattr(trainer_module, "tune_thresholds", no_tuning)
    samples = _samples(rng)
    trainer = Trainer(small_model(), samples, samples, TrainConfig(steps=50, patch=64, batch_size=2, val_every=1,
                                                                    val_fraction=0), device="cpu")
    gen = trainer.run()
    next(gen)
    trainer.stop()
    result = _result(gen)
    assert result.stopped and result.finetuned.config.thresholds == ThresholdsConfig()


def _result(gen):
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return stop.value
