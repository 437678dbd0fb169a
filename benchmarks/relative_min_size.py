"""A trial: drop objects smaller than a share of a typical nucleus's area (from the estimated diameter) instead of
under 10 px, for the default model and the saved models of the transfer benchmark's shipped two-minute runs.

Asks whether the fine-tunes' losses on other preparations are fragments a relative minimum size would remove.
Prints the default's pooled AP@0.5 per preparation and on held-out DSB fluorescence at each share, then, per run,
the change on the run's own preparation, the worst other preparation and DSB. Needs the models that
``finetune_transfer.py`` saved (``benchmarks/results/models``); ``--runs N`` scores the first N of the two-minute
runs tagged ``--tag``.

    PYTHONPATH=. .venv/bin/python benchmarks/relative_min_size.py --runs 12 --tag "shipped before 666b3f4"
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import finetune_transfer as ft  # noqa: E402
from napari_unet import load_model  # noqa: E402
from napari_unet.core.evaluation.metrics import match_instances  # noqa: E402
from napari_unet.core.labels.postprocess import instance_labels  # noqa: E402

SHARES = (0.0, 0.05, 0.1, 0.15, 0.2)  # 0: the 10 px of today


def counts(model, prep: dict[str, str], dsb_ids: list[str]) -> dict:
    """``[tp, fp, fn]`` at IoU 0.5 for each image and each share of :data:`SHARES`."""
    out = {"kromp": {}, "dsb": {}}
    for kind, names, read, true in (("kromp", sorted(prep), ft.kromp, False), ("dsb", dsb_ids, ft.dsb, True)):
        for name in names:
            image, truth = read(name)
            prob, size = ft.probabilities(model, image, ft.median_diameter(truth) if true else "auto")
            out[kind][name] = []
            for share in SHARES:
                min_size = max(10, int(share * math.pi / 4 * size * size))
                labels = instance_labels(prob, thresholds=model.config.thresholds, min_size=min_size, object_size=size)
                c = match_instances(labels, truth)
                out[kind][name].append([int(c.tp[0]), int(c.fp[0]), int(c.fn[0])])
    return out


def ap(scores: dict, names: list[str], k: int) -> float:
    c = np.sum([scores[n][k] for n in names], axis=0)
    return c[0] / max(c.sum(), 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=24, help="how many of the two-minute runs to score")
    p.add_argument("--tag", default="shipped", help="the runs of finetune_transfer.py whose models are scored")
    args = p.parse_args()
    torch.set_num_threads(2)
    prep = ft.preparations()
    dsb_ids = ft.held_out_fluorescence()
    groups = sorted(set(prep.values()))
    members = {q: [n for n in prep if prep[n] == q] for q in groups}
    parent = counts(load_model("default"), prep, dsb_ids)
    print("The default's pooled AP@0.5, by the share of a typical nucleus's area under which objects are dropped\n")
    print("| images | " + " | ".join(f"{s:g}" for s in SHARES) + " |")
    print("|---|" + "---|" * len(SHARES))
    for q in groups:
        print(f"| {q} | " + " | ".join(f"{ap(parent['kromp'], members[q], k):.3f}" for k in range(len(SHARES))) + " |")
    print("| DSB fluo. | " + " | ".join(f"{ap(parent['dsb'], dsb_ids, k):.3f}" for k in range(len(SHARES))) + " |")
    runs = [r for r in json.loads(ft.RESULTS.read_text())["runs"] if r["tag"] == args.tag and r["minutes"] == 2]
    print("\nPer run: own preparation, worst other preparation, DSB (changes against the default at the same share)\n")
    print("| run | " + " | ".join(f"{s:g}" for s in SHARES) + " |")
    print("|---|" + "---|" * len(SHARES))
    below = np.zeros(len(SHARES), int)
    for r in runs[: args.runs]:
        child = counts(ft.saved_model(r, ft.SHIPPED_FILES), prep, dsb_ids)
        own = [n for n in members[r["preparation"]] if n not in r["corrected"]]
        cells = []
        for k in range(len(SHARES)):
            gain = ap(child["kromp"], own, k) - ap(parent["kromp"], own, k)
            others = [ap(child["kromp"], members[q], k) - ap(parent["kromp"], members[q], k)
                      for q in groups if q != r["preparation"]]
            dsb = ap(child["dsb"], dsb_ids, k) - ap(parent["dsb"], dsb_ids, k)
            below[k] += sum(o < -0.02 for o in others)
            cells.append(f"{gain:+.3f} / {min(others):+.3f} / {dsb:+.3f}")
        print(f"| {r['preparation']} seed {r['seed']} | " + " | ".join(cells) + " |", flush=True)
    print("| changes elsewhere below -0.02 | " + " | ".join(str(b) for b in below) + " |")


if __name__ == "__main__":
    main()
