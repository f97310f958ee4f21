"""A fake LLM provider over real HTTP, for the real `openai` and `anthropic` SDKs.

`FakeLlmServer` is a small HTTP/1.1 server on a free localhost port, running in the test's
event loop. Each test queues the replies it wants (`server.then(...)`): JSON bodies, error
statuses with headers, server-sent-event streams, a delay, a stream dropped mid-answer.
The server records every request it receives (`server.requests`) and counts them
(`server.calls`). With nothing queued it answers with `server.answer(request)` if a test
set one (replies chosen by what was asked, for callers that may repeat a request), else
500, so a test that makes an unplanned call fails.

`OpenAiWire` and `AnthropicWire` build replies in each provider's wire format.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from typing import Any

from domain.llm import (
    LlmDelta,
    LlmError,
    LlmProvider,
    LlmRequest,
    LlmResult,
    RetryPolicy,
    ToolDefinition,
)


@dataclass(frozen=True)
class Reply:
    """One scripted answer. `events` makes it a server-sent-event stream. `cut` drops the
    connection mid-answer: after the events of a stream, or halfway through a JSON body."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    events: list[str] | None = None
    delay: float = 0.0
    cut: bool = False


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float = field(default_factory=time.monotonic)
    """When it arrived (`time.monotonic()`)."""


class FakeLlmServer:
    """Answers from a queue of `Reply`s and records what it was sent."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._replies: deque[Reply] = deque()
        self.answer: Callable[[Received], Reply] | None = None
        """Answers a request when nothing is queued (None: 500)."""
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.url = ""

    @property
    def calls(self) -> int:
        return len(self.requests)

    def then(self, *replies: Reply) -> FakeLlmServer:
        self._replies.extend(replies)
        return self

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
                method, path, _ = request_line.split(" ", 2)
                headers = {}
                for line in lines:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                raw = await reader.readexactly(int(headers.get("content-length", "0")))
                received = Received(method, path, headers, json.loads(raw) if raw else None)
                self.requests.append(received)
                reply = self._reply_to(received)
                if reply.delay:
                    await asyncio.sleep(reply.delay)
                await _write(writer, reply)
                if reply.cut:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away
        except asyncio.CancelledError:
            pass  # the server is stopping; end quietly rather than as a cancelled task
        finally:
            writer.close()
            with suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()
            self._connections.discard(task)

    def _reply_to(self, request: Received) -> Reply:
        if self._replies:
            return self._replies.popleft()
        return _NOTHING_QUEUED if self.answer is None else self.answer(request)


_NOTHING_QUEUED = Reply(500, {"error": {"message": "fake server: no reply queued"}})


async def _write(writer: asyncio.StreamWriter, reply: Reply) -> None:
    try:
        phrase = HTTPStatus(reply.status).phrase
    except ValueError:
        phrase = "Overloaded"
    head = [f"HTTP/1.1 {reply.status} {phrase}"]
    headers = {k.lower(): v for k, v in reply.headers.items()}
    if reply.events is None:
        payload = b"" if reply.body is None else json.dumps(reply.body).encode()
        headers.setdefault("content-type", "application/json")
        headers["content-length"] = str(len(payload))
    else:
        headers["content-type"] = "text/event-stream"
        headers["transfer-encoding"] = "chunked"
    head += [f"{name}: {value}" for name, value in headers.items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
    if reply.events is None:
        if reply.cut:
            writer.write(payload[: len(payload) // 2])
            await writer.drain()
            writer.transport.abort()
            return
        writer.write(payload)
    else:
        for event in reply.events:
            data = event.encode()
            writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            await writer.drain()
        if reply.cut:
            writer.transport.abort()
            return
        writer.write(b"0\r\n\r\n")
    await writer.drain()


FAST = RetryPolicy(base_delay=0.01, jitter=0, deadline_seconds=30)
"""Retries without waiting, for tests of what is retried rather than how long it waits."""
WEATHER = ToolDefinition(
    name="get_weather",
    description="Current weather in a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)


@asynccontextmanager
async def running_server() -> AsyncIterator[FakeLlmServer]:
    server = FakeLlmServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def failure_of(provider: LlmProvider, request: LlmRequest) -> LlmError:
    """The error a completion raises; a completion that succeeds is an `AssertionError`."""
    try:
        result = await provider.complete(request)
    except LlmError as error:
        return error
    raise AssertionError(f"the call did not fail; it answered {result}")


async def collect(provider: LlmProvider, request: LlmRequest) -> list[LlmDelta | LlmResult]:
    return [item async for item in provider.stream(request)]


async def stream_until_failure(
    stream: AsyncIterator[LlmDelta | LlmResult],
) -> tuple[list[LlmDelta | LlmResult], LlmError]:
    """What a stream yielded before it failed, and the failure; a stream that does not
    fail is an `AssertionError`."""
    items: list[LlmDelta | LlmResult] = []
    try:
        async for item in stream:
            items.append(item)
    except LlmError as error:
        return items, error
    raise AssertionError(f"the stream did not fail; it yielded {items}")


def sse(data: Any, event: str | None = None) -> str:
    """One server-sent event; `data` is JSON-encoded unless it is already a string."""
    text = data if isinstance(data, str) else json.dumps(data)
    return (f"event: {event}\n" if event else "") + f"data: {text}\n\n"


def cut(reply: Reply) -> Reply:
    """The same answer, its connection dropped halfway."""
    return replace(reply, cut=True)


def sent_key(request: Received) -> str:
    """The credential a request carried, whichever header the SDK put it in."""
    bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
    return request.headers.get("x-api-key") or bearer


def error_reply(status: int, body: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status=status, body=body, headers=headers or {})


class OpenAiWire:
    """Chat-completions replies in OpenAI's wire format."""

    @staticmethod
    def completion(
        text: str | None = "",
        tool_calls: Iterable[tuple[str, str, str]] = (),
        finish_reason: str = "stop",
        model: str = "gpt-4o-mini-2024-07-18",
        usage: tuple[int, int, int] = (12, 5, 0),
    ) -> Reply:
        """`tool_calls` are (id, name, arguments as sent); `usage` is (prompt, completion,
        cached) tokens."""
        message: dict[str, Any] = {"role": "assistant", "content": text}
        calls = [
            {"id": id_, "type": "function", "function": {"name": name, "arguments": arguments}}
            for id_, name, arguments in tool_calls
        ]
        if calls:
            message["tool_calls"] = calls
        return Reply(
            body={
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
                "usage": OpenAiWire.usage(*usage),
            }
        )

    @staticmethod
    def usage(prompt: int, completion: int, cached: int = 0) -> dict[str, Any]:
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
        }

    @staticmethod
    def chunk(
        delta: dict[str, Any] | None,
        finish_reason: str | None = None,
        usage: dict[str, Any] | None = None,
        model: str = "gpt-4o-mini",
    ) -> str:
        choices = (
            [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
        )
        return sse(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": 1_700_000_000,
                "model": model,
                "choices": choices,
                "usage": usage,
            }
        )

    @staticmethod
    def stream(
        pieces: Iterable[str],
        finish_reason: str | None = "stop",
        usage: tuple[int, int, int] = (12, 5, 0),
        cut: bool = False,
        extra: Iterable[str] = (),
    ) -> Reply:
        """Text pieces, then (if `finish_reason`) the finish, usage and [DONE]. Without a
        finish reason the body simply ends; `cut` drops the connection instead."""
        events = [OpenAiWire.chunk({"role": "assistant", "content": ""})]
        events += [OpenAiWire.chunk({"content": piece}) for piece in pieces]
        events += list(extra)
        if finish_reason is not None:
            events.append(OpenAiWire.chunk({}, finish_reason))
            events.append(OpenAiWire.chunk(None, usage=OpenAiWire.usage(*usage)))
            events.append("data: [DONE]\n\n")
        return Reply(events=events, cut=cut)

    @staticmethod
    def error(
        status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None
    ) -> Reply:
        body = {"error": {"message": message, "type": "invalid_request_error", "code": code}}
        return error_reply(status, body, headers)


class AnthropicWire:
    """Messages-API replies in Anthropic's wire format."""

    @staticmethod
    def message(
        text: str = "",
        tool_uses: Iterable[tuple[str, str, dict[str, Any]]] = (),
        stop_reason: str = "end_turn",
        model: str = "claude-haiku-4-5-20251001",
        usage: tuple[int, int, int] = (20, 7, 0),
    ) -> Reply:
        """`tool_uses` are (id, name, input); `usage` is (input, output, cache read)."""
        content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
        content += [
            {"type": "tool_use", "id": id_, "name": name, "input": input_}
            for id_, name, input_ in tool_uses
        ]
        return Reply(
            body={
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": content,
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": AnthropicWire.usage(*usage),
            }
        )

    @staticmethod
    def usage(input_tokens: int, output_tokens: int, cache_read: int = 0) -> dict[str, Any]:
        return {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_read_input_tokens": cache_read,
            "cache_creation_input_tokens": 0,
        }

    @staticmethod
    def stream(
        pieces: Iterable[str],
        stop_reason: str | None = "end_turn",
        usage: tuple[int, int, int] = (20, 7, 0),
        cut: bool = False,
        tool_use: tuple[str, str, list[str]] | None = None,
        model: str = "claude-haiku-4-5-20251001",
    ) -> Reply:
        """Text pieces (and a tool use whose JSON input arrives in `tool_use[2]` pieces),
        then, if `stop_reason`, message_delta and message_stop."""
        input_tokens, output_tokens, cache_read = usage
        start = {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": AnthropicWire.usage(input_tokens, 1, cache_read),
        }
        events = [
            sse({"type": "message_start", "message": start}, "message_start"),
            sse(
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
                "content_block_start",
            ),
            sse({"type": "ping"}, "ping"),
        ]
        events += [
            sse(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": piece},
                },
                "content_block_delta",
            )
            for piece in pieces
        ]
        events.append(sse({"type": "content_block_stop", "index": 0}, "content_block_stop"))
        if tool_use is not None:
            id_, name, parts = tool_use
            events.append(
                sse(
                    {
                        "type": "content_block_start",
                        "index": 1,
                        "content_block": {"type": "tool_use", "id": id_, "name": name, "input": {}},
                    },
                    "content_block_start",
                )
            )
            events += [
                sse(
                    {
                        "type": "content_block_delta",
                        "index": 1,
                        "delta": {"type": "input_json_delta", "partial_json": part},
                    },
                    "content_block_delta",
                )
                for part in parts
            ]
            events.append(sse({"type": "content_block_stop", "index": 1}, "content_block_stop"))
        if stop_reason is not None:
            events.append(
                sse(
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                        "usage": {"output_tokens": output_tokens},
                    },
                    "message_delta",
                )
            )
            events.append(sse({"type": "message_stop"}, "message_stop"))
        return Reply(events=events, cut=cut)

    @staticmethod
    def error(
        status: int,
        message: str,
        error_type: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> Reply:
        body = {"type": "error", "error": {"type": error_type, "message": message}}
        return error_reply(status, body, headers)
