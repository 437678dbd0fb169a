"""What the automatic object-size estimate costs, and what cheaper settings of it would change.

    python benchmarks/size_estimate.py [--model default] [--crops 512 384] [--stops 1 2]
    python benchmarks/size_estimate.py --crops 512 384 256 --stops 1 2   # the run docs/benchmarks.md quotes
    python benchmarks/size_estimate.py --table                           # its table, from the saved results

On the held-out DSB 2018 images of the default model's card (fluorescence and
brightfield/H&E, at 0.5x, 1x and 2x, as `default_model_card.py` writes them),
each setting of the estimate is run through `napari-unet evaluate`'s core and
the table gives, per modality and scale: AP@0.5 / 0.75 / 0.9 (pooled), the
model runs the estimates made and the megapixels they put through the model,
and how many images got another zoom than with the first setting.

Settings: ``--crops``, the largest crop side the estimate measures on
(``sizing.CROP``); ``--stops``, where the search from below stops, in
tolerances below the zoom already settled (``sizing.STOP_BELOW``). Every
combination is run; the first is the reference. Results go to
``benchmarks/results/size_estimate.json`` (``--results``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _record import heading, options, save, started  # noqa: E402
from default_model_card import SCALES, ap_at, held_out, write_scaled  # noqa: E402

from napari_unet import load_model  # noqa: E402
from napari_unet.core.predict import inference, sizing
from napari_unet.core.evaluation.evaluate import evaluate


class Count:
    """Counts the estimate's model runs and pixels, and records each estimate, while installed."""

    def __init__(self):
        self.runs = self.pixels = 0
        self.zooms: list[float] = []
        self._label_crop = inference.Segmenter._label_crop
        self._estimate = inference.iter_estimate_scale

    def __enter__(self):
        def label_crop(segmenter, x):
            self.runs += 1
            self.pixels += x.shape[1] * x.shape[2]
            return self._label_crop(segmenter, x)

        def estimate(*args, **kwargs):
            self.zooms.append((yield from self._estimate(*args, **kwargs)))
            return self.zooms[-1]

        inference.Segmenter._label_crop, inference.iter_estimate_scale = label_crop, estimate
        return self

    def __exit__(self, *exc):
        inference.Segmenter._label_crop, inference.iter_estimate_scale = self._label_crop, self._estimate


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default")
    p.add_argument("--device", default="cpu")
    p.add_argument("--crops", type=int, nargs="+", default=[sizing.CROP])
    p.add_argument("--stops", type=float, nargs="+", default=[sizing.STOP_BELOW / sizing.TOLERANCE])
    options(p, "size_estimate")
    args = p.parse_args(argv)
    if args.table:
        print(table(json.loads(args.results.read_text())))
        return 0
    facts = started(args)
    model = load_model(args.model)
    settings = list(itertools.product(args.crops, args.stops))
    defaults = sizing.CROP, sizing.STOP_BELOW
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for group, ids in held_out().items():
                for scale in SCALES:
                    images, labels = write_scaled(ids, scale, Path(tmp) / group.replace("/", "_") / str(scale))
                    reference = None
                    for crop, stop in settings:
                        sizing.CROP, sizing.STOP_BELOW = crop, stop * sizing.TOLERANCE
                        start = time.perf_counter()
                        with Count() as count:
                            result = evaluate(model, images, labels, device=args.device)["results"]["model"]
                        reference = count.zooms if reference is None else reference
                        rows.append({
                            "images": group, "n": len(ids), "scale": scale, "crop": crop, "stop": stop,
                            "ap": [ap_at(result, t) for t in (0.5, 0.75, 0.9)], "runs": count.runs,
                            "megapixels": count.pixels / 1e6, "seconds": time.perf_counter() - start,
                            "changed": sum(abs(a - b) > 1e-9 for a, b in zip(reference, count.zooms)),
                        })
                        print(row(rows[-1]), f"{rows[-1]['seconds']:.0f} s", flush=True)
    finally:
        sizing.CROP, sizing.STOP_BELOW = defaults
    print(table(save(args.results, facts, {"shipped": {"crop": defaults[0], "stop": defaults[1] / sizing.TOLERANCE},
                                           "rows": rows})))
    return 0


def row(r: dict, bold: bool = False) -> str:
    setting = f"**{r['crop']}** | **{r['stop']:g}**" if bold else f"{r['crop']} | {r['stop']:g}"
    return (f"| {r['images']} ({r['n']}) | {r['scale']:g} | {setting} | "
            + " | ".join(f"{a:.3f}" for a in r["ap"]) + f" | {r['runs']} | {r['megapixels']:.2f} | {r['changed']} |")


def table(record: dict) -> str:
    """Markdown: a row per images, scale and setting; the shipped setting in bold."""
    shipped = record["results"]["shipped"]
    lines = [heading(record), "", "| images | scale | crop | stop | AP@0.5 | AP@0.75 | AP@0.9 | runs | Mpx | changed |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in record["results"]["rows"]:
        lines.append(row(r, bold=(r["crop"], r["stop"]) == (shipped["crop"], shipped["stop"])))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
