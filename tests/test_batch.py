"""Batch segmentation of stacks: shapes and ids, z linking, zarr stores that resume, dask, bad inputs."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

import napari_unet
from napari_unet.cli import main
from napari_unet.core.batch.jobs import BatchOptions, Job
from napari_unet.core.batch.run import iter_segment_file
from napari_unet.core.predict.inference import Segmenter
from napari_unet.core.io.labels_store import PartialStore, open_labels, partial_path
from napari_unet.core.progress import run
from napari_unet.core.io.stack_io import read_stack, write_labels

ROOT = Path(__file__).resolve().parents[1]
# A random model finds small objects in noise; keep them all so there are ids to check.
OPTIONS = ["--min-size", "1", "--overlap", "0.25"]


def _segment(*args) -> int:
    return main(["segment", *map(str, args), *OPTIONS])


def _write(path, data, axes, **kwargs):
    tifffile.imwrite(path, data, photometric="minisblack", metadata={"axes": axes}, **kwargs)
    return path


def _noise(rng, shape, dtype=np.uint16):
    return rng.integers(0, 4000, shape).astype(dtype)


def _ids_per_plane(labels):
    return [set(np.unique(p)) - {0} for p in labels.reshape(-1, *labels.shape[-2:])]


def _assert_unique_across_planes(labels):
    ids = _ids_per_plane(labels)
    assert sum(len(i) for i in ids) > len(ids), "the test needs objects to number"
    assert all(not (a & b) for k, a in enumerate(ids) for b in ids[k + 1 :])
    every = sorted(set().union(*ids))
    assert every == list(range(1, len(every) + 1))  # numbered 1..n without gaps


def _zarr_labels(path):
    return zarr.open_array(Path(path) / "0", mode="r")[...]


@pytest.mark.parametrize("shape, axes", [((4, 48, 56), "ZYX"), ((48, 56), "YX")])
def test_a_stack_gives_labels_of_its_shape_with_ids_unique_in_the_stack(shape, axes, tmp_path, rng, model_file):
    stack = _write(tmp_path / "z.tif", _noise(rng, shape), axes)
    assert _segment(stack, "-o", tmp_path / "labels.tif", "--model", model_file) == 0
    assert _segment(stack, "-o", tmp_path / "labels.zarr", "--model", model_file) == 0
    with tifffile.TiffFile(tmp_path / "labels.tif") as tif:
        assert tif.series[0].axes == axes
        labels = tif.series[0].asarray()
    assert labels.shape == shape and labels.dtype == np.uint32
    _assert_unique_across_planes(labels)
    np.testing.assert_array_equal(_zarr_labels(tmp_path / "labels.zarr"), labels)


def test_a_tzcyx_stack_with_a_channel_picked_gives_the_same_labels_in_tiff_zarr_and_python(
    tmp_path, rng, model_file, model
):
    data = _noise(rng, (2, 3, 2, 40, 44))
    stack = _write(tmp_path / "h.tif", data, "TZCYX")
    args = [stack, "--model", model_file, "--channels", "1"]
    assert _segment(*args, "-o", tmp_path / "h_labels.tif") == 0
    assert _segment(*args, "-o", tmp_path / "h.zarr") == 0
    labels = tifffile.imread(tmp_path / "h_labels.tif")
    assert labels.shape == (2, 3, 40, 44)
    _assert_unique_across_planes(labels)
    np.testing.assert_array_equal(_zarr_labels(tmp_path / "h.zarr"), labels)
    api = napari_unet.segment(data, model, axes="TZCYX", channels=[1], overlap=0.25, min_size=1)
    np.testing.assert_array_equal(api, labels)


def test_the_zarr_store_is_ome_zarr_with_axes_scale_and_a_lazy_labels_array(tmp_path, rng, model_file):
    stack = tmp_path / "ij.tif"
    metadata = {"axes": "ZYX", "spacing": 2.0, "unit": "um"}
    tifffile.imwrite(stack, _noise(rng, (3, 32, 40)), imagej=True, resolution=(2.0, 2.0), metadata=metadata)
    assert _segment(stack, "-o", tmp_path / "ij.zarr", "--model", model_file) == 0
    group = zarr.open_group(tmp_path / "ij.zarr", mode="r")
    (multiscale,) = group.attrs["ome"]["multiscales"]
    assert [a["name"] for a in multiscale["axes"]] == ["z", "y", "x"]
    assert multiscale["axes"][0] == {"name": "z", "type": "space", "unit": "micrometer"}
    assert multiscale["datasets"][0]["coordinateTransformations"][0]["scale"] == [2.0, 0.5, 0.5]
    labels, attrs = open_labels(tmp_path / "ij.zarr")
    assert isinstance(labels, zarr.Array) and labels.shape == (3, 32, 40)
    assert attrs["axes"] == "ZYX" and attrs["objects"] == int(labels[...].max())
    assert sorted(p.name for p in (tmp_path / "ij.zarr").iterdir()) == ["0", "zarr.json"]  # raw planes and counts gone
    assert not partial_path(tmp_path / "ij.zarr").exists()


def test_stitch_z_gives_one_id_to_an_object_spanning_planes(tmp_path, rng, model_file):
    plane = _noise(rng, (48, 56))
    stack = _write(tmp_path / "same.tif", np.stack([plane] * 3), "ZYX")
    assert _segment(stack, "-o", tmp_path / "apart.tif", "--model", model_file) == 0
    assert _segment(stack, "-o", tmp_path / "linked.tif", "--model", model_file, "--stitch-z", "0.5") == 0
    assert _segment(stack, "-o", tmp_path / "linked.zarr", "--model", model_file, "--stitch-z", "0.5") == 0
    apart, linked = tifffile.imread(tmp_path / "apart.tif"), tifffile.imread(tmp_path / "linked.tif")
    _assert_unique_across_planes(apart)
    # The same objects in every plane overlap fully: each keeps the id it has in the first plane.
    np.testing.assert_array_equal(linked[1], linked[0])
    np.testing.assert_array_equal(linked[2], linked[0])
    np.testing.assert_array_equal(linked[0], apart[0])
    np.testing.assert_array_equal(_zarr_labels(tmp_path / "linked.zarr"), linked)


def test_stitch_z_needs_a_z_axis(tmp_path, rng, model_file, capsys):
    image = _write(tmp_path / "t.tif", _noise(rng, (2, 32, 32)), "TYX")
    assert _segment(image, "-o", tmp_path / "l.tif", "--model", model_file, "--stitch-z", "0.5") == 2
    assert "needs a Z axis" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors", "t.tif"]


def _count_segmented_planes(monkeypatch) -> list[int]:
    calls = []
    original = Segmenter.iter_probabilities

    def counting(self, plane):
        calls.append(1)
        return (yield from original(self, plane))

    monkeypatch.setattr(Segmenter, "iter_probabilities", counting)
    return calls


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


def test_a_killed_zarr_run_resumes_and_ends_identical_to_an_uninterrupted_one(tmp_path, rng, model_file, monkeypatch):
    n = 60
    stack = _write(tmp_path / "long.tif", _noise(rng, (n, 96, 96)), "ZYX")
    assert _segment(stack, "-o", tmp_path / "whole.zarr", "--model", model_file) == 0

    out = tmp_path / "killed.zarr"
    cmd = [sys.executable, "-m", "napari_unet.cli", "segment", str(stack), "-o", str(out), "--model", str(model_file)]
    cmd += OPTIONS
    process = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    counts = partial_path(out) / "counts" / "c"
    try:
        deadline = time.monotonic() + 120
        while not (counts.is_dir() and sum(p.name.isdigit() for p in counts.iterdir()) >= 2):
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "the run did not start writing planes"
            time.sleep(0.01)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert not out.exists()
    done = n - len(PartialStore(partial_path(out)).pending())
    assert 2 <= done < n

    segmented = _count_segmented_planes(monkeypatch)
    assert _segment(stack, "-o", out, "--model", model_file) == 0
    assert len(segmented) == n - done  # the planes already written were skipped
    np.testing.assert_array_equal(_zarr_labels(out), _zarr_labels(tmp_path / "whole.zarr"))
    assert not partial_path(out).exists()

    segmented.clear()
    assert _segment(stack, "-o", out, "--model", model_file) == 0  # complete: nothing to do
    assert segmented == []


def test_a_stopped_run_keeps_its_planes_and_other_settings_start_over(tmp_path, rng, model, monkeypatch):
    stack = _write(tmp_path / "s.tif", _noise(rng, (5, 40, 40)), "ZYX")
    job = Job(stack, tmp_path / "s.zarr")
    segmenter = Segmenter(model, device="cpu", overlap=0.25)
    options = BatchOptions(min_size=1)
    gen = iter_segment_file(job, segmenter, options)
    per_plane = segmenter.tiles((40, 40))
    for progress in gen:
        if progress.done == 2 * per_plane:
            break
    gen.close()
    assert not job.output.exists()
    assert PartialStore(partial_path(job.output)).pending() == [2, 3, 4]

    segmented = _count_segmented_planes(monkeypatch)
    run(iter_segment_file(job, segmenter, BatchOptions(min_size=2)))  # other settings: the planes are redone
    assert len(segmented) == 5
    expected = napari_unet.segment(tifffile.imread(stack), model, axes="ZYX", overlap=0.25, min_size=2)
    np.testing.assert_array_equal(_zarr_labels(job.output), expected)


def test_a_run_stopped_while_numbering_ids_only_numbers_them_again(tmp_path, rng, model, monkeypatch):
    stack = _write(tmp_path / "s.tif", _noise(rng, (4, 40, 40)), "ZYX")
    job = Job(stack, tmp_path / "s.zarr")
    segmenter = Segmenter(model, device="cpu", overlap=0.25)
    options = BatchOptions(min_size=1, stitch_z=0.2)
    gen = iter_segment_file(job, segmenter, options)
    for progress in gen:
        if progress.stage.endswith(": ids") and progress.done == 2:
            break
    gen.close()
    assert not job.output.exists() and PartialStore(partial_path(job.output)).pending() == []

    segmented = _count_segmented_planes(monkeypatch)
    run(iter_segment_file(job, segmenter, options))
    assert segmented == []
    expected = napari_unet.segment(tifffile.imread(stack), model, axes="ZYX", overlap=0.25, min_size=1, stitch_z=0.2)
    np.testing.assert_array_equal(_zarr_labels(job.output), expected)
    assert sorted(p.name for p in job.output.iterdir()) == ["0", "zarr.json"]


def test_a_local_cluster_of_two_workers_gives_the_single_process_result(tmp_path, rng, model_file):
    stack = _write(tmp_path / "c.tif", _noise(rng, (2, 3, 40, 48)), "TZYX")
    args = ["--model", model_file, "--stitch-z", "0.3"]
    assert _segment(stack, "-o", tmp_path / "here.zarr", *args) == 0
    assert _segment(stack, "-o", tmp_path / "cluster.zarr", *args, "--scheduler", "local:2") == 0
    here, cluster = _zarr_labels(tmp_path / "here.zarr"), _zarr_labels(tmp_path / "cluster.zarr")
    assert here.max() > 0
    np.testing.assert_array_equal(cluster, here)


def test_a_running_scheduler_is_reached_by_its_address(tmp_path, rng, model_file):
    distributed = pytest.importorskip("distributed")
    stack = _write(tmp_path / "a.tif", _noise(rng, (3, 40, 40)), "ZYX")
    assert _segment(stack, "-o", tmp_path / "here.zarr", "--model", model_file) == 0
    # Worker threads in this process: quick to start, and the address is reached over TCP all the same.
    in_process = dict(processes=False, protocol="tcp", host="127.0.0.1", dashboard_address=None)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, **in_process) as cluster:
        address = cluster.scheduler_address
        code = _segment(stack, "-o", tmp_path / "there.zarr", "--model", model_file, "--scheduler", address)
    assert code == 0
    np.testing.assert_array_equal(_zarr_labels(tmp_path / "there.zarr"), _zarr_labels(tmp_path / "here.zarr"))


def test_a_worker_loads_the_model_once_and_only_the_model_the_run_started_with(model, model_file, monkeypatch):
    import napari_unet.core.models.model
    from napari_unet.core.batch import cluster
    from napari_unet.core.batch.jobs import model_digest

    loads = []
    load = napari_unet.core.models.model.load_model
    monkeypatch.setattr(napari_unet.core.models.model, "load_model", lambda path: loads.append(path) or load(path))
    monkeypatch.setattr(cluster, "_SEGMENTERS", {})
    segmenter = Segmenter(model, device="cpu")
    spec = cluster.WorkerModel.of(segmenter, model_file, model_digest(model))
    assert cluster._segmenter(spec) is cluster._segmenter(spec)
    assert loads == [str(model_file)]
    changed = cluster.WorkerModel.of(segmenter, model_file, "0" * 64)
    with pytest.raises(napari_unet.NapariUNetError, match="not the one the run started with"):
        cluster._segmenter(changed)


def _error_lines(capsys) -> list[str]:
    lines = capsys.readouterr().err.strip().splitlines()
    return [line for line in lines if line.startswith("napari-unet: error: ")]


def test_a_folder_of_mixed_grey_rgb_and_stacks_is_segmented_each_with_its_own_axes(tmp_path, rng, model_file, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    _write(folder / "a.tif", _noise(rng, (3, 32, 32)), "ZYX")
    _write(folder / "b.tif", _noise(rng, (32, 32)), "YX")
    tifffile.imwrite(folder / "c.tif", (_noise(rng, (32, 32, 3)) * 255).astype(np.uint8), photometric="rgb")
    assert _segment(folder, "-o", tmp_path / "out", "--model", model_file) == 0, capsys.readouterr().err
    shapes = {p.name: tifffile.imread(p).shape for p in (tmp_path / "out").iterdir()}
    assert shapes == {"a_labels.tif": (3, 32, 32), "b_labels.tif": (32, 32), "c_labels.tif": (32, 32)}


def test_axes_given_for_a_folder_of_mixed_shapes_fail_before_any_work(tmp_path, rng, model_file, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    _write(folder / "a.tif", _noise(rng, (3, 32, 32)), "ZYX")
    _write(folder / "b.tif", _noise(rng, (2, 32, 32)), "TYX")
    assert _segment(folder, "-o", tmp_path / "out", "--model", model_file, "--channels", "0") == 2
    (line,) = _error_lines(capsys)
    assert "differ in their axes" in line and "a.tif has axes ZYX" in line and "b.tif has axes TYX" in line
    assert list((tmp_path / "out").iterdir()) == []


def test_a_model_whose_channels_do_not_fit_fails_before_any_work(tmp_path, rng, model_file, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.tif", "b.tif"):
        _write(folder / name, _noise(rng, (2, 3, 32, 32)), "ZCYX")
    assert _segment(folder, "-o", tmp_path / "out", "--model", model_file, "--format", "zarr") == 2
    (line,) = _error_lines(capsys)
    assert "expects 1 channel(s) but the image has 3" in line
    assert list((tmp_path / "out").iterdir()) == []


def _corrupt_second_plane(path, data):
    """A compressed stack whose second plane no longer decodes (the file's structure is intact)."""
    _write(path, data, "ZYX", compression="zlib")
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[1].dataoffsets[0]
    raw = bytearray(path.read_bytes())
    raw[offset : offset + 64] = b"\xff" * 64
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("fmt", ["tif", "zarr"])
def test_unreadable_and_truncated_files_are_reported_and_the_others_written(fmt, tmp_path, rng, model_file, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    _write(folder / "a.tif", _noise(rng, (2, 32, 32)), "ZYX")
    _write(folder / "b_truncated.tif", _noise(rng, (2, 32, 32)), "ZYX", compression="zlib")
    raw = (folder / "b_truncated.tif").read_bytes()
    (folder / "b_truncated.tif").write_bytes(raw[: len(raw) // 2])
    _corrupt_second_plane(folder / "c_corrupt.tif", _noise(rng, (2, 32, 32)))
    _write(folder / "d.tif", _noise(rng, (3, 32, 32)), "ZYX")
    out = tmp_path / "out"
    assert _segment(folder, "-o", out, "--model", model_file, "--format", fmt) == 2
    lines = _error_lines(capsys)
    assert len(lines) == 3
    assert "b_truncated.tif" in lines[0] and "truncated or corrupt" in lines[0]
    assert "c_corrupt.tif" in lines[1] and "truncated or corrupt" in lines[1]
    assert "2 of 4 inputs failed (b_truncated.tif, c_corrupt.tif); the others were written" in lines[2]
    # No half-written output under a final name; a zarr store that failed midway is kept aside to resume.
    resumable = [".c_corrupt_labels.zarr.partial"] if fmt == "zarr" else []
    assert sorted(p.name for p in out.iterdir()) == resumable + [f"a_labels.{fmt}", f"d_labels.{fmt}"]


def test_a_full_disk_stops_the_run_with_one_line_keeping_what_was_written(
    tmp_path, rng, model_file, capsys, monkeypatch
):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.tif", "b.tif"):
        _write(folder / name, _noise(rng, (2, 32, 32)), "ZYX")
    out = tmp_path / "out"
    out.mkdir()
    earlier = write_labels(out / "b_labels.tif", np.ones((8, 8), np.uint16)).read_bytes()  # ours: may be replaced
    writes = []
    original = tifffile.TiffWriter.write

    def fill_up(self, *args, **kwargs):
        writes.append(1)
        if len(writes) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(tifffile.TiffWriter, "write", fill_up)
    assert _segment(folder, "-o", out, "--model", model_file) == 2
    (line,) = _error_lines(capsys)
    assert "No space left on device" in line
    assert sorted(p.name for p in out.iterdir()) == ["a_labels.tif", "b_labels.tif"]
    assert tifffile.imread(out / "a_labels.tif").shape == (2, 32, 32)
    assert (out / "b_labels.tif").read_bytes() == earlier


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, where nobody may create files")
def test_an_unwritable_zarr_output_is_refused_before_any_work(tmp_path, rng, model_file, capsys):
    image = _write(tmp_path / "i.tif", _noise(rng, (32, 32)), "YX")
    assert _segment(image, "-o", "/proc/self/labels.zarr", "--model", model_file) == 2
    assert "cannot write /proc/self/labels.zarr" in _error_lines(capsys)[0]


def test_a_folder_that_is_not_a_labels_store_is_never_replaced(tmp_path, rng, model_file, capsys):
    image = _write(tmp_path / "i.tif", _noise(rng, (32, 32)), "YX")
    (tmp_path / "data.zarr").mkdir()
    (tmp_path / "data.zarr" / "precious.txt").write_text("keep me")
    assert _segment(image, "-o", tmp_path / "data.zarr", "--model", model_file) == 2
    assert "is not a napari-unet labels store" in _error_lines(capsys)[0]
    assert (tmp_path / "data.zarr" / "precious.txt").read_text() == "keep me"


def test_a_finished_store_from_other_settings_is_replaced_when_the_new_one_is_complete(tmp_path, rng, model_file):
    image = _write(tmp_path / "i.tif", _noise(rng, (2, 32, 32)), "ZYX")
    out = tmp_path / "i.zarr"
    assert _segment(image, "-o", out, "--model", model_file, "--labels", "semantic") == 0
    assert open_labels(out)[1]["labels"] == "semantic"
    assert _segment(image, "-o", out, "--model", model_file) == 0
    assert open_labels(out)[1]["labels"] == "instances"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i.tif", "i.zarr", "model.safetensors"]


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--scheduler", "local:2"], "writes into zarr stores"),
        (["--scheduler", "somewhere"], "local, local:N or an address"),
        (["--scheduler", "local:0"], "positive number of workers"),
        (["--labels", "semantic", "--stitch-z", "0.5"], "needs instance labels"),
    ],
)
def test_options_that_cannot_work_are_refused_before_any_work(extra, expected, tmp_path, rng, model_file, capsys):
    image = _write(tmp_path / "i.tif", _noise(rng, (2, 32, 32)), "ZYX")
    assert _segment(image, "-o", tmp_path / "l.tif", "--model", model_file, *extra) == 2
    assert expected in _error_lines(capsys)[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i.tif", "model.safetensors"]


def test_batch_reading_does_not_memory_map(tmp_path, rng):
    data = _noise(rng, (3, 16, 16))
    _write(tmp_path / "raw.tif", data, "ZYX")
    assert isinstance(read_stack(tmp_path / "raw.tif").data, np.memmap)
    streamed = read_stack(tmp_path / "raw.tif", lazy=True, memmap=False).data
    assert not isinstance(streamed, np.ndarray)
    np.testing.assert_array_equal(streamed[1], data[1])


def test_core_imports_neither_napari_nor_qt():
    code = (
        "import sys, napari_unet.core.batch, napari_unet.core.batch.cluster, napari_unet.core.io.labels_store, napari_unet.cli; "
        "banned = ('napari', 'qtpy', 'PyQt5', 'PySide2', 'PySide6', 'distributed'); "
        "bad = [m for m in sys.modules if m.split('.')[0] in banned]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=_env())


def test_an_unreadable_leftover_store_is_started_over_but_a_disk_error_keeps_the_progress(tmp_path, monkeypatch):
    out = tmp_path / "labels.zarr"
    leftover = partial_path(out)
    leftover.mkdir()
    (leftover / "zarr.json").write_text("not json")
    store = PartialStore.open(out, (2, 8, 8), {"a": 1})
    assert store.pending() == [0, 1]

    def disk_error(self, path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(PartialStore, "__init__", disk_error)
    with pytest.raises(napari_unet.NapariUNetError, match="it was left as it is"):
        PartialStore.open(out, (2, 8, 8), {"a": 1})
    assert (partial_path(out) / "raw").exists()  # the progress is still there
