"""Runs that call real SDKs against fake OpenAI and Anthropic servers, on real PostgreSQL
and real Kafka: replies, usage, retries, streaming tokens, agents, credentials, health,
and a canary key that must never leak."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
import os
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from itertools import pairwise
from typing import Any

import httpx
import psycopg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from infra.logs import formatter
from tests.conftest import running_heddle
from tests.fakes.llm_servers import (
    AnthropicWire,
    FakeLlmServer,
    OpenAiWire,
    running_server,
    sent_key,
)
from tests.integration.helpers import (
    api_client,
    metric_samples,
    publish,
    start_run,
    wait_for_run,
)

CREDENTIALS_KEY = base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeLlmServer, FakeLlmServer]]:
    async with running_server() as openai, running_server() as anthropic:
        yield openai, anthropic


def environment(openai: FakeLlmServer, anthropic: FakeLlmServer, **extra: str) -> dict[str, str]:
    return {
        "OPENAI_BASE_URL": f"{openai.url}/v1",
        "OPENAI_API_KEY": "sk-test-openai",
        "ANTHROPIC_BASE_URL": anthropic.url,
        "ANTHROPIC_API_KEY": "sk-ant-test",
        "HEDDLE_CREDENTIALS_KEY": CREDENTIALS_KEY,
        **extra,
    }


def one_node(name: str, **node: Any) -> dict[str, Any]:
    return {
        "name": name,
        "start": "ask",
        "nodes": {"ask": {"kind": "llm", "output": "answer", "prompt": "Say hi", **node}},
    }


async def run(
    client: httpx.AsyncClient, definition: dict[str, Any], input: dict[str, Any] | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Publish, start, wait for the end; the run as the API shows it, and its events."""
    await publish(client, definition)
    started = (
        await client.post("/v1/runs", json={"workflow": definition["name"], "input": input or {}})
    ).json()
    state = await wait_for_run(client, started["run_id"])
    events = (await client.get(f"/v1/runs/{started['run_id']}/events")).json()["events"]
    return state, events


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == f"WorkflowRun.{kind}"]


async def read_topics(bootstrap: str, prefix: str) -> dict[str, list[Any]]:
    """Every message of every topic starting with `prefix`, from the beginning."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = sorted(t for t in await admin.list_topics() if t.startswith(prefix))
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    partitions = [
        TopicPartition(topic["topic"], partition["partition"])
        for topic in described
        for partition in topic["partitions"]
    ]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        found: dict[str, list[Any]] = {topic: [] for topic in topics}
        unread = {tp for tp in partitions if end[tp] > 0}
        while unread:
            for tp, records in (await consumer.getmany(*unread, timeout_ms=500)).items():
                found[tp.topic] += records
            unread = {tp for tp in unread if await consumer.position(tp) < end[tp]}
        return found
    finally:
        await consumer.stop()


async def test_an_openai_node_completes_with_the_reply_and_the_usage_is_in_the_run(
    settings, database_url, kafka_bootstrap, fakes
) -> None:
    openai, anthropic = fakes
    openai.then(
        OpenAiWire.stream(["Hello", ", Ada"], usage=(12, 5, 4)),
        OpenAiWire.completion("Goodbye", model="my-vllm-model", usage=(7, 2, 0)),
    )
    definition = one_node("openai-hello", model="openai:gpt-4o-mini", next="bye")
    definition["nodes"]["bye"] = {
        "kind": "llm",
        "model": "openai:my-vllm-model",
        "prompt": "Say bye",
        "output": "bye",
        "stream": False,
    }
    async with (
        running_heddle(
            settings, database_url, kafka_bootstrap, environment(openai, anthropic)
        ) as heddle,
        api_client(heddle) as client,
    ):
        state, events = await run(client, definition)
    assert state["status"] == "completed"
    assert state["variables"] == {"answer": "Hello, Ada", "bye": "Goodbye"}
    usage = state["usage"]
    assert (usage["input_tokens"], usage["output_tokens"], usage["cached_tokens"]) == (19, 7, 4)
    assert usage["llm_calls"] == 2
    # gpt-4o-mini: 8 uncached x 0.15 + 4 cached x 0.075 + 5 out x 0.60, per million tokens
    assert usage["cost_usd"] == pytest.approx(4.5e-6)
    assert usage["cost_complete"] is False  # my-vllm-model has no price
    completed = of_type(events, "LlmCallCompleted")
    assert [e["data"]["result"]["priced"] for e in completed] == [True, False]
    assert [r.body.get("stream", False) for r in openai.requests] == [True, False]
    assert state["nodes"]["ask"]["usage"]["cached_tokens"] == 4


TIER = {
    "type": "object",
    "required": ["tier", "score"],
    "properties": {"tier": {"enum": ["gold", "silver"]}, "score": {"type": "integer"}},
}


async def test_an_answer_that_misses_the_output_schema_is_repaired_and_the_output_is_its_value(
    settings, database_url, kafka_bootstrap, fakes
) -> None:
    openai, anthropic = fakes
    openai.then(
        OpenAiWire.completion('{"tier": "gold"}'),
        OpenAiWire.completion('```json\n{"tier": "gold", "score": 7}\n```'),
    )
    definition = one_node(
        "structured", model="openai:gpt-4o-mini", stream=False, output_schema=TIER
    )
    async with (
        running_heddle(
            settings, database_url, kafka_bootstrap, environment(openai, anthropic)
        ) as heddle,
        api_client(heddle) as client,
    ):
        state, events = await run(client, definition)
    assert state["status"] == "completed", state
    assert state["variables"] == {"answer": {"tier": "gold", "score": 7}}
    first, second = (r.body for r in openai.requests)
    assert first["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": TIER},
    }
    assert "JSON Schema" in first["messages"][0]["content"]  # asked in the system message too
    assert second["messages"][-2] == {"role": "assistant", "content": '{"tier": "gold"}'}
    assert "$: 'score' is a required property" in second["messages"][-1]["content"]
    [repair] = of_type(events, "NodeRetryScheduled")
    assert repair["data"]["error"]["class"] == "output"
    assert state["usage"]["llm_calls"] == 2


async def test_an_answer_that_never_matches_the_output_schema_fails_the_node_with_its_problems(
    settings, database_url, kafka_bootstrap, fakes
) -> None:
    openai, anthropic = fakes
    openai.then(
        OpenAiWire.completion("gold, I think"),
        OpenAiWire.completion('{"tier": "bronze", "score": 1}'),
    )
    definition = one_node(
        "unstructured", model="openai:gpt-4o-mini", stream=False, output_schema=TIER,
        max_repairs=1,
    )  # fmt: skip
    async with (
        running_heddle(
            settings, database_url, kafka_bootstrap, environment(openai, anthropic)
        ) as heddle,
        api_client(heddle) as client,
    ):
        state, _ = await run(client, definition)
    assert state["status"] == "failed"
    error = state["error"]
    assert error["class"] == "output"
    assert error["problems"] == ["$.tier: 'bronze' is not one of ['gold', 'silver']"]
    assert "(after 1 repairs; max_repairs: 1)" in error["message"]
    assert openai.calls == 2


async def test_an_output_schema_that_is_no_json_schema_is_refused_at_its_path(
    settings, database_url, kafka_bootstrap, fakes
) -> None:
    definition = one_node("bad-schema", model="openai:gpt-4o-mini", output_schema={"type": 7})
    async with (
        running_heddle(settings, database_url, kafka_bootstrap) as heddle,
        api_client(heddle) as client,
    ):
        response = await client.put("/v1/workflows/bad-schema", json=definition)
    assert response.status_code == 422, response.text
    [problem] = response.json()["problems"]
    assert problem["path"] == "nodes.ask.output_schema.type"
    assert "not a valid JSON schema" in problem["message"]


async def test_an_anthropic_node_completes_with_the_reply_and_the_usage_is_in_the_run(
    settings, database_url, kafka_bootstrap, fakes
) -> None:
    openai, anthropic = fakes
    anthropic.then(AnthropicWire.stream(["Bonjour", " Ada"], usage=(20, 7, 0)))
    async with (
        running_heddle(
            settings, database_url, kafka_bootstrap, environment(openai, anthropic)
        ) as heddle,
        api_client(heddle) as client,
    ):
        state, _ = await run(client, one_node("claude-hello", model="anthropic:claude-haiku-4-5"))
    assert state["status"] == "completed"
    assert state["variables"] == {"answer": "Bonjour Ada"}
    assert state["usage"]["input_tokens"] == 20
    assert state["usage"]["output_tokens"] == 7
    assert state["usage"]["cost_usd"] == pytest.approx((20 * 1.0 + 7 * 5.0) / 1e6)
    assert sent_key(anthropic.requests[0]) == "sk-ant-test"


async def test_an_agent_calls_a_tool_then_answers_and_the_tool_call_is_in_the_run(
    settings, database_url, kafka_bootstrap, fakes
) -> None:
    openai, anthropic = fakes
    anthropic.then(
        AnthropicWire.stream(
            [],
            stop_reason="tool_use",
            tool_use=("toolu_1", "calculator", ['{"expression": ', '"6*7"}']),
        ),
        AnthropicWire.stream(["The answer is 42."]),
    )
    definition = {
        "name": "agent-sum",
        "start": "solve",
        "nodes": {
            "solve": {
                "kind": "agent",
                "model": "anthropic:claude-haiku-4-5",
                "tools": ["calculator"],
                "prompt": "What is 6 times 7?",
                "output": "answer",
            }
        },
    }
    async with (
        running_heddle(
            settings, database_url, kafka_bootstrap, environment(openai, anthropic)
        ) as heddle,
        api_client(heddle) as client,
    ):
        state, events = await run(client, definition)
    assert state["status"] == "completed"
    assert state["variables"] == {"answer": "The answer is 42."}
    [tool] = of_type(events, "ToolCallCompleted")
    assert tool["data"]["tool"] == "calculator"
    assert tool["data"]["arguments"] == {"expression": "6*7"}
    assert (tool["data"]["outcome"], tool["data"]["content"]) == ("ok", "42")
    assert [e["data"]["step"] for e in of_type(events, "AgentStepCompleted")] == [1, 2]
    offered = anthropic.requests[0].body["tools"]
    assert [t["name"] for t in offered] == ["calculator"]
    answer_turn = anthropic.requests[1].body["messages"][-1]["content"][0]
    assert answer_turn == {"type": "tool_result", "tool_use_id": "toolu_1", "content": "42"}
    assert state["usage"]["llm_calls"] == 2


async def test_two_429s_with_retry_after_are_waited_out_then_the_call_succeeds(
    settings, database_url, kafka_bootstrap, fakes
) -> None:
    openai, anthropic = fakes
    limited = OpenAiWire.error(429, "Rate limit reached", headers={"Retry-After": "1"})
    openai.then(limited, limited, OpenAiWire.stream(["at last"]))
    async with (
        running_heddle(
            settings, database_url, kafka_bootstrap, environment(openai, anthropic)
        ) as heddle,
        api_client(heddle) as client,
    ):
        state, events = await run(client, one_node("patient", model="openai:gpt-4o-mini"))
    assert state["status"] == "completed"
    assert state["variables"] == {"answer": "at last"}
    failed = of_type(events, "LlmCallFailed")
    assert [e["data"]["try_number"] for e in failed] == [1, 2]
    assert all(e["data"]["retry_in"] >= 1.0 for e in failed)
    assert all(e["data"]["error"]["status"] == 429 for e in failed)
    arrivals = [r.at for r in openai.requests]
    waits = [later - earlier for earlier, later in pairwise(arrivals)]
    assert len(waits) == 2
    assert min(waits) >= 1.0, waits
    times = [e["timestamp"] for e in [*failed, *of_type(events, "LlmCallCompleted")]]
    assert times == sorted(times)
    stamps = [datetime.fromisoformat(t) for t in times]
    assert all((b - a).total_seconds() >= 1.0 for a, b in pairwise(stamps))


async def test_a_401_fails_the_node_at_once_with_the_fix_in_the_message(
    settings, database_url, kafka_bootstrap, fakes
) -> None:
    openai, anthropic = fakes
    openai.then(OpenAiWire.error(401, "Incorrect API key provided", code="invalid_api_key"))
    async with (
        running_heddle(
            settings, database_url, kafka_bootstrap, environment(openai, anthropic)
        ) as heddle,
        api_client(heddle) as client,
    ):
        state, events = await run(client, one_node("locked-out", model="openai:gpt-4o-mini"))
    assert state["status"] == "failed"
    message = "openai rejected the API key (401): set OPENAI_API_KEY or the node's credential"
    assert state["error"]["message"] == message
    assert state["nodes"]["ask"]["error"]["message"] == message
    assert openai.calls == 1
    [failed] = of_type(events, "LlmCallFailed")
    assert failed["data"]["retry_in"] is None


async def test_an_answer_cut_at_max_tokens_or_refused_fails_the_node_unless_it_allows_that(
    settings, database_url, kafka_bootstrap, fakes
) -> None:
    openai, anthropic = fakes
    openai.then(
        OpenAiWire.stream(["Once upon"], finish_reason="length", usage=(12, 3, 0)),
        OpenAiWire.completion("Once upon", finish_reason="length", usage=(12, 3, 0)),
    )
    anthropic.then(AnthropicWire.stream(["I can't"], stop_reason="refusal"))
    cut_short = one_node("cut-short", model="openai:gpt-4o-mini", max_tokens=3)
    allowed = one_node(
        "allowed", model="openai:gpt-4o-mini", max_tokens=3, stream=False, allow_incomplete=True
    )
    refused = one_node("refused", model="anthropic:claude-haiku-4-5")
    async with (
        running_heddle(
            settings, database_url, kafka_bootstrap, environment(openai, anthropic)
        ) as heddle,
        api_client(heddle) as client,
    ):
        failed, events = await run(client, cut_short)
        taken, _ = await run(client, allowed)
        declined, _ = await run(client, refused)
    assert failed["status"] == "failed"
    assert failed["error"] == {
        "node": "ask",
        "class": "incomplete",
        "message": "openai did not finish the answer (length: it reached max_tokens): raise "
        "the node's max_tokens, or set allow_incomplete: true on node 'ask' to take the "
        "answer as it is",
        "finish_reason": "length",
    }
    assert "answer" not in failed["variables"]
    [call] = of_type(events, "LlmCallCompleted")
    assert call["data"]["result"]["finish_reason"] == "length"
    assert failed["usage"]["output_tokens"] == 3  # what was paid for is counted all the same
    assert (taken["status"], taken["variables"]) == ("completed", {"answer": "Once upon"})
    assert (declined["status"], declined["error"]["class"]) == ("failed", "incomplete")
    assert declined["error"]["message"].startswith(
        "anthropic did not finish the answer (refusal: the model refused to answer)"
    )


async def test_a_stream_cut_mid_answer_is_retried_and_its_partial_text_never_becomes_the_answer(
    settings, database_url, kafka_bootstrap, fakes
) -> None:
    openai, anthropic = fakes
    openai.then(
        OpenAiWire.stream(["The capital", " is Lyon"], finish_reason=None, cut=True),
        OpenAiWire.stream(["The capital", " is Paris"]),
    )
    async with (
        running_heddle(
            settings, database_url, kafka_bootstrap, environment(openai, anthropic)
        ) as heddle,
        api_client(heddle) as client,
    ):
        state, events = await run(client, one_node("geography", model="openai:gpt-4o-mini"))
        topics = await read_topics(kafka_bootstrap, settings.topic_prefix)
    assert state["status"] == "completed"
    assert state["variables"] == {"answer": "The capital is Paris"}
    [failed] = of_type(events, "LlmCallFailed")
    assert failed["data"]["error"]["class"] == "retryable"
    assert "Lyon" not in json.dumps(events)
    tokens = [json.loads(m.value) for m in topics[heddle.topics.tokens]]
    assert all(m.key.decode() == state["run_id"] for m in topics[heddle.topics.tokens])
    # Deltas are gathered into pieces, numbered over the node attempt; a try never shares one.
    assert [t["sequence"] for t in tokens] == list(range(len(tokens)))
    assert {n: "".join(t["text"] for t in tokens if t["try"] == n) for n in (1, 2)} == {
        1: "The capital is Lyon",
        2: "The capital is Paris",
    }
    assert {(t["run_id"], t["node_id"], t["attempt"], t["step"]) for t in tokens} == {
        (state["run_id"], "ask", 1, 1)
    }
    last_try = max(t["try"] for t in tokens)
    assert "".join(t["text"] for t in tokens if t["try"] == last_try) == "The capital is Paris"


async def test_stored_credentials_are_listed_without_their_keys_and_used_by_the_nodes_naming_them(
    settings, database_url, kafka_bootstrap, fakes
) -> None:
    openai, anthropic = fakes
    openai.then(OpenAiWire.stream(["team reply"]))
    async with (
        running_heddle(
            settings, database_url, kafka_bootstrap, environment(openai, anthropic)
        ) as heddle,
        api_client(heddle) as client,
    ):
        stored = await client.put(
            "/v1/credentials/team-a", json={"provider": "openai", "api_key": "sk-team-a-key"}
        )
        assert stored.status_code == 200, stored.text
        assert set(stored.json()) == {"id", "provider", "created_at", "updated_at"}
        listed = (await client.get("/v1/credentials")).json()["items"]
        assert [(c["id"], c["provider"]) for c in listed] == [("team-a", "openai")]
        state, events = await run(
            client, one_node("team", model="openai:gpt-4o-mini", credential="team-a")
        )
        assert state["variables"] == {"answer": "team reply"}
        assert sent_key(openai.requests[0]) == "sk-team-a-key"
        assert of_type(events, "NodeStarted")[0]["data"]["input"]["credential"] == "team-a"
        assert (await client.delete("/v1/credentials/team-a")).status_code == 204
        assert (await client.get("/v1/credentials")).json()["items"] == []
        state, _ = await run(
            client, one_node("team-again", model="openai:gpt-4o-mini", credential="team-a")
        )
    assert state["status"] == "failed"
    assert state["error"]["message"] == (
        "openai: the node's credential 'team-a' is not configured: store it with "
        "`heddle credentials set team-a --provider openai` or set HEDDLE_CREDENTIAL_TEAM_A"
    )


async def test_storing_a_credential_without_an_encryption_key_says_what_to_set(
    settings, database_url, kafka_bootstrap, fakes
) -> None:
    openai, anthropic = fakes
    environ = environment(openai, anthropic)
    del environ["HEDDLE_CREDENTIALS_KEY"]
    async with (
        running_heddle(settings, database_url, kafka_bootstrap, environ, roles=()) as heddle,
        api_client(heddle) as client,
    ):
        response = await client.put(
            "/v1/credentials/team-a", json={"provider": "openai", "api_key": "sk-team-a-key"}
        )
    assert response.status_code == 503
    assert response.json()["detail"].startswith("HEDDLE_CREDENTIALS_KEY is not set")


async def test_the_health_check_calls_each_configured_provider_and_reports_the_reason(
    settings, database_url, kafka_bootstrap, fakes
) -> None:
    openai, anthropic = fakes
    openai.then(OpenAiWire.completion("p", finish_reason="length"))
    anthropic.then(AnthropicWire.error(401, "invalid x-api-key", "authentication_error"))
    async with (
        running_heddle(
            settings, database_url, kafka_bootstrap, environment(openai, anthropic), roles=()
        ) as heddle,
        api_client(heddle) as client,
    ):
        response = await client.get("/v1/providers/health")
    assert response.status_code == 503
    reports = {r["provider"]: r for r in response.json()["providers"]}
    assert set(reports) == {"anthropic", "openai", "scripted"}
    assert reports["openai"]["ok"] is True
    assert reports["scripted"]["ok"] is True
    assert reports["anthropic"]["ok"] is False
    assert reports["anthropic"]["error"] == (
        "anthropic rejected the API key (401): set ANTHROPIC_API_KEY or the node's credential"
    )
    assert openai.requests[0].body["max_completion_tokens"] == 1
    assert all(r["latency_ms"] >= 0 for r in reports.values())


async def test_a_canary_key_appears_in_no_event_topic_log_line_or_api_response(
    settings, database_url, kafka_bootstrap, fakes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    openai, anthropic = fakes
    env_canary = f"sk-canary-{uuid.uuid4()}"
    stored_canary = f"sk-canary-{uuid.uuid4()}"
    environ = environment(openai, anthropic, OPENAI_API_KEY=env_canary)
    responses: list[str] = []
    async with (
        running_heddle(settings, database_url, kafka_bootstrap, environ) as heddle,
        api_client(heddle) as client,
    ):
        stored = await client.put(
            "/v1/credentials/canary", json={"provider": "openai", "api_key": stored_canary}
        )
        responses.append(stored.text)
        openai.then(OpenAiWire.stream(["fine"]))
        good, _ = await run(client, one_node("canary-ok", model="openai:gpt-4o-mini"))
        openai.then(OpenAiWire.error(400, f"Bad request made with key {stored_canary}"))
        echoed, _ = await run(
            client, one_node("canary-echo", model="openai:gpt-4o-mini", credential="canary")
        )
        openai.then(
            OpenAiWire.error(
                401, f"Incorrect API key provided: {env_canary}", code="invalid_api_key"
            )
        )
        refused, _ = await run(client, one_node("canary-401", model="openai:gpt-4o-mini"))
        openai.then(OpenAiWire.error(401, f"Incorrect API key provided: {env_canary}"))
        for path in [
            "/v1/runs",
            "/v1/credentials",
            "/v1/providers/health",
            *(f"/v1/runs/{r['run_id']}" for r in (good, echoed, refused)),
            *(f"/v1/runs/{r['run_id']}/events" for r in (good, echoed, refused)),
            "/metrics",
        ]:
            responses.append((await client.get(path)).text)
        topics = await read_topics(kafka_bootstrap, settings.topic_prefix)
    # The keys were used, and the failures say what happened.
    assert [sent_key(r) for r in openai.requests[:3]] == [env_canary, stored_canary, env_canary]
    assert (good["status"], echoed["status"], refused["status"]) == (
        "completed",
        "failed",
        "failed",
    )
    assert echoed["error"]["message"] == (
        "openai rejected the request (400): Bad request made with key [redacted]"
    )
    assert refused["error"]["message"].startswith("openai rejected the API key (401)")
    assert "[redacted]" in " ".join(responses)  # the health check's echoed key, too
    failures = {
        s.labels["outcome"]
        for s in metric_samples(responses[-1], "heddle_model_calls_total")
        if s.labels["provider"] == "openai"
    }
    assert {"ok", "fatal_400", "fatal_401"} <= failures  # /metrics counts them
    first = metric_samples(responses[-1], "heddle_model_first_token_seconds_count")
    assert any(s.labels == {"provider": "openai", "model": "gpt-4o-mini"} for s in first)
    canaries = [env_canary, stored_canary]
    forms = [*canaries, *(c.encode().hex() for c in canaries)]
    with psycopg.connect(database_url) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        assert len(tables) > 3
        for schema, table in tables:
            rows = conn.execute(f'SELECT t::text FROM "{schema}"."{table}" t').fetchall()
            text = "\n".join(row[0] for row in rows)
            assert not any(form in text for form in forms), f"a canary is in table {table}"
    assert sum(len(records) for records in topics.values()) > 10
    for topic, records in topics.items():
        for record in records:
            seen = (
                (record.value or b"")
                + (record.key or b"")
                + b"".join(v for _, v in record.headers or ())
            )
            assert not any(c.encode() in seen for c in canaries), f"a canary is on {topic}"
    assert len(caplog.records) > 20
    logged = (
        "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records)
        + caplog.text
    )
    assert not any(c in logged for c in canaries), "a canary is in the logs"
    as_json = formatter("json")  # as `heddle serve` writes them, tracebacks included
    lines = [as_json.format(record) for record in caplog.records]
    assert all(isinstance(json.loads(line), dict) for line in lines)
    assert not any(c in line for c in canaries for line in lines), "a canary is in a JSON line"
    for response in responses:
        assert not any(c in response for c in canaries), response


async def test_a_run_changed_while_its_model_answers_repeats_no_call_of_any_run(
    settings, database_url, kafka_bootstrap, fakes
) -> None:
    """50 runs wait on a slow model; one of them gets its variables set meanwhile by the
    intake of another process, so the worker's save of its answer meets a newer version.
    Every model is called once."""
    openai, anthropic = fakes
    runs = 50
    openai.then(*(dataclasses.replace(OpenAiWire.stream(["ok"]), delay=1.5) for _ in range(runs)))
    definition = one_node("slow", model="openai:gpt-4o-mini", prompt="Hi {{ input.n }}")
    env = environment(openai, anthropic)
    others = ("intake", "relay", "projector", "timers")
    async with (
        running_heddle(settings, database_url, kafka_bootstrap, env, roles=("worker",)),
        running_heddle(settings, database_url, kafka_bootstrap, env, roles=others) as heddle,
        api_client(heddle) as client,
    ):
        await publish(client, definition)
        ids = [await start_run(client, "slow", {"n": n}) for n in range(runs)]
        changed = ids[runs // 2]
        for _ in range(1500):  # until the model is answering that run: up to 30 s
            if any(r.body["messages"][-1]["content"] == f"Hi {runs // 2}" for r in openai.requests):
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError(f"the model was never asked for run {changed}")
        response = await client.post(
            f"/v1/runs/{changed}/variables", json={"variables": {"tier": "gold"}}
        )
        assert response.status_code == 202, response.text
        states = [await wait_for_run(client, run_id, timeout=60) for run_id in ids]
    assert openai.calls == runs
    assert [s["status"] for s in states] == ["completed"] * runs
    assert states[runs // 2]["variables"] == {"tier": "gold", "answer": "ok"}
