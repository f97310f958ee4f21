"""Node kinds through Kafka and PostgreSQL: each example in examples/ runs to the outcome
its documentation promises."""

from __future__ import annotations

from typing import Any

import httpx

from tests.integration.helpers import example, publish, wait_for_run
from tests.integration.shared import client, heddle  # noqa: F401 (fixtures)


async def run_example(
    client: httpx.AsyncClient, name: str, input: dict[str, Any]
) -> dict[str, Any]:
    definition = example(name)
    await publish(client, definition)
    started = (
        await client.post("/v1/runs", json={"workflow": definition["name"], "input": input})
    ).json()
    return await wait_for_run(client, started["run_id"], timeout=60)


async def test_parallel_branches_meet_at_a_join_with_their_answers_in_order(
    client: httpx.AsyncClient,
) -> None:
    run = await run_example(client, "fanout", {"topic": "tea"})
    assert run["status"] == "completed"
    assert run["variables"]["views"] == ["Pros of tea", "Cons of tea"]
    assert run["variables"]["summary"] == "Weigh Pros of tea against Cons of tea"
    events = (await client.get(f"/v1/runs/{run['run_id']}/events")).json()["events"]
    started = [e["data"]["node_id"] for e in events if e["type"] == "WorkflowRun.NodeStarted"]
    assert started.index("meet") > max(started.index("pros"), started.index("cons"))


async def test_a_map_over_50_items_completes_with_all_50_results_in_order(
    client: httpx.AsyncClient,
) -> None:
    chapters = [f"chapter {i}" for i in range(50)]
    run = await run_example(client, "map", {"chapters": chapters})
    assert run["status"] == "completed"
    assert run["variables"]["titles"] == [f"Title {i + 1}: chapter {i}" for i in range(50)]
    assert run["usage"]["llm_calls"] == 50
    events = (await client.get(f"/v1/runs/{run['run_id']}/events")).json()["events"]
    running = peak = 0
    for event in events:
        running += {"WorkflowRun.MapItemStarted": 1, "WorkflowRun.MapItemCompleted": -1}.get(
            event["type"], 0
        )
        peak = max(peak, running)
    assert peak == 8  # the example's concurrency


async def test_a_tool_node_runs_its_tool_in_the_worker_and_hands_on_the_result(
    client: httpx.AsyncClient,
) -> None:
    run = await run_example(client, "tool", {"quantity": 3, "price": 2.5})
    assert run["status"] == "completed"
    assert run["variables"]["total"] == 7.5
    assert run["variables"]["line"] == "The total is 7.5 EUR"
