"""Typed, validated training settings, built alike by the widget, the CLI and scripts."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class AugmentConfig(BaseModel):
    """On-the-fly augmentation of each patch.

    Geometry (flips, free rotation, scale, the U-Net paper's elastic
    deformation: random displacements on a coarse ``elastic_grid`` grid with
    ``elastic_sigma`` px standard deviation, smoothly interpolated) is applied
    in one resampling; intensity changes follow.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    flips: bool = True
    rotate: bool = True
    scale: tuple[float, float] = Field((1.0, 1.0), description="range of zoom factors (log-uniform)")
    elastic: bool = True
    elastic_grid: int = Field(3, ge=2, le=16)
    elastic_sigma: float = Field(10.0, ge=0.0, le=50.0)
    intensity: bool = True
    noise: float = Field(0.03, ge=0.0, le=1.0, description="largest Gaussian noise std (normalised units)")
    invert: float = Field(0.0, ge=0.0, le=1.0, description="probability of inverting intensities")
    antialias: bool = Field(
        True,
        description="smooth the image before a patch is shrunk (Gaussian, sigma (1/zoom - 1) / 2 px, as prediction "
        "smooths an image it shrinks to the model's object size), so that the network trains on shrunk images "
        "like those it will be shown; off: plain bilinear sampling, which aliases fine texture",
    )

    @model_validator(mode="after")
    def _scale_range(self) -> AugmentConfig:
        lo, hi = self.scale
        if not 0 < lo <= hi:
            raise ValueError(f"scale must be a range (min, max) with 0 < min <= max, got {self.scale}")
        return self


class TrainConfig(BaseModel):
    """How long and how to train.

    Length: ``steps`` or ``minutes`` (whichever comes first when both are
    given). A validation score is computed every ``val_every`` steps on held-out
    reviewed data; the best-scoring checkpoint is kept, or the last one (``keep="last"``:
    then the scores only draw the progress, and each waits until it fits in
    ``trainer.VALIDATION_SHARE`` of the run's time).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: int | None = Field(None, ge=1)
    minutes: float | None = Field(None, gt=0)
    patch: int = Field(256, ge=32, le=2048, description="patch side, rounded up to a size the network takes")
    batch_size: int = Field(4, ge=1, le=256)
    optimizer: Literal["adam", "sgd", "rmsprop"] = "adam"
    lr: float = Field(1e-3, gt=0, le=1.0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.99, ge=0, lt=1, description="for SGD / RMSprop; the paper's 0.99")
    ema: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="decay of an exponential moving average of the weights, scored and kept instead of "
        "the weights of the last step (0: off; 0.999 averages over about the last 1000 steps)",
    )
    schedule: Literal["constant", "cosine"] = "cosine"
    loss: Literal["ce", "dice", "ce_dice", "weighted_ce", "weighted_ce_dice", "bce"] = Field(
        "ce_dice",
        description="for one-channel outputs the cross-entropy of ce, weighted_ce and weighted_ce_dice is binary (bce)",
    )
    w0: float = Field(10.0, ge=0, description="height of the weighted losses' border term (the paper's w0)")
    sigma: float = Field(5.0, gt=0, description="width (px) of the weighted losses' border term (the paper's sigma)")
    border: Literal["gaps", "contacts"] = Field(
        "gaps",
        description="where the weighted losses' border term applies: the background gaps between cells, as in the "
        "paper ('gaps'), or also the cells' own rims near another cell ('contacts'), where touching cells are "
        "parted by the boundary class",
    )
    class_balance: bool = Field(
        True, description="the weighted losses also balance background against foreground (the paper's w_c)"
    )
    rims: Literal["patch", "image"] = Field(
        "patch",
        description="instances: where the boundary class (the inner rim of each object) is drawn: on each patch "
        "as the network sees it, one pixel wide whatever its zoom, rotation and deformation ('patch'), or on the "
        "whole image before patches are resampled from it ('image': rims then break where a patch is shrunk, "
        "so that touching interiors meet, and thicken where it is enlarged)",
    )
    object_bias: float = Field(0.5, ge=0, le=1, description="share of patches centred on an object")
    sampling: Literal["area", "objects"] = Field(
        "area",
        description="how often each image gives a patch: in proportion to its reviewed pixels ('area'), or to "
        "its labelled objects ('objects': every object as likely, for images of very different sizes and "
        "magnifications, where large images of small objects would otherwise crowd out the others)",
    )
    augment: AugmentConfig = Field(
        AugmentConfig(scale=(0.7, 1.4)),
        description="augmentation; by default with the zooms the default model was trained with (0.7 to 1.4), "
        "which keeps a fine-tuned model's objects whole at the zooms the object-size estimate tries",
    )
    replay: float = Field(
        0.85,
        ge=0,
        lt=1,
        description="fine-tuning: share of the patches drawn from the parent model's replay set (crops of the data "
        "it was trained on, ModelConfig.replay), so that it keeps what it knew; 0: off",
    )
    distill: float = Field(
        0.0,
        ge=0,
        description="fine-tuning: weight of a term that keeps the network's outputs on the replay patches those "
        "of the parent (their Kullback-Leibler divergence, beside the labels' loss): it holds what the parent "
        "was sure of, and how sure, on every pixel of its own data; 0: off (the labels alone)",
    )
    blend: float = Field(
        0.7,
        gt=0,
        le=1,
        description="fine-tuning: how far the kept weights go from the parent's toward the fine-tuned ones "
        "(weight-space ensembling): 1 keeps the fine-tune whole, which gains most on images like the corrected "
        "ones; below 1 keeps less of what a few corrected images teach, by chance too (such as missing the dim "
        "nuclei of another kind of image). The checks judge what is kept; one that forgot is pulled back to half "
        "of it",
    )
    blend_finest: float | None = Field(
        0.5,
        gt=0,
        le=1,
        description="fine-tuning: how far the network's finest layers (a U-Net's two finest levels of the expanding "
        "path and its head, which turn features into each pixel's classes) go from the parent's toward the "
        "fine-tuned ones, the rest going blend of the way. They carry most of what the transfer benchmark's "
        "fine-tunes cost on other kinds of images, and part of their gain; None: blend of the way too",
    )
    batch_norm: Literal["frozen", "train"] = Field(
        "frozen",
        description="fine-tuning: keep the parent's batch-norm statistics ('frozen'), or update them from the "
        "batches ('train'); a model from scratch always trains them",
    )
    freeze: Literal["none", "encoder"] = Field(
        "none",
        description="fine-tuning a U-Net: train every layer ('none'), or keep the contracting path as the "
        "parent's and train the expanding path only ('encoder')",
    )
    val_every: int = Field(50, ge=1)
    keep: Literal["best", "last"] = Field(
        "best",
        description="which weights are the result: those with the best validation score, or those of the last "
        "step ('last': for long runs on few validation images, whose best score can be an early checkpoint's luck). "
        "A fine-tune (FineTune) always keeps the last: the held-out corrections judge it, so they do not pick it",
    )
    val_fraction: float = Field(0.2, ge=0, lt=1)
    tune_thresholds: bool = Field(
        True,
        description="instances: choose the post-processing thresholds on the validation data at the end (a "
        "fine-tune does so only when whole images with enough objects are held out, see FineTune)",
    )
    seed: int = 0
    amp: bool = Field(
        True,
        description="mixed precision: float16 on CUDA, bfloat16 on CPUs that compute it natively (nearly twice "
        "the steps a minute); off: float32 throughout",
    )

    @model_validator(mode="after")
    def _length(self) -> TrainConfig:
        if self.steps is None and self.minutes is None:
            raise ValueError("give the training length: steps or minutes")
        return self
