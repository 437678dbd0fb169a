"""Running out of memory falls back to smaller tiles, then the CPU; planes are handed over one by one."""

import numpy as np
import pytest
import torch

from napari_unet import ImageError, predict, segment
from napari_unet.cli import main
from napari_unet.core.errors import InsufficientMemoryError
from napari_unet.core.predict.fallback import is_out_of_memory, memory_fallbacks
from napari_unet.core.predict.inference import PlaneResult, Segmenter, iter_planes
from napari_unet.core.predict.predictor import NetworkPredictor
from napari_unet.core.progress import Notice, Progress, run

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def _halve(tile):
    return tile // 2 if tile >= 128 else None


def test_an_accelerator_tries_half_the_tile_then_the_cpu_then_half_again():
    assert memory_fallbacks(512, CUDA, _halve) == [(256, CUDA), (256, CPU), (128, CPU)]
    assert memory_fallbacks(512, CPU, _halve) == [(256, CPU)]
    assert memory_fallbacks(64, CUDA, _halve) == [(64, CPU)]
    assert memory_fallbacks(64, CPU, _halve) == []


@pytest.mark.parametrize(
    "error, expected",
    [
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
        (RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"), True),
        (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes"), True),
        (MemoryError(), True),
        (RuntimeError("Given groups=1, weight of size [4, 1, 3, 3], expected input to have 1 channels"), False),
        (ValueError("out of memory"), False),
    ],
)
def test_out_of_memory_is_recognised_from_every_backend(error, expected):
    assert is_out_of_memory(error) is expected


class _OutOfMemoryAbove:
    """A predictor that runs out of memory on tiles larger than ``limit`` (every tile when 0)."""

    def __init__(self, inner, limit, device=None):
        self.inner, self.limit = inner, limit
        self.device = device or inner.device
        self.calls = []

    def __call__(self, batch):
        self.calls.append(batch.shape[-1])
        if batch.shape[-1] > self.limit:
            raise torch.OutOfMemoryError(f"{self.device.type} out of memory. Tried to allocate 9.00 GiB")
        return self.inner(batch)


def _run(gen):
    updates = []
    return run(gen, updates.append), updates


def test_out_of_memory_retries_the_plane_with_half_the_tile_and_says_so(model, rng):
    image = rng.random((2, 150, 170)).astype(np.float32)
    seg = Segmenter(model, device="cpu", tile=128, batch_size=2)
    used = seg._tile_for((150, 170))  # the tile, up to 128, that computes the fewest pixels
    seg.predictor = _OutOfMemoryAbove(seg.predictor, 64)
    prob = np.zeros((2, 150, 170), np.float32)
    updates = []
    for z in range(2):  # the second plane starts with the smaller tile: one notice only
        prob[z] = run(seg.iter_probabilities(image[z][None]), updates.append)[0]
    notices = [u.message for u in updates if isinstance(u, Notice)]
    assert used > 64 and seg.tile == used // 2
    assert notices == [f"out of memory on cpu with {used}-pixel tiles; retrying with {used // 2}-pixel tiles"]
    expected = predict(image, model, axes="ZYX", device="cpu", tile=seg.tile, batch_size=2)[:, 0]
    np.testing.assert_allclose(prob, expected, atol=1e-6)


def test_an_accelerator_out_of_memory_falls_back_to_the_cpu(model, rng):
    image = rng.random((150, 170)).astype(np.float32)
    seg = Segmenter(model, device="cpu", tile=128, batch_size=1)
    used = seg._tile_for((150, 170))
    fake_gpu = _OutOfMemoryAbove(seg.predictor, 0, device=CUDA)
    seg.predictor = fake_gpu
    prob, updates = _run(seg.iter_probabilities(image[None]))
    notices = [u.message for u in updates if isinstance(u, Notice)]
    half = used // 2
    assert notices == [
        f"out of memory on cuda with {used}-pixel tiles; retrying with {half}-pixel tiles",
        f"out of memory on cuda with {half}-pixel tiles; retrying on the CPU with {half}-pixel tiles (slower)",
    ]
    assert fake_gpu.calls == [used, half] and seg.device == CPU
    np.testing.assert_allclose(prob, predict(image, model, device="cpu", tile=half), atol=1e-6)


def test_running_out_of_memory_after_the_last_fallback_says_what_was_tried(model, rng):
    seg = Segmenter(model, device="cpu", tile=128)
    seg.predictor = _OutOfMemoryAbove(seg.predictor, 0)
    with pytest.raises(InsufficientMemoryError, match=r"out of memory on cpu with \d+-pixel tiles, the last fallback"):
        _run(seg.iter_probabilities(rng.random((1, 150, 170)).astype(np.float32)))
    assert seg.predictor.calls[1] == seg.predictor.calls[0] // 2


def test_other_errors_are_not_taken_for_out_of_memory(model, rng):
    seg = Segmenter(model, device="cpu", tile=128)

    def broken(batch):
        raise RuntimeError("expected input to have 1 channels")

    seg.predictor = broken
    with pytest.raises(RuntimeError, match="1 channels"):
        _run(seg.iter_probabilities(rng.random((1, 70, 70)).astype(np.float32)))


def test_the_command_line_prints_fallbacks(tmp_path, rng, model_file, monkeypatch, capsys):
    import tifffile

    original = NetworkPredictor.__call__

    def limited(self, batch):
        if batch.shape[-1] > 64:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return original(self, batch)

    monkeypatch.setattr(NetworkPredictor, "__call__", limited)
    tifffile.imwrite(tmp_path / "in.tif", rng.integers(0, 255, (256, 256), dtype=np.uint8))
    assert main(["segment", str(tmp_path / "in.tif"), "-o", str(tmp_path / "out.tif"), "--model", str(model_file),
                 "--tile", "128", "--overlap", "0"]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "napari-unet: out of memory on cpu with 128-pixel tiles; retrying with 64-pixel tiles" in err


def test_planes_are_handed_over_as_they_are_done_with_the_ids_of_segment(model, rng):
    stack = rng.integers(0, 255, (3, 60, 70), dtype=np.uint8)
    updates = list(iter_planes(stack, model, axes="ZYX", device="cpu", batch_size=1))
    results = [u for u in updates if isinstance(u, PlaneResult)]
    assert [r.index for r in results] == [(0,), (1,), (2,)]
    np.testing.assert_array_equal(np.stack([r.data for r in results]), segment(stack, model, axes="ZYX", device="cpu"))
    progress = [u for u in updates if isinstance(u, Progress)]
    assert progress[-1].done == progress[-1].total and [p.done for p in progress] == sorted(p.done for p in progress)
    # Each plane arrives right after its last tile, not with the next plane's first.
    last_tile_of_plane0 = progress[-1].total // 3
    assert updates.index(results[0]) == updates.index(next(p for p in progress if p.done == last_tile_of_plane0)) + 1


def test_chosen_planes_only_are_predicted(model, rng):
    stack = rng.integers(0, 255, (2, 3, 40, 50), dtype=np.uint8)
    results = [u for u in iter_planes(stack, model, axes="TZYX", output="probabilities", planes=[(1, 2)])
               if isinstance(u, PlaneResult)]  # fmt: skip
    assert len(results) == 1 and results[0].index == (1, 2)
    np.testing.assert_allclose(results[0].data, predict(stack[1, 2], model), atol=1e-6)
    semantic = [u for u in iter_planes(stack, model, axes="TZYX", output="semantic", planes=[(0, 1)])
                if isinstance(u, PlaneResult)]  # fmt: skip
    np.testing.assert_array_equal(semantic[0].data, segment(stack[0, 1], model, output="semantic"))


def test_a_plane_outside_the_stack_is_refused(model):
    with pytest.raises(ImageError, match=r"plane \(3,\) asked for, but the planes over axes 'Z' have shape \(2,\)"):
        list(iter_planes(np.zeros((2, 20, 20)), model, axes="ZYX", planes=[(3,)]))


def test_the_object_size_is_estimated_once_per_image_not_once_per_segmenter(monkeypatch):
    import napari_unet.core.predict.inference as inference
    from napari_unet.core.predict.inference import Segmenter, iter_labels
    from napari_unet.core.io.axes import plane_layout
    from napari_unet.core.progress import run
    from napari_unet import Model, ModelConfig

    estimates = []

    def fake_estimate(x, label_crop, object_size):
        estimates.append(x.shape)
        return 1.0
        yield

    monkeypatch.setattr(inference, "iter_estimate_scale", fake_estimate)
    model = Model.from_config(ModelConfig(network={"depth": 2, "width": 4}, object_size=20.0))
    seg = Segmenter(model, device="cpu")
    stack = np.random.default_rng(0).random((3, 32, 40)).astype(np.float32)
    for _ in range(2):  # two images (each a 3-plane stack) through one segmenter
        layout = plane_layout(stack.shape, "ZYX", 1)
        run(iter_labels(layout, stack, seg, lambda index, labels: None))
    assert estimates == [(1, 32, 40), (1, 32, 40)]


def test_a_segmenter_set_up_once_can_be_passed_for_the_model_and_tells_its_object_size(monkeypatch):
    import napari_unet.core.predict.inference as inference
    from napari_unet import Model, ModelConfig, segment
    from napari_unet.core.predict.inference import Segmenter

    def half(x, label_crop, object_size):
        return 0.5
        yield

    monkeypatch.setattr(inference, "iter_estimate_scale", half)
    model = Model.from_config(ModelConfig(network={"depth": 2, "width": 4}, object_size=20.0, tile=64, overlap=16))
    image = np.random.default_rng(0).random((40, 52)).astype(np.float32)

    given = Segmenter(model, device="cpu", object_size=30.0)
    assert not given.estimates_size and given.image_object_size == 30.0
    np.testing.assert_array_equal(segment(image, given), segment(image, model, device="cpu", object_size=30.0))

    auto = Segmenter(model, device="cpu")
    assert auto.estimates_size and auto.image_object_size is None  # nothing estimated before an image
    np.testing.assert_array_equal(segment(image, auto), segment(image, model, device="cpu", object_size=40.0))
    assert auto.image_object_size == 40.0  # 20 px trained / zoom 0.5
    unsized = Model.from_config(ModelConfig(network={"depth": 2, "width": 4}))  # a model that never rescales
    assert Segmenter(unsized, device="cpu").image_object_size is None
    with pytest.raises(TypeError, match="tile"):
        segment(image, given, tile=32)
