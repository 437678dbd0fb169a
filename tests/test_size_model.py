"""Which model estimates the object size of a new image (``ModelConfig.sizing``)."""

import copy
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from napari_unet import load_model
from napari_unet.core.models.model import Model, builtin_name
from napari_unet.core.predict.inference import Segmenter
from napari_unet.core.progress import Notice, run
from napari_unet.core.training import make_samples
from napari_unet.core.predict import inference as inference_module
from napari_unet.core.training.check import count_table
from napari_unet.core.training.finetune import fine_tune_sizing, held_out_counts, sizes_as
from napari_unet.core.training.scoring import estimate_sizes

IMAGE = Path(__file__).resolve().parents[1] / "sample_data" / "nuclei_fluorescence.tif"


def _plane() -> np.ndarray:
    return tifffile.imread(IMAGE)[None]


def _other_weights(model: Model, sizing: str | None) -> Model:
    """``model`` with every weight off by about 30%: it finds the same nuclei, drawn a little differently."""
    network = copy.deepcopy(model.network)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in network.parameters():
            p.mul_(1 + 0.3 * torch.randn(p.shape, generator=generator))
    return Model(network, model.config.model_copy(update={"sizing": sizing}))


def _estimate(model: Model) -> tuple[float, list[str]]:
    segmenter = Segmenter(model, device="cpu", object_size="auto")
    notices = []
    run(segmenter.iter_probabilities(_plane()), lambda u: notices.append(u.message) if isinstance(u, Notice) else None)
    return segmenter.image_object_size, notices


def test_a_model_that_names_the_shipped_model_for_sizing_estimates_the_size_it_does():
    default = load_model("default")
    shipped, _ = _estimate(default)
    own, _ = _estimate(_other_weights(default, None))
    assert abs(own / shipped - 1) > 0.03  # the other weights measure the nuclei otherwise
    sized, notices = _estimate(_other_weights(default, "default"))
    assert sized == pytest.approx(shipped, rel=1e-9) and not notices


def test_a_shipped_model_that_is_not_installed_leaves_the_estimate_to_the_model_and_says_so():
    model = _other_weights(load_model("default"), None)
    own, _ = _estimate(model)
    sized, notices = _estimate(Model(model.network, model.config.model_copy(update={"sizing": "retired"})))
    assert sized == pytest.approx(own, rel=1e-9)
    assert len(notices) == 1 and "'retired'" in notices[0] and "not installed" in notices[0]


def test_a_fine_tune_estimates_sizes_with_the_shipped_model_its_parent_does_unless_it_sized_the_corrections_wrong():
    default = load_model("default")
    assert builtin_name(default) == "default"
    image, labels = tifffile.imread(IMAGE), tifffile.imread(IMAGE.with_name("nuclei_fluorescence_labels.tif"))
    samples = make_samples(image, labels, default.config, name="sample")
    sizes = []
    held_out_counts(default, samples, sizes=sizes)
    (estimated, true), = sizes
    assert estimated == pytest.approx(_estimate(default)[0], rel=1e-9) and 0.8 < estimated / true < 1.25
    assert fine_tune_sizing(default, sizes) == "default"
    assert fine_tune_sizing(default, []) == "default"  # nothing held out to say otherwise
    # the shipped model zooms these images 1.4 times wrong: the fine-tune, which learnt them, sizes them itself
    assert fine_tune_sizing(default, [(1.4 * true, true), (1.3 * true, true)]) is None
    assert fine_tune_sizing(default, [(1.4 * true, true), (1 / 1.1 * true, true)]) == "default"  # 1.13 on average
    # a fine-tune's fine-tune keeps the name; a model that does not ship and names none sizes for its own
    other = _other_weights(default, None)
    assert builtin_name(other) is None and fine_tune_sizing(other, sizes) is None
    assert fine_tune_sizing(_other_weights(default, "default"), sizes) == "default"


def test_the_held_out_check_zooms_a_fine_tune_that_sizes_as_its_parent_for_the_parents_sizes(monkeypatch):
    default = load_model("default")
    image, labels = tifffile.imread(IMAGE), tifffile.imread(IMAGE.with_name("nuclei_fluorescence_labels.tif"))
    samples = make_samples(image, labels, default.config, name="sample")
    fine = _other_weights(default, "default")
    assert sizes_as(default, "default") and sizes_as(fine, "default")
    estimates = estimate_sizes(default, samples)
    searched = held_out_counts(fine, samples)  # its own search, with the shipped model
    searches = []
    search = inference_module.iter_estimate_scale
    monkeypatch.setattr(inference_module, "iter_estimate_scale", lambda *a: searches.append(1) or search(*a))
    reused = held_out_counts(fine, samples, object_sizes=estimates)
    assert not searches and np.array_equal(count_table(reused), count_table(searched))
    # sized by other weights, the estimates are others: searched for
    other = _other_weights(default, None)
    assert not sizes_as(other, None) and not sizes_as(default, "retired") and not sizes_as(default, None)
    (own,) = estimate_sizes(other, samples)
    assert len(searches) == 1 and abs(own / estimates[0] - 1) > 0.03
