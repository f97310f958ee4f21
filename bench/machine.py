"""The machine line every benchmark prints (standard library only: the peers' venv runs
it too, without Heddle)."""

from __future__ import annotations

import os
import platform
from contextlib import suppress
from pathlib import Path


def machine() -> str:
    """The machine a benchmark ran on, as its first line says it."""
    cpus = os.cpu_count()
    memory = ""
    with suppress(OSError, StopIteration):
        total = next(
            line for line in Path("/proc/meminfo").read_text().splitlines() if "MemTotal" in line
        )
        memory = f", {int(total.split()[1]) / 1024 / 1024:.0f} GiB"
    model = ""
    with suppress(OSError, StopIteration):
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    system = f"{platform.system()} {platform.machine()}"
    return f"{system}, {cpus} CPUs{memory} ({model}), Python {platform.python_version()}"
