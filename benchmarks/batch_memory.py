"""Batch segmentation: peak memory against stack size, and throughput against the Python API.

Writes a synthetic uint16 ZYX stack to disk (uncompressed, plane by plane,
so it is never whole in memory here either), then, each in a fresh process:

1. memory: segments a long stack and a short one (the first planes of the
   same data) through the command line's path
   (:func:`napari_unet.core.batch.run.iter_segment_file`, labels streamed into a
   TIFF) and reports each process's peak resident memory (VmHWM), and its
   resident memory once torch and the model were loaded, before any plane;
2. throughput: segments the short stack through the command line's path
   (TIFF and zarr outputs) and plane by plane through the Python API
   (``napari_unet.segment`` on each plane read with tifffile), alternating
   the three ``--repeats`` times in one process, and reports planes per
   second and the ratio to the API.

The machine may be busy, so the runs that are compared alternate within one
process and the report quotes ratios. Linux only (reads /proc/self/status).

    python benchmarks/batch_memory.py                      # defaults: see --help
    python benchmarks/batch_memory.py --planes 64 --short 8 --size 512   # a quick look
    python benchmarks/batch_memory.py --table              # the tables of the saved results

Results go to ``benchmarks/results/batch_memory.json`` (``--results``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _record import heading, options, save, started  # noqa: E402

MiB = 2**20
PATHS = {"api": "Python API, plane by plane", "tif": "batch path, TIFF output", "zarr": "batch path, zarr output"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--planes", type=int, default=192, help="planes of the long stack (default 192)")
    p.add_argument("--short", type=int, default=12, help="planes of the short stack (default 12)")
    p.add_argument("--size", type=int, default=1024, help="plane side in pixels (default 1024)")
    p.add_argument("--width", type=int, default=8, help="width of the random model (default 8)")
    p.add_argument("--depth", type=int, default=2, help="depth of the random model (default 2)")
    p.add_argument("--tile", type=int, default=512, help="tile side (default 512)")
    p.add_argument("--model", help="a model file to use instead of a random one")
    p.add_argument("--repeats", type=int, default=2, help="alternations of the throughput runs (default 2)")
    p.add_argument("--folder", help="where to write the stacks (default: a temporary folder, removed afterwards)")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    options(p, "batch_memory")
    args = p.parse_args(argv)
    if args.child:
        return _child(args)
    if args.table:
        print(table(json.loads(args.results.read_text())))
        return 0
    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        return _parent(args, Path(folder))


def _parent(args, folder: Path) -> int:
    facts = started(args)
    model = Path(args.model) if args.model else _random_model(folder / "model.safetensors", args.width, args.depth)
    stacks = {"long": (folder / "long.tif", args.planes), "short": (folder / "short.tif", args.short)}
    for stack, planes in stacks.values():
        _write_stack(stack, planes, args.size)
    results = {"plane_bytes": args.size * args.size * 2, "memory": {}}
    for name, (stack, planes) in stacks.items():
        results["memory"][name] = {"planes": planes, **_run_child(args, "memory", stack, model, folder)}
        print(name, results["memory"][name], flush=True)
    results["throughput"] = {"planes": args.short, **_run_child(args, "throughput", stacks["short"][0], model, folder)}
    print(table(save(args.results, facts, results)))
    return 0


def table(record: dict) -> str:
    """Markdown: peak memory of the long and the short stack, then the throughput of each path on the short one."""
    r, args = record["results"], record["run"]["args"]
    model = args["model"] or f"random U-Net, depth {args['depth']}, width {args['width']}"
    lines = [heading(record), "", f"Planes of {args['size']} x {args['size']} uint16; model: {model}; "
             f"tile {args['tile']}, 4 tiles a batch.", "",
             "| stack | planes | stack size | resident when loaded | peak resident | peak - loaded | s / plane |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, m in r["memory"].items():
        lines.append(f"| {name} | {m['planes']} | {m['planes'] * r['plane_bytes'] / MiB:.0f} MiB | "
                     f"{m['loaded'] / MiB:.0f} MiB | **{m['peak'] / MiB:.0f} MiB** | "
                     f"{(m['peak'] - m['loaded']) / MiB:.0f} MiB | {m['seconds'] / m['planes']:.2f} |")
    t = r["throughput"]
    api = np.median(t["api"])
    lines += ["", f"| path, short stack ({t['planes']} planes), median of {len(t['api'])} alternations "
              "| median s | planes / s | vs API |", "| --- | ---: | ---: | ---: |"]
    for key, label in PATHS.items():
        seconds = np.median(t[key])
        lines.append(f"| {label} | {seconds:.1f} | {t['planes'] / seconds:.3f} | {api / seconds:.2f} |")
    return "\n".join(lines)


def _run_child(args, mode: str, stack: Path, model: Path, folder: Path) -> dict:
    cmd = [sys.executable, __file__, "--tile", str(args.tile), "--repeats", str(args.repeats),
           "--child", mode, str(stack), str(model), str(folder)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def _child(args) -> int:
    mode, stack, model_file, folder = args.child
    import napari_unet
    from napari_unet.core.batch.jobs import BatchOptions, Job
    from napari_unet.core.batch.run import iter_segment_file
    from napari_unet.core.predict.inference import Segmenter
    from napari_unet.core.progress import run

    model = napari_unet.load_model(model_file)
    segmenter = Segmenter(model, device="cpu", tile=args.tile)
    options = BatchOptions()

    def batch(output: Path) -> float:
        start = time.perf_counter()
        run(iter_segment_file(Job(Path(stack), output), segmenter, options))
        return time.perf_counter() - start

    if mode == "memory":
        loaded = _status("VmRSS")
        seconds = batch(Path(folder) / "memory_labels.tif")
        print(json.dumps({"loaded": loaded, "peak": _status("VmHWM"), "seconds": seconds}))
        return 0

    import tifffile

    def api() -> float:
        start = time.perf_counter()
        with tifffile.TiffFile(stack) as tif:
            for page in tif.pages:
                napari_unet.segment(page.asarray(), model, device="cpu", tile=args.tile)
        return time.perf_counter() - start

    times: dict[str, list[float]] = {"api": [], "tif": [], "zarr": []}
    for i in range(args.repeats):
        times["api"].append(api())
        times["tif"].append(batch(Path(folder) / f"throughput_{i}.tif"))
        times["zarr"].append(batch(Path(folder) / f"throughput_{i}.zarr"))
    print(json.dumps(times))
    return 0


def _status(field: str) -> int:
    """A field of /proc/self/status in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status (this benchmark needs Linux)")


def _random_model(path: Path, width: int, depth: int) -> Path:
    import torch

    from napari_unet import Model, ModelConfig

    torch.manual_seed(2)  # a random model that finds about as many objects as there are blobs: labelling does real work
    return Model.from_config(ModelConfig(network=dict(width=width, depth=depth))).save(path)


def _write_stack(path: Path, planes: int, size: int) -> None:
    """Nuclei-like blobs on a noisy background, written uncompressed one plane at a time."""
    import tifffile

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    centers = rng.uniform(0, size, (max(1, size * size // 4000), 2))
    blobs = np.zeros((size, size), np.float32)
    for cy, cx in centers:
        blobs += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 6.0**2))

    def plane(z: int) -> np.ndarray:
        shifted = np.roll(blobs, (3 * z, 2 * z), axis=(0, 1))  # objects drift between planes, as in a z-stack
        noise = rng.normal(0, 0.05, (size, size)).astype(np.float32)
        return np.clip((shifted + noise) * 2000 + 500, 0, 65535).astype(np.uint16)

    with tifffile.TiffWriter(path, bigtiff=planes * size * size * 2 > 2**31) as tif:
        tif.write((plane(z) for z in range(planes)), shape=(planes, size, size), dtype=np.uint16,
                  photometric="minisblack", metadata={"axes": "ZYX"})


if __name__ == "__main__":
    sys.exit(main())
