"""Anthropic's messages API through the official SDK.

System messages become the `system` parameter, tool calls `tool_use` blocks and tool
answers `tool_result` blocks. The SDK's own retries are off and its timeout is explicit.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import anthropic

from domain.llm import LlmDelta, LlmRequest, LlmResult, Message, ToolCall, Usage
from infra.llm.common import (
    Clients,
    Endpoint,
    SdkErrors,
    guarded,
    guarded_iter,
    incomplete_stream,
    parse_arguments,
    since,
)

ERRORS = SdkErrors(
    base=anthropic.AnthropicError,
    status=anthropic.APIStatusError,
    timeout=anthropic.APITimeoutError,
    connection=anthropic.APIConnectionError,
)
DEFAULT_MAX_TOKENS = 1024
"""Anthropic requires `max_tokens`; this is sent when the request sets none."""
PASSED_OPTIONS = frozenset(
    {"stop_sequences", "tool_choice", "metadata", "thinking", "service_tier"}
)
SAMPLING_OPTIONS = frozenset({"top_p", "top_k"})


class AnthropicProvider:
    """Messages, plain or streamed, with tool use and usage (cache reads included)."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.name = endpoint.provider
        self.endpoint = endpoint
        self._clients = Clients(endpoint, self._client)

    async def complete(self, request: LlmRequest, api_key: str | None = None) -> LlmResult:
        client = self._clients.for_request(request, api_key)
        started = time.perf_counter()
        message = await guarded(
            client.messages.create(**_body(request)), ERRORS, self.endpoint, request
        )
        text = "".join(block.text for block in message.content if block.type == "text")
        calls = [
            ToolCall(id=block.id, name=block.name, arguments=dict(block.input or {}))
            for block in message.content
            if block.type == "tool_use"
        ]
        return LlmResult(
            text=text,
            tool_calls=calls,
            finish_reason=message.stop_reason or "unknown",
            usage=_usage(message.usage),
            model=message.model or request.model_name,
            provider=self.name,
            latency_ms=since(started),
        )

    async def stream(
        self, request: LlmRequest, api_key: str | None = None
    ) -> AsyncIterator[LlmDelta | LlmResult]:
        """Text deltas as they come, then the whole result. A stream without `message_stop`
        and a stop reason raises a retryable error: it is not an answer."""
        client = self._clients.for_request(request, api_key)
        started = time.perf_counter()
        events = await guarded(
            client.messages.create(**_body(request), stream=True), ERRORS, self.endpoint, request
        )
        text: list[str] = []
        tools: dict[int, dict[str, str]] = {}
        usage: dict[str, int] = {}
        stop_reason: str | None = None
        stopped = False
        model = request.model_name
        try:
            async for event in guarded_iter(events, ERRORS, self.endpoint, request):
                if event.type == "message_start":
                    model = event.message.model or model
                    usage.update(_usage_counts(event.message.usage))
                elif event.type == "content_block_start" and event.content_block.type == "tool_use":
                    block = event.content_block
                    tools[event.index] = {"id": block.id, "name": block.name, "json": ""}
                elif event.type == "content_block_delta":
                    if event.delta.type == "text_delta" and event.delta.text:
                        yield LlmDelta(text=event.delta.text, index=len(text))
                        text.append(event.delta.text)
                    elif event.delta.type == "input_json_delta" and event.index in tools:
                        tools[event.index]["json"] += event.delta.partial_json
                elif event.type == "message_delta":
                    stop_reason = event.delta.stop_reason or stop_reason
                    usage.update(_usage_counts(event.usage))
                elif event.type == "message_stop":
                    stopped = True
        finally:
            await events.close()
        if not stopped or stop_reason is None:
            raise incomplete_stream(self.name)
        yield LlmResult(
            text="".join(text),
            tool_calls=[
                ToolCall(
                    id=tool["id"],
                    name=tool["name"],
                    arguments=parse_arguments(self.name, tool["name"], tool["json"]),
                )
                for _, tool in sorted(tools.items())
            ],
            finish_reason=stop_reason,
            usage=_totals(usage),
            model=model,
            provider=self.name,
            latency_ms=since(started),
        )

    async def aclose(self) -> None:
        await self._clients.aclose()

    def _client(self, key: str) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(
            api_key=key,
            base_url=self.endpoint.base_url,
            max_retries=0,
            timeout=self.endpoint.timeout_seconds,
        )


def _body(request: LlmRequest) -> dict[str, Any]:
    system = "\n\n".join(m.content for m in request.messages if m.role == "system")
    body: dict[str, Any] = {
        "model": request.model_name,
        "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
        "messages": _wire_messages([m for m in request.messages if m.role != "system"]),
    }
    if system:
        body["system"] = system
    if request.tools:
        body["tools"] = [
            {"name": tool.name, "description": tool.description, "input_schema": tool.parameters}
            for tool in request.tools
        ]
    body.update({k: v for k, v in request.options.items() if k in PASSED_OPTIONS})
    # This SDK no longer declares sampling parameters; models that take them still do.
    sampling = {k: v for k, v in request.options.items() if k in SAMPLING_OPTIONS}
    if request.temperature is not None:
        sampling["temperature"] = request.temperature
    if sampling:
        body["extra_body"] = sampling
    return body


def _wire_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Anthropic's turns: tool answers are `tool_result` blocks of a user turn, and
    consecutive messages of one role share a turn (all results of a tool round together)."""
    turns: list[dict[str, Any]] = []
    for message in messages:
        role = "assistant" if message.role == "assistant" else "user"
        blocks: list[dict[str, Any]] = []
        if message.role == "tool":
            blocks.append(
                {
                    "type": "tool_result",
                    "tool_use_id": message.tool_call_id,
                    "content": message.content,
                }
            )
        elif message.content:
            blocks.append({"type": "text", "text": message.content})
        blocks.extend(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
            for call in message.tool_calls
        )
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return turns


def _usage_counts(usage: Any) -> dict[str, int]:
    """The counts present in a usage object (stream events carry some of them)."""
    names = (
        "input_tokens",
        "output_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
    )
    counts = {name: getattr(usage, name, None) for name in names} if usage else {}
    return {name: value for name, value in counts.items() if value is not None}


def _usage(usage: Any) -> Usage:
    return _totals(_usage_counts(usage))


def _totals(counts: dict[str, int]) -> Usage:
    """Anthropic counts cache reads and writes apart from `input_tokens`; Heddle's input
    counts every prompt token, with cache reads also in `cached_tokens`."""
    cached = counts.get("cache_read_input_tokens", 0)
    written = counts.get("cache_creation_input_tokens", 0)
    return Usage(
        input_tokens=counts.get("input_tokens", 0) + cached + written,
        output_tokens=counts.get("output_tokens", 0),
        cached_tokens=cached,
    )
