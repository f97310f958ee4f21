"""Commands people send about a run while it runs: complete or reassign a task, pause,
resume, cancel. Each decision is the run's (`WorkflowRun`); these only route them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from domain.commands import (
    CancelRun,
    CommandEnvelope,
    CompleteRemoteTask,
    CompleteTask,
    FireTimer,
    PauseRun,
    ReassignTask,
    ResumeRun,
    SetVariables,
    SignalRun,
    SkipNode,
)
from domain.errors import CommandRejected, NodeNotRunning
from handlers.forks import run_of
from handlers.unit_of_work import UnitOfWork


def complete_task(
    command: CompleteTask, envelope: CommandEnvelope, uow: UnitOfWork
) -> dict[str, Any]:
    run = run_of(uow, command.run_id, envelope.tenant)
    run.complete_task(
        command.task, envelope.actor, command.decision, command.input, command.comment,
        now=datetime.now(UTC),
    )
    return {"run_id": str(run.id), "task": command.task, "status": run.status}


def reassign_task(
    command: ReassignTask, envelope: CommandEnvelope, uow: UnitOfWork
) -> dict[str, Any]:
    run = run_of(uow, command.run_id, envelope.tenant)
    run.reassign_task(
        command.task,
        envelope.actor,
        command.assignee,
        command.role,
        command.priority,
        command.reason,
    )
    return {"run_id": str(run.id), "task": {command.task: run.tasks[command.task]}}


def pause_run(command: PauseRun, envelope: CommandEnvelope, uow: UnitOfWork) -> dict[str, Any]:
    run = run_of(uow, command.run_id, envelope.tenant)
    run.pause(envelope.actor, command.reason, command.until, now=datetime.now(UTC))
    return {"run_id": str(run.id), "status": run.status}


def resume_run(command: ResumeRun, envelope: CommandEnvelope, uow: UnitOfWork) -> dict[str, Any]:
    run = run_of(uow, command.run_id, envelope.tenant)
    run.resume(envelope.actor, command.at, now=datetime.now(UTC))
    return {"run_id": str(run.id), "status": run.status}


def cancel_run(command: CancelRun, envelope: CommandEnvelope, uow: UnitOfWork) -> dict[str, Any]:
    run = run_of(uow, command.run_id, envelope.tenant)
    run.cancel(envelope.actor, command.reason)
    return {"run_id": str(run.id), "status": run.status}


def skip_node(command: SkipNode, envelope: CommandEnvelope, uow: UnitOfWork) -> dict[str, Any]:
    run = run_of(uow, command.run_id, envelope.tenant)
    run.skip_node(command.node, envelope.actor, command.reason, now=datetime.now(UTC))
    return {"run_id": str(run.id), "node": command.node, "status": run.status}


def signal_run(command: SignalRun, envelope: CommandEnvelope, uow: UnitOfWork) -> dict[str, Any]:
    run = run_of(uow, command.run_id, envelope.tenant)
    matched = run.signal(command.name, command.data, envelope.actor, now=datetime.now(UTC))
    return {"run_id": str(run.id), "nodes": matched, "status": run.status}


def set_variables(
    command: SetVariables, envelope: CommandEnvelope, uow: UnitOfWork
) -> dict[str, Any]:
    run = run_of(uow, command.run_id, envelope.tenant)
    run.set_variables(command.variables, envelope.actor, command.reason, now=datetime.now(UTC))
    return {"run_id": str(run.id), "status": run.status}


def fire_timer(command: FireTimer, envelope: CommandEnvelope, uow: UnitOfWork) -> dict[str, Any]:
    run = run_of(uow, command.run_id, envelope.tenant)
    fired = run.fire_timer(command.timer, now=datetime.now(UTC))
    return {"run_id": str(run.id), "timer": command.timer, "fired": fired, "status": run.status}


def complete_remote_task(
    command: CompleteRemoteTask, envelope: CommandEnvelope, uow: UnitOfWork
) -> dict[str, Any]:
    run_id, node_id, attempt = command.parts()
    run = run_of(uow, run_id, envelope.tenant)
    error = command.error.model_dump() if command.error else None
    try:
        run.complete_remote(node_id, attempt, command.status, command.output, error,
                            list(command.edits), envelope.actor,
                            now=datetime.now(UTC),)
    except NodeNotRunning:
        raise CommandRejected(
            f"task {command.task_id} is not running any more (a late or repeated result)"
        ) from None
    return {"run_id": str(run.id), "node": node_id, "status": run.status}
