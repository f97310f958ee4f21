"""The one retry layer: bounded attempts, backoff with jitter, Retry-After, a deadline.

The SDKs' own retries are off; every failed try is reported so the run records it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

from domain.llm import LlmDelta, LlmError, LlmProvider, LlmRequest, LlmResult, RetryPolicy
from infra import metrics, tracing
from infra.llm.router import ProviderRouter

OnAttemptFailed = Callable[[int, LlmError, float | None], Awaitable[None]]
OnDelta = Callable[[int, LlmDelta], Awaitable[None]]
"""Receives (attempt, delta). A new attempt starts its text over: drop earlier attempts'."""


async def complete_with_retries(
    provider: LlmProvider,
    request: LlmRequest,
    policy: RetryPolicy,
    on_attempt_failed: OnAttemptFailed | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rand: Callable[[], float] = random.random,
) -> LlmResult:
    """The provider's answer, or the last error once it is fatal or tries run out."""

    async def attempt(_: int) -> LlmResult:
        return await provider.complete(request)

    return await _with_retries(attempt, request, policy, on_attempt_failed, sleep, rand)


async def stream_with_retries(
    provider: LlmProvider,
    request: LlmRequest,
    policy: RetryPolicy,
    on_delta: OnDelta,
    on_attempt_failed: OnAttemptFailed | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rand: Callable[[], float] = random.random,
) -> LlmResult:
    """Like `complete_with_retries`, passing each try's text deltas to `on_delta` as they
    arrive. A stream cut mid-answer is retried from the start."""

    async def attempt(number: int) -> LlmResult:
        async for item in provider.stream(request):
            if isinstance(item, LlmResult):
                return item
            await on_delta(number, item)
        raise LlmError(request.provider, "retryable", "stream ended without a result")

    return await _with_retries(attempt, request, policy, on_attempt_failed, sleep, rand)


async def _with_retries(
    attempt_once: Callable[[int], Awaitable[LlmResult]],
    request: LlmRequest,
    policy: RetryPolicy,
    on_attempt_failed: OnAttemptFailed | None,
    sleep: Callable[[float], Awaitable[None]],
    rand: Callable[[], float],
) -> LlmResult:
    deadline = time.monotonic() + policy.deadline_seconds
    attempt = 0
    while True:
        attempt += 1
        try:
            async with asyncio.timeout(max(0.001, deadline - time.monotonic())):
                return await attempt_once(attempt)
        except LlmError as error:
            failure = error
        except TimeoutError:
            failure = LlmError(
                request.provider,
                "fatal",
                f"no answer within the {policy.deadline_seconds:.0f} s deadline of the call",
            )
        delay = policy.delay(attempt, failure, rand())
        # Never wait past the deadline: a retry that could not finish in time is no retry.
        if delay is not None and time.monotonic() + delay >= deadline:
            delay = None
        if on_attempt_failed is not None:
            await on_attempt_failed(attempt, failure, delay)
        if delay is None:
            raise failure
        await sleep(delay)


class RetryingLlm:
    """The worker's model completion: a tenant's providers of the router, behind the one
    retry layer; streamed when `on_delta` is given (handlers' `CompleteLlm`)."""

    def __init__(self, router: ProviderRouter, policy: RetryPolicy) -> None:
        self.router, self.policy = router, policy

    async def __call__(
        self,
        request: LlmRequest,
        tenant: str,
        on_try_failed: OnAttemptFailed,
        on_delta: OnDelta | None = None,
    ) -> LlmResult:
        providers = self.router.for_tenant(tenant)
        provider = request.provider
        labels = {"provider": provider, "model": request.model.removeprefix(f"{provider}:")}

        async def failed(attempt: int, error: LlmError, delay: float | None) -> None:
            if delay is not None:
                metrics.MODEL_RETRIES.labels(**labels, error_class=error_class(error)).inc()
            await on_try_failed(attempt, error, delay)

        traced = tracing.span("heddle.model_call", None, **{
            "gen_ai.system": provider, "gen_ai.request.model": labels["model"],
        })  # fmt: skip
        with metrics.MODEL_CALLS_IN_FLIGHT.track_inprogress(), traced:
            try:
                with metrics.timed(metrics.MODEL_CALL, **labels):
                    if on_delta is not None:
                        timed = first_token_timed(on_delta, labels)
                        result = await stream_with_retries(
                            providers, request, self.policy, timed, failed, rand=random.random
                        )
                    else:
                        result = await complete_with_retries(
                            providers, request, self.policy, failed, rand=random.random
                        )
            except Exception as error:
                outcome = error_class(error) if isinstance(error, LlmError) else "other"
                metrics.MODEL_CALLS.labels(**labels, outcome=outcome).inc()
                raise
        metrics.MODEL_CALLS.labels(**labels, outcome="ok").inc()
        answered = {**labels, "tenant": tenant}
        for direction, count in (
            ("input", result.usage.input_tokens), ("output", result.usage.output_tokens),
        ):  # fmt: skip
            metrics.TOKENS.labels(**answered, direction=direction).inc(count)
        metrics.COST.labels(**answered).inc(result.cost_usd)
        return result


def first_token_timed(on_delta: OnDelta, labels: dict[str, str]) -> OnDelta:
    """`on_delta`, observing how long the call took to its first delta."""
    began = time.perf_counter()
    seen = False

    async def delta(attempt: int, piece: LlmDelta) -> None:
        nonlocal seen
        if not seen:
            seen = True
            metrics.FIRST_TOKEN.labels(**labels).observe(time.perf_counter() - began)
        await on_delta(attempt, piece)

    return delta


def error_class(error: LlmError) -> str:
    """A failure's class as a metric label: retryable or fatal, and the HTTP status."""
    return error.kind if error.status is None else f"{error.kind}_{error.status}"
