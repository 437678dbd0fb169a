"""A training project: the corrections that went into each training run, kept on disk.

Before a run, each image's labels and reviewed mask are written as TIFFs
(atomically) into the project folder, with the image itself, and listed in
``project.json``. :func:`load_project` reads them back, so a later session
continues training where this one stopped, and nothing that was painted is lost.

Layout::

    project.json            {"version": 1, "entries": [{"run", "image_name", "image_file",
                             "labels_file", "mask_file", "axes", "time"}, ...]}
    run001_<name>_image.tif
    run001_<name>_labels.tif
    run001_<name>_mask.tif
"""

from __future__ import annotations

import datetime
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from ..errors import NapariUNetError
from ..io.files import atomic_path
from ..io.stack_io import write_labels

INDEX_FILE = "project.json"
INDEX_VERSION = 1


@dataclass
class ProjectEntry:
    """One image's corrections as stored for one training run."""

    run: int
    image_name: str
    labels: np.ndarray
    reviewed: np.ndarray
    image: np.ndarray | None
    axes: str | None
    time: str
    labels_file: Path
    mask_file: Path
    image_file: Path | None


def default_project_folder(image_name: str, projects: Path | None = None) -> Path:
    """``<projects>/<image name>``; ``projects`` is ``~/napari-unet-projects`` by default."""
    return (Path.home() / "napari-unet-projects" if projects is None else projects) / safe_name(image_name)


def safe_name(name: str) -> str:
    """``name`` as a file-name part: letters, digits, ``-``, ``_`` and ``.`` kept, the rest ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "image"


def _read_index(folder: Path) -> dict:
    path = folder / INDEX_FILE
    if not path.is_file():
        return {"version": INDEX_VERSION, "entries": []}
    try:
        index = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise NapariUNetError(f"cannot read the project index {path}: {e}") from e
    if not isinstance(index, dict) or not isinstance(index.get("entries"), list):
        raise NapariUNetError(f"{path} is not a napari-unet project index (expected an object with 'entries')")
    return index


def next_run(folder: str | os.PathLike) -> int:
    """The number the next training run gets in ``folder`` (1 for a new project)."""
    entries = _read_index(Path(folder))["entries"] if Path(folder).is_dir() else []
    return 1 + max((int(e.get("run", 0)) for e in entries), default=0)


def save_entries(
    folder: str | os.PathLike,
    run: int,
    entries: list[tuple[str, np.ndarray | None, np.ndarray, np.ndarray, str | None]],
) -> list[dict]:
    """Store ``(image name, image or None, labels, reviewed mask, axes)`` for training run ``run``.

    Files are written first, each atomically, then the index (atomically):
    an interrupted save leaves the previous index, and files, intact.
    Returns the index records added.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    index = _read_index(folder)
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    records = []
    taken = {e.get("labels_file") for e in index["entries"]}
    for i, (name, image, labels, reviewed, axes) in enumerate(entries):
        labels = np.asarray(labels)
        reviewed = np.asarray(reviewed, bool)
        if reviewed.shape != labels.shape:
            raise NapariUNetError(f"{name}: reviewed mask of shape {reviewed.shape}, labels of shape {labels.shape}")
        stem = f"run{run:03d}_{safe_name(name)}"
        if f"{stem}_labels.tif" in taken:
            stem = f"{stem}_{i + 1}"
        taken.add(f"{stem}_labels.tif")
        label_axes = "".join(a for a in axes if a not in "CS") if axes else None
        label_axes = label_axes if label_axes and len(label_axes) == labels.ndim else None
        write_labels(folder / f"{stem}_labels.tif", labels, axes=label_axes)
        write_labels(folder / f"{stem}_mask.tif", reviewed.astype(np.uint8), axes=label_axes)
        image_file = None
        if image is not None:
            image_file = f"{stem}_image.tif"
            with atomic_path(folder / image_file) as tmp:
                metadata = {"axes": axes} if axes and len(axes) == np.ndim(image) else None
                tifffile.imwrite(tmp, np.asarray(image), metadata=metadata, compression="zlib")
        records.append(
            {
                "run": run,
                "image_name": name,
                "image_file": image_file,
                "labels_file": f"{stem}_labels.tif",
                "mask_file": f"{stem}_mask.tif",
                "axes": axes,
                "time": now,
            }
        )
    index["entries"] = index["entries"] + records
    index["version"] = INDEX_VERSION
    with atomic_path(folder / INDEX_FILE) as tmp:
        tmp.write_text(json.dumps(index, indent=1))
    return records


def load_project(folder: str | os.PathLike, *, run: int | None = None) -> list[ProjectEntry]:
    """The stored corrections of ``folder``: those of training run ``run``, or of the latest run.

    Raises :class:`NapariUNetError` when the folder holds no project or a listed file is missing.
    """
    folder = Path(folder)
    if not (folder / INDEX_FILE).is_file():
        raise NapariUNetError(f"{folder} holds no napari-unet project: expected {INDEX_FILE} in it")
    entries = _read_index(folder)["entries"]
    if not entries:
        raise NapariUNetError(f"the project {folder} has no stored corrections yet")
    wanted = run if run is not None else max(int(e.get("run", 0)) for e in entries)
    out = []
    for e in entries:
        if int(e.get("run", 0)) != wanted:
            continue
        files = {k: folder / e[k] if e.get(k) else None for k in ("labels_file", "mask_file", "image_file")}
        missing = [str(p) for p in files.values() if p is not None and not p.is_file()]
        if missing:
            raise NapariUNetError(f"the project {folder} lists files that are missing: {', '.join(missing)}")
        out.append(
            ProjectEntry(
                run=wanted,
                image_name=e.get("image_name", ""),
                labels=tifffile.imread(files["labels_file"]),
                reviewed=tifffile.imread(files["mask_file"]) > 0,
                image=tifffile.imread(files["image_file"]) if files["image_file"] else None,
                axes=e.get("axes"),
                time=e.get("time", ""),
                labels_file=files["labels_file"],
                mask_file=files["mask_file"],
                image_file=files["image_file"],
            )
        )
    if not out:
        raise NapariUNetError(f"the project {folder} has no training run {wanted}")
    return out
