"""Child runs: the commands that start and report the child runs of `subworkflow` nodes
and of agents' workflow tools (their handlers: handlers/commands/runs.py).

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

from typing import Any
from uuid import UUID

from domain.errors import NodeNotRunning
from domain.messages import NODE_ABANDONED, RUN_FINISHED, CommandEnvelope, RunEvent
from domain.runs import WorkflowRun
from handlers.unit_of_work import UnitOfWork

CHILD_REQUESTED = frozenset({RunEvent.NODE_STARTED, RunEvent.CHILD_RUN_REQUESTED})
REACTS_TO = frozenset({*CHILD_REQUESTED, *RUN_FINISHED, *NODE_ABANDONED})


def subworkflow_commands(
    events: list[dict[str, Any]], uow: UnitOfWork
) -> list[tuple[CommandEnvelope, str]]:
    """The commands (and their keys) that these events (decoded envelopes) call for, in
    order."""
    commands: dict[str, tuple[CommandEnvelope, str]] = {}

    def send(command_id: str, type_: str, tenant: str, payload: dict[str, Any], key: str) -> None:
        envelope = CommandEnvelope(
            command_id=command_id, type=type_, tenant=tenant, actor="heddle", payload=payload
        )
        commands.setdefault(command_id, (envelope, key))

    for event in events:
        kind = event["type"]
        if kind not in REACTS_TO:
            continue
        data = event["data"]
        if kind == RunEvent.NODE_STARTED and data["kind"] != "subworkflow":
            continue
        run = uow.get(UUID(event["aggregate_id"]), WorkflowRun, event["aggregate_version"])
        if run is None:
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
        if kind in RUN_FINISHED and run.parent is not None:
            send(
                f"subworkflow-result:{run.id}",
                "CompleteSubworkflow",
                run.tenant,
                {"child_run_id": str(run.id)},
                run.parent["run_id"],
            )
        if kind in NODE_ABANDONED:
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
