"""Could the fine-tune's checks predict in bfloat16? The same paired comparisons in float32 and in bfloat16.

    python benchmarks/check_precision.py --tag "shipped before 666b3f4"   # the 24 two-minute runs it judged
    python benchmarks/check_precision.py --table

The checks of ``FineTune`` (``core/training/check.py``) predict the held-out images and the replay
crops with the parent and with the fine-tune, in float32 on a CPU. Where the CPU computes bfloat16
natively the network runs twice as fast in it, and on large held-out images the checks are then
the biggest cost of a one-minute fine-tune after the steps. This asks whether the answer would
stay the same: for each saved fine-tune of ``finetune_transfer.py`` (``benchmarks/results/models``,
git-ignored: run that benchmark first), the gain over the default model

- on the preparation's other images, scored as the held-out check scores (mean AP over IoU 0.5 to
  0.9, the object size estimated), and
- on the replay set's check crops, as the forgetting check scores (AP@0.5),

with both models predicting in float32, then both in bfloat16 (``torch.autocast``). Records go to
``benchmarks/results/check_precision.json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import _record  # noqa: E402
from finetune_transfer import RESULTS, SHIPPED_FILES, corrections, preparations, saved_model  # noqa: E402
from napari_unet import load_model  # noqa: E402
from napari_unet.core.devices import mixed_precision  # noqa: E402
from napari_unet.core.predict import inference  # noqa: E402
from napari_unet.core.predict.predictor import NetworkPredictor  # noqa: E402
from napari_unet.core.training.check import compare, forgot  # noqa: E402
from napari_unet.core.training.finetune import held_out_counts, replay_counts  # noqa: E402
from napari_unet.core.training.replay import load_replay  # noqa: E402

PRECISIONS = {"float32": False, "bfloat16": True}  # NetworkPredictor's amp on the CPU


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tag", default="shipped", help="the runs of finetune_transfer.py to judge again")
    p.add_argument("--files", nargs="+", default=SHIPPED_FILES,
                   help="the names their saved models may start with (the tag when they were saved)")
    p.add_argument("--minutes", type=float, default=2.0)
    p.add_argument("--threads", type=int, default=2)
    _record.options(p, "check_precision")
    args = p.parse_args()
    if args.table:
        record = json.loads(args.results.read_text())
        print(_record.heading(record) + "\n")
        print(table(record["results"]["runs"]))
        speeds = record["results"]["seconds_per_batch"]
        print("\nnetwork, 4 tiles of 256 px: " + ", ".join(f"{k} {v:.3f} s" for k, v in speeds.items()))
        return
    if mixed_precision(torch.device("cpu")) != torch.bfloat16:
        sys.exit("this CPU does not compute bfloat16 natively: nothing to compare")
    torch.set_num_threads(args.threads)
    facts = _record.started(args)
    transfer = json.loads(RESULTS.read_text())["runs"]
    runs = sorted((r for r in transfer if r["tag"] == args.tag and r["minutes"] == args.minutes),
                  key=lambda r: (r["preparation"], r["seed"]))
    parent = load_model("default")
    replay = load_replay(parent.config)
    prep = preparations()
    parent_counts: dict = {}  # the default model's counts, per precision and images
    records = []
    for run in runs:
        model = saved_model(run, args.files)
        others = sorted(n for n in prep if prep[n] == run["preparation"] and n not in run["corrected"])
        record = {"preparation": run["preparation"], "seed": run["seed"], "others": others}
        for name, amp in PRECISIONS.items():
            inference.NetworkPredictor = functools.partial(NetworkPredictor, amp=amp)
            try:
                key = (name, run["preparation"], tuple(others))
                if key not in parent_counts:
                    parent_counts[key] = held_out_counts(parent, corrections(others, parent.config))
                    parent_counts[(name, "replay")] = replay_counts(parent, replay)
                own = compare("own", parent_counts[key], held_out_counts(model, corrections(others, model.config)),
                              seed=run["seed"])
                replayed = compare("replay", parent_counts[(name, "replay")], replay_counts(model, replay),
                                   seed=run["seed"])
            finally:
                inference.NetworkPredictor = NetworkPredictor
            record[name] = {"own": own.as_dict(), "replay": replayed.as_dict(), "forgot": forgot(replayed)}
        records.append(record)
        a, b = record["float32"], record["bfloat16"]
        print(f"{run['preparation']} seed {run['seed']}: own {a['own']['gain']:+.4f} -> {b['own']['gain']:+.4f}, "
              f"replay {a['replay']['gain']:+.4f} -> {b['replay']['gain']:+.4f}", flush=True)
    _record.save(args.results, facts, {"runs": records, "seconds_per_batch": speed(parent)})
    print(table(records))


def speed(model, repeats: int = 7) -> dict[str, float]:
    """Median seconds of the network on a batch of 4 tiles of 256 px, in each precision."""
    batch = np.random.default_rng(0).random((4, model.config.network.in_channels, 256, 256), dtype=np.float32)
    out = {}
    for name, amp in PRECISIONS.items():
        predictor = NetworkPredictor(model.network, "cpu", amp=amp)
        predictor(batch)  # the first call sets up the kernels
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            predictor(batch)
            times.append(time.perf_counter() - start)
        out[name] = float(np.median(times))
    return out


def table(records: list[dict]) -> str:
    """Per check: the mean gain in float32, how far bfloat16 moves it (mean and largest), and how many of the
    check's decisions it changes (the held-out check: the sign of the gain; the forgetting check: forgot)."""
    lines = ["| check | gain in float32: mean | bfloat16 minus float32: mean | largest difference | "
             "decisions that change |", "|---|---|---|---|---|"]
    for check, what in (("own", "other images, mean AP@0.5:0.9"), ("replay", "replay crops, AP@0.5")):
        a = np.array([r["float32"][check]["gain"] for r in records])
        b = np.array([r["bfloat16"][check]["gain"] for r in records])
        if check == "own":
            changed = sum((x > 0) != (y > 0) for x, y in zip(a, b))
        else:
            changed = sum(r["float32"]["forgot"] != r["bfloat16"]["forgot"] for r in records)
        lines.append(f"| {what} ({len(records)} runs) | {a.mean():+.4f} | {(b - a).mean():+.4f} | "
                     f"{np.abs(b - a).max():.4f} | {changed} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
