"""Documents, `extract` nodes and HTTP tools through Kafka and PostgreSQL: a PDF uploaded
once per tenant, its text read by the worker and sent through the real OpenAI SDK to a
fake OpenAI server, a field that fails the schema reported; HTTP tools calling a local
server on the allow-list from tool and agent nodes, and hosts off the list refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import module_heddle
from tests.fakes.llm_servers import FakeLlmServer, OpenAiWire, Reply, running_server
from tests.fakes.pdf import pdf_with_pages
from tests.integration.helpers import (
    EXAMPLES,
    api_client,
    example,
    publish,
    start_run,
    wait_for_run,
)
from tests.integration.shared import client, openai  # noqa: F401 (fixtures)

CONTRACT = pdf_with_pages(
    ["Master Services Agreement", "Customer: Acme Corp"],
    ["Annual fee: 48,000 EUR", "Renews next spring"],
)


@pytest.fixture(scope="module")
async def service() -> AsyncIterator[FakeLlmServer]:
    """A local HTTP service for HTTP tools: it answers what each test queues."""
    async with running_server() as server:
        yield server


@pytest.fixture(scope="module")
async def heddle(
    postgres_url: str,
    kafka_bootstrap: str,
    tmp_path_factory: pytest.TempPathFactory,
    openai: FakeLlmServer,
) -> AsyncIterator[Any]:
    environ = {"OPENAI_BASE_URL": f"{openai.url}/v1", "OPENAI_API_KEY": "sk-test-openai"}
    async with module_heddle(
        tmp_path_factory,
        postgres_url,
        kafka_bootstrap,
        environ,
        document_max_bytes=64 * 1024,
        http_tool_hosts="127.0.0.1",
    ) as instance:
        yield instance


async def upload(client: httpx.AsyncClient, content: bytes, content_type: str) -> httpx.Response:
    return await client.post(
        "/v1/documents", content=content, headers={"Content-Type": content_type}
    )


async def run(client: httpx.AsyncClient, workflow: str, input: dict[str, Any]) -> dict[str, Any]:
    return await wait_for_run(client, await start_run(client, workflow, input), timeout=60)


EXTRACT = {
    "name": "pdf-terms",
    "start": "terms",
    "nodes": {
        "terms": {
            "kind": "extract",
            "model": "openai:gpt-4o-mini",
            "document": "{{ input.contract }}",
            "schema": {
                "type": "object",
                "properties": {
                    "customer": {"type": "string"},
                    "annual_value": {"type": "number"},
                    "renewal_date": {"type": "string", "format": "date"},
                },
                "required": ["customer", "annual_value"],
            },
            "output": "terms",
        }
    },
}


async def test_fields_are_extracted_from_an_uploaded_pdf_and_a_bad_one_is_reported(
    client: httpx.AsyncClient,
    openai: FakeLlmServer,
) -> None:
    uploaded = await upload(client, CONTRACT, "application/pdf")
    assert uploaded.status_code == 201, uploaded.text
    document = uploaded.json()
    assert document["pages"] == 2
    assert document["content_type"] == "application/pdf"
    again = await upload(client, CONTRACT, "application/pdf")
    assert again.json()["document_id"] == document["document_id"]  # stored once
    stored = (await client.get(f"/v1/documents/{document['document_id']}")).json()
    assert (stored["size"], stored["pages"], stored["uploaded_by"]) == (len(CONTRACT), 2, "api")
    openai.then(
        OpenAiWire.completion(
            '{"customer": "Acme Corp", "annual_value": 48000, "renewal_date": "next spring"}'
        )
    )
    await publish(client, EXTRACT)
    state = await run(client, "pdf-terms", {"contract": document["document_id"]})
    assert state["status"] == "completed"
    terms = state["variables"]["terms"]
    assert terms["fields"] == {"customer": "Acme Corp", "annual_value": 48000}
    assert terms["invalid"] == [
        {"field": "renewal_date", "value": "next spring", "reason": "'next spring' is not a 'date'"}
    ]
    text = (
        "Master Services Agreement\nCustomer: Acme Corp\n\n"
        "Annual fee: 48,000 EUR\nRenews next spring"
    )
    assert openai.requests[-1].body["messages"][1]["content"].endswith("Document:\n" + text)
    events = (await client.get(f"/v1/runs/{state['run_id']}/events")).json()["events"]
    extracted = next(e for e in events if e["type"] == "WorkflowRun.ExtractionCompleted")
    assert extracted["data"]["source"] == {
        "document_id": document["document_id"],
        "content_type": "application/pdf",
        "pages": 2,
        "characters": len(text),
        "truncated": False,
    }
    assert "Annual fee" not in str(events)  # the text is not recorded
    assert state["usage"]["llm_calls"] == 1
    assert state["nodes"]["terms"]["model"] == "gpt-4o-mini-2024-07-18"
    [usage] = (await client.get("/v1/usage", params={"run_id": state["run_id"]})).json()["items"]
    assert usage["llm_calls"] == 1


async def test_another_tenants_document_is_not_found_and_the_node_says_so(
    heddle: Any,
    client: httpx.AsyncClient,
) -> None:
    document = (await upload(client, b"Customer: Globex", "text/plain")).json()
    async with api_client(heddle, tenant="other") as other:
        await publish(other, EXTRACT)
        state = await run(other, "pdf-terms", {"contract": document["document_id"]})
    assert state["status"] == "failed"
    assert state["error"]["message"].startswith(
        f"no document {document['document_id']} for tenant 'other': upload it with"
    )


async def test_uploads_over_the_limit_or_of_unknown_types_are_refused_saying_why(
    client: httpx.AsyncClient,
) -> None:
    too_big = await upload(client, b"x" * (64 * 1024 + 1), "text/plain")
    assert too_big.status_code == 413
    assert too_big.json()["detail"] == (
        "request body larger than 65536 bytes (the limit is HEDDLE_DOCUMENT_MAX_BYTES)"
    )
    image = await upload(client, b"\x89PNG", "image/png")
    assert image.status_code == 415
    assert image.json()["detail"].startswith("content type 'image/png' is not supported")
    broken = await upload(client, b"%PDF-1.4 nothing else", "application/pdf")
    assert broken.status_code == 422
    assert broken.json()["detail"].startswith("not a readable PDF")


async def test_the_extract_example_runs_on_the_uploaded_contract_fixture(
    client: httpx.AsyncClient,
) -> None:
    document = (await upload(client, (EXAMPLES / "contract.txt").read_bytes(), "text/plain")).json()
    await publish(client, example("extract"))
    state = await run(client, "contract-terms", {"contract": document["document_id"]})
    assert state["status"] == "completed"
    assert state["variables"]["terms"]["fields"] == {"customer": "Acme Corp", "annual_value": 48000}
    assert state["variables"]["status"] == "check renewal_date by hand"


def crm(service: FakeLlmServer) -> dict[str, Any]:
    """A workflow with an HTTP tool on the local service, used by a tool node."""
    return {
        "name": "crm",
        "tools": {
            "account": {
                "description": "A customer account by id.",
                "url": service.url + "/accounts/{{ args.id }}",
                "headers": {"Accept": "application/json"},
                "parameters": {
                    "type": "object",
                    "properties": {"id": {"type": "string"}},
                    "required": ["id"],
                },
            }
        },
        "start": "get",
        "nodes": {
            "get": {
                "kind": "tool",
                "tool": "account",
                "arguments": {"id": "{{ input.id }}"},
                "output": "account",
            }
        },
    }


async def test_a_tool_node_calls_an_http_tool_on_the_allow_list(
    client: httpx.AsyncClient,
    service: FakeLlmServer,
) -> None:
    service.then(Reply(body={"id": "a7", "plan": "gold", "seats": 40}))
    await publish(client, crm(service))
    state = await run(client, "crm", {"id": "a7"})
    assert state["status"] == "completed"
    assert state["variables"]["account"] == {"id": "a7", "plan": "gold", "seats": 40}
    assert service.requests[-1].path == "/accounts/a7"
    assert service.requests[-1].headers["accept"] == "application/json"


async def test_a_tool_node_sends_the_idempotency_key_of_its_run_node_attempt_and_call(
    client: httpx.AsyncClient,
    service: FakeLlmServer,
) -> None:
    service.then(Reply(body={"id": "a8", "plan": "free", "seats": 1}))
    await publish(client, crm(service))
    state = await run(client, "crm", {"id": "a8"})
    assert state["status"] == "completed"
    assert service.requests[-1].headers["idempotency-key"] == f"{state['run_id']}:get:1:get:1"


async def test_an_http_tool_error_fails_the_tool_node_saying_what_the_service_said(
    client: httpx.AsyncClient,
    service: FakeLlmServer,
) -> None:
    service.then(Reply(status=404, body={"error": "no account x1"}))
    await publish(client, crm(service))
    state = await run(client, "crm", {"id": "x1"})
    assert state["status"] == "failed"
    assert state["error"] == {
        "node": "get",
        "class": "task",
        "message": 'error: account: HTTP 404: {"error": "no account x1"}',
    }


async def test_an_agent_calls_an_http_tool_and_answers_with_its_result(
    client: httpx.AsyncClient,
    service: FakeLlmServer,
    openai: FakeLlmServer,
) -> None:
    definition = crm(service)
    definition["name"] = "crm-agent"
    definition["start"] = "ask"
    definition["nodes"] = {
        "ask": {
            "kind": "agent",
            "model": "openai:gpt-4o-mini",
            "prompt": "Which plan is account a7 on?",
            "tools": ["account"],
            "output": "answer",
            "stream": False,
        }
    }
    openai.then(
        OpenAiWire.completion(
            None, tool_calls=[("call_1", "account", '{"id": "a7"}')], finish_reason="tool_calls"
        ),
        OpenAiWire.completion("Account a7 is on the gold plan."),
    )
    service.then(Reply(body={"id": "a7", "plan": "gold"}))
    await publish(client, definition)
    state = await run(client, "crm-agent", {})
    assert state["status"] == "completed"
    assert state["variables"]["answer"] == "Account a7 is on the gold plan."
    offered = openai.requests[-2].body["tools"]
    assert [t["function"]["name"] for t in offered] == ["account"]
    assert openai.requests[-1].body["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": '{"id": "a7", "plan": "gold"}',
    }


async def test_a_definition_with_a_tool_off_the_allow_list_is_refused_with_its_path(
    client: httpx.AsyncClient,
    service: FakeLlmServer,
) -> None:
    definition = crm(service)
    definition["tools"]["account"]["url"] = "https://crm.example.org/accounts/{{ args.id }}"
    response = await client.put("/v1/workflows/crm", json=definition)
    assert response.status_code == 422
    assert response.json()["problems"] == [
        {
            "path": "tools.account.url",
            "message": "host 'crm.example.org' is not on the allow-list "
            "(HEDDLE_HTTP_TOOL_HOSTS: 127.0.0.1)",
        }
    ]


async def test_an_agent_calls_a_workflow_tool_and_answers_with_the_child_runs_output(
    client: httpx.AsyncClient,
    openai: FakeLlmServer,
) -> None:
    await publish(client, example("welcome"))
    await publish(
        client,
        {
            "name": "concierge",
            "tools": {
                "welcome": {
                    "description": "Write a welcome message for a customer.",
                    "workflow": "welcome",
                    "parameters": {
                        "type": "object",
                        "properties": {"name": {"type": "string"}},
                        "required": ["name"],
                    },
                }
            },
            "start": "ask",
            "nodes": {
                "ask": {
                    "kind": "agent",
                    "model": "openai:gpt-4o-mini",
                    "stream": False,
                    "prompt": "Greet our new customer Ada.",
                    "tools": ["welcome"],
                    "output": "answer",
                }
            },
        },
    )
    openai.then(
        OpenAiWire.completion(
            None, tool_calls=[("call_w", "welcome", '{"name": "Ada"}')], finish_reason="tool_calls"
        ),
        OpenAiWire.completion("Sent: Welcome aboard, Ada!"),
    )
    state = await run(client, "concierge", {})
    assert state["status"] == "completed"
    assert state["variables"]["answer"] == "Sent: Welcome aboard, Ada!"
    assert openai.requests[-1].body["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_w",
        "content": '{"message": "Welcome aboard, Ada!"}',
    }
    [child] = (await client.get("/v1/runs", params={"parent": state["run_id"]})).json()["items"]
    assert child["workflow"] == "welcome"
    assert child["status"] == "completed"
