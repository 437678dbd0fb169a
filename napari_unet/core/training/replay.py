"""Replay: patches of a model's own training data, trained beside a user's corrections.

A fine-tune on two corrected images pulls the whole network towards those two
images, and forgets what made it good elsewhere, so it can end up worse on the
user's *other* images than the model it started from. Mixing a share of the
parent's training data into every batch (replay, as continual learning calls
it) keeps what the parent knew while the corrections teach what is new.

A replay set is a small file shipped with a model (``ModelConfig.replay``
names it): crops of the parent's training images, already at the model's
object size, with their instance labels. Part of them (the ``check`` crops,
from other images than the ``train`` ones) never enters training: they tell
whether a fine-tune forgot what the parent knew (:mod:`.check`).

File format (``numpy.savez_compressed``, no pickles): ``images`` (N, S, S) uint8,
``low`` and ``span`` (N,) float32 (crop ``i`` as the model sees it is
``low[i] + images[i] / 255 * span[i]``), ``labels`` (N, S, S) uint16 (:data:`UNREVIEWED` where a crop was padded
beyond its image: ignored, like pixels a user did not review),
``names`` (N,) str, ``check`` (N,) bool.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ..models.config import ModelConfig
from ..errors import ModelFileError
from ..labels.targets import instance_targets
from .data import Sample

SUFFIX = ".replay.npz"
PREFIX = "replay:"  # the start of a replay sample's name
UNREVIEWED = np.iinfo(np.uint16).max


@dataclass(frozen=True)
class ReplaySet:
    """Samples of a model's training data at its object size: ``train`` to replay, ``check`` to test forgetting."""

    name: str
    train: list[Sample]
    check: list[Sample]


def is_replay(sample: Sample) -> bool:
    """Whether ``sample`` is a crop of a replay set (not one of the user's images)."""
    return sample.name.startswith(PREFIX)


def replay_path(name: str) -> Path:
    """The file of the replay set ``name`` shipped in ``napari_unet/models``."""
    return Path(str(resources.files("napari_unet") / "models" / f"{name}{SUFFIX}"))


def load_replay(config: ModelConfig) -> ReplaySet | None:
    """The replay set the model names (``config.replay``), or None when it names none.

    The file is read once per process (and again only if it changes): a fine-tune's runs and the
    checks after them, and the next fine-tune of a correct-and-retrain loop, share one copy, whose
    arrays are read-only.

    Raises :class:`ModelFileError` when the named set is not installed or not readable:
    a fine-tune without it would forget silently.
    """
    if config.replay is None or config.task != "instances":
        return None
    path = replay_path(config.replay)
    if not path.is_file():
        raise ModelFileError(f"the model's replay set {config.replay!r} is not installed (expected {path})")
    stat = path.stat()
    train, check = _read(path, stat.st_mtime_ns, stat.st_size)
    return ReplaySet(config.replay, list(train), list(check))


@functools.lru_cache(maxsize=2)
def _read(path: Path, mtime_ns: int, size: int) -> tuple[tuple[Sample, ...], tuple[Sample, ...]]:
    """The ``train`` and ``check`` samples of the replay file ``path`` (its time and size: a changed file is
    read again)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            images, low, span = f["images"], f["low"], f["span"]
            labels, names, check = f["labels"], f["names"], f["check"]
    except (OSError, KeyError, ValueError) as e:
        raise ModelFileError(f"cannot read the replay set {path}: {e}") from e
    train, held = [], []
    for i in range(len(images)):
        image = (low[i] + images[i].astype(np.float32) * np.float32(span[i] / 255.0))[None].astype(np.float32)
        reviewed = labels[i] != UNREVIEWED
        lab = np.where(reviewed, labels[i], 0)
        sample = Sample(image, lab, reviewed, instance_targets(lab, reviewed), f"{PREFIX}{names[i]}")
        for array in (sample.image, sample.labels, sample.reviewed, sample.target):
            array.setflags(write=False)  # shared by every caller
        (held if check[i] else train).append(sample)
    return tuple(train), tuple(held)


def quantize(image: np.ndarray) -> tuple[np.ndarray, float, float]:
    """A float crop as ``(uint8 image, low, span)``, the form :func:`load_replay` reads back."""
    low, high = float(image.min()), float(image.max())
    span = max(high - low, 1e-6)
    return np.round((image - low) / span * 255).astype(np.uint8), low, span
