"""Pick the torch device: CUDA, then Apple MPS, then CPU, unless the caller names one."""

from __future__ import annotations

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
