"""Chat threads over HTTP: reads of the `threads` read model, the thread commands, and a
thread's live stream.

Reads follow `GET /v1/runs`: the caller's tenant only (another tenant's thread is 404),
cursor pagination with `next_cursor`. Writes publish `OpenThread`, `PostMessage` and
`CompleteThread` to `heddle.commands`, keyed by the thread id (a thread's messages keep
their order), and answer 202 with the command id. `GET /v1/threads/{id}/stream` is the
run stream's twin (api/streams.py): the thread's events and the token deltas of its
replies, resumable with `Last-Event-ID`, ending with `end` once the thread is completed.
"""

from __future__ import annotations

import json
import uuid
from functools import partial
from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Header, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette import EventSourceResponse

from api.app import Accepted, Caller, caller, fetch_rows
from api.projections_api import consistent_reads
from api.reads import _decode, _page
from api.streams import open_stream
from domain.commands import CommandEnvelope
from domain.tenants import NO_AI, settings_id
from handlers.unit_of_work import UnitOfWork
from infra.runtime import Heddle
from infra.live import Doorbell
from infra.store import dumps
from projections.threads import MESSAGE_FIELDS, THREAD_FIELDS


class OpenThreadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    thread_id: UUID | None = None
    title: str = Field(default="", max_length=500)
    workflow: str | None = Field(default=None, min_length=1, max_length=128)


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: str = Field(default="", max_length=100_000)
    branch: str | None = Field(default=None, min_length=1, max_length=64)


class CompleteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: dict[str, Any] = Field(default_factory=dict)


class ThreadAccepted(BaseModel):
    command_id: str
    status: str = "pending"
    thread_id: str


def thread_end(thread_id: UUID, envelope: dict[str, Any]) -> dict[str, Any] | None:
    """The `end` message's data when the event completes the thread."""
    if envelope["type"] != "Thread.Completed":
        return None
    return {
        "thread_id": str(thread_id),
        "status": "completed",
        "outcome": envelope["data"]["outcome"],
        "version": envelope["aggregate_version"],
        "position": envelope["position"],
    }


def thread_routes(heddle: Heddle) -> APIRouter:
    router = APIRouter(tags=["threads"], dependencies=[Depends(consistent_reads(heddle))])
    doorbell = Doorbell(heddle.store, heddle.database_url)

    fetch = partial(fetch_rows, heddle)

    async def send(
        who: Caller, type_: str, thread_id: UUID, payload: dict[str, Any]
    ) -> ThreadAccepted:
        envelope = CommandEnvelope(
            command_id=str(uuid.uuid4()), type=type_, tenant=who.tenant, actor=who.actor,
            payload={**payload, "thread_id": str(thread_id)},
        )  # fmt: skip
        await heddle.send_command(envelope, str(thread_id))
        return ThreadAccepted(command_id=envelope.command_id, thread_id=str(thread_id))

    async def thread_row(thread_id: UUID, who: Caller) -> dict[str, Any]:
        rows = await fetch(
            f"SELECT {', '.join(THREAD_FIELDS)} FROM threads WHERE thread_id = %s AND tenant = %s",
            [thread_id, who.tenant],
        )
        if not rows:
            raise HTTPException(
                404, f"no thread {thread_id} (it may still be opening: retry shortly)"
            )
        return rows[0]

    @router.get("/v1/threads")
    async def list_threads(
        who: Caller = Depends(caller),
        run_id: UUID | None = Query(default=None, description="the threads of one run"),
        status: Literal["open", "completed"] | None = None,
        limit: int = Query(default=50, ge=1, le=500),
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Threads, newest first, with cursor pagination (`next_cursor`)."""
        where, params = ["tenant = %s"], [who.tenant]
        for column, value in (("run_id", run_id), ("status", status)):
            if value is not None:
                where.append(f"{column} = %s")
                params.append(value)
        if cursor:
            where.append("(opened_at, thread_id) < (%s, %s)")
            params += _decode(cursor, ["opened_at", "thread_id"])
        rows = await fetch(
            f"SELECT {', '.join(THREAD_FIELDS)} FROM threads WHERE {' AND '.join(where)}"
            " ORDER BY opened_at DESC, thread_id DESC LIMIT %s",
            [*params, limit + 1],
        )
        return _page(rows, limit, ["opened_at", "thread_id"])

    @router.get("/v1/threads/{thread_id}")
    async def get_thread(thread_id: UUID, who: Caller = Depends(caller)) -> dict[str, Any]:
        """A thread: status, binding (run, node, attempt), branches, counts and output."""
        return json.loads(dumps(await thread_row(thread_id, who)))  # type: ignore[no-any-return]

    @router.get("/v1/threads/{thread_id}/messages")
    async def thread_messages(
        thread_id: UUID,
        who: Caller = Depends(caller),
        limit: int = Query(default=100, ge=1, le=500),
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """The thread's messages in order, with cursor pagination (`next_cursor`)."""
        await thread_row(thread_id, who)
        [after] = _decode(cursor, ["seq"]) if cursor else [0]
        rows = await fetch(
            f"SELECT {', '.join(MESSAGE_FIELDS)} FROM thread_messages"
            " WHERE thread_id = %s AND seq > %s ORDER BY seq LIMIT %s",
            [thread_id, after, limit + 1],
        )
        return _page(rows, limit, ["seq"])

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

    @router.get("/v1/threads/{thread_id}/stream", response_class=EventSourceResponse)
    async def stream_thread(
        thread_id: UUID,
        who: Caller = Depends(caller),
        last_event_id: str | None = Header(default=None, max_length=40),
    ) -> EventSourceResponse:
        """The thread's events (`event`: messages, reply requests, ...) and the token deltas
        of its replies (`token`) as they happen, then `end` once it is completed. Reconnect
        with `Last-Event-ID` to resume after the last message received."""
        return await open_stream(
            heddle, doorbell, thread_id, who.tenant, last_event_id, "Thread.Opened", "thread",
            thread_end,
        )  # fmt: skip

    return router


class TenantAiIn(BaseModel):
    """The payload of `ConfigureTenant`."""

    model_config = ConfigDict(extra="forbid")

    ai_mode: Literal["simple", "orchestrator"] = "simple"
    model: str | None = None
    system: str | None = None
    tools: list[str] = Field(default_factory=list)
    temperature: float | None = None
    max_tokens: int | None = None
    max_steps: int = 8
    credential: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)


def tenant_routes(heddle: Heddle) -> APIRouter:
    """The caller's tenant's AI mode (admin scope): how its free threads are answered."""
    router = APIRouter(tags=["tenant"])

    @router.get("/v1/tenant/ai")
    async def get_ai_mode(who: Caller = Depends(caller)) -> dict[str, Any]:
        """The tenant's AI mode and its configuration (`model: null`: no AI replies)."""
        settings = await heddle.writer.run(UnitOfWork(heddle.store).get, settings_id(who.tenant))
        ai = settings.ai if settings is not None else NO_AI
        return {"tenant": who.tenant, **ai}

    @router.put("/v1/tenant/ai", status_code=202, response_model=Accepted)
    async def configure(body: TenantAiIn, who: Caller = Depends(caller)) -> Accepted:
        """Set the tenant's AI mode (`ConfigureTenant`); threads opened later use it."""
        envelope = CommandEnvelope(
            command_id=str(uuid.uuid4()), type="ConfigureTenant", tenant=who.tenant,
            actor=who.actor, payload=body.model_dump(exclude_none=True),
        )  # fmt: skip
        await heddle.send_command(envelope, f"tenant/{who.tenant}")
        return Accepted(command_id=envelope.command_id)

    return router
