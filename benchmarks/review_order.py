"""Where to correct next: does the uncertainty point at the model's mistakes, and does correcting those pay?

    python benchmarks/review_order.py --flag                      # (a) flagging wrong objects
    python benchmarks/review_order.py --payoff --k 10 20 40       # (b) corrections chosen by uncertainty vs at random
    python benchmarks/review_order.py --table                     # the tables of the saved results

(a) **Flagging.** The default model segments every image of
``../shared/data/kromp2020_train`` (another lab's nuclei, never trained on) and the
held-out fluorescence images of DSB 2018 (``scripts/dsb2018_split.json``), object
size estimated as a user gets it. An object is *wrong* when it matches no true
nucleus at IoU 0.5. For the shipped score
(:func:`napari_unet.core.labels.uncertainty.object_uncertainty`) and the
candidates it was chosen against, pooled over each data set: the AUROC of the
score for "wrong", the precision of the 10% least sure objects, and what the
score costs next to the prediction itself. Candidates: its two halves alone
(existence: the seed's peak interior probability; shape: solidity), the mean
entropy of the class probabilities over the object, the disagreement of a
second prediction of the image turned by 180 degrees (mean total-variation
distance of the probabilities over the object: one more prediction), and the
stability of the object under other post-processing thresholds (interior and
foreground thresholds +-0.15: 1 - the smallest IoU with its best match).

(b) **Payoff.** A simulated user corrects K objects of two images of one
preparation (drawn as ``finetune_transfer.py`` draws them): the K least sure
objects, or K drawn at random (3 seeds). Each chosen object's region (its
pixels and those of the true nuclei it touches) is replaced by the ground
truth there; the reviewed region is those regions widened by the Correct &
Train margin (32 px). The default model is fine-tuned on that for 2 minutes
(``FineTune``, shipped settings) and the preparation's other images are scored
(pooled AP@0.5, size estimated) against the default.

Results: ``benchmarks/results/review_order.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from finetune_transfer import counts_per_image, dsb, held_out_fluorescence, kromp, pooled, preparations  # noqa: E402

from napari_unet import load_model  # noqa: E402
from napari_unet import predict as probabilities  # noqa: E402
from napari_unet.core.evaluation.metrics import overlaps  # noqa: E402
from napari_unet.core.labels.postprocess import instance_labels  # noqa: E402
from napari_unet.core.labels.uncertainty import object_uncertainty, pixel_uncertainty  # noqa: E402
from napari_unet.core.predict.inference import Segmenter  # noqa: E402
from napari_unet.core.progress import run  # noqa: E402
from napari_unet.core.training import FineTune, TrainConfig, make_samples  # noqa: E402
from napari_unet.core.training.files import scale_to  # noqa: E402
from napari_unet.core.training.review import DEFAULT_MARGIN, grow  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "review_order.json"
SCORES = ("shipped", "existence", "shape", "entropy", "flip", "thresholds", "size", "outline")
OUTLINE = (0.2, 0.8)  # foreground probabilities: the sure core of an object and its widest extent


def predict(model, image: np.ndarray, object_size="auto") -> tuple[Segmenter, np.ndarray, np.ndarray, float]:
    """The segmenter (its size estimate made), probabilities, labels, and the seconds they took."""
    seg = Segmenter(model, device="cpu", object_size=object_size)
    t = time.perf_counter()
    prob = probabilities(image, seg)
    labels = seg.labels(prob)
    return seg, prob, labels, time.perf_counter() - t


def candidate_scores(model, image: np.ndarray, truth: np.ndarray) -> tuple[dict, dict]:
    """Per object: whether it is wrong, and each candidate's score; and each score's seconds."""
    seg, prob, labels, predict_seconds = predict(model, image)
    seconds = {"prediction": predict_seconds}
    t = time.perf_counter()
    shipped = object_uncertainty(prob, labels)
    seconds["shipped"] = time.perf_counter() - t
    ids = shipped.ids
    found = overlaps(labels, truth)
    matched = np.zeros(found.pred_ids.size, bool)
    matched[found.cols[found.iou > 0.5]] = True
    right = dict(zip(found.pred_ids.tolist(), matched))
    wrong = np.array([not right.get(i, False) for i in ids.tolist()], bool)
    best = np.zeros(found.pred_ids.size)
    np.maximum.at(best, found.cols, found.iou)
    best_iou = dict(zip(found.pred_ids.tolist(), best))
    out = {"wrong": wrong.astype(int).tolist(), "best_iou": [best_iou.get(i, 0.0) for i in ids.tolist()],
           "shipped": shipped.score.tolist(), "existence": shipped.existence.tolist(), "shape": shipped.shape.tolist()}
    t = time.perf_counter()
    out["entropy"] = _mean_over(pixel_uncertainty(prob), labels, ids)
    seconds["entropy"] = time.perf_counter() - t
    t = time.perf_counter()
    again = Segmenter(model, device="cpu", object_size=seg.image_object_size)  # the same zoom
    turned = probabilities(np.ascontiguousarray(image[::-1, ::-1]), again)[:, ::-1, ::-1]
    out["flip"] = _mean_over(0.5 * np.abs(prob - turned).sum(axis=0), labels, ids)
    seconds["flip"] = time.perf_counter() - t
    t = time.perf_counter()
    th, size = model.config.thresholds, seg.image_object_size
    stable = np.ones(ids.size)
    for update in ({"interior": min(0.95, th.interior + 0.15)}, {"interior": max(0.05, th.interior - 0.15)},
                   {"foreground": min(0.95, th.foreground + 0.15)}, {"foreground": max(0.05, th.foreground - 0.15)}):
        other = instance_labels(prob, thresholds=th.model_copy(update=update), object_size=size)
        o = overlaps(labels, other)
        best = np.zeros(o.true_ids.size)
        np.maximum.at(best, o.rows, o.iou)
        found = dict(zip(o.true_ids.tolist(), best))
        stable = np.minimum(stable, [found.get(i, 0.0) for i in ids.tolist()])
    out["thresholds"] = (1 - stable).tolist()
    seconds["thresholds"] = time.perf_counter() - t
    t = time.perf_counter()
    area = shipped.area.astype(float)
    out["size"] = np.abs(np.log(area / np.median(area))).tolist() if ids.size else []
    seconds["size"] = time.perf_counter() - t
    t = time.perf_counter()
    foreground = 1 - prob[0]
    near = np.where(labels > 0, labels, ndi.grey_dilation(labels, size=7))  # each object and 3 px around it
    core = np.asarray(ndi.sum(foreground > OUTLINE[1], near, ids))
    extent = np.asarray(ndi.sum(foreground > OUTLINE[0], near, ids))
    out["outline"] = (1 - core / np.maximum(extent, 1)).tolist() if ids.size else []
    seconds["outline"] = time.perf_counter() - t
    return out, seconds


def _mean_over(values: np.ndarray, labels: np.ndarray, ids: np.ndarray) -> list[float]:
    if ids.size == 0:
        return []
    return np.asarray(ndi.mean(values, labels, ids)).tolist()


def auroc(score: np.ndarray, wrong: np.ndarray) -> float:
    """The probability that a wrong object scores above a right one (ties count half)."""
    from scipy.stats import rankdata

    n1 = int(wrong.sum())
    n0 = wrong.size - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[wrong].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def flag(model) -> dict:
    prep = preparations()
    sets = {"kromp2020": (sorted(prep), kromp), "dsb2018 held-out fluorescence": (held_out_fluorescence(), dsb)}
    out = {}
    for name, (images, read) in sets.items():
        objects = {k: [] for k in ("wrong", "best_iou") + SCORES}
        seconds: dict[str, float] = {}
        for image_name in images:
            image, truth = read(image_name)
            scores, took = candidate_scores(model, image, truth)
            for k in objects:
                objects[k] += scores[k]
            for k, v in took.items():
                seconds[k] = seconds.get(k, 0.0) + v
        out[name] = {"images": len(images), "objects": objects, "seconds": seconds}
        print(flag_table({name: out[name]}), flush=True)
    return out


def flag_table(results: dict) -> str:
    lines = ["| data | objects (wrong) | score | AUROC | precision of the 10% least sure | cost (x one prediction) |",
             "|---|---|---|---|---|---|"]
    for name, r in results.items():
        wrong = np.array(r["objects"]["wrong"], bool)
        for k in SCORES:
            s = np.array(r["objects"][k])
            top = np.argsort(-s, kind="stable")[: max(1, s.size // 10)]
            cost = r["seconds"].get(k, float("nan")) / r["seconds"]["prediction"]
            cost_text = "part of it" if k in ("existence", "shape") else f"{cost:.3f}"
            lines.append(f"| {name} | {wrong.size} ({wrong.sum()}) | {k} | {auroc(s, wrong):.3f} | "
                         f"{wrong[top].mean():.2f} | {cost_text} |")
        ceiling = auroc(_fitted(r["objects"]), wrong)
        lines.append(f"| {name} | {wrong.size} ({wrong.sum()}) | ceiling: all candidates' best linear mix, fitted "
                     f"on these objects | {ceiling:.3f} | | |")
    return "\n".join(lines)


def _fitted(objects: dict) -> np.ndarray:
    """The candidates' logistic-regression mix fitted to these very objects (in-sample: an upper bound on what
    any linear mix of them flags here, not a score to ship)."""
    from scipy.optimize import minimize

    x = np.stack([objects[k] for k in SCORES if k != "shipped"], axis=1)
    x = np.c_[(x - x.mean(0)) / np.maximum(x.std(0), 1e-9), np.ones(len(x))]
    y = np.array(objects["wrong"], float)

    def loss(w):
        z = x @ w
        return np.mean(np.logaddexp(0, z) - y * z) + 1e-3 * np.sum(w[:-1] ** 2)

    return x @ minimize(loss, np.zeros(x.shape[1]), method="L-BFGS-B").x


def near_misses(results: dict) -> str:
    """How far the wrong objects are from a true nucleus: their best IoU with one."""
    lines = ["| data | wrong objects | best IoU 0 (nothing there) | 0-0.35 | 0.35-0.5 (near misses) |",
             "|---|---|---|---|---|"]
    for name, r in results.items():
        wrong = np.array(r["objects"]["wrong"], bool)
        best = np.array(r["objects"]["best_iou"])[wrong]
        counts = (np.sum(best == 0), np.sum((best > 0) & (best < 0.35)), np.sum(best >= 0.35))
        lines.append(f"| {name} | {wrong.sum()} | " + " | ".join(str(int(c)) for c in counts) + " |")
    return "\n".join(lines)


def corrected(image: np.ndarray, truth: np.ndarray, labels: np.ndarray, chosen: list[int], model, name: str):
    """The sample a user makes by correcting the objects ``chosen`` of ``labels`` (ground truth in their region)."""
    region = np.isin(labels, chosen)
    touched = np.unique(truth[region])
    region |= np.isin(truth, touched[touched > 0])
    fixed = labels.astype(np.int64).copy()
    fixed[region] = 0
    offset = fixed.max() + 1
    fixed[region & (truth > 0)] = truth[region & (truth > 0)] + offset
    reviewed = grow(region, DEFAULT_MARGIN)
    return make_samples(image, fixed, model.config, reviewed=reviewed, name=name)


def payoff(model, preparation: str, draw_seed: int, ks: list[int], seeds: list[int], minutes: float, results: dict,
           save) -> None:
    prep = preparations()
    names = sorted(n for n in prep if prep[n] == preparation)
    images = [names[i] for i in np.random.default_rng(draw_seed).permutation(len(names))[:2]]
    others = [n for n in names if n not in images]
    if "parent" not in results:
        results["parent"] = counts_per_image(model, sorted(prep), kromp)
    before = pooled(results["parent"], others)[0]
    predicted = {}
    for name in images:
        image, truth = kromp(name)
        _, prob, labels, _ = predict(model, image)
        predicted[name] = (image, truth, labels, object_uncertainty(prob, labels))
    pool = [(name, int(i), float(s)) for name, (_, _, _, sc) in predicted.items() for i, s in zip(sc.ids, sc.score)]
    by_score = sorted(pool, key=lambda o: -o[2])
    for k in ks:
        choices = [("uncertainty", None, by_score[:k])]
        for seed in seeds:
            picks = np.random.default_rng(seed).choice(len(pool), size=min(k, len(pool)), replace=False)
            choices.append(("random", seed, [pool[i] for i in picks]))
        for how, seed, chosen in choices:
            samples = []
            for name, (image, truth, labels, _) in predicted.items():
                ids = [i for n, i, _ in chosen if n == name]
                if ids:
                    samples += corrected(image, truth, labels, ids, model, name)
            samples = scale_to(samples, model.config.object_size)
            result = run(FineTune(model, samples, TrainConfig(minutes=minutes, seed=0), device="cpu").run())
            counts = counts_per_image(result.finetuned, others, kromp)
            after = pooled({**results["parent"], **counts}, others)[0]
            record = {"preparation": preparation, "images": images, "k": k, "choice": how, "seed": seed,
                      "minutes": minutes, "steps": result.steps, "adopted": bool(result.improved),
                      "before": before, "after": after, "gain": after - before}
            results.setdefault("runs", []).append(record)
            save()
            print(f"K={k} {how} {seed}: {result.steps} steps, AP@0.5 {before:.3f} -> {after:.3f} ({after - before:+.3f}), "
                  f"adopted {record['adopted']}", flush=True)


def payoff_table(runs: list[dict]) -> str:
    lines = ["| preparation | K | by uncertainty: gain | at random: gain (mean of seeds; each) | ratio |",
             "|---|---|---|---|---|"]
    for key in sorted({(r["preparation"], r["k"]) for r in runs}):
        mine = [r for r in runs if (r["preparation"], r["k"]) == key]
        unc = [r["gain"] for r in mine if r["choice"] == "uncertainty"]
        rnd = [r["gain"] for r in mine if r["choice"] == "random"]
        if not unc or not rnd:
            continue
        mean = float(np.mean(rnd))
        ratio = f"{unc[-1] / mean:.1f}x" if mean > 0.002 else "random gains nothing"
        lines.append(f"| {key[0]} | {key[1]} | {unc[-1]:+.3f} | {mean:+.3f} ({', '.join(f'{g:+.3f}' for g in rnd)}) | {ratio} |")
    return "\n".join(lines)


def _rounded(value):
    """Floats to 5 significant decimals, so the per-object scores stay a small file."""
    if isinstance(value, float):
        return round(value, 5)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--flag", action="store_true", help="(a): how well each score flags wrong objects")
    p.add_argument("--payoff", action="store_true", help="(b): fine-tunes on K corrected objects")
    p.add_argument("--k", type=int, nargs="+", default=[20])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the random choices")
    p.add_argument("--preparation", default="tissue section")
    p.add_argument("--draw", type=int, default=0, help="seed that draws the two corrected images")
    p.add_argument("--minutes", type=float, default=2.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--table", action="store_true")
    args = p.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    if args.table:
        if "flag" in results:
            print(flag_table(results["flag"]))
            print(near_misses(results["flag"]))
        print(payoff_table(results.get("payoff", {}).get("runs", [])))
        return
    torch.set_num_threads(args.threads)
    model = load_model("default")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        RESULTS.write_text(json.dumps(_rounded(results), indent=1))

    if args.flag:
        results["flag"] = flag(model)
        save()
    if args.payoff:
        payoff(model, args.preparation, args.draw, args.k, args.seeds, args.minutes, results.setdefault("payoff", {}), save)
        print(payoff_table(results["payoff"]["runs"]))


if __name__ == "__main__":
    main()
