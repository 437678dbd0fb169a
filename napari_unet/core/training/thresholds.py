"""Tune an instances model's post-processing thresholds on validation data.

The seeds of the watershed are the pixels whose interior probability is above
a threshold, and objects grow over the pixels whose foreground probability is
above another. Where those thresholds should sit depends on the network: a
briefly trained one is unsure at the boundaries between touching nuclei and
needs a high interior threshold to keep them apart. So, as StarDist does
after training, the thresholds are chosen on the validation data, by AP@0.5
over a grid, and saved with the model.
"""

from __future__ import annotations

import itertools

from ..models.config import ModelConfig, ThresholdsConfig
from .scoring import Prediction, Score, score_predictions

GRID = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def tune_thresholds(
    predictions: list[Prediction], config: ModelConfig, grid: tuple[float, ...] = GRID
) -> tuple[ThresholdsConfig, Score]:
    """The thresholds of ``grid`` x ``grid`` (and the model's own) that score best on ``predictions``.

    Ties keep the model's own thresholds, then the ones nearest 0.5, so a
    flat score never moves them.
    """
    if config.task != "instances":
        raise ValueError(f"thresholds are tuned for instances models, this one is {config.task!r}")
    pairs = sorted(itertools.product(grid, grid), key=lambda t: abs(t[0] - 0.5) + abs(t[1] - 0.5))
    candidates = [config.thresholds] + [ThresholdsConfig(interior=i, foreground=f) for i, f in pairs]
    best, best_score = None, None
    for t in candidates:
        s = score_predictions(predictions, config, t)
        if best_score is None or s.value > best_score.value:
            best, best_score = t, s
    assert best is not None and best_score is not None
    return best, best_score
