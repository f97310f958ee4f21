"""`heddle run` and `heddle runs list|show`: start a run (and follow it), list runs, show
one (the other `runs` commands are registered by the modules of their group)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from api.cli.client import JsonOption, call, out, parse_inputs, print_json
from api.cli.client import follow as follow_run

runs_app = typer.Typer(help="List and inspect runs.", no_args_is_help=True)


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
    as_json: JsonOption = False,
) -> None:
    """Start a run; with --follow, exit non-zero when it fails."""
    body: dict[str, Any] = {"workflow": workflow, "input": parse_inputs(input, input_file)}
    if version:
        body["version"] = version
    started = call("POST", "/v1/runs", json=body)
    run_id, command_id = started["run_id"], started["command_id"]
    if not follow:
        if as_json:
            print_json(started)
        else:
            out.print(f"run {run_id} requested (command {command_id})")
        return
    final = follow_run(run_id, command_id, quiet=as_json)
    if as_json:
        print_json(final)
    if final["status"] != "completed":
        raise typer.Exit(1)


@runs_app.command("list")
def runs_list(
    status: Annotated[str | None, typer.Option(help="Only runs with this status")] = None,
    workflow: Annotated[str | None, typer.Option(help="Only runs of this workflow")] = None,
    parent: Annotated[str | None, typer.Option(help="Only the child runs of this run")] = None,
    limit: int = 50,
    as_json: JsonOption = False,
) -> None:
    """List runs, newest first."""
    wanted = {"status": status, "workflow": workflow, "parent": parent, "limit": limit}
    params = {k: v for k, v in wanted.items() if v}
    items = call("GET", "/v1/runs", params=params)["items"]
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
