"""The OpenAI adapter (and its Groq and Ollama presets): the real `openai` SDK against a
fake server speaking OpenAI's wire format on localhost."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from domain.llm import (
    LlmDelta,
    LlmError,
    LlmRequest,
    LlmResult,
    Message,
    ToolCall,
)
from infra.llm.common import retry_after_seconds
from infra.llm.retrying import complete_with_retries, stream_with_retries
from infra.llm.router import ProviderRouter, ProviderSettings
from tests.fakes.llm_servers import (
    FAST,
    WEATHER,
    FakeLlmServer,
    OpenAiWire,
    collect,
    cut,
    failure_of,
    sent_key,
    stream_until_failure,
)

KEY = "sk-test-4f9c1e-do-not-leak"


def router_for(server: FakeLlmServer, **environ: str) -> ProviderRouter:
    return ProviderRouter(
        ProviderSettings.from_env(
            {
                "OPENAI_API_KEY": KEY,
                "OPENAI_BASE_URL": f"{server.url}/v1",
                "HEDDLE_LLM_TIMEOUT_SECONDS": "5",
                **environ,
            }
        )
    )


@pytest.fixture
async def router(server: FakeLlmServer) -> AsyncIterator[ProviderRouter]:
    router = router_for(server)
    yield router
    await router.aclose()


def ask(
    text: str = "What is the weather in Paris?", model: str = "openai:gpt-4o-mini", **fields: object
) -> LlmRequest:
    return LlmRequest(model=model, messages=[Message(role="user", content=text)], **fields)  # type: ignore[arg-type]


async def test_a_completion_returns_text_usage_with_cached_tokens_and_its_cost(
    server: FakeLlmServer, router: ProviderRouter
) -> None:
    server.then(OpenAiWire.completion("Sunny, 21 °C.", usage=(1000, 200, 400)))

    result = await router.complete(ask(max_tokens=300, temperature=0.2))

    assert result.text == "Sunny, 21 °C."
    assert result.finish_reason == "stop"
    assert (result.usage.input_tokens, result.usage.output_tokens) == (1000, 200)
    assert result.usage.cached_tokens == 400
    assert result.provider == "openai"
    assert result.model == "gpt-4o-mini-2024-07-18"
    assert result.latency_ms > 0
    # gpt-4o-mini: 600 fresh input at $0.15/M, 400 cached at $0.075/M, 200 output at $0.60/M
    assert result.cost_usd == pytest.approx(0.00024)
    assert result.priced
    sent = server.requests[0]
    assert (sent.method, sent.path) == ("POST", "/v1/chat/completions")
    assert sent_key(sent) == KEY
    assert sent.body["model"] == "gpt-4o-mini"
    assert sent.body["messages"] == [{"role": "user", "content": "What is the weather in Paris?"}]
    assert sent.body["max_completion_tokens"] == 300
    assert sent.body["temperature"] == 0.2


async def test_tools_are_sent_and_the_models_tool_calls_come_back_with_parsed_arguments(
    server: FakeLlmServer, router: ProviderRouter
) -> None:
    server.then(
        OpenAiWire.completion(
            None,
            tool_calls=[("call_1", "get_weather", '{"city": "Paris"}')],
            finish_reason="tool_calls",
        )
    )

    result = await router.complete(ask(tools=[WEATHER]))

    assert result.tool_calls == [
        ToolCall(id="call_1", name="get_weather", arguments={"city": "Paris"})
    ]
    assert result.text == ""
    assert result.finish_reason == "tool_calls"
    assert server.requests[0].body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]


async def test_a_tool_result_goes_back_as_a_tool_message_after_the_assistants_call(
    server: FakeLlmServer, router: ProviderRouter
) -> None:
    server.then(OpenAiWire.completion("It is sunny in Paris."))
    call = ToolCall(id="call_1", name="get_weather", arguments={"city": "Paris"})
    request = LlmRequest(
        model="openai:gpt-4o-mini",
        tools=[WEATHER],
        messages=[
            Message(role="system", content="Be brief."),
            Message(role="user", content="Weather in Paris?"),
            Message(role="assistant", tool_calls=[call]),
            Message(role="tool", tool_call_id="call_1", content='{"sky": "clear"}'),
        ],
    )

    result = await router.complete(request)

    assert result.text == "It is sunny in Paris."
    assert server.requests[0].body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"sky": "clear"}'},
    ]


async def test_tool_arguments_that_are_not_json_are_retryable_and_name_the_tool(
    server: FakeLlmServer, router: ProviderRouter
) -> None:
    server.then(OpenAiWire.completion(None, tool_calls=[("c", "get_weather", '{"city": Par')]))

    error = await failure_of(router, ask(tools=[WEATHER]))

    assert error.retryable
    assert "'get_weather'" in error.message
    assert "not a JSON object" in error.message


async def test_a_stream_yields_text_as_it_arrives_then_the_whole_result_with_usage_and_cost(
    server: FakeLlmServer, router: ProviderRouter
) -> None:
    server.then(OpenAiWire.stream(["Sun", "ny, ", "21 °C."], usage=(1000, 200, 0)))

    items = await collect(router, ask())

    *deltas, result = items
    assert [d.text for d in deltas if isinstance(d, LlmDelta)] == ["Sun", "ny, ", "21 °C."]
    assert [d.index for d in deltas if isinstance(d, LlmDelta)] == [0, 1, 2]
    assert isinstance(result, LlmResult)
    assert result.text == "Sunny, 21 °C."
    assert (result.usage.input_tokens, result.usage.output_tokens) == (1000, 200)
    assert result.cost_usd == pytest.approx((1000 * 0.15 + 200 * 0.60) / 1e6)
    body = server.requests[0].body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


async def test_streamed_tool_call_arguments_are_assembled_from_their_pieces(
    server: FakeLlmServer, router: ProviderRouter
) -> None:
    start = {
        "index": 0,
        "id": "call_7",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    pieces = ['{"ci', 'ty": "Pa', 'ris"}']
    server.then(
        OpenAiWire.stream(
            [],
            finish_reason="tool_calls",
            extra=[
                OpenAiWire.chunk({"tool_calls": [start]}),
                *[
                    OpenAiWire.chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]})
                    for p in pieces
                ],
            ],
        )
    )

    *_, result = await collect(router, ask(tools=[WEATHER]))

    assert isinstance(result, LlmResult)
    assert result.finish_reason == "tool_calls"
    assert result.tool_calls == [
        ToolCall(id="call_7", name="get_weather", arguments={"city": "Paris"})
    ]


async def test_a_stream_that_ends_without_a_finish_reason_is_a_retryable_failure_not_an_answer(
    server: FakeLlmServer, router: ProviderRouter
) -> None:
    server.then(OpenAiWire.stream(["Sunny, 2"], finish_reason=None))

    items, error = await stream_until_failure(router.stream(ask()))

    assert not any(isinstance(item, LlmResult) for item in items)
    assert error.retryable
    assert "stream ended before the model finished" in error.message


async def test_a_stream_cut_mid_answer_is_retried_from_the_start_and_then_succeeds(
    server: FakeLlmServer, router: ProviderRouter
) -> None:
    server.then(
        OpenAiWire.stream(["Sunny, 2"], finish_reason=None, cut=True),
        OpenAiWire.stream(["Sunny, ", "21 °C."]),
    )
    deltas: list[tuple[int, str]] = []
    failed: list[tuple[int, str]] = []

    async def on_delta(attempt: int, delta: LlmDelta) -> None:
        deltas.append((attempt, delta.text))

    async def on_failed(attempt: int, error: LlmError, delay: float | None) -> None:
        failed.append((attempt, error.kind))

    result = await stream_with_retries(router, ask(), FAST, on_delta, on_failed)

    assert result.text == "Sunny, 21 °C."
    assert deltas == [(1, "Sunny, 2"), (2, "Sunny, "), (2, "21 °C.")]
    assert failed == [(1, "retryable")]
    assert server.calls == 2


async def test_a_completion_whose_connection_drops_mid_body_is_retried_and_then_succeeds(
    server: FakeLlmServer, router: ProviderRouter
) -> None:
    server.then(cut(OpenAiWire.completion("Sunny")), OpenAiWire.completion("Sunny"))
    failed: list[str] = []

    async def on_failed(attempt: int, error: LlmError, delay: float | None) -> None:
        failed.append(error.message)

    result = await complete_with_retries(router, ask(), FAST, on_failed)

    assert result.text == "Sunny"
    assert server.calls == 2
    assert len(failed) == 1
    assert "connection to openai" in failed[0]


async def test_a_malformed_stream_chunk_is_a_retryable_failure(
    server: FakeLlmServer, router: ProviderRouter
) -> None:
    server.then(OpenAiWire.stream(["Sunny"], extra=['data: {"choices": [{\n\n']))

    with pytest.raises(LlmError) as caught:
        await collect(router, ask())

    assert caught.value.retryable
    assert "malformed stream chunk" in caught.value.message


async def test_two_429s_with_retry_after_are_waited_out_then_the_call_succeeds(
    server: FakeLlmServer, router: ProviderRouter
) -> None:
    limited = OpenAiWire.error(429, "Rate limit reached", headers={"Retry-After": "1"})
    server.then(limited, limited, OpenAiWire.completion("Sunny"))
    failed: list[tuple[int, int | None, float | None]] = []

    async def on_failed(attempt: int, error: LlmError, delay: float | None) -> None:
        failed.append((attempt, error.status, delay))

    started = time.monotonic()
    result = await complete_with_retries(router, ask(), FAST, on_failed)
    waited = time.monotonic() - started

    assert result.text == "Sunny"
    assert server.calls == 3
    assert waited >= 2.0
    assert [(attempt, status) for attempt, status, _ in failed] == [(1, 429), (2, 429)]
    assert all(delay is not None and delay >= 1.0 for _, _, delay in failed)


async def test_retry_after_ms_is_read_in_milliseconds(
    server: FakeLlmServer, router: ProviderRouter
) -> None:
    server.then(OpenAiWire.error(429, "slow down", headers={"retry-after-ms": "1500"}))

    error = await failure_of(router, ask())

    assert error.retryable
    assert error.retry_after == 1.5
    assert error.message == "openai is rate limiting requests (429): slow down"


def test_a_retry_after_http_date_is_read_as_seconds_from_now() -> None:
    now = 1_700_000_000.0  # Tue, 14 Nov 2023 22:13:20 GMT
    headers = {"retry-after": "Tue, 14 Nov 2023 22:13:50 GMT"}
    assert retry_after_seconds(headers, now=now) == 30.0
    assert retry_after_seconds({"retry-after": "soon"}, now=now) is None


@pytest.mark.parametrize("status", [500, 503, 408, 409])
async def test_server_errors_are_retried_and_then_the_call_succeeds(
    server: FakeLlmServer, router: ProviderRouter, status: int
) -> None:
    server.then(OpenAiWire.error(status, "The server had an error"), OpenAiWire.completion("ok"))

    result = await complete_with_retries(router, ask(), FAST)

    assert result.text == "ok"
    assert server.calls == 2


async def test_a_401_fails_at_once_and_says_which_key_to_set(
    server: FakeLlmServer, router: ProviderRouter
) -> None:
    server.then(OpenAiWire.error(401, f"Incorrect API key provided: {KEY}", "invalid_api_key"))
    tries: list[int] = []

    async def on_failed(attempt: int, error: LlmError, delay: float | None) -> None:
        tries.append(attempt)

    with pytest.raises(LlmError) as caught:
        await complete_with_retries(router, ask(), FAST, on_failed)

    error = caught.value
    assert error.kind == "fatal"
    assert error.status == 401
    assert server.calls == 1
    assert tries == [1]
    assert error.message == (
        "openai rejected the API key (401): set OPENAI_API_KEY or the node's credential"
    )
    assert KEY not in str(error)
    assert KEY not in repr(error)
    assert KEY not in str(error.to_dict())


async def test_a_key_echoed_in_an_error_message_is_redacted(
    server: FakeLlmServer, router: ProviderRouter
) -> None:
    server.then(OpenAiWire.error(400, f"bad request for key {KEY}"))

    error = await failure_of(router, ask())

    assert error.kind == "fatal"
    assert KEY not in error.message
    assert "[redacted]" in error.message


async def test_an_unknown_model_fails_at_once_and_names_the_model(
    server: FakeLlmServer, router: ProviderRouter
) -> None:
    server.then(OpenAiWire.error(404, "The model `gpt-9` does not exist", "model_not_found"))

    with pytest.raises(LlmError) as caught:
        await complete_with_retries(router, ask(model="openai:gpt-9"), FAST)

    assert caught.value.kind == "fatal"
    assert server.calls == 1
    assert caught.value.message == "openai: model 'gpt-9' not found (404): check the node's model"


async def test_a_prompt_longer_than_the_context_window_fails_at_once_and_says_so(
    server: FakeLlmServer, router: ProviderRouter
) -> None:
    server.then(
        OpenAiWire.error(
            400,
            "This model's maximum context length is 128000 tokens. However, your messages "
            "resulted in 190000 tokens.",
            "context_length_exceeded",
        )
    )

    error = await failure_of(router, ask())

    assert error.kind == "fatal"
    assert error.status == 400
    assert "the prompt is longer than the model's context window" in error.message


async def test_an_exhausted_quota_is_fatal_though_it_comes_as_a_429(
    server: FakeLlmServer, router: ProviderRouter
) -> None:
    server.then(OpenAiWire.error(429, "You exceeded your current quota", "insufficient_quota"))

    error = await failure_of(router, ask())

    assert error.kind == "fatal"
    assert "out of quota" in error.message


async def test_a_server_that_does_not_answer_in_time_is_a_retryable_timeout(
    server: FakeLlmServer,
) -> None:
    router = router_for(server, HEDDLE_LLM_TIMEOUT_SECONDS="0.3")
    server.then(replace(OpenAiWire.completion("late"), delay=3))
    try:
        started = time.monotonic()
        error = await failure_of(router, ask())
        elapsed = time.monotonic() - started
    finally:
        await router.aclose()

    assert error.retryable
    assert error.message == "openai did not answer within 0.3 s"
    assert elapsed < 2.0


async def test_groq_and_ollama_presets_call_their_own_base_urls(server: FakeLlmServer) -> None:
    router = router_for(
        server,
        GROQ_API_KEY="gsk-groq-key",
        GROQ_BASE_URL=f"{server.url}/groq/openai/v1",
        OLLAMA_BASE_URL=f"{server.url}/ollama/v1",
    )
    server.then(
        OpenAiWire.completion("from groq", model="llama-3.3-70b-versatile"),
        OpenAiWire.completion("from ollama", model="llama3.2"),
    )
    try:
        groq = await router.complete(ask(model="groq:llama-3.3-70b-versatile"))
        ollama = await router.complete(ask(model="ollama:llama3.2", max_tokens=50))
    finally:
        await router.aclose()

    assert [r.path for r in server.requests] == [
        "/groq/openai/v1/chat/completions",
        "/ollama/v1/chat/completions",
    ]
    assert (groq.provider, groq.text) == ("groq", "from groq")
    assert sent_key(server.requests[0]) == "gsk-groq-key"
    assert groq.priced
    assert groq.cost_usd > 0
    assert (ollama.provider, ollama.text, ollama.cost_usd, ollama.priced) == (
        "ollama",
        "from ollama",
        0.0,
        True,
    )
    assert KEY not in sent_key(server.requests[1])
    assert server.requests[1].body["max_tokens"] == 50


async def test_a_missing_openai_key_is_fatal_names_the_variable_and_calls_nobody(
    server: FakeLlmServer,
) -> None:
    router = ProviderRouter(ProviderSettings.from_env({"OPENAI_BASE_URL": f"{server.url}/v1"}))

    error = await failure_of(router, ask())
    await router.aclose()

    assert error.kind == "fatal"
    assert "set OPENAI_API_KEY" in error.message
    assert server.calls == 0


async def test_a_node_credential_selects_its_own_key(server: FakeLlmServer) -> None:
    router = router_for(server, HEDDLE_CREDENTIAL_TEAM_A="sk-team-a")
    server.then(OpenAiWire.completion("a"), OpenAiWire.completion("default"))
    try:
        await router.complete(ask(credential="team-a"))
        await router.complete(ask())
        missing = await failure_of(router, ask(credential="team-b"))
    finally:
        await router.aclose()

    assert [sent_key(r) for r in server.requests] == ["sk-team-a", KEY]
    assert missing.kind == "fatal"
    assert "set HEDDLE_CREDENTIAL_TEAM_B" in missing.message


async def test_an_unknown_provider_is_fatal_and_lists_the_known_ones(
    router: ProviderRouter,
) -> None:
    error = await failure_of(router, ask(model="mistral:large"))

    assert error.kind == "fatal"
    assert error.message == (
        "unknown provider 'mistral' (known: anthropic, groq, ollama, openai, scripted)"
    )


async def test_the_key_never_reaches_the_logs_even_at_debug_level(
    server: FakeLlmServer, router: ProviderRouter, caplog: pytest.LogCaptureFixture
) -> None:
    server.then(OpenAiWire.completion("ok"), OpenAiWire.error(401, "bad key"))

    with caplog.at_level(logging.DEBUG):
        await router.complete(ask())
        await failure_of(router, ask())

    assert "chat/completions" in caplog.text  # the SDK did log its requests
    assert KEY not in caplog.text
    assert KEY not in repr(router.settings)
    assert KEY not in str(router.settings)


async def test_a_base_url_with_userinfo_is_shown_without_it_in_errors() -> None:
    router = ProviderRouter(
        ProviderSettings.from_env(
            {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": "http://bot:hunter22@127.0.0.1:9/v1"}
        )
    )
    with pytest.raises(LlmError) as caught:
        await router.complete(ask())
    await router.aclose()
    assert caught.value.retryable
    assert caught.value.message.startswith(
        "the connection to openai at http://127.0.0.1:9/v1 failed"
    )
    assert "hunter22" not in caught.value.message


async def test_a_refusal_is_an_answer_the_model_did_not_finish(
    server: FakeLlmServer, router: ProviderRouter
) -> None:
    reply = OpenAiWire.completion(None)
    reply.body["choices"][0]["message"]["refusal"] = "I can't help with that."
    server.then(reply)

    server.then(OpenAiWire.stream([], extra=[OpenAiWire.chunk({"refusal": "I can't."})]))

    result = await router.complete(ask())
    [streamed] = [item for item in await collect(router, ask()) if isinstance(item, LlmResult)]

    assert (result.finish_reason, result.text) == ("refusal", "I can't help with that.")
    assert (streamed.finish_reason, streamed.text) == ("refusal", "I can't.")
