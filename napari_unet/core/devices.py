"""Pick the torch device: CUDA, then Apple MPS, then CPU, unless the caller names one."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Generator, Iterator
from typing import TypeVar

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Return a usable :class:`torch.device` for ``device``.

    ``"auto"`` (or ``None``) takes CUDA when there is a GPU, else Apple MPS,
    else the CPU. Naming a device that is not available raises ``ValueError``
    saying which devices are.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = device.split(":")[0]
    if kind not in DEVICE_CHOICES:
        raise ValueError(f"device must be one of {', '.join(DEVICE_CHOICES)}, got {device!r}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but no CUDA GPU is available; available: {available()}")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} was asked for but Apple MPS is not available; available: {available()}")
    return torch.device(device)


def available() -> str:
    """The devices this machine offers, for messages."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names.append("cuda")
    if torch.backends.mps.is_available():
        names.append("mps")
    return ", ".join(names)


def mixed_precision(device: torch.device) -> torch.dtype | None:
    """The lower precision training computes in on ``device`` (weights stay float32), or None: float32 throughout.

    CUDA: float16, with loss scaling. CPU: bfloat16 where the processor computes it natively (AVX-512 BF16 or
    AMX): nearly twice as many training steps a minute there (``benchmarks/training.py``); elsewhere it
    would be emulated, slower than float32, so float32. Apple MPS: float32.
    """
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and _native_bf16():
        return torch.bfloat16
    return None


def _native_bf16() -> bool:
    """The CPU computes bfloat16 natively (torch has no public query for this)."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    try:
        return any(check() for check in checks if check is not None)
    except Exception:  # a private query that changed: assume not, which is always correct if slower
        return False


def cpu_cores() -> int:
    """CPU cores this process may run on (its affinity where the system says, else all)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run torch's CPU operations on ``n`` threads inside the block, as before after it.

    A viewer leaves one core to its GUI thread this way: with every core busy
    with convolutions, the GUI thread waits for the scheduler and the viewer
    stutters. The setting is process-wide.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


Y = TypeVar("Y")
R = TypeVar("R")


def steps_on_threads(generator: Generator[Y, None, R], n: int) -> Generator[Y, None, R]:
    """Drive ``generator`` with torch on ``n`` threads while each step computes.

    The setting is restored between steps, so it never outlives the work even
    when the consumer stops pulling (a stopped worker thread does not close its
    generator).
    """
    while True:
        with torch_threads(n):
            try:
                update = next(generator)
            except StopIteration as stop:
                return stop.value
        yield update
