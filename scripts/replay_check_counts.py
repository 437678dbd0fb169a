"""Store a model's counts on its replay set's check crops, beside the set.

    python scripts/replay_check_counts.py        # writes napari_unet/models/default_nuclei.check_counts.json

Run it whenever the default model, its replay set or its post-processing thresholds change (after
``scripts/make_replay_set.py``): a fine-tune reads the parent's side of the forgetting check from this
file instead of predicting all the crops again (``napari_unet/core/training/check_crops.py``), and only where
the file names these very weights and thresholds; otherwise it predicts them, as before.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from napari_unet import load_model  # noqa: E402
from napari_unet.core.training.check_crops import write_counts  # noqa: E402
from napari_unet.core.training.replay import load_replay  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="default")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    replay = load_replay(model.config)
    if replay is None or not replay.check:
        sys.exit(f"the model {args.model!r} names no replay set with check crops")
    print(write_counts(model, replay))


if __name__ == "__main__":
    main()
