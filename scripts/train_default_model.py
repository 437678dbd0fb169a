"""Rebuild the shipped default nuclei model from DSB 2018 with the project's own training code.

    make default-model                      # the recipe, as shipped
    python scripts/train_default_model.py --steps 1000 --out /tmp/try.safetensors
    python scripts/train_default_model.py --from /tmp/try.safetensors --steps 500 --lr 1e-3

``--from`` continues from a model this script made, with a fresh learning-rate
cycle (warm restart), on the same split and data; the result is kept only if
it beats the model it started from on the validation images.

The held-out split (by image id, stratified by the ``modality`` tag of the
data's index.json, seeded) is written to ``scripts/dsb2018_split.json`` and
reused when it exists, so training never sees the images the model card is
scored on. Each training image is zoomed so that its median nucleus is
``--object-size`` pixels across (scale augmentation around it), which is
what lets prediction rescale any user's image to the size the model knows.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import tifffile
import torch

from napari_unet.core.models.config import ModelConfig, choices
from napari_unet.core.devices import DEVICE_CHOICES
from napari_unet.core.models.model import Model, load_model
from napari_unet.core.progress import run
from napari_unet.core.training import AugmentConfig, TrainConfig, Trainer, make_samples, split_validation
from napari_unet.core.training.data import check_shares, draw_per_group, share_by_group
from napari_unet.core.training.files import scale_to

ROOT = Path(__file__).resolve().parents[1]
SPLIT = ROOT / "scripts" / "dsb2018_split.json"
HELD_OUT_FRACTION = 0.15  # of the images of each modality, never trained on (scripts/dsb2018_split.json)
VAL_FRACTION = 0.05  # of the training images, held out to score checkpoints and tune thresholds


def held_out_split(index: list[dict], fraction: float, seed: int) -> dict[str, list[str]]:
    """Image ids held out per modality (at least one per modality), the rest for training."""
    entries = sorted(index, key=lambda e: e["id"])
    drawn = draw_per_group([e["modality"] for e in entries], fraction, np.random.default_rng(seed), keep_one=False)
    test = [e["id"] for i, e in enumerate(entries) if i in drawn]
    train = [e["id"] for i, e in enumerate(entries) if i not in drawn]
    return {"seed": seed, "fraction": fraction, "test": test, "train": train}


def load_split(data: Path, fraction: float, seed: int) -> dict:
    if SPLIT.exists():
        return json.loads(SPLIT.read_text())
    index = json.loads((data / "index.json").read_text())
    split = held_out_split(index, fraction, seed)
    SPLIT.write_text(json.dumps(split, indent=1) + "\n")
    return split


def training_samples(data: Path, ids: list[str], config: ModelConfig, object_size: float) -> list:
    """The training samples of the images ``ids``, each zoomed so that its median nucleus is ``object_size`` px."""
    samples = []
    for image_id in ids:
        image = tifffile.imread(data / "images" / f"{image_id}.tif")
        labels = tifffile.imread(data / "labels" / f"{image_id}.tif")
        samples += make_samples(image, labels, config, name=image_id)
    return scale_to(samples, object_size)


def validation_split(samples: list, groups: list[str] | None = None) -> tuple[list, list]:
    """(training, validation) samples.

    The validation images are the same whatever --seed is, so that a stage started --from another
    one is compared with it on images neither was trained on.
    """
    return split_validation(samples, VAL_FRACTION, np.random.default_rng(0), groups=groups)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "dsb2018")
    p.add_argument("--out", type=Path, default=ROOT / "napari_unet" / "models" / "default_nuclei.safetensors")
    p.add_argument("--from", dest="parent", type=Path, help="continue from this model (its architecture and size)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="training steps of --batch-size patches (reproducible)")
    length.add_argument("--minutes", type=float, help="train for this long instead (default: 60 minutes)")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--object-size", type=float, default=20.0)
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--loss", default="ce_dice", choices=choices(TrainConfig, "loss"),
                   help="training loss (weighted_ce: the U-Net paper's border weights; weighted_ce_dice: those on the "
                   "cross-entropy of ce_dice)")
    p.add_argument("--border", default="gaps", choices=choices(TrainConfig, "border"),
                   help="where the weighted losses' border term applies (see TrainConfig.border)")
    p.add_argument("--w0", type=float, default=TrainConfig.model_fields["w0"].default,
                   help="height of the weighted losses' border term")
    p.add_argument("--sigma", type=float, default=TrainConfig.model_fields["sigma"].default,
                   help="width (px, at the trained object size) of the weighted losses' border term")
    p.add_argument("--no-class-balance", dest="class_balance", action="store_false",
                   help="the weighted losses weigh background and foreground alike (no w_c)")
    p.add_argument("--rims", default="patch", choices=choices(TrainConfig, "rims"),
                   help="draw the boundary class on each resampled patch ('patch', as shipped: one pixel wide at any "
                   "zoom) or on the whole image before resampling ('image', as the earlier default models; see "
                   "TrainConfig.rims)")
    p.add_argument("--antialias", dest="antialias", action="store_true", default=True,
                   help="smooth the image before a patch is shrunk, as prediction smooths an image it shrinks "
                   "(the default, as shipped; see AugmentConfig.antialias)")
    p.add_argument("--no-antialias", dest="antialias", action="store_false",
                   help="shrink patches by plain bilinear sampling, as the earlier default models were trained")
    p.add_argument("--ema", type=float, default=0.0,
                   help="keep a moving average of the weights with this decay (0: off; e.g. 0.999)")
    p.add_argument("--sampling", default="area", choices=choices(TrainConfig, "sampling"),
                   help="pick images in proportion to their area or to their nuclei (see TrainConfig.sampling)")
    p.add_argument("--zoom", type=float, nargs=2, default=(0.7, 1.4), metavar=("MIN", "MAX"),
                   help="range of the scale augmentation around --object-size (log-uniform)")
    p.add_argument("--val-by-modality", action="store_true",
                   help="hold out the validation images per modality tag of index.json (5%% of each, at least one), "
                   "so that H&E and brightfield are in the validation score; default: 5%% of all at once, as shipped")
    p.add_argument("--modality-share", nargs=2, action="append", default=[], metavar=("MODALITY", "SHARE"),
                   help="give the training images of this modality tag of index.json this share of the patches "
                   "(e.g. rgb_brightfield/HE 0.25; repeatable; the others share the rest by --sampling); "
                   "default: every image by --sampling alone, as shipped")
    p.add_argument("--keep", default="last", choices=choices(TrainConfig, "keep"),
                   help="keep the weights of the last step (default; the shipped run's best score was its last "
                   "step's) or those with the best validation score, which on these 28 validation images "
                   "picked early checkpoints that did worse on the held-out images (docs/model_trials.md)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-every", type=int, default=400, help="steps between validation scores")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    args = p.parse_args(argv)
    if args.steps is None and args.minutes is None:
        args.minutes = 60.0
    modality = {e["id"]: e["modality"] for e in json.loads((args.data / "index.json").read_text())}
    try:
        shares = {name: float(share) for name, share in args.modality_share}
    except ValueError:
        p.error(f"--modality-share takes a modality tag and a number, got {args.modality_share}")
    try:
        check_shares(shares, list(modality.values()))
    except ValueError as e:
        p.error(f"--modality-share: {e}")

    torch.manual_seed(args.seed)
    split = load_split(args.data, HELD_OUT_FRACTION, args.seed)
    if args.parent is not None:
        model = load_model(args.parent)
        config = model.config
        args.object_size = config.object_size
    else:
        config = ModelConfig(
            network=dict(in_channels=1, out_channels=3, width=args.width, depth=args.depth),
            tile=1024,
            overlap=32,
            object_size=args.object_size,
        )
        model = Model.from_config(config)
    samples = training_samples(args.data, split["train"], config, args.object_size)
    train_config = TrainConfig(
        steps=args.steps,
        minutes=args.minutes,
        patch=args.patch,
        batch_size=args.batch_size,
        lr=args.lr,
        loss=args.loss,
        border=args.border,
        w0=args.w0,
        sigma=args.sigma,
        class_balance=args.class_balance,
        rims=args.rims,
        ema=args.ema,
        sampling=args.sampling,
        val_every=args.val_every,
        val_fraction=VAL_FRACTION,
        keep=args.keep,
        seed=args.seed,
        augment=AugmentConfig(scale=tuple(args.zoom), elastic=True, noise=0.05, antialias=args.antialias),
        # float32 on every CPU, as the shipped weights were trained: bfloat16 steps (TrainConfig.amp, on CPUs
        # that have them) would not rebuild them
        amp=False,
    )
    groups = [modality[s.name] for s in samples] if args.val_by_modality else None
    train, val = validation_split(samples, groups)
    if shares:
        train = share_by_group(train, [modality[s.name] for s in train], shares, args.sampling)
    print(f"{len(train)} training images, {len(val)} validation images, {len(split['test'])} held out", flush=True)
    trainer = Trainer(model, train, val, train_config, device=args.device, from_scratch=args.parent is None)
    start = time.time()

    def report(update):
        if update.score is not None:
            print(f"step {update.step} loss {update.loss:.4f} {update.score} ({update.seconds:.0f} s)", flush=True)

    result = run(trainer.run(), report)
    if args.parent is not None and not result.improved:
        model.save(args.out)
        print(f"{result.verdict()}: {args.out} is the model it started from, unchanged")
        return 0
    command = "python scripts/train_default_model.py " + " ".join(sys.argv[1:] if argv is None else argv)
    provenance = dict(result.model.config.provenance)
    provenance.update(
        name="default nuclei",
        data="DSB 2018 stage1_train (BBBC038, CC0), held-out split in scripts/dsb2018_split.json",
        data_images=len(split["train"]),
        command=command.strip(),
        hardware=f"{platform.machine()}, {torch.get_num_threads()} threads, {platform.processor() or 'cpu'}",
        torch=torch.__version__,
        seed=args.seed,
        wall_seconds=round(time.time() - start),
    )
    final = Model(result.model.network, result.model.config.model_copy(update={"provenance": provenance}))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    final.save(args.out)
    print(f"wrote {args.out}: {result.steps} steps, {result.seconds / 60:.1f} min, {result.verdict()}, "
          f"thresholds {final.config.thresholds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
