"""The thread pages: the tenant's threads, and a thread as a chat (its messages, the
model's reply streaming in, its branches as buttons, a form to complete it, the run it is
bound to). Reads are the `threads` read model's, as `GET /v1/threads`; writes are the
API's commands (`PostMessage`, `CompleteThread`), keyed by the thread id."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from sse_starlette import EventSourceResponse

from api.http.database import jsonable, read
from api.http.dependencies import Runtime
from api.http.pagination import after, page
from api.http.send import send_run_command
from api.http.streaming import open_stream
from api.http.threads import thread_end
from api.http.ui.pages import (
    DECISION_SECONDS,
    PageRoute,
    form_of,
    outcome,
    render,
    see,
    visitor,
    who,
    writer,
)
from api.http.ui.session import Visitor
from domain.messages import ThreadEvent
from infra.live import Doorbell
from projections import threads

PAGE_SIZE = 25
MESSAGES = 500
"""The messages a thread's page shows (its first ones)."""


def routes(runtime: Runtime) -> APIRouter:
    """`/ui/threads`, a thread's page, its live part and stream, and its commands."""
    router = APIRouter(route_class=PageRoute, include_in_schema=False)
    doorbell = Doorbell(runtime.store, runtime.database_url)

    @router.get("/ui/threads", response_class=HTMLResponse)
    async def thread_list(
        request: Request,
        you: Visitor = Depends(visitor),
        run_id: UUID | None = None,
        cursor: str | None = None,
    ) -> Response:
        keys = ["opened_at", "thread_id"]
        rows = await read(
            runtime, threads.list_threads, you.key.tenant, {"run_id": run_id},
            after(cursor, keys), PAGE_SIZE + 1,
        )  # fmt: skip
        found = page(rows, PAGE_SIZE, keys)
        return render(request, "threads.html", you, **found, run_id=run_id)

    async def context(you: Visitor, thread_id: UUID, command: str | None) -> dict[str, Any]:
        thread = await read(runtime, threads.get_thread, thread_id, you.key.tenant)
        if thread is None:
            raise HTTPException(404, f"no thread {thread_id} (it may still be opening)")
        messages = await read(runtime, threads.thread_messages, thread_id, 0, MESSAGES)
        return {
            "thread": jsonable(thread),
            "messages": jsonable(messages),
            "command": await outcome(runtime, you.key.tenant, command) if command else None,
        }

    @router.get("/ui/threads/{thread_id}", response_class=HTMLResponse)
    async def thread_page(
        request: Request,
        thread_id: UUID,
        you: Visitor = Depends(visitor),
        command: str | None = Query(default=None, max_length=200),
    ) -> Response:
        return render(request, "thread.html", you, **await context(you, thread_id, command))

    @router.get("/ui/threads/{thread_id}/live", response_class=HTMLResponse)
    async def thread_live(
        request: Request,
        thread_id: UUID,
        you: Visitor = Depends(visitor),
        command: str | None = Query(default=None, max_length=200),
    ) -> Response:
        return render(request, "_thread.html", you, **await context(you, thread_id, command))

    @router.get("/ui/threads/{thread_id}/stream")
    async def thread_stream(
        thread_id: UUID,
        you: Visitor = Depends(visitor),
        after_version: int = Query(default=0, ge=0, alias="after"),
    ) -> EventSourceResponse:
        """The thread's stream (`GET /v1/threads/{id}/stream`), for the session cookie."""
        return await open_stream(
            runtime, doorbell, thread_id, you.key, f"{after_version}:0", ThreadEvent.OPENED,
            "thread", thread_end,
        )  # fmt: skip

    @router.post("/ui/threads/{thread_id}/{action}", response_class=HTMLResponse)
    async def act(
        thread_id: UUID,
        action: str,
        you: Visitor = Depends(writer),
        form: dict[str, str] = Depends(form_of),
    ) -> Response:
        """Say something, pick a branch, or complete the thread (with its data as JSON)."""
        if await read(runtime, threads.get_thread, thread_id, you.key.tenant) is None:
            raise HTTPException(404, f"no thread {thread_id}")
        payload: dict[str, Any] = {"thread_id": str(thread_id)}
        if action == "messages":
            command = "PostMessage"
            payload["content"] = form.get("content", "")
            if form.get("branch"):
                payload["branch"] = form["branch"]
        elif action == "complete":
            command = "CompleteThread"
            try:
                payload["data"] = json.loads(form.get("data") or "{}")
            except ValueError:
                raise HTTPException(422, "data: not JSON (write an object, e.g. {})") from None
        else:
            raise HTTPException(404, f"no thread action {action!r}")
        sent = await send_run_command(runtime, who(you), command, payload, str(thread_id))
        await outcome(runtime, you.key.tenant, sent.command_id, DECISION_SECONDS)
        return see(f"/ui/threads/{thread_id}?command={sent.command_id}")

    return router
