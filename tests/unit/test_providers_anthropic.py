"""The Anthropic adapter: the real `anthropic` SDK against a fake server speaking the
messages API's wire format on localhost."""

from __future__ import annotations

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
from infra.llm.retrying import complete_with_retries, stream_with_retries
from infra.llm.router import ProviderRouter, ProviderSettings
from tests.fakes.llm_servers import (
    FAST,
    WEATHER,
    AnthropicWire,
    FakeLlmServer,
    Reply,
    collect,
    failure_of,
    sent_key,
    sse,
    stream_until_failure,
)

KEY = "sk-ant-test-77e2b0-do-not-leak"


def router_for(server: FakeLlmServer, **environ: str) -> ProviderRouter:
    return ProviderRouter(
        ProviderSettings.from_env(
            {
                "ANTHROPIC_API_KEY": KEY,
                "ANTHROPIC_BASE_URL": server.url,
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
    text: str = "What is the weather in Paris?",
    model: str = "anthropic:claude-haiku-4-5",
    **fields: object,
) -> LlmRequest:
    return LlmRequest(model=model, messages=[Message(role="user", content=text)], **fields)  # type: ignore[arg-type]


async def test_a_completion_sends_the_system_prompt_apart_and_a_default_max_tokens(
    server: FakeLlmServer, router: ProviderRouter
) -> None:
    server.then(AnthropicWire.message("Sunny, 21 °C.", usage=(100, 50, 900)))
    request = LlmRequest(
        model="anthropic:claude-haiku-4-5",
        messages=[
            Message(role="system", content="Be brief."),
            Message(role="user", content="Weather in Paris?"),
        ],
    )

    result = await router.complete(request)

    assert result.text == "Sunny, 21 °C."
    assert result.finish_reason == "end_turn"
    assert result.provider == "anthropic"
    assert result.model == "claude-haiku-4-5-20251001"
    # cache reads count as input too, and are also reported as cached
    assert (result.usage.input_tokens, result.usage.cached_tokens) == (1000, 900)
    assert result.usage.output_tokens == 50
    # claude-haiku-4-5: 100 fresh input at $1/M, 900 cache reads at $0.10/M, 50 output at $5/M
    assert result.cost_usd == pytest.approx(0.00044)
    assert result.priced
    sent = server.requests[0]
    assert (sent.method, sent.path) == ("POST", "/v1/messages")
    assert sent_key(sent) == KEY
    assert sent.body["system"] == "Be brief."
    assert sent.body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]}
    ]
    assert sent.body["max_tokens"] == 1024
    assert sent.body["model"] == "claude-haiku-4-5"


async def test_a_requests_own_max_tokens_and_temperature_are_sent(
    server: FakeLlmServer, router: ProviderRouter
) -> None:
    server.then(AnthropicWire.message("ok"))

    await router.complete(ask(max_tokens=64, temperature=0.0))

    assert server.requests[0].body["max_tokens"] == 64
    assert server.requests[0].body["temperature"] == 0.0
    assert "system" not in server.requests[0].body


async def test_tools_are_sent_and_tool_use_blocks_come_back_as_tool_calls(
    server: FakeLlmServer, router: ProviderRouter
) -> None:
    server.then(
        AnthropicWire.message(
            "Let me check.",
            tool_uses=[("toolu_1", "get_weather", {"city": "Paris"})],
            stop_reason="tool_use",
        )
    )

    result = await router.complete(ask(tools=[WEATHER]))

    assert result.text == "Let me check."
    assert result.finish_reason == "tool_use"
    assert result.tool_calls == [
        ToolCall(id="toolu_1", name="get_weather", arguments={"city": "Paris"})
    ]
    assert server.requests[0].body["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather in a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]


async def test_tool_results_go_back_as_tool_result_blocks_in_one_user_turn(
    server: FakeLlmServer, router: ProviderRouter
) -> None:
    server.then(AnthropicWire.message("Paris is sunny, Oslo is not."))
    calls = [
        ToolCall(id="toolu_1", name="get_weather", arguments={"city": "Paris"}),
        ToolCall(id="toolu_2", name="get_weather", arguments={"city": "Oslo"}),
    ]
    request = LlmRequest(
        model="anthropic:claude-haiku-4-5",
        tools=[WEATHER],
        messages=[
            Message(role="user", content="Paris or Oslo?"),
            Message(role="assistant", content="Checking both.", tool_calls=calls),
            Message(role="tool", tool_call_id="toolu_1", content="clear"),
            Message(role="tool", tool_call_id="toolu_2", content="rain"),
        ],
    )

    result = await router.complete(request)

    assert result.text == "Paris is sunny, Oslo is not."
    assert server.requests[0].body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Paris or Oslo?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking both."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "toolu_2",
                    "name": "get_weather",
                    "input": {"city": "Oslo"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "clear"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "rain"},
            ],
        },
    ]


async def test_a_stream_yields_text_then_the_whole_result_with_tool_use_and_usage(
    server: FakeLlmServer, router: ProviderRouter
) -> None:
    server.then(
        AnthropicWire.stream(
            ["Let me ", "check."],
            stop_reason="tool_use",
            usage=(30, 12, 0),
            tool_use=("toolu_9", "get_weather", ['{"city"', ': "Par', 'is"}']),
        )
    )

    *deltas, result = await collect(router, ask(tools=[WEATHER]))

    assert [d.text for d in deltas if isinstance(d, LlmDelta)] == ["Let me ", "check."]
    assert isinstance(result, LlmResult)
    assert result.text == "Let me check."
    assert result.finish_reason == "tool_use"
    assert result.tool_calls == [
        ToolCall(id="toolu_9", name="get_weather", arguments={"city": "Paris"})
    ]
    assert (result.usage.input_tokens, result.usage.output_tokens) == (30, 12)
    assert result.cost_usd == pytest.approx((30 * 1 + 12 * 5) / 1e6)
    assert server.requests[0].body["stream"] is True


async def test_a_stream_without_message_stop_is_a_retryable_failure_not_an_answer(
    server: FakeLlmServer, router: ProviderRouter
) -> None:
    server.then(AnthropicWire.stream(["Sunny, 2"], stop_reason=None))

    items, error = await stream_until_failure(router.stream(ask()))

    assert [i.text for i in items if isinstance(i, LlmDelta)] == ["Sunny, 2"]
    assert not any(isinstance(item, LlmResult) for item in items)
    assert error.retryable
    assert "stream ended before the model finished" in error.message


async def test_a_dropped_stream_is_retried_from_the_start_and_then_succeeds(
    server: FakeLlmServer, router: ProviderRouter
) -> None:
    server.then(
        AnthropicWire.stream(["Sunny, 2"], stop_reason=None, cut=True),
        AnthropicWire.stream(["Sunny, ", "21 °C."]),
    )
    deltas: list[tuple[int, str]] = []
    failures: list[LlmError] = []

    async def on_delta(attempt: int, delta: LlmDelta) -> None:
        deltas.append((attempt, delta.text))

    async def on_failed(attempt: int, error: LlmError, delay: float | None) -> None:
        failures.append(error)

    result = await stream_with_retries(router, ask(), FAST, on_delta, on_failed)

    assert result.text == "Sunny, 21 °C."
    assert server.calls == 2
    assert deltas == [(1, "Sunny, 2"), (2, "Sunny, "), (2, "21 °C.")]
    assert len(failures) == 1
    assert failures[0].retryable
    assert "connection to anthropic" in failures[0].message


async def test_an_error_event_inside_a_stream_is_classified_by_its_type(
    server: FakeLlmServer, router: ProviderRouter
) -> None:
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    server.then(Reply(events=[sse(overloaded, "error")]))

    with pytest.raises(LlmError) as caught:
        await collect(router, ask())

    assert caught.value.retryable
    assert caught.value.status == 529
    assert caught.value.message.startswith("anthropic is overloaded (529)")


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (529, "overloaded_error"),
        (500, "api_error"),
        (429, "rate_limit_error"),
    ],
)
async def test_overload_server_errors_and_rate_limits_are_retried_then_succeed(
    server: FakeLlmServer, router: ProviderRouter, status: int, error_type: str
) -> None:
    server.then(AnthropicWire.error(status, "try later", error_type), AnthropicWire.message("ok"))
    failed: list[int | None] = []

    async def on_failed(attempt: int, error: LlmError, delay: float | None) -> None:
        failed.append(error.status)

    result = await complete_with_retries(router, ask(), FAST, on_failed)

    assert result.text == "ok"
    assert server.calls == 2
    assert failed == [status]


async def test_a_401_fails_at_once_and_says_which_key_to_set(
    server: FakeLlmServer, router: ProviderRouter
) -> None:
    server.then(AnthropicWire.error(401, "invalid x-api-key", "authentication_error"))

    with pytest.raises(LlmError) as caught:
        await complete_with_retries(router, ask(), FAST)

    error = caught.value
    assert error.kind == "fatal"
    assert server.calls == 1
    assert error.message == (
        "anthropic rejected the API key (401): set ANTHROPIC_API_KEY or the node's credential"
    )
    assert KEY not in str(error)
    assert KEY not in str(error.to_dict())


async def test_an_unknown_model_fails_at_once_and_names_the_model(
    server: FakeLlmServer, router: ProviderRouter
) -> None:
    server.then(AnthropicWire.error(404, "model: claude-nope", "not_found_error"))

    error = await failure_of(router, ask(model="anthropic:claude-nope"))

    assert error.kind == "fatal"
    assert error.status == 404
    assert error.message == "anthropic: model 'claude-nope' not found (404): check the node's model"


async def test_a_prompt_too_long_fails_at_once_and_says_so(
    server: FakeLlmServer, router: ProviderRouter
) -> None:
    server.then(AnthropicWire.error(400, "prompt is too long: 210345 tokens > 200000 maximum"))

    with pytest.raises(LlmError) as caught:
        await complete_with_retries(router, ask(), FAST)

    assert caught.value.kind == "fatal"
    assert server.calls == 1
    assert caught.value.message.startswith(
        "anthropic: the prompt is longer than the model's context window (400)"
    )


async def test_a_server_that_does_not_answer_in_time_is_a_retryable_timeout(
    server: FakeLlmServer,
) -> None:
    router = router_for(server, HEDDLE_LLM_TIMEOUT_SECONDS="0.3")
    server.then(replace(AnthropicWire.message("late"), delay=3))
    try:
        started = time.monotonic()
        error = await failure_of(router, ask())
        elapsed = time.monotonic() - started
    finally:
        await router.aclose()

    assert error.retryable
    assert error.message == "anthropic did not answer within 0.3 s"
    assert elapsed < 2.0


async def test_a_missing_anthropic_key_is_fatal_names_the_variable_and_calls_nobody(
    server: FakeLlmServer,
) -> None:
    router = ProviderRouter(ProviderSettings.from_env({"ANTHROPIC_BASE_URL": server.url}))

    error = await failure_of(router, ask())
    await router.aclose()

    assert error.kind == "fatal"
    assert "set ANTHROPIC_API_KEY" in error.message
    assert server.calls == 0
