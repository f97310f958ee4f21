"""Commands that change a `WorkflowRun`: start it, steer it while it runs (tasks, pause,
resume, cancel, skip, signals, variables, timers, remote results, graph edits) and
start or report its child runs. Each decision is the run's; these only route them."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from domain.commands import (
    CancelRun,
    CompleteRemoteTask,
    CompleteRun,
    CompleteSubworkflow,
    CompleteTask,
    EditGraph,
    FireTimer,
    PauseRun,
    ReassignTask,
    ResumeRun,
    SetVariables,
    SignalRun,
    SkipNode,
    StartRun,
    StartSubworkflow,
    run_id_for,
)
from domain.errors import CommandRejected, NodeNotRunning, RunAlreadyExists, RunNotFound
from domain.messages import CommandEnvelope
from domain.runs import WorkflowRun
from handlers.commands.context import Context
from handlers.commands.customers import customer_of
from handlers.commands.definitions import published_version
from handlers.unit_of_work import UnitOfWork


def new_run(
    uow: UnitOfWork, run_id: UUID, envelope: CommandEnvelope, ctx: Context, **facts: Any
) -> WorkflowRun:
    """Create a run (`facts`: workflow, version, content_hash, graph, input and, for a
    child or a fork, parent or fork), start what is ready and add it to the unit of work:
    the one way a run begins, for starts, forks, subworkflows and conversations."""
    run = WorkflowRun(
        run_id=run_id,
        tenant=envelope.tenant,
        actor=envelope.actor,
        command_id=envelope.command_id,
        **facts,
    )
    if facts.get("fork") is not None:
        run.reopen_edges(now=ctx.now)
    run.advance(now=ctx.now)
    uow.add(run)
    return run


def run_of(uow: UnitOfWork, run_id: UUID, tenant: str) -> WorkflowRun:
    """The run `run_id` of `tenant`; `RunNotFound` for another tenant's, as for none."""
    run = uow.get(run_id, WorkflowRun)
    if run is None or run.tenant != tenant:
        raise RunNotFound(f"no run {run_id}")
    return run


def start_run(
    command: StartRun, envelope: CommandEnvelope, uow: UnitOfWork, ctx: Context
) -> dict[str, Any]:
    """Start a run of the pinned (or latest) version of a published workflow."""
    version = published_version(
        uow, envelope.tenant, command.workflow, command.version, command.input
    )
    run_id = command.run_id or run_id_for(envelope.tenant, envelope.command_id)
    if uow.exists(run_id):
        raise RunAlreadyExists(f"run {run_id} exists already: choose another run_id")
    if command.customer_id is not None:
        customer_of(uow, envelope.tenant, command.customer_id)
    new_run(
        uow, run_id, envelope, ctx,
        workflow=command.workflow,
        version=version["version"],
        content_hash=version["content_hash"],
        graph=version["spec"],
        input=command.input,
        binding=command.binding(),
    )  # fmt: skip
    return {"run_id": str(run_id), "workflow": command.workflow, "version": version["version"]}


def complete_task(
    command: CompleteTask, envelope: CommandEnvelope, uow: UnitOfWork, ctx: Context
) -> dict[str, Any]:
    run = run_of(uow, command.run_id, envelope.tenant)
    run.complete_task(
        command.task, envelope.actor, command.decision, command.input, command.comment,
        now=ctx.now,
    )  # fmt: skip
    return {"run_id": str(run.id), "task": command.task, "status": run.status}


def reassign_task(
    command: ReassignTask, envelope: CommandEnvelope, uow: UnitOfWork, ctx: Context
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


def pause_run(
    command: PauseRun, envelope: CommandEnvelope, uow: UnitOfWork, ctx: Context
) -> dict[str, Any]:
    run = run_of(uow, command.run_id, envelope.tenant)
    run.pause(envelope.actor, command.reason, command.until, now=ctx.now)
    return {"run_id": str(run.id), "status": run.status}


def resume_run(
    command: ResumeRun, envelope: CommandEnvelope, uow: UnitOfWork, ctx: Context
) -> dict[str, Any]:
    run = run_of(uow, command.run_id, envelope.tenant)
    run.resume(envelope.actor, command.at, now=ctx.now)
    return {"run_id": str(run.id), "status": run.status}


def cancel_run(
    command: CancelRun, envelope: CommandEnvelope, uow: UnitOfWork, ctx: Context
) -> dict[str, Any]:
    run = run_of(uow, command.run_id, envelope.tenant)
    run.cancel(envelope.actor, command.reason)
    return {"run_id": str(run.id), "status": run.status}


def skip_node(
    command: SkipNode, envelope: CommandEnvelope, uow: UnitOfWork, ctx: Context
) -> dict[str, Any]:
    run = run_of(uow, command.run_id, envelope.tenant)
    run.skip_node(command.node, envelope.actor, command.reason, now=ctx.now)
    return {"run_id": str(run.id), "node": command.node, "status": run.status}


def signal_run(
    command: SignalRun, envelope: CommandEnvelope, uow: UnitOfWork, ctx: Context
) -> dict[str, Any]:
    run = run_of(uow, command.run_id, envelope.tenant)
    matched = run.signal(command.name, command.data, envelope.actor, now=ctx.now)
    return {"run_id": str(run.id), "nodes": matched, "status": run.status}


def set_variables(
    command: SetVariables, envelope: CommandEnvelope, uow: UnitOfWork, ctx: Context
) -> dict[str, Any]:
    run = run_of(uow, command.run_id, envelope.tenant)
    run.set_variables(command.variables, envelope.actor, command.reason, now=ctx.now)
    return {"run_id": str(run.id), "status": run.status}


def fire_timer(
    command: FireTimer, envelope: CommandEnvelope, uow: UnitOfWork, ctx: Context
) -> dict[str, Any]:
    run = run_of(uow, command.run_id, envelope.tenant)
    fired = run.fire_timer(command.timer, now=ctx.now)
    return {"run_id": str(run.id), "timer": command.timer, "fired": fired, "status": run.status}


def complete_remote_task(
    command: CompleteRemoteTask, envelope: CommandEnvelope, uow: UnitOfWork, ctx: Context
) -> dict[str, Any]:
    run_id, node_id, attempt = command.parts()
    run = run_of(uow, run_id, envelope.tenant)
    error = command.error.model_dump() if command.error else None
    try:
        run.complete_remote(
            node_id, attempt, command.status, command.output, error, list(command.edits),
            envelope.actor, now=ctx.now, allowed_hosts=ctx.allowed_hosts,
        )  # fmt: skip
    except NodeNotRunning:
        raise CommandRejected(
            f"task {command.task_id} is not running any more (a late or repeated result)"
        ) from None
    return {"run_id": str(run.id), "node": node_id, "status": run.status}


def edit_graph(
    command: EditGraph, envelope: CommandEnvelope, uow: UnitOfWork, ctx: Context
) -> dict[str, Any]:
    """Apply a graph edit to a running run of the caller's tenant."""
    run = run_of(uow, command.run_id, envelope.tenant)
    before = {n for n, s in run.nodes.items() if s["status"] != "pending"}
    run.edit_graph(
        list(command.edits), envelope.actor, command.reason,
        now=ctx.now, allowed_hosts=ctx.allowed_hosts,
    )  # fmt: skip
    return {
        "run_id": str(run.id),
        "content_hash": run.content_hash,
        "started": [
            n for n, s in run.nodes.items() if s["status"] != "pending" and n not in before
        ],
    }


def start_subworkflow(
    command: StartSubworkflow, envelope: CommandEnvelope, uow: UnitOfWork, ctx: Context
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
    if uow.exists(child_id):
        return result
    try:
        version = published_version(
            uow, envelope.tenant, started["workflow"], started["version"], started["input"]
        )
    except CommandRejected as error:
        message = f"cannot start subworkflow {started['workflow']!r}: {error}"
        parent.fail_subworkflow_start(str(child_id), message, now=ctx.now)
        return {**result, "child_run_id": None, "reason": message}
    new_run(
        uow, child_id, envelope, ctx,
        workflow=started["workflow"],
        version=version["version"],
        content_hash=version["content_hash"],
        graph=version["spec"],
        input=started["input"],
        parent=started["parent"],
    )  # fmt: skip
    return result


def complete_subworkflow(
    command: CompleteSubworkflow, envelope: CommandEnvelope, uow: UnitOfWork, ctx: Context
) -> dict[str, Any]:
    """Hand a finished child run's outcome to the node of its parent that waits for it."""
    child = run_of(uow, command.child_run_id, envelope.tenant)
    if child.parent is None or not child.is_finished:
        raise CommandRejected(f"run {child.id} is not a finished child run")
    parent = run_of(uow, UUID(child.parent["run_id"]), envelope.tenant)
    try:
        parent.complete_subworkflow(
            str(child.id), child.status, child.output, child.error, now=ctx.now
        )
    except NodeNotRunning as error:
        raise CommandRejected(f"the parent no longer waits for this child: {error}") from None
    return {"run_id": str(parent.id), "node": child.parent["node_id"], "status": parent.status}


def complete_run(
    command: CompleteRun, envelope: CommandEnvelope, uow: UnitOfWork, ctx: Context
) -> dict[str, Any]:
    run = run_of(uow, command.run_id, envelope.tenant)
    run.complete_by(envelope.actor, command.outcome, command.notes)
    return {"run_id": str(run.id), "status": run.status, "outcome": command.outcome}
