"""The sample images shipped with the package (``napari_unet/sample_data``: DSB 2018 nuclei, CC0)."""

from __future__ import annotations

from importlib import resources

import numpy as np
import tifffile


def read_sample(name: str) -> np.ndarray:
    """The array of ``sample_data/<name>.tif`` shipped with the package."""
    ref = resources.files("napari_unet") / "sample_data" / f"{name}.tif"
    with resources.as_file(ref) as path:
        return tifffile.imread(path)
