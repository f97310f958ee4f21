"""The walking skeleton end to end: command → store → Kafka → worker → projection → API."""

from __future__ import annotations

import json
import uuid

from aiokafka import AIOKafkaProducer

from tests.integration.helpers import api_client, example, publish, wait_for_command, wait_for_run


async def test_hello_for_ada_completes_as_vip(heddle) -> None:
    async with api_client(heddle) as client:
        await publish(client, example("hello"))
        started = (
            await client.post("/v1/runs", json={"workflow": "hello", "input": {"name": "Ada"}})
        ).json()
        run = await wait_for_run(client, started["run_id"])
        assert run["status"] == "completed"
        assert run["variables"] == {"greeting": "Say hello to Ada", "tier": "vip"}
        assert run["nodes"]["regular"]["status"] == "skipped"
        assert run["nodes"]["greet"]["usage"]["output_tokens"] == 4
        events = (await client.get(f"/v1/runs/{started['run_id']}/events")).json()["events"]
        assert [e["type"] for e in events][:2] == ["WorkflowRun.Started", "WorkflowRun.NodeStarted"]
        assert events[-1]["type"] == "WorkflowRun.Completed"
        assert [e["aggregate_version"] for e in events] == list(range(1, len(events) + 1))


async def test_a_start_run_published_by_a_plain_kafka_client_completes(
    heddle, kafka_bootstrap
) -> None:
    async with api_client(heddle) as client:
        await publish(client, example("hello"))
        run_id = str(uuid.uuid4())
        command = {
            "command_id": str(uuid.uuid4()),
            "type": "StartRun",
            "tenant": "default",
            "actor": "someone@example.com",
            "payload": {"workflow": "hello", "run_id": run_id, "input": {"name": "Grace"}},
        }
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(
                heddle.topics.commands, json.dumps(command).encode(), key=run_id.encode()
            )
        finally:
            await producer.stop()
        run = await wait_for_run(client, run_id)
        assert run["variables"]["tier"] == "regular"
        assert run["started_by"] == "someone@example.com"
        receipt = await wait_for_command(client, command["command_id"])
        assert receipt["status"] == "accepted"
        assert receipt["result"]["run_id"] == run_id


async def test_an_invalid_definition_gets_422_with_the_path_of_each_problem(heddle) -> None:
    definition = example("hello")
    definition["nodes"]["route"]["cases"][0]["next"] = "vipp"
    definition["nodes"]["greet"]["prompt"] = "Say hello to {{ input.name"
    async with api_client(heddle) as client:
        response = await client.put("/v1/workflows/hello", json=definition)
    assert response.status_code == 422
    paths = {p["path"]: p["message"] for p in response.json()["problems"]}
    assert paths["nodes.route.cases[0].next"].startswith("unknown node 'vipp'")


async def test_publishing_the_same_definition_twice_keeps_one_version(heddle) -> None:
    async with api_client(heddle) as client:
        first = await publish(client, example("hello"))
        second = await publish(client, example("hello"))
        changed = example("hello")
        changed["description"] = "changed"
        third = await publish(client, changed)
    assert first["version"] == second["version"] == 1
    assert third["version"] == 2
    assert third["content_hash"] != first["content_hash"]


async def test_a_body_over_the_limit_is_refused_with_413(heddle) -> None:
    async with api_client(heddle) as client:
        response = await client.post(
            "/v1/runs",
            content=b"{" + b" " * (heddle.settings.max_body_bytes + 1) + b"}",
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 413
