"""Entry and exit actions through real Kafka and PostgreSQL: variables set on the way in
and out, documents saved and read back at the artifacts endpoints, and `llm` actions
answered by the scripted provider and by the real OpenAI SDK against a fake server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import module_heddle
from tests.fakes.llm_servers import FakeLlmServer, OpenAiWire
from tests.integration.helpers import api_client, example, publish, wait_for_run
from tests.integration.shared import openai  # noqa: F401 (fixture)
from tests.integration.test_streams import heddle_cli, served


@pytest.fixture(scope="module")
async def heddle(
    postgres_url: str,
    kafka_bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
    openai: FakeLlmServer,
) -> AsyncIterator[Any]:
    environ = {"OPENAI_BASE_URL": f"{openai.url}/v1", "OPENAI_API_KEY": "sk-test-actions"}
    async with module_heddle(tmp_path_factory, postgres_url, kafka_bootstrap, environ) as instance:
        yield instance


@pytest.fixture
async def client(heddle: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(heddle) as api:
        yield api


async def run(
    client: httpx.AsyncClient, definition: dict[str, Any], input: dict[str, Any]
) -> dict[str, Any]:
    await publish(client, definition)
    body = {"workflow": definition["name"], "input": input}
    started = (await client.post("/v1/runs", json=body)).json()
    return await wait_for_run(client, started["run_id"], timeout=60)


async def test_the_actions_example_sets_variables_and_saves_a_brief_readable_as_an_artifact(
    client: httpx.AsyncClient,
) -> None:
    state = await run(
        client, example("actions"), {"customer": "Acme", "arr": 120000, "days_to_renewal": 20}
    )
    assert state["status"] == "completed", state
    variables = state["variables"]
    assert (variables["urgent"], variables["tone"], variables["headline"]) == (
        True,
        "urgent",
        "URGENT: Acme",
    )
    assert variables["risk"] == "low: Acme (120000 USD ARR) renews every year"
    assert state["usage"]["llm_calls"] == 2
    listed = (await client.get(f"/v1/runs/{state['run_id']}/artifacts")).json()
    [item] = listed["items"]
    assert listed["next_cursor"] is None
    assert "content" not in item
    assert (item["name"], item["content_type"], item["node_id"], item["action"]) == (
        "brief-acme.md",
        "text/markdown",
        "draft",
        "nodes.draft.on_exit[0]",
    )
    artifact = (await client.get(f"/v1/artifacts/{item['artifact_id']}")).json()
    assert artifact["content"] == f"# Renewal brief: Acme\n\n{variables['brief']}"
    assert artifact["size"] == len(artifact["content"].encode())
    raw = await client.get(f"/v1/artifacts/{item['artifact_id']}/content")
    assert raw.headers["content-type"].startswith("text/markdown")
    assert raw.text == artifact["content"]
    [attempt] = (await client.get(f"/v1/runs/{state['run_id']}/attempts")).json()["items"]
    assert (attempt["node_id"], attempt["status"], attempt["response"]) == (
        "draft",
        "completed",
        variables["brief"],
    )
    assert attempt["request"]["messages"][-1]["content"] == variables["brief"]
    timeline = (await client.get(f"/v1/runs/{state['run_id']}/events")).json()["events"]
    types = [e["type"].removeprefix("WorkflowRun.") for e in timeline]
    assert types.index("LlmRequestCompleted") < types.index("NodeStarted")
    assert types.index("ArtifactSaved") < types.index("NodeCompleted")


async def test_artifacts_page_with_a_cursor_and_filter_by_node_and_name(
    client: httpx.AsyncClient,
) -> None:
    def notes(node: str) -> dict[str, Any]:
        return {
            "kind": "set",
            "vars": {"x": 1},
            "on_exit": [
                {
                    "document": {
                        "name": f"{node}-{i}.txt",
                        "content_type": "text/plain",
                        "template": f"note {i} of {{{{ input.who }}}}",
                    }
                }
                for i in range(2)
            ],
        }

    definition = {
        "name": "notes",
        "start": "first",
        "nodes": {"first": {**notes("first"), "next": "second"}, "second": notes("second")},
    }
    state = await run(client, definition, {"who": "Ada"})
    url = f"/v1/runs/{state['run_id']}/artifacts"
    page = (await client.get(url, params={"limit": 3})).json()
    assert [a["name"] for a in page["items"]] == ["first-0.txt", "first-1.txt", "second-0.txt"]
    rest = (await client.get(url, params={"limit": 3, "cursor": page["next_cursor"]})).json()
    assert ([a["name"] for a in rest["items"]], rest["next_cursor"]) == (["second-1.txt"], None)
    second = (await client.get(url, params={"node_id": "second"})).json()["items"]
    assert [a["name"] for a in second] == ["second-0.txt", "second-1.txt"]
    named = (await client.get(url, params={"name": "first-1.txt"})).json()["items"]
    assert len(named) == 1
    assert (await client.get(f"/v1/artifacts/{named[0]['artifact_id']}")).json()[
        "content"
    ] == "note 1 of Ada"
    assert (await client.get(url, params={"cursor": "nonsense"})).status_code == 400
    missing = await client.get("/v1/artifacts/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404


async def test_an_openai_answer_goes_to_a_variable_and_stays_literal_in_a_later_document(
    client: httpx.AsyncClient, openai: FakeLlmServer
) -> None:
    openai.then(OpenAiWire.completion("Churn risk {{ 7*7 }} {% raw %}", usage=(9, 4, 0)))
    definition = {
        "name": "risk-note",
        "start": "note",
        "nodes": {
            "note": {
                "kind": "set",
                "vars": {"done": True},
                "on_enter": [
                    {
                        "llm": {
                            "model": "openai:gpt-4o-mini",
                            "output": "risk",
                            "system": "Answer in one line.",
                            "prompt": "Rate the churn risk of {{ input.customer }}",
                        }
                    },
                ],
                "on_exit": [
                    {
                        "document": {
                            "name": "risk.txt",
                            "content_type": "text/plain",
                            "template": "{{ input.customer }}: {{ vars.risk }}",
                        }
                    },
                ],
            }
        },
    }
    calls_before = openai.calls
    state = await run(client, definition, {"customer": "Acme"})
    assert state["status"] == "completed", state
    assert openai.calls == calls_before + 1
    sent = openai.requests[-1].body
    assert sent["messages"][-1] == {"role": "user", "content": "Rate the churn risk of Acme"}
    assert state["variables"]["risk"] == "Churn risk {{ 7*7 }} {% raw %}"
    assert state["usage"]["input_tokens"] == 9
    [item] = (await client.get(f"/v1/runs/{state['run_id']}/artifacts")).json()["items"]
    artifact = (await client.get(f"/v1/artifacts/{item['artifact_id']}")).json()
    assert artifact["content"] == "Acme: Churn risk {{ 7*7 }} {% raw %}"


async def test_publishing_bad_actions_is_422_with_the_path_of_each(
    client: httpx.AsyncClient,
) -> None:
    definition = {
        "name": "bad-actions",
        "start": "a",
        "nodes": {
            "a": {
                "kind": "set",
                "vars": {"x": 1},
                "on_enter": [{"variable": {"compute": {"n": "size("}}}],
                "on_exit": [
                    {
                        "conditional": {
                            "if": "true",
                            "then": [{"document": {"name": "x", "template": "{{ unclosed"}}],
                        }
                    }
                ],
            }
        },
    }
    response = await client.put("/v1/workflows/bad-actions", json=definition)
    assert response.status_code == 422
    paths = [p["path"] for p in response.json()["problems"]]
    assert paths == [
        "nodes.a.on_enter[0].variable.compute.n",
        "nodes.a.on_exit[0].conditional.then[0].document.template",
    ]


async def test_heddle_runs_artifacts_lists_a_runs_documents_and_prints_one(
    heddle: Any, client: httpx.AsyncClient
) -> None:
    state = await run(
        client, example("actions"), {"customer": "Initech", "arr": 5000, "days_to_renewal": 90}
    )
    async with served(heddle) as http:
        code, listed, _ = await heddle_cli(http, "runs", "artifacts", state["run_id"])
        assert code == 0
        assert "brief-initech.md" in listed
        assert "text/markdown" in listed
        code, out, _ = await heddle_cli(http, "runs", "artifacts", state["run_id"], "--json")
        [item] = json.loads(out)
        code, content, _ = await heddle_cli(http, "runs", "artifact", item["artifact_id"])
    assert code == 0
    assert content == f"# Renewal brief: Initech\n\n{state['variables']['brief']}"
    assert "tone relaxed" in content
