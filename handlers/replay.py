"""Replay to debug: a run as it stood after any event, two runs side by side, and a run's
history as a portable JSON document.

Everything here reads events that are already stored; nothing calls a model. The
functions are pure over event envelopes (the JSON `EventStore.aggregate_events` gives)
and `WorkflowRun` aggregates, except `import_history`, which appends a history's
events to a store, and `load_run`, which asks a store's repository for a past version.

What would be helpers on `WorkflowRun` (its state as a plain mapping, the recorded
request of a node) live here, outside the aggregate, so that the domain stays small.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, project_aggregate
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import get_topic

from domain.messages import RUN_FINISHED, Event, RunEvent
from domain.runs import TERMINAL_STATUSES, WorkflowRun

HISTORY_FORMAT = "heddle.run-history/1"
"""The version of the export format; an import refuses any other."""

NODE_FIELDS_COMPARED = ("status", "input", "output", "error", "tokens", "cost_usd")
"""What must be equal for a node to be the `same` in two runs (latency never is)."""

Envelope = Event


class ReplayError(Exception):
    """A replay request cannot be answered; the message says why and what to ask instead."""


class HistoryInvalid(ReplayError):
    """A history document does not replay; the message names the event and the problem."""


class RunExists(ReplayError):
    """An import would overwrite a run that exists already."""


# State at a point


def run_state(run: WorkflowRun) -> dict[str, Any]:
    """The run as a plain mapping: what the aggregate knows after its last applied event.

    Nodes come in graph order; the graph is the run's own pinned copy.
    """
    order = list(run.graph["nodes"])
    nodes = {node_id: run.nodes[node_id] for node_id in order if node_id in run.nodes}
    return copy.deepcopy(
        {
            "run_id": str(run.id),
            "tenant": run.tenant,
            "workflow": run.workflow,
            "workflow_version": run.workflow_version,
            "content_hash": run.content_hash,
            "version": run.version,
            "status": run.status,
            "input": run.input,
            "variables": run.variables,
            "nodes": nodes,
            "edges": run.edges,
            "usage": run.usage,
            "output": run.output,
            "error": run.error,
            "graph": run.graph,
        }
    )


def tenant_of(events: list[Envelope]) -> str | None:
    """The tenant a run belongs to (from its first event), or None without events."""
    if not events:
        return None
    tenant = events[0]["data"].get("tenant")
    return tenant if isinstance(tenant, str) else None


def choose_version(
    events: list[Envelope],
    at: int | None = None,
    at_position: int | None = None,
    at_node: str | None = None,
) -> int:
    """The run's version (1 = after its first event) for at most one of: a version, a
    global store position (the run's last event at or before it), or a node (the event
    that completed or failed it, its last attempt). None of them: the latest version."""
    if not events:
        raise ReplayError("the run has no events")
    if sum(x is not None for x in (at, at_position, at_node)) > 1:
        raise ReplayError("give one of at, at_position and at_node")
    last = int(events[-1]["aggregate_version"])
    if at is not None:
        if not 1 <= at <= last:
            raise ReplayError(f"at={at}: the run has events 1 to {last}")
        return at
    if at_position is not None:
        before = [e for e in events if e["position"] <= at_position]
        if not before:
            raise ReplayError(
                f"at_position={at_position}: the run's first event is at position "
                f"{events[0]['position']}"
            )
        return int(before[-1]["aggregate_version"])
    if at_node is not None:
        graphs = [e["data"]["graph"] for e in events if "graph" in e["data"]]
        graph_nodes = list(dict.fromkeys(n for graph in graphs for n in graph["nodes"]))
        if at_node not in graph_nodes:
            known = ", ".join(graph_nodes)
            raise ReplayError(f"at_node={at_node!r}: no such node (nodes: {known})")
        ends = [
            e
            for e in events
            if e["type"] in (RunEvent.NODE_COMPLETED, RunEvent.NODE_FAILED)
            and e["data"].get("node_id") == at_node
        ]
        if not ends:
            status = node_facts(events)[at_node]["status"]
            raise ReplayError(f"at_node={at_node!r}: the node never completed or failed ({status})")
        return int(ends[-1]["aggregate_version"])
    return last


def timeline(
    events: list[Envelope], at_version: int, summarize: Callable[[Envelope], str]
) -> list[dict[str, Any]]:
    """One entry per event: version, position, time, type, node and a human summary;
    `current` marks the chosen point and `after` the events that had not happened yet."""
    return [
        {
            "version": e["aggregate_version"],
            "position": e["position"],
            "timestamp": e["timestamp"],
            "type": e["type"].removeprefix("WorkflowRun."),
            "node_id": e["data"].get("node_id"),
            "summary": summarize(e),
            "current": e["aggregate_version"] == at_version,
            "after": e["aggregate_version"] > at_version,
        }
        for e in events
    ]


def replay_view(
    events: list[Envelope], run: WorkflowRun, summarize: Callable[[Envelope], str]
) -> dict[str, Any]:
    """What `GET /v1/runs/{id}/state` answers: the point, the state there, the timeline."""
    at = next(e for e in events if e["aggregate_version"] == run.version)
    return {
        "run_id": str(run.id),
        "at": {
            "version": run.version,
            "position": at["position"],
            "timestamp": at["timestamp"],
            "type": at["type"].removeprefix("WorkflowRun."),
            "summary": summarize(at),
        },
        "last_version": events[-1]["aggregate_version"],
        "state": run_state(run),
        "timeline": timeline(events, run.version, summarize),
    }


def load_run(app: Application[UUID], run_id: UUID, version: int | None = None) -> WorkflowRun:
    """The run rebuilt from the store at `version` (the latest when None)."""
    run: Any = app.repository.get(run_id, version=version)
    if not isinstance(run, WorkflowRun):
        raise ReplayError(f"{run_id} is not a run")
    return run


# Node by node


def node_facts(events: list[Envelope]) -> dict[str, dict[str, Any]]:
    """Per node, in graph order, what its events say: status, attempts, the recorded
    request (for model nodes), output or error, tokens, cost, the model's latency and the
    node's wall time (from its last start to its end). A fork's reused nodes show what
    its source recorded, with `reused`; answers a recorded fork re-served show `replayed`."""
    if not events:
        return {}
    start = events[0]["data"]
    facts = {node_id: _blank(node.get("kind")) for node_id, node in start["graph"]["nodes"].items()}
    fork = start.get("fork") or {}
    for node_id, state in fork.get("nodes", {}).items():
        forked = facts[node_id]
        forked.update(status=state["status"], attempts=state["attempt"], output=state.get("output"))
        recorded = fork.get("reused", {}).get(node_id)
        if recorded is not None:
            forked.update(input=recorded["input"], reused=True)
            for result in recorded["results"]:
                _add_answer(forked, result)
    started_at: dict[str, datetime] = {}
    for e in events:
        data, kind = e["data"], e["type"].removeprefix("WorkflowRun.")
        if kind == "GraphEdited":
            graph = data["graph"]["nodes"]
            facts = {
                n: facts.get(n) or _blank(graph[n].get("kind"))
                for n in [*facts, *graph]
                if n in graph
            }
        node = facts.get(data.get("node_id", ""))
        if kind == "NodesSkipped":
            for node_id in data["node_ids"]:
                facts[node_id]["status"] = "skipped"
        if kind == "LoopIterated":  # the loop body runs again: later attempts follow
            for node_id in data["nodes"]:
                facts[node_id]["status"] = "pending"
            facts[data["source"]]["iterations"] = data["iteration"]
        if node is None:
            continue
        if kind == "NodeStarted":
            node.update(status="running", attempts=data["attempt"], kind=data["kind"])
            node["input"] = data["input"] or None
            if node["started_version"] is None:
                node["started_version"] = e["aggregate_version"]
            started_at[data["node_id"]] = datetime.fromisoformat(e["timestamp"])
        elif kind in (
            "LlmCallCompleted",
            "AgentStepCompleted",
            "LlmCallReplayed",
            "MapItemCompleted",
            "ChatReplyCompleted",
        ):
            _add_answer(node, data["result"])
            if kind == "LlmCallReplayed":
                node["replayed"] = True
        elif kind in ("NodeCompleted", "NodeFailed"):
            if kind == "NodeCompleted":
                node.update(status="completed", output=data["output"], error=None)
            else:
                node.update(status="failed", error=data["error"])
            begun = started_at.get(data["node_id"])
            if begun is not None:
                ended = datetime.fromisoformat(e["timestamp"])
                node["duration_ms"] = round((ended - begun).total_seconds() * 1000, 3)
    return facts


def _blank(kind: str | None) -> dict[str, Any]:
    return {
        "kind": kind,
        "status": "pending",
        "attempts": 0,
        "input": None,
        "output": None,
        "error": None,
        "tokens": {"input": 0, "output": 0, "cached": 0},
        "cost_usd": 0.0,
        "llm_calls": 0,
        "model": None,
        "model_latency_ms": 0.0,
        "duration_ms": None,
        "started_version": None,
    }


def _add_answer(node: dict[str, Any], result: dict[str, Any]) -> None:
    usage = result.get("usage", {})
    tokens = node["tokens"]
    tokens["input"] += usage.get("input_tokens", 0)
    tokens["output"] += usage.get("output_tokens", 0)
    tokens["cached"] += usage.get("cached_tokens", 0)
    node["cost_usd"] = round(node["cost_usd"] + result.get("cost_usd", 0.0), 8)
    node["llm_calls"] += 1
    node["model"] = f"{result['provider']}:{result['model']}"
    node["model_latency_ms"] = round(node["model_latency_ms"] + result["latency_ms"], 3)


def diff_runs(
    events_a: list[Envelope],
    state_a: dict[str, Any],
    events_b: list[Envelope],
    state_b: dict[str, Any],
) -> dict[str, Any]:
    """Where two runs diverge: each node of either graph (A's order, then B's new ones)
    side by side with a `same` flag and the fields that differ, the first divergent node
    (in the order the runs reached them), and the run-level differences."""
    facts_a, facts_b = node_facts(events_a), node_facts(events_b)
    order = list(dict.fromkeys([*facts_a, *facts_b]))
    nodes: dict[str, dict[str, Any]] = {}
    for node_id in order:
        a, b = facts_a.get(node_id), facts_b.get(node_id)
        differs = [f for f in NODE_FIELDS_COMPARED if a is None or b is None or a[f] != b[f]]
        nodes[node_id] = {"same": not differs, "differs": differs, "a": a, "b": b}

    def reached(node_id: str) -> tuple[float, float, int]:
        first_a = (facts_a.get(node_id) or {}).get("started_version")
        first_b = (facts_b.get(node_id) or {}).get("started_version")
        return (
            float("inf") if first_a is None else first_a,
            float("inf") if first_b is None else first_b,
            order.index(node_id),
        )

    divergent = sorted((n for n in order if not nodes[n]["same"]), key=reached)
    run = {
        field: _side_by_side(state_a.get(field), state_b.get(field))
        for field in ("workflow", "workflow_version", "status", "input", "output", "error", "usage")
    }
    run["variables"] = _variables_diff(state_a.get("variables", {}), state_b.get("variables", {}))
    same = not divergent and all(v["same"] for v in run.values())
    return {
        "a": state_a["run_id"],
        "b": state_b["run_id"],
        "same": same,
        "first_divergence": (
            {"node": divergent[0], "differs": nodes[divergent[0]]["differs"]} if divergent else None
        ),
        "nodes": nodes,
        "run": run,
    }


def _side_by_side(a: Any, b: Any) -> dict[str, Any]:
    return {"same": a == b, "a": a, "b": b}


def _variables_diff(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    changed = {
        name: {"a": a.get(name), "b": b.get(name)}
        for name in dict.fromkeys([*a, *b])
        if name in a and name in b and a[name] != b[name]
    }
    only_a = {name: a[name] for name in a if name not in b}
    only_b = {name: b[name] for name in b if name not in a}
    return {
        "same": not (changed or only_a or only_b),
        "changed": changed,
        "only_a": only_a,
        "only_b": only_b,
    }


# Export and import


def export_history(events: list[Envelope]) -> dict[str, Any]:
    """A run's history as a portable document: a header (format, run, workflow, version,
    final status) and its events (type, version, timestamp, data) in order."""
    if not events or events[0]["type"] != RunEvent.STARTED:
        raise ReplayError("not a run: its first event is not WorkflowRun.Started")
    started = events[0]["data"]
    final = next(
        (e for e in reversed(events) if e["type"] in RUN_FINISHED),
        None,
    )
    return {
        "format": HISTORY_FORMAT,
        "run_id": events[0]["aggregate_id"],
        "tenant": started["tenant"],
        "workflow": started["workflow"],
        "workflow_version": started["version"],
        "content_hash": started["content_hash"],
        "status": final["type"].removeprefix("WorkflowRun.").lower() if final else "running",
        "event_count": len(events),
        "events": [
            {
                "type": e["type"],
                "version": e["aggregate_version"],
                "timestamp": e["timestamp"],
                "data": e["data"],
            }
            for e in events
        ],
    }


def history_events(
    document: dict[str, Any], run_id: UUID, tenant: str | None = None
) -> list[WorkflowRun.Event]:
    """The domain events of a history document, re-addressed to `run_id` (and `tenant`,
    when given). Raises `HistoryInvalid` naming the first event that is not a run event
    of this code base, or is out of order, or whose fields do not match."""
    if not isinstance(document, dict) or document.get("format") != HISTORY_FORMAT:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise HistoryInvalid(f"not a run history: format is {found!r}, expected {HISTORY_FORMAT!r}")
    raw = document.get("events")
    if not isinstance(raw, list) or not raw:
        raise HistoryInvalid("the history has no events")
    events: list[WorkflowRun.Event] = []
    for index, item in enumerate(raw, start=1):
        where = f"event {index}"
        if not isinstance(item, dict):
            raise HistoryInvalid(f"{where}: not an object")
        where = f"event {index} ({item.get('type')})"
        if item.get("version") != index:
            raise HistoryInvalid(f"{where}: version is {item.get('version')!r}, expected {index}")
        cls = _event_class(str(item.get("type", "")))
        if cls is None:
            raise HistoryInvalid(f"{where}: not an event of WorkflowRun in this version of Heddle")
        is_start = cls.__qualname__ == RunEvent.STARTED
        if (index == 1) != is_start:
            raise HistoryInvalid(f"{where}: a run's history starts with one WorkflowRun.Started")
        data = {**_defaults(cls), **(item.get("data") or {})}
        if is_start:
            data.update(run_id=run_id, originator_topic=get_topic(WorkflowRun))
            if tenant is not None:
                data["tenant"] = tenant
        try:
            timestamp = datetime.fromisoformat(str(item.get("timestamp")))
            events.append(
                cls(originator_id=run_id, originator_version=index, timestamp=timestamp, **data)
            )
        except (TypeError, ValueError) as error:
            raise HistoryInvalid(f"{where}: {error}") from None
    return events


def rebuild(events: Iterable[WorkflowRun.Event]) -> WorkflowRun:
    """A run from its events, with the current domain code."""
    run: WorkflowRun | None = None
    for index, event in enumerate(events, start=1):
        try:
            run = project_aggregate(run, [event])
        except Exception as error:  # any failure to apply is the history's problem
            raise HistoryInvalid(
                f"event {index} ({type(event).__qualname__}) does not apply: "
                f"{type(error).__name__}: {error}"
            ) from None
    if run is None:
        raise HistoryInvalid("the history has no events")
    return run


def import_history(
    document: dict[str, Any],
    app: Application[UUID],
    run_id: UUID,
    tenant: str | None = None,
    allow_unfinished: bool = False,
) -> WorkflowRun:
    """Append a history's events to a store as run `run_id`, after checking that they
    replay with the current code to the status the document says.

    An unfinished run is refused unless `allow_unfinished`: in a live store the workers
    would pick it up and call models. An existing run id is refused (`RunExists`).
    """
    events = history_events(document, run_id, tenant)
    run = rebuild(events)
    expected = document.get("status")
    if expected is not None and run.status != expected:
        raise HistoryInvalid(
            f"the history says the run ended {expected!r}, but its events replay to {run.status!r}"
        )
    if not allow_unfinished and run.status not in TERMINAL_STATUSES:
        raise HistoryInvalid(
            f"the run is {run.status!r}, not finished: only finished runs can be imported "
            "(the workers would carry on an unfinished one and call models)"
        )
    try:
        app.repository.get(run_id)
    except AggregateNotFoundError:
        pass
    else:
        raise RunExists(f"run {run_id} exists already: import it as a new run id")
    try:
        app.save(*events)
    except IntegrityError:
        raise RunExists(f"run {run_id} exists already: import it as a new run id") from None
    return run


@functools.cache
def _defaults(cls: type[WorkflowRun.Event]) -> dict[str, Any]:
    """The fields an event gained after it was first recorded, with their defaults: what
    an older history lacks (the event's method declares them with a default)."""
    name = cls.__qualname__.rpartition(".")[2]
    for method in vars(WorkflowRun).values():
        if getattr(method, "event_cls_name", None) == name:
            parameters = inspect.signature(method.decorated_func).parameters.values()
            return {p.name: p.default for p in parameters if p.default is not p.empty}
    return {}


def _event_class(type_name: str) -> type[WorkflowRun.Event] | None:
    prefix, _, name = type_name.partition(".")
    if prefix != "WorkflowRun" or not name.isidentifier():
        return None
    cls = getattr(WorkflowRun, name, None)
    if isinstance(cls, type) and issubclass(cls, WorkflowRun.Event):
        return cls if dataclasses.is_dataclass(cls) else None
    return None
