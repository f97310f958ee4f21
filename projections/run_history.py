"""`runs`: one row per run with its status, node states, variables, output and usage."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

from domain import messages as m
from domain.messages import RUN_FINISHED, Event, RunEvent
from domain.runs import add_usage, new_usage
from projections import Cursor, json_text, write_rows
from projections.queries import AsyncCursor, Row, newest_first, rows

NAME = "run_history"
TABLES = ["runs"]
VERSION = 1
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
    "customer_id",
    "assignee",
    "priority",
]
JSON_COLUMNS = {"input", "variables", "nodes", "node_order", "output", "error", "usage"}


def evolve(row: Row | None, event: Event) -> Row | None:
    """The row after `event`; None when the event does not concern an existing row."""
    if event["type"] == RunEvent.STARTED:
        return row if row is not None else started(event)
    if row is None or event["aggregate_version"] <= row["version"]:
        return None
    row = {**row, "nodes": dict(row["nodes"])}
    change = CHANGES.get(event["type"])
    if change is not None:
        change(row, event["data"], event["timestamp"])
    if event["type"] in RUN_FINISHED:
        row["finished_at"] = event["timestamp"]
    row.update(
        updated_at=event["timestamp"],
        version=event["aggregate_version"],
        position=event["position"],
    )
    return row


def started(event: Event) -> Row:
    """A new run's row: every node pending, or as its fork source left it."""
    data = cast(m.Started, event["data"])
    fork = data.get("fork") or {}
    binding = data.get("binding") or {}
    at = event["timestamp"]
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
        "customer_id": binding.get("customer_id"),
        "assignee": binding.get("assignee"),
        "priority": binding.get("priority"),
    }


def graph_edited(row: Row, data: m.GraphEdited, at: str) -> None:
    row["node_order"] = list(data["graph"]["nodes"])
    nodes = row["nodes"]
    row["nodes"] = {n: nodes.get(n, {"status": "pending", "attempt": 0}) for n in row["node_order"]}


def node_started(row: Row, data: m.NodeStarted, at: str) -> None:
    node_id = data["node_id"]
    loops = row["nodes"][node_id].get("iterations")
    node = {"status": "running", "attempt": data["attempt"], "kind": data["kind"], "started_at": at}
    if loops is not None:
        node["iterations"] = loops
    if data["kind"] == "subworkflow":
        node["child_run_id"] = data["input"]["run_id"]
    row["nodes"][node_id] = node


def node_entering(row: Row, data: m.NodeEntering, at: str) -> None:
    node = {"status": "running", "attempt": data["attempt"], "kind": data["kind"], "started_at": at}
    row["nodes"][data["node_id"]] = node


def node_completed(row: Row, data: m.NodeCompleted, at: str) -> None:
    update_node(row, data["node_id"], status="completed", output=data["output"], finished_at=at)
    row["variables"] = {**row["variables"], **data["variables"]}


def variables_set(row: Row, data: m.ActionVariablesSet | m.VariablesSet, at: str) -> None:
    row["variables"] = {**row["variables"], **data["variables"]}


def nodes_skipped(row: Row, data: m.NodesSkipped, at: str) -> None:
    for node_id in data["node_ids"]:
        update_node(row, node_id, status="skipped")


def llm_call_replayed(row: Row, data: m.LlmCallReplayed, at: str) -> None:
    result = data["result"]
    update_node(row, data["node_id"], model=result["model"], usage=result["usage"], replayed=True)


def map_item_completed(row: Row, data: m.MapItemCompleted, at: str) -> None:
    node = row["nodes"][data["node_id"]]
    row["usage"] = add_usage(row["usage"], data["result"])
    update_node(
        row,
        data["node_id"],
        items_done=node.get("items_done", 0) + 1,
        usage=add_usage(node.get("usage", {}), data["result"]),
    )


def model_answered(
    row: Row, data: m.LlmCallCompleted | m.AgentStepCompleted | m.ExtractionCompleted, at: str
) -> None:
    """A node's model answered: the run's and the node's usage, its model and latency; an
    agent's step counts its steps and adds up their usage."""
    result, node = data["result"], row["nodes"][data["node_id"]]
    row["usage"] = add_usage(row["usage"], result)
    step = cast(dict[str, Any], data).get("step")
    update_node(
        row,
        data["node_id"],
        model=result["model"],
        usage=add_usage(node.get("usage", {}), result) if step is not None else result["usage"],
        latency_ms=round(node.get("latency_ms", 0.0) + result["latency_ms"], 3),
        **({"steps": step} if step is not None else {}),
    )


def chat_reply_completed(row: Row, data: m.ChatReplyCompleted, at: str) -> None:
    result, node = data["result"], row["nodes"][data["node_id"]]
    row["usage"] = add_usage(row["usage"], result)
    update_node(
        row, data["node_id"], model=result["model"], usage=add_usage(node.get("usage", {}), result)
    )


def tool_call_completed(row: Row, data: m.ToolCallCompleted, at: str) -> None:
    node = row["nodes"][data["node_id"]]
    update_node(row, data["node_id"], tool_calls=node.get("tool_calls", 0) + 1)


def llm_call_failed(row: Row, data: m.LlmCallFailed, at: str) -> None:
    update_node(row, data["node_id"], last_error=data["error"])


def node_failed(row: Row, data: m.NodeFailed, at: str) -> None:
    update_node(row, data["node_id"], status="failed", error=data["error"], finished_at=at)


def run_waiting(row: Row, data: m.RunWaiting, at: str) -> None:
    row["status"] = "waiting"


def edge_decided(row: Row, data: m.EdgeDecided, at: str) -> None:
    if row["status"] == "waiting" and data["state"] != "waiting":
        row["status"] = "running"


def transition_blocked(row: Row, data: m.TransitionBlocked, at: str) -> None:
    """A blocked transition is listed on its source node (`blocked`)."""
    if row["status"] == "waiting":
        row["status"] = "running"
    source = row["nodes"][data["source"]]
    blocked = {"to": data["target"], "validator": data["validator"], "reason": data["reason"]}
    update_node(row, data["source"], blocked=[*source.get("blocked", []), blocked])


def loop_iterated(row: Row, data: m.LoopIterated, at: str) -> None:
    """A loop pass: its body is pending again, its source counts `iterations`."""
    nodes = row["nodes"]
    for node_id in data["nodes"]:
        nodes[node_id] = {"status": "pending", "attempt": nodes[node_id].get("attempt", 0)}
    update_node(row, data["source"], iterations=data["iteration"])


def llm_request_completed(row: Row, data: m.LlmRequestCompleted, at: str) -> None:
    """A run-level model call (an `llm` action, an edge's judge) is paid by the run."""
    row["usage"] = add_usage(row["usage"], data["result"])


def paused(row: Row, data: m.Paused, at: str) -> None:
    row["status"] = "paused"


def resumed(row: Row, data: m.Resumed, at: str) -> None:
    row["status"] = "running"


def cancelled(row: Row, data: m.Cancelled, at: str) -> None:
    error = {"class": "cancelled", "message": data["reason"], "by": data["actor"]}
    row.update(status="cancelled", error=error)
    for node_id, node in row["nodes"].items():
        if node["status"] == "running":
            update_node(row, node_id, status="cancelled", finished_at=at)


def completed(row: Row, data: m.Completed, at: str) -> None:
    row.update(status="completed", output=data["output"])


def failed(row: Row, data: m.Failed, at: str) -> None:
    row.update(status="failed", error=data["error"])


def update_node(row: Row, node_id: str, **changes: Any) -> None:
    """Replace a node's state by a copy with `changes` (rows share node dicts)."""
    row["nodes"][node_id] = {**row["nodes"][node_id], **changes}


CHANGES: dict[str, Callable[[Row, Any, str], None]] = {
    RunEvent.GRAPH_EDITED: graph_edited,
    RunEvent.NODE_STARTED: node_started,
    RunEvent.NODE_ENTERING: node_entering,
    RunEvent.NODE_COMPLETED: node_completed,
    RunEvent.ACTION_VARIABLES_SET: variables_set,
    RunEvent.VARIABLES_SET: variables_set,
    RunEvent.NODES_SKIPPED: nodes_skipped,
    RunEvent.LLM_CALL_REPLAYED: llm_call_replayed,
    RunEvent.MAP_ITEM_COMPLETED: map_item_completed,
    RunEvent.LLM_CALL_COMPLETED: model_answered,
    RunEvent.AGENT_STEP_COMPLETED: model_answered,
    RunEvent.EXTRACTION_COMPLETED: model_answered,
    RunEvent.CHAT_REPLY_COMPLETED: chat_reply_completed,
    RunEvent.TOOL_CALL_COMPLETED: tool_call_completed,
    RunEvent.LLM_CALL_FAILED: llm_call_failed,
    RunEvent.NODE_FAILED: node_failed,
    RunEvent.RUN_WAITING: run_waiting,
    RunEvent.EDGE_DECIDED: edge_decided,
    RunEvent.TRANSITION_BLOCKED: transition_blocked,
    RunEvent.LOOP_ITERATED: loop_iterated,
    RunEvent.LLM_REQUEST_COMPLETED: llm_request_completed,
    RunEvent.PAUSED: paused,
    RunEvent.RESUMED: resumed,
    RunEvent.CANCELLED: cancelled,
    RunEvent.COMPLETED: completed,
    RunEvent.FAILED: failed,
}
"""What each event changes in a run's row; events of other types change only its version."""


def in_graph_order(row: dict[str, Any]) -> dict[str, Any]:
    """The row for the API: JSONB keeps no key order, so nodes come back in graph order."""
    nodes = row["nodes"]
    ordered = {node_id: nodes[node_id] for node_id in row.pop("node_order") if node_id in nodes}
    return {**row, "nodes": ordered}


def project(events: list[Event], sql: Cursor) -> None:
    """Apply a batch: read the touched rows once, evolve them, write them back once."""
    runs = [e for e in events if e["aggregate_type"] == "WorkflowRun"]
    if not runs:
        return
    ids = list(dict.fromkeys(e["aggregate_id"] for e in runs))
    sql.execute(f"SELECT {', '.join(COLUMNS)} FROM runs WHERE run_id = ANY(%s::uuid[])", [ids])
    rows: dict[str, Row] = {str(r[0]): dict(zip(COLUMNS, r, strict=True)) for r in sql.fetchall()}
    changed: dict[str, Row] = {}
    for event in runs:
        row = evolve(rows.get(event["aggregate_id"]), event)
        if row is not None:
            rows[event["aggregate_id"]] = changed[event["aggregate_id"]] = row
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS[1:])
    write_rows(
        sql,
        "runs",
        COLUMNS,
        (_values(row) for row in changed.values()),
        f"ON CONFLICT (run_id) DO UPDATE SET {updates} WHERE runs.version < EXCLUDED.version",
    )


def _values(row: dict[str, Any]) -> list[Any]:
    return [json_text(row[c]) if c in JSON_COLUMNS else row[c] for c in COLUMNS]


# Queries: what the API reads of `runs`.

SUMMARY = [
    "run_id", "workflow", "workflow_version", "status", "started_at", "updated_at",
    "finished_at", "usage", "parent_run_id", "customer_id", "assignee", "priority",
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
    `after`; `filters` are columns (status, workflow, parent_run_id, customer_id, assignee)
    and values."""
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
