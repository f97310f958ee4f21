"""Command intake: validate each command, run its handler, record a receipt.

Every command ends in exactly one `CommandReceipt`, accepted or rejected with a reason
that says what to fix. A command whose receipt exists already (a redelivery, or a
client that sent it twice) changes nothing.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from domain.commands import (
    ADMIN_COMMANDS,
    COMMAND_TYPES,
    DEFAULT_TENANT,
    INTERNAL_COMMANDS,
    MAX_COMMAND_ID_LENGTH,
    TENANT_PATTERN,
    CancelRun,
    CommandReceipt,
    CompleteRemoteTask,
    CompleteRun,
    CompleteSubworkflow,
    CompleteTask,
    CompleteThread,
    ConfigureTenant,
    CreateSchedule,
    DeleteSchedule,
    EditGraph,
    FireSchedule,
    FireTimer,
    ForkRun,
    OpenThread,
    PauseRun,
    PauseSchedule,
    PostMessage,
    PublishWorkflow,
    ReassignTask,
    ResumeRun,
    ResumeSchedule,
    SetVariables,
    SignalRun,
    SkipNode,
    StartRun,
    StartSubworkflow,
    receipt_id,
    tenant_of,
)
from domain.customers import (
    EvaluateCustomer,
    RecordCustomerSignal,
    SnoozeQueueItem,
    UpdateCustomer,
    UpsertCustomer,
)
from domain.errors import CommandRejected, DefinitionInvalid
from domain.messages import CommandEnvelope
from domain.playbooks import PublishPlaybook
from handlers.commands import customers, runs, schedules, threads
from handlers.commands.context import Context
from handlers.commands.definitions import publish_workflow
from handlers.commands.forks import fork_run
from handlers.commands.tenants import configure_tenant
from handlers.records import Record
from handlers.unit_of_work import UnitOfWork

Handler = Callable[[Any, CommandEnvelope, UnitOfWork, Context], dict[str, Any]]
"""(command, its envelope, the unit of work, the context) → the accepted receipt's result."""

COMMAND_HANDLERS: dict[type[BaseModel], Handler] = {
    StartRun: runs.start_run,
    PublishWorkflow: publish_workflow,
    ForkRun: fork_run,
    EditGraph: runs.edit_graph,
    CompleteTask: runs.complete_task,
    ReassignTask: runs.reassign_task,
    PauseRun: runs.pause_run,
    ResumeRun: runs.resume_run,
    CancelRun: runs.cancel_run,
    CompleteRun: runs.complete_run,
    SkipNode: runs.skip_node,
    SignalRun: runs.signal_run,
    SetVariables: runs.set_variables,
    FireTimer: runs.fire_timer,
    CompleteRemoteTask: runs.complete_remote_task,
    StartSubworkflow: runs.start_subworkflow,
    CompleteSubworkflow: runs.complete_subworkflow,
    OpenThread: threads.open_thread,
    PostMessage: threads.post_message,
    CompleteThread: threads.complete_thread,
    ConfigureTenant: configure_tenant,
    CreateSchedule: schedules.create_schedule,
    PauseSchedule: schedules.pause_schedule,
    ResumeSchedule: schedules.resume_schedule,
    DeleteSchedule: schedules.delete_schedule,
    FireSchedule: schedules.fire_schedule,
    UpsertCustomer: customers.upsert_customer,
    UpdateCustomer: customers.update_customer,
    RecordCustomerSignal: customers.record_customer_signal,
    EvaluateCustomer: customers.evaluate_customer,
    SnoozeQueueItem: customers.snooze_queue_item,
    PublishPlaybook: customers.publish_playbook,
}
"""The handler of each command, by its class (`domain.commands.COMMAND_TYPES` names them)."""


def task_result_as_command(record: Record) -> Record:
    """A message from `heddle.task-results` as the `CompleteRemoteTask` command it stands
    for (same position): decided once per task id, rejected with a reason when broken."""
    try:
        data = json.loads(record.value)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return record  # handle_command rejects it as unreadable
    if not isinstance(data, dict):
        return record
    task_id = data.get("task_id")
    worker = data.get("worker")
    command = {
        "command_id": f"task-result:{task_id}" if isinstance(task_id, str) else position_id(record),
        "type": "CompleteRemoteTask",
        "tenant": data.get("tenant", DEFAULT_TENANT),
        "actor": f"worker:{worker}" if isinstance(worker, str) and worker else "worker",
        "payload": {k: v for k, v in data.items() if k != "tenant"},
    }
    return dataclasses.replace(record, value=json.dumps(command).encode())


def handle_command(
    record: Record, uow: UnitOfWork, ctx: Context | None = None, tenant: str | None = None
) -> CommandReceipt | None:
    """Decide one command from the wire. Returns the new receipt, or None for a repeat.
    `ctx`: the time and the deployment's rules (now, and no HTTP host, by default).
    `tenant`: the tenant the record's topic belongs to (a tenant's own command topic),
    which the command is bound to: its receipt is that tenant's, whatever it names, and
    it is rejected if it names another tenant or is a command only Heddle or an admin
    sends."""
    if tenant is not None and not re.match(TENANT_PATTERN, tenant):
        reason = f"the topic {record.topic} names no valid tenant ({tenant!r})"
        return reject(uow, position_id(record), "?", None, reason)
    try:
        data = json.loads(record.value)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return reject(uow, position_id(record), "?", None, f"malformed JSON: {error}")
    except RecursionError:
        reason = "the command nests objects and lists too deeply to read"
        return reject(uow, position_id(record), "?", None, reason)
    if not isinstance(data, dict):
        return reject(uow, position_id(record), "?", None, "a command must be a JSON object")
    command_id = data.get("command_id")
    if not isinstance(command_id, str) or not 0 < len(command_id) <= MAX_COMMAND_ID_LENGTH:
        command_id = position_id(record)  # its receipt still says what is wrong with it
    refused = None
    if tenant is not None:
        refused = bound_problem(data, tenant)
        data = {**data, "tenant": tenant}
    if uow.exists(receipt_id(tenant_of(data), command_id)):
        return None
    if refused:
        return reject(uow, command_id, str(data.get("type", "?")), data, refused)
    try:
        envelope = CommandEnvelope.model_validate(data)
    except ValidationError as error:
        return reject(uow, command_id, str(data.get("type", "?")), data, explain(error))
    return execute(envelope, uow, ctx)


def execute(
    envelope: CommandEnvelope, uow: UnitOfWork, ctx: Context | None = None
) -> CommandReceipt | None:
    """Run a validated command's handler and record its receipt."""
    if uow.exists(receipt_id(envelope.tenant, envelope.command_id)):
        return None
    payload_type = COMMAND_TYPES.get(envelope.type)
    if payload_type is None:
        known = ", ".join(COMMAND_TYPES)
        reason = f"unknown command type {envelope.type!r} (known: {known})"
        return reject(uow, envelope.command_id, envelope.type, envelope.model_dump(), reason)
    try:
        payload = payload_type.model_validate(envelope.payload)
    except ValidationError as error:
        reason = explain(error, prefix="payload")
        return reject(uow, envelope.command_id, envelope.type, envelope.model_dump(), reason)
    reserved = reserved_path(envelope.payload, "payload")
    if reserved is not None:
        reason = (
            f"invalid command: {reserved}: an object of exactly `_type_` and `_data_` is how"
            " the event store encodes its own values: rename a key"
        )
        return reject(uow, envelope.command_id, envelope.type, envelope.model_dump(), reason)
    before = {id(a) for a in uow.changed()}
    try:
        result = COMMAND_HANDLERS[type(payload)](payload, envelope, uow, ctx or Context())
    except (CommandRejected, DefinitionInvalid) as error:
        for aggregate in uow.changed():
            if id(aggregate) not in before:
                uow.discard(aggregate.id)
        return reject(uow, envelope.command_id, envelope.type, envelope.model_dump(), str(error))
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


def bound_problem(data: dict[str, Any], tenant: str) -> str | None:
    """Why a command on `tenant`'s own topic is refused, if it is: it names another
    tenant, or it is a command only Heddle's roles (or an admin, through the API) send."""
    named, type_ = data.get("tenant", tenant), data.get("type")
    if named != tenant:
        return (
            f"this topic takes the commands of tenant {tenant!r} only; "
            f"the command names tenant {str(named)[:100]!r}"
        )
    if type_ in INTERNAL_COMMANDS:
        return f"{type_} is sent by Heddle itself ({INTERNAL_COMMANDS[type_]}), never by a tenant"
    if type_ in ADMIN_COMMANDS:
        return f"{type_} is an admin command: send it through the API with an admin key"
    return None


def reserved_path(value: Any, root: str) -> str | None:
    """The path of the first object in `value` that the event store would read back as
    one of its encoded values (`{"_type_": ..., "_data_": ...}`), or None."""
    stack: list[tuple[str, Any]] = [(root, value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, dict):
            if item.keys() == {"_type_", "_data_"}:
                return path
            stack += [(f"{path}.{key}", inner) for key, inner in item.items()]
        elif isinstance(item, list):
            stack += [(f"{path}[{index}]", inner) for index, inner in enumerate(item)]
    return None


MAX_REASON = 2000
"""A reason is cut to this many characters (one that quotes a huge value stays readable,
and its outcome message small)."""


def reject(
    uow: UnitOfWork, command_id: str, type_: str, data: dict[str, Any] | None, reason: str
) -> CommandReceipt:
    """Record a rejected receipt, with what the command's data says of who sent it."""
    data = data if isinstance(data, dict) else {}
    actor, correlation_id = data.get("actor"), data.get("correlation_id")
    receipt = CommandReceipt(
        command_id=command_id,
        type=type_[:100],
        tenant=tenant_of(data),
        actor=actor[:200] if isinstance(actor, str) and actor else "anonymous",
        outcome="rejected",
        reason=reason if len(reason) <= MAX_REASON else f"{reason[:MAX_REASON]}…",
        result={},
        correlation_id=correlation_id[:200] if isinstance(correlation_id, str) else None,
    )
    uow.add(receipt)
    return receipt


def position_id(record: Record) -> str:
    """An id for a message too broken to carry its own: where it was read from."""
    return f"{record.topic}/{record.partition}/{record.offset}"


def explain(error: ValidationError, prefix: str = "") -> str:
    """A validation error as a rejection's reason: each field's path and problem."""
    parts = []
    for item in error.errors():
        path = ".".join(str(p) for p in (prefix, *item["loc"]) if p != "")
        parts.append(f"{path}: {item['msg']}" if path else item["msg"])
    return "invalid command: " + "; ".join(parts)
