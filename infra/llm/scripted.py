"""The scripted provider: offline, deterministic, fast. For examples, tests and benchmarks.

`scripted:echo` replies with the last user message. Any other `scripted:<name>` reads
its script from the request's `options`:

- `reply`: a Jinja2 template over `prompt` (the last user message) and `messages`;
- `replies`: a list, one per turn (chosen by how many assistant messages came before);
  an item may be a mapping `{text, tool_calls: [{name, arguments}]}` to call tools, where
  `text` is a template and each `arguments` is sent as written;
- `latency_ms`: wait this long before answering;
- `fail`: a list of failures to produce, one per try of the same request, before
  answering, e.g. `[{status: 429, retry_after: 1}, {status: 500}]`.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any, Literal

from jinja2.sandbox import ImmutableSandboxedEnvironment

from domain.llm import LlmDelta, LlmError, LlmRequest, LlmResult, ToolCall, Usage

_TEMPLATES = ImmutableSandboxedEnvironment()
FATAL_STATUSES = {400, 401, 403, 404, 422}


class ScriptedProvider:
    """Answers from a script instead of a model."""

    name = "scripted"

    def __init__(self) -> None:
        self._tries: Counter[str] = Counter()

    async def complete(self, request: LlmRequest, api_key: str | None = None) -> LlmResult:
        started = time.perf_counter()
        options = request.options
        failures: list[dict[str, Any]] = options.get("fail") or []
        if failures:
            fingerprint = request.fingerprint()
            tried = self._tries[fingerprint]
            self._tries[fingerprint] += 1
            if tried < len(failures):
                raise _failure(failures[tried])
        latency = float(options.get("latency_ms") or 0)
        if latency:
            await asyncio.sleep(latency / 1000)
        text, calls = self._reply(request)
        prompt_words = sum(len(m.content.split()) for m in request.messages)
        return LlmResult(
            text=text,
            tool_calls=calls,
            finish_reason="tool_calls" if calls else "stop",
            usage=Usage(input_tokens=prompt_words, output_tokens=len(text.split())),
            model=request.model_name,
            provider=self.name,
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
        )

    async def stream(
        self, request: LlmRequest, api_key: str | None = None
    ) -> AsyncIterator[LlmDelta | LlmResult]:
        result = await self.complete(request)
        size = int(request.options.get("stream_chunk") or 8)
        for index, start in enumerate(range(0, len(result.text), size)):
            yield LlmDelta(text=result.text[start : start + size], index=index)
        yield result

    async def aclose(self) -> None:
        return None

    def _reply(self, request: LlmRequest) -> tuple[str, list[ToolCall]]:
        prompt = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        if request.model_name == "echo":
            return prompt, []
        options = request.options
        turn = sum(1 for m in request.messages if m.role == "assistant")
        script: Any = options.get("reply", "{{ prompt }}")
        if "replies" in options:
            replies = options["replies"]
            script = replies[min(turn, len(replies) - 1)]
        if not isinstance(script, dict):
            script = {"text": script}
        context = {"prompt": prompt, "messages": [m.model_dump() for m in request.messages]}
        text = _TEMPLATES.from_string(str(script.get("text", ""))).render(context)
        calls = [
            ToolCall(
                id=f"call_{turn}_{index}", name=call["name"], arguments=call.get("arguments") or {}
            )
            for index, call in enumerate(script.get("tool_calls") or [])
        ]
        return text, calls


def _failure(spec: dict[str, Any]) -> LlmError:
    status = spec.get("status")
    kind: Literal["retryable", "fatal"] = "fatal" if status in FATAL_STATUSES else "retryable"
    message = spec.get("message") or f"scripted failure ({status or 'connection error'})"
    return LlmError("scripted", kind, message, status=status, retry_after=spec.get("retry_after"))
