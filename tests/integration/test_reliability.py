"""What a user relies on when things go wrong: rejections, redelivery, poison. (Killed
worker processes: tests/reliability/.)"""

from __future__ import annotations

import asyncio
import json
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tests.integration.helpers import (
    api_client,
    example,
    publish,
    start_run,
    wait_for_command,
    wait_for_run,
    wait_for_task,
)


async def _send(bootstrap: str, topic: str, *values: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=b"k")
    finally:
        await producer.stop()


async def _read_all(bootstrap: str, topic: str, count: int, timeout: float = 20.0) -> list[dict]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    found: list[dict] = []
    try:
        async with asyncio.timeout(timeout):
            while len(found) < count:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    found += [
                        {"value": r.value, "headers": {k: v.decode() for k, v in r.headers}}
                        for r in records
                    ]
    finally:
        await consumer.stop()
    return found


def _command(run_id: str, name: str = "Ada", command_id: str | None = None) -> bytes:
    return json.dumps(
        {
            "command_id": command_id or str(uuid.uuid4()),
            "type": "StartRun",
            "payload": {"workflow": "hello", "run_id": run_id, "input": {"name": name}},
        }
    ).encode()


async def test_bad_commands_are_rejected_with_reasons_and_the_next_good_one_runs(
    heddle, kafka_bootstrap
) -> None:
    async with api_client(heddle) as client:
        await publish(client, example("hello"))
        run_id = str(uuid.uuid4())
        bad = [
            b"{not json",
            json.dumps({"command_id": "unknown-1", "type": "LaunchRocket", "payload": {}}).encode(),
            json.dumps(
                {"command_id": "bad-payload-1", "type": "StartRun", "payload": {"input": {}}}
            ).encode(),
            json.dumps(
                {"command_id": "no-workflow-1", "type": "StartRun", "payload": {"workflow": "nope"}}
            ).encode(),
            json.dumps(
                {
                    "command_id": "bad-input-1",
                    "type": "StartRun",
                    "payload": {"workflow": "hello", "input": {"name": 7}},
                }
            ).encode(),
        ]
        await _send(kafka_bootstrap, heddle.topics.commands, *bad, _command(run_id))
        run = await wait_for_run(client, run_id)
        assert run["status"] == "completed"
        reasons = {
            cid: (await wait_for_command(client, cid))["reason"]
            for cid in ("unknown-1", "bad-payload-1", "no-workflow-1", "bad-input-1")
        }
    assert "unknown command type 'LaunchRocket'" in reasons["unknown-1"]
    assert "payload.workflow: Field required" in reasons["bad-payload-1"]
    assert "no workflow named 'nope'" in reasons["no-workflow-1"]
    assert "input.name: 7 is not of type 'string'" in reasons["bad-input-1"]
    results = await _read_all(kafka_bootstrap, heddle.topics.command_results, 6)
    statuses = [json.loads(r["value"])["status"] for r in results]
    assert statuses.count("rejected") == 5
    assert any("malformed JSON" in (json.loads(r["value"])["reason"] or "") for r in results)


async def test_a_redelivered_command_adds_no_events(heddle, kafka_bootstrap) -> None:
    async with api_client(heddle) as client:
        await publish(client, example("hello"))
        run_id, command_id = str(uuid.uuid4()), str(uuid.uuid4())
        await _send(
            kafka_bootstrap, heddle.topics.commands, _command(run_id, command_id=command_id)
        )
        await wait_for_run(client, run_id)
        before = (await client.get(f"/v1/runs/{run_id}/events")).json()["events"]
        await _send(
            kafka_bootstrap, heddle.topics.commands, _command(run_id, command_id=command_id)
        )
        marker = str(uuid.uuid4())
        await _send(kafka_bootstrap, heddle.topics.commands, _command(marker))
        await wait_for_run(client, marker)
        after = (await client.get(f"/v1/runs/{run_id}/events")).json()["events"]
    assert after == before


async def test_a_poison_event_goes_to_the_dead_letter_topic_and_runs_keep_flowing(
    heddle, kafka_bootstrap
) -> None:
    await _send(kafka_bootstrap, heddle.topics.events, b"\x00 not an event")
    async with api_client(heddle) as client:
        await publish(client, example("hello"))
        started = (
            await client.post("/v1/runs", json={"workflow": "hello", "input": {"name": "Ada"}})
        ).json()
        run = await wait_for_run(client, started["run_id"], timeout=60)
    assert run["status"] == "completed"
    dead = await _read_all(kafka_bootstrap, heddle.topics.dlq, 1, timeout=30)
    assert dead[0]["value"] == b"\x00 not an event"
    assert dead[0]["headers"]["x-original-topic"] == heddle.topics.events
    assert "x-error" in dead[0]["headers"]


async def test_dead_letters_are_listed_with_their_reason_and_replayed_to_their_topic(
    heddle, kafka_bootstrap
) -> None:
    await _send(kafka_bootstrap, heddle.topics.events, b"\x00 not an event")
    await _read_all(kafka_bootstrap, heddle.topics.dlq, 1, timeout=30)
    async with api_client(heddle) as client:
        [letter] = (await client.get("/v1/dead-letters")).json()["dead_letters"]
        shown = await client.get(f"/v1/dead-letters/{letter['partition']}/{letter['offset']}")
        entry = {"partition": letter["partition"], "offset": letter["offset"]}
        replayed = await client.post("/v1/dead-letters/replay", json={"entries": [entry]})
        again = await _read_all(kafka_bootstrap, heddle.topics.dlq, 2, timeout=30)
        listed = (await client.get("/v1/dead-letters")).json()["dead_letters"]
        missing = await client.get("/v1/dead-letters/0/999")
    assert letter["topic"] == heddle.topics.events
    assert letter["original_offset"] == 0
    assert letter["error"], "says why it failed"
    assert shown.json()["value"] == "\x00 not an event"
    assert replayed.json() == {"replayed": 1}
    assert again[1]["headers"]["x-replayed-from"] == f"{letter['partition']}@{letter['offset']}"
    assert len(listed) == 2, "still poison: it failed again, and is back with its reason"
    assert missing.status_code == 404


async def test_fifty_concurrent_changes_to_one_run_are_all_kept(heddle) -> None:
    """50 requests set a variable each on one waiting run at once: none is lost, each
    command is accepted once, and the person's approval afterwards still decides it."""
    async with api_client(heddle) as client:
        await publish(client, example("approval"))
        run_id = await start_run(client, "refund-approval", {"customer": "Ada", "amount": 5})
        await wait_for_task(client, run_id)
        sent = await asyncio.gather(
            *(
                client.post(f"/v1/runs/{run_id}/variables", json={"variables": {f"v{n}": n}})
                for n in range(50)
            )
        )
        outcomes = [await wait_for_command(client, s.json()["command_id"]) for s in sent]
        completed = await client.post(
            f"/v1/runs/{run_id}/tasks/review/complete", json={"decision": "approve"}
        )
        assert completed.status_code == 202, completed.text
        run = await wait_for_run(client, run_id, timeout=60)
    assert [o["status"] for o in outcomes] == ["accepted"] * 50
    assert {f"v{n}": n for n in range(50)}.items() <= run["variables"].items()
    assert run["variables"]["outcome"] == "refunded"
