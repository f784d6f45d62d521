"""What the speed and memory benchmarks share: the machine line of a report, and writing the report's two files."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path


def machine() -> str:
    """"x86_64, 2 cores": the architecture and the cores this process may run on."""
    return f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores"


def write_report(output: Path | None, report: dict, table: str) -> None:
    """``report`` as JSON at ``output`` and its markdown ``table`` beside it (``.md``); nothing when no output."""
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2) + "\n")
        output.with_suffix(".md").write_text(table + "\n")
