"""napari-unet: U-Net segmentation of your own cells, in napari and on the command line.

Public API:

>>> import napari_unet
>>> model = napari_unet.load_model("default")   # or a model file
>>> labels = napari_unet.segment(image, model)  # instance labels
>>> prob = napari_unet.predict(image, model)    # class probabilities
"""

from .core.config import ModelConfig
from .core.errors import ImageError, ModelFileError, NapariUNetError, StackFileError
from .core.inference import predict, segment
from .core.model import Model, load_model

__version__ = "0.1.0"

__all__ = [
    "ImageError",
    "Model",
    "ModelConfig",
    "ModelFileError",
    "NapariUNetError",
    "StackFileError",
    "load_model",
    "predict",
    "segment",
]
