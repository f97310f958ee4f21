"""Heddle's topics and messages as an AsyncAPI 3.0 document, served at `/asyncapi`
(a page) and `/asyncapi.json`, and kept in `docs/asyncapi/heddle.yaml`.

FastStream writes the document from a broker's subscribers and publishers. Heddle's own
consumers read raw records (they decode only what they need), so the document is made
from a broker that only declares the topics, with a pydantic model per message; tests
check those models against the messages Heddle really sends.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI, get_asyncapi_html
from pydantic import BaseModel, ConfigDict, Field

from domain.commands import DEFAULT_TENANT, CommandEnvelope, CompleteRemoteTask
from infra.settings import Topics

VERSION = "0.1.0"
DESCRIPTION = (
    "Drive Heddle from any Kafka client: publish commands, read their outcomes, follow "
    "events and the text of model calls. Values are UTF-8 JSON; every message is keyed "
    "by the id of what it is about, so the messages of one run stay in order. See "
    "docs/commands.md and docs/reading.md."
)


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
    data: dict[str, Any] = Field(description="The event's fields.")


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


def specification(topics: Topics, bootstrap_servers: str = "localhost:9092") -> dict[str, Any]:
    """The AsyncAPI document as a JSON-able dict."""
    broker = KafkaBroker(bootstrap_servers, description="Heddle's Kafka cluster")

    @broker.subscriber(
        topics.commands,
        title="commands",
        description="Commands to Heddle, keyed by the id of what they are about (the run id "
        "for `StartRun`). The payload's shape depends on `type`: see docs/schemas/.",
    )
    async def take_command(command: CommandEnvelope) -> None:
        """Only declares the topic."""

    @broker.subscriber(
        topics.task_results,
        title="task-results",
        description="Results of `remote` nodes' tasks from outside workers, keyed by run id "
        "(docs/remote.md); each is decided once per task id.",
    )
    async def take_task_result(result: TaskResult) -> None:
        """Only declares the topic."""

    published = [
        (
            topics.command_results,
            "command-results",
            CommandOutcome,
            "The outcome of every command, keyed by command id.",
        ),
        (
            topics.events,
            "events",
            EventEnvelope,
            "Every stored event, in store order, keyed by aggregate id, at least once.",
        ),
        (
            topics.tokens,
            "tokens",
            TokenDeltaMessage,
            "The text of streamed model calls as it is written, keyed by run id (thread id for a"
            " thread's replies); kept one hour.",
        ),
        (
            topics.tasks_for("{capability}"),
            "tasks",
            RemoteTask,
            "Tasks of `remote` nodes for outside workers, one topic per capability, keyed by "
            "run id (docs/remote.md).",
        ),
        (
            topics.dlq,
            "dead-letters",
            DeadLetter,
            "Messages that kept failing, with the error in their headers.",
        ),
    ]
    for topic, title, model, description in published:
        broker.publisher(topic, title=title, description=description, schema=model)
    document = AsyncAPI(
        broker, title="Heddle", version=VERSION, description=DESCRIPTION
    ).to_specification()
    schema: dict[str, Any] = document.to_jsonable()
    for message in schema["components"]["messages"].values():
        message.pop("correlationId", None)  # Heddle keeps correlation ids in the payload
    return schema


def asyncapi_routes(topics: Topics, bootstrap_servers: str) -> APIRouter:
    """`/asyncapi` (a page) and `/asyncapi.json`, for these topics and brokers."""
    router = APIRouter(tags=["asyncapi"])
    document = specification(topics, bootstrap_servers)

    @router.get("/asyncapi.json")
    async def asyncapi_json() -> dict[str, Any]:
        """Heddle's topics and messages (AsyncAPI 3.0)."""
        return document

    @router.get("/asyncapi", response_class=HTMLResponse)
    async def asyncapi_page() -> str:
        """Heddle's topics and messages, as a page."""
        return get_asyncapi_html(_Ready(document), try_it_out_path=None)  # type: ignore[arg-type]

    return router


class _Ready:
    """A finished document, as `get_asyncapi_html` reads one."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.title = document["info"]["title"]

    def to_json(self) -> str:
        return json.dumps(self.document)
