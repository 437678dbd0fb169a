"""Score a network on reviewed samples: the number that decides whether a fine-tune helped.

Instances: AP at IoU 0.5 (DSB 2018 / StarDist convention, pooled over
objects), objects outside the reviewed region ignored. Semantic: mean IoU
over reviewed pixels. Each sample is predicted on the bounding box of its
reviewed region plus context, with the same tiled predictor as inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..models.config import ModelConfig, ThresholdsConfig
from ..evaluation.metrics import InstanceCounts, match_instances, mean_iou
from ..predict.inference import Segmenter
from ..models.model import Model
from ..labels.postprocess import instance_labels, semantic_labels
from ..progress import run
from .data import Sample

CONTEXT = 64


@dataclass(frozen=True)
class Score:
    """``value`` is what is compared (higher is better); ``details`` are for people."""

    value: float
    name: str
    details: dict

    def __str__(self) -> str:
        return f"{self.name} {self.value:.3f}"


@dataclass(frozen=True)
class Prediction:
    """A validation sample's probabilities and truth, cropped to its reviewed region plus context."""

    prob: np.ndarray
    labels: np.ndarray
    reviewed: np.ndarray
    target: np.ndarray
    object_size: float | None = None  # typical diameter (pixels) at the resolution of prob, when known


def predict_samples(
    network: torch.nn.Module,
    samples: list[Sample],
    config: ModelConfig,
    *,
    device="cpu",
    estimate_size: bool = False,
    object_sizes: list[float | None] | None = None,
) -> list[Prediction]:
    """Run ``network`` (in eval mode, on a copy) over each sample's reviewed region.

    Each sample is zoomed as its labels say (``Sample.zoom``), or, with ``estimate_size``, as the
    model's estimate of the object size says (made with the shipped model that sizes for it, where its config
    names one), which is how a user's other images are predicted. ``object_sizes``: with ``estimate_size``,
    each sample's estimate where one was made already (:func:`estimate_sizes`, the same model sizing), not
    searched for again.
    """
    if not samples:
        raise ValueError("no validation samples to score on")
    if object_sizes is not None and len(object_sizes) != len(samples):
        raise ValueError(f"expected an object size for each of the {len(samples)} samples, got {len(object_sizes)}")
    estimate = estimate_size and config.rescales
    segmenter = Segmenter(Model(network, config), device=device, object_size="auto" if estimate else None)
    known = object_sizes if estimate and object_sizes is not None else [None] * len(samples)
    predictions = []
    for s, size in zip(samples, known):
        if size is not None:
            segmenter.scale = config.object_size / size  # estimated already
        elif estimate:
            segmenter.new_image()
        else:
            segmenter.scale = s.zoom  # the sample's own object size is known: no estimate
        window = _reviewed_box(s.reviewed)
        prob = run(segmenter.iter_normalized(s.image[(slice(None), *window)]))
        predictions.append(
            Prediction(prob, s.labels[window], s.reviewed[window], s.target[window], segmenter.image_object_size)
        )
    return predictions


def estimate_sizes(model: Model, samples: list[Sample], *, device="cpu") -> list[float | None]:
    """The object size (pixels) of each sample's reviewed region as :func:`predict_samples` estimates it with
    ``estimate_size``, without the prediction; None for each where the model does not rescale."""
    if not model.config.rescales:
        return [None] * len(samples)
    segmenter = Segmenter(model, device=device, object_size="auto")
    sizes = []
    for s in samples:
        segmenter.new_image()
        run(segmenter.iter_prepare_normalized(s.image[(slice(None), *_reviewed_box(s.reviewed))]))
        sizes.append(segmenter.image_object_size)
    return sizes


def score_predictions(
    predictions: list[Prediction], config: ModelConfig, thresholds: ThresholdsConfig | None = None
) -> Score:
    """Score predictions; instances are made with ``thresholds`` (the model's own by default)."""
    if config.task == "instances":
        counts = None
        for p in predictions:
            labels = instance_labels(p.prob, thresholds=thresholds or config.thresholds, object_size=p.object_size)
            c = match_instances(labels, p.labels, ignore=~p.reviewed)
            counts = c if counts is None else counts + c
        assert isinstance(counts, InstanceCounts)
        return Score(float(counts.average_precision[0]), "AP@0.5", counts.as_dict())
    # class ids (two classes: nonzero labels are foreground), ignored outside the review
    ious = [mean_iou(semantic_labels(p.prob), p.target, num_classes=config.num_classes) for p in predictions]
    return Score(float(np.nanmean(ious)), "mean IoU", {"mean_iou_per_sample": [float(v) for v in ious]})


def score(network: torch.nn.Module, samples: list[Sample], config: ModelConfig, *, device="cpu") -> Score:
    """Score ``network`` (in eval mode, on a copy) on ``samples``."""
    return score_predictions(predict_samples(network, samples, config, device=device), config)


def _reviewed_box(reviewed: np.ndarray) -> tuple[slice, slice]:
    ys, xs = np.nonzero(reviewed)
    y0, y1 = max(0, ys.min() - CONTEXT), min(reviewed.shape[0], ys.max() + 1 + CONTEXT)
    x0, x1 = max(0, xs.min() - CONTEXT), min(reviewed.shape[1], xs.max() + 1 + CONTEXT)
    return slice(y0, y1), slice(x0, x1)

