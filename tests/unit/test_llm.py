"""The scripted provider and the one retry layer."""

from __future__ import annotations

import pytest

from domain.llm import LlmError, LlmRequest, Message, RetryPolicy
from infra.llm.retrying import complete_with_retries
from infra.llm.scripted import ScriptedProvider


def request(model: str = "scripted:echo", **options: object) -> LlmRequest:
    return LlmRequest(
        model=model, messages=[Message(role="user", content="Say hello to Ada")], options=options
    )


async def test_echo_replies_with_the_prompt_and_counts_tokens() -> None:
    result = await ScriptedProvider().complete(request())
    assert result.text == "Say hello to Ada"
    assert (result.usage.input_tokens, result.usage.output_tokens) == (4, 4)
    assert result.provider == "scripted"
    assert result.finish_reason == "stop"


async def test_a_reply_template_sees_the_prompt() -> None:
    result = await ScriptedProvider().complete(
        request("scripted:t", reply="<{{ prompt | upper }}>")
    )
    assert result.text == "<SAY HELLO TO ADA>"


async def test_two_429s_with_retry_after_are_waited_out_then_the_call_succeeds() -> None:
    waited: list[float] = []
    failed: list[tuple[int, int | None, float | None]] = []

    async def sleep(seconds: float) -> None:
        waited.append(seconds)

    async def on_failed(attempt: int, error: LlmError, delay: float | None) -> None:
        failed.append((attempt, error.status, delay))

    scripted = request("scripted:flaky", fail=[{"status": 429, "retry_after": 1}] * 2)
    result = await complete_with_retries(
        ScriptedProvider(), scripted, RetryPolicy(), on_failed, sleep=sleep, rand=lambda: 0.5
    )
    assert result.text == "Say hello to Ada"
    assert len(waited) == 2
    assert all(seconds >= 1 for seconds in waited)
    assert [(a, s) for a, s, _ in failed] == [(1, 429), (2, 429)]


async def test_a_fatal_error_is_not_retried() -> None:
    failed: list[int] = []

    async def on_failed(attempt: int, error: LlmError, delay: float | None) -> None:
        failed.append(attempt)
        assert delay is None

    scripted = request("scripted:bad", fail=[{"status": 401, "message": "set OPENAI_API_KEY"}])
    with pytest.raises(LlmError) as caught:
        await complete_with_retries(ScriptedProvider(), scripted, RetryPolicy(), on_failed)
    assert caught.value.kind == "fatal"
    assert caught.value.status == 401
    assert failed == [1]


def test_backoff_grows_and_stops_at_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3, base_delay=1, jitter=0)
    error = LlmError("x", "retryable", "overloaded", status=529)
    assert [policy.delay(n, error, 0.5) for n in (1, 2, 3)] == [1, 2, None]


def test_a_retry_after_above_max_delay_is_still_waited_in_full() -> None:
    policy = RetryPolicy(max_delay=5, jitter=0)
    error = LlmError("x", "retryable", "rate limited", status=429, retry_after=12)
    assert policy.delay(1, error, 0.5) == 12


def test_a_short_retry_after_does_not_lift_the_backoff_above_max_delay() -> None:
    policy = RetryPolicy(max_attempts=20, base_delay=1, max_delay=30, jitter=0)
    error = LlmError("x", "retryable", "rate limited", status=429, retry_after=1)
    assert policy.delay(10, error, 0.5) == 30


async def test_a_retry_after_beyond_the_deadline_gives_up_instead_of_waiting() -> None:
    waited: list[float] = []
    reported: list[float | None] = []

    async def sleep(seconds: float) -> None:
        waited.append(seconds)

    async def on_failed(attempt: int, error: LlmError, delay: float | None) -> None:
        reported.append(delay)

    scripted = request("scripted:slow", fail=[{"status": 429, "retry_after": 600}])
    with pytest.raises(LlmError) as caught:
        await complete_with_retries(
            ScriptedProvider(), scripted, RetryPolicy(deadline_seconds=60), on_failed, sleep=sleep
        )
    assert caught.value.status == 429
    assert waited == []
    assert reported == [None]
