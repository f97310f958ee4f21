"""An aggregate's live stream (a run's, a thread's): its events and token deltas as
server-sent events.

Every message's id is a cursor, `<version>:<offset>`: the run's events up to aggregate
version `version` and its token deltas before Kafka offset `offset` (of the run's
partition of `heddle.tokens`) have been sent. A client that reconnects with it in
`Last-Event-ID` gets exactly what came after: events from the store by version, deltas
from Kafka by offset, so nothing is missed or repeated. The stream ends with an `end`
message once the run has finished and its last deltas are sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID

import anyio
from fastapi import HTTPException
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.http.dependencies import Runtime
from api.http.problems import errors
from api.http.redaction import shown_to
from domain.messages import Event
from infra.keys import ApiKey
from infra.live import Doorbell, RunTokens, events_after, first_and_last_event
from infra.store import dumps

log = logging.getLogger("heddle.streams")
STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "server-sent events: `event`, `token`, then `end`",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
    **errors(400, 404),
}
"""The answers of a stream route, for its OpenAPI document."""
CURSOR = re.compile(r"^(\d{1,12}):(\d{1,18})$")
TOKEN_LATENESS = 0.25
"""Seconds to wait, once a run has ended, for deltas published just before its end."""
REREAD_SECONDS = 5.0
"""Look at the store this often even when the doorbell stays silent."""
TOKENS_BEFORE_START = timedelta(minutes=1)
"""Read deltas from this long before the run started (clocks of two machines differ)."""


async def open_stream(
    runtime: Runtime,
    doorbell: Doorbell,
    aggregate_id: UUID,
    key: ApiKey,
    last_event_id: str | None,
    opened: str,
    noun: str,
    ends: Ends,
) -> EventSourceResponse:
    """The stream of the aggregate whose first event is `opened` (a run, a thread) for
    the tenant of `key` (its events as the key may see them: api/http/redaction.py), until
    an event `ends` it: 404 for none or another tenant's, 400 for a bad `Last-Event-ID`."""
    version, offset = parse_cursor(last_event_id)
    found = await first_and_last_event(runtime.store, runtime.reads, aggregate_id)
    if found is None or found[0]["type"] != opened or found[0]["data"].get("tenant") != key.tenant:
        raise HTTPException(
            404, f"no {noun} {aggregate_id} (it may still be starting: retry shortly)"
        )
    first, latest = found
    if version > latest["aggregate_version"]:
        raise HTTPException(
            400,
            f"Last-Event-ID {last_event_id!r} is ahead of {noun} {aggregate_id}: "
            "pass the id of a message this stream sent",
        )
    started = datetime.fromisoformat(first["timestamp"]) - TOKENS_BEFORE_START
    shown = partial(shown_to, key, first)
    messages = _messages(
        runtime, doorbell, aggregate_id, version, offset, started, latest, ends, shown
    )
    return EventSourceResponse(messages, ping=15)


def parse_cursor(value: str | None) -> tuple[int, int]:
    """The (version, offset) of a `Last-Event-ID`, (0, 0) without one; 400 for a bad one."""
    if value is None:
        return 0, 0
    match = CURSOR.match(value.strip())
    if match is None:
        raise HTTPException(
            400,
            f"Last-Event-ID {value!r} is not an id of this stream: expect <version>:<offset>, "
            "as in the `id` of the last message received (e.g. 12:340)",
        )
    return int(match[1]), int(match[2])


Ends = Callable[[UUID, Event], dict[str, Any] | None]
"""The data of the `end` message if this event ends the stream, else None."""


@dataclass
class _TokenProgress:
    offset: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    moved: asyncio.Event = field(default_factory=asyncio.Event)
    alive: bool = True


async def _messages(
    runtime: Runtime,
    doorbell: Doorbell,
    run_id: UUID,
    version: int,
    offset: int,
    started: datetime,
    latest: Event,
    ends: Ends,
    shown: Callable[[Event], Event],
) -> AsyncIterator[ServerSentEvent]:
    """The stream of one aggregate (a run, a thread): its events from the store and the
    deltas keyed by its id, from `version` and `offset`, until an event `ends` it."""
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=1000)
    tokens = RunTokens(runtime.settings, runtime.topics.tokens, run_id)
    progress = _TokenProgress()

    async def follow_tokens(offset: int) -> None:
        try:
            await tokens.start(offset, int(started.timestamp() * 1000))
            progress.ready.set()
            while True:
                deltas, progress.offset = await tokens.read(timeout_ms=200)
                for delta in deltas:
                    await queue.put(("token", delta))
                progress.moved.set()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the deltas are a live view: the events go on
            log.warning("no token deltas for run %s: %r", run_id, error)
        finally:
            progress.alive = False
            progress.ready.set()
            progress.moved.set()

    async def tokens_caught_up() -> None:
        """Wait until the deltas published so far are queued, so that a model call's
        deltas come before the event that records its answer (a slow Kafka costs order,
        never events)."""
        with contextlib.suppress(TimeoutError, Exception):
            async with asyncio.timeout(5.0):
                await progress.ready.wait()
                end = await tokens.end_offset() if progress.alive else 0
                while progress.alive and progress.offset < end:
                    progress.moved.clear()
                    await progress.moved.wait()

    async def follow_events(bell: asyncio.Event, seen: int) -> None:
        last = ends(run_id, latest)
        ended = (latest, last) if last is not None else None
        while True:
            bell.clear()
            batch = await events_after(runtime.store, runtime.reads, run_id, seen)
            if batch:
                await tokens_caught_up()
            for envelope in batch:
                seen = envelope["aggregate_version"]
                await queue.put(("event", envelope))
                end = ends(run_id, envelope)
                if end is not None:
                    ended = (envelope, end)
            if ended is not None and seen >= ended[0]["aggregate_version"]:
                await asyncio.sleep(TOKEN_LATENESS)
                await tokens_caught_up()
                await queue.put(("end", ended[1]))
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(bell.wait(), REREAD_SECONDS)

    async with doorbell.watch(run_id) as bell:
        tasks = [
            asyncio.create_task(follow_events(bell, version)),
            asyncio.create_task(follow_tokens(offset)),
        ]
        try:
            while True:
                kind, item = await queue.get()
                if kind == "token":
                    offset = item[0] + 1
                    yield ServerSentEvent(item[1].decode(), event="token", id=f"{version}:{offset}")
                elif kind == "event":
                    version = item["aggregate_version"]
                    yield ServerSentEvent(
                        dumps(shown(item)).decode(), event="event", id=f"{version}:{offset}"
                    )
                else:
                    yield ServerSentEvent(
                        dumps(item).decode(), event="end", id=f"{version}:{offset}"
                    )
                    return
        finally:
            # A client that hangs up cancels this generator: clean up all the same.
            with anyio.CancelScope(shield=True):
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                with contextlib.suppress(Exception):
                    await tokens.stop()
