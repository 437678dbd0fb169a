"""Training and fine-tuning on what the user reviewed (no napari, no Qt).

``config`` (TrainConfig), ``data`` (samples, validation split, patch sampler),
``scoring`` (the validation score), ``trainer`` (the run: a generator).
"""

from .config import AugmentConfig, TrainConfig
from .data import PatchSampler, Sample, make_samples, split_validation
from .scoring import Score, score
from .trainer import Trainer, TrainResult, TrainUpdate

__all__ = [
    "AugmentConfig",
    "PatchSampler",
    "Sample",
    "Score",
    "TrainConfig",
    "TrainResult",
    "TrainUpdate",
    "Trainer",
    "make_samples",
    "score",
    "split_validation",
]
