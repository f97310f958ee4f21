"""Forks: `ForkRun` starts a new run from a node of a recorded one.

The fork point is the moment
the node first started: every node that had finished by then is reused as recorded (no
model is called for it), and the run goes on live from the node. The source's events are
the only input, so a run of any age can be forked. `EditGraph` changes a running run's
graph; the rules are the run's (`WorkflowRun.edit_graph`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from domain.commands import ForkRun, run_id_for
from domain.definitions.edges import RESOLVED
from domain.edits import with_overrides
from domain.errors import DefinitionInvalid, ForkRejected, Problem, RunNotFound
from domain.llm import LlmRequest
from domain.messages import CommandEnvelope
from domain.runs import WorkflowRun
from handlers.commands.context import Context
from handlers.commands.runs import new_run
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
    started = [e for e in events if event_kind(e) in BEGINS]
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
        kind = event_kind(event)
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


def fork_run(
    command: ForkRun, envelope: CommandEnvelope, uow: UnitOfWork, ctx: Context
) -> dict[str, Any]:
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
        Problem(f"{what}.{node_id}", before_fork_point(node_id, command.from_node))
        for what, overrides in (("prompts", command.prompts), ("models", command.models))
        for node_id in overrides
        if node_id in finished
    ]
    if too_early:
        raise DefinitionInvalid(too_early)
    run_id = command.run_id or run_id_for(envelope.tenant, envelope.command_id)
    if uow.exists(run_id):
        raise ForkRejected(f"run {run_id} exists already: choose another run_id")
    reused = {node_id: facts for node_id, facts in point.reused.items() if node_id in finished}
    fork = {
        "run_id": str(source.id),
        "node": command.from_node,
        "version": point.version,
        "mode": command.mode,
        "overrides": command.model_dump(mode="json", include={"variables", "prompts", "models"}),
        "variables": {**source.variables, **command.variables},
        "nodes": finished,
        "edges": {key: state for key, state in source.edges.items() if state in RESOLVED},
        "loops": source.loops,
        "reused": reused,
        "recorded": point.recorded if command.mode == "recorded" else {},
    }
    new_run(
        uow, run_id, envelope, ctx,
        workflow=source.workflow,
        version=source.workflow_version,
        content_hash=spec.content_hash(),
        graph=spec.canonical(),
        input=source.input,
        fork=fork,
    )  # fmt: skip
    return {
        "run_id": str(run_id),
        "source_run_id": str(source.id),
        "from_node": command.from_node,
        "reused": [n for n, state in finished.items() if state["status"] == "completed"],
    }


def before_fork_point(node_id: str, from_node: str) -> str:
    return (
        f"{node_id!r} finished before {from_node!r} started, so the fork reuses its recorded "
        f"result: fork from {node_id!r} (or earlier) to change it"
    )


def event_kind(event: Any) -> str:
    return type(event).__name__
