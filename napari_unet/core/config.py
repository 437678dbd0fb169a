"""Typed, validated description of a model: everything needed to use its weights.

The same :class:`ModelConfig` is built by the widgets, the command line and
scripts, and is saved inside the model file (see :mod:`napari_unet.core.model`).
Validation happens here, once; the rest of the code trusts it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

INSTANCE_CLASSES = ("background", "interior", "boundary")

# Target value of pixels that carry no annotation: losses and metrics skip them
# (never taken as background). 255, as in the DRIVE recipe's ignore label.
IGNORE_INDEX = 255


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UNetConfig(_Strict):
    """Parameters of :class:`napari_unet.core.unet.UNet`."""

    architecture: Literal["unet"] = "unet"
    in_channels: int = Field(1, ge=1, le=64)
    out_channels: int = Field(3, ge=1, le=256)
    depth: int = Field(4, ge=1, le=6)
    width: int = Field(32, ge=2, le=512)
    padding: bool = True
    batch_norm: bool = True
    upsampling: Literal["bilinear", "transposed"] = "bilinear"


class NormalizationConfig(_Strict):
    """How raw intensities become network input.

    ``percentile``: per channel, map the ``low`` and ``high`` percentiles of the
    image to 0 and 1 (robust to any dtype and bit depth). ``none``: cast only.
    """

    method: Literal["percentile", "none"] = "percentile"
    low: float = Field(1.0, ge=0.0, lt=100.0)
    high: float = Field(99.8, gt=0.0, le=100.0)

    @model_validator(mode="after")
    def _ordered(self) -> NormalizationConfig:
        if self.low >= self.high:
            raise ValueError(f"normalization low percentile must be below high, got {self.low} >= {self.high}")
        return self


class ModelConfig(_Strict):
    """Everything about a model except its weights.

    ``task="instances"`` means the network predicts the classes
    background / interior / boundary and post-processing makes instance labels;
    ``task="semantic"`` means one label per class (argmax).
    """

    network: UNetConfig = UNetConfig()
    task: Literal["instances", "semantic"] = "instances"
    class_names: tuple[str, ...] = INSTANCE_CLASSES
    normalization: NormalizationConfig = NormalizationConfig()
    tile: int = Field(512, ge=16, le=8192, description="largest tile side to run the model with")
    overlap: int = Field(64, ge=0, le=4096, description="pixels shared by adjacent tiles by default")
    object_size: float | None = Field(
        None, gt=0, description="typical object diameter (pixels) in the training data, for rescaling"
    )
    provenance: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> ModelConfig:
        n = self.network.out_channels
        if len(self.class_names) != n:
            raise ValueError(f"class_names must name the {n} output channels, got {len(self.class_names)} names")
        if self.task == "instances" and tuple(self.class_names) != INSTANCE_CLASSES:
            raise ValueError(f"an instances model has the classes {INSTANCE_CLASSES}, got {tuple(self.class_names)}")
        return self
