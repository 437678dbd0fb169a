"""A model: a network with its config, and the one-file format it is saved in.

The file is a `safetensors <https://huggingface.co/docs/safetensors>`_ file:
tensors plus a JSON header. The header's ``napari_unet`` entry holds the
:class:`~napari_unet.core.models.config.ModelConfig` as JSON. Loading parses JSON and
raw tensors only; it never executes code from the file.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from pydantic import ValidationError
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .config import ModelConfig
from .package import PACKAGE_SUFFIX, is_foreign_package, read_package
from ..errors import ModelFileError
from ..io.files import atomic_path
from .u2net import U2Net
from .unet import UNet
from .zoo import ARCHITECTURE as ZOO, ZooNetwork, check_own, read_zoo_package

FORMAT_KEY = "napari_unet"
FORMAT_VERSION = "1"
MODEL_SUFFIX = ".safetensors"
BUILTIN_MODELS = {"default": "default_nuclei.safetensors"}


@dataclass
class Model:
    """A network and everything needed to use it.

    Attributes
    ----------
    network : UNet, U2Net or ZooNetwork
        The network; maps ``(B, in_channels, n, n)`` to ``(B, out_channels, m, m)`` logits
        (a :class:`~.zoo.ZooNetwork`: another tool's, read from its bioimage.io package).
    config : ModelConfig
        Architecture, task, classes, normalisation, tile and provenance.
    """

    network: UNet | U2Net | ZooNetwork
    config: ModelConfig

    @classmethod
    def from_config(cls, config: ModelConfig) -> Model:
        """A freshly initialised model for ``config`` (U-Net: He initialisation); another tool's network is read
        from its package again, with its weights."""
        net = config.network
        if net.architecture == ZOO:
            return cls(read_zoo_package(net.package)[1], config)
        if net.architecture == "u2net":
            network: UNet | U2Net = U2Net(net.in_channels, net.out_channels, variant=net.variant)
        else:
            shape = net.model_dump(include={"depth", "width", "padding", "batch_norm", "upsampling"})
            network = UNet(net.in_channels, net.out_channels, **shape)
        return cls(network.eval(), config)

    @property
    def in_channels(self) -> int:
        return self.config.network.in_channels

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.config.class_names

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model to ``path`` atomically; returns the path."""
        check_own(self, "save")
        path = Path(path)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.network.state_dict().items()}
        metadata = {FORMAT_KEY: self.config.model_dump_json(), "format_version": FORMAT_VERSION}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)
        return path


def load_model(path_or_name: str | os.PathLike, *, device: str | torch.device = "cpu") -> Model:
    """Load a model file, a bioimage.io package (``.zip``: one napari-unet exported, exactly, or another tool's
    2D model that gives class probabilities, see :mod:`.zoo`), or a model shipped with the package by name
    (``"default"``).

    Raises
    ------
    FileNotFoundError
        No such file and no built-in model of that name.
    ModelFileError
        The file is not a napari-unet model file, or its contents are inconsistent.
    """
    path = _resolve(path_or_name)
    if path.suffix.lower() == PACKAGE_SUFFIX and is_foreign_package(path):  # another tool's bioimage.io package
        config, network = read_zoo_package(path)
        return Model(network.to(device), config)
    if path.suffix.lower() == PACKAGE_SUFFIX:  # a bioimage.io package napari-unet exported
        config, state = read_package(path)
        return _with_weights(Model.from_config(config), state, path, device)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFileError(f"{path} is not a napari-unet model file (expected a safetensors file): {e}") from e
    if FORMAT_KEY not in metadata:
        raise ModelFileError(f"{path} is a safetensors file but not a napari-unet model: it has no '{FORMAT_KEY}' header")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{path} has model format version {metadata.get('format_version')!r}; "
            f"this napari-unet reads version {FORMAT_VERSION}"
        )
    try:
        config = ModelConfig.model_validate(json.loads(metadata[FORMAT_KEY]))
    except (ValidationError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{path} has an invalid model description: {e}") from e
    return _with_weights(Model.from_config(config), tensors, path, device)


def _with_weights(model: Model, tensors: dict, path: Path, device) -> Model:
    try:
        model.network.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        raise ModelFileError(f"{path}: the weights do not fit the architecture it describes: {e}") from e
    model.network.to(device)
    return model


def is_model_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a napari-unet model file (a safetensors file with our header); reads the header only."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return FORMAT_KEY in (f.metadata() or {})
    except (SafetensorError, OSError, ValueError):
        return False


def check_model_output(
    path: str | os.PathLike, *, inputs: Sequence[str | os.PathLike] = (), overwrite: bool = False
) -> bool:
    """Check, before any work, that a model can be saved to ``path``; True when it replaces an existing model.

    Refused (:class:`ModelFileError`, or ``PermissionError`` / ``FileNotFoundError``
    for the folder): a name without the ``.safetensors`` suffix, one of
    ``inputs``, a folder, an existing file that is not a napari-unet model
    (unless ``overwrite``), and a folder where no file can be created.
    """
    path = Path(path)
    if path.suffix.lower() != MODEL_SUFFIX:
        raise ModelFileError(f"the model file must end in {MODEL_SUFFIX}, got {path}")
    resolved = path.resolve()
    for item in inputs:
        if Path(item).resolve() == resolved:
            raise ModelFileError(f"the output {path} is one of the inputs; refusing to write a model over it")
    if path.is_dir():
        raise ModelFileError(f"cannot write the model to {path}: it is a folder")
    replaces = path.exists()
    if replaces and not overwrite and not is_model_file(path):
        raise ModelFileError(f"{path} exists and is not a napari-unet model; use --overwrite to replace it")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {folder} does not exist")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise PermissionError(f"cannot write {path}: {e.strerror or e} in folder {folder}") from e
    if replaces and not os.access(path, os.W_OK):
        raise PermissionError(f"cannot write {path}: the file is read-only")
    return replaces


def builtin_model_path(name: str) -> Path | None:
    """The file of the shipped model ``name`` (a key of :data:`BUILTIN_MODELS`), or None when not installed."""
    builtin = resources.files("napari_unet") / "models" / BUILTIN_MODELS[name]
    return Path(str(builtin)) if builtin.is_file() else None


def weights_digest(model: Model) -> str:
    """SHA-256 of ``model``'s weights and buffers (names, shapes, dtypes and values)."""
    h = hashlib.sha256()
    for key, value in sorted(model.network.state_dict().items()):
        array = value.detach().cpu().contiguous().numpy()
        h.update(f"{key}:{array.dtype}:{array.shape};".encode())
        h.update(array.tobytes())
    return h.hexdigest()


def builtin_name(model: Model) -> str | None:
    """The name of the shipped model whose weights ``model`` has (``"default"``), or None."""
    digest = None
    for name in BUILTIN_MODELS:
        shipped = builtin_model(name)
        if shipped is None or shipped.config.network != model.config.network:
            continue
        digest = digest or weights_digest(model)
        if digest == _builtin_digest(name):
            return name
    return None


@functools.cache
def builtin_model(name: str) -> Model | None:
    """The shipped model ``name``, loaded once (on the CPU) for the process, or None when it is not installed.
    Shared: copy it before changing it."""
    return load_model(name) if builtin_model_path(name) is not None else None


@functools.cache
def _builtin_digest(name: str) -> str:
    return weights_digest(builtin_model(name))


def _resolve(path_or_name: str | os.PathLike) -> Path:
    name = str(path_or_name)
    if name in BUILTIN_MODELS:
        builtin = builtin_model_path(name)
        if builtin is None:
            expected = resources.files("napari_unet") / "models" / BUILTIN_MODELS[name]
            raise FileNotFoundError(f"the built-in model {name!r} is not installed (expected {expected})")
        return builtin
    path = Path(path_or_name).expanduser()
    known = ", ".join(repr(n) for n in BUILTIN_MODELS)
    if path.is_dir():
        raise FileNotFoundError(f"model {name!r} is a folder: expected a model file ({MODEL_SUFFIX}) or one of {known}")
    if not path.is_file():
        raise FileNotFoundError(f"model {name!r} not found: expected a model file ({MODEL_SUFFIX}) or one of {known}")
    return path
