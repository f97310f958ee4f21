"""Replay routes: a run's state at any event, two runs compared, histories exported and
imported. Reads come from the event store alone (never the read models), so they show
what the events say even while a projection lags or is being rebuilt.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Body, Depends, HTTPException, Query
from pydantic import Field

from api.http.database import Answer, Timestamp, json_object, jsonable
from api.http.dependencies import Caller, Runtime, api_key, caller
from api.http.problems import errors
from api.http.redaction import shown_to
from api.http.send import Accepted, send_run_command
from domain.messages import Event, RunEvent
from handlers.replay import (
    ReplayError,
    RunExists,
    choose_version,
    diff_runs,
    export_history,
    import_history,
    load_run,
    replay_view,
    run_state,
    tenant_of,
)
from infra.keys import ApiKey
from projections.run_timeline import summarize


class RunDiff(Answer):
    """Where two runs diverge."""

    a: str
    b: str
    same: bool
    first_divergence: dict[str, Any] | None = Field(description="`{node, differs}`")
    nodes: dict[str, Any] = Field(description="each node's differences, by node id")
    run: dict[str, Any] = Field(description="the run-level fields of each run, side by side")


class Point(Answer):
    """The event a state is shown after."""

    version: int
    position: int
    timestamp: Timestamp
    type: str
    summary: str


class RunState(Answer):
    """A run as it stood after one of its events, with its timeline."""

    run_id: str
    at: Point
    last_version: int
    state: dict[str, Any] = Field(description="the run rebuilt from its events up to `at`")
    timeline: list[dict[str, Any]] = Field(description="every event, `current` at `at`")


class History(Answer):
    """A run's history as a portable document (docs/replay.md)."""

    format: str
    run_id: str
    tenant: str
    workflow: str
    workflow_version: int
    content_hash: str
    status: str
    event_count: int
    events: list[dict[str, Any]] = Field(description="`{type, version, timestamp, data}`")


class Imported(Answer):
    """A history loaded as a run."""

    run_id: str
    imported_from: str
    status: str
    events: int


def routes(runtime: Runtime) -> APIRouter:
    """The replay routes of one Heddle (include before the `/v1/runs/{id}` routes)."""
    router = APIRouter(tags=["replay"])
    _add_reads(router, runtime)
    _add_writes(router, runtime)
    return router


async def events_of(runtime: Runtime, run_id: UUID, tenant: str) -> list[Event]:
    """The run's events as JSON, straight from the store; 404 unless it is a run of the
    tenant (a thread's or the tenant settings' events are no run's)."""
    events = await asyncio.to_thread(runtime.store.aggregate_events, run_id)
    if tenant_of(events) != tenant or events[0]["type"] != RunEvent.STARTED:
        raise HTTPException(404, f"no run {run_id}")
    found: list[Event] = jsonable(events)
    return found


def _add_reads(router: APIRouter, runtime: Runtime) -> None:
    """A run's state at a point, two runs compared, a history exported."""

    @router.get("/v1/runs/diff", response_model=RunDiff, responses=errors(404), name="diff_runs")
    async def diff(
        a: UUID = Query(description="a run id"),
        b: UUID = Query(description="the run id to compare it with"),
        key: ApiKey = Depends(api_key),
    ) -> dict[str, Any]:
        """Where two runs diverge, node by node (status, recorded request, output, tokens,
        cost, latency), the first divergent node, and run-level differences."""
        events_a, events_b = await asyncio.gather(
            events_of(runtime, a, key.tenant), events_of(runtime, b, key.tenant)
        )
        run_a, run_b = await asyncio.gather(
            asyncio.to_thread(load_run, runtime.store, a),
            asyncio.to_thread(load_run, runtime.store, b),
        )
        diff = diff_runs(events_a, run_state(run_a), events_b, run_state(run_b))
        return shown_to(key, events_a[0], shown_to(key, events_b[0], json_object(diff)))

    @router.get("/v1/runs/{run_id}/state", response_model=RunState, responses=errors(404))
    async def get_run_state(
        run_id: UUID,
        key: ApiKey = Depends(api_key),
        at: int | None = Query(default=None, ge=1, description="after the run's Nth event"),
        at_position: int | None = Query(default=None, ge=0, description="a global store position"),
        at_node: str | None = Query(default=None, description="right after this node ended"),
    ) -> dict[str, Any]:
        """The run as it stood after one of its events (the latest without a point),
        rebuilt from the event store, with its timeline and the point marked."""
        events = await events_of(runtime, run_id, key.tenant)
        try:
            version = choose_version(events, at=at, at_position=at_position, at_node=at_node)
        except ReplayError as error:
            raise HTTPException(422, str(error)) from None
        run = await asyncio.to_thread(load_run, runtime.store, run_id, version)
        return shown_to(key, events[0], json_object(replay_view(events, run, summarize)))

    @router.get("/v1/runs/{run_id}/export", response_model=History, responses=errors(404))
    async def export_run(run_id: UUID, key: ApiKey = Depends(api_key)) -> dict[str, Any]:
        """The run's history as a portable JSON document (see docs/replay.md)."""
        events = await events_of(runtime, run_id, key.tenant)
        return shown_to(key, events[0], export_history(events))


def _add_writes(router: APIRouter, runtime: Runtime) -> None:
    """A history imported, a run forked, a running run's graph edited."""

    @router.post("/v1/runs/import", status_code=201, response_model=Imported, responses=errors(409))
    async def import_run(
        document: dict[str, Any] = Body(description="a history from /v1/runs/{id}/export"),
        keep_id: bool = Query(default=False, description="keep the history's run id"),
        who: Caller = Depends(caller),
    ) -> dict[str, Any]:
        """Load a finished run's history into this store, into the caller's tenant, as a
        new run id unless `keep_id`. A history that does not replay is refused (422)."""
        original = str(document.get("run_id", ""))
        try:
            run_id = UUID(original) if keep_id else uuid.uuid4()
        except ValueError:
            reason = f"keep_id: the history's run_id {original!r} is not a UUID"
            raise HTTPException(422, reason) from None

        def load() -> dict[str, Any]:
            run = import_history(document, runtime.store, run_id, tenant=who.tenant)
            return {
                "run_id": str(run.id),
                "imported_from": original,
                "status": run.status,
                "events": run.version,
            }

        try:
            return await runtime.writer.run(load)
        except RunExists as error:
            raise HTTPException(409, str(error)) from None
        except ReplayError as error:
            raise HTTPException(422, str(error)) from None

    @router.post("/v1/runs/{run_id}/fork", status_code=202, response_model=Accepted)
    async def fork_run(
        run_id: UUID,
        body: dict[str, Any] = Body(
            description="the `ForkRun` payload without `source_run_id` (docs/commands.md)",
            examples=[{"from_node": "greet", "mode": "recorded", "prompts": {"greet": "Hi"}}],
        ),
        who: Caller = Depends(caller),
    ) -> Accepted:
        """Fork a run from a node: publishes a `ForkRun` command; the new run's id is in
        the answer, its outcome at /v1/commands/{command_id}."""
        new_run = str(body.get("run_id") or uuid.uuid4())
        payload = {**body, "source_run_id": str(run_id), "run_id": new_run}
        return await send_run_command(runtime, who, "ForkRun", payload, new_run)

    @router.post("/v1/runs/{run_id}/edits", status_code=202, response_model=Accepted)
    async def edit_run(
        run_id: UUID,
        body: dict[str, Any] = Body(
            description="`{edits, reason}`: the `EditGraph` payload without `run_id`",
        ),
        who: Caller = Depends(caller),
    ) -> Accepted:
        """Edit a running run's graph: publishes an `EditGraph` command; whether the edits
        applied (or why not) is at /v1/commands/{command_id}."""
        return await send_run_command(
            runtime, who, "EditGraph", {**body, "run_id": str(run_id)}, str(run_id)
        )
