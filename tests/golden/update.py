"""Rebuild golden histories with the current code, and (deliberately) rewrite their
expected states: `python -m tests.golden.update --update NAME...` (or `--all`).

Without `--update` it only reports which histories no longer rebuild to their expected
state, like `tests/unit/test_golden_histories.py`. See tests/golden/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.application import Application

from handlers.replay import import_history, load_run, run_state

GOLDEN = Path(__file__).resolve().parent
HISTORY_SUFFIX = ".history.json"
STATE_SUFFIX = ".state.json"


def histories() -> list[Path]:
    """Every history kept here, by name."""
    return sorted(GOLDEN.glob(f"*{HISTORY_SUFFIX}"))


def name_of(history: Path) -> str:
    return history.name.removesuffix(HISTORY_SUFFIX)


def expected_path(history: Path) -> Path:
    return history.with_name(name_of(history) + STATE_SUFFIX)


def rebuild_state(history: dict[str, Any]) -> dict[str, Any]:
    """The run's final state after loading its history into an in-memory store with the
    current domain code, as JSON would carry it."""
    app: Application[UUID] = Application(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    try:
        run_id = UUID(history["run_id"])
        import_history(history, app, run_id, allow_unfinished=True)
        state = run_state(load_run(app, run_id))
    finally:
        app.close()
    return json.loads(json.dumps(state))  # type: ignore[no-any-return]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.golden.update", description=__doc__)
    parser.add_argument(
        "names",
        nargs="*",
        help=f"histories to check or update (file names without {HISTORY_SUFFIX})",
    )
    parser.add_argument("--all", action="store_true", help="every history in tests/golden/")
    parser.add_argument(
        "--update", action="store_true", help="write the rebuilt state as the expected state"
    )
    args = parser.parse_args(argv)
    known = {name_of(h): h for h in histories()}
    unknown = [n for n in args.names if n not in known]
    if unknown or not (args.names or args.all):
        parser.error(
            f"name histories ({', '.join(known)}) or pass --all"
            + (f"; unknown: {', '.join(unknown)}" if unknown else "")
        )
    chosen = list(known.values()) if args.all else [known[n] for n in args.names]
    stale = 0
    for history in chosen:
        state = rebuild_state(json.loads(history.read_text()))
        target = expected_path(history)
        current = json.loads(target.read_text()) if target.exists() else None
        if args.update:
            target.write_text(json.dumps(state, indent=2, ensure_ascii=False) + "\n")
            verb = "unchanged" if state == current else "written"
            print(f"{name_of(history)}: expected state {verb} ({target.name})")
        elif state != current:
            stale += 1
            print(f"{name_of(history)}: rebuilds to a different state than {target.name}")
        else:
            print(f"{name_of(history)}: ok")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
