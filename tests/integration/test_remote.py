"""Remote nodes through Kafka and PostgreSQL, served by the worker that docs/remote.md
shows (its code block is run as written): results, task errors, infrastructure errors
that are retried, edits returned with a result, and broken results that are refused."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from tests.integration.helpers import publish, wait_for_command, wait_for_run
from tests.integration.shared import client, heddle  # noqa: F401 (fixtures)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "remote.md"


def documented_worker() -> Any:
    """`serve` from the Python block of docs/remote.md."""
    code = re.search(r"```python\n(.*?)```", DOCS.read_text(), re.S)
    assert code, "docs/remote.md has no Python worker"
    namespace: dict[str, Any] = {"__name__": "remote_worker"}
    exec(compile(code.group(1), str(DOCS), "exec"), namespace)
    return namespace["serve"]


def remote_flow(name: str, capability: str, **node: Any) -> dict[str, Any]:
    return {
        "name": name,
        "start": "work",
        "nodes": {
            "work": {
                "kind": "remote",
                "capability": capability,
                "input": {"text": "{{ input.text }}"},
                "output": "result",
                **node,
            },
        },
    }


async def wait_for_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for _ in range(200):
            if topic in await admin.list_topics():
                return
            await asyncio.sleep(0.05)
    finally:
        await admin.close()
    raise AssertionError(f"{topic} was not created")


async def test_a_remote_node_is_served_by_the_worker_written_from_the_docs(
    heddle: Any, client: httpx.AsyncClient, kafka_bootstrap: str
) -> None:
    await publish(client, remote_flow("shout", "shout"))
    prefix = heddle.settings.topic_prefix
    await wait_for_topic(kafka_bootstrap, f"{prefix}heddle.tasks.shout")
    worker = asyncio.create_task(documented_worker()(kafka_bootstrap, prefix, "shout"))
    try:
        started = (
            await client.post("/v1/runs", json={"workflow": "shout", "input": {"text": "hello"}})
        ).json()
        run = await wait_for_run(client, started["run_id"], timeout=60)
        assert run["status"] == "completed"
        assert run["variables"]["result"] == {"text": "HELLO"}
        broken = (
            await client.post("/v1/runs", json={"workflow": "shout", "input": {"text": 7}})
        ).json()
        run = await wait_for_run(client, broken["run_id"], timeout=60)
        assert run["status"] == "completed"  # "7" renders as text: the worker shouts it
        assert run["variables"]["result"] == {"text": "7"}
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)


class ScriptedWorker:
    """A worker that answers each task of `capability` with the next of `replies`."""

    def __init__(self, bootstrap: str, prefix: str, capability: str) -> None:
        self.bootstrap, self.prefix, self.capability = bootstrap, prefix, capability
        self.tasks: list[dict[str, Any]] = []

    async def serve(self, *replies: dict[str, Any]) -> None:
        consumer = AIOKafkaConsumer(
            f"{self.prefix}heddle.tasks.{self.capability}",
            bootstrap_servers=self.bootstrap,
            group_id=f"{self.prefix}{self.capability}",
            auto_offset_reset="earliest",
        )
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap)
        await consumer.start()
        await producer.start()
        try:
            pending = list(replies)
            async for message in consumer:
                task = json.loads(message.value)
                self.tasks.append(task)
                reply = {"task_id": task["task_id"], "tenant": task["tenant"], **pending.pop(0)}
                await producer.send_and_wait(
                    task["reply_to"], json.dumps(reply).encode(), key=message.key
                )
                if not pending:
                    return
        finally:
            await consumer.stop()
            await producer.stop()


async def run_with(
    heddle: Any,
    client: httpx.AsyncClient,
    bootstrap: str,
    name: str,
    replies: list[dict[str, Any]],
    **node: Any,
) -> tuple[dict[str, Any], ScriptedWorker]:
    await publish(client, remote_flow(name, name, **node))
    prefix = heddle.settings.topic_prefix
    await wait_for_topic(bootstrap, f"{prefix}heddle.tasks.{name}")
    worker = ScriptedWorker(bootstrap, prefix, name)
    serving = asyncio.create_task(worker.serve(*replies))
    started = (
        await client.post("/v1/runs", json={"workflow": name, "input": {"text": "x"}})
    ).json()
    run = await wait_for_run(client, started["run_id"], timeout=60)
    await asyncio.wait_for(serving, 30)
    return run, worker


async def test_an_infrastructure_error_is_retried_and_a_task_error_is_not(
    heddle: Any, client: httpx.AsyncClient, kafka_bootstrap: str
) -> None:
    infra = {"status": "infra_error", "error": {"message": "scanner offline"}}
    run, worker = await run_with(
        heddle,
        client,
        kafka_bootstrap,
        "scan",
        [infra, {"status": "ok", "output": 42}],
        retry={"attempts": 2, "backoff": "1s"},
    )
    assert run["status"] == "completed"
    assert run["variables"]["result"] == 42
    assert [t["attempt"] for t in worker.tasks] == [1, 2]
    run, worker = await run_with(
        heddle,
        client,
        kafka_bootstrap,
        "ocr",
        [{"status": "task_error", "error": {"message": "not a document", "code": "bad_input"}}],
    )
    assert run["status"] == "failed"
    assert run["error"] == {"node": "work", "class": "task", "message": "not a document"}
    assert len(worker.tasks) == 1


async def test_edits_returned_with_a_result_insert_a_step_after_the_remote_node(
    heddle: Any, client: httpx.AsyncClient, kafka_bootstrap: str
) -> None:
    edits = [
        {
            "op": "add_node",
            "node": "review",
            "definition": {"kind": "set", "vars": {"reviewed": True}},
        },
        {"op": "add_edge", "from": "work", "to": "review"},
    ]
    run, _ = await run_with(
        heddle,
        client,
        kafka_bootstrap,
        "triage",
        [{"status": "ok", "output": "needs review", "edits": edits, "worker": "t1"}],
        accept_edits=True,
    )
    assert run["status"] == "completed"
    assert run["variables"] == {"result": "needs review", "reviewed": True}
    view = (await client.get(f"/v1/runs/{run['run_id']}/state")).json()
    assert (
        "graph edited by worker:t1: returned by the triage worker"
        " (add_node review, add_edge work->review)" in [e["summary"] for e in view["timeline"]]
    )


async def test_a_broken_result_is_refused_with_the_reason_and_results_keep_flowing(
    heddle: Any, client: httpx.AsyncClient, kafka_bootstrap: str
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        topic = heddle.topics.task_results
        await producer.send_and_wait(
            topic, json.dumps({"task_id": "nope", "tenant": "default", "status": "done"}).encode()
        )
    finally:
        await producer.stop()
    outcome = await wait_for_command(client, "task-result:nope")
    assert outcome["status"] == "rejected"
    assert "payload.task_id: String should match pattern" in outcome["reason"]
    assert (
        "payload.status: Input should be 'ok', 'task_error' or 'infra_error'" in outcome["reason"]
    )
    run, _ = await run_with(
        heddle, client, kafka_bootstrap, "after", [{"status": "ok", "output": 1}]
    )
    assert run["status"] == "completed"
