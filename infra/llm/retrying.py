"""The one retry layer: bounded attempts, backoff with jitter, Retry-After, a deadline.

The SDKs' own retries are off; every failed try is reported so the run records it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

from domain.llm import LlmError, LlmProvider, LlmRequest, LlmResult, RetryPolicy

OnAttemptFailed = Callable[[int, LlmError, float | None], Awaitable[None]]


async def complete_with_retries(
    provider: LlmProvider,
    request: LlmRequest,
    policy: RetryPolicy,
    on_attempt_failed: OnAttemptFailed | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    rand: Callable[[], float] = random.random,
) -> LlmResult:
    """The provider's answer, or the last error once it is fatal or tries run out."""
    deadline = time.monotonic() + policy.deadline_seconds
    attempt = 0
    while True:
        attempt += 1
        try:
            return await asyncio.wait_for(
                provider.complete(request), timeout=max(0.001, deadline - time.monotonic())
            )
        except LlmError as error:
            failure = error
        except TimeoutError:
            failure = LlmError(
                request.provider, "fatal",
                f"no answer within the {policy.deadline_seconds:.0f} s deadline of the call",
            )
        delay = policy.delay(attempt, failure, rand())
        if delay is not None and time.monotonic() + delay >= deadline:
            delay = None
        if on_attempt_failed is not None:
            await on_attempt_failed(attempt, failure, delay)
        if delay is None:
            raise failure
        await sleep(delay)
