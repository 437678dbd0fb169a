"""Training throughput and time-to-improvement, printed as tables and saved.

    python benchmarks/training.py                 # CPU
    python benchmarks/training.py --device cuda   # on a GPU
    python benchmarks/training.py --table         # the tables of the saved results

1. Throughput: training steps of the default architecture (width 16, depth 4)
   and of the small test architecture (width 8, depth 3) on real DSB 2018
   patches; patches/s and megapixels/s, median of timed steps after warm-up;
   in float32 and, where the device has it, in mixed precision
   (``TrainConfig.amp``: bfloat16 on CPUs that compute it natively).
2. Time to improvement: the fluorescence-only model of the tests
   (tests/models/fluo_only.safetensors) fine-tuned on one corrected H&E image;
   AP@0.5 on the held-out H&E images after each block of steps, with the
   elapsed training time, so the table says how long a user waits for a
   model that is better on their cells.

Results go to ``benchmarks/results/training.json`` (``--results``).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import tifffile
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "benchmarks"))

from _record import heading, options, save, started  # noqa: E402

from napari_unet import load_model, segment  # noqa: E402
from napari_unet.core.devices import mixed_precision, resolve_device
from napari_unet.core.models.config import ModelConfig
from napari_unet.core.evaluation.metrics import match_instances
from napari_unet.core.models.model import Model
from napari_unet.core.predict.sizing import median_diameter
from napari_unet.core.training import TrainConfig, Trainer, make_samples, split_validation  # noqa: E402
from napari_unet.core.training.files import scale_to  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "dsb2018"
CORRECTED = "f952cc65376009cfad8249e53b9b2c0daaa3553e897096337d143c625c2df886"


def image_and_labels(image_id: str):
    return tifffile.imread(DATA / "images" / f"{image_id}.tif"), tifffile.imread(DATA / "labels" / f"{image_id}.tif")


def throughput(device: str, patch: int, batch: int, steps: int) -> list[dict]:
    """Per architecture, the seconds of each timed step."""
    image, labels = image_and_labels(CORRECTED)
    lower = mixed_precision(resolve_device(device))
    rows = []
    for width, depth in ((16, 4), (8, 3)):
        for amp in (False, True) if lower is not None else (False,):
            torch.manual_seed(0)
            model = Model.from_config(ModelConfig(network=dict(width=width, depth=depth), object_size=20.0))
            samples = make_samples(image, labels, model.config)
            config = TrainConfig(steps=steps + 3, patch=patch, batch_size=batch, amp=amp)
            trainer = Trainer(model, samples, [], config, device=device)
            times, last = [], None
            for update in trainer.run():
                if last is not None and update.step > 3:
                    times.append(update.seconds - last)
                last = update.seconds
            precision = str(lower).removeprefix("torch.") if amp else "float32"
            rows.append({"width": width, "depth": depth, "patch": patch, "batch": batch, "precision": precision,
                         "step_seconds": times})
    return rows


def time_to_improvement(device: str, blocks: int, steps_per_block: int) -> list[dict]:
    """After each block of steps: the steps, the seconds spent training so far, and held-out AP@0.5."""
    split = json.loads((ROOT / "scripts" / "dsb2018_split.json").read_text())
    modality = {e["id"]: e["modality"] for e in json.loads((DATA / "index.json").read_text())}
    held_out = [i for i in split["test"] if modality[i] == "rgb_brightfield/HE"]
    model = load_model(ROOT / "tests" / "models" / "fluo_only.safetensors")

    def ap50(m) -> float:
        counts = None
        for i in held_out:
            image, truth = image_and_labels(i)
            c = match_instances(segment(image, m, device=device, object_size=median_diameter(truth)), truth)
            counts = c if counts is None else counts + c
        return float(counts.average_precision[0])

    image, labels = image_and_labels(CORRECTED)
    samples = scale_to(make_samples(image, labels, model.config), model.config.object_size)
    train, _ = split_validation(samples, 0.25, np.random.default_rng(0))
    config = TrainConfig(steps=blocks * steps_per_block, patch=128, batch_size=4, lr=1e-3, val_fraction=0)
    trainer = Trainer(model, train, [], config, device=device)
    rows = [{"steps": 0, "seconds": 0.0, "ap50": ap50(model)}]
    evaluating = 0.0  # time spent scoring between steps, not training
    for update in trainer.run():
        if update.step % steps_per_block == 0:
            start = time.perf_counter()
            snapshot = Model(copy.deepcopy(trainer.network).cpu().eval(), model.config)
            ap = ap50(snapshot)
            rows.append({"steps": update.step, "seconds": update.seconds - evaluating, "ap50": ap})
            evaluating += time.perf_counter() - start
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=10, help="timed steps per architecture")
    p.add_argument("--blocks", type=int, default=6, help="blocks of fine-tuning steps")
    p.add_argument("--block-steps", type=int, default=10)
    options(p, "training")
    args = p.parse_args(argv)
    if not args.table:
        torch.manual_seed(0)
        facts = started(args)
        results = {"throughput": throughput(args.device, args.patch, args.batch_size, args.steps)}
        print(throughput_table(results["throughput"]), flush=True)
        results["time_to_improvement"] = time_to_improvement(args.device, args.blocks, args.block_steps)
        save(args.results, facts, results)
    print(table(json.loads(args.results.read_text())))
    return 0


def throughput_table(rows: list[dict]) -> str:
    lines = ["| network | patch | batch | precision | s / step | patches / s | Mpx / s |",
             "| --- | ---: | ---: | --- | ---: | ---: | ---: |"]
    for r in rows:
        t = statistics.median(r["step_seconds"])
        lines.append(f"| width {r['width']}, depth {r['depth']} | {r['patch']} | {r['batch']} | "
                     f"{r.get('precision', 'float32')} | {t:.2f} | "
                     f"{r['batch'] / t:.1f} | {r['batch'] * r['patch'] ** 2 / t / 1e6:.3f} |")
    return "\n".join(lines)


def table(record: dict) -> str:
    """Markdown: throughput (median step after warm-up), then AP@0.5 on held-out H&E after each block of steps."""
    r = record["results"]
    lines = [heading(record), "", throughput_table(r["throughput"]), "",
             "| fine-tuning steps | training time (s) | AP@0.5, held-out H&E images |", "| ---: | ---: | ---: |"]
    lines += [f"| {x['steps']} | {x['seconds']:.1f} | {x['ap50']:.3f} |" for x in r["time_to_improvement"]]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
