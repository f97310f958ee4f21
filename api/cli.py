"""The `heddle` command line.

Read commands print tables for people, or JSON only on stdout with `--json`. Commands
that talk to a running Heddle use its API at `HEDDLE_API_URL` (default: the one
`heddle up` started), with the key in `HEDDLE_API_KEY` (default: `heddle up`'s admin key).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
import yaml
from httpx_sse import SSEError, connect_sse
from rich.console import Console
from rich.table import Table

from infra.settings import Settings

app = typer.Typer(help="Heddle: durable, replayable LLM workflows.", no_args_is_help=True)
workflows_app = typer.Typer(help="Publish and list workflow definitions.", no_args_is_help=True)
runs_app = typer.Typer(help="List and inspect runs.", no_args_is_help=True)
projections_app = typer.Typer(help="Maintain read models.", no_args_is_help=True)
app.add_typer(workflows_app, name="workflows")
app.add_typer(runs_app, name="runs")
app.add_typer(projections_app, name="projections")
credentials_app = typer.Typer(help="Store provider keys for nodes to name.", no_args_is_help=True)
providers_app = typer.Typer(help="Check the LLM providers.", no_args_is_help=True)
app.add_typer(credentials_app, name="credentials")
app.add_typer(providers_app, name="providers")

out = Console()
err = Console(stderr=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON only, for scripts.")]


def _api_url() -> str:
    if url := os.environ.get("HEDDLE_API_URL"):
        return url.rstrip("/")
    from infra.embedded import read_stack

    stack = read_stack(Settings().data_dir)
    return stack.api_url if stack else f"http://127.0.0.1:{Settings().api_port}"


def _api_key() -> str | None:
    """`HEDDLE_API_KEY`; else the admin key of the running `heddle up`, sent to its API only
    (never to another server that HEDDLE_API_URL names)."""
    if key := os.environ.get("HEDDLE_API_KEY"):
        return key.strip()
    from infra.embedded import ADMIN_KEY_FILE, read_stack

    data_dir = Settings().data_dir
    stack, path = read_stack(data_dir), data_dir / ADMIN_KEY_FILE
    if stack is None or stack.api_url != _api_url() or not path.exists():
        return None
    return path.read_text().strip()


def _client() -> httpx.Client:
    key = _api_key()
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=_api_url(), timeout=30.0, headers=headers)


def _fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def _call(method: str, path: str, **kwargs: Any) -> Any:
    try:
        with _client() as client:
            response = client.request(method, path, **kwargs)
    except httpx.ConnectError:
        _fail(f"cannot reach Heddle at {_api_url()}: start it with `make up` or set HEDDLE_API_URL")
    if response.status_code == 422 and "problems" in response.json():
        for problem in response.json()["problems"]:
            err.print(f"  [red]{problem['path'] or '(document)'}[/red]: {problem['message']}")
        _fail("the definition is invalid")
    if response.status_code >= 400:
        _fail(f"{response.status_code}: {response.json().get('detail', response.text)}")
    return response.json() if response.content else None


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def _print_items(items: list[dict[str, Any]], as_json: bool, columns: dict[str, str]) -> None:
    """A list as JSON, or as a table of `columns` (header: field)."""
    if as_json:
        _print_json(items)
        return
    table = Table(*columns)
    for item in items:
        table.add_row(*(str(item[field]) for field in columns.values()))
    out.print(table)


@app.command()
def up() -> None:
    """Start the embedded stack: PostgreSQL, a Kafka broker, every role, the API."""
    from infra.embedded import run_up

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    try:
        asyncio.run(run_up(Settings()))
    except KeyboardInterrupt:
        pass
    err.print("Heddle stopped.")


@app.command()
def serve(
    role: Annotated[list[str], typer.Option(help="intake, relay, worker, projector, timers")] = [],  # noqa: B006
    api: Annotated[bool, typer.Option(help="Serve the HTTP API too.")] = True,
) -> None:
    """Run roles against existing PostgreSQL and Kafka (DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS)."""
    from infra.serve import serve as run_serve

    settings = Settings()
    if not settings.database_url or not settings.kafka_bootstrap_servers:
        _fail("set DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS (or use `heddle up`)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        asyncio.run(run_serve(settings, role or None, api))
    except KeyboardInterrupt:
        pass


@app.command()
def migrate() -> None:
    """Create the event store and read-model tables (safe to repeat)."""
    from infra.bootstrap import create_schema

    settings = Settings()
    create_schema(settings, _database_url(settings))
    err.print("schema is up to date")


@workflows_app.command("apply")
def workflows_apply(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    as_json: JsonOption = False,
) -> None:
    """Publish a workflow definition (YAML or JSON) as a new version."""
    try:
        document = yaml.safe_load(file.read_text())
    except yaml.YAMLError as error:
        _fail(f"{file}: not valid YAML: {error}")
    if not isinstance(document, dict) or "name" not in document:
        _fail(f"{file}: a definition is a mapping with a `name`")
    result = _call("PUT", f"/v1/workflows/{document['name']}", json=document)
    if as_json:
        _print_json(result)
    else:
        out.print(f"published {result['workflow']} v{result['version']} ({result['content_hash'][:19]})")


@workflows_app.command("list")
def workflows_list(as_json: JsonOption = False) -> None:
    """List workflows and their latest versions."""
    _print_items(_call("GET", "/v1/workflows")["items"], as_json, {
        "name": "name", "version": "version", "published by": "published_by",
        "published at": "published_at",
    })


def _parse_inputs(pairs: list[str], input_file: Path | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if input_file:
        loaded = yaml.safe_load(input_file.read_text())
        if not isinstance(loaded, dict):
            _fail(f"{input_file}: the input must be a mapping")
        values.update(loaded)
    for pair in pairs:
        if "=" not in pair:
            _fail(f"--input {pair!r}: write key=value")
        key, raw = pair.split("=", 1)
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    return values


@app.command()
def run(
    workflow: str,
    input: Annotated[list[str], typer.Option("--input", "-i", help="key=value (JSON values allowed)")] = [],  # noqa: B006
    input_file: Annotated[Path | None, typer.Option(help="YAML or JSON file with the input")] = None,
    version: Annotated[int | None, typer.Option(help="Pin a version (default: latest)")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Show progress until the run ends")] = False,
    as_json: JsonOption = False,
) -> None:
    """Start a run; with --follow, exit non-zero when it fails."""
    body: dict[str, Any] = {"workflow": workflow, "input": _parse_inputs(input, input_file)}
    if version:
        body["version"] = version
    started = _call("POST", "/v1/runs", json=body)
    run_id, command_id = started["run_id"], started["command_id"]
    if not follow:
        if as_json:
            _print_json(started)
        else:
            out.print(f"run {run_id} requested (command {command_id})")
        return
    final = _follow(run_id, command_id, quiet=as_json)
    if as_json:
        _print_json(final)
    if final["status"] != "completed":
        raise typer.Exit(1)


def _follow(run_id: str, command_id: str, quiet: bool) -> dict[str, Any]:
    """Wait for the run to start, print its stream (tokens as they arrive) until it ends,
    and return the run as the API shows it once its projection holds the end."""
    with _client() as client:
        while (command := client.get(f"/v1/commands/{command_id}").json())["status"] == "pending":
            time.sleep(0.1)
        if command["status"] == "rejected":
            _fail(f"the run was rejected: {command['reason']}", code=2)
        printer = _StreamPrinter(quiet)
        end = _stream(client, run_id, printer)
        printer.finish_line()
        response = client.get(
            f"/v1/runs/{run_id}",
            headers={"X-Heddle-Wait-For-Position": str(end["position"]),
                     "X-Heddle-Wait-Timeout": "30"},
        )
        if response.status_code != 200:
            _fail(f"{response.status_code}: {response.json().get('detail', response.text)}")
        state: dict[str, Any] = response.json()
        if not quiet:
            _print_outcome(state)
        return state


def _stream(client: httpx.Client, run_id: str, printer: _StreamPrinter) -> dict[str, Any]:
    """Read the run's stream to its `end`, reconnecting where it broke off."""
    last_id: str | None = None
    for _ in range(100):
        headers = {"Last-Event-ID": last_id} if last_id else {}
        try:
            with connect_sse(client, "GET", f"/v1/runs/{run_id}/stream", headers=headers,
                             timeout=httpx.Timeout(30.0, read=None)) as source:
                if source.response.status_code != 200:
                    source.response.read()
                    _fail(f"{source.response.status_code}: {source.response.text}")
                for message in source.iter_sse():
                    last_id = message.id or last_id
                    if not message.data:
                        continue  # a keep-alive ping (httpx-sse reports one as a message)
                    if message.event == "end":
                        return dict(message.json())
                    printer.show(message.event, message.json())
        except (httpx.TransportError, SSEError) as error:
            printer.finish_line()
            err.print(f"[dim]stream interrupted ({type(error).__name__}); resuming[/]")
            time.sleep(1.0)
    _fail(f"lost the stream of run {run_id} too often: see `heddle runs show {run_id}`")


EDGE_NOTES: dict[str, Any] = {
    "RunWaiting": lambda d: "waiting for " + ", ".join(d["edges"]),
    "TransitionBlocked": lambda d: f"{d['source']} -> {d['target']} blocked: {d['reason']}",
    "LoopIterated": lambda d: f"loop {d['source']} -> {d['target']}: iteration {d['iteration']}",
}
"""What a followed run prints for its edges' events (docs/workflows.md, "Edges")."""


class _StreamPrinter:
    """Prints a run's stream: a line per node change, model text as it arrives."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.writing: tuple[str, int, int, int] | None = None  # node, attempt, step, try

    def show(self, kind: str, data: dict[str, Any]) -> None:
        if self.quiet:
            return
        if kind == "token":
            self.token(data)
            return
        event, node = data["type"].removeprefix("WorkflowRun."), data["data"].get("node_id")
        if event == "NodeStarted":
            self.line(node, {"status": "running"})
        elif event == "NodeCompleted":
            self.line(node, {"status": "completed", "output": data["data"]["output"]})
        elif event == "NodeFailed":
            self.line(node, {"status": "failed", "error": data["data"]["error"]})
        elif event == "NodesSkipped":
            for skipped in data["data"]["node_ids"]:
                self.line(skipped, {"status": "skipped"})
        elif event in EDGE_NOTES:
            self.finish_line()
            out.print(f"{'':>9} " + EDGE_NOTES[event](data["data"]), style="dim", markup=False)

    def token(self, delta: dict[str, Any]) -> None:
        writing = (delta["node_id"], delta["attempt"], delta["step"], delta["try"])
        if self.writing != writing:
            self.finish_line()
            if delta["try"] > 1:
                out.print(f"[dim](try {delta['try']} of {delta['node_id']})[/]")
            self.writing = writing
        out.print(delta["text"], end="", markup=False, highlight=False, soft_wrap=True)

    def line(self, node_id: str, node: dict[str, Any]) -> None:
        self.finish_line()
        _print_node(node_id, node)

    def finish_line(self) -> None:
        if self.writing is not None:
            out.print()
            self.writing = None


def _print_node(node_id: str, node: dict[str, Any]) -> None:
    colour = {"running": "yellow", "completed": "green", "failed": "red", "skipped": "dim"}
    line = f"[{colour.get(node['status'], 'white')}]{node['status']:>9}[/] {node_id}"
    if node["status"] == "completed" and isinstance(node.get("output"), str):
        line += f": {node['output'][:120]}"
    if node["status"] == "failed":
        line += f": {node.get('error', {}).get('message')}"
    out.print(line)


def _print_outcome(state: dict[str, Any]) -> None:
    if state["status"] == "completed":
        out.print(f"[green]run completed[/] variables: {json.dumps(state['variables'])}")
    else:
        out.print(f"[red]run {state['status']}[/] {json.dumps(state.get('error'))}")


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
    items = _call("GET", "/v1/runs", params=params)["items"]
    if as_json:
        _print_json(items)
        return
    table = Table("run", "workflow", "status", "started", "tokens")
    for item in items:
        usage = item["usage"]
        tokens = usage["input_tokens"] + usage["output_tokens"]
        table.add_row(item["run_id"], f"{item['workflow']} v{item['workflow_version']}",
                      item["status"], item["started_at"], str(tokens))
    out.print(table)


@runs_app.command("show")
def runs_show(run_id: str, as_json: JsonOption = False) -> None:
    """Show a run: status, nodes, variables, output, and its timeline."""
    state = _call("GET", f"/v1/runs/{run_id}")
    if as_json:
        _print_json(state)
        return
    out.print(f"run {state['run_id']}  {state['workflow']} v{state['workflow_version']}  "
              f"[bold]{state['status']}[/]")
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
    out.print(f"usage: {usage['llm_calls']} model calls, {usage['input_tokens']} in "
              f"({usage.get('cached_tokens', 0)} cached), {usage['output_tokens']} out, "
              f"${usage['cost_usd']:.6f}{unpriced}")


@projections_app.command("rebuild")
def projections_rebuild(
    names: Annotated[list[str] | None, typer.Argument(metavar="[NAME]...",
                                                      help="default: every read model")] = None,
) -> None:
    """Empty read models and rebuild them from every stored event, in one pass."""
    from infra.projector import PROJECTIONS, rebuild
    from infra.store import EventStore, store_environment

    chosen = names or list(PROJECTIONS)
    unknown = [name for name in chosen if name not in PROJECTIONS]
    if unknown:
        _fail(f"unknown projection {unknown[0]!r} (known: {', '.join(PROJECTIONS)})")
    settings = Settings()
    database_url = _database_url(settings)
    store = EventStore(env=store_environment(database_url, 0, create_tables=False))
    try:
        started = time.perf_counter()
        count = rebuild(database_url, store, *chosen)
        seconds = time.perf_counter() - started
    finally:
        store.close()
    out.print(f"rebuilt {', '.join(chosen)} from {count} events in {seconds:.2f} s")


@credentials_app.command("set")
def credentials_set(
    credential_id: Annotated[str, typer.Argument(metavar="ID", help="what nodes name")],
    provider: Annotated[str, typer.Option(help="openai, anthropic, groq or ollama")],
    as_json: JsonOption = False,
) -> None:
    """Store a provider key under ID; the key is read from stdin or a hidden prompt."""
    if sys.stdin.isatty():
        api_key = typer.prompt(f"{provider} API key for {credential_id}", hide_input=True)
    else:
        api_key = sys.stdin.read().strip()
    if not api_key:
        _fail("no key given: pipe it in (`heddle credentials set ID --provider P < key.txt`)")
    stored = _call("PUT", f"/v1/credentials/{credential_id}",
                   json={"provider": provider, "api_key": api_key})
    if as_json:
        _print_json(stored)
    else:
        out.print(f"stored credential {stored['id']} for {stored['provider']}")


@credentials_app.command("list")
def credentials_list(as_json: JsonOption = False) -> None:
    """List stored credentials (ids and providers; keys are never shown)."""
    _print_items(_call("GET", "/v1/credentials")["items"], as_json, {
        "id": "id", "provider": "provider", "created at": "created_at", "updated at": "updated_at",
    })


@credentials_app.command("delete")
def credentials_delete(credential_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Delete a stored credential; nodes that name it fail until it is stored again."""
    _call("DELETE", f"/v1/credentials/{credential_id}")
    out.print(f"deleted credential {credential_id}")


@providers_app.command("check")
def providers_check(as_json: JsonOption = False) -> None:
    """Call every provider configured in this environment once (max_tokens=1); exit 1 if
    any fails. Set keys and base URLs as for the workers."""
    from infra.llm.router import ProviderRouter, ProviderSettings

    async def check() -> list[dict[str, Any]]:
        router = ProviderRouter(ProviderSettings.from_env(os.environ))
        try:
            return await router.check_all()
        finally:
            await router.aclose()

    reports = asyncio.run(check())
    if as_json:
        _print_json(reports)
    else:
        for report in reports:
            mark = "[green]ok[/]    " if report["ok"] else "[red]failed[/]"
            line = f"{mark} {report['provider']}:{report['model']} {report['latency_ms']:.0f} ms"
            out.print(line + ("" if report["ok"] else f": {report['error']}"))
    if not all(report["ok"] for report in reports):
        raise typer.Exit(1)


def _database_url(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    from infra.embedded import read_stack

    stack = read_stack(settings.data_dir)
    if stack is None:
        _fail("set DATABASE_URL, or start `heddle up` so that its database can be found")
    return stack.database_url


from api.cli_replay import register as _register_replay  # noqa: E402 - needs the apps above

_register_replay(app, runs_app)  # replay, runs diff|export|import|fork|edit

from api.cli_tasks import register as _register_tasks  # noqa: E402

_register_tasks(app, runs_app)  # tasks list|complete|reassign, runs pause|resume|cancel

from api.cli_reads import register as _register_reads  # noqa: E402

_register_reads(app, runs_app)  # usage, runs attempts

from api.cli_threads import register as _register_threads  # noqa: E402

_register_threads(app)  # threads list|open|say|show|complete

from api.cli_keys import register as _register_keys  # noqa: E402

_register_keys(app)  # keys create|list|revoke

from api.cli_documents import register as _register_documents  # noqa: E402

_register_documents(app)  # documents upload


if __name__ == "__main__":
    app()
