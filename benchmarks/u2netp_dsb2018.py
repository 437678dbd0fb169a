"""U^2-Net-p on DSB 2018 fluorescence nuclei, foreground vs background: max F-beta and MAE.

    python benchmarks/u2netp_dsb2018.py --minutes 10

Grey fluorescence images (``fluo_gray`` in the data's index.json) of the
training part of scripts/dsb2018_split.json train U^2-Net-p and, for
comparison, the padded U-Net, both with one sigmoid output
(``napari-unet train --from scratch --task semantic --classes 1``, every
nonzero label is foreground), same seed and time budget, at the same time
with one CPU thread each. The held-out fluorescence images are scored with
``napari-unet evaluate --baseline otsu``. Results go to the ``u2netp-dsb2018``
section of docs/seeds.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

from cli_runs import fmt, machine, no_validation_settings, replace_section, run_together

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "dsb2018"
SPLIT = ROOT / "scripts" / "dsb2018_split.json"

NETWORKS = {"u2net-p": "u2net-p", "unet": "unet"}


def fluorescence_ids(ids: list[str], index: dict[str, dict]) -> list[str]:
    return sorted(i for i in ids if index[i]["modality"] == "fluo_gray")


def write_pairs(ids: list[str], folder: Path) -> tuple[Path, Path]:
    images_dir, labels_dir = folder / "images", folder / "labels"
    images_dir.mkdir(parents=True)
    labels_dir.mkdir()
    for i in ids:
        tifffile.imwrite(images_dir / f"{i}.tif", tifffile.imread(DATA / "images" / f"{i}.tif"))
        tifffile.imwrite(labels_dir / f"{i}_labels.tif", tifffile.imread(DATA / "labels" / f"{i}.tif"))
    return images_dir, labels_dir


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0, help="training time of each network")
    p.add_argument("--train-images", type=int, default=40, help="fluorescence images to train on (drawn, seeded)")
    p.add_argument("--test-images", type=int, help="held-out fluorescence images to score (default: all)")
    p.add_argument("--patch", type=int, default=160)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="CPU threads of each run")
    p.add_argument("--work", type=Path, help="folder for data, models and logs (default: a temporary one)")
    p.add_argument("--doc", type=Path, default=ROOT / "docs" / "seeds.md")
    p.add_argument("--section", default="u2netp-dsb2018", help="the marked section of --doc to write")
    args = p.parse_args(argv)

    work = args.work or Path(tempfile.mkdtemp(prefix="u2netp-dsb2018-"))
    work.mkdir(parents=True, exist_ok=True)
    index = {e["id"]: e for e in json.loads((DATA / "index.json").read_text())}
    split = json.loads(SPLIT.read_text())
    rng = np.random.default_rng(args.seed)
    train_pool = fluorescence_ids(split["train"], index)
    train_ids = sorted(rng.choice(train_pool, size=min(args.train_images, len(train_pool)), replace=False))
    test_ids = fluorescence_ids(split["test"], index)[: args.test_images]
    train_images, train_labels = write_pairs(train_ids, work / "train")
    test_images, test_labels = write_pairs(test_ids, work / "test")

    common = ["--from", "scratch", "--task", "semantic", "--classes", "1", "--loss", "ce", "--minutes",
              str(args.minutes), "--seed", str(args.seed), "--lr", str(args.lr), "--patch", str(args.patch),
              "--batch-size", str(args.batch_size), "--device", "cpu",
              "--config", str(no_validation_settings(work))]
    started = time.perf_counter()
    run_together(
        {
            f"train-{name}": ["train", "--images", str(train_images), "--labels", str(train_labels),
                              "-o", str(work / f"{name}.safetensors"), "--arch", arch, *common]
            for name, arch in NETWORKS.items()
        },
        work,
        threads=args.threads,
    )
    trained = time.perf_counter() - started
    run_together(
        {
            f"evaluate-{name}": ["evaluate", "--model", str(work / f"{name}.safetensors"), "--images", str(test_images),
                                 "--labels", str(test_labels), "--json", str(work / f"{name}.json"), "--device", "cpu",
                                 *(["--baseline", "otsu"] if name == "u2net-p" else [])]
            for name in NETWORKS
        },
        work,
        threads=args.threads,
    )

    from napari_unet import load_model

    columns = []
    for name in NETWORKS:
        model = load_model(work / f"{name}.safetensors")
        results = json.loads((work / f"{name}.json").read_text())["results"]
        params = sum(t.numel() for t in model.network.parameters())
        size = (work / f"{name}.safetensors").stat().st_size
        columns.append((name, model.config.provenance["steps"], params, size, results["model"]["pooled"]))
        if "otsu" in results:
            baseline = results["otsu"]["pooled"]
    columns.append(("Otsu + watershed", None, None, None, baseline))
    table = render(columns, args, len(train_ids), len(test_ids), trained)
    print(table)
    replace_section(args.doc, args.section, table)
    print(f"wrote the {args.section} section of {args.doc}; data, models and logs in {work}")
    return 0


def render(columns, args, n_train: int, n_test: int, trained_seconds: float) -> str:
    lines = [
        "| method | steps | parameters (file) | max F-beta | MAE | Dice | foreground IoU | pixel accuracy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, steps, params, size, r in columns:
        size_text = f"{params / 1e6:.2f} M ({size / 1e6:.1f} MB)" if params else "-"
        lines.append(
            f"| {name} | {steps if steps is not None else '-'} | {size_text} | {fmt(r['max_f_beta'])} | "
            f"{fmt(r['mae'])} | {fmt(r['dice_foreground'])} | {fmt(r['class_iou']['foreground'])} | "
            f"{fmt(r['pixel_accuracy'])} |"
        )
    command = (
        f"python benchmarks/u2netp_dsb2018.py --minutes {args.minutes:g} --train-images {args.train_images} "
        f"--patch {args.patch} --batch-size {args.batch_size} --lr {args.lr:g} --seed {args.seed} "
        f"--threads {args.threads}"
    )
    lines += [
        "",
        f"Command: `{command}`. Trained on {n_train} fluorescence images, scored on {n_test} held-out ones. "
        f"Budget: {args.minutes:g} minutes of training each, both at the same time with {args.threads} CPU "
        f"thread(s) each ({trained_seconds / 60:.1f} minutes wall in all). Machine: {machine()}, shared with "
        "other work.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
