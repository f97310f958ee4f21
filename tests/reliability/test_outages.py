"""A PostgreSQL outage in the middle of work: connections refused and the open ones
killed for 40 s, longer than any wait of Heddle's, while model calls are in flight in a worker
process. Nothing is dead-lettered, every run completes with each node recorded once, a
run started during the outage runs once the database is back, and meanwhile the API
answers 503 with Retry-After instead of 500 or hanging."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from psycopg.conninfo import conninfo_to_dict
from psycopg.sql import SQL, Identifier

from infra.projector import PROJECTIONS, rebuild
from tests.fakes.llm_servers import FakeLlmServer, OpenAiWire, Received, Reply
from tests.integration.helpers import api_client, problem_of, publish, start_run, wait_for_run
from tests.processes import spawned_workers, wait_for_line
from tests.reliability.conftest import completions, once_each
from tests.reliability.test_scale_out import NODES, triage

RUNS = 20
OUTAGE_S = 40
"""As issue 14 measured it: far longer than a connection wait (db_wait_seconds), its tries
and the dead-letter limit's backoff together (before, a 3 s outage could dead-letter work
in flight, and 40 s left runs running for ever)."""


def slowly(request: Received) -> Reply:
    prompt = request.body["messages"][-1]["content"]
    return replace(OpenAiWire.completion(f"done: {prompt}"), delay=1.0)


@asynccontextmanager
async def refused(postgres_url: str, database_url: str) -> AsyncIterator[None]:
    """PostgreSQL refuses new connections to the test's database and kills the open
    ones, until the block ends."""
    name = conninfo_to_dict(database_url)["dbname"]
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
        await admin.execute(
            SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(Identifier(name))
        )
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        )
        try:
            yield
        finally:
            await admin.execute(
                SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(Identifier(name))
            )


async def start_by_kafka(bootstrap: str, topic: str) -> str:
    """Publish a `StartRun` as any Kafka client may; the run's id."""
    run_id = str(uuid.uuid4())
    command = {
        "command_id": str(uuid.uuid4()),
        "type": "StartRun",
        "tenant": "default",
        "actor": "kafka-client",
        "payload": {"workflow": "triage", "run_id": run_id, "input": {"ticket": "during"}},
    }
    # a client that waits out a broker stall of up to two minutes
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=120_000)
    await producer.start()
    try:
        await producer.send_and_wait(topic, json.dumps(command).encode(), key=run_id.encode())
    finally:
        await producer.stop()
    return run_id


async def rebuilt_equals_live(
    database_url: str, store: Any, bootstrap: str, topic: str
) -> str | None:
    """How the read models' rows (every table's), live once the projector has applied
    every message of `topic` so far, differ from the rows after a rebuild of every
    projection from the store: None when they are the same."""
    tables = [name for projection in PROJECTIONS.values() for name in projection.TABLES]
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:

        async def digests() -> dict[str, list[str]]:
            found = {}
            for table in tables:
                cursor = await conn.execute(
                    SQL("SELECT t::text FROM {} t ORDER BY 1").format(Identifier(table))
                )
                found[table] = [row[0] for row in await cursor.fetchall()]
            return found

        # caught up: the projector has applied every message of every partition so far
        ends = await end_offsets(bootstrap, topic)
        async with asyncio.timeout(60):
            while True:
                cursor = await conn.execute(
                    "SELECT source, max(position) FROM projection_positions"
                    " WHERE projection LIKE 'projector@%%' AND source LIKE %s GROUP BY source",
                    [f"{topic}:%"],
                )
                applied = {s.rpartition(":")[2]: p for s, p in await cursor.fetchall()}
                if all(applied.get(str(p), -1) >= end - 1 for p, end in ends.items() if end):
                    break
                await asyncio.sleep(0.1)
        live = await digests()
        await asyncio.to_thread(rebuild, database_url, store)
        rebuilt = await digests()
    differences = []
    for table in tables:
        only_live = sorted(set(live[table]) - set(rebuilt[table]))[:3]
        only_rebuilt = sorted(set(rebuilt[table]) - set(live[table]))[:3]
        if only_live or only_rebuilt or len(live[table]) != len(rebuilt[table]):
            differences.append(f"{table}: live only {only_live}; rebuilt only {only_rebuilt}")
    return "\n".join(differences) or None


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """Each partition's end offset (the offset the next message will get)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()  # a topic never written
            partitions = consumer.partitions_for_topic(topic) or set()
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
    finally:
        await consumer.stop()
    return {tp.partition: end for tp, end in ends.items()}


async def dead_letters(bootstrap: str, topic: str) -> int:
    return sum((await end_offsets(bootstrap, topic)).values())


async def test_a_database_outage_mid_flight_loses_nothing_and_the_api_answers_503(
    front: Any,
    settings: Any,
    postgres_url: str,
    database_url: str,
    kafka_bootstrap: str,
    openai: FakeLlmServer,
    provider: dict[str, str],
) -> None:
    openai.answer = slowly
    async with api_client(front) as client:
        await publish(client, triage())
        with spawned_workers(1, settings, database_url, kafka_bootstrap, provider) as [worker]:
            run_ids = [await start_run(client, "triage", {"ticket": f"T{n}"}) for n in range(RUNS)]
            await wait_for_line(worker, "calling ")
            async with refused(postgres_url, database_url):
                await asyncio.sleep(2)  # the calls in flight finish meanwhile
                listed = await client.get("/v1/runs", timeout=15)
                ready = await client.get("/readyz", timeout=15)
                # a run started meanwhile by a Kafka client waits there
                run_ids.append(await start_by_kafka(kafka_bootstrap, front.topics.commands))
                await asyncio.sleep(OUTAGE_S)
            runs = [await wait_for_run(client, run_id, timeout=90) for run_id in run_ids]
            completed = await completions(client, run_ids)
        waited = worker.logged("is unavailable") + worker.logged("outcomes failed")
        assert waited, "".join(worker.lines[-30:])
    assert listed.status_code == 503, listed.text
    problem_of(listed, 503)
    assert listed.headers["retry-after"].isdigit()
    assert listed.json()["unavailable"] == "postgres"
    assert ready.status_code == 503
    assert ready.json()["checks"]["postgres"].startswith("unavailable")
    assert ready.json()["checks"]["kafka"] == "ok"
    assert [run["status"] for run in runs] == ["completed"] * (RUNS + 1)
    assert completed == once_each(run_ids, NODES), "each node recorded as completed once"
    assert await dead_letters(kafka_bootstrap, front.topics.dlq) == 0
    differences = await rebuilt_equals_live(
        database_url, front.store, kafka_bootstrap, front.topics.events
    )
    assert differences is None, f"the read models differ from a rebuild:\n{differences}"
