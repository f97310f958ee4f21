"""`node_attempts`: one row per attempt of a node, and one per map item and per agent step
within it: the recorded request, the answer, tool calls, tokens, cost, latency, status
and error.

A row is keyed by (run, node, attempt, item, step): `item` is set on a map item's row,
`step` on an agent step's row, both are null on the attempt's own row, which carries the
totals of its items or steps. Events of unknown types change nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from domain import messages as m
from domain.messages import RUN_STOPPED, Event, RunEvent
from domain.runs import add_usage, new_usage
from projections import Cursor, json_text, write_rows
from projections.queries import AsyncCursor, Row, rows_of_run

NAME = "node_attempts"
TABLES = ["node_attempts"]
VERSION = 1
COLUMNS = [
    "run_id",
    "node_id",
    "attempt",
    "item",
    "step",
    "kind",
    "status",
    "request",
    "response",
    "tool_calls",
    "output",
    "provider",
    "model",
    "finish_reason",
    "usage",
    "latency_ms",
    "replayed",
    "failed_tries",
    "error",
    "started_at",
    "finished_at",
    "started_position",
    "version",
]
KEY = COLUMNS[:5]
JSON_COLUMNS = {"request", "tool_calls", "output", "usage", "error"}
Key = tuple[str, int, int | None, int | None]  # node, attempt, item, step
Rows = dict[Key, Row]


def new_row(
    event: Event, kind: str, request: Any, item: int | None = None, step: int | None = None
) -> Row:
    """A running attempt (or map item, or agent step) that `event` starts."""
    data = event["data"]
    return {
        "run_id": event["aggregate_id"],
        "node_id": data["node_id"],
        "attempt": data["attempt"],
        "item": item,
        "step": step,
        "kind": kind,
        "status": "running",
        "request": request,
        "response": None,
        "tool_calls": [],
        "output": None,
        "provider": None,
        "model": None,
        "finish_reason": None,
        "usage": new_usage(),
        "latency_ms": 0.0,
        "replayed": False,
        "failed_tries": 0,
        "error": None,
        "started_at": event["timestamp"],
        "finished_at": None,
        "started_position": event["position"],
        "version": 0,
    }


def answered(row: Row, result: dict[str, Any], calls: list[dict[str, Any]]) -> None:
    """A model's answer on `row`: its text, tool calls, tokens, cost and latency added."""
    row.update(
        response=result["text"],
        provider=result["provider"],
        model=result["model"],
        finish_reason=result["finish_reason"],
        usage=add_usage(row["usage"], result),
        latency_ms=round(row["latency_ms"] + result["latency_ms"], 3),
        tool_calls=calls,
    )


def ended(row: Row, status: str, at: str, error: Any = None) -> None:
    row.update(status=status, finished_at=at)
    if error is not None:
        row["error"] = error


def evolve(rows: Rows, event: Event) -> list[Key]:
    """Apply one event of a run to its rows (changed in place); returns the keys changed."""
    if event["type"] in STARTS:
        return STARTS[event["type"]](rows, event)
    change = CHANGES.get(event["type"])
    if change is None:
        return []
    data = event["data"]
    key: Key = (data["node_id"], data["attempt"], None, None)
    row = rows.get(key)
    if row is None:
        return []
    return change(rows, key, row, event)


# Events that start or end attempts: (rows, event) -> the keys changed.


def node_entering(rows: Rows, event: Event) -> list[Key]:
    """Its entry actions wait for a model; `NodeStarted` follows."""
    data = cast(m.NodeEntering, event["data"])
    key: Key = (data["node_id"], data["attempt"], None, None)
    rows[key] = new_row(event, data["kind"], None)
    return [key]


def node_started(rows: Rows, event: Event) -> list[Key]:
    data = cast(m.NodeStarted, event["data"])
    key: Key = (data["node_id"], data["attempt"], None, None)
    row = rows.get(key)
    if row is not None and row["status"] == "running":
        row["request"] = data["input"] or None
    else:
        rows[key] = new_row(event, data["kind"], data["input"] or None)
    return [key]


def node_ended(rows: Rows, event: Event) -> list[Key]:
    """A node's latest running attempt completed, or was skipped by a person."""
    data = event["data"]
    node = data["node_id"]
    current = max(
        (k for k in rows if k[0] == node and k[2] is None and k[3] is None),
        default=None,
        key=lambda k: k[1],
    )
    if current is None or rows[current]["status"] != "running":
        return []
    if event["type"] == RunEvent.STEP_SKIPPED:
        skipped = {"class": "skipped", "message": data["reason"], "by": data["actor"]}
        ended(rows[current], "skipped", event["timestamp"], skipped)
    else:
        rows[current]["output"] = data["output"]
        ended(rows[current], "completed", event["timestamp"])
    return [current]


def run_stopped(rows: Rows, event: Event) -> list[Key]:
    """The run failed or was cancelled: what still runs never finishes."""
    changed = [k for k, r in rows.items() if r["status"] == "running"]
    for k in changed:
        ended(rows[k], "cancelled", event["timestamp"])
    return changed


STARTS: dict[str, Callable[[Rows, Event], list[Key]]] = {
    RunEvent.NODE_ENTERING: node_entering,
    RunEvent.NODE_STARTED: node_started,
    RunEvent.NODE_COMPLETED: node_ended,
    RunEvent.STEP_SKIPPED: node_ended,
    **dict.fromkeys(RUN_STOPPED, run_stopped),
}


# Events within an attempt whose row exists: (rows, its key, its row, event) -> keys changed.


def llm_call_completed(rows: Rows, key: Key, row: Row, event: Event) -> list[Key]:
    result = event["data"]["result"]
    answered(row, result, result.get("tool_calls", []))
    return [key]


def llm_call_replayed(rows: Rows, key: Key, row: Row, event: Event) -> list[Key]:
    result = cast(m.LlmCallReplayed, event["data"])["result"]
    row.update(
        response=result["text"],
        provider=result["provider"],
        model=result["model"],
        finish_reason=result["finish_reason"],
        replayed=True,
        tool_calls=result.get("tool_calls", []),
    )
    return [key]


def map_item_started(rows: Rows, key: Key, row: Row, event: Event) -> list[Key]:
    data = cast(m.MapItemStarted, event["data"])
    item: Key = (data["node_id"], data["attempt"], data["index"], None)
    rows[item] = new_row(event, row["kind"], data["input"], item=data["index"])
    return [item]


def map_item_completed(rows: Rows, key: Key, row: Row, event: Event) -> list[Key]:
    data = cast(m.MapItemCompleted, event["data"])
    item: Key = (data["node_id"], data["attempt"], data["index"], None)
    answered(rows[item], data["result"], [])
    ended(rows[item], "completed", event["timestamp"])
    row.update(
        usage=add_usage(row["usage"], data["result"]),
        latency_ms=round(row["latency_ms"] + data["result"]["latency_ms"], 3),
    )
    return [key, item]


def chat_reply_completed(rows: Rows, key: Key, row: Row, event: Event) -> list[Key]:
    result = cast(m.ChatReplyCompleted, event["data"])["result"]
    row.update(
        usage=add_usage(row["usage"], result), provider=result["provider"], model=result["model"]
    )
    return [key]


def agent_step_completed(rows: Rows, key: Key, row: Row, event: Event) -> list[Key]:
    """An agent's step is a row of its own, and adds to its attempt's totals."""
    data = cast(m.AgentStepCompleted, event["data"])
    result, step = data["result"], data["step"]
    step_key: Key = (data["node_id"], data["attempt"], None, step)
    calls = [
        {**c, "step": step, "outcome": None, "content": None} for c in result.get("tool_calls", [])
    ]
    rows[step_key] = new_row(event, row["kind"], None, step=step)
    answered(rows[step_key], result, calls)
    ended(rows[step_key], "completed", event["timestamp"])
    answered(row, result, [*row["tool_calls"], *calls])
    return [key, step_key]


def tool_calls_changed(rows: Rows, key: Key, row: Row, event: Event) -> list[Key]:
    """Tool calls of an agent's step started or returned: on the step's and the attempt's rows."""
    data = event["data"]
    step_key: Key = (data["node_id"], data["attempt"], None, data["step"])
    if event["type"] == RunEvent.TOOL_CALLS_REQUESTED:
        outcomes = {c["id"]: {"outcome": "running"} for c in data["calls"]}
    else:
        outcomes = {data["call_id"]: {"outcome": data["outcome"], "content": data["content"]}}
    for changed in (row, rows[step_key]):
        changed["tool_calls"] = [
            {**c, **outcomes[c["id"]]} if c["id"] in outcomes and c["step"] == data["step"] else c
            for c in changed["tool_calls"]
        ]
    return [key, step_key]


def llm_call_failed(rows: Rows, key: Key, row: Row, event: Event) -> list[Key]:
    """A failed try counts on the attempt, or on its map item."""
    data = cast(m.LlmCallFailed, event["data"])
    tried: Key = (data["node_id"], data["attempt"], data.get("item"), None)
    failed = rows[tried]
    failed.update(failed_tries=failed["failed_tries"] + 1, error=data["error"])
    return [tried]


def node_failed(rows: Rows, key: Key, row: Row, event: Event) -> list[Key]:
    """The attempt failed (or will be retried): its items and steps still running stop."""
    data = cast(m.NodeFailed, event["data"])
    status = "failed" if event["type"] == RunEvent.NODE_FAILED else "retried"
    ended(row, status, event["timestamp"], data["error"])
    changed = [key]
    for k, r in rows.items():
        if (
            k[:2] == (data["node_id"], data["attempt"])
            and r is not row
            and r["status"] == "running"
        ):
            ended(r, "cancelled", event["timestamp"])
            changed.append(k)
    return changed


CHANGES: dict[str, Callable[[Rows, Key, Row, Event], list[Key]]] = {
    RunEvent.LLM_CALL_COMPLETED: llm_call_completed,
    RunEvent.EXTRACTION_COMPLETED: llm_call_completed,
    RunEvent.LLM_CALL_REPLAYED: llm_call_replayed,
    RunEvent.MAP_ITEM_STARTED: map_item_started,
    RunEvent.MAP_ITEM_COMPLETED: map_item_completed,
    RunEvent.CHAT_REPLY_COMPLETED: chat_reply_completed,
    RunEvent.AGENT_STEP_COMPLETED: agent_step_completed,
    RunEvent.TOOL_CALLS_REQUESTED: tool_calls_changed,
    RunEvent.TOOL_CALL_COMPLETED: tool_calls_changed,
    RunEvent.LLM_CALL_FAILED: llm_call_failed,
    RunEvent.NODE_FAILED: node_failed,
    RunEvent.NODE_RETRY_SCHEDULED: node_failed,
}
"""Events of other types change no attempt."""


def project(events: list[Event], sql: Cursor) -> None:
    """Apply a batch: read the rows of the touched runs once, evolve them, write the
    changed ones back once. An event at or below a run's highest applied version was
    applied already (a run's events come in order; the relay may publish one again, even
    into the same batch) and is skipped."""
    runs = [e for e in events if e["aggregate_type"] == "WorkflowRun"]
    if not runs:
        return
    ids = list(dict.fromkeys(e["aggregate_id"] for e in runs))
    sql.execute(
        f"SELECT {', '.join(COLUMNS)} FROM node_attempts WHERE run_id = ANY(%s::uuid[])", [ids]
    )
    by_run: dict[str, Rows] = {run_id: {} for run_id in ids}
    applied: dict[str, int] = dict.fromkeys(ids, 0)
    for values in sql.fetchall():
        row = dict(zip(COLUMNS, values, strict=True))
        run_id = str(row["run_id"])
        by_run[run_id][(row["node_id"], row["attempt"], row["item"], row["step"])] = row
        applied[run_id] = max(applied[run_id], row["version"])
    changed: dict[tuple[str, Key], Row] = {}
    for event in runs:
        run_id, version = event["aggregate_id"], event["aggregate_version"]
        if version <= applied[run_id]:
            continue
        applied[run_id] = version  # a copy later in the same batch (the relay's) is skipped
        rows = by_run[run_id]
        for key in evolve(rows, event):
            rows[key]["version"] = version
            changed[(run_id, key)] = rows[key]
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS[5:])
    write_rows(
        sql,
        "node_attempts",
        COLUMNS,
        (
            [json_text(r[c]) if c in JSON_COLUMNS and r[c] is not None else r[c] for c in COLUMNS]
            for r in changed.values()
        ),
        f"ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET {updates}"
        " WHERE node_attempts.version < EXCLUDED.version",
    )


# Queries: what the API reads of `node_attempts`.

FIELDS = [c for c in COLUMNS if c not in ("run_id", "started_position", "version")]
"""An attempt's fields as the API serves them (with `position`, the store position of the
event that opened it)."""


async def run_attempts(
    sql: AsyncCursor, run_id: Any, filters: dict[str, Any], after: int | None, limit: int
) -> list[Row]:
    """Up to `limit` attempts of the run in the order they started, after the position
    `after`; `filters`: node_id, status."""
    return await rows_of_run(
        sql, "node_attempts", FIELDS, "started_position", run_id, filters, after, limit
    )
