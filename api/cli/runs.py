"""`heddle run` and `heddle runs list|show`: start a run (and follow it), list runs, show
one (the other `runs` commands are registered by the modules of their group)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from api.cli.client import (
    RUN_FAILED,
    AllOption,
    CursorOption,
    JsonOption,
    LimitOption,
    awaited,
    call,
    err,
    listed,
    out,
    parse_inputs,
    print_json,
)
from api.cli.client import follow as follow_run

runs_app = typer.Typer(help="List and inspect runs.", no_args_is_help=True)
WAIT_SECONDS = 10.0
"""How long `heddle run` waits for the intake to decide (`--no-wait` does not)."""


def register(app: typer.Typer) -> None:
    """Add `run` to `app`."""
    app.command()(run)


def run(
    workflow: str,
    input: Annotated[
        list[str], typer.Option("--input", "-i", help="key=value (JSON values allowed)")
    ] = [],  # noqa: B006
    input_file: Annotated[
        Path | None, typer.Option(help="YAML or JSON file with the input")
    ] = None,
    version: Annotated[int | None, typer.Option(help="Pin a version (default: latest)")] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Show progress until the run ends")
    ] = False,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Do not wait for the intake to accept the run")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Start a run: wait (up to 10 s) until it is accepted, and exit 3 with the reason when
    it is rejected (a workflow that does not exist, an input that does not match); with
    --follow, show it to its end and exit 4 when it fails."""
    body: dict[str, Any] = {"workflow": workflow, "input": parse_inputs(input, input_file)}
    if version:
        body["version"] = version
    started = call("POST", "/v1/runs", json=body)
    run_id, command_id = started["run_id"], started["command_id"]
    if not follow:
        accepted = None if no_wait else awaited(command_id, WAIT_SECONDS)
        if as_json:
            print_json({**started, "status": accepted["status"]} if accepted else started)
        elif accepted:
            out.print(f"run {run_id} started (command {command_id})")
        else:
            out.print(f"run {run_id} requested (command {command_id})")
        if not accepted and not no_wait:
            err.print(f"not decided within {WAIT_SECONDS:.0f} s: see `heddle runs show {run_id}`")
        return
    final = follow_run(run_id, command_id, quiet=as_json)
    if as_json:
        print_json(final)
    if final["status"] != "completed":
        raise typer.Exit(RUN_FAILED)


@runs_app.command("list")
def runs_list(
    status: Annotated[str | None, typer.Option(help="Only runs with this status")] = None,
    workflow: Annotated[str | None, typer.Option(help="Only runs of this workflow")] = None,
    parent: Annotated[str | None, typer.Option(help="Only the child runs of this run")] = None,
    customer: Annotated[str | None, typer.Option(help="Only the runs for this customer")] = None,
    assignee: Annotated[str | None, typer.Option(help="Only the runs of this person")] = None,
    limit: LimitOption = 50,
    cursor: CursorOption = None,
    every: AllOption = False,
    as_json: JsonOption = False,
) -> None:
    """List runs, newest first, a page at a time (the next page's cursor on stderr)."""
    wanted = {"status": status, "workflow": workflow, "parent": parent, "limit": limit,
              "customer_id": customer, "assignee": assignee}  # fmt: skip
    items = listed("heddle runs list", "/v1/runs", wanted, cursor, every)
    if as_json:
        print_json(items)
        return
    table = Table("run", "workflow", "status", "started", "tokens")
    for item in items:
        usage = item["usage"]
        tokens = usage["input_tokens"] + usage["output_tokens"]
        table.add_row(
            item["run_id"],
            f"{item['workflow']} v{item['workflow_version']}",
            item["status"],
            item["started_at"],
            str(tokens),
        )
    out.print(table)


@runs_app.command("show")
def runs_show(run_id: str, as_json: JsonOption = False) -> None:
    """Show a run: status, nodes, variables, output, and its timeline."""
    state = call("GET", f"/v1/runs/{run_id}")
    if as_json:
        print_json(state)
        return
    out.print(
        f"run {state['run_id']}  {state['workflow']} v{state['workflow_version']}  "
        f"[bold]{state['status']}[/]"
    )
    nodes = Table("node", "status", "output")
    for node_id, node in state["nodes"].items():
        output = node.get("output")
        shown = "" if output is None else json.dumps(output)[:100]
        if not shown and node.get("child_run_id"):
            shown = f"child run {node['child_run_id']}"
        nodes.add_row(node_id, node["status"], shown)
    out.print(nodes)
    out.print(f"variables: {json.dumps(state['variables'])}")
    if state.get("error"):
        out.print(f"[red]error:[/] {json.dumps(state['error'])}")
    usage = state["usage"]
    unpriced = "" if usage.get("cost_complete", True) else " (at least: a model had no price)"
    out.print(
        f"usage: {usage['llm_calls']} model calls, {usage['input_tokens']} in "
        f"({usage.get('cached_tokens', 0)} cached), {usage['output_tokens']} out, "
        f"${usage['cost_usd']:.6f}{unpriced}"
    )
