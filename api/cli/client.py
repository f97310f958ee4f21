"""The CLI's client of a running Heddle: its API's address and key, `call` for one
request, `follow` for a run's stream, and the ways commands print and fail.

Commands that talk to a running Heddle use its API at `HEDDLE_API_URL` (default: the one
`heddle up` started), with the key in `HEDDLE_API_KEY` (default: `heddle up`'s admin key).
Read commands print tables for people, or JSON only on stdout with `--json`. Exit codes
(`EXIT_CODES`, README and `heddle --help`): 0 done, 1 error (the API refused), 2 usage
(click's), 3 rejected (the intake refused the command), 4 the followed run failed or was
cancelled, 5 Heddle unreachable.
"""

from __future__ import annotations

import json
import sys
import time
from functools import cache
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
import yaml
from httpx_sse import SSEError, connect_sse
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from api.cli.stackfile import ADMIN_KEY_FILE, read_stack
from infra.settings import Settings

out = Console()
err = Console(stderr=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON only, for scripts.")]
LimitOption = Annotated[int, typer.Option(help="Items per page (at most 500)")]
CursorOption = Annotated[
    str | None, typer.Option(help="Go on after a page (the cursor it printed)")
]
AllOption = Annotated[bool, typer.Option("--all", help="Every page, not just one")]
ERROR, USAGE, REJECTED, RUN_FAILED, UNREACHABLE = 1, 2, 3, 4, 5
EXIT_CODES = {
    0: "done",
    ERROR: "the API refused the request, or another error",
    USAGE: "a wrong option or argument",
    REJECTED: "the command was rejected",
    RUN_FAILED: "the followed run failed or was cancelled",
    UNREACHABLE: "Heddle is unreachable",
}
"""What `heddle` exits with, as `heddle --help` lists it."""


@cache
def settings() -> Settings:
    """The settings, read from the environment once per command."""
    return Settings()


def api_url() -> str:
    """`HEDDLE_API_URL`; else the API of the running `heddle up`; else the default port."""
    if url := settings().api_url:
        return url.rstrip("/")
    stack = read_stack(settings().data_dir)
    return stack.api_url if stack else f"http://127.0.0.1:{settings().api_port}"


def api_key() -> str | None:
    """`HEDDLE_API_KEY`; else the admin key of the running `heddle up`, sent to its API only
    (never to another server that HEDDLE_API_URL names)."""
    secret = settings().api_key
    if secret is not None and (key := secret.get_secret_value()):
        return key.strip()
    data_dir = settings().data_dir
    stack, path = read_stack(data_dir), data_dir / ADMIN_KEY_FILE
    if stack is None or stack.api_url != api_url() or not path.exists():
        return None
    return path.read_text().strip()


def database_url() -> str:
    """`DATABASE_URL`, else the database of the running `heddle up`."""
    if settings().database_url:
        return str(settings().database_url)
    stack = read_stack(settings().data_dir)
    if stack is None:
        fail("set DATABASE_URL, or start `heddle up` so that its database can be found")
    return stack.database_url


def http_client() -> httpx.Client:
    """A client of the API, sending the key."""
    key = api_key()
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=api_url(), timeout=30.0, headers=headers)


def fail(message: str, code: int = ERROR) -> NoReturn:
    """Print `error: message` on stderr and exit with `code`."""
    err.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code)


def call(method: str, path: str, **kwargs: Any) -> Any:
    """One request to the API, its JSON answer; fails saying why for an error answer."""
    try:
        with http_client() as client:
            response = client.request(method, path, **kwargs)
    except httpx.TransportError as error:
        unreachable(error)
    if response.status_code >= 400:
        refused(response)
    return response.json() if response.content else None


def unreachable(error: httpx.TransportError) -> NoReturn:
    """Fail with `UNREACHABLE`: Heddle did not answer."""
    fail(
        f"cannot reach Heddle at {api_url()} ({type(error).__name__}): start it with "
        "`make up` or set HEDDLE_API_URL",
        code=UNREACHABLE,
    )


def refused(response: httpx.Response) -> NoReturn:
    """Fail saying why the API refused: a problem's `detail` and each of its `problems` at
    its path (docs/errors.md); the status and the start of the text of any other body (a
    proxy's 502)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        fail(f"{response.status_code}: {response.text.strip()[:200] or response.reason_phrase}")
    for problem in body.get("problems") or []:
        path = escape(str(problem.get("path") or "(document)"))
        err.print(f"  [red]{path}[/red]: {escape(str(problem.get('message')))}")
    fail(f"{response.status_code}: {body.get('detail') or body.get('title') or response.text}")


def every_page(path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """The items of every page of a list, following `next_cursor` (None params left out)."""
    items: list[dict[str, Any]] = []
    params = {key: value for key, value in params.items() if value is not None}
    while True:
        page = call("GET", path, params=params)
        items += page["items"]
        if not page["next_cursor"]:
            return items
        params["cursor"] = page["next_cursor"]


def listed(
    command: str, path: str, params: dict[str, Any], cursor: str | None, every: bool
) -> list[dict[str, Any]]:
    """The items of one page of a list (after `cursor`), the next page's cursor printed on
    stderr as the `command` to ask for it; or of every page (`--all`). Params that are
    None or empty are left out."""
    params = {key: value for key, value in {**params, "cursor": cursor}.items() if value}
    if every:
        return every_page(path, params)
    page = call("GET", path, params=params)
    if page["next_cursor"]:
        err.print(f"more: {command} --cursor {page['next_cursor']} (or --all)")
    items: list[dict[str, Any]] = page["items"]
    return items


def decided(command_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """The command's outcome once the intake has decided; exits `REJECTED` when it was."""
    outcome = awaited(command_id, timeout)
    if outcome is None:
        fail(f"command {command_id} was not decided within {timeout:.0f} s; is Heddle running?")
    return outcome


def awaited(command_id: str, timeout: float) -> dict[str, Any] | None:
    """The command's outcome once accepted, None while still pending after `timeout`;
    exits `REJECTED` with the reason when it was rejected."""
    deadline = time.monotonic() + timeout
    while True:
        outcome: dict[str, Any] = call("GET", f"/v1/commands/{command_id}")
        if outcome["status"] == "rejected":
            fail(f"rejected: {outcome['reason']}", code=REJECTED)
        if outcome["status"] == "accepted":
            return outcome
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)


def print_json(value: Any) -> None:
    """`value` as indented JSON on stdout, alone."""
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def print_items(items: list[dict[str, Any]], as_json: bool, columns: dict[str, str]) -> None:
    """A list as JSON, or as a table of `columns` (header: field)."""
    if as_json:
        print_json(items)
        return
    table = Table(*columns)  # header: field
    for item in items:
        table.add_row(*(str(item[field]) for field in columns.values()))
    out.print(table)


def parse_inputs(pairs: list[str], input_file: Path | None) -> dict[str, Any]:
    """Values from a YAML or JSON file, then from `key=value` pairs (JSON values allowed)."""
    values: dict[str, Any] = {}
    if input_file:
        loaded = yaml.safe_load(input_file.read_text())
        if not isinstance(loaded, dict):
            fail(f"{input_file}: the input must be a mapping")
        values.update(loaded)
    for pair in pairs:
        if "=" not in pair:
            fail(f"--input {pair!r}: write key=value")
        key, raw = pair.split("=", 1)
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    return values


def follow(run_id: str, command_id: str, quiet: bool) -> dict[str, Any]:
    """Wait for the run to start, print its stream (tokens as they arrive) until it ends,
    and return the run as the API shows it once its projection holds the end."""
    decided(command_id)
    with http_client() as client:
        printer = StreamPrinter(quiet)
        end = stream(client, run_id, printer)
        printer.finish_line()
        try:
            response = client.get(
                f"/v1/runs/{run_id}",
                headers={
                    "X-Heddle-Wait-For-Position": str(end["position"]),
                    "X-Heddle-Wait-Timeout": "30",
                },
                timeout=45.0,  # longer than the wait, whose end is a 503 that says so
            )
        except httpx.TransportError as error:
            unreachable(error)
        if response.status_code != 200:
            refused(response)
        state: dict[str, Any] = response.json()
        if not quiet:
            print_outcome(state)
        return state


def stream(client: httpx.Client, run_id: str, printer: StreamPrinter) -> dict[str, Any]:
    """Read the run's stream to its `end`, reconnecting where it broke off."""
    last_id: str | None = None
    for _ in range(100):
        headers = {"Last-Event-ID": last_id} if last_id else {}
        try:
            with connect_sse(
                client, "GET", f"/v1/runs/{run_id}/stream", headers=headers,
                timeout=httpx.Timeout(30.0, read=None),
            ) as source:  # fmt: skip
                if source.response.status_code != 200:
                    source.response.read()
                    refused(source.response)
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
    fail(f"lost the stream of run {run_id} too often: see `heddle runs show {run_id}`")


EDGE_NOTES: dict[str, Any] = {
    "RunWaiting": lambda d: "waiting for " + ", ".join(d["edges"]),
    "TransitionBlocked": lambda d: f"{d['source']} -> {d['target']} blocked: {d['reason']}",
    "LoopIterated": lambda d: f"loop {d['source']} -> {d['target']}: iteration {d['iteration']}",
}
"""What a followed run prints for its edges' events (docs/workflows.md, "Edges")."""


class StreamPrinter:
    """Prints a run's stream: a line per node change, model text as it arrives."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.writing: tuple[str, int, int, int] | None = None  # node, attempt, step, try

    def show(self, kind: str, data: dict[str, Any]) -> None:
        """Print one message of the stream (`event` or `token`)."""
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
        """Print a model's text as it arrives, on a line of its own per call."""
        writing = (delta["node_id"], delta["attempt"], delta["step"], delta["try"])
        if self.writing != writing:
            self.finish_line()
            if delta["try"] > 1:
                out.print(f"[dim](try {delta['try']} of {delta['node_id']})[/]")
            self.writing = writing
        out.print(delta["text"], end="", markup=False, highlight=False, soft_wrap=True)

    def line(self, node_id: str, node: dict[str, Any]) -> None:
        """Print a node's change on a line of its own."""
        self.finish_line()
        print_node(node_id, node)

    def finish_line(self) -> None:
        """End the line of model text being written, if any."""
        if self.writing is not None:
            out.print()
            self.writing = None


def print_node(node_id: str, node: dict[str, Any]) -> None:
    """A node's status (coloured), with its output or error."""
    colour = {"running": "yellow", "completed": "green", "failed": "red", "skipped": "dim"}
    line = f"[{colour.get(node['status'], 'white')}]{node['status']:>9}[/] {node_id}"
    if node["status"] == "completed" and isinstance(node.get("output"), str):
        line += f": {node['output'][:120]}"
    if node["status"] == "failed":
        line += f": {node.get('error', {}).get('message')}"
    out.print(line)


def print_outcome(state: dict[str, Any]) -> None:
    """How a followed run ended: its variables, or its error."""
    if state["status"] == "completed":
        out.print(f"[green]run completed[/] variables: {json.dumps(state['variables'])}")
    else:
        out.print(f"[red]run {state['status']}[/] {json.dumps(state.get('error'))}")
