"""Heddle's own LLM types: requests, results, tool calls, usage, errors, retry policy.

SDK types never leave `infra/llm`; everything a run records is one of these, so a
replay needs no provider and no SDK.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ToolCall(_Frozen):
    """A model's request to call a tool, with parsed arguments."""

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class Message(_Frozen):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None


class ToolDefinition(_Frozen):
    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})


class Usage(_Frozen):
    """Tokens of one call. `input_tokens` counts every prompt token, `cached_tokens` those
    of them read from the provider's prompt cache (billed at a lower price)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0


class LlmRequest(_Frozen):
    """What to send: `model` is `provider:model`, e.g. `openai:gpt-4o-mini`."""

    model: str
    messages: list[Message]
    tools: list[ToolDefinition] = Field(default_factory=list)
    temperature: float | None = None
    max_tokens: int | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    credential: str | None = None

    @property
    def provider(self) -> str:
        return self._split()[0]

    @property
    def model_name(self) -> str:
        return self._split()[1]

    def _split(self) -> tuple[str, str]:
        provider, sep, name = self.model.partition(":")
        if not sep or not provider or not name:
            raise ValueError(f"model {self.model!r} must be written provider:model")
        return provider, name

    def fingerprint(self) -> str:
        """A stable hash of the request, to recognise an unchanged call on replay."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


class LlmResult(_Frozen):
    """A model's complete answer and what it cost."""

    text: str
    tool_calls: list[ToolCall] = Field(default_factory=list)
    finish_reason: str
    usage: Usage
    model: str
    provider: str
    latency_ms: float
    cost_usd: float = 0.0
    priced: bool = True
    """False when the price of `model` is unknown: `cost_usd` is then 0, not the cost."""


UNFINISHED = {
    "length": "it reached max_tokens",
    "max_tokens": "it reached max_tokens",
    "model_context_window_exceeded": "it filled the model's context window",
    "content_filter": "the provider's content filter cut it",
    "refusal": "the model refused to answer",
}
"""Finish reasons (OpenAI's `finish_reason`, Anthropic's `stop_reason`) of an answer the
model did not finish, with what each means."""


def unfinished(result: LlmResult) -> str | None:
    """Why the model did not finish this answer, or None when it did."""
    why = UNFINISHED.get(result.finish_reason)
    if why is None:
        return None
    return f"{result.provider} did not finish the answer ({result.finish_reason}: {why})"


class LlmDelta(_Frozen):
    """A piece of streamed text."""

    text: str
    index: int


class LlmError(Exception):
    """A failed call, classified: `retryable` (try again later) or `fatal` (fix something)."""

    def __init__(
        self,
        provider: str,
        kind: Literal["retryable", "fatal"],
        message: str,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.kind == "retryable"

    def to_dict(self) -> dict[str, Any]:
        return {
            "class": self.kind,
            "provider": self.provider,
            "status": self.status,
            "message": self.message,
            "retry_after": self.retry_after,
        }


class LlmProvider(Protocol):
    """One interface for every model provider."""

    async def complete(self, request: LlmRequest) -> LlmResult: ...

    def stream(self, request: LlmRequest) -> AsyncIterator[LlmDelta | LlmResult]: ...


class RetryPolicy(_Frozen):
    """Exponential backoff with jitter, bounded in attempts and in total time."""

    max_attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 30.0
    jitter: float = 0.2
    deadline_seconds: float = 120.0

    def delay(self, attempt: int, error: LlmError, rand: float) -> float | None:
        """Seconds to wait before the next attempt, or None to give up.

        A provider's `retry_after` is a floor, even above `max_delay`: asking again sooner
        only earns another refusal. The caller gives up if the wait passes its deadline.
        """
        if not error.retryable or attempt >= self.max_attempts:
            return None
        backoff = self.base_delay * 2.0 ** (attempt - 1) * (1 + self.jitter * (2 * rand - 1))
        backoff = min(backoff, self.max_delay)
        if error.retry_after is not None:
            backoff = max(backoff, error.retry_after)
        return backoff
