"""Sample data: real nuclei (DSB 2018, CC0) with their ground truth, and a small stack made from them.

``File > Open Sample > napari-unet``. The files ship in the package
(``napari_unet/sample_data``, see its README for the source and ids); each
image comes with its ground-truth labels as a hidden Labels layer, to compare
a prediction with, or to practise corrections on.
"""

from __future__ import annotations


import numpy as np

from ..core.io.samples import read_sample
from ..core.labels.label_edit import relabel_sequential

STACK_PLANES = 5
STACK_SIDE = 256


def nuclei_fluorescence() -> list[tuple]:
    """36 nuclei, fluorescence, 256 x 256."""
    return _image_and_truth("nuclei_fluorescence", "nuclei (fluorescence)", "YX")


def nuclei_fluorescence_dense() -> list[tuple]:
    """136 nuclei, some touching, fluorescence, 520 x 696."""
    return _image_and_truth("nuclei_fluorescence_dense", "nuclei (fluorescence, dense)", "YX")


def nuclei_he() -> list[tuple]:
    """70 nuclei, H&E-stained tissue, RGB brightfield, 256 x 320."""
    return _image_and_truth("nuclei_he", "nuclei (H&E)", "YXS")


def nuclei_stack() -> list[tuple]:
    """A ``TYX`` stack of 5 planes: crops of the dense sample, the field drifting from plane to plane.

    Ground-truth ids are unique across the stack, as the predictions are.
    """
    image = read_sample("nuclei_fluorescence_dense")
    truth = read_sample("nuclei_fluorescence_dense_labels")
    (h, w), side = image.shape, STACK_SIDE
    ys = np.linspace(0, h - side, STACK_PLANES).round().astype(int)
    xs = np.linspace(0, w - side, STACK_PLANES).round().astype(int)
    planes = np.stack([image[y : y + side, x : x + side] for y, x in zip(ys, xs)])
    labels = np.zeros(planes.shape, np.uint16)
    offset = 0
    for t, (y, x) in enumerate(zip(ys, xs)):
        plane = relabel_sequential(truth[y : y + side, x : x + side])
        plane[plane > 0] += offset
        labels[t] = plane
        offset = max(offset, int(plane.max()))
    name = f"nuclei stack ({STACK_PLANES} planes)"
    return [
        (planes, {"name": name, "metadata": {"axes": "TYX"}}, "image"),
        (labels, _truth_kwargs(name, "TYX"), "labels"),
    ]


def _image_and_truth(file: str, name: str, axes: str) -> list[tuple]:
    image = read_sample(file)
    truth = read_sample(f"{file}_labels")
    kwargs = {"name": name, "metadata": {"axes": axes}, "rgb": axes.endswith("S")}
    return [(image, kwargs, "image"), (truth, _truth_kwargs(name, axes.replace("S", "")), "labels")]


def _truth_kwargs(name: str, axes: str) -> dict:
    return {"name": f"{name} ground truth", "metadata": {"axes": axes}, "visible": False, "opacity": 0.5}
