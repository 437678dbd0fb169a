"""The U-Net paper's own data: its unpadded U-Net against the padded one, for the same CPU time.

    python benchmarks/isbi2012.py --minutes 10

Slices 0-19 of the ISBI 2012 training volume (../shared/data/isbi2012) are
written as TIFFs and both networks are trained on them with
``napari-unet train --from scratch --task semantic --classes 2`` (same seed,
loss, optimiser and time budget, at the same time with one CPU thread each, so
that both see the machine's load alike); slices 20-24 are scored with
``napari-unet evaluate``. Pixel error (1 - pixel accuracy) and membrane IoU
go to the ``isbi2012`` section of docs/seeds.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import tifffile

from cli_runs import fmt, machine, no_validation_settings, replace_section, run_together

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "isbi2012"

# name: (--arch, its own patch and batch): the paper's 572 x 572 tile, batch 1; the padded
# network at the project's default patch (about the same input pixels per step).
NETWORKS = {
    "original": ("unet-original", 572, 1),
    "padded": ("unet", 256, 4),
}


def write_slices(volume, labels, indices, folder: Path) -> tuple[Path, Path]:
    images_dir, labels_dir = folder / "images", folder / "labels"
    images_dir.mkdir(parents=True)
    labels_dir.mkdir()
    for i in indices:
        tifffile.imwrite(images_dir / f"slice{i:02d}.tif", volume[i])
        tifffile.imwrite(labels_dir / f"slice{i:02d}_labels.tif", labels[i])
    return images_dir, labels_dir


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0, help="training time of each network")
    p.add_argument("--width", type=int, default=16, help="first-level channels of both U-Nets")
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--loss", default="ce")
    p.add_argument("--optimizer", default="adam")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="CPU threads of each run")
    p.add_argument("--work", type=Path, help="folder for data, models and logs (default: a temporary one)")
    p.add_argument("--doc", type=Path, default=ROOT / "docs" / "seeds.md")
    p.add_argument("--section", default="isbi2012", help="the marked section of --doc to write")
    args = p.parse_args(argv)

    work = args.work or Path(tempfile.mkdtemp(prefix="isbi2012-"))
    work.mkdir(parents=True, exist_ok=True)
    volume = tifffile.imread(DATA / "train-volume.tif")
    membranes = tifffile.imread(DATA / "train-membranes.tif")
    train_images, train_labels = write_slices(volume, membranes, range(0, 20), work / "train")
    test_images, test_labels = write_slices(volume, membranes, range(20, 25), work / "test")

    common = ["--from", "scratch", "--task", "semantic", "--classes", "2", "--width", str(args.width),
              "--depth", str(args.depth), "--minutes", str(args.minutes), "--seed", str(args.seed),
              "--loss", args.loss, "--optimizer", args.optimizer, "--lr", str(args.lr), "--device", "cpu",
              "--config", str(no_validation_settings(work))]
    commands = {}
    for name, (arch, patch, batch) in NETWORKS.items():
        commands[f"train-{name}"] = [
            "train", "--images", str(train_images), "--labels", str(train_labels),
            "-o", str(work / f"{name}.safetensors"), "--arch", arch, "--patch", str(patch),
            "--batch-size", str(batch), *common,
        ]
    started = time.perf_counter()
    run_together(commands, work, threads=args.threads)
    trained = time.perf_counter() - started
    run_together(
        {
            f"evaluate-{name}": ["evaluate", "--model", str(work / f"{name}.safetensors"), "--images", str(test_images),
                                 "--labels", str(test_labels), "--json", str(work / f"{name}.json"), "--device", "cpu"]
            for name in NETWORKS
        },
        work,
        threads=args.threads,
    )

    from napari_unet import load_model

    rows = []
    for name, (arch, patch, batch) in NETWORKS.items():
        pooled = json.loads((work / f"{name}.json").read_text())["results"]["model"]["pooled"]
        provenance = load_model(work / f"{name}.safetensors").config.provenance
        params = sum(t.numel() for t in load_model(work / f"{name}.safetensors").network.parameters())
        rows.append((name, arch, patch, batch, provenance["steps"], params, pooled))
    table = render(rows, args, trained)
    print(table)
    replace_section(args.doc, args.section, table)
    print(f"wrote the {args.section} section of {args.doc}; data, models and logs in {work}")
    return 0


def render(rows, args, trained_seconds: float) -> str:
    lines = [
        "| network | `--arch` | patch x batch | steps | parameters | pixel error | membrane IoU | mean IoU | "
        "max F-beta (membrane) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, arch, patch, batch, steps, params, r in rows:
        lines.append(
            f"| {name} | `{arch}` | {patch} x {batch} | {steps} | {params / 1e6:.2f} M | {fmt(r['pixel_error'])} | "
            f"{fmt(r['class_iou']['class 1'])} | {fmt(r['mean_iou'])} | {fmt(r['max_f_beta'])} |"
        )
    command = (
        f"python benchmarks/isbi2012.py --minutes {args.minutes:g} --width {args.width} --depth {args.depth} "
        f"--loss {args.loss} --optimizer {args.optimizer} --lr {args.lr:g} --seed {args.seed} --threads {args.threads}"
    )
    lines += [
        "",
        f"Command: `{command}`. Budget: {args.minutes:g} minutes of training each, both at the same time with "
        f"{args.threads} CPU thread(s) each ({trained_seconds / 60:.1f} minutes wall in all, no validation during "
        f"training). Machine: {machine()}, shared with other work, so step counts are noisy.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
