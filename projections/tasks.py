"""`tasks`: every task for a person (human nodes, budget approvals), open or done, and the
work queue that orders the open ones.

The queue's order is a score, computed when the queue is read (waiting time and due
time change as the clock runs):

    score = priority                                   (0 to 100, from the node)
          + min(minutes waiting / 10, 30)              (waiting time)
          + 50 if overdue, 20 if due within the hour   (due time)
          + min(max(value, 0), 100) / 5                (the customer's value, 0 to 100)

Highest first; ties go to the task that has waited longest. A queue read page by page
scores every page at the time of its first (`scored_at`), so that no task moves between
pages while it is read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.messages import Event, RunEvent
from projections import Cursor, json_text
from projections.queries import AsyncCursor, Row, matching, rows

NAME = "tasks"
TABLES = ["tasks"]
VERSION = 1
SCORE = """(
    priority
    + LEAST(EXTRACT(EPOCH FROM scored_at - created_at) / 600, 30)
    + CASE WHEN due_at < scored_at THEN 50 WHEN due_at < scored_at + interval '1 hour' THEN 20
           ELSE 0 END
    + LEAST(GREATEST(COALESCE(value, 0), 0), 100) / 5
)"""
"""The work-queue score in SQL, at the time `scored_at` (see the module's docstring)."""
QUEUE_ORDER = {
    "open": (["score", "created_at", "run_id", "task_id"], "-score, created_at, run_id, task_id"),
    "done": (["updated_at", "run_id", "task_id"], "updated_at, run_id, task_id"),
}
"""The sort keys of a queue's pages (`next_cursor`), open tasks and the others, and the
row that orders them (the done ones newest first: descending)."""

_OPEN = """
INSERT INTO tasks (run_id, task_id, tenant, type, title, instructions, assignee, role, priority,
                   value, due_at, form, status, created_at, updated_at, version)
SELECT %(run_id)s, %(task_id)s, tenant, %(type)s, %(title)s, %(instructions)s, %(assignee)s,
       %(role)s, %(priority)s, %(value)s, %(due_at)s, %(form)s, 'open', %(at)s, %(at)s, %(version)s
FROM runs WHERE run_id = %(run_id)s
ON CONFLICT (run_id, task_id) DO UPDATE SET
    type = EXCLUDED.type, title = EXCLUDED.title, instructions = EXCLUDED.instructions,
    assignee = EXCLUDED.assignee, role = EXCLUDED.role, priority = EXCLUDED.priority,
    value = EXCLUDED.value, due_at = EXCLUDED.due_at, form = EXCLUDED.form, status = 'open',
    created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at, completed_by = NULL,
    output = NULL, version = EXCLUDED.version
WHERE tasks.version < EXCLUDED.version
"""
"""A task opened again (a human node in a loop runs again, a budget is reached again) is
the same row, open again with what it asks now."""
_CHANGE = """
UPDATE tasks SET {changes}, updated_at = %(at)s, version = %(version)s
WHERE run_id = %(run_id)s AND {which} AND version < %(version)s
"""


def project(events: list[Event], sql: Cursor) -> None:
    """Runs rows come first (`run_history` projects the same batch before this one), so a
    task takes its tenant from its run."""
    for event in events:
        kind, data = event["type"], event["data"]
        where = {
            "run_id": event["aggregate_id"],
            "at": event["timestamp"],
            "version": event["aggregate_version"],
        }
        if kind == RunEvent.NODE_STARTED and data["kind"] in ("human", "chat"):
            _open(sql, where, data["node_id"], data["input"]["task"])
        elif kind == RunEvent.PAUSED and data.get("task"):
            _open(sql, where, "budget", data["task"])
        elif kind == RunEvent.TASK_COMPLETED:
            _change(
                sql,
                where,
                "status = 'completed', completed_by = %(by)s, output = %(output)s",
                data["task_id"],
                by=data["actor"],
                output=json_text(data["output"]),
            )
        elif kind == RunEvent.TASK_REASSIGNED:
            changes = {
                k: v for k, v in data["changes"].items() if k in ("assignee", "role", "priority")
            }
            _change(
                sql, where, ", ".join(f"{k} = %({k})s" for k in changes), data["task_id"], **changes
            )
        elif kind == RunEvent.STEP_SKIPPED:
            _change(sql, where, "status = 'skipped'", data["node_id"])
        elif kind == RunEvent.CANCELLED:
            _change(sql, where, "status = 'cancelled'", None)


def _open(sql: Cursor, where: dict[str, Any], task_id: str, task: dict[str, Any]) -> None:
    sql.execute(
        _OPEN,
        {
            **where,
            "task_id": task_id,
            "type": task["type"],
            "title": task["title"],
            "instructions": task.get("instructions", ""),
            "assignee": task.get("assignee"),
            "role": task.get("role"),
            "priority": task["priority"],
            "value": task.get("value"),
            "due_at": task.get("due_at"),
            "form": json_text(task.get("form", {})),
        },
    )


def _change(
    sql: Cursor, where: dict[str, Any], changes: str, task_id: str | None, **values: Any
) -> None:
    which = "task_id = %(task_id)s" if task_id is not None else "status = 'open'"
    sql.execute(
        _CHANGE.format(changes=changes, which=which), {**where, "task_id": task_id, **values}
    )


# Queries: what the API reads of `tasks`.


async def work_queue(
    sql: AsyncCursor,
    tenant: str,
    status: str,
    filters: dict[str, Any],
    limit: int,
    scored_at: datetime | None = None,
    after: list[Any] | None = None,
) -> list[Row]:
    """Up to `limit` of the tenant's tasks with this status and the `filters` (assignee,
    role, run_id), with their score at `scored_at` (now by default): open ones highest
    score first, the others newest first; after the sort keys `after` (`QUEUE_ORDER`)."""
    where: list[str] = ["tenant = %s", "status = %s"]
    params: list[Any] = [scored_at, tenant, status]
    matching(where, params, filters)
    keys, order = QUEUE_ORDER["open" if status == "open" else "done"]
    descending = status != "open"
    page = ""
    if after is not None:
        if not descending:
            after = [-after[0], *after[1:]]
        page = f"WHERE ({order}) {'<' if descending else '>'} ({', '.join(['%s'] * len(keys))})"
        params += after
    direction = " DESC" if descending else ""
    return await rows(
        sql,
        f"SELECT * FROM (SELECT tasks.*, scored_at, round({SCORE}::numeric, 2)::float AS score"
        " FROM tasks, (SELECT coalesce(%s::timestamptz, now()) AS scored_at) AS clock"
        f" WHERE {' AND '.join(where)}) AS queue {page}"
        f" ORDER BY {', '.join(f'{key}{direction}' for key in order.split(', '))} LIMIT %s",
        [*params, limit],
    )
