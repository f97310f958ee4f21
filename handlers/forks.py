"""Forks and graph edits: the two commands that change how a run goes on.

`ForkRun` starts a new run from a node of a recorded one. The fork point is the moment
the node first started: every node that had finished by then is reused as recorded (no
model is called for it), and the run goes on live from the node. The source's events are
the only input, so a run of any age can be forked. `EditGraph` changes a running run's
graph; the rules are the run's (`WorkflowRun.edit_graph`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from domain.commands import CommandEnvelope, EditGraph, ForkRun, run_id_for
from domain.definitions.edges import RESOLVED
from domain.edits import with_overrides
from domain.errors import DefinitionInvalid, ForkRejected, Problem, RunNotFound
from domain.llm import LlmRequest
from domain.runs import WorkflowRun
from handlers.unit_of_work import UnitOfWork

ANSWERS = ("LlmCallCompleted", "LlmCallReplayed", "AgentStepCompleted")


@dataclass
class ForkPoint:
    """Where a fork starts in its source: the source's version just before the node first
    started, the recorded request and answers of each model node that had finished by
    then, and every recorded answer of an `llm` node or action by the fingerprint of its
    request."""

    version: int
    reused: dict[str, dict[str, Any]] = field(default_factory=dict)
    recorded: dict[str, dict[str, Any]] = field(default_factory=dict)


BEGINS = ("NodeStarted", "NodeEntering", "ActionVariablesSet", "ArtifactSaved")
"""Events that can be a node's first: its entry actions come before its `NodeStarted`."""


def fork_point(events: list[Any], from_node: str) -> ForkPoint:
    """The fork point of `from_node` in a run's domain events (oldest first): just before
    its first event, so that the fork runs its entry actions again from the start."""
    started = [e for e in events if _kind(e) in BEGINS]
    first = next((e for e in started if e.node_id == from_node), None)
    if first is None:
        ran = ", ".join(dict.fromkeys(e.node_id for e in started)) or "none"
        raise ForkRejected(
            f"node {from_node!r} never started in run {events[0].originator_id}: fork from a "
            f"node that ran (these did: {ran})"
        )
    point = ForkPoint(first.originator_version - 1)
    parent_fork = getattr(events[0], "fork", None) or {}
    point.reused.update(parent_fork.get("reused", {}))
    point.recorded.update(parent_fork.get("recorded", {}))
    requests: dict[tuple[str, int], tuple[str, dict[str, Any]]] = {}
    run_requests: dict[str, dict[str, Any]] = {}  # run-level model calls (judges, llm actions)
    for event in events:
        kind = _kind(event)
        if kind == "LlmRequested":
            run_requests[event.request_id] = event.request
        elif kind in ("LlmRequestCompleted", "LlmRequestReplayed"):
            asked = LlmRequest.model_validate(run_requests[event.request_id])
            point.recorded[asked.fingerprint()] = event.result
        if kind == "NodeStarted" and event.input:
            requests[(event.node_id, event.attempt)] = (event.kind, event.input)
        elif kind in ANSWERS:
            node_kind, request = requests[(event.node_id, event.attempt)]
            if node_kind == "llm":
                point.recorded[LlmRequest.model_validate(request).fingerprint()] = event.result
            if event.originator_version <= point.version:
                reused = point.reused.setdefault(event.node_id, {"input": request, "results": []})
                reused["results"].append(event.result)
    return point


def fork_run(command: ForkRun, envelope: CommandEnvelope, uow: UnitOfWork) -> dict[str, Any]:
    """Start the fork as a new run of the same workflow version, with its overrides."""
    events = list(uow.app.repository.event_store.get(command.source_run_id))
    if not events or getattr(events[0], "tenant", None) != envelope.tenant:
        raise RunNotFound(f"no run {command.source_run_id}")
    point = fork_point(events, command.from_node)
    source: WorkflowRun = uow.app.repository.get(command.source_run_id, version=point.version)
    finished = {
        node_id: {**state, "reused": True} if state["status"] == "completed" else state
        for node_id, state in source.nodes.items()
        if state["status"] in ("completed", "skipped")
    }
    spec = with_overrides(source.graph, command.prompts, command.models)
    too_early = [
        Problem(f"{what}.{node_id}", _before_fork_point(node_id, command.from_node))
        for what, overrides in (("prompts", command.prompts), ("models", command.models))
        for node_id in overrides
        if node_id in finished
    ]
    if too_early:
        raise DefinitionInvalid(too_early)
    run_id = command.run_id or run_id_for(envelope.tenant, envelope.command_id)
    if uow.get(run_id) is not None:
        raise ForkRejected(f"run {run_id} exists already: choose another run_id")
    reused = {node_id: facts for node_id, facts in point.reused.items() if node_id in finished}
    run = WorkflowRun(
        run_id=run_id,
        tenant=envelope.tenant,
        actor=envelope.actor,
        workflow=source.workflow,
        version=source.workflow_version,
        content_hash=spec.content_hash(),
        graph=spec.canonical(),
        input=source.input,
        command_id=envelope.command_id,
        fork={
            "run_id": str(source.id),
            "node": command.from_node,
            "version": point.version,
            "mode": command.mode,
            "overrides": command.model_dump(
                mode="json", include={"variables", "prompts", "models"}
            ),
            "variables": {**source.variables, **command.variables},
            "nodes": finished,
            "edges": {key: state for key, state in source.edges.items() if state in RESOLVED},
            "loops": source.loops,
            "reused": reused,
            "recorded": point.recorded if command.mode == "recorded" else {},
        },
    )
    run.reopen_edges(now=datetime.now(UTC))
    run.advance(now=datetime.now(UTC))
    uow.add(run)
    return {
        "run_id": str(run_id),
        "source_run_id": str(source.id),
        "from_node": command.from_node,
        "reused": [n for n, state in finished.items() if state["status"] == "completed"],
    }


def edit_graph(command: EditGraph, envelope: CommandEnvelope, uow: UnitOfWork) -> dict[str, Any]:
    """Apply a graph edit to a running run of the caller's tenant."""
    run = run_of(uow, command.run_id, envelope.tenant)
    before = {n for n, s in run.nodes.items() if s["status"] != "pending"}
    run.edit_graph(list(command.edits), envelope.actor, command.reason, now=datetime.now(UTC))
    return {
        "run_id": str(run.id),
        "content_hash": run.content_hash,
        "started": [n for n, s in run.nodes.items() if s["status"] != "pending" and n not in before],
    }


def run_of(uow: UnitOfWork, run_id: UUID, tenant: str) -> WorkflowRun:
    """The run `run_id` of `tenant`; `RunNotFound` for another tenant's, as for none."""
    run = uow.get(run_id)
    if not isinstance(run, WorkflowRun) or run.tenant != tenant:
        raise RunNotFound(f"no run {run_id}")
    return run


def _before_fork_point(node_id: str, from_node: str) -> str:
    return (
        f"{node_id!r} finished before {from_node!r} started, so the fork reuses its recorded "
        f"result: fork from {node_id!r} (or earlier) to change it"
    )


def _kind(event: Any) -> str:
    return type(event).__name__
