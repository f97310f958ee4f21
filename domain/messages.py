"""The wire contract: what Heddle's consumers read and write on its topics.

Envelopes and messages: `CommandEnvelope` (`heddle.commands`), `CommandOutcome`
(`heddle.command-results`), `EventEnvelope` (`heddle.events`), `TokenDelta` and its
documented form `TokenDeltaMessage` (`heddle.tokens`), `RemoteTask` and `TaskResult`
(a `remote` node's task topics and `heddle.task-results`), `DeadLetter` (`heddle.dlq`).
The AsyncAPI document (`api/http/asyncapi.py`) is generated from these models.

Event type names (`type` on `heddle.events`, `<aggregate>.<event>`) are the members of
`RunEvent`, `ThreadEvent`, `DefinitionEvent` and `TenantEvent`: string enums, so a
member is equal to the raw name and a table keyed by members is looked up with it. The
sets of them that more than one consumer shares live here too. `Event` is an envelope as
consumers receive it (decoded JSON), and each event's `data` has a `TypedDict` below:
projections read plain JSON (fast) and are checked by mypy against these shapes, and a
test keeps them equal to the fields the aggregates store.
"""

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, NotRequired, TypedDict
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from domain.commands import (
    DEFAULT_TENANT,
    MAX_COMMAND_ID_LENGTH,
    TENANT_PATTERN,
    CompleteRemoteTask,
)
from domain.schemas import nesting_problem


class CommandEnvelope(BaseModel):
    """What goes on `heddle.commands`: `{command_id, type, tenant, actor, correlation_id,
    payload}`. The correlation id is the caller's, kept in the command's receipt."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command_id: str = Field(min_length=1, max_length=MAX_COMMAND_ID_LENGTH)
    type: str = Field(min_length=1, max_length=100)
    tenant: str = Field(default=DEFAULT_TENANT, pattern=TENANT_PATTERN)
    actor: str = Field(default="anonymous", min_length=1, max_length=200)
    correlation_id: str | None = Field(default=None, max_length=200)
    payload: dict[str, Any] = Field(default_factory=dict)

    @field_validator("payload")
    @classmethod
    def _not_too_deep(cls, payload: dict[str, Any]) -> dict[str, Any]:
        if problem := nesting_problem(payload):
            raise ValueError(problem)
        return payload


class CommandOutcome(BaseModel):
    """What became of a command: published once, when it is decided."""

    model_config = ConfigDict(extra="forbid")

    command_id: str
    type: str = Field(description="The command's type, `?` when it could not be read.")
    tenant: str
    correlation_id: str | None = Field(description="As the command gave it.")
    status: Literal["accepted", "rejected"]
    reason: str | None = Field(description="Why it was rejected: what to fix.")
    result: dict[str, Any] = Field(
        description="What it made: e.g. `{run_id, workflow, version}` for `StartRun`."
    )


class EventEnvelope(BaseModel):
    """A stored event. Its headers repeat `event-id`, `position`, `type`, `aggregate-id`
    and `aggregate-version` as strings."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Stable across redeliveries: drop duplicates by it.")
    position: int = Field(ge=1, description="Position in the store's log, increasing.")
    type: str = Field(description="`<aggregate type>.<event>`, e.g. `WorkflowRun.Started`.")
    aggregate_type: str = Field(description="`WorkflowRun`, `WorkflowDefinition`, ...")
    aggregate_id: str
    aggregate_version: int = Field(ge=1, description="From 1, without gaps.")
    timestamp: str = Field(description="When it was stored (ISO 8601, UTC).")
    data: dict[str, Any] = Field(
        description="The event's fields. Large values are `null`, listed in `_claims_` as"
        " `[path, sha256]` pairs and stored in the `heddle_claims` table (docs/commands.md)."
    )
    metadata: dict[str, str] = Field(
        default_factory=dict,
        description="Why it was recorded: `correlation_id` (the caller's, or the first"
        " command's id), `causation_id` (the command or event it follows from) and"
        " `traceparent` (W3C trace context), where known. Events stored before these"
        " were kept have none.",
    )


class TokenDeltaMessage(BaseModel):
    """A piece of a model's answer as it is written; the answer of record is an event."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    run_id: str | None = Field(default=None, description="The run (a run's node).")
    thread_id: str | None = Field(
        default=None, description="Or the thread (a thread's reply; `node_id` is the reply's id)."
    )
    node_id: str
    attempt: int = Field(ge=1)
    step: int = Field(ge=1, description="The model turn of an agent node; 1 for `llm`.")
    try_number: int = Field(
        alias="try", ge=1, description="Drop the text of a try a later one replaces."
    )
    sequence: int = Field(ge=0, description="Orders the pieces of a node attempt.")
    text: str


class RemoteTask(BaseModel):
    """A task of a `remote` node (docs/remote.md#the-task)."""

    task_id: str
    capability: str
    input: dict[str, Any]
    run_id: str
    tenant: str
    workflow: str
    node_id: str
    attempt: int
    reply_to: str


class TaskResult(CompleteRemoteTask):
    """A worker's result (docs/remote.md#the-result)."""

    tenant: str = DEFAULT_TENANT


class DeadLetter(BaseModel):
    """The original message, unchanged, with `x-error`, `x-original-topic`,
    `x-original-partition` and `x-original-offset` added to its headers."""

    model_config = ConfigDict(extra="allow")


@dataclass(frozen=True, slots=True)
class TokenDelta:
    """A piece of streamed text as published on `heddle.tokens` (key: the run id). `try`
    numbers the tries of one model call: a reader drops the text of a try that a later
    one replaces. `sequence` orders every delta of a node attempt; `step` numbers the
    model turns of an agent node (1 for an `llm` node)."""

    run_id: UUID
    node_id: str
    attempt: int
    step: int
    try_number: int
    sequence: int
    text: str
    thread: bool = False
    """A thread's reply: `run_id` is the thread's id, `node_id` the reply's."""

    def as_message(self) -> dict[str, Any]:
        """The message's JSON (`TokenDeltaMessage` documents it)."""
        return {
            "thread_id" if self.thread else "run_id": str(self.run_id),
            "node_id": self.node_id,
            "attempt": self.attempt,
            "step": self.step,
            "try": self.try_number,
            "sequence": self.sequence,
            "text": self.text,
        }


class RunEvent(StrEnum):
    """The events of `WorkflowRun`, as `type` names them on the wire."""

    ACTION_VARIABLES_SET = "WorkflowRun.ActionVariablesSet"
    AGENT_STEP_COMPLETED = "WorkflowRun.AgentStepCompleted"
    ARTIFACT_SAVED = "WorkflowRun.ArtifactSaved"
    CANCELLED = "WorkflowRun.Cancelled"
    CHAT_REPLY_COMPLETED = "WorkflowRun.ChatReplyCompleted"
    CHILD_RUN_FINISHED = "WorkflowRun.ChildRunFinished"
    CHILD_RUN_REQUESTED = "WorkflowRun.ChildRunRequested"
    COMPLETED = "WorkflowRun.Completed"
    EDGE_DECIDED = "WorkflowRun.EdgeDecided"
    EXTRACTION_COMPLETED = "WorkflowRun.ExtractionCompleted"
    FAILED = "WorkflowRun.Failed"
    GRAPH_EDITED = "WorkflowRun.GraphEdited"
    LLM_CALL_COMPLETED = "WorkflowRun.LlmCallCompleted"
    LLM_CALL_FAILED = "WorkflowRun.LlmCallFailed"
    LLM_CALL_REPLAYED = "WorkflowRun.LlmCallReplayed"
    LLM_REQUEST_COMPLETED = "WorkflowRun.LlmRequestCompleted"
    LLM_REQUEST_FAILED = "WorkflowRun.LlmRequestFailed"
    LLM_REQUEST_REPLAYED = "WorkflowRun.LlmRequestReplayed"
    LLM_REQUESTED = "WorkflowRun.LlmRequested"
    LOOP_ITERATED = "WorkflowRun.LoopIterated"
    MAP_ITEM_COMPLETED = "WorkflowRun.MapItemCompleted"
    MAP_ITEM_STARTED = "WorkflowRun.MapItemStarted"
    NODE_COMPLETED = "WorkflowRun.NodeCompleted"
    NODE_ENTERING = "WorkflowRun.NodeEntering"
    NODE_FAILED = "WorkflowRun.NodeFailed"
    NODE_RETRY_SCHEDULED = "WorkflowRun.NodeRetryScheduled"
    NODE_STARTED = "WorkflowRun.NodeStarted"
    NODES_SKIPPED = "WorkflowRun.NodesSkipped"
    PAUSED = "WorkflowRun.Paused"
    RESUMED = "WorkflowRun.Resumed"
    RUN_WAITING = "WorkflowRun.RunWaiting"
    SIGNAL_RECEIVED = "WorkflowRun.SignalReceived"
    STARTED = "WorkflowRun.Started"
    STEP_SKIPPED = "WorkflowRun.StepSkipped"
    TASK_COMPLETED = "WorkflowRun.TaskCompleted"
    TASK_REASSIGNED = "WorkflowRun.TaskReassigned"
    TIMER_FIRED = "WorkflowRun.TimerFired"
    TIMER_SET = "WorkflowRun.TimerSet"
    TOOL_CALL_COMPLETED = "WorkflowRun.ToolCallCompleted"
    TOOL_CALLS_REQUESTED = "WorkflowRun.ToolCallsRequested"
    TRANSITION_BLOCKED = "WorkflowRun.TransitionBlocked"
    VARIABLES_SET = "WorkflowRun.VariablesSet"


class ThreadEvent(StrEnum):
    """The events of `Thread`, as `type` names them on the wire."""

    BRANCH_TAKEN = "Thread.BranchTaken"
    COMPLETED = "Thread.Completed"
    MESSAGE_POSTED = "Thread.MessagePosted"
    OPENED = "Thread.Opened"
    REPLY_FAILED = "Thread.ReplyFailed"
    REPLY_REQUESTED = "Thread.ReplyRequested"
    RUN_ATTACHED = "Thread.RunAttached"


class DefinitionEvent(StrEnum):
    """The events of `WorkflowDefinition`, as `type` names them on the wire."""

    CREATED = "WorkflowDefinition.Created"
    VERSION_PUBLISHED = "WorkflowDefinition.VersionPublished"


class ScheduleEvent(StrEnum):
    """The events of `Schedule`, as `type` names them on the wire."""

    CREATED = "Schedule.Created"
    CHANGED = "Schedule.Changed"
    PAUSED = "Schedule.Paused"
    RESUMED = "Schedule.Resumed"
    DELETED = "Schedule.Deleted"
    FIRED = "Schedule.Fired"
    SKIPPED = "Schedule.Skipped"


class TenantEvent(StrEnum):
    """The events of `TenantSettings`, as `type` names them on the wire."""

    CONFIGURED = "TenantSettings.Configured"
    CREATED = "TenantSettings.Created"


class CustomerEvent(StrEnum):
    """The events of `Customer`, as `type` names them on the wire."""

    CREATED = "Customer.Created"
    ITEM_SNOOZED = "Customer.ItemSnoozed"
    PROFILE_SET = "Customer.ProfileSet"
    RECOMMENDED = "Customer.Recommended"
    SIGNAL_RECORDED = "Customer.SignalRecorded"


class PlaybookEvent(StrEnum):
    """The events of `Playbooks`, as `type` names them on the wire."""

    CREATED = "Playbooks.Created"
    VERSION_PUBLISHED = "Playbooks.VersionPublished"


RUN_FINISHED = frozenset({RunEvent.COMPLETED, RunEvent.FAILED, RunEvent.CANCELLED})
"""A run ended: completed, failed or cancelled. Nothing of it runs any more."""
RUN_STOPPED = frozenset({RunEvent.FAILED, RunEvent.CANCELLED})
"""A run ended without completing: what was still running will never finish."""
NODE_ABANDONED = frozenset(
    {
        RunEvent.NODE_FAILED,
        RunEvent.NODE_RETRY_SCHEDULED,
        RunEvent.STEP_SKIPPED,
        RunEvent.FAILED,
        RunEvent.CANCELLED,
    }
)
"""A running node will not complete: it failed (or will be retried), a person skipped it,
or its run stopped. Its children, chat threads and tasks end with it."""
MODEL_ANSWERS = frozenset(
    {
        RunEvent.LLM_CALL_COMPLETED,
        RunEvent.AGENT_STEP_COMPLETED,
        RunEvent.MAP_ITEM_COMPLETED,
        RunEvent.EXTRACTION_COMPLETED,
        RunEvent.CHAT_REPLY_COMPLETED,
        RunEvent.LLM_REQUEST_COMPLETED,
    }
)
"""Model answers a run paid for (a fork's re-served answers, `*Replayed`, cost nothing)."""


class Event(TypedDict):
    """An event as `heddle.events` carries it (see `infra.store.EventStore.envelope`)."""

    id: str
    position: int
    type: str
    aggregate_type: str
    aggregate_id: str
    aggregate_version: int
    timestamp: str
    data: dict[str, Any]
    metadata: NotRequired[dict[str, str]]
    """`correlation_id`, `causation_id` and `traceparent`, where known (handlers/causes.py)."""


# The `data` of each event, as stored (UUIDs and times as strings). `NotRequired`: a field
# added after events were first stored, which older events lack.


class ActionVariablesSet(TypedDict):
    node_id: str
    attempt: int
    action: str
    variables: dict[str, Any]


class AgentStepCompleted(TypedDict):
    node_id: str
    attempt: int
    step: int
    result: dict[str, Any]


class ArtifactSaved(TypedDict):
    artifact_id: str
    node_id: str
    attempt: int
    action: str
    name: str
    content_type: str
    content: str
    size: int
    sha256: str


class Cancelled(TypedDict):
    actor: str
    reason: str


class ChatReplyCompleted(TypedDict):
    node_id: str
    attempt: int
    reply_id: str
    result: dict[str, Any]


class ChildRunFinished(TypedDict):
    child_run_id: str
    status: str


class ChildRunRequested(TypedDict):
    node_id: str
    attempt: int
    call_id: str
    child_run_id: str
    workflow: str
    version: int | None
    input: dict[str, Any]


class Completed(TypedDict):
    output: Any


class EdgeDecided(TypedDict):
    source: str
    target: str
    state: str
    reason: str


class ExtractionCompleted(TypedDict):
    node_id: str
    attempt: int
    source: dict[str, Any]
    result: dict[str, Any]


class Failed(TypedDict):
    error: dict[str, Any]


class GraphEdited(TypedDict):
    graph: dict[str, Any]
    content_hash: str
    edits: list[dict[str, Any]]
    actor: str
    reason: str


class LlmCallCompleted(TypedDict):
    node_id: str
    attempt: int
    result: dict[str, Any]


class LlmCallFailed(TypedDict):
    node_id: str
    attempt: int
    try_number: int
    error: dict[str, Any]
    retry_in: float | None
    item: NotRequired[int | None]


class LlmCallReplayed(TypedDict):
    node_id: str
    attempt: int
    result: dict[str, Any]


class LlmRequestCompleted(TypedDict):
    request_id: str
    purpose: str
    result: dict[str, Any]


class LlmRequestFailed(TypedDict):
    request_id: str
    purpose: str
    error: dict[str, Any]


class LlmRequestReplayed(TypedDict):
    request_id: str
    purpose: str
    result: dict[str, Any]


class LlmRequested(TypedDict):
    request_id: str
    purpose: str
    request: dict[str, Any]
    context: dict[str, Any]


class LoopIterated(TypedDict):
    source: str
    target: str
    iteration: int
    nodes: list[str]
    inner_loops: list[str]


class MapItemCompleted(TypedDict):
    node_id: str
    attempt: int
    index: int
    result: dict[str, Any]


class MapItemStarted(TypedDict):
    node_id: str
    attempt: int
    index: int
    input: dict[str, Any]


class NodeCompleted(TypedDict):
    node_id: str
    output: Any
    variables: dict[str, Any]
    next: str | None


class NodeEntering(TypedDict):
    node_id: str
    kind: str
    attempt: int


class NodeFailed(TypedDict):
    node_id: str
    attempt: int
    error: dict[str, Any]
    handled: NotRequired[bool]


class NodeRetryScheduled(TypedDict):
    node_id: str
    attempt: int
    error: dict[str, Any]
    delay: float


class NodeStarted(TypedDict):
    node_id: str
    kind: str
    attempt: int
    input: dict[str, Any]


class NodesSkipped(TypedDict):
    node_ids: list[str]


class Paused(TypedDict):
    actor: str
    reason: str
    task: dict[str, Any] | None


class Resumed(TypedDict):
    actor: str


class RunWaiting(TypedDict):
    edges: list[str]


class SignalReceived(TypedDict):
    name: str
    data: dict[str, Any]
    actor: str
    nodes: list[str]


class Started(TypedDict):
    run_id: str
    tenant: str
    actor: str
    workflow: str
    version: int
    content_hash: str
    graph: dict[str, Any]
    input: dict[str, Any]
    command_id: str
    fork: NotRequired[dict[str, Any] | None]
    parent: NotRequired[dict[str, Any] | None]
    binding: NotRequired[dict[str, Any] | None]


class StepSkipped(TypedDict):
    node_id: str
    actor: str
    reason: str


class TaskCompleted(TypedDict):
    task_id: str
    actor: str
    output: dict[str, Any]


class TaskReassigned(TypedDict):
    task_id: str
    actor: str
    changes: dict[str, Any]
    reason: str


class TimerFired(TypedDict):
    timer_id: str


class TimerSet(TypedDict):
    timer_id: str
    purpose: str
    fire_at: str
    node_id: str | None
    attempt: int | None


class ToolCallCompleted(TypedDict):
    node_id: str
    attempt: int
    step: int
    call_id: str
    tool: str
    arguments: dict[str, Any]
    outcome: str
    content: str


class ToolCallsRequested(TypedDict):
    node_id: str
    attempt: int
    step: int
    calls: list[dict[str, Any]]


class TransitionBlocked(TypedDict):
    source: str
    target: str
    validator: int
    kind: str
    reason: str


class VariablesSet(TypedDict):
    variables: dict[str, Any]
    actor: str
    reason: str


class ThreadBranchTaken(TypedDict):
    message_id: str
    branch: str | None
    action: dict[str, Any]


class ThreadCompleted(TypedDict):
    actor: str
    output: dict[str, Any]
    outcome: str


class ThreadMessagePosted(TypedDict):
    message_id: str
    role: Literal["user", "assistant"]
    content: str
    author: str
    branch: str | None
    reply_to: NotRequired[str | None]
    reply_id: NotRequired[str | None]
    provider: NotRequired[str | None]
    model: NotRequired[str | None]
    usage: NotRequired[dict[str, Any] | None]
    cost_usd: NotRequired[float | None]
    source: NotRequired[dict[str, Any] | None]


class ThreadOpened(TypedDict):
    thread_id: str
    tenant: str
    actor: str
    title: str
    replies: str
    reply: NotRequired[dict[str, Any] | None]
    branches: NotRequired[dict[str, dict[str, Any]] | None]
    binding: NotRequired[dict[str, Any] | None]
    workflow: NotRequired[str | None]


class ThreadReplyFailed(TypedDict):
    reply_id: str
    error: dict[str, Any]


class ThreadReplyRequested(TypedDict):
    reply_id: str
    message_id: str
    branch: str | None
    request: NotRequired[dict[str, Any] | None]
    """The transcript: only in events recorded before each message was stored once."""
    model: NotRequired[str | None]
    instruction: NotRequired[str | None]


class ThreadRunAttached(TypedDict):
    run_id: str


class DefinitionVersionPublished(TypedDict):
    tenant: str
    number: int
    content_hash: str
    spec: dict[str, Any]
    actor: str


class CustomerCreated(TypedDict):
    tenant: str
    external_id: str


class CustomerProfileSet(TypedDict):
    profile: dict[str, Any]
    actor: str


class CustomerSignalRecorded(TypedDict):
    signal: dict[str, Any]
    profile: dict[str, Any]


class CustomerRecommended(TypedDict):
    items: list[dict[str, Any]]
    playbooks: dict[str, int]
    assignee: str | None
    at: str


class PlaybookVersionPublished(TypedDict):
    tenant: str
    name: str
    number: int
    content_hash: str
    spec: dict[str, Any]
    actor: str


class CustomerItemSnoozed(TypedDict):
    item_id: str
    until: str
    actor: str
