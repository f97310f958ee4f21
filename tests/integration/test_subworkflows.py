"""Subworkflows, documents and HTTP tools through Kafka and PostgreSQL: a parent waits for
its child run; a child's failure fails the parent's node with the child's reason."""

from __future__ import annotations

import asyncio

import httpx

from tests.integration.helpers import example, publish, start_run, wait_for_run
from tests.integration.shared import client, heddle  # noqa: F401 (fixtures)


async def test_a_parent_waits_for_its_child_run_and_gets_its_output(
    client: httpx.AsyncClient,
) -> None:
    await publish(client, example("welcome"))
    await publish(client, example("subworkflow"))
    run = await wait_for_run(client, await start_run(client, "onboard", {"customer": "Ada"}), 60)
    assert run["status"] == "completed"
    assert run["variables"]["welcomed"] == {"message": "Welcome aboard, Ada!"}
    assert run["variables"]["note"] == "Sent: Welcome aboard, Ada!"
    child_id = run["nodes"]["welcome"]["child_run_id"]
    children = (await client.get("/v1/runs", params={"parent": run["run_id"]})).json()["items"]
    assert [c["run_id"] for c in children] == [child_id]
    assert children[0]["workflow"] == "welcome"
    assert children[0]["status"] == "completed"
    timeline = (await client.get(f"/v1/runs/{run['run_id']}/state")).json()["timeline"]
    lines = [entry["summary"] for entry in timeline]
    assert f"welcome (subworkflow) started, attempt 1: child run {child_id} of welcome" in lines
    assert f"child run {child_id} completed" in lines


async def test_a_failing_child_fails_the_parents_node_with_the_childs_reason(
    client: httpx.AsyncClient,
) -> None:
    await publish(
        client,
        {
            "name": "divide",
            "start": "calc",
            "nodes": {
                "calc": {
                    "kind": "tool",
                    "tool": "calculator",
                    "arguments": {"expression": "{{ input.sum }}"},
                }
            },
        },
    )
    await publish(
        client,
        {
            "name": "books",
            "start": "total",
            "nodes": {
                "total": {
                    "kind": "subworkflow",
                    "workflow": "divide",
                    "input": {"sum": "1 / 0"},
                    "on_error": "apologise",
                },
                "apologise": {"kind": "set", "vars": {"why": "{{ nodes.total.error.message }}"}},
            },
        },
    )
    run = await wait_for_run(client, await start_run(client, "books", {}), 60)
    assert run["status"] == "completed"  # on_error took over
    error = run["nodes"]["total"]["error"]
    assert error["class"] == "task"
    assert error["message"].endswith("failed at node 'calc': error: division by zero")
    assert run["variables"]["why"] == error["message"]
    child = await wait_for_run(client, error["child_run_id"])
    assert child["status"] == "failed"


async def test_cancelling_a_parent_cancels_the_child_it_waits_for(
    client: httpx.AsyncClient,
) -> None:
    await publish(
        client,
        {
            "name": "hold",
            "start": "wait",
            "nodes": {"wait": {"kind": "wait", "event": "event.name == 'go'"}},
        },
    )
    await publish(
        client,
        {
            "name": "holder",
            "start": "call",
            "nodes": {"call": {"kind": "subworkflow", "workflow": "hold"}},
        },
    )
    run_id = await start_run(client, "holder", {})
    parent = await wait_for_run(client, run_id, status={"running"})
    while "child_run_id" not in parent["nodes"]["call"]:
        await asyncio.sleep(0.05)
        parent = await wait_for_run(client, run_id, status={"running"})
    child_id = parent["nodes"]["call"]["child_run_id"]
    await wait_for_run(client, child_id, status={"running"})
    cancelled = await client.post(f"/v1/runs/{run_id}/cancel", json={"reason": "not needed"})
    assert cancelled.status_code == 202, cancelled.text
    child = await wait_for_run(client, child_id)
    assert child["status"] == "cancelled"
    assert child["error"]["message"] == f"its parent run {run_id} no longer waits for it"
