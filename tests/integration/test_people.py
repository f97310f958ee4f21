"""People in runs through Kafka and PostgreSQL, with the `heddle` CLI: approvals given with
`heddle tasks complete`, the work queue, pause, resume and cancel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.integration.helpers import example, publish, wait_for_run
from tests.integration.shared import heddle  # noqa: F401 (a fixture)
from tests.integration.test_streams import heddle_cli, served


@pytest.fixture
async def client(heddle: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with served(heddle) as api:
        yield api


async def start_refund(client: httpx.AsyncClient, customer: str, amount: int) -> str:
    await publish(client, example("approval"))
    started = (
        await client.post(
            "/v1/runs",
            json={"workflow": "refund-approval", "input": {"customer": customer, "amount": amount}},
        )
    ).json()
    return str(started["run_id"])


async def open_tasks(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    return (await client.get("/v1/tasks", params=params)).json()["items"]  # type: ignore[no-any-return]


async def wait_for_task(client: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    await wait_for_run(client, run_id, status={"running"})
    for _ in range(200):
        found = [t for t in await open_tasks(client) if t["run_id"] == run_id]
        if found:
            return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no open task for run {run_id}")


async def test_an_approval_given_with_heddle_tasks_complete_lets_the_run_finish(
    client: httpx.AsyncClient,
) -> None:
    run_id = await start_refund(client, "Ada", 40)
    task = await wait_for_task(client, run_id)
    assert (task["task_id"], task["type"], task["role"]) == ("review", "approval", "support")
    assert task["title"] == "Approve: Refund 40 EUR to Ada?"
    code, out, err = await heddle_cli(
        client, "tasks", "complete", run_id, "review", "--approve", "--comment", "loyal customer"
    )
    assert code == 0, err
    assert f"task review of run {run_id} completed" in out
    run = await wait_for_run(client, run_id)
    assert run["status"] == "completed"
    assert run["variables"]["outcome"] == "refunded"
    assert run["variables"]["verdict"]["comment"] == "loyal customer"
    done = await open_tasks(client, status="completed", run_id=run_id)
    assert [(t["task_id"], t["completed_by"]) for t in done] == [("review", "api")]


async def test_the_work_queue_puts_the_bigger_refund_first_and_the_cli_lists_it(
    client: httpx.AsyncClient,
) -> None:
    small, big = await start_refund(client, "Bo", 10), await start_refund(client, "Cy", 900)
    await wait_for_task(client, small)
    await wait_for_task(client, big)
    queue = [
        t["run_id"] for t in await open_tasks(client, role="support") if t["run_id"] in (small, big)
    ]
    assert queue == [big, small]
    code, out, _ = await heddle_cli(client, "tasks", "list", "--role", "support", "--json")
    assert code == 0
    assert big in out
    code, _, err = await heddle_cli(client, "tasks", "complete", small, "review")
    assert code == 3  # refused by the API (docs: exit codes)
    assert "task 'review' is an approval: decide approve or reject" in err.replace("\n", " ")
    for run_id in (small, big):
        await heddle_cli(client, "runs", "cancel", run_id, "--reason", "test over")


async def test_a_paused_run_waits_until_resumed_and_a_cancelled_one_ends(
    client: httpx.AsyncClient,
) -> None:
    run_id = await start_refund(client, "Di", 20)
    await wait_for_task(client, run_id)
    code, out, err = await heddle_cli(client, "runs", "pause", run_id, "--reason", "audit")
    assert code == 0, err
    assert f"run {run_id} is paused" in out
    assert (await wait_for_run(client, run_id, status={"paused"}))["status"] == "paused"
    code, out, _ = await heddle_cli(client, "runs", "resume", run_id)
    assert f"run {run_id} is running" in out
    code, out, _ = await heddle_cli(client, "runs", "cancel", run_id, "--reason", "withdrawn")
    run = await wait_for_run(client, run_id)
    assert run["status"] == "cancelled"
    assert run["error"]["message"] == "withdrawn"
    assert await open_tasks(client, run_id=run_id) == []
