"""A napari-unet model as a bioimage.io model package (spec 0.5), for Fiji (deepImageJ), ilastik, QuPath and
the BioImage Model Zoo.

>>> export_bioimageio(load_model("default"), "nuclei.zip", sample=image)   # needs napari-unet[bioimageio]
>>> check_package("nuclei.zip")                                             # the zoo's own test

What goes in:

- the weights twice: as ``pytorch_state_dict`` with the architecture's source
  (napari-unet's own ``unet.py`` or ``u2net.py``, which need only torch) and as
  TorchScript;
- one input, ``raw`` (batch, channel, y, x; any size in steps the network
  takes), with the model's normalisation as preprocessing (per channel, the
  1st and 99.8th percentiles to 0 and 1: ``scale_range``); one output, the class
  probabilities (``softmax`` over the channels, or ``sigmoid`` for a
  one-channel model) of the input's size;
- test tensors from a real image (the ``sample``, cropped to a size the
  network takes) and its predicted output, and a cover made from the
  prediction: the image beside it with the objects' outlines;
- documentation from the model's description and provenance (data, command,
  metrics), a licence, authors and citations (options, with defaults: the
  U-Net paper);
- napari-unet's own post-processing (thresholds, object size) and the whole
  model config under ``config: napari_unet:``, so that napari-unet reads the
  package back as exactly the model it came from
  (:func:`napari_unet.core.models.package.read_package`). The spec has no step
  for making instances out of probabilities; other tools get the probabilities.

Nothing reaches the network: the package is built and checked from local files.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import tifffile
import torch

from ..errors import NapariUNetError
from ..io.files import atomic_path
from ..io.samples import read_sample
from ..labels.postprocess import instance_labels
from ..models import unet as unet_module
from ..models import u2net as u2net_module
from ..models.package import CONFIG_KEY, PACKAGE_SUFFIX
from ..models.zoo import check_own
from ..predict.normalize import normalize

INSTALL = "the bioimage.io format needs the bioimageio extra: pip install 'napari-unet[bioimageio]'"
U_NET_PAPER = (
    "Ronneberger, Fischer and Brox: U-Net: Convolutional Networks for Biomedical Image Segmentation, MICCAI 2015",
    "10.1007/978-3-319-24574-4_28",
)
DEFAULT_AUTHOR = "napari-unet user"
DEFAULT_LICENSE = "BSD-3-Clause"


def _spec():
    try:
        import bioimageio.spec
        from bioimageio.spec.model import v0_5
    except ImportError as error:
        raise NapariUNetError(INSTALL) from error
    found = tuple(int(p) for p in bioimageio.spec.__version__.split(".")[:3] if p.isdigit())
    if found < (0, 5, 14):
        raise NapariUNetError(
            f"bioimageio.spec {bioimageio.spec.__version__} fails with the pydantic napari brings; install "
            "0.5.14 or later over the one bioimageio.core asks for: pip install --no-deps 'bioimageio.spec>=0.5.14.3'"
        )
    return v0_5


def export_bioimageio(
    model,
    path: str | os.PathLike,
    *,
    sample: np.ndarray,
    name: str | None = None,
    description: str | None = None,
    authors: tuple[str, ...] = (DEFAULT_AUTHOR,),
    cite: tuple[tuple[str, str], ...] = (U_NET_PAPER,),
    license: str = DEFAULT_LICENSE,
) -> Path:
    """Write ``model`` (a :class:`~napari_unet.core.models.model.Model`) to the package ``path`` (``.zip``), atomically.

    ``sample``: a real image ``(Y, X)`` or ``(Y, X, C)`` / ``(C, Y, X)`` with the model's channels, for the test
    tensors and the cover. ``cite``: ``(text, doi)`` pairs.
    """
    v = _spec()
    from bioimageio.spec import save_bioimageio_package

    path = Path(path)
    if path.suffix.lower() != PACKAGE_SUFFIX:
        raise NapariUNetError(f"a bioimage.io package is a {PACKAGE_SUFFIX} file, got {path}")
    check_own(model, "export")
    config, net = model.config, model.config.network
    if getattr(net, "padding", True) is False:
        raise NapariUNetError(
            "this model's U-Net is unpadded (its output is smaller than its input); the bioimage.io export "
            "supports networks whose output has the input's size"
        )
    network = model.network.cpu().eval()
    raw = _test_input(sample, model)
    with torch.inference_mode():
        x = torch.from_numpy(_scale_range(raw[0], config))[None]
        logits = network(x)
    prob = (torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)).numpy()

    with tempfile.TemporaryDirectory(prefix="napari-unet-export-") as tmp:
        folder = Path(tmp)
        np.save(folder / "test_input.npy", raw)
        np.save(folder / "test_output.npy", prob.astype(np.float32))
        tifffile.imwrite(folder / "sample_input.tif", raw[0])  # the same, as images to look at
        tifffile.imwrite(folder / "sample_output.tif", prob[0].astype(np.float32))
        torch.save(network.state_dict(), folder / "weights.pt")
        _torchscript(network, x).save(str(folder / "weights_torchscript.pt"))
        source = unet_module if net.architecture == "unet" else u2net_module
        architecture_file = folder / Path(source.__file__).name
        shutil.copyfile(source.__file__, architecture_file)
        _cover(raw[0], prob[0], config, folder / "cover.png")
        (folder / "README.md").write_text(_documentation(model, name))

        y, x_ = (v.AxisId("y"), v.AxisId("x"))
        step = _size_step(network)
        space = [v.SpaceInputAxis(id=a, size=v.ParameterizedSize(min=step, step=step)) for a in (y, x_)]
        channels = [f"channel{i}" for i in range(net.in_channels)]
        inputs = v.InputTensorDescr(
            id=v.TensorId("raw"),
            axes=[v.BatchAxis(), v.ChannelAxis(channel_names=[v.Identifier(c) for c in channels]), *space],
            test_tensor=v.FileDescr(source=folder / "test_input.npy"),
            sample_tensor=v.FileDescr(source=folder / "sample_input.tif"),
            preprocessing=_preprocessing(v, config),
        )
        out_space = [v.SpaceOutputAxis(id=a, size=v.SizeReference(tensor_id=v.TensorId("raw"), axis_id=a))
                     for a in (y, x_)]
        class_names = [v.Identifier(_identifier(c)) for c in config.class_names[-prob.shape[1]:]]
        outputs = v.OutputTensorDescr(
            id=v.TensorId("probabilities"),
            axes=[v.BatchAxis(), v.ChannelAxis(channel_names=class_names), *out_space],
            test_tensor=v.FileDescr(source=folder / "test_output.npy"),
            sample_tensor=v.FileDescr(source=folder / "sample_output.tif"),
            postprocessing=[v.SigmoidDescr() if prob.shape[1] == 1
                            else v.SoftmaxDescr(kwargs=v.SoftmaxKwargs(axis=v.AxisId("channel")))],
        )
        kwargs = _architecture_kwargs(net)
        version = v.Version(torch.__version__.split("+")[0])
        weights = v.WeightsDescr(
            pytorch_state_dict=v.PytorchStateDictWeightsDescr(
                source=folder / "weights.pt",
                architecture=v.ArchitectureFromFileDescr(
                    source=architecture_file, callable=v.Identifier("UNet" if net.architecture == "unet" else "U2Net"),
                    kwargs=kwargs,
                ),
                pytorch_version=version,
            ),
            torchscript=v.TorchscriptWeightsDescr(
                source=folder / "weights_torchscript.pt", pytorch_version=version, parent="pytorch_state_dict"
            ),
        )
        descr = v.ModelDescr(
            name=_package_name(name or _default_name(model)),
            description=description or _default_description(model),
            authors=[v.Author(name=a) for a in authors],
            cite=[v.CiteEntry(text=text, doi=v.Doi(doi)) for text, doi in cite],
            license=v.LicenseId(license),
            documentation=v.FileDescr(source=folder / "README.md"),
            covers=[v.FileDescr(source=folder / "cover.png")],
            tags=["napari-unet", "unet", "segmentation", "nuclei", "2d", "pytorch"],
            inputs=[inputs],
            outputs=[outputs],
            weights=weights,
            config={CONFIG_KEY: {"model": json.loads(config.model_dump_json())}},
        )
        with atomic_path(path) as partial:
            zipped = partial.with_suffix(PACKAGE_SUFFIX)
            try:
                os.replace(save_bioimageio_package(descr, output_path=zipped), partial)
            finally:
                zipped.unlink(missing_ok=True)
    return path


def shipped_sample(channels: int) -> np.ndarray:
    """A real image shipped with napari-unet (DSB 2018, CC0) with ``channels`` channels, for the test tensors."""
    names = {1: "nuclei_fluorescence", 3: "nuclei_he"}
    if channels not in names:
        raise NapariUNetError(f"napari-unet ships no sample image with {channels} channels: give a sample image")
    return read_sample(names[channels])


def check_package(path: str | os.PathLike) -> tuple[bool, str]:
    """Run bioimage.io's own test of a model package (the one the model zoo runs): (passed, its report)."""
    _spec()
    try:
        from bioimageio.core import test_model
    except ImportError as error:
        raise NapariUNetError(INSTALL) from error
    summary = test_model(str(path))
    return summary.status == "passed", summary.format() if hasattr(summary, "format") else str(summary)


def _test_input(sample: np.ndarray, model) -> np.ndarray:
    """``sample`` as a float32 ``(1, C, Y, X)`` tensor cropped to a size the network takes (at most 256)."""
    image = np.asarray(sample, dtype=np.float32)
    c = model.config.network.in_channels
    if image.ndim == 2:
        image = image[None]
    elif image.ndim == 3 and image.shape[-1] == c and image.shape[0] != c:
        image = np.moveaxis(image, -1, 0)
    if image.ndim != 3 or image.shape[0] != c:
        raise NapariUNetError(
            f"the sample must be one plane with the model's {c} channel(s), got shape {np.shape(sample)}"
        )
    step = _size_step(model.network)
    side = [min(256, n) // step * step for n in image.shape[1:]]
    if min(side) < step:
        raise NapariUNetError(f"the sample is too small: at least {step} x {step} pixels, got {image.shape[1:]}")
    return np.ascontiguousarray(image[:, : side[0], : side[1]])[None]


def _scale_range(raw: np.ndarray, config) -> np.ndarray:
    """The package's preprocessing exactly as bioimage.io computes it (napari-unet's normalisation, with the
    spec's 1e-6 added to the range), so that the test output is what other tools get."""
    norm = config.normalization
    if norm.method != "percentile":  # computed as the spec computes it already
        return normalize(raw, norm)
    lo, hi = np.percentile(raw, [norm.low, norm.high], axis=(1, 2), keepdims=True)
    return ((raw - lo) / (hi - lo + 1e-6)).astype(np.float32)


def _torchscript(network, x: torch.Tensor):
    """The network traced on ``x``, checked on another input size: a padded U-Net's forward pass does the same
    for every size it takes, so the trace serves them all."""
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the skip crop: none at the sizes it takes
        traced = torch.jit.trace(network, x, check_trace=False)
        other = torch.rand(1, x.shape[1], x.shape[2] + _size_step(network), x.shape[3] * 2)
        if not torch.allclose(traced(other), network(other), atol=1e-4):
            raise NapariUNetError("the network's TorchScript trace does not hold for other input sizes")
    return traced


def _size_step(network) -> int:
    """The smallest step of input sizes the network takes (16 for a depth-4 U-Net)."""
    return int(network.valid_input_size(1))


def _preprocessing(v, config) -> list:
    norm = config.normalization
    steps = [v.EnsureDtypeDescr(kwargs=v.EnsureDtypeKwargs(dtype="float32"))]
    if norm.method == "percentile":
        steps.append(v.ScaleRangeDescr(kwargs=v.ScaleRangeKwargs(
            axes=[v.AxisId("y"), v.AxisId("x")], min_percentile=norm.low, max_percentile=norm.high,
        )))
    elif norm.method == "zero_mean_unit_variance":
        kwargs = v.ZeroMeanUnitVarianceKwargs(axes=[v.AxisId("y"), v.AxisId("x")])
        steps.append(v.ZeroMeanUnitVarianceDescr(kwargs=kwargs))
    return steps


def _architecture_kwargs(net) -> dict:
    if net.architecture == "u2net":
        return {"in_channels": net.in_channels, "out_channels": net.out_channels, "variant": net.variant}
    keys = ("depth", "width", "padding", "batch_norm", "upsampling")
    return {"in_channels": net.in_channels, "out_channels": net.out_channels} | net.model_dump(include=set(keys))


def _package_name(text: str) -> str:
    """``text`` in the characters a package name may hold (letters, digits, ``_+- ()``), others as ``-``."""
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+- ()")
    return "".join(ch if ch in allowed else "-" for ch in text).strip() or "napari-unet model"


def _identifier(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text).strip("_") or "class"


def _default_name(model) -> str:
    if model.config.network.architecture == "unet":
        return f"napari-unet {model.config.task} U-Net"
    return "napari-unet U2-Net"


def _default_description(model) -> str:
    config = model.config
    what = ("background, interior and boundary of each object (instance segmentation after napari-unet's "
            "post-processing)" if config.task == "instances" else f"the classes {', '.join(config.class_names)}")
    return f"A 2D {config.network.architecture.upper()} that predicts {what}; made with napari-unet."


def _documentation(model, name: str | None) -> str:
    config = model.config
    lines = [
        f"# {name or _default_name(model)}",
        "",
        _default_description(model),
        "",
        "## Use",
        "",
        "Input: one 2D image, each channel normalised from its 1st and 99.8th percentiles to 0 and 1 (the "
        "package's preprocessing). Output: class probabilities of the same size "
        f"({', '.join(config.class_names)}).",
    ]
    if config.task == "instances":
        lines += [
            "",
            "Objects come from the probabilities by napari-unet's post-processing: seeds where the interior "
            f"probability is above {config.thresholds.interior:.2f}, grown by watershed over the pixels whose "
            f"foreground probability (1 - background) is above {config.thresholds.foreground:.2f}. The model "
            f"was trained at an object diameter of {config.object_size or 'unknown'} pixels: rescale images so "
            "that their objects have that size. napari-unet reads this package back as the same model "
            "(`napari-unet segment --model this.zip`), post-processing included (`config.napari_unet`).",
        ]
    lines += [
        "",
        "## Validation",
        "",
        "The package passes bioimage.io's own model test (bioimageio.core: the test output reproduced from the "
        "test input with both weight formats). How the model scores on held-out images, where it was measured, "
        "is in its provenance below (napari-unet's model card and benchmarks for the shipped default).",
        "",
        "## Provenance",
        "",
        "```json",
        json.dumps(config.provenance, indent=1, default=str),
        "```",
        "",
    ]
    return "\n".join(lines)


def _cover(raw: np.ndarray, prob: np.ndarray, config, path: Path) -> None:
    """A PNG of the image beside the image with the outlines of the objects predicted (or the first class)."""
    from PIL import Image as PILImage
    from scipy import ndimage as ndi

    x = normalize(raw, config.normalization).mean(axis=0)
    grey = (np.clip(x, 0, 1) * 255).astype(np.uint8)
    if config.task == "instances":
        labels = instance_labels(prob, thresholds=config.thresholds)
    else:
        labels = (prob.argmax(axis=0) if prob.shape[0] > 1 else prob[0] > 0.5).astype(np.int32)
    edges = labels != ndi.grey_erosion(labels, size=3)
    right = np.stack([grey] * 3, axis=-1)
    right[edges & (labels > 0)] = (255, 200, 0)
    both = np.concatenate([np.stack([grey] * 3, axis=-1), np.full((grey.shape[0], 8, 3), 255, np.uint8), right], axis=1)
    PILImage.fromarray(both).save(path)
