"""Messages forged on `heddle.events` by anyone who can write it: the store is the truth,
a message only a hint of where to look. A forged `NodeStarted` for a real, running node
with another input makes the worker send the node's stored request, never the forged
one; a forged event the store does not hold changes no read model."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from domain.messages import RunEvent
from tests.integration.helpers import publish, wait_for_run
from tests.integration.shared import client, heddle  # noqa: F401 (fixtures)
from tests.integration.test_remote import remote_flow, wait_for_topic


async def send_events(bootstrap: str, topic: str, key: str, *forged: dict[str, Any]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for event in forged:
            headers = [
                ("event-id", event["id"].encode()),
                ("position", str(event["position"]).encode()),
                ("type", event["type"].encode()),
                ("aggregate-id", event["aggregate_id"].encode()),
                ("aggregate-version", str(event["aggregate_version"]).encode()),
            ]
            value = json.dumps(event).encode()
            await producer.send_and_wait(topic, value, key=key.encode(), headers=headers)
    finally:
        await producer.stop()


async def test_forged_events_change_no_request_and_no_read_model(
    heddle: Any,
    client: httpx.AsyncClient,
    kafka_bootstrap: str,
) -> None:
    await publish(client, remote_flow("forged", "forged"))
    prefix = heddle.settings.topic_prefix
    tasks_topic = f"{prefix}heddle.tasks.forged"
    await wait_for_topic(kafka_bootstrap, tasks_topic)
    consumer = AIOKafkaConsumer(
        tasks_topic, bootstrap_servers=kafka_bootstrap, group_id=None,
        auto_offset_reset="earliest",
    )  # fmt: skip
    await consumer.start()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        started = await client.post(
            "/v1/runs", json={"workflow": "forged", "input": {"text": "real"}}
        )
        run_id = started.json()["run_id"]
        real_task = json.loads((await asyncio.wait_for(consumer.getone(), 30)).value)
        events = (await client.get(f"/v1/runs/{run_id}/events")).json()["events"]
        [node_started] = [e for e in events if e["type"] == RunEvent.NODE_STARTED]
        forged_start = {
            **node_started,
            "data": {**node_started["data"], "input": {"text": "FORGED"}},
        }
        forged_variables = {
            "id": str(uuid.uuid4()),
            "position": node_started["position"] + 10**9,
            "type": RunEvent.VARIABLES_SET,
            "aggregate_type": "WorkflowRun",
            "aggregate_id": run_id,
            "aggregate_version": node_started["aggregate_version"] + 100,
            "timestamp": node_started["timestamp"],
            "data": {"variables": {"forged": True}, "actor": "mallory", "reason": "forged"},
        }
        await send_events(
            kafka_bootstrap, heddle.topics.events, run_id, forged_start, forged_variables
        )
        # the worker takes the forged start as a hint and sends the node's task again
        again = json.loads((await asyncio.wait_for(consumer.getone(), 30)).value)
        reply = {"task_id": real_task["task_id"], "tenant": real_task["tenant"], "status": "ok",
                 "output": {"text": "done"}}  # fmt: skip
        await producer.send_and_wait(
            real_task["reply_to"], json.dumps(reply).encode(), key=run_id.encode()
        )
        run = await wait_for_run(client, run_id, timeout=60)
    finally:
        await consumer.stop()
        await producer.stop()
    assert real_task["input"] == {"text": "real"}
    assert again["input"] == {"text": "real"}, "the stored request, not the forged one"
    assert again["task_id"] == real_task["task_id"]
    assert run["status"] == "completed"
    assert run["variables"] == {"result": {"text": "done"}}, "the forged variables were not applied"
