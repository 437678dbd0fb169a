"""Running out of memory during prediction: how to recognise it, and what to try next.

A GPU that runs out of memory on a large tile is common (other programs share
it, the tile was sized for a bigger card). Rather than fail, the plane is
predicted again with half the tile on the same device; an accelerator then
falls back to the CPU, where half that tile is the last try. The caller reports
each step, so the user knows why the work got slower.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

_OOM_TEXTS = ("out of memory", "can't allocate memory", "not enough memory")


def is_out_of_memory(error: BaseException) -> bool:
    """True for the errors torch (CUDA, MPS, CPU) and NumPy raise when an allocation fails."""
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(error, RuntimeError) and any(t in str(error).lower() for t in _OOM_TEXTS)


def memory_fallbacks(
    tile: int, device: torch.device, halve: Callable[[int], int | None]
) -> list[tuple[int, torch.device]]:
    """The ``(tile, device)`` settings to try in turn after running out of memory.

    Parameters
    ----------
    tile : int
        The tile side that ran out of memory.
    device : torch.device
        Where it ran.
    halve : callable
        ``halve(tile)``: the valid tile side closest to half of ``tile``, or
        None when there is no valid smaller one.

    Returns
    -------
    list of (int, torch.device)
        Half the tile on ``device``; for an accelerator then the CPU with that
        tile and half of it again. Empty when nothing smaller is left.
    """
    cpu = torch.device("cpu")
    steps: list[tuple[int, torch.device]] = []
    half = halve(tile)
    if half is not None:
        steps.append((half, device))
    if device.type != "cpu":
        on_cpu = half if half is not None else tile
        steps.append((on_cpu, cpu))
        quarter = halve(on_cpu)
        if quarter is not None:
            steps.append((quarter, cpu))
    return steps


def out_of_memory_message(
    tile: int, device: torch.device, found: str, next_step: tuple[int, torch.device] | None
) -> str:
    """What happened and what is tried next, for the user."""
    what = f"out of memory on {device.type} with {tile}-pixel tiles"
    if next_step is None:
        return f"{what}, the last fallback; free some memory or ask for a smaller tile ({found})"
    new_tile, new_device = next_step
    if new_device != device:
        return f"{what}; retrying on the CPU with {new_tile}-pixel tiles (slower)"
    return f"{what}; retrying with {new_tile}-pixel tiles"


def release_cached_memory(device: torch.device) -> None:
    """Give the memory torch keeps cached on ``device`` back, so a retry can use it."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()

