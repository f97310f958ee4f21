"""Three worker processes share the worker group on real Kafka; one is SIGKILLed while its
model calls are in flight. The survivors take its partitions, every run completes, and
every node of every run is recorded as completed exactly once."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from dataclasses import replace
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient

from domain.messages import RunEvent
from tests.fakes.llm_servers import FakeLlmServer, OpenAiWire, Received, Reply
from tests.integration.helpers import api_client, publish, start_run, wait_for_run
from tests.processes import WorkerProcess, spawned_workers, wait_for_line
from tests.reliability.conftest import PARTITIONS

RUNS = 30
NODES = ("read", "sort", "reply")
LATENCY_S = 1.5
ASSIGNED = "Setting newly assigned partitions"
CALLING = re.compile(r"calling \S+ for run ([0-9a-f-]+) node ([\w-]+)")


def triage() -> dict[str, Any]:
    """A chain of three `llm` nodes on the fake OpenAI server; each prompt names its
    ticket and its node, so each request says which (run, node) it is for."""
    nodes: dict[str, Any] = {}
    for index, node in enumerate(NODES):
        nodes[node] = {
            "kind": "llm",
            "model": "openai:gpt-4o-mini",
            "stream": False,
            "prompt": f"{node} {{{{ input.ticket }}}}",
            "output": node,
            **({"next": NODES[index + 1]} if index + 1 < len(NODES) else {}),
        }
    return {
        "name": "triage",
        "inputs": {"type": "object", "properties": {"ticket": {"type": "string"}}},
        "start": NODES[0],
        "nodes": nodes,
    }


def slowly(request: Received) -> Reply:
    """A model that takes its time, answering what it was asked."""
    prompt = request.body["messages"][-1]["content"]
    return replace(OpenAiWire.completion(f"done: {prompt}"), delay=LATENCY_S)


async def partitions_of(bootstrap: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return len(described["partitions"])


async def settled(workers: list[WorkerProcess]) -> None:
    """Wait until each worker's latest assignment is one partition: the group has all."""
    async with asyncio.timeout(60):
        while True:
            latest = [(worker.logged(ASSIGNED) or [""])[-1] for worker in workers]
            if all(line.count("partition=") == 1 for line in latest):
                return
            await asyncio.sleep(0.05)


def calls_of(worker: WorkerProcess) -> set[tuple[str, str]]:
    """The (run, node) pairs whose model call the worker started."""
    return {m.groups() for line in worker.logged("calling ") if (m := CALLING.search(line))}  # type: ignore[misc]


async def test_a_killed_workers_runs_are_finished_by_the_others_each_node_recorded_once(
    front: Any,
    settings: Any,
    database_url: str,
    kafka_bootstrap: str,
    openai: FakeLlmServer,
    provider: dict[str, str],
) -> None:
    openai.answer = slowly
    assert await partitions_of(kafka_bootstrap, front.topics.events) == PARTITIONS
    async with api_client(front) as client:
        await publish(client, triage())
        with spawned_workers(3, settings, database_url, kafka_bootstrap, provider) as workers:
            await settled(workers)
            run_ids = [await start_run(client, "triage", {"ticket": f"T{n}"}) for n in range(RUNS)]
            killed, *survivors = workers
            await wait_for_line(killed, "calling ")
            killed.kill()
            started_there = calls_of(killed)
            completed = set()
            for run_id in {run for run, _ in started_there}:
                events = (await client.get(f"/v1/runs/{run_id}/events")).json()["events"]
                completed |= {
                    (run_id, e["data"]["node_id"])
                    for e in events
                    if e["type"] == RunEvent.NODE_COMPLETED
                }
            in_flight = started_there - completed
            assert in_flight, "the worker was killed with none of its calls in flight"
            runs = [await wait_for_run(client, run_id, timeout=60) for run_id in run_ids]
            history = {
                run_id: (await client.get(f"/v1/runs/{run_id}/events")).json()["events"]
                for run_id in run_ids
            }
        finished_elsewhere = set().union(*(calls_of(worker) for worker in survivors))
    assert [run["status"] for run in runs] == ["completed"] * RUNS
    assert all(calls_of(worker) for worker in workers), "each worker made calls"
    assert in_flight <= finished_elsewhere, "the survivors made the killed worker's calls"
    completions = Counter(
        (run_id, event["data"]["node_id"])
        for run_id, events in history.items()
        for event in events
        if event["type"] == RunEvent.NODE_COMPLETED
    )
    assert completions == Counter({(run_id, node): 1 for run_id in run_ids for node in NODES})
    assert [run["usage"]["llm_calls"] for run in runs] == [len(NODES)] * RUNS
    tickets = {run["run_id"]: run["input"]["ticket"] for run in runs}
    asked = Counter(request.body["messages"][-1]["content"] for request in openai.requests)
    repeated = {prompt for prompt, times in asked.items() if times > 1}
    assert max(asked.values()) <= 2, "a call is repeated at most once"
    assert repeated <= {f"{node} {tickets[run_id]}" for run_id, node in in_flight}
    assert runs[0]["variables"]["reply"] == f"done: reply {tickets[runs[0]['run_id']]}"
