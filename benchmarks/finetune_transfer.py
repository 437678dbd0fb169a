"""Does fine-tuning on two corrected images make the model better on the user's *other* images?

    python benchmarks/finetune_transfer.py                          # 2 minutes, 3 preparations, 2 seeds
    python benchmarks/finetune_transfer.py --minutes 1 2 5 --seeds 0 1
    python benchmarks/finetune_transfer.py --set '{"replay": 0}'    # a trial: TrainConfig fields over the defaults
    python benchmarks/finetune_transfer.py --replay NAME --tag T    # a trial: another replay set (make_replay_set.py --name)
    python benchmarks/finetune_transfer.py --table                  # the table of the saved results
    python benchmarks/finetune_transfer.py --table --results benchmarks/results/finetune_transfer_2026-12-02.json

Data: ``../shared/data/kromp2020_train`` (fluorescence nuclei of another lab,
never used to train the default model; see its README). For each preparation
and seed, two of its images, drawn with the seed, stand for the user's
corrections (their ground truth is the corrected labels); the default model is
fine-tuned on them with the shipped settings (``FineTune``: rotation check,
replay, everything as ``napari-unet train`` does it) for the given minutes on
this machine's CPU threads, and both models are scored, object size estimated
as a user who changes nothing gets it, on:

- the preparation's other images (pooled AP@0.5 and AP@0.75): the gain a user sees;
- every other preparation's images (pooled AP@0.5): what a fine-tune costs elsewhere;
- the held-out fluorescence images of DSB 2018 (``scripts/dsb2018_split.json``,
  object size given as the median of the true nuclei): what the model knew before.

The fine-tuned model is scored whether or not the check adopted it; the table
says what the check decided, so that its verdict can be compared with the real
change on the other images. Results go to ``benchmarks/results/finetune_transfer.json``
(one record per run, appended to what is there for other settings) and a
table is printed. The default model is scored once per results file: a change
to how images are scored (such as the object-size estimate) starts a new file
(``--results``); ``finetune_transfer_2026-12-02.json`` holds the runs made with
the size estimate before its search from far below started at an eighth of the zoom.
"""

from __future__ import annotations

import argparse
import csv
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

from napari_unet import load_model, segment  # noqa: E402
from napari_unet.core.evaluation.metrics import match_instances
from napari_unet.core.progress import run  # noqa: E402
from napari_unet.core.predict.inference import Segmenter, predict  # noqa: E402
from napari_unet.core.predict.sizing import median_diameter
from napari_unet.core.training import FineTune, TrainConfig, make_samples  # noqa: E402
from napari_unet.core.training.files import scale_to  # noqa: E402
from napari_unet.core.training.trainer import warm_up  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
KROMP = DATA / "kromp2020_train"
DSB = DATA / "dsb2018"
RESULTS = ROOT / "benchmarks" / "results" / "finetune_transfer.json"
MODELS = ROOT / "benchmarks" / "results" / "models"
# The names the shipped recipe's runs saved their models under (their tag then): "blend 0.7, 160 crops" before it
# was the default, "shipped before 666b3f4" copies of the files seeds 6 and 7 saved as "shipped" before they were
# run again, and "shipped".
SHIPPED_FILES = ["blend_0.7,_160_crops", "shipped before 666b3f4", "shipped"]
PREPARATIONS = ("tissue section", "BM cytospin", "cellline grown")


def preparations() -> dict[str, str]:
    """Image name -> preparation, from the data set's index."""
    with open(KROMP / "index.csv", newline="") as f:
        return {r["Image_Name"]: r["Preparation"] for r in csv.DictReader(f, delimiter=";")}


def kromp(name: str) -> tuple[np.ndarray, np.ndarray]:
    return tifffile.imread(KROMP / "images" / f"{name}.tif"), tifffile.imread(KROMP / "labels" / f"{name}.tif")


def held_out_fluorescence() -> list[str]:
    split = json.loads((ROOT / "scripts" / "dsb2018_split.json").read_text())
    modality = {e["id"]: e["modality"] for e in json.loads((DSB / "index.json").read_text())}
    return [i for i in split["test"] if modality[i] == "fluo_gray"]


def counts_per_image(model, names: list[str], read, *, true_size: bool = False) -> dict[str, list[int]]:
    """``[tp, fp, fn]`` at IoU 0.5 and 0.75 for each image."""
    out = {}
    for name in names:
        image, truth = read(name)
        size = median_diameter(truth) if true_size else "auto"
        c = match_instances(segment(image, model, device="cpu", object_size=size), truth)
        out[name] = [int(c.tp[0]), int(c.fp[0]), int(c.fn[0]), int(c.tp[5]), int(c.fp[5]), int(c.fn[5])]
    return out


def pooled(counts: dict[str, list[int]], names: list[str]) -> tuple[float, float]:
    """Pooled AP@0.5 and AP@0.75 over ``names``."""
    c = np.sum([counts[n] for n in names], axis=0)
    return c[0] / max(c[:3].sum(), 1), c[3] / max(c[3:].sum(), 1)


def dsb(name: str) -> tuple[np.ndarray, np.ndarray]:
    return tifffile.imread(DSB / "images" / f"{name}.tif"), tifffile.imread(DSB / "labels" / f"{name}.tif")


def scores(model, prep: dict[str, str], dsb_ids: list[str]) -> dict:
    return {
        "kromp": counts_per_image(model, sorted(prep), kromp),
        "dsb_fluorescence": counts_per_image(model, dsb_ids, dsb, true_size=True),
    }


def probabilities(model, image: np.ndarray, object_size) -> tuple[np.ndarray, float | None]:
    """``model``'s class probabilities of ``image`` at ``object_size`` (px, or ``"auto"``: its estimate), and the
    object size used (what the post-processing needs)."""
    segmenter = Segmenter(model, device="cpu", object_size=object_size)
    return predict(image, segmenter), segmenter.image_object_size


def saved_model(run: dict, prefixes: list[str]):
    """The model this benchmark saved for ``run``: the file, under one of ``prefixes`` (the tag a run had when it
    saved), whose checks are the record's.

    Tags in the results are renamed when the recipe they name stops being shipped, file names are not, and a later
    run under an old name overwrites the file: a file is taken as the run's only if its checks are the record's.
    """
    for prefix in prefixes:
        name = f"{prefix}_{run['minutes']:g}min_{run['preparation']}_seed{run['seed']}.safetensors".replace(" ", "_")
        if (MODELS / name).is_file():
            model = load_model(MODELS / name)
            if model.config.provenance.get("check") == run["check"]:
                return model
    sys.exit(f"no saved model of the {run['tag']!r} run ({run['preparation']}, seed {run['seed']}) under "
             f"{prefixes} whose checks are the record's: run this benchmark first, or name the files that run "
             "saved with --files")


def corrections(names: list[str], model_config) -> list:
    """The reviewed samples of the images ``names``, their labels taken as a user's corrections, each zoomed to the
    model's object size (as ``napari-unet train`` makes them)."""
    samples = []
    for name in names:
        image, labels = kromp(name)
        samples += make_samples(image, labels, model_config, name=name)
    return scale_to(samples, model_config.object_size)


def fine_tune(parent, corrected: list[str], config: TrainConfig):
    return run(FineTune(parent, corrections(corrected, parent.config), config, device="cpu").run())


def summary(record: dict, parent: dict, prep: dict[str, str]) -> dict:
    child = record["scores"]
    return kromp_changes(child["kromp"], parent["kromp"], record, prep) | {
        "dsb": pooled(child["dsb_fluorescence"], list(child["dsb_fluorescence"]))[0]
        - pooled(parent["dsb_fluorescence"], list(parent["dsb_fluorescence"]))[0],
    }


def kromp_changes(counts: dict, parent: dict, record: dict, prep: dict[str, str]) -> dict:
    """Against the default's kromp2020 ``parent`` counts: the change of pooled AP@0.5 and AP@0.75 on the run's
    own preparation's other images (``own``; the default's scores there: ``own_before``), and of AP@0.5 on each
    other preparation (``elsewhere``)."""
    own = record["preparation"]
    others = [n for n in prep if prep[n] == own and n not in record["corrected"]]
    row = {
        "own": [a - b for a, b in zip(pooled(counts, others), pooled(parent, others))],
        "own_before": pooled(parent, others),
        "elsewhere": {},
    }
    for q in sorted(set(prep.values()) - {own}):
        names = [n for n in prep if prep[n] == q]
        row["elsewhere"][q] = pooled(counts, names)[0] - pooled(parent, names)[0]
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, nargs="+", default=[2.0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--preparations", nargs="+", default=list(PREPARATIONS))
    p.add_argument("--set", default="{}", help="JSON of TrainConfig fields over the shipped defaults (a trial)")
    p.add_argument("--replay", help="a trial: the replay set of this name (napari_unet/models/<name>.replay.npz, "
                   "made by scripts/make_replay_set.py --name) instead of the default model's")
    p.add_argument("--tag", default="shipped", help="name of these settings in the results")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--table", action="store_true", help="print the table of the saved results and stop")
    p.add_argument("--results", type=Path, default=RESULTS, help="the results file (one per version of the scoring)")
    args = p.parse_args()
    if args.table:
        print(table(json.loads(args.results.read_text()), preparations()))
        return
    torch.set_num_threads(args.threads)
    warm_up()  # as the widget and `napari-unet train` do before the first fine-tune: its imports are not its time
    overrides = json.loads(args.set)
    prep = preparations()
    dsb_ids = held_out_fluorescence()
    parent = load_model("default")
    replay_set = {}
    if args.replay:
        parent.config = parent.config.model_copy(update={"replay": args.replay})
        replay_set = {"replay_set": args.replay}
    results = json.loads(args.results.read_text()) if args.results.is_file() else {"parent": None, "runs": []}
    if results["parent"] is None:
        t = time.perf_counter()
        results["parent"] = scores(parent, prep, dsb_ids)
        print(f"scored the default model ({time.perf_counter() - t:.0f} s)", flush=True)
    for minutes in args.minutes:
        for own in args.preparations:
            names = sorted(n for n in prep if prep[n] == own)
            for seed in args.seeds:
                corrected = [names[i] for i in np.random.default_rng(seed).permutation(len(names))[:2]]
                config = TrainConfig.model_validate({"minutes": minutes, "seed": seed} | overrides)
                result = fine_tune(parent, corrected, config)
                MODELS.mkdir(parents=True, exist_ok=True)  # kept for a closer look (git-ignored)
                result.finetuned.save(MODELS / f"{args.tag}_{minutes:g}min_{own}_seed{seed}.safetensors".replace(" ", "_"))
                record = {
                    "tag": args.tag, "settings": overrides | replay_set, "minutes": minutes, "seed": seed,
                    "preparation": own, "corrected": corrected, "steps": result.steps,
                    "seconds": result.seconds, "timing": result.timing, "adopted": bool(result.improved),
                    "blend": result.blend, "blend_finest": result.blend_finest, "pulled_back": result.pulled_back,
                    "check": result.finetuned.config.provenance.get("check"),
                    "scores": scores(result.finetuned, prep, dsb_ids),
                }
                record["summary"] = summary(record, results["parent"], prep)
                results["runs"].append(record)
                args.results.write_text(json.dumps(results, indent=1))
                s = record["summary"]
                print(f"{args.tag} {minutes:g} min {own} seed {seed} {corrected}: {result.steps} steps, "
                      f"own {s['own'][0]:+.3f}/{s['own'][1]:+.3f}, worst elsewhere "
                      f"{min(s['elsewhere'].values()):+.3f}, DSB {s['dsb']:+.3f}, adopted {record['adopted']}; "
                      f"{result.verdict()} [{result.time_split()}]", flush=True)
    print(table(results, prep))


def table(results: dict, prep: dict[str, str]) -> str:
    """Markdown: per settings and length, the mean over runs of each change, and how often the check agreed.

    The fine-tuned model scored is the one the run offers (``TrainConfig.blend`` of the way from the default
    to the fine-tune, or half that when the blend forgot and the closer one passed the checks: "pulled
    back"), adopted or not; "adopted:" is the worst change on other preparations, and on DSB, among the
    models adopted (otherwise the user keeps the default).

    "verdict agrees": adopted exactly when the preparation's other images got better; "sign agrees":
    the check's held-out gain has the sign of that change.
    """
    lines = [
        "| settings | min | runs | steps | own prep. AP@0.5 | own AP@0.75 | other preps (mean, worst) | "
        "DSB fluo. | adopted | verdict agrees | sign agrees | training share |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple, list] = {}
    for r in results["runs"]:
        groups.setdefault((r["tag"], r["minutes"]), []).append(r)
    # today's recipe first, then its other runs ("shipped, ..."), then in the order the settings were first run
    def order(group: tuple) -> tuple[bool, bool]:
        tag = group[0][0]
        return tag != "shipped", not tag.startswith("shipped")

    for (tag, minutes), runs in sorted(groups.items(), key=order):
        s = [summary(r, results["parent"], prep) for r in runs]
        own = [x["own"][0] for x in s]
        agree = sum(r["adopted"] == (g > 0) for r, g in zip(runs, own))
        checked = [(r["check"] or {}).get("held_out") for r in runs]
        sign = sum(c is not None and (c["gain"] > 0) == (g > 0) for c, g in zip(checked, own))
        share = statistics.median(r["timing"]["steps"] / r["seconds"] for r in runs)
        elsewhere = [v for x in s for v in x["elsewhere"].values()]
        # runs from before TrainConfig.blend kept the whole fine-tune unless it was pulled back halfway
        halfway = sum(r.get("pulled_back", r.get("blend", 1.0) < 1) for r in runs)
        kept = [x["dsb"] for r, x in zip(runs, s) if r["adopted"]]  # the model the user goes on with
        kept_elsewhere = [v for r, x in zip(runs, s) if r["adopted"] for v in x["elsewhere"].values()]
        lines.append(
            f"| {tag} | {minutes:g} | {len(runs)} | {statistics.median(r['steps'] for r in runs):.0f} | "
            f"{np.mean(own):+.3f} (min {min(own):+.3f}) | {np.mean([x['own'][1] for x in s]):+.3f} | "
            f"{np.mean(elsewhere):+.3f}, {min(elsewhere):+.3f} (adopted: {_worst(kept_elsewhere)}) | "
            f"{np.mean([x['dsb'] for x in s]):+.3f} (min {min(x['dsb'] for x in s):+.3f}; adopted: min "
            f"{_worst(kept)}) | {sum(r['adopted'] for r in runs)}/{len(runs)}"
            + (f" ({halfway} pulled back)" if halfway else "")
            + f" | {agree}/{len(runs)} | {sign}/{len(runs)} | {share:.0%} |"
        )
    return "\n".join(lines)


def _worst(changes: list[float]) -> str:
    return f"{min(changes):+.3f}" if changes else "none adopted"


if __name__ == "__main__":
    main()
