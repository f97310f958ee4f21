"""`run_timeline`: every event of every run, in order, with a one-line summary."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from domain import messages as m
from domain.messages import Event, RunEvent
from projections import Cursor, json_text, write_rows

NAME = "run_timeline"
TABLES = ["run_timeline"]
VERSION = 1


def summarize(event: Event) -> str:
    """A human line for an event, as `heddle runs show` and the UI print it."""
    summary = SUMMARIES.get(event["type"])
    if summary is None:
        return event["type"].removeprefix("WorkflowRun.")
    return summary(event["data"])


def started(d: m.Started) -> str:
    if fork := d.get("fork"):
        reused = [n for n, state in fork["nodes"].items() if state["status"] == "completed"]
        return (
            f"fork of run {fork['run_id']} from {fork['node']} ({fork['mode']}) started by "
            f"{d['actor']}; reused " + (", ".join(reused) or "nothing")
        )
    if parent := d.get("parent"):
        return (
            f"run of {d['workflow']} v{d['version']} started as the child of run "
            f"{parent['run_id']} (node {parent['node_id']}, attempt {parent['attempt']})"
        )
    return f"run of {d['workflow']} v{d['version']} started by {d['actor']}"


def node_started(d: m.NodeStarted) -> str:
    node = d["node_id"]
    if d["kind"] == "subworkflow":
        child = d["input"]
        return (
            f"{node} (subworkflow) started, attempt {d['attempt']}: child run "
            f"{child['run_id']} of {child['workflow']}"
        )
    if d["kind"] == "human":
        task = d["input"]["task"]
        who = task.get("assignee") or task.get("role") or "anyone"
        return f"{node}: {task['type']} task for {who}: {task['title']}"
    return f"{node} ({d['kind']}) started, attempt {d['attempt']}"


def extraction_completed(d: m.ExtractionCompleted) -> str:
    result, source = d["result"], d["source"]
    where = (
        f"document {source['document_id']}"
        + (f" ({source['pages']} pages)" if source.get("pages") else "")
        if source.get("document_id")
        else "inline text"
    )
    return (
        f"{d['node_id']}: {result['provider']}:{result['model']} extracted fields from {where}, "
        f"{source['characters']} characters"
    )


def graph_edited(d: m.GraphEdited) -> str:
    ops = ", ".join(
        f"{e['op']} {e.get('new') or e.get('node') or e['from'] + '->' + e['to']}"
        for e in d["edits"]
    )
    return f"graph edited by {d['actor']}: {d['reason']} ({ops})"


def task_completed(d: m.TaskCompleted) -> str:
    decision = d["output"].get("decision")
    how = f"{decision}d" if decision else "completed"
    return f"task {d['task_id']} {how} by {d['actor']}"


def task_reassigned(d: m.TaskReassigned) -> str:
    changes = ", ".join(f"{k} {v}" for k, v in d["changes"].items())
    why = f" ({d['reason']})" if d["reason"] else ""
    return f"task {d['task_id']} reassigned by {d['actor']}: {changes}{why}"


def llm_call_completed(d: m.LlmCallCompleted) -> str:
    result = d["result"]
    usage = result["usage"]
    return (
        f"{d['node_id']}: {result['provider']}:{result['model']} answered in "
        f"{result['latency_ms']:.0f} ms ({usage['input_tokens']} in, "
        f"{usage['output_tokens']} out)"
    )


def agent_step_completed(d: m.AgentStepCompleted) -> str:
    result = d["result"]
    calls = ", ".join(call["name"] for call in result.get("tool_calls", []))
    then = f"calls {calls}" if calls else "answers"
    return f"{d['node_id']}: step {d['step']}, {result['provider']}:{result['model']} {then}"


def tool_call_completed(d: m.ToolCallCompleted) -> str:
    what = {"ok": "returned", "error": "failed", "rejected": "rejected"}[d["outcome"]]
    return f"{d['node_id']}: tool {d['tool']} {what}: {d['content'][:120]}"


def llm_call_failed(d: m.LlmCallFailed) -> str:
    retry = d.get("retry_in")
    then = f"; retrying in {retry:.1f} s" if retry is not None else ""
    return f"{d['node_id']}: model call failed: {d['error'].get('message')}{then}"


def by_actor(what: str) -> Callable[[Any], str]:
    """`run paused by ada: reason`: a control's summary, with its reason if it gave one."""
    return lambda d: f"run {what} by {d['actor']}" + (f": {d['reason']}" if d["reason"] else "")


SUMMARIES: dict[str, Callable[[Any], str]] = {
    RunEvent.STARTED: started,
    RunEvent.NODE_STARTED: node_started,
    RunEvent.CHILD_RUN_REQUESTED: lambda d: (
        f"{d['node_id']}: tool call {d['call_id']} starts "
        f"child run {d['child_run_id']} of {d['workflow']}"
    ),
    RunEvent.CHILD_RUN_FINISHED: lambda d: f"child run {d['child_run_id']} {d['status']}",
    RunEvent.EXTRACTION_COMPLETED: extraction_completed,
    RunEvent.GRAPH_EDITED: graph_edited,
    RunEvent.MAP_ITEM_STARTED: lambda d: f"{d['node_id']}[{d['index']}] started",
    RunEvent.MAP_ITEM_COMPLETED: lambda d: (
        f"{d['node_id']}[{d['index']}]: "
        f"{d['result']['provider']}:{d['result']['model']} answered in "
        f"{d['result']['latency_ms']:.0f} ms"
    ),
    RunEvent.LLM_CALL_REPLAYED: lambda d: (
        f"{d['node_id']}: recorded answer of "
        f"{d['result']['provider']}:{d['result']['model']} re-served (same request)"
    ),
    RunEvent.TASK_COMPLETED: task_completed,
    RunEvent.TASK_REASSIGNED: task_reassigned,
    RunEvent.PAUSED: by_actor("paused"),
    RunEvent.RESUMED: lambda d: f"run resumed by {d['actor']}",
    RunEvent.CANCELLED: by_actor("cancelled"),
    RunEvent.LLM_CALL_COMPLETED: llm_call_completed,
    RunEvent.CHAT_REPLY_COMPLETED: lambda d: (
        f"{d['node_id']}: {d['result']['provider']}:{d['result']['model']} replied in the thread"
    ),
    RunEvent.AGENT_STEP_COMPLETED: agent_step_completed,
    RunEvent.TOOL_CALLS_REQUESTED: lambda d: (
        f"{d['node_id']}: running " + ", ".join(call["name"] for call in d["calls"])
    ),
    RunEvent.TOOL_CALL_COMPLETED: tool_call_completed,
    RunEvent.LLM_CALL_FAILED: llm_call_failed,
    RunEvent.ACTION_VARIABLES_SET: lambda d: f"{d['action']}: set " + ", ".join(d["variables"]),
    RunEvent.NODE_ENTERING: lambda d: (
        f"{d['node_id']} ({d['kind']}) entering, attempt {d['attempt']}: waits for a model"
    ),
    RunEvent.ARTIFACT_SAVED: lambda d: (
        f"{d['action']}: saved {d['name']} ({d['content_type']}, {d['size']:,} bytes)"
    ),
    RunEvent.NODE_COMPLETED: lambda d: (
        f"{d['node_id']} completed" + (f" → {d['next']}" if d.get("next") else "")
    ),
    RunEvent.NODES_SKIPPED: lambda d: "skipped " + ", ".join(d["node_ids"]),
    RunEvent.NODE_FAILED: lambda d: f"{d['node_id']} failed: {d['error'].get('message')}",
    # edges with triggers, validators and loops
    RunEvent.EDGE_DECIDED: lambda d: (
        f"{d['source']} -> {d['target']}: {d['state']}"
        + (f" ({d['reason']})" if d["reason"] else "")
    ),
    RunEvent.TRANSITION_BLOCKED: lambda d: (
        f"{d['source']} -> {d['target']} blocked by its "
        f"{d['kind']} validator {d['validator']}: {d['reason']}"
    ),
    RunEvent.RUN_WAITING: lambda d: "run waits for " + ", ".join(d["edges"]),
    RunEvent.LOOP_ITERATED: lambda d: (
        f"loop {d['source']} -> {d['target']}: iteration "
        f"{d['iteration']}, running again " + ", ".join(d["nodes"])
    ),
    RunEvent.VARIABLES_SET: lambda d: (
        f"variables {', '.join(d['variables'])} set by "
        f"{d['actor']}" + (f": {d['reason']}" if d["reason"] else "")
    ),
    RunEvent.LLM_REQUESTED: lambda d: (
        f"{d['purpose']} asks {d['request']['model']} ({d['request_id']})"
    ),
    RunEvent.LLM_REQUEST_COMPLETED: lambda d: (
        f"{d['purpose']}: {d['result']['provider']}:"
        f"{d['result']['model']} answered: {d['result']['text'][:120]}"
    ),
    RunEvent.LLM_REQUEST_REPLAYED: lambda d: (
        f"{d['purpose']}: recorded answer re-served (same request)"
    ),
    RunEvent.LLM_REQUEST_FAILED: lambda d: (
        f"{d['purpose']}: model call failed: {d['error'].get('message')}"
    ),
    RunEvent.COMPLETED: lambda d: "run completed",
    RunEvent.FAILED: lambda d: f"run failed: {d['error'].get('message')}",
}
"""One summary per event type; an event of a type not listed is summarized by its name."""


COLUMNS = ["run_id", "version", "position", "type", "node_id", "at", "summary", "data"]


def project(events: list[Event], sql: Cursor) -> None:
    rows = (
        (
            e["aggregate_id"],
            e["aggregate_version"],
            e["position"],
            e["type"],
            e["data"].get("node_id"),
            e["timestamp"],
            summarize(e),
            json_text(e["data"]),
        )
        for e in events
        if e["aggregate_type"] == "WorkflowRun"
    )
    write_rows(sql, "run_timeline", COLUMNS, rows, "ON CONFLICT DO NOTHING")
