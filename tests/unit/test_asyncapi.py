"""The AsyncAPI document is true and current: the committed file is what the code
generates, and the messages Heddle really publishes fit the schemas it gives."""

from __future__ import annotations

import json
import runpy
import uuid
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import yaml
from fastapi import FastAPI

from api.http.asyncapi import asyncapi_routes
from domain.commands import CommandReceipt
from domain.messages import TokenDelta
from handlers.unit_of_work import UnitOfWork
from infra.relay import Relay
from infra.store import EventStore
from tests.unit.test_docs import RUN_ID, FakeProducer, hello, send

DOCS = Path(__file__).parents[2] / "docs"
COMMITTED = yaml.safe_load((DOCS / "asyncapi" / "heddle.yaml").read_text())


def test_the_committed_asyncapi_document_is_what_the_code_generates() -> None:
    generated = runpy.run_path(str(DOCS / "asyncapi" / "generate.py"))["render"]()
    assert (DOCS / "asyncapi" / "heddle.yaml").read_text() == generated, (
        "regenerate it: .venv/bin/python docs/asyncapi/generate.py"
    )
    assert COMMITTED["asyncapi"] == "3.0.0"
    addresses = {channel["address"] for channel in COMMITTED["channels"].values()}
    assert addresses == {
        "heddle.commands",
        "heddle.command-results",
        "heddle.events",
        "heddle.tokens",
        "heddle.dlq",
        "heddle.task-results",
        "heddle.tasks.{capability}",
    }


def payload_schema(channel: str) -> dict[str, Any]:
    [message] = COMMITTED["channels"][channel]["messages"].values()
    name = message["$ref"].rsplit("/", 1)[1]
    ref = COMMITTED["components"]["messages"][name]["payload"]["$ref"]
    schema: dict[str, Any] = COMMITTED["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return schema


async def test_the_messages_heddle_publishes_fit_the_documented_schemas() -> None:
    store = EventStore(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    uow = UnitOfWork(store)
    command = {"command_id": "p1", "type": "PublishWorkflow", "payload": {"definition": hello()}}
    outcomes = [
        send(uow, 1, command),
        send(
            uow,
            2,
            {
                "command_id": "s1",
                "type": "StartRun",
                "payload": {"workflow": "hello", "run_id": RUN_ID, "input": {"name": "Ada"}},
            },
        ),
        send(uow, 3, {"command_id": "s2", "type": "StartRun", "payload": {"workflow": "helo"}}),
    ]
    uow.save()
    assert {o["status"] for o in outcomes if o} == {"accepted", "rejected"}
    for outcome in outcomes:
        jsonschema.validate(outcome, payload_schema("command-results"))
    jsonschema.validate(command, payload_schema("commands"))

    producer = FakeProducer()
    relay = Relay(store, "postgresql://unused", "heddle.events", producer=producer)
    await relay.publish_pending()
    store.close()
    envelopes = [json.loads(m["value"]) for m in producer.sent]
    assert {e["aggregate_type"] for e in envelopes} == {
        "WorkflowDefinition",
        "WorkflowRun",
        CommandReceipt.__name__,
    }
    for envelope in envelopes:
        jsonschema.validate(envelope, payload_schema("events"))

    delta = TokenDelta(uuid.UUID(RUN_ID), "greet", 1, 1, 2, 7, "Say hello")
    reply = TokenDelta(uuid.UUID(RUN_ID), "r-m1", 1, 1, 1, 0, "Hi", thread=True)
    tokens = payload_schema("tokens")
    for message in (delta.as_message(), reply.as_message()):
        jsonschema.validate(message, tokens)
        assert set(tokens["required"]) <= set(message)
    assert set(tokens["properties"]) == set(delta.as_message()) | set(reply.as_message())


async def test_the_api_serves_the_document_for_its_own_topics_and_a_page() -> None:
    from infra.settings import Topics

    app = FastAPI()
    app.include_router(asyncapi_routes(Topics("acme."), "kafka.acme.internal:9092"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://heddle.test") as client:
        document = (await client.get("/asyncapi.json")).json()
        page = await client.get("/asyncapi")
    assert document["channels"]["events"]["address"] == "acme.heddle.events"
    assert document["servers"]["development"]["host"] == "kafka.acme.internal:9092"
    assert page.headers["content-type"].startswith("text/html")
    assert "acme.heddle.tokens" in page.text
