"""Touching nuclei the network is unsure between: splitting seeds at the object size keeps them apart.

Held-out crowded DSB 2018 fluorescence images (scripts/dsb2018_split.json), the shipped default
model, the object size estimated as a user gets it. The same probabilities are made into objects
with the seeds split where they fall apart at higher interior thresholds (what ``segment`` does)
and without (each connected region above the seed threshold is one object).
"""

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_unet import load_model
from napari_unet.core.predict.inference import Segmenter
from napari_unet.core.evaluation.metrics import match_instances
from napari_unet.core.labels.postprocess import instance_labels
from napari_unet.core.progress import run

from .conftest import dsb_path

ROOT = Path(__file__).resolve().parents[1]
CROWDED = [
    "8efed2e6",  # 260 nuclei
    "4dbbb275",  # 183 nuclei
]


def _full_id(prefix: str) -> str:
    split = json.loads((ROOT / "scripts" / "dsb2018_split.json").read_text())
    (image_id,) = [i for i in split["test"] if i.startswith(prefix)]
    return image_id


@pytest.mark.parametrize("prefix", CROWDED)
def test_splitting_seeds_finds_more_of_the_crowded_nuclei(prefix):
    image_id = _full_id(prefix)
    image = tifffile.imread(dsb_path("images", image_id))
    truth = tifffile.imread(dsb_path("labels", image_id))
    model = load_model("default")
    segmenter = Segmenter(model, device="cpu")
    prob = run(segmenter.iter_probabilities(image[np.newaxis]))

    joined = instance_labels(prob, thresholds=model.config.thresholds)
    split = segmenter.labels(prob)
    ap_joined = match_instances(joined, truth).average_precision[0]
    ap_split = match_instances(split, truth).average_precision[0]
    assert split.max() > joined.max()
    assert ap_split >= ap_joined + 0.05, (ap_joined, ap_split)
