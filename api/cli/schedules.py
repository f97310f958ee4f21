"""`heddle schedules create|list|show|pause|resume|delete`: runs started on a cron
expression or at an interval (through the routes of `api/http/schedules.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from api.cli.client import JsonOption, call, decided, out, parse_inputs, print_items, print_json

schedules_app = typer.Typer(
    help="Start runs on a schedule: create, list, show, pause, resume, delete.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(schedules_app, name="schedules")


@schedules_app.command("create")
def schedules_create(
    name: str,
    workflow: Annotated[str, typer.Option(help="The published workflow each tick starts")],
    cron: Annotated[str | None, typer.Option(help="Five cron fields, e.g. '0 9 * * mon'")] = None,
    every: Annotated[str | None, typer.Option(help="An interval: 30s, 15m, 4h, 1d")] = None,
    timezone: Annotated[str, typer.Option(help="The cron expression's time zone")] = "UTC",
    input: Annotated[
        list[str], typer.Option("--input", help="key=value (JSON values allowed)")
    ] = [],  # noqa: B006
    input_file: Annotated[Path | None, typer.Option(help="The input as YAML or JSON")] = None,
    overlap: Annotated[str, typer.Option(help="skip (while the last run goes) or allow")] = "skip",
    catch_up: Annotated[
        str, typer.Option(help="After downtime, ticks missed within this fire")
    ] = "10m",
) -> None:
    """Create a schedule, or change the one of that name (exactly one of --cron, --every)."""
    body = {
        "name": name, "workflow": workflow, "cron": cron, "every": every, "timezone": timezone,
        "input": parse_inputs(input, input_file), "overlap": overlap, "catch_up": catch_up,
    }  # fmt: skip
    sent = call("POST", "/v1/schedules", json={k: v for k, v in body.items() if v is not None})
    decided(sent["command_id"])
    shown = call("GET", f"/v1/schedules/{name}", headers=waiting_for(sent["command_id"]))
    out.print(f"schedule {name} starts {workflow}; next at {shown['next_fire_at']}")


@schedules_app.command("list")
def schedules_list(as_json: JsonOption = False) -> None:
    """The schedules, with their next fire time and what they fired."""
    items = call("GET", "/v1/schedules")["items"]
    for item in items:
        item["rule"] = item["spec"].get("cron") or f"every {item['spec'].get('every')}"
    print_items(items, as_json, {"name": "name", "workflow": "workflow", "rule": "rule",
                                 "status": "status", "next": "next_fire_at",
                                 "fired": "fired", "skipped": "skipped"})  # fmt: skip


@schedules_app.command("show")
def schedules_show(
    name: str, fires: Annotated[int, typer.Option(help="Latest ticks")] = 20
) -> None:
    """A schedule and its latest ticks (each one's run, or why it was skipped), as JSON."""
    print_json(call("GET", f"/v1/schedules/{name}", params={"fires": fires}))


def _control(action: str) -> None:
    def control(name: str) -> None:
        method, path = ("DELETE", f"/v1/schedules/{name}") if action == "delete" else (
            "POST", f"/v1/schedules/{name}/{action}")  # fmt: skip
        outcome = decided(call(method, path)["command_id"])
        out.print(f"schedule {name} is {outcome['result']['status']}")

    control.__doc__ = {"pause": "Pause a schedule (ticks meanwhile do not fire later).",
                       "resume": "Resume a paused schedule from its next tick.",
                       "delete": "Delete a schedule (its runs stay)."}[action]  # fmt: skip
    schedules_app.command(action)(control)


for _action in ("pause", "resume", "delete"):
    _control(_action)


def waiting_for(command_id: str) -> dict[str, str]:
    """Headers of a read that waits until the command is in the read models."""
    return {"X-Heddle-Wait-For-Command": command_id, "X-Heddle-Wait-Timeout": "30"}
