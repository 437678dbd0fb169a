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

from ..config import ModelConfig
from ..metrics import InstanceCounts, match_instances, mean_iou
from ..inference import Segmenter
from ..model import Model
from ..postprocess import instance_labels, semantic_labels
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


def score(network: torch.nn.Module, samples: list[Sample], config: ModelConfig, *, device="cpu") -> Score:
    """Score ``network`` (in eval mode, on a copy) on ``samples``."""
    if not samples:
        raise ValueError("no validation samples to score on")
    segmenter = Segmenter(Model(network, config), device=device, object_size=None)
    counts = None
    ious = []
    for s in samples:
        segmenter.scale = s.zoom  # the sample's own object size is known: no estimate
        window = _reviewed_box(s.reviewed)
        prob = run(segmenter.iter_normalized(s.image[(slice(None), *window)]))
        labels, reviewed = s.labels[window], s.reviewed[window]
        if config.task == "instances":
            c = match_instances(instance_labels(prob), labels, ignore=~reviewed)
            counts = c if counts is None else counts + c
        else:
            truth = s.target[window]  # class ids (two classes: nonzero labels are foreground), ignored outside
            ious.append(mean_iou(semantic_labels(prob), truth, num_classes=config.num_classes))
    if config.task == "instances":
        assert isinstance(counts, InstanceCounts)
        ap = counts.average_precision
        return Score(float(ap[0]), "AP@0.5", counts.as_dict())
    return Score(float(np.nanmean(ious)), "mean IoU", {"mean_iou_per_sample": [float(v) for v in ious]})


def _reviewed_box(reviewed: np.ndarray) -> tuple[slice, slice]:
    ys, xs = np.nonzero(reviewed)
    y0, y1 = max(0, ys.min() - CONTEXT), min(reviewed.shape[0], ys.max() + 1 + CONTEXT)
    x0, x1 = max(0, xs.min() - CONTEXT), min(reviewed.shape[1], xs.max() + 1 + CONTEXT)
    return slice(y0, y1), slice(x0, x1)

