"""`heddle tasks list|complete|reassign` and `heddle runs pause|resume|cancel|set`: people
in a run, from the command line (through the routes of `api/http/tasks.py` and
`api/http/runs.py`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from api.cli.client import (
    AllOption,
    CursorOption,
    JsonOption,
    LimitOption,
    call,
    decided,
    fail,
    listed,
    out,
    parse_inputs,
    print_items,
)

tasks_app = typer.Typer(
    help="Work on tasks for people: list, complete, reassign.", no_args_is_help=True
)


def register(app: typer.Typer, runs_app: typer.Typer) -> None:
    """Add `tasks` to `app` and `pause`, `resume`, `cancel`, `set` to `runs_app`."""
    app.add_typer(tasks_app, name="tasks")
    for control in ("pause", "resume", "cancel"):
        runs_app.command(control, help=f"{control.capitalize()} a run.")(_steer(control))
    runs_app.command("set")(runs_set)


def runs_set(
    run_id: str,
    variables: Annotated[list[str], typer.Argument(help="name=value (JSON values allowed)")],
    reason: Annotated[str, typer.Option(help="Why (kept in the run)")] = "",
) -> None:
    """Set variables of a run (SetVariables); edges waiting for a condition over them
    are checked again."""
    values: dict[str, Any] = {}
    for pair in variables:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            fail(f"{pair!r}: write name=value")
        values[name] = _json_or_text(raw)
    body = {"variables": values, "reason": reason}
    sent = call("POST", f"/v1/runs/{run_id}/variables", json=body)
    outcome = decided(sent["command_id"])
    out.print(f"run {run_id} is {outcome['result']['status']}")


def _json_or_text(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


@tasks_app.command("list")
def tasks_list(
    assignee: Annotated[str | None, typer.Option(help="Only tasks given to this person")] = None,
    role: Annotated[str | None, typer.Option(help="Only tasks for this role")] = None,
    status: Annotated[str, typer.Option(help="open, completed or cancelled")] = "open",
    limit: LimitOption = 50,
    cursor: CursorOption = None,
    every: AllOption = False,
    as_json: JsonOption = False,
) -> None:
    """The work queue: open tasks, most urgent first (see docs/workflows.md#human-ask-a-person),
    a page at a time (the next page's cursor on stderr)."""
    params = {"assignee": assignee, "role": role, "status": status, "limit": limit}
    items = listed("heddle tasks list", "/v1/tasks", params, cursor, every)
    print_items(
        items,
        as_json,
        {
            "run": "run_id",
            "task": "task_id",
            "type": "type",
            "title": "title",
            "assignee": "assignee",
            "role": "role",
            "priority": "priority",
            "due": "due_at",
            "score": "score",
        },
    )


@tasks_app.command("complete")
def tasks_complete(
    run_id: str,
    task: Annotated[str, typer.Argument(help="The task: its node id, or budget")],
    approve: Annotated[bool, typer.Option("--approve", help="Approve (an approval task)")] = False,
    reject: Annotated[bool, typer.Option("--reject", help="Reject (an approval task)")] = False,
    input: Annotated[
        list[str], typer.Option("--input", "-i", help="key=value (an input task)")
    ] = [],  # noqa: B006
    input_file: Annotated[
        Path | None, typer.Option(help="YAML or JSON file with the input")
    ] = None,
    comment: Annotated[str, typer.Option(help="Kept with the decision")] = "",
) -> None:
    """Complete a task; the run goes on. Exits 3 when the task refuses it (and says why)."""
    if approve and reject:
        fail("give --approve or --reject, not both")
    body: dict[str, Any] = {"comment": comment}
    if approve or reject:
        body["decision"] = "approve" if approve else "reject"
    if input or input_file:
        body["input"] = parse_inputs(input, input_file)
    sent = call("POST", f"/v1/runs/{run_id}/tasks/{task}/complete", json=body)
    outcome = decided(sent["command_id"])
    out.print(f"task {task} of run {run_id} completed; the run is {outcome['result']['status']}")


@tasks_app.command("reassign")
def tasks_reassign(
    run_id: str,
    task: str,
    assignee: Annotated[str | None, typer.Option(help="Give it to this person")] = None,
    role: Annotated[str | None, typer.Option(help="Give it to this role")] = None,
    priority: Annotated[int | None, typer.Option(help="New priority, 0 to 100")] = None,
    reason: Annotated[str, typer.Option(help="Why")] = "",
) -> None:
    """Reassign a task, or escalate it (a higher --priority, another --role)."""
    body = {"assignee": assignee, "role": role, "priority": priority, "reason": reason}
    sent = call(
        "POST",
        f"/v1/runs/{run_id}/tasks/{task}/reassign",
        json={k: v for k, v in body.items() if v is not None},
    )
    decided(sent["command_id"])
    out.print(f"task {task} of run {run_id} reassigned")


def _steer(control: str) -> Any:
    def steer(
        run_id: str, reason: Annotated[str, typer.Option(help="Why (kept in the run)")] = ""
    ) -> None:
        body = {"reason": reason} if reason and control != "resume" else {}
        sent = call("POST", f"/v1/runs/{run_id}/{control}", json=body)
        outcome = decided(sent["command_id"])
        out.print(f"run {run_id} is {outcome['result']['status']}")

    return steer
