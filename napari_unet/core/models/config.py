"""Typed, validated description of a model: everything needed to use its weights.

The same :class:`ModelConfig` is built by the widgets, the command line and
scripts, and is saved inside the model file (see :mod:`napari_unet.core.models.model`).
Validation happens here, once; the rest of the code trusts it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union, get_args

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

INSTANCE_CLASSES = ("background", "interior", "boundary")

# Target value of pixels that carry no annotation: losses and metrics skip them
# (never taken as background). 255, as in the DRIVE recipe's ignore label.
IGNORE_INDEX = 255


def choices(settings: type[BaseModel], field: str) -> tuple[str, ...]:
    """The values a ``Literal`` field of a settings model takes: a command line's choices come from here."""
    values = get_args(settings.model_fields[field].annotation)
    if not values or not all(isinstance(v, str) for v in values):
        raise TypeError(f"{settings.__name__}.{field} is not a Literal of strings")
    return values


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UNetConfig(_Strict):
    """Parameters of :class:`napari_unet.core.models.unet.UNet`."""

    architecture: Literal["unet"] = "unet"
    in_channels: int = Field(1, ge=1, le=64)
    out_channels: int = Field(3, ge=1, le=256)
    depth: int = Field(4, ge=1, le=6)
    width: int = Field(32, ge=2, le=512)
    padding: bool = True
    batch_norm: bool = True
    upsampling: Literal["bilinear", "transposed"] = "bilinear"


class U2NetConfig(_Strict):
    """Parameters of :class:`napari_unet.core.models.u2net.U2Net`: the full U^2-Net or the small U^2-Net-p."""

    architecture: Literal["u2net"] = "u2net"
    in_channels: int = Field(1, ge=1, le=64)
    out_channels: int = Field(1, ge=1, le=256)
    variant: Literal["full", "small"] = "small"


class ZooNetworkConfig(_Strict):
    """A network read from another tool's bioimage.io package (:mod:`napari_unet.core.models.zoo`), used as it is.

    ``out_channels``: of the output as napari-unet sees it (one class per channel; one channel: foreground).
    """

    architecture: Literal["bioimageio"] = "bioimageio"
    in_channels: int = Field(1, ge=1, le=64)
    out_channels: int = Field(1, ge=1, le=256)
    package: str = Field(description="the package file the network is read from")
    weights: Literal["torchscript", "pytorch_state_dict"] = "torchscript"


def _architecture(value: Any) -> str:
    """The ``architecture`` tag of a network description; descriptions without one are U-Nets."""
    if isinstance(value, dict):
        return value.get("architecture", "unet")
    return getattr(value, "architecture", "unet")


NetworkConfig = Annotated[
    Union[
        Annotated[UNetConfig, Tag("unet")], Annotated[U2NetConfig, Tag("u2net")],
        Annotated[ZooNetworkConfig, Tag("bioimageio")],
    ],
    Discriminator(_architecture),
]


class NormalizationConfig(_Strict):
    """How raw intensities become network input.

    ``percentile``: per channel, map the ``low`` and ``high`` percentiles of the
    image to 0 and 1 (robust to any dtype and bit depth). ``zero_mean_unit_variance``:
    per channel, subtract the mean and divide by the standard deviation (plus
    1e-6), as bioimage.io packages of other tools may ask. ``none``: cast only.
    """

    method: Literal["percentile", "zero_mean_unit_variance", "none"] = "percentile"
    low: float = Field(1.0, ge=0.0, lt=100.0)
    high: float = Field(99.8, gt=0.0, le=100.0)

    @model_validator(mode="after")
    def _ordered(self) -> NormalizationConfig:
        if self.low >= self.high:
            raise ValueError(f"normalization low percentile must be below high, got {self.low} >= {self.high}")
        return self


class ThresholdsConfig(_Strict):
    """How an instances model's probabilities become objects (:func:`~.postprocess.instance_labels`).

    Training tunes them on its validation data (as StarDist tunes its
    probability and overlap thresholds), since how sure a network is of its
    interiors and boundaries depends on how far it was trained.
    """

    interior: float = Field(0.5, gt=0.0, lt=1.0, description="interior probability above which a pixel seeds an object")
    foreground: float = Field(0.5, gt=0.0, lt=1.0, description="1 - P(background) above which a pixel is in an object")


class ModelConfig(_Strict):
    """Everything about a model except its weights.

    ``task="instances"`` means the network predicts the classes
    background / interior / boundary and post-processing makes instance labels;
    ``task="semantic"`` means one label per class (argmax). A semantic network
    with one output channel predicts the foreground probability (sigmoid) of
    two classes, background and foreground (threshold 0.5).
    """

    network: NetworkConfig = UNetConfig()
    task: Literal["instances", "semantic"] = "instances"
    class_names: tuple[str, ...] = INSTANCE_CLASSES
    normalization: NormalizationConfig = NormalizationConfig()
    tile: int = Field(512, ge=16, le=8192, description="largest tile side to run the model with")
    overlap: int = Field(64, ge=0, le=4096, description="pixels shared by adjacent tiles by default")
    object_size: float | None = Field(
        None, gt=0, description="typical object diameter (pixels) in the training data, for rescaling"
    )
    thresholds: ThresholdsConfig = ThresholdsConfig()
    replay: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="replay set shipped with the package (napari_unet/models/<name>.replay.npz): crops of the data "
        "the model was trained on, mixed into fine-tuning so that it keeps what it knew; fine-tuned models inherit it",
    )
    sizing: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="shipped model (by name) whose segmentations estimate the object size of a new image for this "
        "model; none: the model's own. A model fine-tuned from a shipped one names it, and its fine-tunes inherit it",
    )
    provenance: dict[str, Any] = Field(default_factory=dict)

    @property
    def rescales(self) -> bool:
        """Whether new images are zoomed to the object size the model was trained at (instances with a recorded
        ``object_size``): then that size is estimated for each image, or given."""
        return self.task == "instances" and self.object_size is not None

    @property
    def num_classes(self) -> int:
        """Classes of the labels: the output channels, or 2 for a one-channel (sigmoid) output."""
        return max(self.network.out_channels, 2)

    @model_validator(mode="after")
    def _consistent(self) -> ModelConfig:
        n, k = self.network.out_channels, self.num_classes
        if len(self.class_names) != k:
            what = f"the {n} output channels" if n == k else "background and foreground of the one-channel output"
            raise ValueError(f"class_names must name {what}, got {len(self.class_names)} names")
        if self.task == "instances" and tuple(self.class_names) != INSTANCE_CLASSES:
            raise ValueError(f"an instances model has the classes {INSTANCE_CLASSES}, got {tuple(self.class_names)}")
        return self
