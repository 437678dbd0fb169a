"""Training and fine-tuning on what the user reviewed (no napari, no Qt).

``config`` (TrainConfig), ``data`` (samples, validation split, patch sampler),
``scoring`` (the validation score), ``trainer`` (one run: a generator),
``replay`` (the parent's data trained beside the corrections), ``check``
(parent against fine-tune, with intervals), ``finetune`` (the runs and checks
that a fine-tune on corrections is made of).
"""

from .config import AugmentConfig, TrainConfig
from .finetune import FineTune, Stage
from .data import PatchSampler, Sample, make_samples, split_validation
from .scoring import Score, score
from .trainer import Trainer, TrainResult, TrainUpdate

__all__ = [
    "AugmentConfig",
    "FineTune",
    "PatchSampler",
    "Sample",
    "Score",
    "Stage",
    "TrainConfig",
    "TrainResult",
    "TrainUpdate",
    "Trainer",
    "make_samples",
    "score",
    "split_validation",
]
