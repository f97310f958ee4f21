"""Command intake: validate each command, run its handler, record a receipt.

Every command ends in exactly one `CommandReceipt`, accepted or rejected with a reason
that says what to fix. A command whose receipt exists already (a redelivery, or a
client that sent it twice) changes nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from domain.commands import (
    COMMAND_TYPES,
    DEFAULT_TENANT,
    MAX_COMMAND_ID_LENGTH,
    CommandEnvelope,
    CommandReceipt,
    PublishWorkflow,
    StartRun,
    receipt_id,
    run_id_for,
    tenant_of,
)
from domain.definitions import WorkflowDefinition, definition_id, parse_definition
from domain.errors import (
    CommandRejected,
    DefinitionInvalid,
    RunAlreadyExists,
)
from domain.runs import WorkflowRun
from handlers.controls import (
    cancel_run,
    complete_remote_task,
    complete_task,
    fire_timer,
    pause_run,
    reassign_task,
    resume_run,
    set_variables,
    signal_run,
    skip_node,
)
from handlers.forks import edit_graph, fork_run
from handlers.records import Record
from handlers.subworkflows import complete_subworkflow, start_subworkflow
from handlers.threads import complete_thread, configure_tenant, open_thread, post_message
from handlers.unit_of_work import UnitOfWork
from handlers.versions import published_version

Handler = Callable[[Any, CommandEnvelope, UnitOfWork], dict[str, Any]]


def start_run(command: StartRun, envelope: CommandEnvelope, uow: UnitOfWork) -> dict[str, Any]:
    """Start a run of the pinned (or latest) version of a published workflow."""
    version = published_version(
        uow, envelope.tenant, command.workflow, command.version, command.input
    )
    run_id = command.run_id or run_id_for(envelope.tenant, envelope.command_id)
    if uow.get(run_id) is not None:
        raise RunAlreadyExists(f"run {run_id} exists already: choose another run_id")
    run = WorkflowRun(
        run_id=run_id,
        tenant=envelope.tenant,
        actor=envelope.actor,
        workflow=command.workflow,
        version=version["version"],
        content_hash=version["content_hash"],
        graph=version["spec"],
        input=command.input,
        command_id=envelope.command_id,
    )
    run.advance(now=datetime.now(UTC))
    uow.add(run)
    return {"run_id": str(run_id), "workflow": command.workflow, "version": version["version"]}


def publish_workflow(
    command: PublishWorkflow,
    envelope: CommandEnvelope,
    uow: UnitOfWork,
    allowed_hosts: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Validate a definition and publish it as a new version (or the same, if unchanged);
    its HTTP tools may call only `allowed_hosts` (the deployment's allow-list)."""
    spec = parse_definition(command.definition, allowed_hosts)
    aggregate_id = definition_id(envelope.tenant, spec.name)
    definition = uow.get(aggregate_id)
    if definition is None:
        definition = WorkflowDefinition(tenant=envelope.tenant, name=spec.name)
        uow.add(definition)
    number = definition.publish(spec, envelope.actor)
    version = definition.get_version(number)
    return {"workflow": spec.name, "version": number, "content_hash": version["content_hash"]}


HANDLERS: dict[str, Handler] = {
    "StartRun": start_run,
    "PublishWorkflow": publish_workflow,
    "ForkRun": fork_run,
    "EditGraph": edit_graph,
    "CompleteTask": complete_task,
    "ReassignTask": reassign_task,
    "PauseRun": pause_run,
    "ResumeRun": resume_run,
    "CancelRun": cancel_run,
    "SkipNode": skip_node,
    "SignalRun": signal_run,
    "SetVariables": set_variables,
    "FireTimer": fire_timer,
    "CompleteRemoteTask": complete_remote_task,
    "StartSubworkflow": start_subworkflow,
    "CompleteSubworkflow": complete_subworkflow,
    "OpenThread": open_thread,
    "PostMessage": post_message,
    "CompleteThread": complete_thread,
    "ConfigureTenant": configure_tenant,
}


def task_result_as_command(record: Record) -> Record:
    """A message from `heddle.task-results` as the `CompleteRemoteTask` command it stands
    for (same position): decided once per task id, rejected with a reason when broken."""
    try:
        data = json.loads(record.value)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return record  # handle_command rejects it as malformed JSON
    if not isinstance(data, dict):
        return record
    task_id = data.get("task_id")
    worker = data.get("worker")
    command = {
        "command_id": f"task-result:{task_id}" if isinstance(task_id, str) else _position_id(record),
        "type": "CompleteRemoteTask",
        "tenant": data.get("tenant", DEFAULT_TENANT),
        "actor": f"worker:{worker}" if isinstance(worker, str) and worker else "worker",
        "payload": {k: v for k, v in data.items() if k != "tenant"},
    }
    return dataclasses.replace(record, value=json.dumps(command).encode())


def handle_command(
    record: Record, uow: UnitOfWork, allowed_hosts: frozenset[str] = frozenset()
) -> CommandReceipt | None:
    """Decide one command from the wire. Returns the new receipt, or None for a repeat.
    `allowed_hosts`: the hosts a published definition's HTTP tools may call."""
    try:
        data = json.loads(record.value)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return _reject(uow, _position_id(record), "?", None, f"malformed JSON: {error}")
    if not isinstance(data, dict):
        return _reject(uow, _position_id(record), "?", None, "a command must be a JSON object")
    command_id = data.get("command_id")
    if not isinstance(command_id, str) or not 0 < len(command_id) <= MAX_COMMAND_ID_LENGTH:
        command_id = _position_id(record)  # its receipt still says what is wrong with it
    if uow.get(receipt_id(tenant_of(data), command_id)) is not None:
        return None
    try:
        envelope = CommandEnvelope.model_validate(data)
    except ValidationError as error:
        return _reject(uow, command_id, str(data.get("type", "?")), data, _explain(error))
    return execute(envelope, uow, allowed_hosts)


def execute(
    envelope: CommandEnvelope, uow: UnitOfWork, allowed_hosts: frozenset[str] = frozenset()
) -> CommandReceipt | None:
    """Run a validated command's handler and record its receipt. `allowed_hosts`: the
    hosts a published definition's HTTP tools may call."""
    if uow.get(receipt_id(envelope.tenant, envelope.command_id)) is not None:
        return None
    payload_type = COMMAND_TYPES.get(envelope.type)
    if payload_type is None:
        known = ", ".join(COMMAND_TYPES)
        reason = f"unknown command type {envelope.type!r} (known: {known})"
        return _reject(uow, envelope.command_id, envelope.type, envelope.model_dump(), reason)
    try:
        payload = payload_type.model_validate(envelope.payload)
    except ValidationError as error:
        reason = _explain(error, prefix="payload")
        return _reject(uow, envelope.command_id, envelope.type, envelope.model_dump(), reason)
    before = {id(a) for a in uow.changed()}
    try:
        handler = HANDLERS[envelope.type]
        if handler is publish_workflow:  # the one handler that needs the allow-list
            handler = functools.partial(publish_workflow, allowed_hosts=allowed_hosts)
        result = handler(payload, envelope, uow)
    except (CommandRejected, DefinitionInvalid) as error:
        for aggregate in uow.changed():
            if id(aggregate) not in before:
                uow.discard(aggregate.id)
        return _reject(uow, envelope.command_id, envelope.type, envelope.model_dump(), str(error))
    receipt = CommandReceipt(
        command_id=envelope.command_id,
        type=envelope.type,
        tenant=envelope.tenant,
        actor=envelope.actor,
        outcome="accepted",
        reason=None,
        result=result,
        correlation_id=envelope.correlation_id,
    )
    uow.add(receipt)
    return receipt


def _reject(
    uow: UnitOfWork, command_id: str, type_: str, data: dict[str, Any] | None, reason: str
) -> CommandReceipt:
    data = data if isinstance(data, dict) else {}
    actor, correlation_id = data.get("actor"), data.get("correlation_id")
    receipt = CommandReceipt(
        command_id=command_id,
        type=type_[:100],
        tenant=tenant_of(data),
        actor=actor[:200] if isinstance(actor, str) and actor else "anonymous",
        outcome="rejected",
        reason=reason,
        result={},
        correlation_id=correlation_id[:200] if isinstance(correlation_id, str) else None,
    )
    uow.add(receipt)
    return receipt


def _position_id(record: Record) -> str:
    """An id for a message too broken to carry its own: where it was read from."""
    return f"{record.topic}/{record.partition}/{record.offset}"


def _explain(error: ValidationError, prefix: str = "") -> str:
    parts = []
    for item in error.errors():
        path = ".".join(str(p) for p in (prefix, *item["loc"]) if p != "")
        parts.append(f"{path}: {item['msg']}" if path else item["msg"])
    return "invalid command: " + "; ".join(parts)


