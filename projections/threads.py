"""`threads` and `thread_messages`: every chat thread (status, binding, branches, counts)
and its messages in order (`seq` is the thread's event version that posted it).

Rows remember the thread version they have seen, so applying an event twice changes
nothing; a rebuild replays the same events into the same rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from domain import messages as m
from domain.messages import Event, ThreadEvent
from projections import Cursor, json_text
from projections.queries import AsyncCursor, Row, newest_first, rows

Change = Callable[[Cursor, dict[str, Any], Any], None]
"""What an event of a thread changes: (cursor, the thread's key, the event's data)."""

NAME = "threads"
TABLES = ["threads", "thread_messages"]
VERSION = 1
THREAD_FIELDS = [
    "thread_id", "title", "status", "outcome", "replies", "workflow", "run_id", "node_id",
    "attempt", "branches", "messages", "pending_replies", "last_error", "output", "opened_by",
    "opened_at", "updated_at", "completed_at", "version", "position",
]  # fmt: skip
"""A thread's fields as the API serves them (`version` is the thread's latest event)."""
MESSAGE_FIELDS = [
    "seq", "message_id", "role", "content", "author", "branch", "reply_to", "provider",
    "model", "usage", "cost_usd", "source", "posted_at", "position",
]  # fmt: skip
"""A message's fields as the API serves them."""

_OPEN = """
INSERT INTO threads (thread_id, tenant, title, status, replies, workflow, run_id, node_id,
                     attempt, branches, messages, pending_replies, opened_by, opened_at,
                     updated_at, version, position)
VALUES (%(id)s, %(tenant)s, %(title)s, 'open', %(replies)s, %(workflow)s, %(run_id)s,
        %(node_id)s, %(attempt)s, %(branches)s, 0, 0, %(actor)s, %(at)s, %(at)s, %(version)s,
        %(position)s)
ON CONFLICT DO NOTHING
"""
_CHANGE = """
UPDATE threads SET {changes}, updated_at = %(at)s, version = %(version)s, position = %(position)s
WHERE thread_id = %(id)s AND version < %(version)s
"""
_POST = """
INSERT INTO thread_messages (thread_id, seq, message_id, tenant, role, content, author, branch,
                             reply_to, provider, model, usage, cost_usd, source, posted_at,
                             position)
SELECT %(id)s, %(version)s, %(message_id)s, tenant, %(role)s, %(content)s, %(author)s,
       %(branch)s, %(reply_to)s, %(provider)s, %(model)s, %(usage)s, %(cost_usd)s, %(source)s,
       %(at)s, %(position)s
FROM threads WHERE thread_id = %(id)s AND version < %(version)s
ON CONFLICT DO NOTHING
"""


def project(events: list[Event], sql: Cursor) -> None:
    for event in events:
        if event["aggregate_type"] != "Thread":
            continue
        key = {
            "id": event["aggregate_id"],
            "at": event["timestamp"],
            "version": event["aggregate_version"],
            "position": event["position"],
        }
        change: Change = CHANGES.get(event["type"], touched)
        change(sql, key, event["data"])


def opened(sql: Cursor, key: dict[str, Any], data: m.ThreadOpened) -> None:
    binding = data.get("binding") or {}
    sql.execute(_OPEN, {
        **key, "tenant": data["tenant"], "title": data["title"],
        "replies": data["replies"], "workflow": data.get("workflow"),
        "run_id": binding.get("run_id"), "node_id": binding.get("node_id"),
        "attempt": binding.get("attempt"), "actor": data["actor"],
        "branches": json_text(data.get("branches") or {}),
    })  # fmt: skip


def message_posted(sql: Cursor, key: dict[str, Any], data: m.ThreadMessagePosted) -> None:
    usage = data.get("usage")
    source = data.get("source")
    sql.execute(_POST, {
        **key, "message_id": data["message_id"], "role": data["role"],
        "content": data["content"], "author": data["author"], "branch": data["branch"],
        "reply_to": data.get("reply_to"), "provider": data.get("provider"),
        "model": data.get("model"), "usage": json_text(usage) if usage else None,
        "cost_usd": data.get("cost_usd"), "source": json_text(source) if source else None,
    })  # fmt: skip
    answered = " - 1" if data.get("reply_id") else ""
    _change(sql, key, f"messages = messages + 1, pending_replies = pending_replies{answered}")


def reply_requested(sql: Cursor, key: dict[str, Any], data: m.ThreadReplyRequested) -> None:
    _change(sql, key, "pending_replies = pending_replies + 1")


def reply_failed(sql: Cursor, key: dict[str, Any], data: m.ThreadReplyFailed) -> None:
    _change(
        sql,
        key,
        "pending_replies = pending_replies - 1, last_error = %(error)s",
        error=json_text(data["error"]),
    )


def run_attached(sql: Cursor, key: dict[str, Any], data: m.ThreadRunAttached) -> None:
    _change(sql, key, "run_id = %(run_id)s", run_id=data["run_id"])


def completed(sql: Cursor, key: dict[str, Any], data: m.ThreadCompleted) -> None:
    _change(
        sql,
        key,
        "status = 'completed', outcome = %(outcome)s, output = %(output)s,"
        " completed_at = %(at)s, pending_replies = 0",
        outcome=data["outcome"],
        output=json_text(data["output"]),
    )


def touched(sql: Cursor, key: dict[str, Any], data: dict[str, Any]) -> None:
    """An event that changes no column still moves the thread's version on."""
    _change(sql, key, "thread_id = thread_id")


CHANGES: dict[str, Change] = {
    ThreadEvent.OPENED: opened,
    ThreadEvent.MESSAGE_POSTED: message_posted,
    ThreadEvent.REPLY_REQUESTED: reply_requested,
    ThreadEvent.REPLY_FAILED: reply_failed,
    ThreadEvent.RUN_ATTACHED: run_attached,
    ThreadEvent.COMPLETED: completed,
}


def _change(sql: Cursor, key: dict[str, Any], changes: str, **values: Any) -> None:
    sql.execute(_CHANGE.format(changes=changes), {**key, **values})


# Queries: what the API reads of `threads` and `thread_messages`.


async def list_threads(
    sql: AsyncCursor,
    tenant: str,
    filters: dict[str, Any],
    after: Sequence[Any] | None,
    limit: int,
) -> list[Row]:
    """Up to `limit` of the tenant's threads, newest first, after the (opened_at,
    thread_id) `after`; `filters` are columns (run_id, status) and values."""
    keys = ("opened_at", "thread_id")
    return await newest_first(sql, "threads", THREAD_FIELDS, keys, tenant, filters, after, limit)


async def get_thread(sql: AsyncCursor, thread_id: Any, tenant: str) -> Row | None:
    """The tenant's thread; None when there is none (yet)."""
    found = await rows(
        sql,
        f"SELECT {', '.join(THREAD_FIELDS)} FROM threads WHERE thread_id = %s AND tenant = %s",
        [thread_id, tenant],
    )
    return found[0] if found else None


async def thread_messages(sql: AsyncCursor, thread_id: Any, after: int, limit: int) -> list[Row]:
    """Up to `limit` of a thread's messages in order, after the message number `after`."""
    return await rows(
        sql,
        f"SELECT {', '.join(MESSAGE_FIELDS)} FROM thread_messages"
        " WHERE thread_id = %s AND seq > %s ORDER BY seq LIMIT %s",
        [thread_id, after, limit],
    )
