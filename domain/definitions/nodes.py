"""The nodes of a workflow: one pydantic model per kind, discriminated by `kind`."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from domain.actions import Action
from domain.definitions.edges import Edge, edge_list
from domain.durations import DURATION, seconds

NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,127}$"
NODE_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")

ERROR_CLASSES = (
    "retryable", "fatal", "timeout", "definition", "agent", "task", "validation", "incomplete"
)  # fmt: skip
ErrorClass = Literal[
    "retryable", "fatal", "timeout", "definition", "agent", "task", "validation", "incomplete"
]  # fmt: skip


_RETRIED_BY_DEFAULT: list[ErrorClass] = ["retryable", "timeout"]


class Retry(BaseModel):
    """Try a failed node again: up to `attempts` in all, waiting `backoff`, then
    `backoff * factor`, and so on, for the error classes in `errors`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempts: int = Field(ge=2, le=20)
    backoff: str = Field(default="1s", pattern=DURATION)
    factor: float = Field(default=2.0, ge=1, le=10)
    errors: list[ErrorClass] = Field(
        default_factory=lambda: _RETRIED_BY_DEFAULT.copy(), min_length=1
    )

    def delay(self, attempt: int) -> float:
        """Seconds to wait after attempt `attempt` (1 = the first) failed."""
        return seconds(self.backoff) * self.factor ** (attempt - 1)


class NodeBase(BaseModel):
    """What every node has: its edges, retry, timeout, error handler and actions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    next: str | list[Edge] | None = Field(
        default=None, description="a node id, or a list of edges (domain/definitions/edges.py)"
    )
    retry: Retry | None = None
    timeout: str | None = Field(default=None, pattern=DURATION, description="e.g. 30s or 2h")
    on_error: str | None = Field(default=None, description="the node that handles a failure")
    on_enter: list[Action] = Field(default_factory=list, description="actions when it starts")
    on_exit: list[Action] = Field(default_factory=list, description="actions when it is done")

    @property
    def retries(self) -> Retry | None:
        """How this node is retried: its `retry`, or its kind's default."""
        return self.retry

    def next_targets(self) -> list[str]:
        """The nodes this node may hand over to when it completes."""
        return [edge.to for edge in edge_list(self.next)]

    def targets(self) -> list[str]:
        """Every node this node may hand over to: the next ones and its error handler."""
        targets = self.next_targets()
        if self.on_error and self.on_error not in targets:
            targets.append(self.on_error)
        return targets


CREDENTIAL_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class ModelNode(NodeBase):
    """What every node that calls a model has."""

    model: str = Field(pattern=r"^[a-z][a-z0-9_-]*:.+$", description="provider:model")
    prompt: str
    system: str | None = None
    output: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, gt=0)
    options: dict[str, Any] = Field(default_factory=dict)
    credential: str | None = Field(
        default=None, pattern=CREDENTIAL_ID, description="id of a stored credential"
    )
    stream: bool = Field(default=True, description="publish token deltas to heddle.tokens")
    allow_incomplete: bool = Field(
        default=False,
        description="take an answer the model did not finish (max_tokens reached, filtered, "
        "refused) as the output, instead of failing with class `incomplete`",
    )


class LlmNode(ModelNode):
    """Call a model with a rendered prompt; the reply text goes to `output` (with an
    `output_schema`: the reply's JSON value, checked against it, domain/structured.py)."""

    kind: Literal["llm"]
    output_schema: dict[str, Any] | None = Field(
        default=None,
        description="a JSON Schema the answer must match: the model is asked for JSON, the"
        " answer is checked, and the node's output is the parsed value",
    )
    max_repairs: int = Field(
        default=2,
        ge=0,
        le=10,
        description="with output_schema: how often an answer that does not match is shown"
        " its problems and asked again before the node fails (class `output`)",
    )


class AgentNode(ModelNode):
    """A tool-calling loop: the model may call `tools` until it answers, within `max_steps`
    model turns and `max_repairs` rejected tool calls; the answer goes to `output`."""

    kind: Literal["agent"]
    tools: list[str] = Field(default_factory=list)
    max_steps: int = Field(default=8, ge=1, le=100)
    max_repairs: int = Field(default=3, ge=0, le=100)


class SwitchCase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    when: str
    next: str


class SwitchNode(NodeBase):
    """Take the first case whose CEL condition holds, else `default`."""

    kind: Literal["switch"]
    cases: list[SwitchCase] = Field(min_length=1)
    default: str | None = None

    def next_targets(self) -> list[str]:
        targets = [case.next for case in self.cases]
        if self.default:
            targets.append(self.default)
        return list(dict.fromkeys(targets))


class SetNode(NodeBase):
    """Set variables; string values are templates over `input`, `vars` and `nodes`."""

    kind: Literal["set"]
    vars: dict[str, Any] = Field(min_length=1)


class ParallelNode(NodeBase):
    """Fan out: every branch starts; a `join` (or any node with several parents) meets them."""

    kind: Literal["parallel"]
    branches: list[str] = Field(min_length=2)

    def next_targets(self) -> list[str]:
        return list(dict.fromkeys(self.branches))


class JoinNode(NodeBase):
    """Fan in: waits for every incoming edge; `output` gets the outputs of the parents that
    ran, in the order the definition lists those parents."""

    kind: Literal["join"]
    output: str | None = None


class MapStep(ModelNode):
    """What a `map` node does for each item: a model call whose templates also see `item`
    and `index`."""

    kind: Literal["llm"] = "llm"


class MapNode(NodeBase):
    """Run `do` once per item of the list `items` (CEL), at most `concurrency` at a time;
    `output` gets the results in the order of the items."""

    kind: Literal["map"]
    items: str
    do: MapStep
    concurrency: int = Field(default=4, ge=1, le=100)
    max_items: int = Field(default=1000, ge=1, le=10_000)
    output: str | None = None


class HumanNode(NodeBase):
    """A task for a person: an `approval` (approve or reject, with a comment) or an `input`
    (data matching `form`, a JSON schema). The run waits at this node until `CompleteTask`;
    `output` gets the decision or the data."""

    kind: Literal["human"]
    task: Literal["approval", "input"] = "approval"
    title: str = Field(min_length=1, max_length=500, description="a template")
    instructions: str = Field(default="", description="a template")
    assignee: str | None = Field(default=None, description="a template; who should do it")
    role: str | None = Field(default=None, max_length=100, description="or who may do it")
    priority: int = Field(default=50, ge=0, le=100)
    due_in: str | None = Field(default=None, pattern=DURATION, description="e.g. 4h or 2d")
    form: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    value: str | None = Field(
        default=None, description="CEL: the customer's value (0-100) for the work queue"
    )
    output: str | None = None


class WaitNode(NodeBase):
    """Wait for a duration (`for`), until a time (`until`, CEL giving an ISO 8601 time), or
    until a signal that matches `event` (CEL over `event.name` and `event.data`); with
    `timeout`, a wait for a signal fails with class `timeout` when none came in time."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    kind: Literal["wait"]
    for_: str | None = Field(default=None, alias="for", pattern=DURATION)
    until: str | None = None
    event: str | None = None
    output: str | None = None


CAPABILITY = r"^[a-z][a-z0-9_-]{0,62}$"


class RemoteNode(NodeBase):
    """Work done by an outside worker: a task on `heddle.tasks.<capability>`, answered on
    `heddle.task-results` (docs/remote.md). Infrastructure errors are retried (3 attempts
    unless `retry` says otherwise); task errors are not, unless `retry.errors` has `task`."""

    kind: Literal["remote"]
    capability: str = Field(pattern=CAPABILITY)
    input: dict[str, Any] = Field(
        default_factory=dict, description="sent to the worker; string values are templates"
    )
    output: str | None = None
    accept_edits: bool = Field(default=False, description="the worker may return graph edits")

    @property
    def retries(self) -> Retry | None:
        return self.retry or Retry(attempts=3, backoff="2s", errors=["retryable", "timeout"])


class ToolNode(NodeBase):
    """Call one registered tool with `arguments` (string values are templates), checked
    against the tool's schema; `output` gets what it returns (JSON when it is JSON)."""

    kind: Literal["tool"]
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    output: str | None = None


class SubworkflowNode(NodeBase):
    """Start a child run of a published workflow (the latest version unless `version` is
    set) with `input` (string values are templates) and wait for it: the node completes
    with the child's output, or fails with the child's error."""

    kind: Literal["subworkflow"]
    workflow: str = Field(pattern=NAME_PATTERN)
    version: int | None = Field(default=None, ge=1)
    input: dict[str, Any] = Field(default_factory=dict)
    output: str | None = None


class ExtractNode(NodeBase):
    """Structured fields from a document through a model: `document` (a template) gives a
    document id (`doc_...`, from `POST /v1/documents`) or the text itself; the model is
    asked for JSON matching `schema`; `output` gets the fields that match and the fields
    that did not, each with the reason."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    kind: Literal["extract"]
    model: str = Field(pattern=r"^[a-z][a-z0-9_-]*:.+$", description="provider:model")
    document: str = Field(description="a template: a document id or the text")
    fields_schema: dict[str, Any] = Field(alias="schema", description="a JSON schema (object)")
    instructions: str = Field(default="", description="a template, added to the prompt")
    max_chars: int = Field(default=100_000, ge=100, le=2_000_000)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, gt=0)
    options: dict[str, Any] = Field(default_factory=dict)
    credential: str | None = Field(default=None, pattern=CREDENTIAL_ID)
    output: str | None = None


CHAT_ACTIONS = ("snooze", "skip", "escalate", "schedule")


class ChatBranch(BaseModel):
    """An option a person picks in a chat (`branch: NAME` on a message): a fixed `reply`,
    an LLM reply to its own `prompt`, or a saved `action` on the run (snooze: pause until
    `until`; skip: skip the chat node; escalate: give its task to `assignee`/`role` with
    `priority`; schedule: resume the paused run `at` a time)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str = Field(default="", max_length=200)
    reply: str | None = Field(default=None, description="a fixed reply (a template)")
    prompt: str | None = Field(default=None, description="an LLM reply to this prompt")
    model: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_-]*:.+$")
    action: Literal["snooze", "skip", "escalate", "schedule"] | None = None
    until: str | None = Field(default=None, description="snooze: ISO 8601 time or duration")
    at: str | None = Field(default=None, description="schedule: ISO 8601 time or duration")
    assignee: str | None = Field(default=None, max_length=200)
    role: str | None = Field(default=None, max_length=100)
    priority: int | None = Field(default=None, ge=0, le=100)
    reason: str = Field(default="", max_length=1000)


class ChatNode(NodeBase):
    """A conversation with a person in a thread bound to this node: each user message gets
    a reply from `model` with `system` (a template over the run) as context; `branches` are
    the options a person can pick. The node completes when the thread is completed
    (`CompleteThread`); `output` gets the transcript and the data sent with it."""

    kind: Literal["chat"]
    model: str | None = Field(
        default=None, pattern=r"^[a-z][a-z0-9_-]*:.+$", description="provider:model"
    )
    system: str | None = Field(default=None, description="a template over the run")
    greeting: str | None = Field(default=None, description="the first message (a template)")
    title: str = Field(default="", max_length=500, description="a template")
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, gt=0)
    options: dict[str, Any] = Field(default_factory=dict)
    credential: str | None = Field(default=None, pattern=CREDENTIAL_ID)
    stream: bool = Field(default=True, description="publish token deltas to heddle.tokens")
    branches: dict[str, ChatBranch] = Field(default_factory=dict)
    assignee: str | None = Field(default=None, description="a template; who chats")
    role: str | None = Field(default=None, max_length=100)
    priority: int = Field(default=50, ge=0, le=100)
    output: str | None = None


Node = Annotated[
    LlmNode
    | AgentNode
    | SwitchNode
    | SetNode
    | ParallelNode
    | JoinNode
    | MapNode
    | HumanNode
    | WaitNode
    | RemoteNode
    | ToolNode
    | SubworkflowNode
    | ExtractNode
    | ChatNode,
    Field(discriminator="kind"),
]


NODE_KINDS = (
    "llm",
    "agent",
    "switch",
    "set",
    "parallel",
    "join",
    "map",
    "human",
    "wait",
    "remote",
    "tool",
    "subworkflow",
    "extract",
    "chat",
)
