"""Writer: a Labels layer to a TIFF, atomically (an existing file is replaced only when complete).

Unsigned layers keep their dtype and the file is tagged as napari-unet's labels, so that the
reader opens it again as the same Labels layer.
"""

from __future__ import annotations

import numpy as np

from ..core.io.stack_io import write_labels as _write


def write_labels(path: str, data, meta: dict) -> list[str]:
    axes = (meta.get("metadata") or {}).get("axes")
    data = np.asarray(data)
    if axes is not None and len(axes) != data.ndim:
        axes = None
    _write(path, data, axes=axes, keep_dtype=True)
    return [path]
