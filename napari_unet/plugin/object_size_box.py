"""The object-size field of the Predict and Batch widgets (Cellpose's "diameter").

A model that records the object diameter it was trained at rescales each
image so that its objects have that size. The field gives the typical
diameter in the image, in pixels; 0 reads "auto": estimated from the image
(:mod:`napari_unet.core.predict.sizing`).
"""

from __future__ import annotations

from qtpy.QtWidgets import QDoubleSpinBox

LARGEST = 2000.0  # pixels; a nucleus at 100x on a large sensor is well under this


class ObjectSizeBox(QDoubleSpinBox):
    """Typical object diameter in pixels, or "auto" (the spin box at 0)."""

    def __init__(self, estimated_from: str = "the image (the first plane of a stack)"):
        super().__init__()
        self.setRange(0.0, LARGEST)
        self.setDecimals(1)
        self.setSingleStep(1.0)
        self.setSuffix(" px")
        self.setSpecialValueText("auto")
        self.setToolTip(
            "Typical diameter of an object in the image, in pixels: the image is rescaled so that its objects "
            f"have the size the model was trained at. auto: estimated from {estimated_from}. "
            "Used by models that record their training size (the shipped one does)."
        )

    def object_size(self) -> float | str:
        """The size for :class:`~napari_unet.core.predict.inference.Segmenter`: pixels, or ``"auto"``."""
        return self.value() or "auto"

    def set_object_size(self, size: float | str) -> None:
        """Show ``size`` (pixels, or ``"auto"``)."""
        self.setValue(0.0 if size == "auto" else float(size))
