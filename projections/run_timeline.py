"""`run_timeline`: every event of every run, in order, with a one-line summary."""

from __future__ import annotations

from typing import Any

from projections import Cursor, json_text, write_rows

NAME = "run_timeline"
TABLES = ["run_timeline"]
SCHEMA = """
CREATE TABLE IF NOT EXISTS run_timeline (
    run_id uuid NOT NULL,
    version integer NOT NULL,
    position bigint NOT NULL,
    type text NOT NULL,
    node_id text,
    at timestamptz NOT NULL,
    summary text NOT NULL,
    data jsonb NOT NULL,
    PRIMARY KEY (run_id, version)
);
"""


def summarize(event: dict[str, Any]) -> str:
    """A human line for an event, as `heddle runs show` and the UI print it."""
    data = event["data"]
    kind: str = event["type"].removeprefix("WorkflowRun.")
    node = data.get("node_id")
    if kind == "Started" and data.get("fork"):
        fork = data["fork"]
        reused = [n for n, state in fork["nodes"].items() if state["status"] == "completed"]
        return (
            f"fork of run {fork['run_id']} from {fork['node']} ({fork['mode']}) started by "
            f"{data['actor']}; reused " + (", ".join(reused) or "nothing")
        )
    if kind == "Started" and data.get("parent"):
        parent = data["parent"]
        return (
            f"run of {data['workflow']} v{data['version']} started as the child of run "
            f"{parent['run_id']} (node {parent['node_id']}, attempt {parent['attempt']})"
        )
    if kind == "Started":
        return f"run of {data['workflow']} v{data['version']} started by {data['actor']}"
    if kind == "NodeStarted" and data["kind"] == "subworkflow":
        child = data["input"]
        return (
            f"{node} (subworkflow) started, attempt {data['attempt']}: child run "
            f"{child['run_id']} of {child['workflow']}"
        )
    if kind == "ChildRunRequested":
        return (
            f"{node}: tool call {data['call_id']} starts child run {data['child_run_id']} "
            f"of {data['workflow']}"
        )
    if kind == "ChildRunFinished":
        return f"child run {data['child_run_id']} {data['status']}"
    if kind == "ExtractionCompleted":
        result, source = data["result"], data["source"]
        where = (
            f"document {source['document_id']}"
            + (f" ({source['pages']} pages)" if source.get("pages") else "")
            if source.get("document_id")
            else "inline text"
        )
        return (
            f"{node}: {result['provider']}:{result['model']} extracted fields from {where}, "
            f"{source['characters']} characters"
        )
    if kind == "GraphEdited":
        ops = ", ".join(
            f"{e['op']} {e.get('new') or e.get('node') or e['from'] + '->' + e['to']}"
            for e in data["edits"]
        )
        return f"graph edited by {data['actor']}: {data['reason']} ({ops})"
    if kind == "MapItemStarted":
        return f"{node}[{data['index']}] started"
    if kind == "MapItemCompleted":
        result = data["result"]
        return (
            f"{node}[{data['index']}]: {result['provider']}:{result['model']} answered in "
            f"{result['latency_ms']:.0f} ms"
        )
    if kind == "LlmCallReplayed":
        result = data["result"]
        return f"{node}: recorded answer of {result['provider']}:{result['model']} re-served (same request)"
    if kind == "NodeStarted" and data["kind"] == "human":
        task = data["input"]["task"]
        who = task.get("assignee") or task.get("role") or "anyone"
        return f"{node}: {task['type']} task for {who}: {task['title']}"
    if kind == "NodeStarted":
        return f"{node} ({data['kind']}) started, attempt {data['attempt']}"
    if kind == "TaskCompleted":
        decision = data["output"].get("decision")
        how = f"{decision}d" if decision else "completed"
        return f"task {data['task_id']} {how} by {data['actor']}"
    if kind == "TaskReassigned":
        changes = ", ".join(f"{k} {v}" for k, v in data["changes"].items())
        return f"task {data['task_id']} reassigned by {data['actor']}: {changes}" + (
            f" ({data['reason']})" if data["reason"] else "")
    if kind == "Paused":
        return f"run paused by {data['actor']}" + (f": {data['reason']}" if data["reason"] else "")
    if kind == "Resumed":
        return f"run resumed by {data['actor']}"
    if kind == "Cancelled":
        return f"run cancelled by {data['actor']}" + (f": {data['reason']}" if data["reason"] else "")
    if kind == "LlmCallCompleted":
        result = data["result"]
        usage = result["usage"]
        return (
            f"{node}: {result['provider']}:{result['model']} answered in "
            f"{result['latency_ms']:.0f} ms ({usage['input_tokens']} in, "
            f"{usage['output_tokens']} out)"
        )
    if kind == "ChatReplyCompleted":
        result = data["result"]
        return f"{node}: {result['provider']}:{result['model']} replied in the thread"
    if kind == "AgentStepCompleted":
        result = data["result"]
        calls = ", ".join(call["name"] for call in result.get("tool_calls", []))
        then = f"calls {calls}" if calls else "answers"
        return f"{node}: step {data['step']}, {result['provider']}:{result['model']} {then}"
    if kind == "ToolCallsRequested":
        return f"{node}: running " + ", ".join(call["name"] for call in data["calls"])
    if kind == "ToolCallCompleted":
        what: str = {"ok": "returned", "error": "failed", "rejected": "rejected"}[data["outcome"]]
        return f"{node}: tool {data['tool']} {what}: {data['content'][:120]}"
    if kind == "LlmCallFailed":
        retry = data.get("retry_in")
        then = f"; retrying in {retry:.1f} s" if retry is not None else ""
        return f"{node}: model call failed: {data['error'].get('message')}{then}"
    if kind == "ActionVariablesSet":
        return f"{data['action']}: set " + ", ".join(data["variables"])
    if kind == "NodeEntering":
        return f"{node} ({data['kind']}) entering, attempt {data['attempt']}: waits for a model"
    if kind == "ArtifactSaved":
        return (
            f"{data['action']}: saved {data['name']} ({data['content_type']}, "
            f"{data['size']:,} bytes)"
        )
    if kind == "NodeCompleted":
        return f"{node} completed" + (f" → {data['next']}" if data.get("next") else "")
    if kind == "NodesSkipped":
        return "skipped " + ", ".join(data["node_ids"])
    if kind == "NodeFailed":
        return f"{node} failed: {data['error'].get('message')}"
    if kind in EDGE_SUMMARIES:
        return str(EDGE_SUMMARIES[kind](data))
    if kind == "Completed":
        return "run completed"
    if kind == "Failed":
        return f"run failed: {data['error'].get('message')}"
    return kind


EDGE_SUMMARIES: dict[str, Any] = {
    "EdgeDecided": lambda d: f"{d['source']} -> {d['target']}: {d['state']}"
    + (f" ({d['reason']})" if d["reason"] else ""),
    "TransitionBlocked": lambda d: f"{d['source']} -> {d['target']} blocked by its "
    f"{d['kind']} validator {d['validator']}: {d['reason']}",
    "RunWaiting": lambda d: "run waits for " + ", ".join(d["edges"]),
    "LoopIterated": lambda d: f"loop {d['source']} -> {d['target']}: iteration {d['iteration']}, "
    "running again " + ", ".join(d["nodes"]),
    "VariablesSet": lambda d: f"variables {', '.join(d['variables'])} set by {d['actor']}"
    + (f": {d['reason']}" if d["reason"] else ""),
    "LlmRequested": lambda d: f"{d['purpose']} asks {d['request']['model']} ({d['request_id']})",
    "LlmRequestCompleted": lambda d: f"{d['purpose']}: {d['result']['provider']}:"
    f"{d['result']['model']} answered: {d['result']['text'][:120]}",
    "LlmRequestReplayed": lambda d: f"{d['purpose']}: recorded answer re-served (same request)",
    "LlmRequestFailed": lambda d: f"{d['purpose']}: model call failed: {d['error'].get('message')}",
}
"""Summaries of the events of edges with triggers, validators and loops."""


COLUMNS = ["run_id", "version", "position", "type", "node_id", "at", "summary", "data"]


def project(events: list[dict[str, Any]], sql: Cursor) -> None:
    rows = (
        (e["aggregate_id"], e["aggregate_version"], e["position"], e["type"],
         e["data"].get("node_id"), e["timestamp"], summarize(e), json_text(e["data"]))
        for e in events
        if e["aggregate_type"] == "WorkflowRun"
    )
    write_rows(sql, "run_timeline", COLUMNS, rows, "ON CONFLICT DO NOTHING")
