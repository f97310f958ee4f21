"""OpenAI chat completions through the official SDK; also Groq, Ollama, vLLM and any other
OpenAI-compatible server, by base URL.

The SDK's own retries are off (`infra/llm/retrying.py` is the one retry layer) and its
timeout is explicit.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import openai

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
    base=openai.OpenAIError,
    status=openai.APIStatusError,
    timeout=openai.APITimeoutError,
    connection=openai.APIConnectionError,
)
# Request options passed through from `LlmRequest.options`; the rest (scripts of the
# scripted provider, say) stay home.
PASSED_OPTIONS = frozenset(
    {
        "top_p",
        "stop",
        "seed",
        "response_format",
        "presence_penalty",
        "frequency_penalty",
        "reasoning_effort",
        "tool_choice",
        "parallel_tool_calls",
        "user",
    }
)


class OpenAiProvider:
    """Chat completions, plain or streamed, with tool calls and usage."""

    def __init__(self, endpoint: Endpoint, max_tokens_field: str = "max_completion_tokens") -> None:
        self.name = endpoint.provider
        self.endpoint = endpoint
        # OpenAI's newer models reject `max_tokens`; compatible servers may only know it.
        self.max_tokens_field = max_tokens_field
        self._clients = Clients(endpoint, self._client)

    async def complete(self, request: LlmRequest, api_key: str | None = None) -> LlmResult:
        client = self._clients.for_request(request, api_key)
        started = time.perf_counter()
        response = await guarded(
            client.chat.completions.create(**self._body(request)), ERRORS, self.endpoint, request
        )
        choice = response.choices[0] if response.choices else None
        message = choice.message if choice else None
        calls = [
            ToolCall(
                id=call.id,
                name=call.function.name,
                arguments=parse_arguments(self.name, call.function.name, call.function.arguments),
            )
            for call in (message.tool_calls if message and message.tool_calls else [])
            if getattr(call, "function", None) is not None
        ]
        refusal = message.refusal if message else None
        return LlmResult(
            text=(message.content if message else None) or refusal or "",
            tool_calls=calls,
            # A refusal comes with `stop`: say what it is, so that no node takes it.
            finish_reason="refusal"
            if refusal
            else (choice.finish_reason if choice else None) or "unknown",
            usage=_usage(response.usage),
            model=response.model or request.model_name,
            provider=self.name,
            latency_ms=since(started),
        )

    async def stream(
        self, request: LlmRequest, api_key: str | None = None
    ) -> AsyncIterator[LlmDelta | LlmResult]:
        """Text deltas as they come, then the whole result; an unfinished stream raises."""
        client = self._clients.for_request(request, api_key)
        started = time.perf_counter()
        body = {**self._body(request), "stream": True, "stream_options": {"include_usage": True}}
        chunks = await guarded(
            client.chat.completions.create(**body), ERRORS, self.endpoint, request
        )
        text: list[str] = []
        refusal: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        finish_reason: str | None = None
        usage = Usage()
        model = request.model_name
        try:
            async for chunk in guarded_iter(chunks, ERRORS, self.endpoint, request):
                model = chunk.model or model
                if chunk.usage is not None:
                    usage = _usage(chunk.usage)
                for choice in chunk.choices:
                    finish_reason = choice.finish_reason or finish_reason
                    delta = choice.delta
                    for call in delta.tool_calls or []:
                        slot = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                        slot["id"] = call.id or slot["id"]
                        if call.function is not None:
                            slot["name"] = call.function.name or slot["name"]
                            slot["arguments"] += call.function.arguments or ""
                    if delta.content:
                        yield LlmDelta(text=delta.content, index=len(text))
                        text.append(delta.content)
                    if delta.refusal:
                        refusal.append(delta.refusal)
        finally:
            await chunks.close()
        if finish_reason is None:
            raise incomplete_stream(self.name)
        yield LlmResult(
            text="".join(text) or "".join(refusal),
            tool_calls=[
                ToolCall(
                    id=slot["id"],
                    name=slot["name"],
                    arguments=parse_arguments(self.name, slot["name"], slot["arguments"]),
                )
                for _, slot in sorted(calls.items())
            ],
            finish_reason="refusal" if refusal else finish_reason,
            usage=usage,
            model=model,
            provider=self.name,
            latency_ms=since(started),
        )

    async def aclose(self) -> None:
        await self._clients.aclose()

    def _client(self, key: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            api_key=key,
            base_url=self.endpoint.base_url,
            max_retries=0,
            timeout=self.endpoint.timeout_seconds,
        )

    def _body(self, request: LlmRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model_name,
            "messages": [_wire_message(message) for message in request.messages],
        }
        if request.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": tool.name,
                        "description": tool.description,
                        "parameters": tool.parameters,
                    },
                }
                for tool in request.tools
            ]
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.max_tokens is not None:
            body[self.max_tokens_field] = request.max_tokens
        body.update({k: v for k, v in request.options.items() if k in PASSED_OPTIONS})
        return body


def _wire_message(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if message.role == "assistant" and message.tool_calls:
        return {
            "role": "assistant",
            "content": message.content or None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                }
                for call in message.tool_calls
            ],
        }
    return {"role": message.role, "content": message.content}


def _usage(usage: Any) -> Usage:
    if usage is None:
        return Usage()
    details = getattr(usage, "prompt_tokens_details", None)
    return Usage(
        input_tokens=usage.prompt_tokens or 0,
        output_tokens=usage.completion_tokens or 0,
        cached_tokens=(getattr(details, "cached_tokens", None) or 0) if details else 0,
    )
