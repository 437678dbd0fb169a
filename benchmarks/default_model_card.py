"""The numbers of the default model's card (docs/model_card.md), computed in one run.

    python benchmarks/default_model_card.py [--model default] [--device cpu]

1. Held-out scores: AP at IoU 0.5 / 0.75 / 0.9, pooled over objects, on the
   DSB 2018 images of the held-out split (scripts/dsb2018_split.json), for
   fluorescence and brightfield/H&E separately, next to the classical Otsu +
   distance-watershed baseline on the same images, through `napari-unet
   evaluate`'s core. The object size is estimated automatically, as a user
   gets it.
2. Scale robustness: the same images rescaled by 0.5x and 2x (labels with
   nearest neighbour), AP@0.5 with automatic size estimation.
3. Speed: a 1024x1024 image segmented end to end on this machine, median of
   repeats, with the object size given and estimated.

Each held-out AP@0.5 comes with a 95% interval from resampling the images
(with replacement, 2,000 times): how much the score depends on which images
were held out. ``--against MODEL`` also scores another model on the same
held-out images and gives the difference with its paired interval (the same
images drawn for both).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch
from skimage.transform import resize

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from train_default_model import HELD_OUT_FRACTION, load_split  # noqa: E402

from napari_unet import load_model, segment  # noqa: E402
from napari_unet.core.evaluation.evaluate import evaluate

DATA = ROOT.parent / "shared" / "data" / "dsb2018"
GROUPS = {"fluorescence": ("fluo_gray",), "brightfield/H&E": ("rgb_brightfield/HE", "bright_gray")}
SCALES = (0.5, 1.0, 2.0)


def held_out() -> dict[str, list[str]]:
    split = load_split(DATA, HELD_OUT_FRACTION, 0)  # the recipe's split (scripts/dsb2018_split.json)
    modality = {e["id"]: e["modality"] for e in json.loads((DATA / "index.json").read_text())}
    return {g: [i for i in split["test"] if modality[i] in kinds] for g, kinds in GROUPS.items()}


def write_scaled(ids: list[str], scale: float, folder: Path) -> tuple[list[Path], list[Path]]:
    images, labels = [], []
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    for i in ids:
        image = tifffile.imread(DATA / "images" / f"{i}.tif")
        truth = tifffile.imread(DATA / "labels" / f"{i}.tif")
        if scale != 1.0:
            shape = (round(truth.shape[0] * scale), round(truth.shape[1] * scale))
            image = resize(image, shape + image.shape[2:], order=1, anti_aliasing=scale < 1, preserve_range=True)
            image = image.astype(np.uint8)
            truth = resize(truth, shape, order=0, anti_aliasing=False, preserve_range=True).astype(truth.dtype)
        images.append(folder / "images" / f"{i}.tif")
        labels.append(folder / "labels" / f"{i}.tif")
        tifffile.imwrite(images[-1], image, photometric="rgb" if image.ndim == 3 else "minisblack")
        tifffile.imwrite(labels[-1], truth)
    return images, labels


def nearest_threshold(result: dict, threshold: float) -> int:
    """Index of the IoU threshold of ``result`` nearest ``threshold``."""
    return int(np.argmin(np.abs(np.asarray(result["pooled"]["thresholds"]) - threshold)))


def ap_at(result: dict, threshold: float) -> float:
    """Pooled AP at the IoU threshold nearest ``threshold``."""
    return float(result["pooled"]["average_precision"][nearest_threshold(result, threshold)])


def speed(model, device: str, repeats: int) -> dict[str, float]:
    big = sorted((DATA / "images").glob("*.tif"), key=lambda p: -p.stat().st_size)
    image = next(tifffile.imread(p) for p in big if tifffile.imread(p).ndim == 2)
    image = np.pad(image, ((0, max(0, 1024 - image.shape[0])), (0, max(0, 1024 - image.shape[1]))), mode="reflect")
    image = image[:1024, :1024]
    out = {}
    for name, size in (("object size given", model.config.object_size), ("object size estimated", "auto")):
        segment(image, model, device=device, object_size=size)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            segment(image, model, device=device, object_size=size)
            times.append(time.perf_counter() - start)
        out[name] = statistics.median(times)
    return out


def object_counts(result: dict, threshold: float) -> np.ndarray:
    """Per-image (TP, FP, FN) at the IoU threshold nearest ``threshold``, shape ``(images, 3)``."""
    i = nearest_threshold(result, threshold)
    return np.array([[im["tp"][i], im["fp"][i], im["fn"][i]] for im in result["per_image"]], dtype=float)


def interval(counts: list[np.ndarray], weights=(1,), draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% interval of ``sum(w * pooled AP)`` over the same images drawn with replacement for every count set.

    Pooled AP is TP / (TP + FP + FN) summed over the drawn images; one set of
    counts gives the interval of a score, two with weights (1, -1) that of a
    paired difference.
    """
    rng = np.random.default_rng(seed)
    draw = rng.integers(0, len(counts[0]), size=(draws, len(counts[0])))
    value = np.zeros(draws)
    for c, w in zip(counts, weights):
        tp, fp, fn = c[draw].sum(axis=1).T
        value += w * tp / np.maximum(tp + fp + fn, 1)
    lo, hi = np.percentile(value, [2.5, 97.5])
    return float(lo), float(hi)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", type=Path, help="also write all numbers here")
    p.add_argument("--against", help="another model (name or file) to compare with on the held-out images")
    p.add_argument("--scales", type=float, nargs="+", default=list(SCALES),
                   help="zooms of the scale-robustness table (default: %(default)s)")
    args = p.parse_args(argv)
    model = load_model(args.model)
    print(f"model {args.model}: {sum(t.numel() for t in model.network.state_dict().values()) * 4 / 1e6:.1f} MB of weights")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    groups = held_out()
    results: dict = {"held_out": {}, "scales": {}}
    written = {}
    with tempfile.TemporaryDirectory() as tmp:
        print("\nHeld-out AP (pooled over objects), object size estimated per image")
        print(f"{'images':<18} {'n':>3} {'method':<8} {'AP@0.5':>7} {'95% interval':>14} {'AP@0.75':>8} {'AP@0.9':>7}")
        for group, ids in groups.items():
            images, labels = write_scaled(ids, 1.0, Path(tmp) / group.replace("/", "_") / "1.0")
            written[group] = images, labels
            report = evaluate(model, images, labels, baseline="otsu", device=args.device)
            results["held_out"][group] = report["results"]
            for method, r in report["results"].items():
                a = [ap_at(r, t) for t in (0.5, 0.75, 0.9)]
                lo, hi = interval([object_counts(r, 0.5)])
                print(f"{group:<18} {len(ids):>3} {method:<8} {a[0]:>7.3f} {f'{lo:.3f}-{hi:.3f}':>14} {a[1]:>8.3f} {a[2]:>7.3f}")
        if args.against:
            compare(load_model(args.against), args.against, written, results, args.device)
        print("\nScale robustness: AP@0.5 with the object size estimated automatically")
        print(f"{'images':<18} " + " ".join(f"{s:>6}x" for s in args.scales))
        for group, ids in groups.items():
            row = []
            for scale in args.scales:
                images, labels = write_scaled(ids, scale, Path(tmp) / group.replace("/", "_") / str(scale))
                r = evaluate(model, images, labels, device=args.device)["results"]["model"]
                row.append(ap_at(r, 0.5))
            results["scales"][group] = dict(zip(map(str, args.scales), row))
            print(f"{group:<18} " + " ".join(f"{v:>7.3f}" for v in row))
    results["speed_1024"] = speed(model, args.device, args.repeats)
    print("\nSpeed: 1024x1024 image, segment() end to end, median of repeats")
    for name, seconds in results["speed_1024"].items():
        print(f"{name:<24} {seconds:>6.2f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


def compare(other, name: str, written: dict, results: dict, device: str) -> None:
    """Score ``other`` on the held-out images already written and print the paired differences of AP@0.5."""
    print(f"\nAgainst {name}: AP@0.5 of this model minus that one's, on the same images")
    print(f"{'images':<18} {'this':>6} {'that':>6} {'difference':>10} {'95% interval':>15}")
    results["against"] = {"model": name}
    for group, (images, labels) in written.items():
        mine = results["held_out"][group]["model"]
        theirs = evaluate(other, images, labels, device=device)["results"]["model"]
        if [im["image"] for im in mine["per_image"]] != [im["image"] for im in theirs["per_image"]]:
            raise RuntimeError("the two models were scored on different images")
        a, b = ap_at(mine, 0.5), ap_at(theirs, 0.5)
        lo, hi = interval([object_counts(mine, 0.5), object_counts(theirs, 0.5)], weights=(1, -1))
        results["against"][group] = {"this": a, "that": b, "interval": [lo, hi]}
        print(f"{group:<18} {a:>6.3f} {b:>6.3f} {a - b:>+10.3f} {f'{lo:+.3f} to {hi:+.3f}':>15}")


if __name__ == "__main__":
    sys.exit(main())
