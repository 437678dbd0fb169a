"""What a benchmark keeps of a run: its measurements, the machine, the load on it and the command, as JSON.

The docs quote these files, and each script's ``--table`` prints the docs' tables from them::

    facts = started(args)            # when the run starts: date, machine, load average before
    ...                              # measure
    save(args.results, facts, results)   # load average after; the file is written
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
DATE = "%Y-%m-%d %H:%M"


def options(parser: argparse.ArgumentParser, name: str) -> None:
    """``--results`` (default ``benchmarks/results/<name>.json``) and ``--table``."""
    parser.add_argument("--results", type=Path, default=RESULTS / f"{name}.json",
                        help=f"the results file (default benchmarks/results/{name}.json)")
    parser.add_argument("--table", action="store_true", help="print the tables of the saved results and stop")


def cpu() -> str:
    """The CPU's model name (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load() -> list[float]:
    """The load average over 1, 5 and 15 minutes."""
    return [round(x, 2) for x in os.getloadavg()]


def started(args: argparse.Namespace) -> dict:
    """The facts a measurement needs beside it, taken as the run starts."""
    import torch

    return {
        "date_utc": datetime.now(timezone.utc).strftime(DATE),
        "platform": platform.platform(), "cpu": cpu(), "cores": os.cpu_count(),
        "python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "command": " ".join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]]),
        "args": {k: _relative(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "load_before": load(),
    }


def _relative(path: Path) -> str:
    """A path inside the repository as it is written there (``benchmarks/results/...``), others as they are."""
    try:
        return str(path.resolve().relative_to(RESULTS.parents[1]))
    except ValueError:
        return str(path)


def save(path: Path, facts: dict, results: dict, key: str | None = None) -> dict:
    """Write ``{"run": facts + load after + minutes, "results": results}`` to ``path``.

    With ``key``, the record is one entry of ``{"runs": {key: record}}``, next to those of other settings
    already in the file.
    """
    took = datetime.now(timezone.utc) - datetime.strptime(facts["date_utc"], DATE).replace(tzinfo=timezone.utc)
    record = {"run": {**facts, "load_after": load(), "minutes": round(took.total_seconds() / 60)}, "results": results}
    if key is not None:
        saved = json.loads(path.read_text()) if path.is_file() else {"runs": {}}
        saved["runs"][key] = record
        record = saved
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    return record


def heading(record: dict) -> str:
    """One line about a saved run: when, where, how busy the machine was, and the command."""
    r = record["run"]
    return (f"{r['date_utc']} UTC, {r['cpu']} ({r['cores']} cores), torch {r['torch']}, {r['threads']} threads; "
            f"load average {r['load_before'][0]:.1f} before, {r['load_after'][0]:.1f} after "
            f"({r['minutes']} min); `{r['command']}`")
