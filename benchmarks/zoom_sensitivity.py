"""How much a preparation's score moves when only the zoom does: the default model at object sizes a few percent
around its own estimate, on kromp2020 images (``../shared/data/kromp2020_train``).

A fine-tune moves the size the model estimates on each image a little, besides its segmentation. On a
preparation of few large nuclei (the touch imprints: two images, 56 nuclei of about 120 px), a change of the
zoom alone flips nuclei whose IoU lies near 0.5: this table shows how far the default model's pooled AP@0.5
moves with it, the noise floor under the transfer benchmark's per-run changes on that preparation.

    PYTHONPATH=. .venv/bin/python benchmarks/zoom_sensitivity.py --preparation "Tumor touch imprint"
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from finetune_transfer import kromp, preparations, probabilities  # noqa: E402
from napari_unet import load_model  # noqa: E402
from napari_unet.core.evaluation.metrics import match_instances  # noqa: E402
from napari_unet.core.labels.postprocess import instance_labels  # noqa: E402

FACTORS = (0.95, 0.96, 0.97, 0.98, 0.99, 1.0, 1.01, 1.02, 1.03, 1.04, 1.05)


def counts(model, image, truth, object_size) -> tuple[np.ndarray, float]:
    """``[tp, fp, fn]`` at IoU 0.5 and the object size used (``"auto"``: the model's estimate)."""
    prob, size = probabilities(model, image, object_size)
    labels = instance_labels(prob, thresholds=model.config.thresholds, object_size=size)
    c = match_instances(labels, truth)
    return np.array([c.tp[0], c.fp[0], c.fn[0]]), size


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preparation", default="Tumor touch imprint")
    p.add_argument("--factors", type=float, nargs="+", default=list(FACTORS), help="object sizes, times the estimate")
    args = p.parse_args()
    torch.set_num_threads(2)
    model = load_model("default")
    names = sorted(n for n, q in preparations().items() if q == args.preparation)
    total = {f: np.zeros(3, int) for f in args.factors}
    print(f"{args.preparation}: {len(names)} images; the default model, object size = factor x its own estimate\n")
    print("| image | estimate (px) | " + " | ".join(f"x{f:g}" for f in args.factors) + " |")
    print("|---|---|" + "---|" * len(args.factors))
    for name in names:
        image, truth = kromp(name)
        _, estimate = counts(model, image, truth, "auto")
        row = []
        for f in args.factors:
            c, _ = counts(model, image, truth, estimate * f)
            total[f] += c
            row.append(f"{c[0] / max(c.sum(), 1):.3f}")
        print(f"| {name} | {estimate:.1f} | " + " | ".join(row) + " |", flush=True)
    pooled = [total[f][0] / max(total[f].sum(), 1) for f in args.factors]
    print("| pooled AP@0.5 | | " + " | ".join(f"{v:.3f}" for v in pooled) + " |")
    print(f"\nrange of the pooled AP@0.5: {min(pooled):.3f} to {max(pooled):.3f} ({max(pooled) - min(pooled):.3f})")


if __name__ == "__main__":
    main()
