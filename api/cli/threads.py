"""`heddle threads list|open|say|show|complete`: chat threads from the command line
(through the routes of `api/http/threads.py`)."""

from __future__ import annotations

import json
import time
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
    print_items,
)

threads_app = typer.Typer(
    help="Chat threads: list, open, say, show, complete.", no_args_is_help=True
)
REPLY_SECONDS = 60.0


def register(app: typer.Typer) -> None:
    """Add `threads` to `app`."""
    app.add_typer(threads_app, name="threads")


@threads_app.command("list")
def threads_list(
    run: Annotated[str | None, typer.Option(help="Only the threads of this run")] = None,
    status: Annotated[str | None, typer.Option(help="open or completed")] = None,
    limit: LimitOption = 50,
    cursor: CursorOption = None,
    every: AllOption = False,
    as_json: JsonOption = False,
) -> None:
    """Threads, newest first, a page at a time (the next page's cursor on stderr)."""
    params = {"run_id": run, "status": status, "limit": limit}
    items = listed("heddle threads list", "/v1/threads", params, cursor, every)
    print_items(items, as_json, {
        "thread": "thread_id", "title": "title", "status": "status", "run": "run_id",
        "node": "node_id", "messages": "messages",
    })  # fmt: skip


@threads_app.command("open")
def threads_open(
    title: Annotated[str, typer.Option(help="What the thread is about")] = "",
    workflow: Annotated[str | None, typer.Option(help="A conversation workflow")] = None,
) -> None:
    """Open a thread; prints its id."""
    body = {"title": title, **({"workflow": workflow} if workflow else {})}
    sent = call("POST", "/v1/threads", json=body)
    decided(sent["command_id"])
    out.print(sent["thread_id"])


@threads_app.command("say")
def threads_say(
    thread_id: str,
    text: Annotated[str, typer.Argument(help="The message")] = "",
    branch: Annotated[str | None, typer.Option(help="Pick one of the thread's branches")] = None,
) -> None:
    """Post a message and print the reply when there is one. Exits 3 when refused."""
    body = {"content": text, **({"branch": branch} if branch else {})}
    sent = call("POST", f"/v1/threads/{thread_id}/messages", json=body)
    outcome = decided(sent["command_id"])
    mine = outcome["result"]["message_id"]
    wait = {"X-Heddle-Wait-For-Command": sent["command_id"]}
    thread = call("GET", f"/v1/threads/{thread_id}", headers=wait)
    if "action" in outcome["result"] or (thread["replies"] == "none" and branch is None):
        out.print(f"posted {mine}")
        return
    deadline = time.monotonic() + REPLY_SECONDS
    while time.monotonic() < deadline:
        # The thread before its messages: a reply that came in between is in the messages.
        thread = call("GET", f"/v1/threads/{thread_id}")
        messages = call("GET", f"/v1/threads/{thread_id}/messages", params={"limit": 500})
        replies = [m for m in messages["items"] if m["role"] == "assistant"
                   and m["reply_to"] == mine]  # fmt: skip
        if replies:
            typer.echo(replies[-1]["content"])
            return
        if thread["pending_replies"] == 0 and thread["last_error"]:
            fail(f"the reply to {mine} failed: {thread['last_error'].get('message')}")
        time.sleep(0.1)
    fail(f"no reply to {mine} within {REPLY_SECONDS:.0f} s (see heddle threads show)")


@threads_app.command("show")
def threads_show(thread_id: str, as_json: JsonOption = False) -> None:
    """A thread's messages, in order."""
    items = call("GET", f"/v1/threads/{thread_id}/messages", params={"limit": 500})["items"]
    if as_json:
        print_items(items, True, {})
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
    try:
        value: Any = json.loads(data)
    except json.JSONDecodeError as error:
        fail(f"--data is not JSON: {error}")
    if not isinstance(value, dict):
        fail("--data must be a JSON object")
    sent = call("POST", f"/v1/threads/{thread_id}/complete", json={"data": value})
    outcome = decided(sent["command_id"])
    run = outcome["result"].get("run_status")
    out.print(f"thread {thread_id} completed" + (f"; the run is {run}" if run else ""))
