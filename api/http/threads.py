"""Chat threads over HTTP: reads of the `threads` read model, the thread commands, and a
thread's live stream.

Reads follow `GET /v1/runs`: the caller's tenant only (another tenant's thread is 404),
cursor pagination with `next_cursor`. Writes publish `OpenThread`, `PostMessage` and
`CompleteThread` to `heddle.commands`, keyed by the thread id (a thread's messages keep
their order), and answer 202 with the command id. `GET /v1/threads/{id}/stream` is the
run stream's twin (api/http/streams.py): the thread's events and the token deltas of its
replies, resumable with `Last-Event-ID`, ending with `end` once the thread is completed.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Header, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse

from api.http.consistency import consistent_reads
from api.http.database import Answer, Timestamp, json_object, read
from api.http.dependencies import Caller, Runtime, api_key, caller
from api.http.pagination import Page, after, page
from api.http.problems import errors
from api.http.send import send_command
from api.http.streaming import STREAM_RESPONSES, open_stream
from domain.messages import Event, ThreadEvent
from infra.keys import ApiKey
from infra.live import Doorbell
from projections import threads


class OpenThreadIn(BaseModel):
    """The payload of `OpenThread`; the thread id is optional."""

    model_config = ConfigDict(extra="forbid")

    thread_id: UUID | None = None
    title: str = Field(default="", max_length=500)
    workflow: str | None = Field(default=None, min_length=1, max_length=128)


class MessageIn(BaseModel):
    """The payload of `PostMessage` without the thread id (it is in the route)."""

    model_config = ConfigDict(extra="forbid")

    content: str = Field(default="", max_length=100_000)
    branch: str | None = Field(default=None, min_length=1, max_length=64)


class CompleteIn(BaseModel):
    """The payload of `CompleteThread`: data kept with the thread."""

    model_config = ConfigDict(extra="forbid")

    data: dict[str, Any] = Field(default_factory=dict)


class ThreadAccepted(BaseModel):
    """The answer to a thread command sent: its id and the thread's."""

    command_id: str
    status: str = "pending"
    thread_id: str


class ThreadRow(Answer):
    """A thread: status, binding (run, node, attempt), branches, counts and output."""

    thread_id: str
    title: str
    status: str = Field(description="open | completed")
    outcome: str | None
    replies: str = Field(description="who answers the thread's messages")
    workflow: str | None
    run_id: str | None = Field(description="the run of the `chat` node it is bound to")
    node_id: str | None
    attempt: int | None
    branches: dict[str, Any]
    messages: int
    pending_replies: int
    last_error: Any
    output: Any
    opened_by: str
    opened_at: Timestamp
    updated_at: Timestamp
    completed_at: Timestamp | None
    version: int
    position: int


class Message(Answer):
    """A message of a thread."""

    seq: int
    message_id: str
    role: str
    content: str
    author: str
    branch: str | None
    reply_to: str | None
    provider: str | None
    model: str | None
    usage: dict[str, Any] | None
    cost_usd: float | None
    source: Any
    posted_at: Timestamp
    position: int


def thread_end(thread_id: UUID, envelope: Event) -> dict[str, Any] | None:
    """The `end` message's data when the event completes the thread."""
    if envelope["type"] != ThreadEvent.COMPLETED:
        return None
    return {
        "thread_id": str(thread_id),
        "status": "completed",
        "outcome": envelope["data"]["outcome"],
        "version": envelope["aggregate_version"],
        "position": envelope["position"],
    }


def routes(runtime: Runtime) -> APIRouter:
    """The thread routes: reads, commands and the live stream."""
    router = APIRouter(tags=["threads"], dependencies=[Depends(consistent_reads(runtime))])
    doorbell = Doorbell(runtime.store, runtime.database_url)

    async def send(
        who: Caller, type_: str, thread_id: UUID, payload: dict[str, Any]
    ) -> ThreadAccepted:
        key = str(thread_id)
        command_id = await send_command(runtime, who, type_, {**payload, "thread_id": key}, key)
        return ThreadAccepted(command_id=command_id, thread_id=key)

    async def thread_row(thread_id: UUID, who: Caller) -> dict[str, Any]:
        found = await read(runtime, threads.get_thread, thread_id, who.tenant)
        if found is None:
            raise HTTPException(
                404, f"no thread {thread_id} (it may still be opening: retry shortly)"
            )
        return found

    @router.get("/v1/threads", response_model=Page[ThreadRow], responses=errors(400))
    async def list_threads(
        who: Caller = Depends(caller),
        run_id: UUID | None = Query(default=None, description="the threads of one run"),
        status: Literal["open", "completed"] | None = None,
        limit: int = Query(default=50, ge=1, le=500),
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Threads, newest first, with cursor pagination (`next_cursor`)."""
        keys = ["opened_at", "thread_id"]
        filters = {"run_id": run_id, "status": status}
        rows = await read(
            runtime, threads.list_threads, who.tenant, filters, after(cursor, keys), limit + 1
        )
        return page(rows, limit, keys)

    @router.get("/v1/threads/{thread_id}", response_model=ThreadRow, responses=errors(404))
    async def get_thread(thread_id: UUID, who: Caller = Depends(caller)) -> dict[str, Any]:
        """A thread: status, binding (run, node, attempt), branches, counts and output."""
        return json_object(await thread_row(thread_id, who))

    @router.get(
        "/v1/threads/{thread_id}/messages", response_model=Page[Message],
        responses=errors(400, 404),
    )  # fmt: skip
    async def list_thread_messages(
        thread_id: UUID,
        who: Caller = Depends(caller),
        limit: int = Query(default=100, ge=1, le=500),
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """The thread's messages in order, with cursor pagination (`next_cursor`)."""
        await thread_row(thread_id, who)
        [seq] = after(cursor, ["seq"]) or [0]
        rows = await read(runtime, threads.thread_messages, thread_id, seq, limit + 1)
        return page(rows, limit, ["seq"])

    @router.post("/v1/threads", status_code=202, response_model=ThreadAccepted)
    async def open_thread(body: OpenThreadIn, who: Caller = Depends(caller)) -> ThreadAccepted:
        """Open a thread (`OpenThread`) with a fresh id unless one is given."""
        thread_id = body.thread_id or uuid.uuid4()
        return await send(
            who, "OpenThread", thread_id, body.model_dump(exclude_none=True, exclude={"thread_id"})
        )

    @router.post("/v1/threads/{thread_id}/messages", status_code=202, response_model=ThreadAccepted)
    async def post_message(
        thread_id: UUID, body: MessageIn, who: Caller = Depends(caller)
    ) -> ThreadAccepted:
        """Post a message (`PostMessage`); with `branch`, pick one of the thread's branches."""
        return await send(who, "PostMessage", thread_id, body.model_dump(exclude_none=True))

    @router.post("/v1/threads/{thread_id}/complete", status_code=202, response_model=ThreadAccepted)
    async def complete_thread(
        thread_id: UUID, body: CompleteIn, who: Caller = Depends(caller)
    ) -> ThreadAccepted:
        """Complete the thread (`CompleteThread`); a chat node's run moves on."""
        return await send(who, "CompleteThread", thread_id, body.model_dump())

    @router.get(
        "/v1/threads/{thread_id}/stream", response_class=EventSourceResponse,
        responses=STREAM_RESPONSES,
    )  # fmt: skip
    async def stream_thread(
        thread_id: UUID,
        key: ApiKey = Depends(api_key),
        last_event_id: str | None = Header(default=None, max_length=40),
    ) -> EventSourceResponse:
        """The thread's events (`event`: messages, reply requests, ...) and the token deltas
        of its replies (`token`) as they happen, then `end` once it is completed. Reconnect
        with `Last-Event-ID` to resume after the last message received."""
        return await open_stream(
            runtime, doorbell, thread_id, key, last_event_id, ThreadEvent.OPENED, "thread",
            thread_end,
        )  # fmt: skip

    return router
