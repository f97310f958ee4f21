"""`runs`: one row per run with its status, node states, variables, output and usage."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from domain.runs import add_usage, new_usage
from projections import Cursor, json_text, write_rows
from projections.queries import AsyncCursor, Row, newest_first, rows

NAME = "run_history"
TABLES = ["runs"]
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id uuid PRIMARY KEY,
    tenant text NOT NULL,
    workflow text NOT NULL,
    workflow_version integer NOT NULL,
    status text NOT NULL,
    input jsonb NOT NULL,
    variables jsonb NOT NULL,
    nodes jsonb NOT NULL,
    node_order jsonb NOT NULL,
    output jsonb,
    error jsonb,
    usage jsonb NOT NULL,
    started_by text NOT NULL,
    command_id text NOT NULL,
    started_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    finished_at timestamptz,
    version integer NOT NULL,
    position bigint NOT NULL
);
ALTER TABLE runs ADD COLUMN IF NOT EXISTS parent_run_id uuid;
CREATE INDEX IF NOT EXISTS runs_by_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS runs_by_tenant_time ON runs (tenant, started_at DESC, run_id DESC);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (tenant, status, started_at DESC);
"""
COLUMNS = [
    "run_id",
    "tenant",
    "workflow",
    "workflow_version",
    "status",
    "input",
    "variables",
    "nodes",
    "node_order",
    "output",
    "error",
    "usage",
    "started_by",
    "command_id",
    "started_at",
    "updated_at",
    "finished_at",
    "version",
    "position",
    "parent_run_id",
]
JSON_COLUMNS = {"input", "variables", "nodes", "node_order", "output", "error", "usage"}
FINISHED = {"WorkflowRun.Completed", "WorkflowRun.Failed", "WorkflowRun.Cancelled"}


def evolve(row: dict[str, Any] | None, event: dict[str, Any]) -> dict[str, Any] | None:
    """The row after `event`; None when the event does not concern an existing row."""
    data, at = event["data"], event["timestamp"]
    if event["type"] == "WorkflowRun.Started":
        if row is not None:
            return row
        fork = data.get("fork") or {}
        return {
            "run_id": event["aggregate_id"],
            "tenant": data["tenant"],
            "workflow": data["workflow"],
            "workflow_version": data["version"],
            "status": "running",
            "input": data["input"],
            "variables": fork.get("variables", {}),
            "nodes": {
                n: fork.get("nodes", {}).get(n, {"status": "pending", "attempt": 0})
                for n in data["graph"]["nodes"]
            },
            "node_order": list(data["graph"]["nodes"]),
            "output": None,
            "error": None,
            "usage": new_usage(),
            "started_by": data["actor"],
            "command_id": data["command_id"],
            "started_at": at,
            "updated_at": at,
            "finished_at": None,
            "version": event["aggregate_version"],
            "position": event["position"],
            "parent_run_id": (data.get("parent") or {}).get("run_id"),
        }
    if row is None or event["aggregate_version"] <= row["version"]:
        return None
    row = {**row, "nodes": dict(row["nodes"])}
    nodes = row["nodes"]
    kind = event["type"].removeprefix("WorkflowRun.")
    if kind == "GraphEdited":
        row["node_order"] = list(data["graph"]["nodes"])
        row["nodes"] = nodes = {
            n: nodes.get(n, {"status": "pending", "attempt": 0}) for n in row["node_order"]
        }
    elif kind == "NodeStarted":
        loops = {"iterations": nodes[data["node_id"]]["iterations"]} if "iterations" in nodes[
            data["node_id"]] else {}
        nodes[data["node_id"]] = {
            "status": "running",
            "attempt": data["attempt"],
            "kind": data["kind"],
            "started_at": at,
            **loops,
        }
        if data["kind"] == "subworkflow":
            nodes[data["node_id"]]["child_run_id"] = data["input"]["run_id"]
    elif kind == "NodeCompleted":
        nodes[data["node_id"]] = {
            **nodes[data["node_id"]],
            "status": "completed",
            "output": data["output"],
            "finished_at": at,
        }
        row["variables"] = {**row["variables"], **data["variables"]}
    elif kind == "ActionVariablesSet":
        row["variables"] = {**row["variables"], **data["variables"]}
    elif kind == "NodeEntering":
        nodes[data["node_id"]] = {
            "status": "running",
            "attempt": data["attempt"],
            "kind": data["kind"],
            "started_at": at,
        }
    elif kind == "NodesSkipped":
        for node_id in data["node_ids"]:
            nodes[node_id] = {**nodes[node_id], "status": "skipped"}
    elif kind == "LlmCallReplayed":
        result, node = data["result"], nodes[data["node_id"]]
        nodes[data["node_id"]] = {
            **node,
            "model": result["model"],
            "usage": result["usage"],
            "replayed": True,
        }
    elif kind == "MapItemCompleted":
        node = nodes[data["node_id"]]
        row["usage"] = add_usage(row["usage"], data["result"])
        nodes[data["node_id"]] = {
            **node,
            "items_done": node.get("items_done", 0) + 1,
            "usage": add_usage(node.get("usage", {}), data["result"]),
        }
    elif kind in ("LlmCallCompleted", "AgentStepCompleted", "ExtractionCompleted"):
        result, node = data["result"], nodes[data["node_id"]]
        row["usage"] = add_usage(row["usage"], result)
        node_usage = add_usage(node.get("usage", {}), result) if "step" in data else result["usage"]
        nodes[data["node_id"]] = {
            **node,
            "model": result["model"],
            "usage": node_usage,
            "latency_ms": round(node.get("latency_ms", 0.0) + result["latency_ms"], 3),
            **({"steps": data["step"]} if "step" in data else {}),
        }
    elif kind == "ChatReplyCompleted":
        result, node = data["result"], nodes[data["node_id"]]
        row["usage"] = add_usage(row["usage"], result)
        nodes[data["node_id"]] = {
            **node,
            "model": result["model"],
            "usage": add_usage(node.get("usage", {}), result),
        }
    elif kind == "ToolCallCompleted":
        node = nodes[data["node_id"]]
        nodes[data["node_id"]] = {**node, "tool_calls": node.get("tool_calls", 0) + 1}
    elif kind == "LlmCallFailed":
        nodes[data["node_id"]] = {**nodes[data["node_id"]], "last_error": data["error"]}
    elif kind == "NodeFailed":
        nodes[data["node_id"]] = {
            **nodes[data["node_id"]],
            "status": "failed",
            "error": data["error"],
            "finished_at": at,
        }
    elif kind in EDGE_EVENTS:
        evolve_edges(row, kind, data)
    elif kind in ("Paused", "Resumed"):
        row["status"] = "paused" if kind == "Paused" else "running"
    elif kind == "Cancelled":
        row.update(status="cancelled", error={"class": "cancelled", "message": data["reason"],
                                              "by": data["actor"]})
        for node_id, node in nodes.items():
            if node["status"] == "running":
                nodes[node_id] = {**node, "status": "cancelled", "finished_at": at}
    elif kind == "Completed":
        row.update(status="completed", output=data["output"])
    elif kind == "Failed":
        row.update(status="failed", error=data["error"])
    if event["type"] in FINISHED:
        row["finished_at"] = at
    row.update(updated_at=at, version=event["aggregate_version"], position=event["position"])
    return row


EDGE_EVENTS = frozenset(
    {"EdgeDecided", "TransitionBlocked", "RunWaiting", "LoopIterated", "VariablesSet",
     "LlmRequestCompleted"}
)


def evolve_edges(row: dict[str, Any], kind: str, data: dict[str, Any]) -> None:
    """What edges with triggers, validators and loops change in a row: `waiting` while
    only triggers are left, blocked transitions on their source node (`blocked`), loop
    passes (`iterations` on the loop's source node), variables set from outside, and
    the usage of model calls made to judge a transition."""
    nodes = row["nodes"]
    if kind == "RunWaiting":
        row["status"] = "waiting"
    elif kind in ("EdgeDecided", "TransitionBlocked"):
        if row["status"] == "waiting" and data.get("state") != "waiting":
            row["status"] = "running"
        if kind == "TransitionBlocked":
            source = nodes[data["source"]]
            blocked = {"to": data["target"], "validator": data["validator"]}
            blocked["reason"] = data["reason"]
            nodes[data["source"]] = {**source, "blocked": [*source.get("blocked", []), blocked]}
    elif kind == "LoopIterated":
        for node_id in data["nodes"]:
            nodes[node_id] = {"status": "pending", "attempt": nodes[node_id].get("attempt", 0)}
        source = nodes[data["source"]]
        nodes[data["source"]] = {**source, "iterations": data["iteration"]}
    elif kind == "VariablesSet":
        row["variables"] = {**row["variables"], **data["variables"]}
    elif kind == "LlmRequestCompleted":
        row["usage"] = add_usage(row["usage"], data["result"])


def in_graph_order(row: dict[str, Any]) -> dict[str, Any]:
    """The row for the API: JSONB keeps no key order, so nodes come back in graph order."""
    nodes = row["nodes"]
    ordered = {node_id: nodes[node_id] for node_id in row.pop("node_order") if node_id in nodes}
    return {**row, "nodes": ordered}


def project(events: list[dict[str, Any]], sql: Cursor) -> None:
    """Apply a batch: read the touched rows once, evolve them, write them back once."""
    runs = [e for e in events if e["aggregate_type"] == "WorkflowRun"]
    if not runs:
        return
    ids = list(dict.fromkeys(e["aggregate_id"] for e in runs))
    sql.execute(f"SELECT {', '.join(COLUMNS)} FROM runs WHERE run_id = ANY(%s::uuid[])", [ids])
    rows: dict[str, dict[str, Any]] = {
        str(r[0]): dict(zip(COLUMNS, r, strict=True)) for r in sql.fetchall()
    }
    changed: dict[str, dict[str, Any]] = {}
    for event in runs:
        row = evolve(rows.get(event["aggregate_id"]), event)
        if row is not None:
            rows[event["aggregate_id"]] = changed[event["aggregate_id"]] = row
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS[1:])
    write_rows(
        sql, "runs", COLUMNS, (_values(row) for row in changed.values()),
        f"ON CONFLICT (run_id) DO UPDATE SET {updates} WHERE runs.version < EXCLUDED.version",
    )


def _values(row: dict[str, Any]) -> list[Any]:
    return [json_text(row[c]) if c in JSON_COLUMNS else row[c] for c in COLUMNS]


# Queries: what the API reads of `runs`.

SUMMARY = [
    "run_id", "workflow", "workflow_version", "status", "started_at", "updated_at",
    "finished_at", "usage", "parent_run_id",
]  # fmt: skip
"""A run's fields in a list of runs."""


async def list_runs(
    sql: AsyncCursor,
    tenant: str,
    filters: dict[str, Any],
    after: Sequence[Any] | None,
    limit: int,
) -> list[Row]:
    """Up to `limit` of the tenant's runs, newest first, after the (started_at, run_id)
    `after`; `filters` are columns (status, workflow, parent_run_id) and values."""
    keys = ("started_at", "run_id")
    return await newest_first(sql, "runs", SUMMARY, keys, tenant, filters, after, limit)


async def get_run(sql: AsyncCursor, run_id: Any, tenant: str) -> Row | None:
    """The tenant's run, its nodes in graph order; None when there is none."""
    found = await rows(
        sql, "SELECT * FROM runs WHERE run_id = %s AND tenant = %s", [run_id, tenant]
    )
    return in_graph_order(found[0]) if found else None


async def run_exists(sql: AsyncCursor, run_id: Any, tenant: str) -> bool:
    """Whether the tenant has this run (in the read model: a run just started may not)."""
    return bool(
        await rows(sql, "SELECT 1 FROM runs WHERE run_id = %s AND tenant = %s", [run_id, tenant])
    )
