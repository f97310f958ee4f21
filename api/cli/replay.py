"""`heddle replay`, `heddle runs diff|export|import|fork|edit`: replay to debug, from the
command line.

The commands call the replay routes of a running Heddle (see `api/http/replay.py`); the
`format_*` functions turn their answers into the lines people read, and are plain
functions so that they can be tested without a server. `register` adds the commands to
the CLI's typer apps (`api/cli/main.py` calls it once).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from api.cli.client import (
    RUN_FAILED,
    JsonOption,
    call,
    decided,
    err,
    fail,
    out,
    parse_inputs,
    print_json,
)
from api.cli.client import follow as follow_run

MARK = "▶"


def register(app: typer.Typer, runs_app: typer.Typer) -> None:
    """Add `replay` to `app` and `diff`, `export`, `import` to `runs_app`."""
    app.command("replay")(replay)
    runs_app.command("diff")(runs_diff)
    runs_app.command("export")(runs_export)
    runs_app.command("import")(runs_import)
    runs_app.command("fork")(runs_fork)
    runs_app.command("edit")(runs_edit)


def replay(
    run_id: str,
    at: Annotated[int | None, typer.Option(help="After the run's Nth event (its version)")] = None,
    at_node: Annotated[str | None, typer.Option(help="Right after this node ended")] = None,
    at_position: Annotated[int | None, typer.Option(help="At a global store position")] = None,
    as_json: JsonOption = False,
) -> None:
    """Show a run as it stood after one of its events: timeline, then state (from events)."""
    chosen = {"at": at, "at_node": at_node, "at_position": at_position}
    params = {k: v for k, v in chosen.items() if v is not None}
    if len(params) > 1:
        fail("give one of --at, --at-node and --at-position")
    view = call("GET", f"/v1/runs/{run_id}/state", params=params)
    if as_json:
        print_json(view)
        return
    for line in format_replay(view):
        typer.echo(line)


def runs_diff(a: str, b: str, as_json: JsonOption = False) -> None:
    """Compare two runs node by node: status, request, output, tokens, cost, latency."""
    diff = call("GET", "/v1/runs/diff", params={"a": a, "b": b})
    if as_json:
        print_json(diff)
        return
    for line in format_diff(diff):
        typer.echo(line)


def runs_export(
    run_id: str,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file (default: stdout)")
    ] = None,
) -> None:
    """Write a run's history (its events, with a header) as JSON; see docs/replay.md."""
    history = call("GET", f"/v1/runs/{run_id}/export")
    text = json.dumps(history, indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
        return
    output.write_text(text)
    err.print(f"wrote {history['event_count']} events of run {run_id} to {output}")


def runs_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    keep_id: Annotated[bool, typer.Option(help="Keep the history's run id")] = False,
    as_json: JsonOption = False,
) -> None:
    """Load an exported history as a new run of your tenant; refused if it does not replay."""
    try:
        document = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        fail(f"{file}: not JSON: {error}")
    result = call("POST", "/v1/runs/import", json=document, params={"keep_id": keep_id})
    if as_json:
        print_json(result)
    else:
        out.print(
            f"imported run {result['imported_from']} as {result['run_id']} "
            f"({result['status']}, {result['events']} events)"
        )


def runs_fork(
    run_id: str,
    from_node: Annotated[str, typer.Option(help="The node to run again (it must have started)")],
    set_: Annotated[
        list[str],
        typer.Option("--set", help="var=value before the node runs (JSON values allowed)"),
    ] = [],  # noqa: B006
    prompt: Annotated[list[str], typer.Option(help="NODE=TEXT: a new prompt template")] = [],  # noqa: B006
    model: Annotated[list[str], typer.Option(help="NODE=provider:model")] = [],  # noqa: B006
    recorded: Annotated[
        bool, typer.Option(help="Re-serve recorded answers to unchanged llm requests")
    ] = False,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Show progress until it ends")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Fork a run from a node: reuse what finished before it, run live from it on."""
    body = {
        "from_node": from_node,
        "mode": "recorded" if recorded else "live",
        "variables": parse_inputs(set_, None),
        "prompts": _assignments("--prompt", prompt),
        "models": _assignments("--model", model),
    }
    sent = call("POST", f"/v1/runs/{run_id}/fork", json=body)
    outcome = decided(sent["command_id"])
    if not follow:
        if as_json:
            print_json(outcome["result"])
        else:
            result = outcome["result"]
            reused = ", ".join(result["reused"]) or "nothing"
            out.print(f"fork {result['run_id']} of {run_id} from {from_node}; reused {reused}")
        return
    final = follow_run(sent["run_id"], sent["command_id"], quiet=as_json)
    if as_json:
        print_json(final)
    if final["status"] != "completed":
        raise typer.Exit(RUN_FAILED)


def runs_edit(
    run_id: str,
    file: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, readable=True, help="YAML or JSON: a list of edits"
        ),
    ],
    reason: Annotated[str, typer.Option(help="Why; shown in the run's timeline")],
    as_json: JsonOption = False,
) -> None:
    """Edit a running run's graph (every edit or none); see docs/replay.md for the edits."""
    try:
        edits = yaml.safe_load(file.read_text())
    except yaml.YAMLError as error:
        fail(f"{file}: not YAML or JSON: {error}")
    sent = call("POST", f"/v1/runs/{run_id}/edits", json={"edits": edits, "reason": reason})
    outcome = decided(sent["command_id"])
    if as_json:
        print_json(outcome["result"])
    else:
        started = ", ".join(outcome["result"]["started"]) or "nothing new"
        out.print(f"edited run {run_id}; started {started}")


def _assignments(option: str, pairs: list[str]) -> dict[str, str]:
    values = {}
    for pair in pairs:
        node, sep, value = pair.partition("=")
        if not sep or not node:
            fail(f"{option} {pair!r}: write NODE=VALUE")
        values[node] = value
    return values


# Formatting


def format_replay(view: dict[str, Any]) -> list[str]:
    """The timeline (one line per event, the chosen point marked, later events after a
    rule) and then the run's state at that point."""
    at, state = view["at"], view["state"]
    lines = [
        f"run {view['run_id']}  {state['workflow']} v{state['workflow_version']}  "
        f"at event {at['version']} of {view['last_version']}",
        "",
    ]
    for entry in view["timeline"]:
        if entry["after"] and entry["version"] == at["version"] + 1:
            lines.append("     ---- not yet happened at this point ----")
        mark = MARK if entry["current"] else " "
        lines.append(
            f"{mark} {entry['version']:>3}  {_clock(entry['timestamp'])}  "
            f"{entry['type']:<20} {entry['summary']}"
        )
    lines += ["", f"state after event {at['version']}: {state['status']}"]
    width = max((len(n) for n in state["nodes"]), default=4)
    for node_id, node in state["nodes"].items():
        line = f"  {node_id:<{width}}  {node['status']:<9}"
        if node.get("output") is not None:
            line += f"  {_short(node['output'])}"
        if node.get("error"):
            line += f"  {node['error'].get('message')}"
        lines.append(line.rstrip())
    usage = state["usage"]
    lines.append(f"variables: {json.dumps(state['variables'])}")
    lines.append(
        f"usage: {usage['llm_calls']} model calls, {usage['input_tokens']} in, "
        f"{usage['output_tokens']} out, ${usage['cost_usd']:.6f}"
    )
    if state.get("output") is not None:
        lines.append(f"output: {json.dumps(state['output'])}")
    if state.get("error"):
        lines.append(f"error: {json.dumps(state['error'])}")
    return lines


def format_diff(diff: dict[str, Any]) -> list[str]:
    """A verdict with the first divergent node, one block per node (what differs, A then
    B), and the run-level differences."""
    first = diff["first_divergence"]
    verdict = "the same" if diff["same"] else "different"
    lines = [f"A {diff['a']}", f"B {diff['b']}", f"runs are {verdict}"]
    if first:
        lines[-1] += f"; first divergence at {first['node']} ({', '.join(first['differs'])})"
    lines.append("")
    for node_id, node in diff["nodes"].items():
        a, b = node["a"] or {}, node["b"] or {}
        status = f"{a.get('status', '(absent)')} / {b.get('status', '(absent)')}"
        lines.append(f"{'=' if node['same'] else '≠'} {node_id}: {status}")
        for field in node["differs"]:
            if field == "status":
                continue
            lines.append(f"    {field}:")
            lines.append(f"      A: {_field(field, a.get(field))}")
            lines.append(f"      B: {_field(field, b.get(field))}")
        if a.get("llm_calls") or b.get("llm_calls"):
            lines.append(
                f"    model: {a.get('model')} / {b.get('model')}; latency "
                f"{_ms(a.get('model_latency_ms'))} / {_ms(b.get('model_latency_ms'))}"
            )
    run = diff["run"]
    changed = [f for f, v in run.items() if not v["same"]]
    summary = "differs in " + ", ".join(changed) if changed else "no differences"
    lines += ["", f"run: {summary}"]
    for field in changed:
        if field == "variables":
            variables = run["variables"]
            for name, pair in variables["changed"].items():
                lines.append(f"  vars.{name}: {_short(pair['a'])} / {_short(pair['b'])}")
            for name, value in variables["only_a"].items():
                lines.append(f"  vars.{name}: {_short(value)} / (unset)")
            for name, value in variables["only_b"].items():
                lines.append(f"  vars.{name}: (unset) / {_short(value)}")
        else:
            lines.append(f"  {field}: {_short(run[field]['a'])} / {_short(run[field]['b'])}")
    return lines


def _field(name: str, value: Any) -> str:
    if name == "input" and isinstance(value, dict) and "messages" in value:
        prompt = value["messages"][-1]["content"] if value["messages"] else ""
        return f"{value.get('model')}: {_short(prompt)}"
    if name == "tokens" and isinstance(value, dict):
        return f"{value['input']} in, {value['output']} out, {value['cached']} cached"
    if name == "error" and isinstance(value, dict):
        return str(value.get("message"))
    return _short(value)


def _short(value: Any, limit: int = 100) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _clock(timestamp: str) -> str:
    """HH:MM:SS.mmm of an ISO timestamp: the date is the same for almost every run."""
    time_part = timestamp.partition("T")[2]
    return time_part[:12].ljust(12)
