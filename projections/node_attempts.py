"""`node_attempts`: one row per attempt of a node, and one per map item and per agent step
within it: the recorded request, the answer, tool calls, tokens, cost, latency, status
and error.

A row is keyed by (run, node, attempt, item, step): `item` is set on a map item's row,
`step` on an agent step's row, both are null on the attempt's own row, which carries the
totals of its items or steps. Events of unknown types change nothing.
"""

from __future__ import annotations

from typing import Any

from domain.runs import add_usage, new_usage
from projections import Cursor, json_text, write_rows
from projections.queries import AsyncCursor, Row, rows_of_run

NAME = "node_attempts"
TABLES = ["node_attempts"]
SCHEMA = """
CREATE TABLE IF NOT EXISTS node_attempts (
    run_id uuid NOT NULL,
    node_id text NOT NULL,
    attempt integer NOT NULL,
    item integer,
    step integer,
    kind text NOT NULL,
    status text NOT NULL,
    request jsonb,
    response text,
    tool_calls jsonb NOT NULL,
    output jsonb,
    provider text,
    model text,
    finish_reason text,
    usage jsonb NOT NULL,
    latency_ms double precision NOT NULL,
    replayed boolean NOT NULL,
    failed_tries integer NOT NULL,
    error jsonb,
    started_at timestamptz NOT NULL,
    finished_at timestamptz,
    started_position bigint NOT NULL,
    version integer NOT NULL,
    UNIQUE NULLS NOT DISTINCT (run_id, node_id, attempt, item, step)
);
CREATE INDEX IF NOT EXISTS node_attempts_in_order ON node_attempts (run_id, started_position);
"""
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
ENDED = {"Cancelled", "Failed"}
"""Run events after which an attempt still running will never finish: it is cancelled."""

Key = tuple[str, int, int | None, int | None]  # node, attempt, item, step


def _new(
    event: dict[str, Any], kind: str, request: Any, item: int | None = None, step: int | None = None
) -> dict[str, Any]:
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


def _answered(row: dict[str, Any], result: dict[str, Any], calls: list[dict[str, Any]]) -> None:
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


def _ended(row: dict[str, Any], status: str, at: str, error: Any = None) -> None:
    row.update(status=status, finished_at=at)
    if error is not None:
        row["error"] = error


def evolve(rows: dict[Key, dict[str, Any]], event: dict[str, Any]) -> list[Key]:
    """Apply one event of a run to its rows (changed in place); returns the keys changed."""
    data, at = event["data"], event["timestamp"]
    kind = event["type"].removeprefix("WorkflowRun.")
    node, attempt = data.get("node_id"), data.get("attempt")
    key: Key = (node, attempt, None, None)
    row = rows.get(key)
    changed = [key]
    if kind == "NodeEntering":  # its entry actions wait for a model; NodeStarted follows
        rows[key] = _new(event, data["kind"], None)
    elif kind == "NodeStarted" and row is not None and row["status"] == "running":
        row["request"] = data["input"] or None
    elif kind == "NodeStarted":
        rows[key] = _new(event, data["kind"], data["input"] or None)
    elif kind in ("NodeCompleted", "StepSkipped"):
        current = max(
            (k for k in rows if k[0] == node and k[2] is None and k[3] is None),
            default=None,
            key=lambda k: k[1],
        )
        if current is None or rows[current]["status"] != "running":
            return []
        if kind == "StepSkipped":
            skipped = {"class": "skipped", "message": data["reason"], "by": data["actor"]}
            _ended(rows[current], "skipped", at, skipped)
        else:
            rows[current]["output"] = data["output"]
            _ended(rows[current], "completed", at)
        changed = [current]
    elif kind in ENDED:
        changed = [k for k, r in rows.items() if r["status"] == "running"]
        for k in changed:
            _ended(rows[k], "cancelled", at)
    elif row is None:
        return []
    elif kind in ("LlmCallCompleted", "LlmCallReplayed", "ExtractionCompleted"):
        result = data["result"]
        if kind == "LlmCallReplayed":
            row.update(
                response=result["text"],
                provider=result["provider"],
                model=result["model"],
                finish_reason=result["finish_reason"],
                replayed=True,
                tool_calls=result.get("tool_calls", []),
            )
        else:
            _answered(row, result, result.get("tool_calls", []))
    elif kind == "MapItemStarted":
        key = (node, attempt, data["index"], None)
        rows[key] = _new(event, row["kind"], data["input"], item=data["index"])
        changed = [key]
    elif kind == "MapItemCompleted":
        item = rows[(node, attempt, data["index"], None)]
        _answered(item, data["result"], [])
        _ended(item, "completed", at)
        row.update(
            usage=add_usage(row["usage"], data["result"]),
            latency_ms=round(row["latency_ms"] + data["result"]["latency_ms"], 3),
        )
        changed.append((node, attempt, data["index"], None))
    elif kind == "ChatReplyCompleted":
        row.update(
            usage=add_usage(row["usage"], data["result"]),
            provider=data["result"]["provider"],
            model=data["result"]["model"],
        )
    elif kind == "AgentStepCompleted":
        result, step_key = data["result"], (node, attempt, None, data["step"])
        calls = [
            {**c, "step": data["step"], "outcome": None, "content": None}
            for c in result.get("tool_calls", [])
        ]
        rows[step_key] = _new(event, row["kind"], None, step=data["step"])
        _answered(rows[step_key], result, calls)
        _ended(rows[step_key], "completed", at)
        _answered(row, result, [*row["tool_calls"], *calls])
        changed.append(step_key)
    elif kind in ("ToolCallsRequested", "ToolCallCompleted"):
        step_key = (node, attempt, None, data["step"])
        if kind == "ToolCallsRequested":
            outcomes = {c["id"]: {"outcome": "running"} for c in data["calls"]}
        else:
            outcomes = {data["call_id"]: {"outcome": data["outcome"], "content": data["content"]}}
        for k in (key, step_key):
            rows[k]["tool_calls"] = [
                {**c, **outcomes[c["id"]]}
                if c["id"] in outcomes and c["step"] == data["step"]
                else c
                for c in rows[k]["tool_calls"]
            ]
        changed.append(step_key)
    elif kind == "LlmCallFailed":
        key = (node, attempt, data.get("item"), None)
        failed = rows[key]
        failed.update(failed_tries=failed["failed_tries"] + 1, error=data["error"])
        changed = [key]
    elif kind in ("NodeFailed", "NodeRetryScheduled"):
        _ended(row, "failed" if kind == "NodeFailed" else "retried", at, data["error"])
        for k, r in rows.items():
            if k[:2] == (node, attempt) and k != key and r["status"] == "running":
                _ended(r, "cancelled", at)
                changed.append(k)
    else:
        return []
    return changed


def project(events: list[dict[str, Any]], sql: Cursor) -> None:
    """Apply a batch: read the rows of the touched runs once, evolve them, write the
    changed ones back once. An event at or below a run's highest applied version was
    applied already (a run's events come in order) and is skipped."""
    runs = [e for e in events if e["aggregate_type"] == "WorkflowRun"]
    if not runs:
        return
    ids = list(dict.fromkeys(e["aggregate_id"] for e in runs))
    sql.execute(
        f"SELECT {', '.join(COLUMNS)} FROM node_attempts WHERE run_id = ANY(%s::uuid[])", [ids]
    )
    by_run: dict[str, dict[Key, dict[str, Any]]] = {run_id: {} for run_id in ids}
    applied: dict[str, int] = dict.fromkeys(ids, 0)
    for values in sql.fetchall():
        row = dict(zip(COLUMNS, values, strict=True))
        run_id = str(row["run_id"])
        by_run[run_id][(row["node_id"], row["attempt"], row["item"], row["step"])] = row
        applied[run_id] = max(applied[run_id], row["version"])
    changed: dict[tuple[str, Key], dict[str, Any]] = {}
    for event in runs:
        run_id, version = event["aggregate_id"], event["aggregate_version"]
        if version <= applied[run_id]:
            continue
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
