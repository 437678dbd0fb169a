"""Make the small models the tests start from (run: python scripts/make_test_models.py).

``tests/models/fluo_only.safetensors``: a small U-Net (width 8, depth 3)
trained with the project's own trainer on DSB 2018 *fluorescence* images of
the training split only. It is poor on brightfield / H&E, which is what the
fine-tuning test needs: a real model that a user's corrections can improve.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import tifffile

from napari_unet.core.models.config import ModelConfig
from napari_unet.core.models.model import Model
from napari_unet.core.progress import run
from napari_unet.core.training import AugmentConfig, TrainConfig, Trainer, make_samples
from napari_unet.core.training.files import scale_to

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "dsb2018"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--minutes", type=float, default=4.0)
    p.add_argument("--images", type=int, default=120, help="fluorescence training images to use")
    args = p.parse_args(argv)
    split = json.loads((ROOT / "scripts" / "dsb2018_split.json").read_text())
    modality = {e["id"]: e["modality"] for e in json.loads((DATA / "index.json").read_text())}
    ids = [i for i in split["train"] if modality[i] == "fluo_gray"][: args.images]
    config = ModelConfig(network=dict(width=8, depth=3), tile=512, overlap=32, object_size=20.0)
    samples = []
    for image_id in ids:
        image = tifffile.imread(DATA / "images" / f"{image_id}.tif")
        labels = tifffile.imread(DATA / "labels" / f"{image_id}.tif")
        samples += make_samples(image, labels, config, name=image_id)
    samples = scale_to(samples, 20.0)
    train_config = TrainConfig(
        minutes=args.minutes, patch=128, batch_size=8, lr=3e-3, val_fraction=0, augment=AugmentConfig(scale=(0.8, 1.25))
    )
    trainer = Trainer(Model.from_config(config), samples, [], train_config, device="cpu", from_scratch=True)
    result = run(trainer.run())
    out = ROOT / "tests" / "models" / "fluo_only.safetensors"
    provenance = dict(result.model.config.provenance, data=f"{len(ids)} DSB 2018 fluorescence images (training split)")
    Model(result.model.network, result.model.config.model_copy(update={"provenance": provenance})).save(out)
    print(f"wrote {out}: {result.steps} steps in {result.seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
