"""`heddle threads list|open|say|show|complete`: chat threads from the command line
(through the routes of `api/threads.py`)."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer

from api.cli_replay import JsonOption, _cli, _decided

threads_app = typer.Typer(
    help="Chat threads: list, open, say, show, complete.", no_args_is_help=True
)
REPLY_SECONDS = 60.0


def register(app: typer.Typer) -> None:
    app.add_typer(threads_app, name="threads")


@threads_app.command("list")
def threads_list(
    run: Annotated[str | None, typer.Option(help="Only the threads of this run")] = None,
    status: Annotated[str | None, typer.Option(help="open or completed")] = None,
    as_json: JsonOption = False,
) -> None:
    """Threads, newest first."""
    cli = _cli()
    params = {k: v for k, v in {"run_id": run, "status": status}.items() if v}
    items = cli._call("GET", "/v1/threads", params=params)["items"]
    cli._print_items(items, as_json, {
        "thread_id": "thread", "title": "title", "status": "status", "run_id": "run",
        "node_id": "node", "messages": "messages",
    })  # fmt: skip


@threads_app.command("open")
def threads_open(
    title: Annotated[str, typer.Option(help="What the thread is about")] = "",
    workflow: Annotated[str | None, typer.Option(help="A conversation workflow")] = None,
) -> None:
    """Open a thread; prints its id."""
    cli = _cli()
    body = {"title": title, **({"workflow": workflow} if workflow else {})}
    sent = cli._call("POST", "/v1/threads", json=body)
    _decided(sent["command_id"])
    cli.out.print(sent["thread_id"])


@threads_app.command("say")
def threads_say(
    thread_id: str,
    text: Annotated[str, typer.Argument(help="The message")] = "",
    branch: Annotated[str | None, typer.Option(help="Pick one of the thread's branches")] = None,
) -> None:
    """Post a message and print the reply when there is one. Exits 2 when refused."""
    cli = _cli()
    body = {"content": text, **({"branch": branch} if branch else {})}
    sent = cli._call("POST", f"/v1/threads/{thread_id}/messages", json=body)
    outcome = _decided(sent["command_id"])
    mine = outcome["result"]["message_id"]
    wait = {"X-Heddle-Wait-For-Command": sent["command_id"]}
    thread = cli._call("GET", f"/v1/threads/{thread_id}", headers=wait)
    if "action" in outcome["result"] or (thread["replies"] == "none" and branch is None):
        cli.out.print(f"posted {mine}")
        return
    deadline = time.monotonic() + REPLY_SECONDS
    while time.monotonic() < deadline:
        # The thread before its messages: a reply that came in between is in the messages.
        thread = cli._call("GET", f"/v1/threads/{thread_id}")
        messages = cli._call("GET", f"/v1/threads/{thread_id}/messages", params={"limit": 500})
        replies = [m for m in messages["items"] if m["role"] == "assistant"
                   and m["reply_to"] == mine]  # fmt: skip
        if replies:
            typer.echo(replies[-1]["content"])
            return
        if thread["pending_replies"] == 0 and thread["last_error"]:
            cli._fail(f"the reply to {mine} failed: {thread['last_error'].get('message')}")
        time.sleep(0.1)
    cli._fail(f"no reply to {mine} within {REPLY_SECONDS:.0f} s (see heddle threads show)")


@threads_app.command("show")
def threads_show(thread_id: str, as_json: JsonOption = False) -> None:
    """A thread's messages, in order."""
    cli = _cli()
    items = cli._call("GET", f"/v1/threads/{thread_id}/messages", params={"limit": 500})["items"]
    if as_json:
        cli._print_items(items, True, {})
        return
    for message in items:
        branch = f" [{message['branch']}]" if message["branch"] else ""
        typer.echo(f"{message['role']}{branch}: {message['content']}")


@threads_app.command("complete")
def threads_complete(
    thread_id: str,
    data: Annotated[str, typer.Option(help="JSON object kept with the thread")] = "{}",
) -> None:
    """Complete a thread; a chat node's run moves on."""
    cli = _cli()
    try:
        value: Any = json.loads(data)
    except json.JSONDecodeError as error:
        cli._fail(f"--data is not JSON: {error}")
    if not isinstance(value, dict):
        cli._fail("--data must be a JSON object")
    sent = cli._call("POST", f"/v1/threads/{thread_id}/complete", json={"data": value})
    outcome = _decided(sent["command_id"])
    run = outcome["result"].get("run_status")
    cli.out.print(f"thread {thread_id} completed" + (f"; the run is {run}" if run else ""))
