"""How a Heddle process writes its log (infra/logs.py), in a process of its own each (the
configuration is the process's): JSON lines by default in `heddle serve`, console lines
with `HEDDLE_LOG_FORMAT=console`, the level from `HEDDLE_LOG_LEVEL`, and a traceback
that shows no frame's variables."""

from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = """
import logging
from infra.logs import configure

configure("json", "INFO")
logging.getLogger("aiokafka.consumer").info("Setting newly assigned partitions %s", {1})
logging.getLogger("heddle").warning("calling %s for run %s", "m", "r", extra={"run_id": "r"})
def call(api_key):
    raise RuntimeError("the provider said no")
try:
    call("sk-canary-local")
except RuntimeError:
    logging.getLogger("heddle").exception("work failed")
"""


def logged(**environ: str) -> list[str]:
    """The stderr lines of a process that configures the log as `heddle serve` does."""
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={**os.environ, **environ},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stderr.splitlines()


def test_every_line_is_json_with_the_stdlib_records_and_their_fields() -> None:
    entries = [json.loads(line) for line in logged()]
    assert [(e["logger"], e["level"], e["event"]) for e in entries] == [
        ("aiokafka.consumer", "info", "Setting newly assigned partitions {1}"),
        ("heddle", "warning", "calling m for run r"),
        ("heddle", "error", "work failed"),
    ]
    assert entries[1]["run_id"] == "r"
    assert "RuntimeError: the provider said no" in entries[2]["exception"]
    assert "sk-canary-local" not in json.dumps(entries)  # no frame's variables


def test_the_format_and_the_level_are_chosen_by_the_environment() -> None:
    lines = logged(HEDDLE_LOG_FORMAT="console", HEDDLE_LOG_LEVEL="warning")
    assert "calling m for run r" in lines[0]
    assert "run_id=r" in lines[0]
    assert not lines[0].startswith("{")
    assert not any("Setting newly assigned partitions" in line for line in lines)
    assert "sk-canary-local" not in "\n".join(lines)
