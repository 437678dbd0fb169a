"""The transfer benchmark's fine-tunes at other shares of the way from the default, without training again.

    python benchmarks/finetune_blends.py --shares 0.5 0.7                 # scored in full, as finetune_transfer.py does
    python benchmarks/finetune_blends.py --shares 0.05 0.1 0.2 0.3 0.5 0.7 1 --only "Tumor touch imprint"
    python benchmarks/finetune_blends.py --shares 0.7 --finest 0.5 --preparations "tissue section"   # layer-wise
    python benchmarks/finetune_blends.py --table

``TrainConfig.blend`` is applied after training, and ``finetune.toward`` is linear in the
weights (as is the average of a rotation's runs), so the model a fine-tune would have
offered at any blend can be rebuilt exactly from the model ``finetune_transfer.py`` saved
(``benchmarks/results/models``, git-ignored: run that benchmark first). The saved model of
a run that was pulled back is half of its fine-tune (its record's ``blend``), and its finest layers
are ``blend_finest`` of the way (in its provenance; ``blend`` before there was one); that is taken
into account. ``--finest`` rebuilds the network's finest layers (``TrainConfig.blend_finest``) at
their own share, each of ``--shares`` the rest.
A file is used only if the checks it carries are those of the run it is named for.

Each rebuilt model gets the forgetting check on the replay set's check crops, as
``FineTune`` would give it. When it forgot, it is pulled back halfway, as
``FineTune`` does (until commit 666b3f4, only when the held-out check also said
better); ``FineTune`` adopts the model pulled back only when it passes both
checks. The held-out check needs each rotation run's own weights, which are not
saved, so it is not redone here. The decision to adopt is not redone either: what
is scored is the model such a run would offer.

``--only`` scores those preparations alone, and neither the DSB images nor the
forgetting check, which is quick for a look along the whole line. Records go to
``benchmarks/results/finetune_blends.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from finetune_transfer import (  # noqa: E402
    RESULTS, counts_per_image, held_out_fluorescence, kromp, pooled, preparations, saved_model, scores, summary,
)
from napari_unet import load_model  # noqa: E402
from napari_unet.core.training.check import compare, forgot  # noqa: E402
from napari_unet.core.training.finetune import replay_counts, toward  # noqa: E402
from napari_unet.core.training.replay import load_replay  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "finetune_blends.json"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shares", type=float, nargs="+", default=[0.5])
    p.add_argument("--tag", default="blend 1 (shipped until 2026-12-05)",
                   help="the runs of finetune_transfer.py to rebuild")
    p.add_argument("--files", default="replay_set_128+32_crops",
                   help="the name their saved models start with (the tag as it was when they were saved)")
    p.add_argument("--finest", type=float, help="the finest layers' share (default: as the rest)")
    p.add_argument("--preparations", nargs="+", help="rebuild only the runs on these preparations")
    p.add_argument("--seeds", type=int, nargs="+", help="rebuild only the runs of these seeds")
    p.add_argument("--minutes", type=float, default=2.0)
    p.add_argument("--only", nargs="+", help="score only these preparations (no DSB, no forgetting check)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--table", action="store_true", help="print the tables of the saved records and stop")
    args = p.parse_args()
    results = json.loads(OUT.read_text()) if OUT.is_file() else {"records": []}
    if args.table:
        print(table(results["records"]))
        return
    torch.set_num_threads(args.threads)
    transfer = json.loads(RESULTS.read_text())
    runs = sorted((r for r in transfer["runs"] if r["tag"] == args.tag and r["minutes"] == args.minutes
                   and (not args.preparations or r["preparation"] in args.preparations)
                   and (not args.seeds or r["seed"] in args.seeds)),
                  key=lambda r: (r["preparation"], r["seed"]))
    parent = load_model("default")
    prep = preparations()
    dsb_ids = held_out_fluorescence()
    replay = load_replay(parent.config)
    parent_check = None if args.only else replay_counts(parent, replay)
    only = sorted(n for n in prep if prep[n] in args.only) if args.only else None
    base = pooled(counts_per_image(parent, only, kromp), only)[0] if only else None
    for run in runs:
        saved = saved_model(run, [args.files])
        saved_share = run["blend"]  # a run pulled back records the share it kept
        saved_finest = saved.config.provenance.get("blend_finest", saved_share)
        for share in args.shares:
            finest = share if args.finest is None else args.finest
            record = {"tag": args.tag, "minutes": args.minutes, "preparation": run["preparation"], "seed": run["seed"],
                      "corrected": run["corrected"], "share": share, "only": args.only}
            if args.finest is not None:
                record["finest"] = finest

            def rebuilt(fraction: float = 1.0):
                return toward(parent, saved, fraction * share / saved_share, fraction * finest / saved_finest)

            model = rebuilt()
            if only:
                change = pooled(counts_per_image(model, only, kromp), only)[0] - base
                record["change"] = change
                print(f"{run['preparation']} seed {run['seed']} share {share:g}: {change:+.3f}", flush=True)
            else:
                forgetting = compare("forgetting", parent_check, replay_counts(model, replay), seed=run["seed"])
                record["forgetting"] = forgetting.as_dict()
                record["offered"] = share
                if forgot(forgetting):
                    record["offered"] = share / 2
                    model = rebuilt(0.5)
                record["scores"] = scores(model, prep, dsb_ids)
                record["summary"] = summary(record, transfer["parent"], prep)
                s = record["summary"]
                print(f"{run['preparation']} seed {run['seed']} share {share:g}, finest {finest:g} "
                      f"(offered {record['offered']:g}): "
                      f"own {s['own'][0]:+.3f}, worst elsewhere {min(s['elsewhere'].values()):+.3f}, "
                      f"DSB {s['dsb']:+.3f}", flush=True)
            results["records"] = [r for r in results["records"] if not _same(r, record)] + [record]
            OUT.write_text(json.dumps(results, indent=1))
    print(table(results["records"]))


def _key(r: dict) -> tuple:
    """The settings a full record was rebuilt with: its runs, minutes, share and the finest layers' share."""
    return r["tag"], r["minutes"], r["share"], r.get("finest", r["share"])


def _same(a: dict, b: dict) -> bool:
    keys = ("tag", "minutes", "preparation", "seed", "share", "finest", "only")
    return all(a.get(k) == b.get(k) for k in keys)


def table(records: list[dict]) -> str:
    lines = []
    full = [r for r in records if not r["only"]]
    if full:
        lines += ["| runs | share | finest | own AP@0.5 | elsewhere: worst, below -0.02 | DSB: mean, worst, beyond 0.02 "
                  "| pulled back |", "|---|---|---|---|---|---|---|"]
        for key in sorted({_key(r) for r in full}):
            rs = [r for r in full if _key(r) == key]
            own = [r["summary"]["own"][0] for r in rs]
            els = [v for r in rs for v in r["summary"]["elsewhere"].values()]
            dsb = [r["summary"]["dsb"] for r in rs]
            preps = sorted({r["preparation"] for r in rs})
            which = f" ({', '.join(preps)})" if len(preps) < 3 else ""
            lines.append(
                f"| {key[0]}, {key[1]:g} min, {len(rs)}{which} | {key[2]:g} | {key[3]:g} | {np.mean(own):+.3f} "
                f"(min {min(own):+.3f}) | {min(els):+.3f}, {sum(e < -0.02 for e in els)} of {len(els)} | "
                f"{np.mean(dsb):+.3f}, {min(dsb):+.3f}, {sum(d < -0.02 for d in dsb)} | "
                f"{sum(r['offered'] < r['share'] for r in rs)} |"
            )
    partial = [r for r in records if r["only"]]
    for only in sorted({tuple(r["only"]) for r in partial}):
        rs = [r for r in partial if tuple(r["only"]) == only]
        shares = sorted({r["share"] for r in rs})
        changes = {s: [r["change"] for r in rs if r["share"] == s] for s in shares}
        lines += ["", f"| {', '.join(only)}: share | " + " | ".join(f"{s:g}" for s in shares) + " |",
                  "|---|" + "---|" * len(shares),
                  "| changes below -0.02 | " + " | ".join(f"{sum(c < -0.02 for c in changes[s])} of {len(changes[s])}"
                                                       for s in shares) + " |",
                  "| worst change | " + " | ".join(f"{min(changes[s]):+.3f}" for s in shares) + " |"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
