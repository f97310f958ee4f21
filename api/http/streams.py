"""`GET /v1/runs/{id}/stream`: a run's events and token deltas as server-sent events,
resumable with `Last-Event-ID`, ending with `end` once the run has finished (the stream
itself is `api/http/streaming.py`)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header
from sse_starlette import EventSourceResponse

from api.http.dependencies import Runtime, api_key
from api.http.streaming import STREAM_RESPONSES, open_stream
from domain.messages import Event, RunEvent
from domain.runs import TERMINAL_STATUSES
from infra.keys import ApiKey
from infra.live import Doorbell


def routes(runtime: Runtime) -> APIRouter:
    """`GET /v1/runs/{run_id}/stream`."""
    router = APIRouter(tags=["runs"])
    doorbell = Doorbell(runtime.store, runtime.database_url)

    @router.get(
        "/v1/runs/{run_id}/stream", response_class=EventSourceResponse, responses=STREAM_RESPONSES
    )
    async def stream_run(
        run_id: UUID,
        key: ApiKey = Depends(api_key),
        last_event_id: str | None = Header(default=None, max_length=40),
    ) -> EventSourceResponse:
        """The run's events (`event`) and token deltas (`token`) as they happen, then `end`.
        Reconnect with `Last-Event-ID` to resume after the last message received."""
        return await open_stream(
            runtime, doorbell, run_id, key, last_event_id, RunEvent.STARTED, "run",
            run_end,
        )  # fmt: skip

    return router


def end_of(run_id: UUID, envelope: Event) -> dict[str, Any]:
    """The data of the `end` message, for the event that ended the run."""
    return {
        "run_id": str(run_id),
        "status": ending(envelope),
        "version": envelope["aggregate_version"],
        "position": envelope["position"],
    }


def ending(envelope: Event) -> str | None:
    """The run's final status if this event ends it."""
    kind = envelope["type"].removeprefix("WorkflowRun.").lower()
    return kind if kind in TERMINAL_STATUSES else None


def run_end(run_id: UUID, envelope: Event) -> dict[str, Any] | None:
    """The `end` message's data when the event ends the run."""
    return end_of(run_id, envelope) if ending(envelope) else None
