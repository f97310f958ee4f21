"""Edges with triggers, validators and loops through Kafka and PostgreSQL: a condition edge
released by `SetVariables`, a scheduled edge fired by the timer role, a transition a
validator blocks, a bounded loop, and a model judge behind the real OpenAI SDK."""

from __future__ import annotations

import asyncio
import copy
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import isolated_settings, running_heddle
from tests.fakes.llm_servers import OpenAiWire
from tests.integration.helpers import api_client, example, publish, wait_for_command, wait_for_run
from tests.integration.shared import client, heddle  # noqa: F401 (fixtures)
from tests.integration.test_llm_runs import environment, fakes  # noqa: F401 (fixture)


async def start(
    client: httpx.AsyncClient, definition: dict[str, Any], input: dict[str, Any]
) -> str:
    await publish(client, definition)
    started = (
        await client.post("/v1/runs", json={"workflow": definition["name"], "input": input})
    ).json()
    return str(started["run_id"])


async def events_of(client: httpx.AsyncClient, run_id: str) -> list[dict[str, Any]]:
    return (await client.get(f"/v1/runs/{run_id}/events")).json()["events"]  # type: ignore[no-any-return]


async def wait_for_events(
    client: httpx.AsyncClient, run_id: str, kind: str, count: int, within: float = 30.0
) -> list[dict[str, Any]]:
    """The run's events once `count` of them are of type `kind`."""
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        events = await events_of(client, run_id)
        if len(of_type(events, kind)) >= count:
            return events
        await asyncio.sleep(0.1)
    raise AssertionError(f"run {run_id} has fewer than {count} {kind} events after {within} s")


async def wait_for_row(
    client: httpx.AsyncClient, run_id: str, ready: Any, within: float = 30.0
) -> dict[str, Any]:
    """The run as the read model shows it, once `ready(row)` holds."""
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        row = (await client.get(f"/v1/runs/{run_id}")).json()
        if ready(row):
            return row  # type: ignore[no-any-return]
        await asyncio.sleep(0.1)
    raise AssertionError(f"run {run_id} did not get there in {within} s")


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == f"WorkflowRun.{kind}"]


async def test_the_review_loop_example_redrafts_once_then_validates_and_sends_the_reply(
    client: httpx.AsyncClient,
) -> None:
    run_id = await start(
        client, example("review-loop"), {"customer": "Ada", "complaint": "late parcel"}
    )
    run = await wait_for_run(client, run_id, timeout=60)
    assert run["status"] == "completed"
    assert "we are sorry" in run["output"]["sent"]
    assert run["output"]["verdict"] == "APPROVED"
    assert run["nodes"]["review"]["iterations"] == 2
    events = await events_of(client, run_id)
    drafts = [
        e["data"]["attempt"]
        for e in of_type(events, "NodeStarted")
        if e["data"]["node_id"] == "draft"
    ]
    assert drafts == [1, 2]
    [judged] = of_type(events, "LlmRequestCompleted")
    assert judged["data"]["purpose"] == "validator"
    assert run["usage"]["llm_calls"] == 5  # 2 drafts, 2 reviews, 1 judge


async def test_a_loop_whose_reviewer_never_approves_runs_exactly_its_bound(
    client: httpx.AsyncClient,
) -> None:
    definition = copy.deepcopy(example("review-loop"))
    definition["name"] = "review-never"
    definition["nodes"]["review"]["options"]["reply"] = "apologise first"
    run_id = await start(client, definition, {"customer": "Ada", "complaint": "late parcel"})
    run = await wait_for_run(client, run_id, timeout=60)
    assert run["status"] == "completed"
    assert run["output"]["verdict"] == "apologise first"
    events = await events_of(client, run_id)
    assert [e["data"]["iteration"] for e in of_type(events, "LoopIterated")] == [2, 3]
    drafts = [e for e in of_type(events, "NodeStarted") if e["data"]["node_id"] == "draft"]
    assert len(drafts) == 3
    rows = (await client.get(f"/v1/runs/{run_id}/attempts", params={"node_id": "review"})).json()
    assert [(r["attempt"], r["status"]) for r in rows["items"]] == [
        (1, "completed"),
        (2, "completed"),
        (3, "completed"),
    ]


async def test_a_blocked_transition_fails_the_run_with_the_validator_reason_in_its_history(
    client: httpx.AsyncClient,
) -> None:
    definition = copy.deepcopy(example("review-loop"))
    definition["name"] = "review-strict"
    definition["nodes"]["review"]["next"][1]["validators"][0]["expression"] = (
        "size(vars.reply) > 500"
    )
    run_id = await start(client, definition, {"customer": "Ada", "complaint": "late parcel"})
    run = await wait_for_run(client, run_id, timeout=60)
    assert run["status"] == "failed"
    assert run["error"]["class"] == "validation"
    assert "the reply is too short" in run["error"]["message"]
    assert run["nodes"]["review"]["blocked"] == [
        {"to": "send", "validator": 0, "reason": "the reply is too short"}
    ]
    timeline = (await client.get(f"/v1/runs/{run_id}/state")).json()["timeline"]
    assert "review -> send blocked by its expression validator 0: the reply is too short" in [
        e["summary"] for e in timeline
    ]
    assert of_type(await events_of(client, run_id), "LlmRequested") == []  # never asked the judge


async def test_a_condition_edge_waits_until_set_variables_and_a_scheduled_edge_fires_by_the_timer(
    client: httpx.AsyncClient,
) -> None:
    run_id = await start(client, example("follow-up"), {"customer": "Ada"})
    run = await wait_for_run(client, run_id, status={"waiting"})
    assert run["nodes"]["close"]["status"] == "pending"
    # the timer role fires the scheduled edge: check_back runs, and the run waits again
    events = await wait_for_events(client, run_id, "RunWaiting", 2)
    assert [e["type"] for e in events].index("WorkflowRun.TimerFired") < [
        e["type"] for e in events
    ].index("WorkflowRun.NodeStarted", 3)
    run = await wait_for_row(
        client, run_id, lambda row: row["version"] == events[-1]["aggregate_version"]
    )
    assert run["status"] == "waiting"
    assert run["nodes"]["check_back"]["status"] == "completed"
    sent = await client.post(
        f"/v1/runs/{run_id}/variables",
        json={"variables": {"resolved": True}, "reason": "customer confirmed"},
    )
    assert sent.status_code == 202
    assert (await wait_for_command(client, sent.json()["command_id"]))["status"] == "accepted"
    run = await wait_for_run(client, run_id)
    assert run["status"] == "completed"
    assert run["variables"]["status"] == "closed"
    events = await events_of(client, run_id)
    [fired] = of_type(events, "TimerFired")
    assert fired["data"]["timer_id"] == "edge:answer->check_back:1"
    [variables_set] = of_type(events, "VariablesSet")
    assert variables_set["data"]["reason"] == "customer confirmed"
    assert len(of_type(events, "RunWaiting")) == 2


async def test_an_llm_judge_behind_the_openai_sdk_blocks_an_impolite_reply(
    settings: Any,
    database_url: str,
    kafka_bootstrap: str,
    fakes: Any,
) -> None:
    openai, anthropic = fakes
    openai.then(OpenAiWire.completion('{"pass": false, "reason": "it shouts at the customer"}'))
    definition = {
        "name": "judged",
        "start": "write",
        "nodes": {
            "write": {
                "kind": "set",
                "vars": {"reply": "WE DO NOT DO REFUNDS"},
                "next": [
                    {
                        "to": "send",
                        "validators": [
                            {
                                "llm": {
                                    "model": "openai:gpt-4o-mini",
                                    "prompt": "Is this reply polite? {{ vars.reply }}",
                                }
                            }
                        ],
                    }
                ],
            },
            "send": {"kind": "set", "vars": {"sent": True}},
        },
    }
    async with (
        running_heddle(
            settings, database_url, kafka_bootstrap, environment(openai, anthropic)
        ) as instance,
        api_client(instance) as api,
    ):
        run_id = await start(api, definition, {})
        run = await wait_for_run(api, run_id)
        events = await events_of(api, run_id)
    assert run["status"] == "failed"
    assert run["error"]["class"] == "validation"
    assert run["nodes"]["write"]["blocked"][0]["reason"] == "it shouts at the customer"
    [request] = openai.requests
    assert request.body["messages"][-1]["content"] == "Is this reply polite? WE DO NOT DO REFUNDS"
    assert len(of_type(events, "LlmRequestCompleted")) == 1


async def open_task(client: httpx.AsyncClient, run_id: str, version_above: int) -> dict[str, Any]:
    """The run's open task, once the work queue shows one opened after `version_above`."""
    deadline = asyncio.get_running_loop().time() + 30
    while asyncio.get_running_loop().time() < deadline:
        items = (await client.get("/v1/tasks", params={"run_id": run_id})).json()["items"]
        if items and items[0]["version"] > version_above:
            return items[0]  # type: ignore[no-any-return]
        await asyncio.sleep(0.1)
    raise AssertionError(f"no task of run {run_id} opened after version {version_above}")


async def test_a_human_approval_inside_a_loop_opens_its_task_again_after_a_rejection(
    client: httpx.AsyncClient,
) -> None:
    definition = {
        "name": "approve-loop",
        "start": "draft",
        "nodes": {
            "draft": {
                "kind": "llm",
                "model": "scripted:echo",
                "prompt": "A draft",
                "output": "draft",
                "next": "approve",
            },
            "approve": {
                "kind": "human",
                "title": "Approve the draft?",
                "role": "editor",
                "output": "verdict",
                "next": [
                    {
                        "to": "draft",
                        "loop": {"max_iterations": 3},
                        "when": 'vars.verdict.decision == "reject"',
                    },
                    {"to": "publish"},
                ],
            },
            "publish": {"kind": "set", "vars": {"published": True}},
        },
    }
    run_id = await start(client, definition, {})
    first = await open_task(client, run_id, 0)
    decide = f"/v1/runs/{run_id}/tasks/approve/complete"
    assert (await client.post(decide, json={"decision": "reject"})).status_code == 202
    second = await open_task(client, run_id, first["version"])
    assert (second["task_id"], second["status"], second["title"]) == (
        "approve",
        "open",
        "Approve the draft?",
    )
    assert (await client.post(decide, json={"decision": "approve"})).status_code == 202
    run = await wait_for_run(client, run_id)
    assert run["status"] == "completed"
    assert run["variables"]["published"] is True
    events = await events_of(client, run_id)
    assert [e["data"]["output"]["decision"] for e in of_type(events, "TaskCompleted")] == [
        "reject",
        "approve",
    ]


async def test_a_scheduled_edge_is_taken_after_a_restart_of_heddle_while_it_waits(
    postgres_url: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    from infra.devstack import create_database

    definition = {
        "name": "later",
        "start": "ask",
        "nodes": {
            "ask": {"kind": "set", "vars": {"asked": True},
                    "next": [{"to": "remind", "trigger": {"schedule": {"delay": "3s"}}}]},
            "remind": {"kind": "set", "vars": {"reminded": True}},
        },
    }  # fmt: skip
    settings = isolated_settings(tmp_path / "heddle")
    database_url = create_database(postgres_url, f"test_{uuid.uuid4().hex[:16]}")
    async with (
        running_heddle(settings, database_url, kafka_bootstrap) as instance,
        api_client(instance) as api,
    ):
        run_id = await start(api, definition, {})
        await wait_for_run(api, run_id, status={"waiting"})
        began = time.monotonic()
    # Heddle is down while the edge's timer comes due.
    async with (
        running_heddle(settings, database_url, kafka_bootstrap) as instance,
        api_client(instance) as api,
    ):
        run = await wait_for_run(api, run_id, timeout=30)
        events = await events_of(api, run_id)
    assert run["status"] == "completed"
    assert run["variables"]["reminded"] is True
    assert time.monotonic() - began >= 2.5  # not before its time
    assert [e["data"]["timer_id"] for e in of_type(events, "TimerFired")] == ["edge:ask->remind:1"]
