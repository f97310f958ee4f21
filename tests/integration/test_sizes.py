"""Sizes are bounded everywhere, on real PostgreSQL and real Kafka: a 900 KB input, a 5 MB
model answer and a 2,000-message thread are stored (large values once, by content: the
claim check), read back whole through the API, and every stored event and published
message stays small, so other tenants' runs go on; a message the broker refuses anyway is
dead-lettered and the relay moves on; YAML aliases are refused."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from eventsourcing.domain import Aggregate, event
from psycopg.sql import SQL

from infra.claims import CLAIM_THRESHOLD, CLAIMS_TABLE
from infra.kafka import create_topics, start_producer
from infra.live import events_table, partitions_of
from infra.relay import Relay
from infra.settings import Settings
from infra.store import EventStore, store_environment
from tests.fakes.llm_servers import FakeLlmServer, OpenAiWire
from tests.integration.helpers import (
    api_client,
    publish,
    start_run,
    wait_for_command,
    wait_for_run,
)
from tests.integration.shared import openai  # noqa: F401 (fixture)
from tests.integration.test_threads import heddle, support, thread_of_run, until  # noqa: F401

SMALL = CLAIM_THRESHOLD + 4096
"""The most any stored event (and so any message on `heddle.events`) may take."""


@pytest.fixture
async def client(heddle: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(heddle) as api:
        yield api


def summary(name: str, stream: bool = True) -> dict[str, Any]:
    """One `llm` node whose prompt holds the whole input."""
    node = {"kind": "llm", "model": "openai:gpt-4o-mini", "prompt": "Sum up: {{ input.text }}"}
    return {
        "name": name,
        "start": "ask",
        "nodes": {"ask": {**node, "output": "answer", "stream": stream}},
    }


async def stored_sizes(heddle: Any, aggregate_id: str) -> dict[str, int]:
    """The largest stored JSON of each event type of one aggregate, in bytes."""
    query = SQL("SELECT topic, max(length(state)) FROM {} WHERE originator_id = %s GROUP BY topic")
    async with heddle.reads.connection() as conn:
        cursor = await conn.execute(
            query.format(events_table(heddle.store)), [uuid.UUID(aggregate_id)]
        )
        return {topic.rsplit(".", 1)[-1]: size for topic, size in await cursor.fetchall()}


async def published_sizes(heddle: Any, aggregate_id: str) -> list[int]:
    """The sizes of one aggregate's messages on `heddle.events`; none went to `heddle.dlq`."""
    assert await read_all(heddle.settings.kafka_bootstrap_servers, heddle.topics.dlq) == []
    published = await read_all(heddle.settings.kafka_bootstrap_servers, heddle.topics.events)
    return [len(m.value) for m in published if m.key == aggregate_id.encode()]


async def claimed_sizes(heddle: Any) -> list[int]:
    async with heddle.reads.connection() as conn:
        cursor = await conn.execute(f"SELECT length(value) FROM {CLAIMS_TABLE}")
        return [size for (size,) in await cursor.fetchall()]


async def test_a_900_kb_input_completes_and_another_tenants_run_completes_too(
    heddle: Any, client: httpx.AsyncClient, openai: FakeLlmServer
) -> None:
    text = "€" * 300_000
    assert len(text.encode()) == 900_000
    openai.then(OpenAiWire.stream(["Counted."]), OpenAiWire.stream(["Counted."]))
    await publish(client, summary("summary"))
    big = await start_run(client, "summary", {"text": text})
    async with api_client(heddle, tenant="other") as other:
        await publish(other, summary("summary"))
        small = await start_run(other, "summary", {"text": "€5"})
        assert (await wait_for_run(other, small))["status"] == "completed"

    state = await wait_for_run(client, big)

    assert (state["status"], state["variables"]["answer"]) == ("completed", "Counted.")
    assert any(r.body["messages"][-1]["content"] == f"Sum up: {text}" for r in openai.requests)
    events = (await client.get(f"/v1/runs/{big}/events")).json()["events"]
    assert events[0]["data"]["input"] == {"text": text}
    sizes = await stored_sizes(heddle, big)
    assert max(sizes.values()) < SMALL, sizes
    assert max(await published_sizes(heddle, big)) < SMALL
    assert len(text.encode()) in {size - 2 for size in await claimed_sizes(heddle)}


async def test_a_command_too_large_for_the_broker_is_refused_with_413(
    client: httpx.AsyncClient,
) -> None:
    await publish(client, summary("too-much"))

    response = await client.post(
        "/v1/runs", json={"workflow": "too-much", "input": {"text": "a" * 1_010_000}}
    )

    assert response.status_code == 413, response.text
    assert "at most 1000000 fit on the commands topic" in response.json()["detail"]


async def test_a_5_mb_model_answer_is_stored_once_and_read_whole_through_the_api(
    heddle: Any, client: httpx.AsyncClient, openai: FakeLlmServer
) -> None:
    answer = "".join(f"Line {i}: ça coûte {i} €.\n" for i in range(200_000))
    assert len(answer.encode()) > 5_000_000
    openai.then(OpenAiWire.completion(answer))
    await publish(client, summary("long-answer", stream=False))
    long = await start_run(client, "long-answer", {"text": "everything"})
    state = await wait_for_run(client, long)
    async with api_client(heddle, tenant="bystander") as other:
        openai.then(OpenAiWire.stream(["Short."]))
        await publish(other, summary("summary"))
        short = await start_run(other, "summary", {"text": "a little"})
        assert (await wait_for_run(other, short))["variables"]["answer"] == "Short."

    assert (state["status"], state["variables"]["answer"]) == ("completed", answer)
    events = (await client.get(f"/v1/runs/{long}/events")).json()["events"]
    [call] = [e for e in events if e["type"] == "WorkflowRun.LlmCallCompleted"]
    assert call["data"]["result"]["text"] == answer
    [completed] = [e for e in events if e["type"] == "WorkflowRun.NodeCompleted"]
    assert completed["data"]["output"] == answer
    sizes = await stored_sizes(heddle, long)
    assert max(sizes.values()) < SMALL, sizes
    assert max(await published_sizes(heddle, long)) < SMALL
    stored_answer = len(json.dumps(answer, ensure_ascii=False).encode())
    assert (await claimed_sizes(heddle)).count(stored_answer) == 1
    exported = (await client.get(f"/v1/runs/{long}/export")).json()
    imported = await client.post("/v1/runs/import", json=exported)
    assert imported.status_code == 201, imported.text
    copy = await wait_for_run(client, imported.json()["run_id"])
    assert copy["variables"]["answer"] == answer
    assert (await claimed_sizes(heddle)).count(stored_answer) == 1


async def test_a_2000_message_thread_stores_each_message_once_and_still_replies(
    heddle: Any, client: httpx.AsyncClient, openai: FakeLlmServer
) -> None:
    await publish(client, support("long-chat"))
    run_id = await start_run(client, "long-chat", {"customer": "Ada", "order": "A-1"})
    thread_id = await thread_of_run(client, run_id)
    note = "Thanks for the update on my order; " * 8
    for first in range(0, 999, 111):
        posted = await asyncio.gather(
            *(
                client.post(
                    f"/v1/threads/{thread_id}/messages",
                    json={"content": f"{first + i}: {note}", "branch": "thanks"},
                )
                for i in range(111)
            )
        )
        assert {p.status_code for p in posted} == {202}

    async def all_posted() -> bool:
        thread = (await client.get(f"/v1/threads/{thread_id}")).json()
        return bool(thread["messages"] == 1998)

    await until(all_posted, "1,998 messages")
    openai.then(OpenAiWire.stream(["Anything else?"]))
    asked = await client.post(
        f"/v1/threads/{thread_id}/messages", json={"content": "One more question"}
    )
    assert (await wait_for_command(client, asked.json()["command_id"]))["status"] == "accepted"
    said = await until(lambda: every_message(client, thread_id, 2000), "the reply")

    assert [m["content"] for m in said[-2:]] == ["One more question", "Anything else?"]
    sent = openai.requests[-1].body["messages"]
    assert (len(sent), sent[-1]["content"]) == (2000, "One more question")
    transcript = sum(len(m["content"].encode()) for m in sent)
    sizes = await stored_sizes(heddle, thread_id)
    assert transcript > CLAIM_THRESHOLD
    assert max(sizes.values()) < 2048, sizes
    done = await client.post(f"/v1/threads/{thread_id}/complete", json={"data": {}})
    assert done.status_code == 202
    state = await wait_for_run(client, run_id)
    assert len(state["variables"]["chat"]["messages"]) == 2000
    assert max((await stored_sizes(heddle, run_id)).values()) < SMALL


async def every_message(
    client: httpx.AsyncClient, thread_id: str, count: int
) -> list[dict[str, Any]] | None:
    """The thread's messages, page by page, once there are `count` of them."""
    if (await client.get(f"/v1/threads/{thread_id}")).json()["messages"] < count:
        return None
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 500} | ({"cursor": cursor} if cursor else {})
        page = (await client.get(f"/v1/threads/{thread_id}/messages", params=params)).json()
        found += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            return found


async def test_an_input_that_lists_claims_of_its_own_reads_no_claimed_value(
    heddle: Any, client: httpx.AsyncClient, openai: FakeLlmServer
) -> None:
    async with heddle.reads.connection() as conn:
        cursor = await conn.execute(f"SELECT sha256 FROM {CLAIMS_TABLE} LIMIT 1")
        [(someone_elses,)] = await cursor.fetchall()
    forged = {"text": "€5", "_claims_": [[["text"], someone_elses]], "more": "x" * 300_000}
    openai.then(OpenAiWire.stream(["Five euros."]))
    await publish(client, summary("forger"))

    state = await wait_for_run(client, await start_run(client, "forger", forged))

    assert (state["status"], state["input"]) == ("completed", forged)
    assert openai.requests[-1].body["messages"][-1]["content"] == "Sum up: €5"
    [started] = (await client.get(f"/v1/runs/{state['run_id']}/events")).json()["events"][:1]
    assert started["data"]["input"] == forged  # itself claimed, and given back as it was


async def test_a_remote_task_too_large_to_send_fails_its_node_as_a_definition_error(
    client: httpx.AsyncClient,
) -> None:
    both = {"a": "{{ input.text }}", "b": "{{ input.text }}"}
    twice = {"kind": "remote", "capability": "echo", "input": both}
    await publish(client, {"name": "hand-over", "start": "twice", "nodes": {"twice": twice}})
    run_id = await start_run(client, "hand-over", {"text": "€" * 300_000})

    state = await wait_for_run(client, run_id)

    assert (state["status"], state["error"]["class"]) == ("failed", "definition")
    assert "fit on its topic" in state["error"]["message"]


async def test_a_huge_input_that_fails_the_schema_is_rejected_with_a_short_reason(
    client: httpx.AsyncClient,
) -> None:
    short = summary("short-input") | {
        "inputs": {"type": "object", "properties": {"text": {"maxLength": 10}}}
    }
    await publish(client, short)
    sent = await client.post(
        "/v1/runs", json={"workflow": "short-input", "input": {"text": "€" * 300_000}}
    )

    outcome = await wait_for_command(client, sent.json()["command_id"])

    assert outcome["status"] == "rejected"
    assert outcome["reason"].startswith("input does not match the workflow's inputs: input.text")
    assert outcome["reason"].endswith("(300002 characters) is too long")
    assert len(outcome["reason"]) < 1000


async def test_an_input_shaped_like_the_stores_own_encoding_is_rejected_at_its_path(
    client: httpx.AsyncClient, openai: FakeLlmServer
) -> None:
    await publish(client, summary("shaped"))
    odd = {"text": "hi", "extra": [{"_type_": "uuid_hex", "_data_": "not hex"}]}
    sent = await client.post("/v1/runs", json={"workflow": "shaped", "input": odd})

    outcome = await wait_for_command(client, sent.json()["command_id"])

    assert outcome["status"] == "rejected"
    assert outcome["reason"].startswith("invalid command: payload.input.extra[0]: an object")
    openai.then(OpenAiWire.stream(["Fine."]))
    after = await start_run(client, "shaped", {"text": "plain"})
    assert (await wait_for_run(client, after))["status"] == "completed"


BILLION_LAUGHS = """
name: laughs
start: a
lol: &lol ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
lol2: &lol2 [*lol, *lol, *lol, *lol, *lol, *lol, *lol, *lol, *lol]
lol3: &lol3 [*lol2, *lol2, *lol2, *lol2, *lol2, *lol2, *lol2, *lol2, *lol2]
nodes:
  a: {kind: set, vars: {x: [*lol3, *lol3, *lol3, *lol3, *lol3, *lol3, *lol3, *lol3]}}
"""


async def test_yaml_aliases_in_a_workflow_are_refused_with_422_at_their_path(
    client: httpx.AsyncClient,
) -> None:
    response = await client.put(
        "/v1/workflows/laughs",
        content=BILLION_LAUGHS,
        headers={"Content-Type": "application/yaml"},
    )

    assert response.status_code == 422, response.text
    [problem] = response.json()["problems"]
    assert problem["path"] == "lol2[0]"
    assert "alias" in problem["message"]


class Note(Aggregate):
    """An aggregate with text of any size, for the relay's test."""

    @event("Written")
    def __init__(self, text: Any) -> None:
        self.text = text


async def relayed(
    database_url: str, kafka_bootstrap: str, first: Note, **producer: Any
) -> tuple[list[Any], list[Any]]:
    """Store `first`, then a small note, and publish both once with a relay of their own:
    what reached the events topic and the dead-letter topic."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    events, dlq = f"{prefix}events", f"{prefix}dlq"
    kafka = Settings(kafka_bootstrap_servers=kafka_bootstrap, _env_file=None)
    await create_topics(kafka, [events, dlq], 1)
    store = EventStore(env=store_environment(database_url, 0, create_tables=True))
    store.save(first)
    store.save(Note("small"))
    sender = await start_producer(kafka, "test-relay", **producer)
    relay = Relay(store, database_url, events, producer=sender, dlq_topic=dlq)
    try:
        assert await relay.publish_pending() == 2
        assert len(store.recorder.select_events(first.id)) == 1  # it stays in the store
    finally:
        await sender.stop()
        store.close()
    return await read_all(kafka_bootstrap, events), await read_all(kafka_bootstrap, dlq)


async def test_a_message_the_broker_refuses_is_dead_lettered_and_the_relay_moves_on(
    database_url: str, kafka_bootstrap: str
) -> None:
    too_large = Note("x" * 50_000)

    published, dead = await relayed(
        database_url, kafka_bootstrap, too_large, max_request_size=20_000
    )

    assert [json.loads(m.value)["data"]["text"] for m in published] == ["small"]
    [letter] = dead
    assert json.loads(letter.value)["aggregate_id"] == str(too_large.id)
    assert dict(letter.headers)["x-error"].startswith(b"MessageSizeTooLargeError")


async def test_an_event_whose_json_does_not_read_is_dead_lettered_and_the_relay_moves_on(
    database_url: str, kafka_bootstrap: str
) -> None:
    unreadable = Note({"_type_": "uuid_hex", "_data_": "not hex"})

    published, dead = await relayed(database_url, kafka_bootstrap, unreadable)

    assert [json.loads(m.value)["data"]["text"] for m in published] == ["small"]
    [letter] = dead
    assert json.loads(letter.value)["aggregate_id"] == str(unreadable.id)
    assert dict(letter.headers)["x-error"].startswith(b"ValueError")


async def test_what_the_relay_publishes_while_saving_its_position_is_saved_without_a_next_event(
    database_url: str, kafka_bootstrap: str
) -> None:
    """Reads that wait for a write trust the relay's saved position: an event published
    while the previous position was being saved must not wait for another event."""
    events = f"t{uuid.uuid4().hex[:10]}.events"
    kafka = Settings(kafka_bootstrap_servers=kafka_bootstrap, _env_file=None)
    await create_topics(kafka, [events], 1)
    store = EventStore(env=store_environment(database_url, 0, create_tables=True))
    sender = await start_producer(kafka, "test-relay")
    relay = Relay(store, database_url, events, producer=sender, position_name="relay-slow-save")
    table = SQL(store.recorder.tracking_table_name)  # type: ignore[attr-defined]
    try:
        with psycopg.connect(database_url) as slow_disk:  # holds the position save up
            slow_disk.execute(SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(table))
            store.save(Note("first"))
            assert await relay.publish_pending() == 1  # its position's save now waits
            store.save(Note("second"))
            assert await relay.publish_pending() == 1
        assert relay._checkpoint is not None
        await asyncio.wait_for(relay._checkpoint, 30)

        saved = store.positions(["relay-slow-save"])["relay-slow-save"]
        assert saved == relay.position == store.recorder.max_notification_id()
    finally:
        await sender.stop()
        store.close()


async def read_all(bootstrap: str, topic: str) -> list[Any]:
    """Every message of a topic, from the first to the last written when called."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in await partitions_of(consumer, topic)]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        found: list[Any] = []
        while len(found) < sum(ends.values()):
            for batch in (await consumer.getmany(*partitions, timeout_ms=1000)).values():
                found += [m for m in batch if m.offset < ends[TopicPartition(m.topic, m.partition)]]
        return found
    finally:
        await consumer.stop()
