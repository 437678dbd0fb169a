"""Reading a bioimage.io model package (a ``.zip``) that napari-unet wrote, without any bioimage.io library.

A package exported by :mod:`napari_unet.core.exchange.bioimageio` carries the
model's whole :class:`~.config.ModelConfig` (post-processing thresholds and
object size included) under ``config: napari_unet:`` of its ``rdf.yaml``, and the
weights as a ``pytorch_state_dict``; together they make the very model it came
from. Packages of other tools have no such config: :mod:`.zoo` reads them (with
``bioimageio.spec``).
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import torch
import yaml
from pydantic import ValidationError

from ..errors import ModelFileError
from .config import ModelConfig

PACKAGE_SUFFIX = ".zip"
DESCRIPTIONS = ("rdf.yaml", "bioimageio.yaml")
CONFIG_KEY = "napari_unet"


def is_package(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a zip holding a bioimage.io description (``rdf.yaml``)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name in archive.namelist() for name in DESCRIPTIONS)
    except (OSError, zipfile.BadZipFile):
        return False


def is_foreign_package(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a bioimage.io package that napari-unet did not write (no ``config.napari_unet``)."""
    try:
        with zipfile.ZipFile(path) as archive:
            rdf = _description(archive)
    except (OSError, zipfile.BadZipFile, yaml.YAMLError):
        return False
    return isinstance(rdf, dict) and not _our_config(rdf)


def _description(archive: zipfile.ZipFile):
    """The package's parsed ``rdf.yaml`` (or ``bioimageio.yaml``), or None when it has none."""
    rdf_name = next((n for n in DESCRIPTIONS if n in archive.namelist()), None)
    return None if rdf_name is None else yaml.safe_load(archive.read(rdf_name))


def _our_config(rdf) -> dict | None:
    """napari-unet's entry under the description's ``config``, if it has one."""
    return (rdf.get("config") or {}).get(CONFIG_KEY) if isinstance(rdf, dict) else None


def read_package(path: str | os.PathLike) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """The model config and weights of a package napari-unet exported.

    Raises
    ------
    ModelFileError
        Not a bioimage.io package, a package of another tool, or one whose parts do not fit.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            rdf = _description(archive)
            if rdf is None:
                raise ModelFileError(f"{path} is a zip file but not a bioimage.io model package (it has no rdf.yaml)")
            ours = _our_config(rdf)
            if not ours:
                name = rdf.get("name", "?") if isinstance(rdf, dict) else "?"
                raise ModelFileError(
                    f"{path} is a bioimage.io package ({name!r}) that napari-unet did not write (it has no "
                    "config.napari_unet): load it with load_model, which reads other tools' packages"
                )
            weights = (rdf.get("weights") or {}).get("pytorch_state_dict") or {}
            source = weights.get("source")
            if source not in archive.namelist():
                raise ModelFileError(f"{path}: the package has no pytorch_state_dict weights file ({source!r})")
            state = torch.load(io.BytesIO(archive.read(source)), map_location="cpu", weights_only=True)
    except (OSError, zipfile.BadZipFile, yaml.YAMLError, RuntimeError) as error:
        raise ModelFileError(f"cannot read the bioimage.io package {path}: {error}") from error
    try:
        config = ModelConfig.model_validate(ours["model"])
    except (ValidationError, KeyError, TypeError) as error:
        raise ModelFileError(f"{path}: invalid napari-unet model config in the package: {error}") from error
    return config, state
