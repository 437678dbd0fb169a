"""The transfer benchmark's fine-tunes, each image zoomed by their own size estimate or by the default model's.

    python benchmarks/finetune_sizing.py --tag "shipped, faster VM, at 49d6dc2" --minutes 2
    python benchmarks/finetune_sizing.py --table

A fine-tune of the shipped model estimates the object size of a new image with
the shipped model (``ModelConfig.sizing``, since commit a30ffd4); before, it
estimated sizes itself. This scores the models that ``finetune_transfer.py``
saved (``benchmarks/results/models``, git-ignored: run that benchmark first)
on every kromp2020 image both ways, as a user who changes nothing gets them,
against the default model (which sizes for itself either way). The corrected
images are left out of their preparation's score, as there. DSB is scored at
the true object size there, so neither way changes it, and it is not scored here.

Records go to ``benchmarks/results/finetune_sizing.json``; ``--table`` prints,
per set of runs, the change on the corrected preparation's other images and on
every other preparation, with the fine-tune's own estimates and with the default's.
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

from finetune_transfer import RESULTS, counts_per_image, kromp, kromp_changes, preparations, saved_model  # noqa: E402
from napari_unet.core.models.model import Model  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "finetune_sizing.json"
WAYS = {"own": None, "default's": "default"}  # the estimate: ModelConfig.sizing


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tag", help="the runs of finetune_transfer.py to score again")
    p.add_argument("--files", help="the name their saved models start with (the tag, spaces as _, by default)")
    p.add_argument("--minutes", type=float, default=2.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--table", action="store_true", help="print the table of the saved records and stop")
    args = p.parse_args()
    results = json.loads(OUT.read_text()) if OUT.is_file() else {"records": []}
    if args.table:
        print(table(results["records"], preparations()))
        return
    if not args.tag:
        p.error("--tag is needed to score runs")
    torch.set_num_threads(args.threads)
    transfer = json.loads(RESULTS.read_text())
    runs = sorted((r for r in transfer["runs"] if r["tag"] == args.tag and r["minutes"] == args.minutes),
                  key=lambda r: (r["preparation"], r["seed"]))
    if not runs:
        sys.exit(f"no {args.minutes:g}-minute runs tagged {args.tag!r} in {RESULTS}")
    prep = preparations()
    names = sorted(prep)
    parent = transfer["parent"]["kromp"]
    for run in runs:
        saved = saved_model(run, [args.files or args.tag.replace(" ", "_")])
        record = {"tag": args.tag, "minutes": args.minutes, "preparation": run["preparation"], "seed": run["seed"],
                  "corrected": run["corrected"], "kromp": {}}
        for way, sizing in WAYS.items():
            model = Model(saved.network, saved.config.model_copy(update={"sizing": sizing}))
            record["kromp"][way] = counts_per_image(model, names, kromp)
        record["summary"] = {way: changes(record, way, parent, prep) for way in WAYS}
        s = record["summary"]
        print(f"{run['preparation']} seed {run['seed']}: own preparation "
              + ", ".join(f"{s[w]['own']:+.3f} ({w})" for w in WAYS) + "; worst elsewhere "
              + ", ".join(f"{min(s[w]['elsewhere'].values()):+.3f} ({w})" for w in WAYS), flush=True)
        results["records"] = [r for r in results["records"] if not _same(r, record)] + [record]
        OUT.write_text(json.dumps(results, indent=1))
    print(table(results["records"], prep))


def changes(record: dict, way: str, parent: dict, prep: dict[str, str]) -> dict:
    """AP@0.5 change against the default on the corrected preparation's other images and on each other one."""
    row = kromp_changes(record["kromp"][way], parent, record, prep)
    return {"own": row["own"][0], "elsewhere": row["elsewhere"]}


def _same(a: dict, b: dict) -> bool:
    return all(a[k] == b[k] for k in ("tag", "minutes", "preparation", "seed"))


def table(records: list[dict], prep: dict[str, str]) -> str:
    lines = ["| runs | min | sizes by | own AP@0.5 (mean, min) | elsewhere (mean, worst) | below -0.02 elsewhere |",
             "|---|---|---|---|---|---|"]
    for tag, minutes in sorted({(r["tag"], r["minutes"]) for r in records}):
        rs = [r for r in records if (r["tag"], r["minutes"]) == (tag, minutes)]
        for way in WAYS:
            own = [r["summary"][way]["own"] for r in rs]
            els = [v for r in rs for v in r["summary"][way]["elsewhere"].values()]
            lines.append(f"| {tag} ({len(rs)}) | {minutes:g} | {way} | {np.mean(own):+.3f}, {min(own):+.3f} | "
                         f"{np.mean(els):+.3f}, {min(els):+.3f} | {sum(e < -0.02 for e in els)} of {len(els)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
