"""Forks and graph edits on real PostgreSQL and real Kafka, with the OpenAI SDK talking to
a fake server that counts the model calls a fork makes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import module_heddle
from tests.fakes.llm_servers import FakeLlmServer, OpenAiWire, running_server
from tests.integration.helpers import api_client, publish, wait_for_command, wait_for_run

CHAIN = {
    "name": "chain",
    "start": "n1",
    "nodes": {
        f"n{i}": {
            "kind": "llm",
            "model": "openai:gpt-4o-mini",
            "stream": False,
            "prompt": "Begin" if i == 1 else f"Go on from {{{{ vars.o{i - 1} }}}}",
            "output": f"o{i}",
            **({"next": f"n{i + 1}"} if i < 10 else {}),
        }
        for i in range(1, 11)
    },
}


@pytest.fixture(scope="module")
async def provider() -> AsyncIterator[FakeLlmServer]:
    async with running_server() as server:
        yield server


@pytest.fixture(scope="module")
async def heddle(
    provider: FakeLlmServer,
    postgres_url: str,
    kafka_bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Any]:
    environ = {"OPENAI_BASE_URL": f"{provider.url}/v1", "OPENAI_API_KEY": "sk-test"}
    async with module_heddle(tmp_path_factory, postgres_url, kafka_bootstrap, environ) as instance:
        yield instance


@pytest.fixture
async def client(heddle: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(heddle) as api:
        yield api


@pytest.fixture(scope="module")
async def source(heddle: Any, provider: FakeLlmServer) -> dict[str, Any]:
    """A completed 10-node chain; the provider answered each node `answer k`."""
    provider.then(*(OpenAiWire.completion(f"answer {k}") for k in range(1, 11)))
    async with api_client(heddle) as api:
        await publish(api, CHAIN)
        started = (await api.post("/v1/runs", json={"workflow": "chain"})).json()
        run = await wait_for_run(api, started["run_id"])
    assert run["status"] == "completed", run
    assert provider.calls == 10
    return run


async def fork(client: httpx.AsyncClient, run_id: str, **body: Any) -> dict[str, Any]:
    sent = (await client.post(f"/v1/runs/{run_id}/fork", json={"from_node": "n6", **body})).json()
    outcome = await wait_for_command(client, sent["command_id"])
    assert outcome["status"] == "accepted", outcome
    return await wait_for_run(client, sent["run_id"])


async def test_a_fork_at_node_6_with_a_new_prompt_makes_exactly_five_model_calls(
    client: httpx.AsyncClient, provider: FakeLlmServer, source: dict[str, Any]
) -> None:
    provider.then(*(OpenAiWire.completion(f"again {k}") for k in range(6, 11)))
    before = provider.calls
    run = await fork(client, source["run_id"], prompts={"n6": "Once more from {{ vars.o5 }}"})
    assert provider.calls - before == 5
    assert run["status"] == "completed"
    sent = [r.body["messages"][-1]["content"] for r in provider.requests[before:]]
    assert sent[0] == "Once more from answer 5"
    assert sent[1:] == [f"Go on from again {k}" for k in range(6, 10)]
    assert [run["variables"][f"o{k}"] for k in range(1, 11)] == [
        *(f"answer {k}" for k in range(1, 6)),
        *(f"again {k}" for k in range(6, 11)),
    ]


async def test_a_recorded_fork_with_the_same_prompt_makes_no_model_call(
    client: httpx.AsyncClient, provider: FakeLlmServer, source: dict[str, Any]
) -> None:
    before = provider.calls
    run = await fork(client, source["run_id"], mode="recorded")
    assert provider.calls == before
    assert run["status"] == "completed"
    assert run["variables"] == source["variables"]
    diff = (
        await client.get("/v1/runs/diff", params={"a": source["run_id"], "b": run["run_id"]})
    ).json()
    assert diff["first_divergence"] is None
    assert [n for n, node in diff["nodes"].items() if node["b"].get("replayed")] == [
        f"n{k}" for k in range(6, 11)
    ]


async def test_the_fork_and_its_reused_nodes_show_in_its_replay(
    client: httpx.AsyncClient, source: dict[str, Any]
) -> None:
    run = await fork(client, source["run_id"], mode="recorded")
    view = (await client.get(f"/v1/runs/{run['run_id']}/state", params={"at": 1})).json()
    assert view["timeline"][0]["summary"] == (
        f"fork of run {source['run_id']} from n6 (recorded) started by api; "
        "reused n1, n2, n3, n4, n5"
    )
    assert view["state"]["nodes"]["n5"] == {
        "status": "completed",
        "attempt": 1,
        "output": "answer 5",
        "reused": True,
    }
    assert view["state"]["nodes"]["n6"]["status"] == "pending"
    assert view["timeline"][1]["summary"] == "n6 (llm) started, attempt 1"


async def test_a_fork_request_with_a_bad_payload_is_refused_with_the_path(
    client: httpx.AsyncClient, source: dict[str, Any]
) -> None:
    response = await client.post(f"/v1/runs/{source['run_id']}/fork", json={"mode": "fast"})
    assert response.status_code == 422
    assert {p["path"] for p in response.json()["problems"]} == {"from_node", "mode"}


# Edits to a running graph

SLOW = {"latency_ms": 1500, "reply": "{{ prompt }}!"}
PAIR = {
    "name": "pair",
    "start": "draft",
    "nodes": {
        "draft": {
            "kind": "llm",
            "model": "scripted:slow",
            "prompt": "draft",
            "options": SLOW,
            "output": "text",
            "next": "publish",
        },
        "publish": {"kind": "set", "vars": {"published": "{{ vars.text }}"}},
    },
}


async def running(client: httpx.AsyncClient) -> str:
    await publish(client, PAIR)
    started = (await client.post("/v1/runs", json={"workflow": "pair"})).json()
    run = await wait_for_run(client, started["run_id"], status={"running"})
    assert run["nodes"]["draft"]["status"] == "running"
    return started["run_id"]


async def edit(client: httpx.AsyncClient, run_id: str, *edits: dict[str, Any]) -> dict[str, Any]:
    body = {"edits": list(edits), "reason": "legal wants a look"}
    sent = (await client.post(f"/v1/runs/{run_id}/edits", json=body)).json()
    return await wait_for_command(client, sent["command_id"])


async def test_a_node_inserted_before_a_pending_node_is_executed(client: httpx.AsyncClient) -> None:
    run_id = await running(client)
    review = {"kind": "set", "vars": {"reviewed": "{{ vars.text }} (reviewed)"}}
    outcome = await edit(
        client,
        run_id,
        {"op": "insert_before", "node": "publish", "new": "review", "definition": review},
    )
    assert outcome["status"] == "accepted", outcome
    run = await wait_for_run(client, run_id)
    assert run["status"] == "completed"
    assert run["variables"] == {
        "text": "draft!",
        "reviewed": "draft! (reviewed)",
        "published": "draft!",
    }
    assert list(run["nodes"]) == ["draft", "publish", "review"]
    events = (await client.get(f"/v1/runs/{run_id}/events")).json()["events"]
    order = [e["data"]["node_id"] for e in events if e["type"] == "WorkflowRun.NodeCompleted"]
    assert order == ["draft", "review", "publish"]
    view = (await client.get(f"/v1/runs/{run_id}/state")).json()
    assert "graph edited by api: legal wants a look (insert_before review)" in [
        entry["summary"] for entry in view["timeline"]
    ]


async def test_an_edit_touching_a_completed_node_is_rejected_with_the_reason(
    client: httpx.AsyncClient,
) -> None:
    await publish(client, PAIR)
    started = (await client.post("/v1/runs", json={"workflow": "pair"})).json()
    await wait_for_run(client, started["run_id"], status={"running"})
    await wait_for_run(client, started["run_id"])
    outcome = await edit(
        client,
        started["run_id"],
        {"op": "update_node", "node": "draft", "set": {"prompt": "other"}},
    )
    assert outcome["status"] == "rejected"
    assert outcome["reason"] == (
        f"run {started['run_id']} is completed: only a running or waiting run's graph can change"
    )
    run_id = await running(client)
    outcome = await edit(
        client, run_id, {"op": "update_node", "node": "draft", "set": {"prompt": "x"}}
    )
    assert outcome["reason"] == (
        "nodes.draft: is running: its prompt cannot change (only its outgoing edges can, "
        "until it ends)"
    )
    assert (await wait_for_run(client, run_id))["variables"]["published"] == "draft!"
