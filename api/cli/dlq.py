"""`heddle dlq list|show|replay`: what went to the dead-letter topic, why, and publishing it
again once fixed (through the routes of `api/http/dead_letters.py`, an admin key)."""

from __future__ import annotations

from typing import Annotated

import typer

from api.cli.client import USAGE, JsonOption, call, fail, out, print_items, print_json

dlq_app = typer.Typer(help="Dead letters: list them, show one, replay them.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add `dlq` to `app`."""
    app.add_typer(dlq_app, name="dlq")


@dlq_app.command("list")
def dlq_list(as_json: JsonOption = False) -> None:
    """The tenant's dead letters, oldest first, with where each came from and why."""
    letters = call("GET", "/v1/dead-letters")["dead_letters"]
    for letter in letters:
        letter["at"] = f"{letter['partition']}@{letter['offset']}"
        letter["from"] = (
            f"{letter['topic']}:{letter['original_partition']}@{letter['original_offset']}"
        )
    if not letters and not as_json:
        out.print("no dead letters")
        return
    columns = {"at": "at", "from": "from", "type": "type", "error": "error"}
    print_items(letters, as_json, columns)


@dlq_app.command("show")
def dlq_show(at: Annotated[str, typer.Argument(help="PARTITION@OFFSET, as `list` shows")]) -> None:
    """One dead letter as JSON: its headers, its value, its error."""
    partition, offset = _position(at)
    print_json(call("GET", f"/v1/dead-letters/{partition}/{offset}"))


@dlq_app.command("replay")
def dlq_replay(
    at: Annotated[list[str] | None, typer.Argument(help="PARTITION@OFFSET ...")] = None,
    every: Annotated[bool, typer.Option("--all", help="Replay every dead letter")] = False,
) -> None:
    """Publish dead letters again to the topics they came from (a command is decided once
    per command id, an event is a hint: replaying twice does no harm)."""
    if not at and not every:
        fail("name the dead letters (PARTITION@OFFSET ...) or give --all", code=USAGE)
    entries = [
        dict(zip(("partition", "offset"), _position(item), strict=True)) for item in at or []
    ]
    body = {"all": True} if every else {"entries": entries}
    replayed = call("POST", "/v1/dead-letters/replay", json=body)["replayed"]
    out.print(f"replayed {replayed} dead letter{'s' if replayed != 1 else ''}")


def _position(at: str) -> tuple[int, int]:
    partition, sep, offset = at.partition("@")
    if not sep or not partition.isdigit() or not offset.isdigit():
        fail(f"{at!r}: write PARTITION@OFFSET, e.g. 0@12", code=USAGE)
    return int(partition), int(offset)
