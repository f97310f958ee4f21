"""Subworkflows: the child runs of `subworkflow` nodes and of agents' workflow tools,
started and reported by commands.

Two aggregates take part, so neither decides for the other: the worker watches the
events and sends commands, each with a command id derived from what it reacts to, so a
redelivered event sends the same command again and the intake decides it once.

- a `subworkflow` node started, or an agent called a workflow tool (`ChildRunRequested`)
  → `StartSubworkflow` (`subworkflow:<child>`): the intake starts the child as the parent
  recorded it, or fails the node (gives the tool call the reason);
- a child run ended → `CompleteSubworkflow` (`subworkflow-result:<child>`): the parent's
  node completes with the child's output, or fails with its error (an agent's tool call
  gets either as its result, and the worker then gives the agent its next turn:
  `agents_to_resume`);
- a parent ended a node attempt some other way (cancelled, failed, timed out, skipped) →
  `CancelRun` of each child still running (`cancel-child:<child>`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from domain.commands import CommandEnvelope, CompleteSubworkflow, StartSubworkflow
from domain.definitions import AgentNode
from domain.errors import CommandRejected, NodeNotRunning
from domain.runs import WorkflowRun
from handlers.forks import run_of
from handlers.records import Record
from handlers.run_worker import LlmCall
from handlers.unit_of_work import UnitOfWork
from handlers.versions import published_version

RUN_ENDED = {"WorkflowRun.Completed", "WorkflowRun.Failed", "WorkflowRun.Cancelled"}
NODE_ENDED = {
    "WorkflowRun.Failed",
    "WorkflowRun.Cancelled",
    "WorkflowRun.NodeFailed",
    "WorkflowRun.NodeRetryScheduled",
    "WorkflowRun.StepSkipped",
}
CHILD_REQUESTED = {"WorkflowRun.NodeStarted", "WorkflowRun.ChildRunRequested"}
REACTS_TO = {*CHILD_REQUESTED, *RUN_ENDED, *NODE_ENDED}


def subworkflow_commands(
    records: list[Record], uow: UnitOfWork
) -> list[tuple[CommandEnvelope, str]]:
    """The commands (and their keys) that these events call for, in order."""
    commands: dict[str, tuple[CommandEnvelope, str]] = {}

    def send(command_id: str, type_: str, tenant: str, payload: dict[str, Any], key: str) -> None:
        envelope = CommandEnvelope(
            command_id=command_id, type=type_, tenant=tenant, actor="heddle", payload=payload
        )
        commands.setdefault(command_id, (envelope, key))

    for record in records:
        kind = record.headers.get("type")
        if kind not in REACTS_TO:
            continue
        event = json.loads(record.value)
        data = event["data"]
        if kind == "WorkflowRun.NodeStarted" and data["kind"] != "subworkflow":
            continue
        run = uow.get(UUID(event["aggregate_id"]), at_least_version=event["aggregate_version"])
        if not isinstance(run, WorkflowRun):
            continue
        if kind in CHILD_REQUESTED:
            child = data.get("child_run_id") or data["input"]["run_id"]
            try:
                run.child_parent(child)
            except NodeNotRunning:
                continue
            payload = {"run_id": str(run.id), "child_run_id": child}
            send(f"subworkflow:{child}", "StartSubworkflow", run.tenant, payload, str(run.id))
            continue
        if kind in RUN_ENDED and run.parent is not None:
            send(
                f"subworkflow-result:{run.id}",
                "CompleteSubworkflow",
                run.tenant,
                {"child_run_id": str(run.id)},
                run.parent["run_id"],
            )
        if kind in NODE_ENDED:
            for child in run.children_to_cancel():
                reason = f"its parent run {run.id} no longer waits for it"
                send(
                    f"cancel-child:{child}",
                    "CancelRun",
                    run.tenant,
                    {"run_id": child, "reason": reason},
                    child,
                )
    return list(commands.values())


def start_subworkflow(
    command: StartSubworkflow, envelope: CommandEnvelope, uow: UnitOfWork
) -> dict[str, Any]:
    """Start the child run a `subworkflow` node attempt waits for, in the parent's tenant,
    with the workflow, version and input the parent recorded; when it cannot start, the
    node fails with the reason."""
    parent = run_of(uow, command.run_id, envelope.tenant)
    child_id = command.child_run_id
    try:
        started = parent.child_parent(str(child_id))
    except NodeNotRunning as error:
        raise CommandRejected(f"no child run to start: {error}") from None
    node = started["parent"]["node_id"]
    result = {"run_id": str(parent.id), "node": node, "child_run_id": str(child_id)}
    if uow.get(child_id) is not None:
        return result
    try:
        version = published_version(
            uow, envelope.tenant, started["workflow"], started["version"], started["input"]
        )
    except CommandRejected as error:
        message = f"cannot start subworkflow {started['workflow']!r}: {error}"
        parent.fail_subworkflow_start(str(child_id), message, now=datetime.now(UTC))
        return {**result, "child_run_id": None, "reason": message}
    child = WorkflowRun(
        run_id=child_id,
        tenant=envelope.tenant,
        actor=envelope.actor,
        workflow=started["workflow"],
        version=version["version"],
        content_hash=version["content_hash"],
        graph=version["spec"],
        input=started["input"],
        command_id=envelope.command_id,
        parent=started["parent"],
    )
    child.advance(now=datetime.now(UTC))
    uow.add(child)
    return result


def complete_subworkflow(
    command: CompleteSubworkflow, envelope: CommandEnvelope, uow: UnitOfWork
) -> dict[str, Any]:
    """Hand a finished child run's outcome to the node of its parent that waits for it."""
    child = run_of(uow, command.child_run_id, envelope.tenant)
    if child.parent is None or not child.is_finished:
        raise CommandRejected(f"run {child.id} is not a finished child run")
    parent = run_of(uow, UUID(child.parent["run_id"]), envelope.tenant)
    try:
        parent.complete_subworkflow(str(child.id), child.status, child.output, child.error, now=datetime.now(UTC))
    except NodeNotRunning as error:
        raise CommandRejected(f"the parent no longer waits for this child: {error}") from None
    return {"run_id": str(parent.id), "node": child.parent["node_id"], "status": parent.status}


def agents_to_resume(records: list[Record], uow: UnitOfWork) -> list[LlmCall]:
    """Agent nodes whose last tool call a child run has just answered: their next model
    turn is due (the worker's agent loop ended while the children ran)."""
    calls = []
    for record in records:
        if record.headers.get("type") != "WorkflowRun.ToolCallCompleted":
            continue
        envelope = json.loads(record.value)
        data = envelope["data"]
        run = uow.get(
            UUID(envelope["aggregate_id"]), at_least_version=envelope["aggregate_version"]
        )
        answered = (data["node_id"], data["attempt"], data["call_id"])
        if not isinstance(run, WorkflowRun) or not any(
            (child["node_id"], child["attempt"], child.get("call_id")) == answered
            for child in run.children.values()
        ):
            continue
        node_id, attempt = data["node_id"], data["attempt"]
        try:
            run.check_node_is_running(node_id, attempt)
        except NodeNotRunning:
            continue
        state = run.nodes[node_id]
        last = (state.get("messages") or [{}])[-1]
        if (
            last.get("tool_call_id") != data["call_id"]
            or run.pending_tool_calls(node_id)
            or run.waits_for_children(node_id)
        ):
            continue
        node = run.spec.nodes[node_id]
        assert isinstance(node, AgentNode)
        request = run.agent_request(node_id)
        calls.append(LlmCall(run.id, node_id, attempt, request, run.tenant, "agent", node.stream))
    return calls
