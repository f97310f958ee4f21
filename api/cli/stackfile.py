"""Where a running `heddle up` can be reached: it writes `stack.json` (and its admin key,
`admin.key`) to the data directory, and the CLI reads them to find its API and database."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

STACK_FILE = "stack.json"
ADMIN_KEY_FILE = "admin.key"


@dataclass
class Stack:
    """Where the running stack can be reached."""

    database_url: str
    bootstrap_servers: str
    api_url: str


def read_stack(data_dir: Path) -> Stack | None:
    """The stack a running `heddle up` wrote down, if any."""
    path = data_dir / STACK_FILE
    if not path.exists():
        return None
    return Stack(**json.loads(path.read_text()))


def write_stack(data_dir: Path, stack: Stack) -> Path:
    """Write the stack down for the CLI to find; returns the file (remove it on exit)."""
    path = data_dir / STACK_FILE
    path.write_text(json.dumps(asdict(stack)))
    return path
