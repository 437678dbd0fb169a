"""Where the default model's held-out errors are, and what cutting objects along faint boundaries would change.

    python benchmarks/boundary_cut.py [--model default]

A measurement, not a feature: the post-processing it tries is defined here and
is not used by the package (docs/model_trials.md says why).

1. Errors: on the held-out fluorescence images (object size estimated, the
   model's own post-processing), each true nucleus not matched at IoU 0.5 is
   *merged* (a predicted object covers at least a fifth of it and of another
   true nucleus), *missed* (no predicted object covers a fifth of it) or
   *poorly outlined*. Each unmatched predicted object is *a piece* (of a true nucleus that is
   covered by more than one predicted object), *nothing* (it covers no fifth
   of a true nucleus) or *poorly outlined*.
2. The cut: each object is cut by its shape (a watershed of the distance
   transform of all objects, from peaks at least 0.3 typical diameters apart)
   and neighbouring parts are joined back unless the boundary probability
   along the cut between them, away from the object's outline, averages at
   least a threshold; parts under a quarter of a typical object rejoin the
   largest. The threshold is chosen on the 28 validation images of
   ``scripts/train_default_model.py`` (as training chooses the others);
   AP@0.5 is then scored on the held-out images at 0.5x, 1x and 2x, with the
   outline margin fixed at 2 pixels and scaled with the object size.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from skimage.feature import peak_local_max
from skimage.segmentation import watershed

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from default_model_card import DATA, held_out, write_scaled  # noqa: E402
from train_default_model import HELD_OUT_FRACTION, load_split, training_samples, validation_split  # noqa: E402

from napari_unet import load_model  # noqa: E402
from napari_unet.core.io.axes import plane_layout
from napari_unet.core.predict.inference import Segmenter
from napari_unet.core.evaluation.metrics import match_instances, overlaps
from napari_unet.core.labels.postprocess import BOUNDARY, instance_labels, split_min_area
from napari_unet.core.progress import run  # noqa: E402
from napari_unet.core.io.stack_io import read_stack
from napari_unet.core.training.scoring import predict_samples  # noqa: E402

THRESHOLDS = (0.02, 0.03, 0.04, 0.05, 0.1, 0.2)
SPACING = 0.3  # least distance between the parts' centres, in typical diameters
COVER = 0.2  # share of a true nucleus a predicted object must cover to count as covering it


def cut_by_boundary(labels, boundary, threshold, object_size, rim_fraction=0.0):
    """``labels`` cut where the boundary probability along a shape cut averages at least ``threshold``."""
    inside = labels > 0
    if not inside.any():
        return labels
    dist = ndi.distance_transform_edt(inside)
    peaks = peak_local_max(dist, min_distance=max(2, round(SPACING * object_size)), labels=labels,
                           exclude_border=False)
    markers = np.zeros(labels.shape, np.int64)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    grown = watershed(-dist, markers, mask=inside)
    _, parts = np.unique(labels.astype(np.int64) * (len(peaks) + 1) + grown, return_inverse=True)
    parts = parts.reshape(labels.shape)  # one id per (object, grown region); 0 stays background
    n = int(parts.max()) + 1
    rim = max(2.0, rim_fraction * object_size)
    pairs, values, weighed = [], [], []
    for axis in (0, 1):
        lo, hi = [slice(None)] * 2, [slice(None)] * 2
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        lo, hi = tuple(lo), tuple(hi)
        a, b = parts[lo], parts[hi]
        cut = (a != b) & (a > 0) & (b > 0) & (labels[lo] == labels[hi])
        pairs.append(np.minimum(a[cut], b[cut]) * n + np.maximum(a[cut], b[cut]))
        values.append(np.maximum(boundary[lo][cut], boundary[hi][cut]))
        weighed.append(np.minimum(dist[lo][cut], dist[hi][cut]) > rim)
    pair, pair_of = np.unique(np.concatenate(pairs), return_inverse=True)
    w = np.concatenate(weighed)
    evidence = np.bincount(pair_of, np.concatenate(values) * w, minlength=pair.size)
    count = np.bincount(pair_of, w, minlength=pair.size)
    join = pair[(count == 0) | (evidence < threshold * count)]
    _, joined = connected_components(coo_matrix((np.ones(join.size), (join // n, join % n)), shape=(n, n)))
    out = np.where(inside, joined[parts] + 1, 0)
    min_area = split_min_area(object_size)
    for k, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        own = labels[box] == k
        ids, area = np.unique(out[box][own], return_counts=True)
        if len(ids) > 1:
            crop = out[box]
            for i in ids[area < min_area]:
                crop[own & (crop == i)] = ids[np.argmax(area)]
    return out


def predictions(model, ids, scale, folder):
    """(probabilities, truth, estimated object size, the model's labels) of each image at ``scale``."""
    images, labels = write_scaled(ids, scale, folder)
    segmenter = Segmenter(model, device="cpu")
    out = []
    for image_file, label_file in zip(images, labels):
        stack = read_stack(image_file)
        layout = plane_layout(stack.shape, stack.axes, model.config.network.in_channels, None)
        ((_, plane),) = layout.planes(stack.data)
        segmenter.new_image()  # the object size is estimated per image
        prob = run(segmenter.iter_probabilities(plane))
        out.append((prob, tifffile.imread(label_file), segmenter.image_object_size, segmenter.labels(prob)))
    return out


def validation(model):
    """The validation images of scripts/train_default_model.py, at the model's trained zoom."""
    samples = training_samples(DATA, load_split(DATA, HELD_OUT_FRACTION, 0)["train"], model.config, model.config.object_size)
    _, val = validation_split(samples)
    return [
        (p.prob, p.labels, p.object_size,
         instance_labels(p.prob, thresholds=model.config.thresholds, object_size=p.object_size))
        for p in predict_samples(model.network, val, model.config)
    ]


def ap50(preds, threshold=None, rim_fraction=0.0):
    counts = None
    for prob, truth, size, labels in preds:
        if threshold is not None:
            labels = cut_by_boundary(labels, prob[BOUNDARY], threshold, size, rim_fraction)
        c = match_instances(labels, truth, thresholds=(0.5,))
        counts = c if counts is None else counts + c
    return float(counts.average_precision[0])


def errors(preds):
    """Unmatched true and predicted objects at IoU 0.5, by kind."""
    kinds = dict.fromkeys(("merged", "missed", "poorly outlined (true)", "a piece",
                           "nothing", "poorly outlined (predicted)"), 0)
    for _, truth, _, labels in preds:
        o = overlaps(labels, truth)
        nt, npred = o.true_area.size, o.pred_area.size
        best_true, best_pred = np.zeros(nt), np.zeros(npred)
        np.maximum.at(best_true, o.rows, o.iou)
        np.maximum.at(best_pred, o.cols, o.iou)
        # predicted object j covers a fifth of true nucleus i
        covers = o.inter >= COVER * o.true_area[o.rows]
        rows, cols = o.rows[covers], o.cols[covers]
        nuclei_covered = np.bincount(cols, minlength=npred)  # by each predicted object
        covering = np.bincount(rows, minlength=nt)  # predicted objects covering each nucleus
        for i in np.flatnonzero(best_true <= 0.5):
            over = cols[rows == i]
            if over.size == 0:
                kinds["missed"] += 1
            elif nuclei_covered[over].max() >= 2:
                kinds["merged"] += 1
            else:
                kinds["poorly outlined (true)"] += 1
        for j in np.flatnonzero(best_pred <= 0.5):
            under = rows[cols == j]
            if under.size == 0:
                kinds["nothing"] += 1
            elif covering[under].max() >= 2:
                kinds["a piece"] += 1
            else:
                kinds["poorly outlined (predicted)"] += 1
    return kinds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default")
    args = p.parse_args(argv)
    model = load_model(args.model)
    start = time.time()
    val = validation(model)
    print(f"validation ({len(val)} images, AP@0.5): no cut {ap50(val):.4f}")
    scores = {t: ap50(val, t) for t in THRESHOLDS}
    print("  " + "  ".join(f"cut at {t}: {s:.4f}" for t, s in scores.items()))
    chosen = max(THRESHOLDS, key=lambda t: (scores[t], -t))
    print(f"  chosen threshold {chosen}")
    groups = held_out()
    with tempfile.TemporaryDirectory() as tmp:
        sets = {("fluorescence", 1.0): predictions(model, groups["fluorescence"], 1.0, Path(tmp) / "f1")}
        for scale in (0.5, 1.0, 2.0):
            sets[("brightfield/H&E", scale)] = predictions(model, groups["brightfield/H&E"], scale, Path(tmp) / f"h{scale}")
    print("\nheld-out fluorescence, unmatched at IoU 0.5 (model's post-processing):")
    for kind, n in errors(sets[("fluorescence", 1.0)]).items():
        print(f"  {kind:<28} {n:>4}")
    print(f"\nheld-out AP@0.5 {'no cut':>8} {'cut, 2 px':>10} {'cut, 0.1 d':>11}")
    for (group, scale), preds in sets.items():
        row = [ap50(preds), ap50(preds, chosen), ap50(preds, chosen, 0.1)]
        print(f"{group + f' {scale}x':<24} " + " ".join(f"{v:>10.4f}" for v in row))
    print(f"\n({time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
