"""Counts on the replay set's check crops: the forgetting check's data, with the parent's side stored.

Every fine-tune compares its model with the parent on the check crops of the parent's replay set
(:mod:`.check`, :mod:`.replay`). The parent's side of that comparison is the same every time, so for the
model that ships it is made once and stored beside the replay set, in ``<replay>.check_counts.json``
(``scripts/replay_check_counts.py``), keyed by a digest of the model's weights and by its post-processing
thresholds. A fine-tune on the CPU predicts only the first :data:`SPOT` crops with the parent, to confirm
that this machine counts them alike, and reads the rest: the 32 crops of the default model's set take
about 2 s to predict and count on a 2-core CPU, which a one-minute fine-tune then gives to its steps.
Where anything differs (another model, other thresholds, counts that do not agree, a GPU, whose
arithmetic is not the CPU's), the parent is predicted on every crop, as it always was.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..devices import resolve_device
from ..evaluation.metrics import InstanceCounts
from ..models.model import Model, weights_digest
from .check import FORGETTING_IOUS, GRID, count_table, prediction_counts
from .replay import SUFFIX as REPLAY_SUFFIX
from .replay import ReplaySet, replay_path
from .scoring import predict_samples

SUFFIX = ".check_counts.json"
SPOT = 4  # check crops the parent predicts to confirm its stored counts
VERSION = 1


def replay_counts(model: Model, replay: ReplaySet, *, device: str = "cpu") -> list[InstanceCounts]:
    """``model``'s counts on the replay set's check crops at the forgetting check's IoUs (what the forgetting
    check compares): :data:`~.check.GRID` squared regions per crop, crop after crop."""
    predictions = predict_samples(model.network, replay.check, model.config, device=device)
    return prediction_counts(predictions, model.config, thresholds=FORGETTING_IOUS)


def parent_replay_counts(
    parent: Model, replay: ReplaySet, *, device: str = "cpu"
) -> tuple[list[InstanceCounts], float]:
    """The parent's counts on the replay check crops (:func:`replay_counts`), stored ones where this machine
    confirms them, and the seconds predicting every crop takes here (measured, or scaled from the crops
    predicted to confirm the stored counts): the check at the end needs as long for the fine-tune."""
    stored = stored_counts(parent, replay) if resolve_device(device).type == "cpu" else None
    start = time.perf_counter()
    if stored is None or len(replay.check) <= SPOT:
        return replay_counts(parent, replay, device=device), time.perf_counter() - start
    first = replay_counts(parent, ReplaySet(replay.name, [], replay.check[:SPOT]), device=device)
    if np.array_equal(count_table(first), count_table(stored[: len(first)])):
        return stored, (time.perf_counter() - start) * len(replay.check) / SPOT
    rest = replay_counts(parent, ReplaySet(replay.name, [], replay.check[SPOT:]), device=device)
    return first + rest, time.perf_counter() - start


def counts_path(replay_name: str) -> Path:
    """Where the counts of the replay set ``replay_name``'s model are stored: beside the set."""
    set_path = replay_path(replay_name)
    return set_path.with_name(set_path.name.removesuffix(REPLAY_SUFFIX) + SUFFIX)


def write_counts(model: Model, replay: ReplaySet, path: Path | None = None) -> Path:
    """Predict ``model`` (on the CPU) on every check crop of ``replay`` and store the counts (atomically)."""
    counts = replay_counts(model, replay, device="cpu")
    record = {
        "version": VERSION,
        "model": weights_digest(model),
        "thresholds": model.config.thresholds.model_dump(mode="json"),
        "ious": list(FORGETTING_IOUS),
        "grid": GRID,
        "crops": [s.name for s in replay.check],
        "counts": count_table(counts).tolist(),  # per region: (T, 3)
    }
    path = counts_path(replay.name) if path is None else Path(path)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(record) + "\n")
    partial.replace(path)
    return path


def stored_counts(model: Model, replay: ReplaySet) -> list[InstanceCounts] | None:
    """The counts stored for ``model`` on ``replay``'s check crops, or None where none are stored for these
    weights, thresholds, IoUs, regions and crops (or the file cannot be read: then they are made anew)."""
    path = counts_path(replay.name)
    try:
        record = json.loads(path.read_text())
        same = (
            record.get("version") == VERSION
            and record["ious"] == list(FORGETTING_IOUS)
            and record["grid"] == GRID
            and record["crops"] == [s.name for s in replay.check]
            and record["thresholds"] == model.config.thresholds.model_dump(mode="json")
            and record["model"] == weights_digest(model)
        )
        if not same:
            return None
        ious = np.asarray(FORGETTING_IOUS, dtype=np.float64)
        counts = [np.asarray(c, dtype=np.int64).reshape(len(ious), 3) for c in record["counts"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if len(counts) != len(replay.check) * GRID * GRID:
        return None
    return [InstanceCounts(ious, c[:, 0], c[:, 1], c[:, 2]) for c in counts]
