"""Errors that say what was expected and what was found.

Each is a ``ValueError`` subclass so that callers that do not care about the
kind can still catch them together; the command line prints them on one line.
"""


class NapariUNetError(ValueError):
    """Base of the errors raised for bad input (not for bugs)."""


class ImageError(NapariUNetError):
    """An image that cannot be segmented: wrong shape, empty, NaN, wrong channels."""


class ModelFileError(NapariUNetError):
    """A file that is not a valid napari-unet model."""


class StackFileError(NapariUNetError):
    """A file that is not a readable TIFF stack."""


class InsufficientMemoryError(NapariUNetError):
    """Prediction ran out of memory even with the smallest tiles it falls back to."""
