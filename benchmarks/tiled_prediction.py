"""Tiled prediction of one large image: napari_unet against MONAI's sliding window.

Both sides get the same network weights, tile, overlap and batch size and
predict the same seeded image:

* napari_unet: :func:`napari_unet.core.predict.tiling.predict_tiles` with a
  :class:`napari_unet.core.predict.predictor.NetworkPredictor`;
* MONAI: ``monai.inferers.sliding_window_inference`` (``mode="gaussian"``)
  given the plain eval-mode ``torch.nn.Module``, under ``torch.inference_mode``,
  followed by the same softmax.

Each side runs in its own fresh subprocess, so its peak resident memory
(``ru_maxrss``) belongs to it alone; the parent alternates the timed runs of
the sides after one warm-up run each, so machine noise hits both alike. A
plain 3x3 ``conv2d`` timed in the same rounds gives the machine's convolution
ceiling, against which the network's achieved GFLOP/s are read.

    python benchmarks/tiled_prediction.py                   # width 32, depth 4, 2048^2, CPU
    python benchmarks/tiled_prediction.py --width 16
    python benchmarks/tiled_prediction.py --width 16 --device cuda
    python benchmarks/tiled_prediction.py --table           # the tables of the saved runs

Each run is saved in ``benchmarks/results/tiled_prediction.json`` (``--results``)
under its settings, beside the runs of other settings.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _record import heading, options, save, started  # noqa: E402

SIDES = ("napari_unet", "monai")
CEILING_SIZE = 1024  # side of the plain-convolution input


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--width", type=int, default=32, help="channels of the U-Net's first level")
    p.add_argument("--depth", type=int, default=4, help="poolings of the U-Net")
    p.add_argument("--size", type=int, default=2048, help="side of the square test image")
    p.add_argument("--tile", type=int, default=256, help="tile side (MONAI's roi_size)")
    p.add_argument("--overlap", type=float, default=0.25, help="fraction of a tile shared with each neighbour")
    p.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass, both sides")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per side, after one warm-up")
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps")
    p.add_argument(
        "--amp", choices=("auto", "on", "off"), default="auto",
        help="mixed precision for both sides; auto: on for CUDA only, as NetworkPredictor does",
    )
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--worker", choices=(*SIDES, "conv"), help=argparse.SUPPRESS)
    options(p, "tiled_prediction")
    return p.parse_args(argv)


# ---------------------------------------------------------------- workers (subprocesses)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def _setup_torch(args):
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    return torch


def _amp(args, device) -> bool:
    return device.type == "cuda" if args.amp == "auto" else args.amp == "on"


def build_network(args):
    """The seeded network both sides use, in eval mode."""
    import torch

    from napari_unet import Model, ModelConfig

    torch.manual_seed(args.seed)
    return Model.from_config(ModelConfig(network=dict(width=args.width, depth=args.depth))).network.eval()


def build_image(args) -> np.ndarray:
    """A seeded, smooth-ish ``(1, size, size)`` float32 image in [0, 1]: blobs on noise."""
    rng = np.random.default_rng(args.seed)
    n = args.size
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    image = 0.1 * rng.random((n, n), dtype=np.float32)
    for cy, cx, r in zip(rng.uniform(0, n, 400), rng.uniform(0, n, 400), rng.uniform(5, 25, 400)):
        y0, y1, x0, x1 = (max(int(v), 0) for v in (cy - 3 * r, cy + 3 * r, cx - 3 * r, cx + 3 * r))
        image[y0:y1, x0:x1] += np.exp(-((yy[y0:y1, x0:x1] - cy) ** 2 + (xx[y0:y1, x0:x1] - cx) ** 2) / (2 * r * r))
    return (image / image.max())[None]


def side_runner(args, torch):
    """``(run, tiles_seen)``: ``run()`` predicts the image once and returns ``(K, Y, X)`` probabilities."""
    from napari_unet.core.devices import resolve_device
    from napari_unet.core.progress import run as run_to_end
    from napari_unet.core.predict.tiling import predict_tiles

    device = resolve_device(args.device)
    amp = _amp(args, device)
    network = build_network(args)
    image = build_image(args)
    tiles = [0]

    if args.worker == "napari_unet":
        from napari_unet.core.predict.predictor import NetworkPredictor

        predictor = NetworkPredictor(network, device, amp=amp)
        multiple = network.size_multiple

        def counted(batch):
            tiles[0] += len(batch)
            return predictor(batch)

        def run(count=False):
            fn = counted if count else predictor
            return run_to_end(
                predict_tiles(
                    image, fn, tile=args.tile, overlap=args.overlap, margin=network.margin,
                    multiple=multiple, batch_size=args.batch_size,
                )
            )

        return run, tiles

    from monai.inferers import sliding_window_inference

    network = network.to(device)
    x = torch.from_numpy(image[None]).to(device)

    def count_tiles(module, inputs):
        tiles[0] += len(inputs[0])

    def run(count=False):
        hook = network.register_forward_pre_hook(count_tiles) if count else None
        try:
            with torch.inference_mode(), torch.autocast(device.type, enabled=amp):
                logits = sliding_window_inference(
                    x, args.tile, args.batch_size, network, overlap=args.overlap, mode="gaussian"
                )
                prob = torch.softmax(logits.float(), dim=1)[0]
            return prob.cpu().numpy()
        finally:
            if hook is not None:
                hook.remove()

    return run, tiles


def conv_runner(args, torch):
    """``run()`` times plain 3x3 convolutions; returns ``{name: (seconds, gflop)}``."""
    from napari_unet.core.devices import resolve_device

    device = resolve_device(args.device)
    cases = {}
    for channels, layouts in ((64, ("contiguous", "channels_last")), (args.width, ("channels_last",))):
        for fmt in layouts:
            conv = torch.nn.Conv2d(channels, channels, 3, padding=1).to(device).eval()
            x = torch.rand(1, channels, CEILING_SIZE, CEILING_SIZE, device=device)
            if fmt == "channels_last":
                conv = conv.to(memory_format=torch.channels_last)
                x = x.contiguous(memory_format=torch.channels_last)
            gflop = 2 * channels * channels * 9 * CEILING_SIZE**2 / 1e9
            cases[f"conv3x3 {channels}->{channels} {fmt}"] = ([(conv, x)], gflop)
    cases[f"the predictor's convolutions alone, batch of {args.batch_size}"] = _predictor_convolutions(args, torch)

    def run(count=False):
        out = {}
        with torch.inference_mode():
            for name, (layers, gflop) in cases.items():
                _sync(torch, device)
                t0 = time.perf_counter()
                for conv, x in layers:
                    conv(x)
                _sync(torch, device)
                out[name] = (time.perf_counter() - t0, gflop)
        return out

    return run, [0]


def _predictor_convolutions(args, torch):
    """Every convolution of a :class:`NetworkPredictor`'s prepared network, with its own input.

    Run one after the other they take the least time one batch of tiles can
    take on this machine without fusing layers; the rest of a forward pass
    (concatenation, up-sampling, pooling, activations) and the tiling come on top.
    """
    from napari_unet.core.predict.predictor import NetworkPredictor

    network = build_network(args)
    predictor = NetworkPredictor(network, args.device, amp=_amp(args, torch.device(args.device)))
    layers, flops = [], []

    def capture(module, inputs, output):
        layers.append((module, inputs[0].clone()))
        flops.append(_conv_flops(module, inputs[0], output))

    handles = [m.register_forward_hook(capture) for m in predictor.network.modules() if _is_conv(m)]
    predictor(np.zeros((args.batch_size, network.inc[0].in_channels, args.tile, args.tile), np.float32))
    for h in handles:
        h.remove()
    return layers, sum(flops) / 1e9


def _is_conv(module) -> bool:
    import torch

    return isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))


def _conv_flops(module, x, output) -> float:
    """``2 * Cin * Cout * k * k / groups`` per output pixel (per input pixel for a transposed convolution)."""
    import torch

    k = module.kernel_size[0] * module.kernel_size[1]
    per_pixel = 2 * module.in_channels * module.out_channels * k / module.groups
    pixels = (x if isinstance(module, torch.nn.ConvTranspose2d) else output).shape[-2:].numel()
    return per_pixel * pixels * output.shape[0]


def _sync(torch, device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def worker(args) -> None:
    """Serve ``run`` / ``save`` / ``quit`` lines on stdin; answer one JSON line each on stdout."""
    torch = _setup_torch(args)
    from napari_unet.core.devices import resolve_device

    device = resolve_device(args.device)
    make = conv_runner if args.worker == "conv" else side_runner
    run, tiles = make(args, torch)
    baseline = _rss_bytes()
    _reply(ready=True, threads=torch.get_num_threads())
    first = True
    for line in sys.stdin:
        command = line.split()
        if command[0] == "quit":
            break
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            gpu_base = torch.cuda.memory_allocated()
        _sync(torch, device)
        t0 = time.perf_counter()
        result = run(count=first)
        _sync(torch, device)
        seconds = time.perf_counter() - t0
        reply = dict(seconds=seconds, peak_rss_increase=_peak_rss_bytes() - baseline, tiles=tiles[0])
        if device.type == "cuda":
            reply["peak_gpu_increase"] = torch.cuda.max_memory_allocated() - gpu_base
        if args.worker == "conv":
            reply["conv"] = result
        elif len(command) > 1:  # "run PATH": keep the output for the agreement check
            np.save(command[1], result)
        first = False
        _reply(**reply)


def _reply(**fields) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------- parent


class Worker:
    """A worker subprocess for one side."""

    def __init__(self, name: str, argv: list[str]):
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [sys.executable, __file__, *argv, "--worker", name],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )
        self.info = self._read()

    def run(self, save: str | None = None) -> dict:
        self.proc.stdin.write("run" + (f" {save}" if save else "") + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
        self.proc.wait()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker exited with code {self.proc.wait()}")
        return json.loads(line)


def network_gflop_per_megapixel(args) -> tuple[float, int]:
    """Convolution GFLOP per input megapixel on a ``tile``-sided input, and the parameter count.

    Counts ``2 * Cin * Cout * k * k * Hout * Wout / groups`` for every Conv2d and
    ConvTranspose2d (for the transposed one, over its input pixels); multiply-adds
    of anything else (pooling, up-sampling, activations) are left out.
    """
    import torch

    network = build_network(args)
    flops = [0]

    def conv_hook(module, inputs, output):
        flops[0] += _conv_flops(module, inputs[0], output)

    handles = [m.register_forward_hook(conv_hook) for m in network.modules() if _is_conv(m)]
    with torch.inference_mode():
        network(torch.zeros(1, network.inc[0].in_channels, args.tile, args.tile))
    for h in handles:
        h.remove()
    params = sum(p.numel() for p in network.parameters())
    return flops[0] / 1e9 / (args.tile**2 / 1e6), params


def settings(args) -> str:
    """The key of a run's settings in the results file."""
    return (f"width {args.width}, depth {args.depth}, {args.size}^2, tile {args.tile}, overlap {args.overlap}, "
            f"batch {args.batch_size}, {args.device}, amp {args.amp}, threads {args.threads or 'default'}")


def report(record: dict) -> str:
    """Markdown: the table of a saved run, then the ratios and how far the outputs are apart."""
    r, args = record["results"], record["run"]["args"]
    times, tiles = r["seconds"], r["tiles"]
    megapixels = args["size"] ** 2 / 1e6
    lines = [f"U-Net width {args['width']}, depth {args['depth']}: {r['parameters'] / 1e6:.2f} M parameters, "
             f"{r['gflop_per_mpx']:.1f} GFLOP per megapixel; MONAI {r['monai']}", "", heading(record), "",
             f"| | median s | Mpx/s | GFLOP/s | {r['memory']} +MiB | tiles | runs (s) |",
             "|---|---:|---:|---:|---:|---:|---|"]
    gflops = {}
    for name in SIDES:
        med = statistics.median(times[name])
        gflops[name] = r["gflop_per_mpx"] * tiles[name] * args["tile"] ** 2 / 1e6 / med
        lines.append(f"| {name} | {med:.2f} | {megapixels / med:.3f} | {gflops[name]:.1f} | {r['peak_mib'][name]:.0f} "
                     f"| {tiles[name]} | {', '.join(f'{t:.2f}' for t in times[name])} |")
    for name, c in r["conv"].items():
        med = statistics.median(c["seconds"])
        lines.append(f"| {name} | {med:.3f} | | {c['gflop'] / med:.1f} | | | "
                     f"{', '.join(f'{t:.3f}' for t in c['seconds'])} |")
    ours, theirs = (np.array(times[name]) for name in SIDES)
    plain = {n: c["gflop"] / statistics.median(c["seconds"]) for n, c in r["conv"].items() if n.startswith("conv3x3")}
    best = max(plain, key=plain.get)
    alone = next(c for n, c in r["conv"].items() if not n.startswith("conv3x3"))
    floor = statistics.median(alone["seconds"]) * -(-tiles["napari_unet"] // args["batch_size"])
    a = r["agreement"]
    lines += [
        "",
        f"- Throughput napari_unet / MONAI: **{statistics.median(theirs) / statistics.median(ours):.2f}x** "
        f"(ratio of medians; per-round ratios {', '.join(f'{x:.2f}' for x in theirs / ours)}).",
        f"- Achieved / best plain convolution ({best}, {plain[best]:.1f} GFLOP/s): "
        + ", ".join(f"{n} {gflops[n] / plain[best]:.0%}" for n in SIDES)
        + f"; napari_unet's convolutions alone would take {floor:.2f} s, {floor / statistics.median(ours):.0%} "
        "of its median time.",
        f"- Probabilities apart (different blending windows and border padding, so not identical): max |diff| "
        f"{a['max']:.2f} ({a['max_inner']:.2f} beyond {a['border']} px of the border), mean {a['mean']:.3f}, "
        f"same winning class on {a['same_class']:.1%} of pixels.",
    ]
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return
    if args.table:
        for key, record in json.loads(args.results.read_text())["runs"].items():
            print(f"### {key}\n\n{report(record)}\n")
        return
    facts = started(args)
    forwarded = [
        f"--width={args.width}", f"--depth={args.depth}", f"--size={args.size}", f"--tile={args.tile}",
        f"--overlap={args.overlap}", f"--batch-size={args.batch_size}", f"--device={args.device}",
        f"--amp={args.amp}", f"--threads={args.threads}", f"--seed={args.seed}",
    ]
    gflop_per_mpx, params = network_gflop_per_megapixel(args)
    times: dict[str, list[float]] = {name: [] for name in SIDES}
    conv: dict[str, dict] = {}
    last: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workers = {name: Worker(name, forwarded) for name in (*SIDES, "conv")}
        try:
            threads = workers["napari_unet"].info["threads"]
            warm = {name: w.run() for name, w in workers.items()}  # also counts the tiles each side runs
            tiles = {name: warm[name]["tiles"] for name in SIDES}
            print("warm-up: " + ", ".join(f"{n} {warm[n]['seconds']:.1f} s ({tiles[n]} tiles)" for n in SIDES))
            for i in range(args.repeats):
                for name in SIDES if i % 2 == 0 else SIDES[::-1]:  # ABBA: neither side always goes first
                    save_to = os.path.join(tmp, f"{name}.npy") if i == 0 else None
                    last[name] = workers[name].run(save_to)
                    times[name].append(last[name]["seconds"])
                    print(f"  round {i + 1}: {name:12s} {last[name]['seconds']:7.2f} s", flush=True)
                for name, (seconds, gflop) in workers["conv"].run()["conv"].items():
                    conv.setdefault(name, {"seconds": [], "gflop": gflop})["seconds"].append(seconds)
            ours, theirs = (np.load(os.path.join(tmp, f"{name}.npy")) for name in SIDES)
        finally:
            for w in workers.values():
                w.close()
    gpu = args.device.startswith("cuda")
    results = {
        "parameters": params, "gflop_per_mpx": gflop_per_mpx, "monai": importlib.metadata.version("monai"),
        "worker_threads": threads,
        "warmup_seconds": {n: warm[n]["seconds"] for n in SIDES}, "tiles": tiles, "seconds": times,
        "memory": "peak GPU alloc" if gpu else "peak RSS",
        "peak_mib": {n: last[n]["peak_gpu_increase" if gpu else "peak_rss_increase"] / 2**20 for n in SIDES},
        "conv": conv, "agreement": compare(ours, theirs, border=args.tile // 8),
    }
    print(report(save(args.results, facts, results, key=settings(args))["runs"][settings(args)]))


def compare(ours: np.ndarray, theirs: np.ndarray, border: int) -> dict:
    """How far the two sides' ``(K, Y, X)`` probabilities are apart; no pass or fail.

    They cannot be identical: napari_unet blends with a raised-cosine window
    and mirror-pads the image; MONAI blends with a Gaussian and its border
    tiles start at the image edge, where the network's zero padding sees a
    dark frame.
    """
    diff = np.abs(ours - theirs)
    inner = diff[:, border:-border, border:-border]
    same = ours.argmax(0) == theirs.argmax(0)
    return {"max": float(diff.max()), "max_inner": float(inner.max()), "border": border, "mean": float(diff.mean()),
            "same_class": float(same.mean())}


if __name__ == "__main__":
    main()
