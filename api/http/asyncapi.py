"""Heddle's topics and messages as an AsyncAPI 3.0 document, served at `/asyncapi`
(a page) and `/asyncapi.json`, and kept in `docs/asyncapi/heddle.yaml`.

FastStream writes the document from a broker's subscribers and publishers. Heddle's own
consumers read raw records (they decode only what they need), so the document is made
from a broker that only declares the topics, with the models of `domain/messages.py`
(the wire contract); tests check those models against the messages Heddle really sends.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI, get_asyncapi_html
from pydantic import BaseModel, ConfigDict, Field

from domain.messages import (
    CommandEnvelope,
    CommandOutcome,
    DeadLetter,
    EventEnvelope,
    RemoteTask,
    TaskResult,
    TokenDeltaMessage,
)
from infra.settings import Topics

VERSION = "0.1.0"
DESCRIPTION = (
    "Drive Heddle from any Kafka client: publish commands, read their outcomes, follow "
    "events and the text of model calls. Values are UTF-8 JSON; every message is keyed "
    "by the id of what it is about, so the messages of one run stay in order. See "
    "docs/commands.md and docs/reading.md."
)


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


class AsyncApiDocument(BaseModel):
    """An AsyncAPI 3.0 document (asyncapi.com/docs/reference/specification/v3.0.0)."""

    model_config = ConfigDict(extra="allow")

    asyncapi: str = Field(examples=["3.0.0"])
    info: dict[str, Any]
    defaultContentType: str = Field(examples=["application/json"])  # noqa: N815 (AsyncAPI's name)
    servers: dict[str, Any]
    channels: dict[str, Any]
    operations: dict[str, Any]
    components: dict[str, Any]


def asyncapi_routes(topics: Topics, bootstrap_servers: str) -> APIRouter:
    """`/asyncapi` (a page) and `/asyncapi.json`, for these topics and brokers."""
    router = APIRouter(tags=["asyncapi"])
    document = specification(topics, bootstrap_servers)

    @router.get("/asyncapi.json", response_model=AsyncApiDocument)
    async def get_asyncapi() -> dict[str, Any]:
        """Heddle's topics and messages (AsyncAPI 3.0)."""
        return document

    page = {"description": "a page", "content": {"text/html": {"schema": {"type": "string"}}}}

    @router.get("/asyncapi", response_class=HTMLResponse, responses={200: page})
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
