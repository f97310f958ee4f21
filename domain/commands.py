"""Commands: the payload of each type, and receipts (the envelope is in `domain.messages`).

A `CommandReceipt` records, once per command id, whether the command was accepted or
rejected and why. It makes redelivery harmless: a command whose receipt exists changes
nothing, and anyone can look up what became of a command by its id.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event
from pydantic import BaseModel, ConfigDict, Field

from domain.customers import (
    CUSTOMER_ID,
    EvaluateCustomer,
    RecordCustomerSignal,
    SnoozeQueueItem,
    UpdateCustomer,
    UpsertCustomer,
)
from domain.definitions import HEDDLE_NAMESPACE
from domain.edits import Edit
from domain.playbooks import PublishPlaybook
from domain.schedules import SCHEDULE_NAME, ScheduleSpec

MAX_COMMAND_ID_LENGTH = 200
TENANT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
DEFAULT_TENANT = "default"


class StartRun(BaseModel):
    """Start a run of a published workflow (the latest version unless `version` is set)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workflow: str = Field(min_length=1, max_length=128)
    version: int | None = Field(default=None, ge=1)
    run_id: UUID | None = None
    input: dict[str, Any] = Field(default_factory=dict)
    customer_id: str | None = Field(default=None, pattern=CUSTOMER_ID, description="for whom")
    assignee: str | None = Field(default=None, max_length=200, description="who works on it")
    priority: float | None = Field(default=None, description="its queue item's score")

    def binding(self) -> dict[str, Any] | None:
        """Whom the run is for and who works on it, when the command says."""
        bound = {"customer_id": self.customer_id, "assignee": self.assignee,
                 "priority": self.priority}  # fmt: skip
        return {k: v for k, v in bound.items() if v is not None} or None


class PublishWorkflow(BaseModel):
    """Publish a workflow definition as a new version."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    definition: dict[str, Any]


class ForkRun(BaseModel):
    """Start a new run from a node of an existing one: the nodes that finished before that
    node started are reused as recorded, and the run goes on live from the node, with
    `variables`, `prompts` and `models` overridden. In `recorded` mode a later `llm` node
    whose request is unchanged gets the source run's recorded answer instead of a call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source_run_id: UUID
    from_node: str = Field(min_length=1, max_length=64)
    run_id: UUID | None = None
    mode: Literal["live", "recorded"] = "live"
    variables: dict[str, Any] = Field(default_factory=dict)
    prompts: dict[str, str] = Field(default_factory=dict)
    models: dict[str, str] = Field(default_factory=dict)


class EditGraph(BaseModel):
    """Change a running run's graph: every edit or none (see docs/replay.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: UUID
    edits: list[Edit] = Field(min_length=1, max_length=100)
    reason: str = Field(min_length=1, max_length=1000)


class CompleteTask(BaseModel):
    """Complete an open task of a run: a `human` node's (`task` is the node id) or its
    budget approval (`task` is `budget`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: UUID
    task: str = Field(min_length=1, max_length=64)
    decision: Literal["approve", "reject"] | None = None
    input: dict[str, Any] | None = None
    comment: str = Field(default="", max_length=5000)


class ReassignTask(BaseModel):
    """Give an open task to another assignee or role, or raise its priority (escalate)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: UUID
    task: str = Field(min_length=1, max_length=64)
    assignee: str | None = Field(default=None, max_length=200)
    role: str | None = Field(default=None, max_length=100)
    priority: int | None = Field(default=None, ge=0, le=100)
    reason: str = Field(default="", max_length=1000)


class PauseRun(BaseModel):
    """Start no new node until `ResumeRun` (or until `until`: snooze); calls in flight
    finish and are recorded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: UUID
    reason: str = Field(default="", max_length=1000)
    until: str | None = Field(default=None, description="ISO 8601 time or duration (2h)")


class ResumeRun(BaseModel):
    """Go on with a paused run, now or at `at` (schedule)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: UUID
    at: str | None = Field(default=None, description="ISO 8601 time or duration (2h)")


class SkipNode(BaseModel):
    """Skip a step that is running, waiting or retrying: it completes with no output."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: UUID
    node: str = Field(min_length=1, max_length=64)
    reason: str = Field(default="", max_length=1000)


class SignalRun(BaseModel):
    """Send an outside event to a run: `wait` nodes whose `event` condition holds go on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: UUID
    name: str = Field(min_length=1, max_length=200)
    data: dict[str, Any] = Field(default_factory=dict)


class SetVariables(BaseModel):
    """Set variables of a run from outside; edges waiting for a condition over them are
    checked again (docs/workflows.md, "Edges")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: UUID
    variables: dict[str, Any] = Field(min_length=1, max_length=100)
    reason: str = Field(default="", max_length=1000)


class FireTimer(BaseModel):
    """Sent by the timer role when a run's timer is due (not meant for people)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: UUID
    timer: str = Field(min_length=1, max_length=200)


class CancelRun(BaseModel):
    """End a run: its running nodes and open tasks are cancelled."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: UUID
    reason: str = Field(default="", max_length=1000)


class CompleteRun(BaseModel):
    """A person ends a run with an `outcome` (and notes): what is running and what is
    still to come is recorded as skipped, and the run completes with the outcome."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: UUID
    outcome: str = Field(min_length=1, max_length=200)
    notes: str = Field(default="", max_length=5000)


class StartSubworkflow(BaseModel):
    """Sent by the worker when a `subworkflow` node starts or an agent calls a workflow
    tool (not meant for people): start the child run the parent waits for, as the parent
    recorded it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: UUID = Field(description="the parent run")
    child_run_id: UUID


class CompleteSubworkflow(BaseModel):
    """Sent by the worker when a child run ends (not meant for people): its parent's
    `subworkflow` node completes with the child's output, or fails with its error."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    child_run_id: UUID


class OpenThread(BaseModel):
    """Open a chat thread. With `workflow`, a run of that conversation workflow answers
    each message; without, the tenant's AI mode does (`ConfigureTenant`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    thread_id: UUID | None = None
    title: str = Field(default="", max_length=500)
    workflow: str | None = Field(default=None, min_length=1, max_length=128)


class PostMessage(BaseModel):
    """Post a person's message to a thread; with `branch`, pick one of its branches."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    thread_id: UUID
    content: str = Field(default="", max_length=100_000)
    branch: str | None = Field(default=None, min_length=1, max_length=64)


class CompleteThread(BaseModel):
    """Close a thread; a `chat` node's thread completes the node with the transcript and
    `data`, and its run moves on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    thread_id: UUID
    data: dict[str, Any] = Field(default_factory=dict)


class ConfigureTenant(BaseModel):
    """Set how a tenant's free threads are answered (admins only through the API): `simple`
    is one model reply per message; `orchestrator` an agent with the tenant's `tools`.
    Secrets never go here: `credential` names a stored credential."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ai_mode: Literal["simple", "orchestrator"] = "simple"
    model: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_-]*:.+$")
    system: str | None = Field(default=None, max_length=20_000)
    tools: list[str] = Field(default_factory=list, max_length=50)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, gt=0)
    max_steps: int = Field(default=8, ge=1, le=100)
    credential: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    options: dict[str, Any] = Field(default_factory=dict)


TASK_ID = r"^[0-9a-f-]{36}:[A-Za-z_][A-Za-z0-9_-]{0,63}:[0-9]+$"


class CreateSchedule(ScheduleSpec):
    """Create a schedule, or change the one of that name (domain/schedules.py)."""

    name: str = Field(pattern=SCHEDULE_NAME)


class PauseSchedule(BaseModel):
    """Stop a schedule firing until it is resumed (ticks meanwhile are not caught up)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=SCHEDULE_NAME)


class ResumeSchedule(PauseSchedule):
    """Let a paused schedule fire again, from its next tick."""


class DeleteSchedule(PauseSchedule):
    """Delete a schedule (its runs stay; creating it again starts afresh)."""


class FireSchedule(BaseModel):
    """Sent by the timer role for each tick of a schedule (not meant for people)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=SCHEDULE_NAME)
    tick: datetime


class TaskError(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    message: str = Field(min_length=1, max_length=5000)
    code: str | None = Field(default=None, max_length=200)


class CompleteRemoteTask(BaseModel):
    """What a remote worker answers for a task (docs/remote.md). Sent on
    `heddle.task-results`, Heddle turns it into this command, once per `task_id`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task_id: str = Field(pattern=TASK_ID, description="the task's id, as it was sent")
    status: Literal["ok", "task_error", "infra_error"]
    output: Any = None
    error: TaskError | None = None
    edits: list[Edit] = Field(default_factory=list, max_length=100)
    worker: str | None = Field(default=None, max_length=200, description="who did it")

    def parts(self) -> tuple[UUID, str, int]:
        """The run, node and attempt the task id names."""
        run_id, node_id, attempt = self.task_id.split(":")
        return UUID(run_id), node_id, int(attempt)


COMMAND_TYPES: dict[str, type[BaseModel]] = {
    "StartRun": StartRun,
    "PublishWorkflow": PublishWorkflow,
    "ForkRun": ForkRun,
    "EditGraph": EditGraph,
    "CompleteTask": CompleteTask,
    "ReassignTask": ReassignTask,
    "PauseRun": PauseRun,
    "ResumeRun": ResumeRun,
    "CancelRun": CancelRun,
    "CompleteRun": CompleteRun,
    "SkipNode": SkipNode,
    "SignalRun": SignalRun,
    "SetVariables": SetVariables,
    "FireTimer": FireTimer,
    "CompleteRemoteTask": CompleteRemoteTask,
    "StartSubworkflow": StartSubworkflow,
    "CompleteSubworkflow": CompleteSubworkflow,
    "OpenThread": OpenThread,
    "PostMessage": PostMessage,
    "CompleteThread": CompleteThread,
    "ConfigureTenant": ConfigureTenant,
    "CreateSchedule": CreateSchedule,
    "PauseSchedule": PauseSchedule,
    "ResumeSchedule": ResumeSchedule,
    "DeleteSchedule": DeleteSchedule,
    "FireSchedule": FireSchedule,
    "UpsertCustomer": UpsertCustomer,
    "UpdateCustomer": UpdateCustomer,
    "RecordCustomerSignal": RecordCustomerSignal,
    "EvaluateCustomer": EvaluateCustomer,
    "SnoozeQueueItem": SnoozeQueueItem,
    "PublishPlaybook": PublishPlaybook,
}
ADMIN_COMMANDS = frozenset({"ConfigureTenant"})
"""Commands the API takes only from keys with the `admin` scope."""
INTERNAL_COMMANDS = {
    "FireTimer": "the timer role",
    "FireSchedule": "the timer role",
    "CompleteRemoteTask": "the intake, from results on heddle.task-results",
    "StartSubworkflow": "the run worker",
    "CompleteSubworkflow": "the run worker",
}
"""Commands only Heddle itself sends, by who sends them: the API takes none of them."""


def receipt_id(tenant: str, command_id: str) -> UUID:
    """Command ids are the sender's: unique within a tenant, not across tenants."""
    return uuid5(HEDDLE_NAMESPACE, f"command/{tenant}/{command_id}")


def run_id_for(tenant: str, command_id: str) -> UUID:
    """The run id a `StartRun` without `run_id` gets: the same on every redelivery."""
    return uuid5(HEDDLE_NAMESPACE, f"run/{tenant}/{command_id}")


def tenant_of(data: dict[str, Any]) -> str:
    """The tenant a raw command names, or the default one when it names none or a bad one."""
    tenant = data.get("tenant", DEFAULT_TENANT)
    if isinstance(tenant, str) and re.match(TENANT_PATTERN, tenant):
        return tenant
    return DEFAULT_TENANT


class CommandReceipt(Aggregate):
    """What became of one command: accepted (and what it touched) or rejected (and why)."""

    @staticmethod
    def create_id(command_id: str, tenant: str, **_: Any) -> UUID:
        return receipt_id(tenant, command_id)

    @event("Recorded")
    def __init__(
        self,
        command_id: str,
        type: str,
        tenant: str,
        actor: str,
        outcome: Literal["accepted", "rejected"],
        reason: str | None,
        result: dict[str, Any],
        correlation_id: str | None = None,
    ) -> None:
        self.command_id = command_id
        self.correlation_id = correlation_id
        self.type = type
        self.tenant = tenant
        self.actor = actor
        self.outcome = outcome
        self.reason = reason
        self.result = result

    def as_result(self) -> dict[str, Any]:
        """The message published on `heddle.command-results` and served by the API."""
        return {
            "command_id": self.command_id,
            "type": self.type,
            "tenant": self.tenant,
            "correlation_id": self.correlation_id,
            "status": self.outcome,
            "reason": self.reason,
            "result": self.result,
        }
