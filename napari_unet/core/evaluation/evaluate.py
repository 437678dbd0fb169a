"""Score a model on images with ground truth: the numbers of a model card.

:func:`iter_evaluate` (a generator; :func:`evaluate` runs it to the end)
predicts every plane of every image, compares it with its labels and returns
a JSON-ready report with the metrics that fit the model's task:

- **instances**: AP (TP / (TP + FP + FN)), precision, recall and F1 at IoU
  0.5 ... 0.9, objects matched one to one, pooled over all objects of all
  images (the DSB 2018 / StarDist convention), and per image.
- **semantic**: global pixel accuracy (and pixel error, its complement), mean
  class accuracy, mean and per-class IoU and the Dice of the foreground (every
  class but 0), over all pixels of all images; and, from the foreground
  probability (1 - P(class 0), or the sigmoid of a one-channel output), max
  F-beta (beta^2 = 0.3, on the precision and recall curves averaged over the
  images, as the saliency literature does) and MAE (averaged over images).

The classical baseline (:func:`napari_unet.core.evaluation.baseline.otsu_watershed`)
can be scored on the same planes in the same run, for a side-by-side table.
For a semantic model, ground-truth labels are class ids; a two-class model
takes every nonzero label as foreground, as in training
(:func:`~napari_unet.core.labels.targets.semantic_targets`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..io.axes import plane_layout
from .baseline import otsu_watershed
from ..errors import ImageError
from ..io.files import atomic_path
from ..predict.inference import Segmenter, as_model
from .metrics import (
    IOU_THRESHOLDS,
    InstanceCounts,
    class_iou,
    dice,
    f_beta,
    mae,
    match_instances,
    mean_class_accuracy,
    mean_iou,
    pixel_accuracy,
    precision_recall_curve,
)
from ..models.model import Model
from ..labels.postprocess import foreground_probability
from ..progress import Progress, run
from ..io.stack_io import read_stack
from ..labels.targets import semantic_targets
from ..io.stack_io import expand
from ..io.pairing import pair

BASELINES = ("otsu",)
BETA2 = 0.3


def iter_evaluate(
    model: Model | str | os.PathLike,
    images: Sequence[str | os.PathLike],
    labels: Sequence[str | os.PathLike],
    *,
    baseline: str | None = None,
    object_size: float | None = None,
    min_size: int = 10,
    axes: str | None = None,
    channels: Sequence[int] | None = None,
    pair_by_order: bool = False,
    **segmenter_kwargs,
) -> Generator[Progress, None, dict[str, Any]]:
    """Evaluate ``model`` on image files against their labels; a generator.

    Parameters
    ----------
    model : Model, path or name
    images : sequence of paths
        Image TIFFs or folders of them.
    labels : sequence of paths
        Label TIFFs or folders, paired with the images by name
        (``a.tif`` ~ ``a_labels.tif``), or in sorted order with ``pair_by_order``.
    baseline : {"otsu"}, optional
        Also score the classical baseline on the same planes.
    object_size : float, optional
        Typical object diameter in the images (pixels): the size the model's
        input is rescaled from, and the baseline's seed spacing. By default
        the model estimates it per image and the baseline measures its own
        objects.
    min_size : int
        Objects smaller than this (pixels) are dropped, by the model's
        post-processing and the baseline alike.
    axes : str, optional
        Axes of the images (default: from the files).
    channels : sequence of int, optional
        Image channels to feed the model.
    **segmenter_kwargs
        ``device``, ``tile``, ``overlap``, ``batch_size`` of
        :class:`~napari_unet.core.predict.inference.Segmenter`.

    Yields
    ------
    Progress
        In planes; a place to stop between batches of tiles.

    Returns
    -------
    dict
        The report (see :func:`write_report`, :func:`format_table`).
    """
    if baseline is not None and baseline not in BASELINES:
        raise ValueError(f"unknown baseline {baseline!r}; valid: {', '.join(BASELINES)}")
    model_name = None if isinstance(model, Model) else str(model)
    model = as_model(model)
    config = model.config
    if baseline is not None and config.task == "semantic" and config.num_classes != 2:
        raise ValueError(
            f"the {baseline} baseline finds objects against background: it scores instance models and two-class "
            f"semantic models, this model has {config.num_classes} classes"
        )
    image_files = expand(images)
    label_files = pair(image_files, expand(labels), "labels", by_order=pair_by_order)
    stacks = [read_stack(f) for f in image_files]
    layouts = [plane_layout(s.shape, axes or s.axes, config.network.in_channels, channels) for s in stacks]
    total = sum(layout.n_planes for layout in layouts)
    segmenter = Segmenter(model, object_size="auto" if object_size is None else object_size, **segmenter_kwargs)
    methods = ["model"] + ([baseline] if baseline else [])
    tally = {m: _InstanceTally() if config.task == "instances" else _SemanticTally(config.class_names) for m in methods}
    done = 0
    for stack, layout, image_file, label_file in zip(stacks, layouts, image_files, label_files):
        truth = np.asarray(read_stack(label_file).data)
        if truth.shape != layout.out_shape:
            raise ImageError(
                f"{label_file.name} has shape {truth.shape} but {image_file.name} needs labels of shape "
                f"{layout.out_shape}"
            )
        if truth.dtype.kind not in "iub":
            raise ImageError(f"{label_file.name}: labels must be integers, got dtype {truth.dtype}")
        segmenter.new_image()  # each file may be imaged at its own magnification
        for index, plane in layout.planes(stack.data):
            name = f"{image_file.name}{list(index)}" if index else image_file.name
            waiting = Progress(done, total, "planes")
            prob = yield from _repeat(segmenter.iter_probabilities(plane), waiting)
            true = truth[index]
            if config.task == "instances":
                tally["model"].add(name, segmenter.labels(prob, output="instances", min_size=min_size), true)
                if baseline:
                    tally[baseline].add(name, _baseline_labels(plane, object_size, min_size), true)
            else:
                target = _class_targets(true, config.num_classes, label_file.name)
                predicted = segmenter.labels(prob, output="semantic")
                tally["model"].add(name, predicted, target, foreground_probability(prob))
                if baseline:
                    objects = _baseline_labels(plane, object_size, min_size) > 0
                    tally[baseline].add(name, objects.astype(np.uint8), target, objects.astype(np.float32))
            done += 1
            yield Progress(done, total, "planes")
    return {
        "model": model_name,
        "task": config.task,
        "classes": list(config.class_names),
        "images": [str(f) for f in image_files],
        "labels": [str(f) for f in label_files],
        "planes": total,
        "results": {m: t.report() for m, t in tally.items()},
    }


def evaluate(model, images, labels, **kwargs) -> dict[str, Any]:
    """Run :func:`iter_evaluate` to the end; returns the report."""
    return run(iter_evaluate(model, images, labels, **kwargs))


def _repeat(gen: Generator[Any, None, Any], update: Progress) -> Generator[Progress, None, Any]:
    """Drive ``gen``, yielding ``update`` in place of each of its own; return its result."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value
        yield update


def _baseline_labels(plane: np.ndarray, object_size: float | None, min_size: int) -> np.ndarray:
    grey = plane.astype(np.float32).mean(axis=0)
    return otsu_watershed(grey, object_size=object_size, min_size=min_size)


def _class_targets(labels: np.ndarray, num_classes: int, name: str) -> np.ndarray:
    try:
        return semantic_targets(labels, num_classes=num_classes)
    except ValueError as e:
        raise ImageError(f"{name}: {e}") from e


class _InstanceTally:
    def __init__(self):
        self.counts: list[InstanceCounts] = []
        self.names: list[str] = []

    def add(self, name: str, pred: np.ndarray, true: np.ndarray) -> None:
        self.names.append(name)
        self.counts.append(match_instances(pred, true, thresholds=IOU_THRESHOLDS))

    def report(self) -> dict[str, Any]:
        return {
            "pooled": sum(self.counts).as_dict(),
            "per_image": [{"image": n} | c.as_dict() for n, c in zip(self.names, self.counts)],
        }


class _SemanticTally:
    """Pixels of all planes (for pooled pixel metrics) and per-plane probability curves."""

    def __init__(self, class_names: Sequence[str]):
        self.class_names = tuple(class_names)
        self.preds: list[np.ndarray] = []
        self.targets: list[np.ndarray] = []
        self.curves: list[tuple[np.ndarray, np.ndarray]] = []
        self.errors: list[float] = []
        self.per_image: list[dict[str, Any]] = []

    def add(self, name: str, pred: np.ndarray, target: np.ndarray, fg_prob: np.ndarray) -> None:
        self.preds.append(pred.ravel())
        self.targets.append(target.ravel())
        fg_true = target != 0
        precision, recall = precision_recall_curve(fg_prob, fg_true)
        self.curves.append((precision, recall))
        self.errors.append(mae(fg_prob, fg_true))
        row = self._pixel_metrics(pred, target)
        row["max_f_beta"] = float(f_beta(precision, recall, beta2=BETA2).max()) if fg_true.any() else math.nan
        row["mae"] = self.errors[-1]
        self.per_image.append({"image": name} | row)

    def _pixel_metrics(self, pred: np.ndarray, target: np.ndarray) -> dict[str, Any]:
        k = len(self.class_names)
        accuracy = pixel_accuracy(pred, target)
        return {
            "pixel_accuracy": accuracy,
            "pixel_error": 1.0 - accuracy,
            "mean_class_accuracy": mean_class_accuracy(pred, target, num_classes=k),
            "mean_iou": mean_iou(pred, target, num_classes=k),
            "class_iou": dict(zip(self.class_names, class_iou(pred, target, num_classes=k).tolist())),
            "dice_foreground": dice(pred, target),
        }

    def report(self) -> dict[str, Any]:
        pooled = self._pixel_metrics(np.concatenate(self.preds), np.concatenate(self.targets))
        with_fg = [(p, r) for p, r in self.curves if not np.isnan(r).all()]
        if with_fg:
            precision = np.mean([p for p, _ in with_fg], axis=0)
            recall = np.mean([r for _, r in with_fg], axis=0)
            pooled["max_f_beta"] = float(f_beta(precision, recall, beta2=BETA2).max())
        else:
            pooled["max_f_beta"] = math.nan
        pooled["mae"] = float(np.mean(self.errors))
        return {"pooled": pooled, "per_image": self.per_image}


def write_report(report: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``report`` as JSON (NaN as null), atomically; returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_json_ready(report), indent=1) + "\n")
    return path


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def table_rows(report: dict[str, Any]) -> list[tuple[str, list[float]]]:
    """``(metric, value per method)`` rows of the pooled results, in the order of :func:`format_table`."""
    results = [r["pooled"] for r in report["results"].values()]
    if report["task"] == "instances":
        rows = []
        for i, t in enumerate(results[0]["thresholds"]):
            rows.append((f"AP@{t:.2f}", [r["average_precision"][i] for r in results]))
        rows.append(("mean AP@0.50:0.90", [_nanmean(r["average_precision"]) for r in results]))
        for name, key in (("F1", "f1"), ("precision", "precision"), ("recall", "recall")):
            for i, t in enumerate(results[0]["thresholds"]):
                if t in (0.5, 0.75, 0.9):
                    rows.append((f"{name}@{t:.2f}", [r[key][i] for r in results]))
        return rows
    rows = [
        ("pixel accuracy", [r["pixel_accuracy"] for r in results]),
        ("pixel error", [r["pixel_error"] for r in results]),
        ("mean class accuracy", [r["mean_class_accuracy"] for r in results]),
        ("mean IoU", [r["mean_iou"] for r in results]),
    ]
    rows += [(f"IoU {c}", [r["class_iou"][c] for r in results]) for c in report["classes"]]
    rows += [
        ("Dice (foreground)", [r["dice_foreground"] for r in results]),
        (f"max F-beta (beta^2={BETA2})", [r["max_f_beta"] for r in results]),
        ("MAE", [r["mae"] for r in results]),
    ]
    return rows


def format_table(report: dict[str, Any]) -> str:
    """The pooled results as an aligned text table, one column per method."""
    methods = list(report["results"])
    rows = table_rows(report)
    width = max(len(name) for name, _ in rows)
    lines = [f"{'metric':<{width}}" + "".join(f"  {m:>8}" for m in methods)]
    for name, values in rows:
        cells = "".join(f"  {'n/a' if v is None or math.isnan(v) else f'{v:.4f}':>8}" for v in values)
        lines.append(f"{name:<{width}}{cells}")
    n = report["planes"]
    lines.append(f"({report['task']}, {n} plane{'s' if n != 1 else ''} from {len(report['images'])} image(s))")
    return "\n".join(lines)


def _nanmean(values: list[float | None]) -> float:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(kept)) if kept else math.nan
