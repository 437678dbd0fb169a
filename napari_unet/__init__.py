"""napari-unet: U-Net segmentation of your own cells, in napari and on the command line.

Public API:

>>> import napari_unet
>>> model = napari_unet.load_model("default")   # or a model file
>>> labels = napari_unet.segment(image, model)  # instance labels
>>> prob = napari_unet.predict(image, model)    # class probabilities
"""

import importlib

__version__ = "0.1.0"

# Imported when first used, so that `import napari_unet.cli` (the console script) is quick and a
# Ctrl+C in its first seconds ends it with one line rather than a traceback out of torch's import.
_API = {
    "ImageError": ".core.errors",
    "Model": ".core.models.model",
    "ModelConfig": ".core.models.config",
    "ModelFileError": ".core.errors",
    "NapariUNetError": ".core.errors",
    "StackFileError": ".core.errors",
    "load_model": ".core.models.model",
    "predict": ".core.predict.inference",
    "segment": ".core.predict.inference",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
