"""Build the default model's replay set from DSB 2018 training images (not the held-out ones).

    python scripts/make_replay_set.py            # writes napari_unet/models/default_nuclei.replay.npz

Crops of ``--size`` px from images of the default model's training split
(``scripts/dsb2018_split.json``), each image first zoomed so that its median
nucleus has the model's object size, as training saw it. Images are drawn per
modality in proportion to the split (seed 0), one crop per image, centred on
a random nucleus; ``--check`` of them (from other images) are kept apart to
test forgetting. DSB 2018 is CC0, so the crops may ship with the package.
Then ``python scripts/replay_check_counts.py`` stores the model's counts on the
check crops beside the set.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from napari_unet import load_model  # noqa: E402
from napari_unet.core.predict.sizing import median_diameter, rescale
from napari_unet.core.training import make_samples  # noqa: E402
from napari_unet.core.training.data import draw_per_group  # noqa: E402
from napari_unet.core.training.replay import SUFFIX, UNREVIEWED, quantize  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "dsb2018"


def zoomed(image_id: str, config, object_size: float) -> tuple[np.ndarray, np.ndarray] | None:
    """The image (normalised, as the model sees it) and its labels, zoomed to ``object_size``."""
    image = tifffile.imread(DATA / "images" / f"{image_id}.tif")
    labels = tifffile.imread(DATA / "labels" / f"{image_id}.tif")
    size = median_diameter(labels)
    if not size:
        return None
    sample = make_samples(image, labels, config)[0]
    scale = object_size / size
    x = rescale(sample.image, scale)[0]
    # nearest neighbour at the centres of the resized pixels, as linear_resize places them
    rows, cols = (((np.arange(m) + 0.5) * (n / m)).astype(int) for n, m in zip(labels.shape, x.shape))
    return x, labels[np.ix_(rows, cols)]


def crop(x: np.ndarray, labels: np.ndarray, side: int, rng: np.random.Generator):
    """A ``side`` x ``side`` crop centred near a random nucleus; where the image is smaller, it is
    mirror-padded and the padding's labels are :data:`UNREVIEWED`."""
    pad = [(max(0, (side - n + 1) // 2),) * 2 for n in x.shape]
    x, labels = np.pad(x, pad, mode="reflect"), np.pad(labels, pad, mode="constant", constant_values=UNREVIEWED)
    ys, xs = np.nonzero((labels > 0) & (labels != UNREVIEWED))
    i = rng.integers(ys.size)
    y0 = int(np.clip(ys[i] - side // 2, 0, x.shape[0] - side))
    x0 = int(np.clip(xs[i] - side // 2, 0, x.shape[1] - side))
    return x[y0 : y0 + side, x0 : x0 + side], labels[y0 : y0 + side, x0 : x0 + side]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="default")
    p.add_argument("--name", default="default_nuclei")
    p.add_argument("--count", type=int, default=160, help="crops in all")
    p.add_argument("--check", type=int, default=32, help="crops kept apart to test forgetting")
    p.add_argument("--size", type=int, default=256, help="crop side (px, at the model's object size)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    config = load_model(args.model).config
    split = json.loads((ROOT / "scripts" / "dsb2018_split.json").read_text())
    modality = {e["id"]: e["modality"] for e in json.loads((DATA / "index.json").read_text())}
    ids = sorted(split["train"])
    rng = np.random.default_rng(args.seed)
    drawn = sorted(draw_per_group([modality[i] for i in ids], args.count / len(ids), rng, keep_one=True))
    chosen = [ids[j] for j in drawn]
    check = set(chosen[j] for j in draw_per_group([modality[i] for i in chosen], args.check / len(chosen), rng, keep_one=True))
    out = {k: [] for k in ("images", "low", "span", "labels", "names", "check")}
    for image_id in chosen:
        found = zoomed(image_id, config, config.object_size)
        if found is None:
            continue
        x, labels = crop(*found, args.size, rng)
        q, low, span = quantize(x)
        for key, value in zip(out, (q, low, span, labels.astype(np.uint16), image_id, image_id in check)):
            out[key].append(value)
    path = ROOT / "napari_unet" / "models" / f"{args.name}{SUFFIX}"
    np.savez_compressed(path, **{k: np.asarray(v) for k, v in out.items()})
    kinds = {m: sum(modality[i] == m for i in out["names"]) for m in sorted(set(modality.values()))}
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): {len(out['names'])} crops, "
          f"{sum(out['check'])} kept to check forgetting; per modality {kinds}")


if __name__ == "__main__":
    main()
