"""Node attempts and usage, on real PostgreSQL and Kafka: `GET /v1/runs/{id}/attempts` and
`GET /v1/usage` answer what the runs did, page by page, for the caller's tenant only."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.integration.helpers import api_client, example, publish, wait_for_run
from tests.integration.shared import client, heddle  # noqa: F401 (fixtures)
from tests.integration.test_streams import heddle_cli, served

AGENT = {
    "name": "agent-calc",
    "start": "solve",
    "nodes": {
        "solve": {
            "kind": "agent",
            "model": "scripted:agent",
            "tools": ["calculator"],
            "prompt": "What is 6 times 7?",
            "output": "answer",
            "options": {
                "replies": [
                    {
                        "text": "",
                        "tool_calls": [{"name": "calculator", "arguments": {"expression": "6*7"}}],
                    },
                    "It is 42.",
                ]
            },
        }
    },
}
FLAKY = {
    "name": "flaky",
    "start": "ask",
    "nodes": {
        "ask": {
            "kind": "llm",
            "model": "scripted:flaky",
            "prompt": "Hi",
            "options": {"reply": "Hello", "fail": [{"status": 500}]},
        }
    },
}


async def finished(client: httpx.AsyncClient, workflow: str, input: dict[str, Any]) -> str:
    started = (await client.post("/v1/runs", json={"workflow": workflow, "input": input})).json()
    await wait_for_run(client, started["run_id"])
    return str(started["run_id"])


async def attempts(client: httpx.AsyncClient, run_id: str, **params: Any) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/runs/{run_id}/attempts", params=params)
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


async def pages(client: httpx.AsyncClient, url: str, **params: Any) -> list[list[dict[str, Any]]]:
    """Every page of a paginated read, following `next_cursor`."""
    found, cursor = [], None
    while True:
        answer = await client.get(url, params={**params, **({"cursor": cursor} if cursor else {})})
        assert answer.status_code == 200, answer.text
        found.append(answer.json()["items"])
        cursor = answer.json()["next_cursor"]
        if cursor is None:
            return found


async def test_a_runs_attempts_show_each_node_with_its_request_answer_usage_and_status(
    client: httpx.AsyncClient,
) -> None:
    await publish(client, example("hello"))
    run_id = await finished(client, "hello", {"name": "Ada"})
    greet, route, vip = await attempts(client, run_id)
    assert [(a["node_id"], a["kind"], a["status"]) for a in (greet, route, vip)] == [
        ("greet", "llm", "completed"),
        ("route", "switch", "completed"),
        ("vip", "set", "completed"),
    ]
    assert greet["request"]["messages"][-1]["content"] == "Say hello to Ada"
    assert greet["response"] == greet["output"] == "Say hello to Ada"
    assert (greet["provider"], greet["model"], greet["finish_reason"]) == (
        "scripted",
        "echo",
        "stop",
    )
    assert greet["usage"]["llm_calls"] == 1
    assert greet["usage"]["input_tokens"] == 4
    assert (greet["attempt"], greet["item"], greet["step"]) == (1, None, None)
    assert greet["finished_at"] >= greet["started_at"]
    assert route["output"] == {"next": "vip"}
    assert route["request"] is None
    assert vip["output"] == {"tier": "vip"}
    assert greet["position"] < route["position"] < vip["position"]
    assert await attempts(client, run_id, node_id="route") == [route]
    assert await attempts(client, run_id, status="failed") == []


async def test_an_agents_steps_and_tool_calls_and_a_failed_try_are_in_its_attempts(
    client: httpx.AsyncClient,
) -> None:
    await publish(client, AGENT)
    await publish(client, FLAKY)
    agent_run, flaky_run = await asyncio.gather(
        finished(client, "agent-calc", {}), finished(client, "flaky", {})
    )
    node, first, second = await attempts(client, agent_run)
    assert (first["step"], second["step"]) == (1, 2)
    call = {
        "id": first["tool_calls"][0]["id"],
        "name": "calculator",
        "arguments": {"expression": "6*7"},
        "step": 1,
        "outcome": "ok",
        "content": "42",
    }
    assert first["tool_calls"] == node["tool_calls"] == [call]
    assert (first["finish_reason"], second["response"]) == ("tool_calls", "It is 42.")
    assert node["response"] == node["output"] == "It is 42."
    assert node["usage"]["llm_calls"] == 2
    assert (
        node["usage"]["input_tokens"]
        == first["usage"]["input_tokens"] + second["usage"]["input_tokens"]
    )
    [ask] = await attempts(client, flaky_run)
    assert (ask["status"], ask["failed_tries"], ask["response"]) == ("completed", 1, "Hello")
    assert ask["error"]["class"] == "retryable"


async def test_a_map_node_has_a_row_per_item_with_its_request(client: httpx.AsyncClient) -> None:
    await publish(client, example("map"))
    run_id = await finished(client, "titles", {"chapters": ["dawn", "dusk"]})
    node, *items = await attempts(client, run_id)
    assert node["kind"] == "map"
    assert node["usage"]["llm_calls"] == 2
    assert sorted((i["item"], i["response"]) for i in items) == [
        (0, "Title 1: dawn"),
        (1, "Title 2: dusk"),
    ]
    assert all(
        i["status"] == "completed" and i["request"]["model"] == "scripted:echo" for i in items
    )


async def test_attempts_come_in_pages_and_a_bad_cursor_or_filter_is_refused(
    client: httpx.AsyncClient,
) -> None:
    await publish(client, example("hello"))
    run_id = await finished(client, "hello", {"name": "Grace"})
    every = await attempts(client, run_id)
    assert [
        a for page in await pages(client, f"/v1/runs/{run_id}/attempts", limit=1) for a in page
    ] == every
    url = f"/v1/runs/{run_id}/attempts"
    assert (await client.get(url, params={"cursor": "nonsense"})).status_code == 400
    assert (await client.get(url, params={"status": "asleep"})).status_code == 422
    assert (await client.get(url, params={"limit": 0})).status_code == 422
    assert (await client.get(f"/v1/runs/{uuid.uuid4()}/attempts")).status_code == 404


async def test_usage_sums_per_run_workflow_model_and_day_for_the_tenant(heddle: Any) -> None:
    tenant = f"usage-{uuid.uuid4().hex[:8]}"
    async with api_client(heddle, tenant) as client:
        await publish(client, example("hello"))
        await publish(client, example("map"))
        runs = await asyncio.gather(
            finished(client, "hello", {"name": "Ada"}),
            finished(client, "hello", {"name": "Alan"}),
            finished(client, "titles", {"chapters": ["a", "b", "c"]}),
        )
        per_run = {
            r["run_id"]: r for r in (await client.get("/v1/usage?group_by=run")).json()["items"]
        }
        assert set(per_run) == set(runs)
        for run_id in runs:
            run = (await client.get(f"/v1/runs/{run_id}")).json()
            shown = per_run[run_id]
            assert run["usage"] == {k: shown[k] for k in run["usage"]}
            assert shown["workflow"] == run["workflow"]
            assert shown["runs"] == 1
        by_workflow = (await client.get("/v1/usage?group_by=workflow")).json()["items"]
        assert [(w["workflow"], w["runs"], w["llm_calls"]) for w in by_workflow] == [
            ("hello", 2, 2),
            ("titles", 1, 3),
        ]
        [model] = (await client.get("/v1/usage", params={"group_by": "model"})).json()["items"]
        assert (model["provider"], model["model"], model["llm_calls"]) == ("scripted", "echo", 5)
        today = datetime.now(UTC).date()
        [day] = (await client.get("/v1/usage?group_by=day")).json()["items"]
        assert day["day"] == today.isoformat()
        assert day["runs"] == 3
        total = (await client.get("/v1/usage")).json()
        assert total["group_by"] is None
        assert total["next_cursor"] is None
        [tenant_total] = total["items"]
        assert tenant_total == {k: v for k, v in day.items() if k != "day"}
        yesterday = (today - timedelta(days=1)).isoformat()
        [nothing] = (await client.get("/v1/usage", params={"to": yesterday})).json()["items"]
        assert (nothing["runs"], nothing["llm_calls"], nothing["cost_complete"]) == (0, 0, True)
        from_today = (await client.get("/v1/usage", params={"from": today.isoformat()})).json()
        assert from_today["items"] == [tenant_total]
        only = await client.get("/v1/usage", params={"group_by": "run", "run_id": runs[0]})
        assert [r["run_id"] for r in only.json()["items"]] == [runs[0]]
        paged = await pages(client, "/v1/usage", group_by="workflow", limit=1)
        assert [w for page in paged for w in page] == by_workflow
        assert len(paged) == 2
        for bad, status in (
            ({"group_by": "colour"}, 422),
            ({"from": "soon"}, 422),
            ({"group_by": "day", "cursor": "bm9wZQ=="}, 400),
        ):
            assert (await client.get("/v1/usage", params=bad)).status_code == status


async def test_another_tenants_attempts_are_404_and_its_usage_is_absent(heddle: Any) -> None:
    async with api_client(heddle, f"owner-{uuid.uuid4().hex[:8]}") as owner:
        await publish(owner, example("hello"))
        run_id = await finished(owner, "hello", {"name": "Ada"})
        assert len(await attempts(owner, run_id)) == 3
    async with api_client(heddle, f"other-{uuid.uuid4().hex[:8]}") as other:
        assert (await other.get(f"/v1/runs/{run_id}/attempts")).status_code == 404
        assert (await other.get("/v1/usage?group_by=run")).json()["items"] == []
        [nothing] = (await other.get("/v1/usage")).json()["items"]
        assert nothing["llm_calls"] == 0


async def test_the_cli_shows_a_runs_attempts_and_the_tenants_usage(heddle: Any) -> None:
    async with served(heddle, f"cli-{uuid.uuid4().hex[:8]}") as client:
        await publish(client, example("map"))
        run_id = await finished(client, "titles", {"chapters": ["a", "b"]})
        code, table, stderr = await heddle_cli(client, "runs", "attempts", run_id)
        assert code == 0, stderr
        assert "each[0]" in table
        assert "each[1]" in table
        assert "scripted:echo" in table
        code, shown, stderr = await heddle_cli(client, "runs", "attempts", run_id, "--json")
        assert code == 0, stderr
        assert [a["item"] for a in json.loads(shown)] == [None, 0, 1]
        code, by_model, stderr = await heddle_cli(client, "usage", "--by", "model", "--json")
        assert code == 0, stderr
        [model] = json.loads(by_model)
        assert (model["provider"], model["model"], model["llm_calls"], model["runs"]) == (
            "scripted",
            "echo",
            2,
            1,
        )
        code, table, stderr = await heddle_cli(client, "usage", "--by", "workflow")
        assert code == 0, stderr
        assert "titles" in table
        code, _, stderr = await heddle_cli(client, "usage", "--by", "colour")
        assert code == 2
        assert "colour" in stderr
