"""The napari layer: manifest commands (readers, writer, sample data) and widgets.

Everything here only wires layers to :mod:`napari_unet.core`.
"""
