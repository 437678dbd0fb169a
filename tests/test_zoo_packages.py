"""Other tools' bioimage.io packages: read with their own pre- and post-processing, predicting what bioimage.io's
reference implementation (bioimageio.core) predicts on real images, tiled as napari-unet tiles; nothing reaches the
network; what napari-unet cannot use is refused with what it found.

The packages are made here as another tool would make them, around a network napari-unet does not know: a
TorchScript module (no Python source in the package) with its own axis order, around the default model's U-Net.
"""

import sys
import zipfile

import numpy as np
import pytest
import tifffile
import torch
import yaml
from torch import nn

from napari_unet import load_model, predict, segment
from napari_unet.cli import main
from napari_unet.core.errors import ImageError, ModelFileError, NapariUNetError
from napari_unet.core.exchange.bioimageio import export_bioimageio
from napari_unet.core.io.samples import read_sample
from napari_unet.core.training import FineTune, TrainConfig

v = pytest.importorskip("bioimageio.spec.model.v0_5", reason="the bioimageio extra is part of the test environment")


class Foreground(nn.Module):
    """Another lab's network: ``(B, Y, X, 1)`` scaled to [-1, 1] in, the logit of the foreground out, same axes."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, x):
        p = torch.softmax(self.unet(x.permute(0, 3, 1, 2) * 0.5 + 0.5), dim=1)
        return torch.logit((1 - p[:, :1]).clamp(1e-6, 1 - 1e-6)).permute(0, 2, 3, 1)


class Classes(nn.Module):
    """Another: ``(B, 1, Y, X)`` standardised (zero mean, unit variance) in, three classes' scores out."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, x):
        return self.unet(x * 0.25 + 0.25)


def _unet():
    return load_model("default").network.eval()


def _package(folder, kind: str, *, space_axes=("y", "x"), weights="torchscript") -> str:
    """A package of ``kind`` (``"foreground"``: halo, (b, y, x, c), scale_range + scale_linear, sigmoid;
    ``"classes"``: fixed 256 x 256, (b, c, y, x), zero_mean_unit_variance, softmax)."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = read_sample("nuclei_fluorescence").astype(np.float32)  # 256 x 256
    if kind == "foreground":
        module, size, halo = Foreground(_unet()), v.ParameterizedSize(min=64, step=16), 8
        lo, hi = np.percentile(raw, [1, 99.8])
        x = ((raw - lo) / (hi - lo + 1e-6) * 2 - 1)[None, :, :, None]
        test_in = raw[None, :, :, None]
        pre = [v.ScaleRangeDescr(kwargs=v.ScaleRangeKwargs(axes=[v.AxisId("y"), v.AxisId("x")], min_percentile=1,
                                                           max_percentile=99.8)),
               v.ScaleLinearDescr(kwargs=v.ScaleLinearKwargs(gain=2.0, offset=-1.0))]
        post = [v.SigmoidDescr()]
    else:
        module, size, halo = Classes(_unet()), 256, 0
        x = ((raw - raw.mean()) / (raw.std() + 1e-6))[None, None]
        test_in = raw[None, None]
        pre = [v.ZeroMeanUnitVarianceDescr(kwargs=v.ZeroMeanUnitVarianceKwargs(axes=[v.AxisId("y"), v.AxisId("x")]))]
        post = [v.SoftmaxDescr(kwargs=v.SoftmaxKwargs(axis=v.AxisId("channel")))]
    with torch.no_grad():
        traced = torch.jit.trace(module, torch.from_numpy(x.astype(np.float32)), check_trace=False)
        y = traced(torch.from_numpy(x.astype(np.float32)))
        y = torch.sigmoid(y) if kind == "foreground" else torch.softmax(y, dim=1)
    traced.save(str(folder / "weights.pt"))
    np.save(folder / "in.npy", test_in)
    np.save(folder / "out.npy", y.numpy())
    space = [v.SpaceInputAxis(id=v.AxisId(a), size=size) for a in space_axes]
    channel = v.ChannelAxis(channel_names=[v.Identifier("nuclei")])
    inp = v.InputTensorDescr(
        id=v.TensorId("raw"), axes=[v.BatchAxis(), *space, channel] if kind == "foreground"
        else [v.BatchAxis(), channel, *space],
        test_tensor=v.FileDescr(source=folder / "in.npy"), preprocessing=pre,
    )
    if kind == "foreground":
        out_space = [v.SpaceOutputAxisWithHalo(id=v.AxisId(a), halo=halo, size=v.SizeReference(
            tensor_id=v.TensorId("raw"), axis_id=v.AxisId(a))) for a in space_axes]
        out_axes = [v.BatchAxis(), *out_space, v.ChannelAxis(channel_names=[v.Identifier("foreground")])]
    else:
        out_space = [v.SpaceOutputAxis(id=v.AxisId(a), size=v.SizeReference(tensor_id=v.TensorId("raw"),
                                                                            axis_id=v.AxisId(a))) for a in space_axes]
        names = [v.Identifier(n) for n in ("background", "nucleus", "border")]
        out_axes = [v.BatchAxis(), v.ChannelAxis(channel_names=names), *out_space]
    out = v.OutputTensorDescr(id=v.TensorId("prob"), axes=out_axes, test_tensor=v.FileDescr(source=folder / "out.npy"),
                              postprocessing=post)
    version = v.Version(torch.__version__.split("+")[0])
    if weights == "torchscript":
        w = v.WeightsDescr(torchscript=v.TorchscriptWeightsDescr(source=folder / "weights.pt", pytorch_version=version))
    else:
        w = v.WeightsDescr(onnx=v.OnnxWeightsDescr(source=folder / "weights.pt", opset_version=17))
    (folder / "README.md").write_text("# another lab's nuclei\n")
    descr = v.ModelDescr(
        name=f"another lab {kind}", description="nuclei", authors=[v.Author(name="Another Lab")],
        cite=[v.CiteEntry(text="a paper", doi=v.Doi("10.1007/978-3-319-24574-4_28"))], license=v.LicenseId("MIT"),
        documentation=v.FileDescr(source=folder / "README.md"), inputs=[inp], outputs=[out], weights=w,
    )
    from bioimageio.spec import save_bioimageio_package

    return str(save_bioimageio_package(descr, output_path=folder / f"{kind}.zip"))


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zoo")
    return {kind: _package(folder / kind, kind) for kind in ("foreground", "classes")}


def _reference(package: str, image: np.ndarray, axes: str, block: int | None = None) -> np.ndarray:
    """bioimageio.core's own prediction of the whole image (in ``block`` x ``block`` blocks), as ``(K, Y, X)``."""
    from bioimageio.core import predict as reference

    x = image.astype(np.float32)[None, :, :, None] if axes == "byxc" else image.astype(np.float32)[None, None]
    shape = None if block is None else {v.TensorId("raw"): {v.AxisId("y"): block, v.AxisId("x"): block}}
    sample = reference(model=package, inputs=x, input_block_shape=shape)
    out = next(iter(sample.members.values())).data.transpose("batch", "channel", "y", "x").values
    return out[0]


def test_a_foreground_package_predicts_what_bioimageio_predicts(packages, offline):
    model = load_model(packages["foreground"])
    assert model.config.task == "semantic" and model.config.class_names == ("background", "foreground")
    assert model.config.normalization.method == "percentile" and model.network.margin == 8
    image = read_sample("nuclei_fluorescence_dense")[:512, :688]  # a size bioimageio.core takes; two tiles here
    ours = predict(image, model, device="cpu")[0]
    theirs = _reference(packages["foreground"], image, "byxc")[0]
    difference = np.abs(ours - theirs)  # tiles against the whole image: seams and borders differ a little
    assert difference.mean() < 0.005 and np.percentile(difference, 99) < 0.05
    labels = segment(image, model, device="cpu")  # semantic: what the package was made for
    assert labels.dtype == np.uint32 and set(np.unique(labels)) == {0, 1}
    assert np.mean(labels == (theirs >= 0.5)) > 0.995
    # the very network, seen through napari-unet's own model: the same foreground
    default = 1 - predict(image, "default", device="cpu", object_size=None)[0]
    assert np.mean((default >= 0.5) == (ours >= 0.5)) > 0.995
    with pytest.raises(ImageError, match="ask for semantic labels"):
        segment(image, model, output="instances")


def test_a_fixed_size_classes_package_is_tiled_and_predicts_what_bioimageio_predicts(packages, offline):
    model = load_model(packages["classes"])
    assert model.config.class_names == ("background", "nucleus", "border")
    assert model.config.normalization.method == "zero_mean_unit_variance" and model.config.tile == 256
    image = read_sample("nuclei_fluorescence_dense")[:512, :512]
    ours = predict(image, model, device="cpu")
    theirs = _reference(packages["classes"], image, "bcyx", block=256)
    assert ours.shape == theirs.shape == (3, 512, 512)
    difference = np.abs(ours - theirs)
    assert difference.mean() < 0.005 and np.percentile(difference, 99) < 0.05
    assert np.mean(ours.argmax(0) == theirs.argmax(0)) > 0.995


def test_the_command_line_segments_with_another_tools_package(packages, tmp_path, offline):
    image = read_sample("nuclei_fluorescence")
    tifffile.imwrite(tmp_path / "cells.tif", image)
    assert main(["segment", str(tmp_path / "cells.tif"), "-o", str(tmp_path / "out.tif"), "--model",
                 packages["foreground"]]) == 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out.tif"), segment(image, packages["foreground"]))


def test_another_tools_model_is_not_fine_tuned_saved_or_exported(packages, tmp_path):
    model = load_model(packages["foreground"])
    with pytest.raises(ModelFileError, match="cannot fine-tune it"):
        FineTune(model, [], TrainConfig(steps=1))
    with pytest.raises(ModelFileError, match="cannot save it"):
        model.save(tmp_path / "m.safetensors")
    with pytest.raises(ModelFileError, match="cannot export it"):
        export_bioimageio(model, tmp_path / "again.zip", sample=read_sample("nuclei_fluorescence"))
    assert not (tmp_path / "m.safetensors").exists() and not (tmp_path / "again.zip").exists()


def _edited(package: str, tmp_path, edit) -> str:
    """A copy of ``package`` whose rdf.yaml ``edit`` changed."""
    out = tmp_path / "edited.zip"
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.namelist():
            data = src.read(item)
            if item == "rdf.yaml":
                rdf = yaml.safe_load(data)
                edit(rdf)
                data = yaml.safe_dump(rdf).encode()
            dst.writestr(item, data)
    return str(out)


def test_what_cannot_be_used_is_refused_with_what_was_found(packages, tmp_path, monkeypatch):
    three_d = _edited(packages["classes"], tmp_path, lambda rdf: rdf["inputs"][0]["axes"].append(
        {"type": "space", "id": "z", "size": 16}))
    with pytest.raises(ModelFileError, match="input axis 'z' of type space: napari-unet feeds 2D images"):
        load_model(three_d)

    def onnx_only(rdf):
        rdf["weights"] = {"onnx": {"source": rdf["weights"]["torchscript"]["source"], "opset_version": 17}}

    with pytest.raises(ModelFileError, match="format.s. onnx; napari-unet runs torchscript or pytorch_state_dict"):
        load_model(_edited(packages["classes"], tmp_path, onnx_only))

    def per_image_clip(rdf):
        rdf["outputs"][0]["postprocessing"] = [{"id": "clip", "kwargs": {"min_percentile": 5, "max_percentile": 95}}]

    with pytest.raises(ModelFileError, match="cannot run on tiles: clip"):
        load_model(_edited(packages["classes"], tmp_path, per_image_clip))
    monkeypatch.setitem(sys.modules, "bioimageio.spec", None)  # the extra not installed
    with pytest.raises(NapariUNetError, match=r"another tool's bioimage.io package: .*pip install 'napari-unet\["):
        load_model(packages["classes"])


RDF_0_4 = """format_version: 0.4.10
type: model
name: another lab, spec 0.4
description: nuclei
authors: [{name: Another Lab}]
cite: [{text: a paper, doi: 10.1007/978-3-319-24574-4_28}]
license: MIT
documentation: README.md
timestamp: '2024-01-01T00:00:00'
inputs:
- name: raw
  axes: byxc
  data_type: float32
  data_range: [-.inf, .inf]
  shape: {min: [1, 64, 64, 1], step: [0, 16, 16, 0]}
  preprocessing:
  - {name: scale_range, kwargs: {mode: per_sample, axes: yx, min_percentile: 1, max_percentile: 99.8}}
  - {name: scale_linear, kwargs: {gain: 2.0, offset: -1.0}}
outputs:
- name: prob
  axes: byxc
  data_type: float32
  data_range: [0, 1]
  shape: {reference_tensor: raw, scale: [1, 1, 1, 1], offset: [0, 0, 0, 0]}
  halo: [0, 8, 8, 0]
  postprocessing: [{name: sigmoid}]
test_inputs: [in.npy]
test_outputs: [out.npy]
weights:
  torchscript: {source: weights.pt}
"""


def test_a_package_of_spec_0_4_reads_as_its_0_5_twin(packages, tmp_path, offline):
    """Most of the model zoo is still described in spec 0.4: the same files described so predict the same."""
    old = tmp_path / "old.zip"
    with zipfile.ZipFile(packages["foreground"]) as src, zipfile.ZipFile(old, "w") as dst:
        for item in ("in.npy", "out.npy", "weights.pt", "README.md"):
            dst.writestr(item, src.read(item))
        dst.writestr("rdf.yaml", RDF_0_4)
    model = load_model(old)
    assert model.config.class_names == ("background", "channel0") and model.network.margin == 8
    image = read_sample("nuclei_fluorescence_dense")
    np.testing.assert_array_equal(predict(image, model), predict(image, packages["foreground"]))
