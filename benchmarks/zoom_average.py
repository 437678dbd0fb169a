"""A trial: averaging the probabilities of three zooms where objects are zoomed far down, scored both ways.

``Segmenter(average_zooms=True)`` predicts a plane whose zoom is at most about 0.58 (objects over about 1.7
times the trained size) at 0.9, 1 and 1.1 times that zoom and averages the probabilities (``sizing.zooms``).
That changes how every model scores, the default's included. This scores the default and the models that
``benchmarks/finetune_transfer.py`` saved for the runs of ``--tag`` in ``--results`` with one zoom, next to
the scores with zooms averaged that the transfer benchmark recorded, and prints each run's changes against
the default scored the same way: the same fine-tunes both ways, so that what the averaging does is not mixed
up with what another run of the fine-tunes (another machine, other steps) does.

    PYTHONPATH=. .venv/bin/python benchmarks/finetune_transfer.py --minutes 2 --seeds 0 1 2 3 \\
        --results benchmarks/results/finetune_transfer_zoom_average.json --tag "shipped, zooms averaged"
    PYTHONPATH=. .venv/bin/python benchmarks/zoom_average.py --minutes 2
    PYTHONPATH=. .venv/bin/python benchmarks/zoom_average.py --table

(the transfer benchmark run with zooms averaged, ``average_zooms=True`` being the default of ``Segmenter``
at the commit that ran it). Results: ``benchmarks/results/zoom_average.json``, runs appended.
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

from finetune_transfer import held_out_fluorescence, pooled, preparations, saved_model, scores, summary  # noqa: E402
from napari_unet import load_model  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "zoom_average.json"
TRIAL = ROOT / "benchmarks" / "results" / "finetune_transfer_zoom_average.json"
HOW = ("averaged", "one zoom")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tag", default="shipped, zooms averaged")
    p.add_argument("--minutes", type=float, default=2.0)
    p.add_argument("--results", type=Path, default=TRIAL, help="the transfer benchmark's results, zooms averaged")
    p.add_argument("--table", action="store_true", help="print the tables of the saved results and stop")
    args = p.parse_args()
    prep = preparations()
    if args.table:
        print(table(json.loads(OUT.read_text()), prep))
        return
    torch.set_num_threads(2)
    dsb_ids = held_out_fluorescence()
    transfer = json.loads(args.results.read_text())
    out = json.loads(OUT.read_text()) if OUT.is_file() else {"parent": None, "runs": []}
    if out["parent"] is None:
        one = scores(load_model("default"), prep, dsb_ids, average_zooms=False)
        out["parent"] = {"averaged": transfer["parent"], "one zoom": one}
    for r in transfer["runs"]:
        if r["tag"] != args.tag or r["minutes"] != args.minutes:
            continue
        one = dict(r, scores=scores(saved_model(r, [args.tag]), prep, dsb_ids, average_zooms=False))
        both = {"averaged": summary(r, out["parent"]["averaged"], prep),
                "one zoom": summary(one, out["parent"]["one zoom"], prep)}
        out["runs"].append({k: r[k] for k in ("tag", "minutes", "preparation", "seed", "corrected")}
                           | {"one_zoom_scores": one["scores"], "summary": both})
        OUT.write_text(json.dumps(out, indent=1))
        print(f"{r['preparation']} seed {r['seed']}: own {both['averaged']['own'][0]:+.3f} averaged, "
              f"{both['one zoom']['own'][0]:+.3f} one zoom", flush=True)
    print(table(out, prep))


def table(out: dict, prep: dict[str, str]) -> str:
    """Markdown: the default's pooled AP@0.5 per preparation both ways, then per length of run the mean changes
    of the fine-tunes both ways."""
    groups = sorted(set(prep.values()))
    lines = ["| the default model | " + " | ".join(groups) + " | DSB fluo. |", "|---|" + "---|" * (len(groups) + 1)]
    for how in HOW:
        parent = out["parent"][how]
        aps = [pooled(parent["kromp"], [n for n in prep if prep[n] == g])[0] for g in groups]
        dsb = pooled(parent["dsb_fluorescence"], list(parent["dsb_fluorescence"]))[0]
        lines.append(f"| {how} | " + " | ".join(f"{a:.3f}" for a in aps) + f" | {dsb:.3f} |")
    lines += ["", "| fine-tunes | min | runs | own prep. AP@0.5 | other preps (mean, below -0.02, worst) | DSB fluo. |",
              "|---|---|---|---|---|---|"]
    for minutes in sorted({r["minutes"] for r in out["runs"]}):
        runs = [r for r in out["runs"] if r["minutes"] == minutes]
        for how in HOW:
            s = [r["summary"][how] for r in runs]
            own = [x["own"][0] for x in s]
            elsewhere = [v for x in s for v in x["elsewhere"].values()]
            dsb = [x["dsb"] for x in s]
            lines.append(
                f"| {how} | {minutes:g} | {len(runs)} | {np.mean(own):+.3f} (min {min(own):+.3f}) | "
                f"{np.mean(elsewhere):+.3f}, {sum(v < -0.02 for v in elsewhere)} of {len(elsewhere)}, "
                f"{min(elsewhere):+.3f} | {np.mean(dsb):+.3f} (min {min(dsb):+.3f}) |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
