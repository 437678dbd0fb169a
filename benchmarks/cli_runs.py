"""Shared by the benchmark scripts: run ``napari-unet`` commands side by side and put results in the docs."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import torch


def start(args: list[str], log: Path, *, threads: int) -> subprocess.Popen:
    """Start ``napari-unet ARGS`` with ``threads`` CPU threads, stderr and stdout to ``log``."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    with open(log, "w") as f:
        command = [sys.executable, "-m", "napari_unet.cli", *args]
        return subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT, env=env)


def run_together(commands: dict[str, list[str]], logs: Path, *, threads: int) -> None:
    """Run the commands at the same time (so they share the machine's load alike); raise if one fails."""
    running = {name: start(args, logs / f"{name}.log", threads=threads) for name, args in commands.items()}
    failed = [name for name, p in running.items() if p.wait() != 0]
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}; see the logs in {logs}")


def no_validation_settings(folder: Path) -> Path:
    """A training-settings file that holds out nothing: the benchmark's own test images are the check,
    and validation passes would cost the networks unequal parts of the time budget."""
    path = folder / "train_settings.json"
    path.write_text('{"val_fraction": 0}\n')
    return path


def machine() -> str:
    """One line about where this ran."""
    cpu = platform.processor() or platform.machine()
    model = ""
    try:
        found = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        model = found.group(1).strip() if found else ""
    except OSError:
        pass
    return f"{os.cpu_count()} CPU cores ({model or cpu}), torch {torch.__version__}, Python {platform.python_version()}"


def replace_section(doc: Path, name: str, text: str) -> None:
    """Put ``text`` between ``<!-- name -->`` and ``<!-- /name -->`` in ``doc`` (appended when missing)."""
    begin, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    block = f"{begin}\n{text.rstrip()}\n{end}"
    current = doc.read_text() if doc.exists() else ""
    if begin in current and end in current:
        head, rest = current.split(begin, 1)
        updated = head + block + rest.split(end, 1)[1]
    else:
        updated = current.rstrip() + ("\n\n" if current else "") + block + "\n"
    doc.write_text(updated)


def fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
