"""``napari-unet train``: fine-tune a model (or train one from scratch) on images and labels."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from pydantic import ValidationError

from ..core.models.config import INSTANCE_CLASSES, ModelConfig, UNetConfig, choices
from ..core.devices import DEVICE_CHOICES
from ..core.errors import NapariUNetError
from ..core.models.model import Model, check_model_output, load_model
from ..core.progress import run
from ..core.batch.cluster import parse_scheduler
from ..core.training import FineTune, Stage, TrainConfig
from ..core.training.remote import RemoteFineTune
from ..core.training.trainer import warm_up
from ..core.training.files import check_objects, load_samples, median_object_size, pair_files, scale_to
from .options import add_image_set_options, positive_float, positive_int, settings_error


DEFAULT_MINUTES = 2.0  # as the widget: the length the fine-tuning benchmark chose its recipe at

# --arch choices: network settings for --from scratch (widths and depth of U-Nets come from options).
ARCHITECTURES = {
    "unet": {"architecture": "unet"},
    "unet-original": {"architecture": "unet", "padding": False, "batch_norm": False, "upsampling": "transposed"},
    "u2net": {"architecture": "u2net", "variant": "full"},
    "u2net-p": {"architecture": "u2net", "variant": "small"},
}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="fine-tune a model on images and labels (or train one from scratch)",
        description="Fine-tune a model on corrected labels, or train one from scratch. Pixels outside the "
        "reviewed masks (when given) are ignored. Part of the reviewed data is held out to check that the "
        "result beats the starting model; a model that does not is reported and not written.",
    )
    add_image_set_options(p, labels="labels", masks=True)
    p.add_argument("-o", "--output", required=True, help="model file to write (.safetensors)")
    p.add_argument("--from", dest="start", default="default", help="default | PATH | scratch (default: default)")
    p.add_argument("--task", choices=choices(ModelConfig, "task"), default="instances", help="for --from scratch")
    p.add_argument(
        "--classes", type=positive_int, default=2,
        help="semantic classes, for --from scratch; 1 gives one sigmoid output (foreground vs background)",
    )
    p.add_argument(
        "--arch", choices=tuple(ARCHITECTURES), default="unet",
        help="network, for --from scratch: unet (padded, batch-norm; default), unet-original (the U-Net paper's: "
        "unpadded, no batch-norm, up-convolutions), u2net, u2net-p (the small U^2-Net)",
    )
    p.add_argument("--width", type=positive_int, default=16, help="first-level channels of a U-Net, for --from scratch")
    p.add_argument("--depth", type=positive_int, default=4, help="poolings of a U-Net, for --from scratch")
    p.add_argument(
        "--upsampling", choices=choices(UNetConfig, "upsampling"), default="bilinear",
        help="up-sampling of --arch unet: bilinear + 1x1 conv (default) or 2x2 up-convolution",
    )
    p.add_argument("--object-size", type=positive_float, help="object diameter (px) to train at (default: the parent's)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=positive_int, help="training steps")
    length.add_argument("--minutes", type=positive_float, help=f"training time (default: {DEFAULT_MINUTES:g})")
    p.add_argument("--config", help="JSON file of training settings (TrainConfig fields); options override it")
    p.add_argument("--loss", choices=choices(TrainConfig, "loss"), help="training loss")
    p.add_argument("--optimizer", choices=choices(TrainConfig, "optimizer"), help="optimiser (SGD and RMSprop: momentum 0.99)")
    p.add_argument("--lr", type=positive_float, help="learning rate")
    p.add_argument("--patch", type=positive_int, help="training patch side (pixels)")
    p.add_argument("--batch-size", type=positive_int, help="patches per step")
    p.add_argument("--seed", type=int, help="random seed of the initial weights, patches and augmentation")
    p.add_argument(
        "--device", default="auto", choices=DEVICE_CHOICES, help="where to train (auto: a GPU when there is one)"
    )
    p.add_argument(
        "--scheduler",
        help="train on a worker of a dask cluster: the scheduler address tcp://HOST:PORT (the worker picks its own "
        "device with --device auto), or local / local:N for workers on this machine; progress, the check and the "
        "model come back here",
    )
    p.add_argument("--force", action="store_true", help="write the result even if it did not beat the parent")
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing output file that is not a napari-unet model"
    )
    p.set_defaults(run=main)


def main(args: argparse.Namespace) -> int:
    if args.scheduler is not None:
        parse_scheduler(args.scheduler)
    output = Path(args.output)
    files = pair_files(args.images, args.labels, args.masks, by_order=args.pair_by_order)
    inputs = [p for triple in files for p in triple if p is not None]
    replaces = check_model_output(output, inputs=inputs, overwrite=args.overwrite)
    config = _train_config(args)
    torch.manual_seed(config.seed)  # the initial weights of --from scratch
    parent = _start_model(args)
    samples = load_samples(files, parent.config, axes=args.axes, channels=args.channels)
    if parent.config.task == "instances":
        for warning in check_objects(samples):
            print(f"napari-unet: warning: {warning}", file=sys.stderr)
    parent = _with_object_size(parent, samples, args)
    if parent.config.object_size:
        samples = scale_to(samples, parent.config.object_size)
    scratch = args.start == "scratch"
    if args.scheduler is None:
        # What a first run imports (torch's optimizer machinery, about a second) is imported before the time asked
        # for starts, as the widget does while its user corrects labels.
        warm_up()
        finetune = FineTune(parent, samples, config, device=args.device, from_scratch=scratch)
    else:
        finetune = RemoteFineTune(args.scheduler, parent, samples, config, device=args.device, from_scratch=scratch)
    runs = f" in {len(finetune.folds)} runs, each image held out in turn" if len(finetune.folds) > 1 else ""
    print(f"training on {finetune.n_train} plane(s), validating on {finetune.n_val}{runs}", file=sys.stderr)
    result = run(finetune.run(), _report)
    print(result.verdict(), file=sys.stderr)
    print(f"time: {result.time_split()}", file=sys.stderr)
    if result.best_score is not None:
        print(json.dumps({"validation": result.best_score.details, "metric": result.best_score.name}), file=sys.stderr)
    if result.improved is False and not args.force:
        print(f"{output} not written (use --force to write the fine-tuned model anyway)", file=sys.stderr)
        return 1
    model = result.finetuned if args.force else result.model
    model.save(output)
    print(f"{'replaced' if replaces else 'wrote'} {output}", file=sys.stderr)
    return 0


def _train_config(args: argparse.Namespace) -> TrainConfig:
    settings = {}
    if args.config:
        try:
            settings = json.loads(Path(args.config).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise NapariUNetError(f"cannot read training settings {args.config}: {e}") from e
    if args.steps is not None:
        settings.update(steps=args.steps, minutes=None)
    if args.minutes is not None:
        settings.update(minutes=args.minutes, steps=None)
    if "steps" not in settings and "minutes" not in settings:
        settings["minutes"] = DEFAULT_MINUTES
    for name in ("loss", "optimizer", "lr", "patch", "batch_size", "seed"):
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    try:
        return TrainConfig.model_validate(settings)
    except ValidationError as e:
        raise settings_error("training settings", e) from None


def _start_model(args: argparse.Namespace) -> Model:
    if args.start != "scratch":
        try:
            return load_model(args.start)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"--from: {e}, or 'scratch' to train a new model") from None
    network = dict(ARCHITECTURES[args.arch], in_channels=len(args.channels) if args.channels else 1)
    if network["architecture"] == "unet":
        network.update(width=args.width, depth=args.depth)
        network.setdefault("upsampling", args.upsampling)
    if args.task == "instances":
        network["out_channels"] = 3
        config = ModelConfig(network=network, task="instances", class_names=INSTANCE_CLASSES)
    else:
        network["out_channels"] = args.classes
        names = ("background", "foreground") if args.classes == 1 else tuple(f"class {i}" for i in range(args.classes))
        config = ModelConfig(network=network, task="semantic", class_names=names)
    return Model.from_config(config)


def _with_object_size(model: Model, samples, args: argparse.Namespace) -> Model:
    if model.config.task != "instances":
        return model
    size = args.object_size or model.config.object_size or median_object_size(samples)
    return Model(model.network, model.config.model_copy(update={"object_size": size}))


def _report(update) -> None:
    if isinstance(update, Stage):
        print(f"{update.name}... ({update.seconds:.0f} s)", file=sys.stderr)
        return
    if update.score is not None or update.step % 10 == 0:
        left = f", {update.seconds_left:.0f} s left" if update.seconds_left is not None else ""
        score = f", validation {update.score}" if update.score is not None else ""
        print(f"step {update.step}: loss {update.loss:.4f}{score}{left}", file=sys.stderr)
