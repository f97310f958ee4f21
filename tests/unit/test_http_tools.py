"""HTTP tools: declared in a definition, allowed hosts only (checked when a definition is
published and again before each call), no secrets in the definition, responses bounded
in size and time. Calls go to a local fake HTTP server."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from domain.definitions import parse_definition
from domain.errors import DefinitionInvalid
from domain.http_tools import HttpTool
from infra.http_tools import HttpTools
from tests.fakes.llm_servers import FakeLlmServer, Reply

ALLOWED = frozenset({"127.0.0.1", "*.example.com"})


def workflow(**tool: Any) -> dict[str, Any]:
    lookup = {
        "description": "Look up an account.",
        "url": "http://127.0.0.1:9/accounts/{{ args.id }}",
        "parameters": {
            "type": "object",
            "properties": {"id": {"type": "string"}},
            "required": ["id"],
        },
        **tool,
    }
    get = {
        "kind": "tool",
        "tool": "lookup",
        "arguments": {"id": "{{ input.id }}"},
        "output": "account",
    }
    return {"name": "accounts", "tools": {"lookup": lookup}, "start": "get", "nodes": {"get": get}}


def problems(document: dict[str, Any]) -> list[str]:
    with pytest.raises(DefinitionInvalid) as caught:
        parse_definition(document, ALLOWED)
    return [str(p) for p in caught.value.problems]


def test_a_tool_on_an_allowed_host_can_be_used_by_tool_and_agent_nodes() -> None:
    document = workflow(url="https://api.example.com/accounts/{{ args.id }}")
    document["nodes"]["get"]["next"] = "ask"
    document["nodes"]["ask"] = {
        "kind": "agent",
        "model": "scripted:x",
        "prompt": "p",
        "tools": ["lookup", "calculator"],
    }
    spec = parse_definition(document, ALLOWED)
    assert spec.tool("lookup").parameters["required"] == ["id"]


def test_a_host_off_the_allow_list_is_refused_with_the_tools_path() -> None:
    assert problems(workflow(url="https://evil.test/x")) == [
        "tools.lookup.url: host 'evil.test' is not on the allow-list "
        "(HEDDLE_HTTP_TOOL_HOSTS: *.example.com, 127.0.0.1)"
    ]
    assert problems(workflow(url="http://{{ args.host }}/x")) == [
        "tools.lookup.url: write the host out: only the path and query may be templates"
    ]


def test_secrets_in_headers_are_refused_because_definitions_are_recorded() -> None:
    assert problems(workflow(headers={"Authorization": "Bearer sk-1"})) == [
        "tools.lookup.headers.Authorization: definitions are recorded in events and hold no "
        "secrets: set this header for the host in HEDDLE_HTTP_TOOL_HEADERS instead"
    ]


def test_credentials_in_a_urls_userinfo_are_refused_because_definitions_are_recorded() -> None:
    assert problems(workflow(url="https://bot:hunter22@api.example.com/a")) == [
        "tools.lookup.url: definitions are recorded in events and hold no secrets: set an "
        "Authorization header for the host in HEDDLE_HTTP_TOOL_HEADERS instead"
    ]


def test_an_unknown_tool_names_the_declared_and_registered_ones() -> None:
    document = workflow()
    document["nodes"]["get"]["tool"] = "lookpu"
    [problem] = problems(document)
    assert problem.startswith("nodes.get.tool: unknown tool 'lookpu' (known: calculator, ")
    assert ", lookup" in problem  # the declared tool with the registered ones


def tool(url: str, **extra: Any) -> HttpTool:
    return HttpTool(description="d", url=url, **extra)


async def test_a_call_returns_the_response_and_sends_configured_headers(
    server: FakeLlmServer,
) -> None:
    server.then(Reply(body={"id": "a1", "plan": "gold"}))
    tools = HttpTools(frozenset({"127.0.0.1"}), {"127.0.0.1": {"Authorization": "Bearer s3"}})
    ok, content = await tools.call(
        "lookup", tool(server.url + "/accounts/{{ args.id }}"), {"id": "a1"}
    )
    await tools.aclose()
    assert (ok, content) == (True, '{"id": "a1", "plan": "gold"}')
    assert server.requests[0].path == "/accounts/a1"
    assert server.requests[0].headers["authorization"] == "Bearer s3"


async def test_every_try_of_a_call_sends_the_same_idempotency_key(server: FakeLlmServer) -> None:
    """A worker that repeats a call (it died before saving the answer) sends the same key,
    so the service can answer the repeat without doing the work twice."""
    server.then(Reply(body={"ok": True}), Reply(body={"ok": True}))
    tools = HttpTools(frozenset({"127.0.0.1"}))
    key = "6f1c1b52-0d4e-4b0e-9a51-3c1b2f1f4a10:lookup:1:lookup:1"
    for _ in range(2):
        await tools.call("lookup", tool(server.url + "/accounts"), {}, key)
    await tools.aclose()
    assert [r.headers["idempotency-key"] for r in server.requests] == [key, key]


async def test_a_post_sends_the_arguments_as_json(server: FakeLlmServer) -> None:
    server.then(Reply(status=201, body={"ok": True}))
    tools = HttpTools(frozenset({"127.0.0.1"}))
    ok, _ = await tools.call("note", tool(server.url + "/notes", method="POST"), {"text": "hi"})
    await tools.aclose()
    assert ok
    assert server.requests[0].body == {"text": "hi"}


async def test_a_host_off_the_allow_list_is_refused_at_run_time_without_a_call() -> None:
    tools = HttpTools(frozenset({"api.example.com"}))
    ok, content = await tools.call("lookup", tool("http://127.0.0.1:9/x"), {})
    await tools.aclose()
    assert not ok
    assert content == (
        "error: lookup: host '127.0.0.1' is not on the allow-list "
        "(HEDDLE_HTTP_TOOL_HOSTS: api.example.com)"
    )


async def test_large_slow_and_failing_responses_become_errors(server: FakeLlmServer) -> None:
    server.then(Reply(body="x" * 5000), Reply(body={}, delay=1.0), Reply(status=404, body="no"))
    tools = HttpTools(frozenset({"127.0.0.1"}), max_response_bytes=1000)
    large = await tools.call("t", tool(server.url), {})
    slow = await tools.call("t", tool(server.url, timeout=0.2), {})
    missing = await tools.call("t", tool(server.url), {})
    await tools.aclose()
    assert large == (
        False,
        "error: t: the response is larger than 1000 bytes (HEDDLE_HTTP_TOOL_MAX_RESPONSE_BYTES)",
    )
    assert slow == (False, "error: t: no answer within 0.2 s")
    assert missing == (False, 'error: t: HTTP 404: "no"')


async def test_tools_from_the_settings_are_registered_for_every_workflow_secrets_and_all(
    server: FakeLlmServer,
) -> None:
    from domain.llm import ToolCall
    from domain.tools import ToolCatalogue
    from handlers.reactions.tools import ToolRegistry
    from infra.http_tools import register_http_tools

    registry = ToolRegistry(catalogue=ToolCatalogue([]))
    tools = HttpTools(frozenset({"127.0.0.1"}))
    declared = {
        "crm": {
            "description": "CRM account",
            "url": server.url + "/a/{{ args.id }}",
            "headers": {"Authorization": "Bearer s3"},
        }
    }
    assert register_http_tools(registry, json.dumps(declared), tools) == ["crm"]
    server.then(Reply(body={"plan": "gold"}), Reply(status=500, body="down"))
    ok = await registry.run(ToolCall(id="1", name="crm", arguments={"id": "a1"}))
    failed = await registry.run(ToolCall(id="2", name="crm", arguments={"id": "a2"}))
    await tools.aclose()
    assert ok == (True, '{"plan": "gold"}')
    assert server.requests[0].headers["authorization"] == "Bearer s3"
    assert failed == (False, 'error: crm: HTTP 500: "down"')
    off_list = {"crm": {**declared["crm"], "url": "https://crm.example.org/a"}}
    with pytest.raises(ValueError, match=r"^HEDDLE_HTTP_TOOLS\.crm\.url: host 'crm\.example\.org'"):
        register_http_tools(registry, json.dumps(off_list), tools)


async def test_credentials_of_a_call_are_redacted_from_its_result_errors_and_logs(
    server: FakeLlmServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A service that echoes the request (many do, in errors) must not put the worker's
    credentials into the run's events: header values configured for the host, a
    deployment tool's own credential headers and its URL's userinfo."""
    basic = "Ym90Omh1bnRlcjIy"  # base64 of bot:hunter22, as httpx sends the userinfo
    echo = {"auth": "Bearer s3cret-token", "key": "k-778899", "basic": f"Basic {basic}"}
    server.then(Reply(body=echo), Reply(status=401, body={"got": "token s3cret-token"}))
    tools = HttpTools(
        frozenset({"127.0.0.1"}), {"127.0.0.1": {"Authorization": "Bearer s3cret-token"}}
    )
    own = tool(
        server.url.replace("//", "//bot:hunter22@") + "/a", headers={"X-Api-Key": "k-778899"}
    )
    with caplog.at_level(logging.INFO, logger="heddle.http_tools"):
        ok = await tools.call("crm", own, {})
        failed = await tools.call("crm", own, {})
        refused = await tools.call("crm", tool("http://bot:hunter22@127.0.0.1:9/a"), {})
    await tools.aclose()
    assert server.requests[0].headers["x-api-key"] == "k-778899"
    assert ok == (
        True,
        '{"auth": "[redacted]", "key": "[redacted]", "basic": "Basic [redacted]"}',
    )
    assert failed == (False, 'error: crm: HTTP 401: {"got": "token [redacted]"}')
    assert refused[1].startswith("error: crm: GET http://127.0.0.1:9/a failed: ")
    told = caplog.text + str(ok) + str(failed) + str(refused)
    assert "crm: GET http://127.0.0.1:" in caplog.text
    for secret in ("s3cret-token", "k-778899", "hunter22", basic):
        assert secret not in told
