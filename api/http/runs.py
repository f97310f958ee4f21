"""Runs over HTTP: start one, list them, read one (its state, events and attempts), and
steer it (`PauseRun`, `ResumeRun`, `CancelRun`, `SetVariables`; docs/commands.md).

Reads follow one pattern: the caller's tenant only (another tenant's run is 404), cursor
pagination with `next_cursor`, 400 for a bad cursor, 422 for a bad parameter.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from api.http.consistency import consistent_reads
from api.http.database import Answer, Timestamp, json_object, read
from api.http.dependencies import Caller, Runtime, api_key, caller
from api.http.pagination import Page, after, page, run_not_found, run_page
from api.http.problems import errors
from api.http.redaction import hides_run, shown_to, without_system_prompts
from api.http.replay import events_of
from api.http.send import Accepted, send_command, send_run_command, snake_case
from domain.customers import CUSTOMER_ID
from infra.keys import ApiKey
from projections import node_attempts, run_history

RUN_STATUSES = ("pending", "running", "paused", "waiting", "completed", "failed", "cancelled")
ATTEMPT_STATUSES = Literal["running", "completed", "failed", "retried", "skipped", "cancelled"]
CONTROLS = {
    "pause": "PauseRun",
    "resume": "ResumeRun",
    "cancel": "CancelRun",
    "complete": "CompleteRun",
    "variables": "SetVariables",
}
"""The commands that steer a run, by the last segment of their route."""


class StartRunIn(BaseModel):
    """The payload of `StartRun` without its command envelope; the run id is optional."""

    model_config = ConfigDict(extra="forbid")

    workflow: str = Field(min_length=1, max_length=128)
    version: int | None = Field(default=None, ge=1)
    run_id: UUID | None = None
    input: dict[str, Any] = Field(default_factory=dict)
    customer_id: str | None = Field(default=None, pattern=CUSTOMER_ID, description="for whom")
    assignee: str | None = Field(default=None, max_length=200, description="who works on it")
    priority: float | None = None


class RunSummary(Answer):
    """A run as `GET /v1/runs` lists it."""

    run_id: str
    workflow: str
    workflow_version: int
    status: str = Field(description=" | ".join(RUN_STATUSES))
    started_at: Timestamp
    updated_at: Timestamp
    finished_at: Timestamp | None
    usage: dict[str, Any] = Field(description="tokens, cost and model calls so far")
    parent_run_id: str | None = Field(description="the run that started it as a subworkflow")
    customer_id: str | None = Field(description="the customer it was started for (a queue item)")
    assignee: str | None = Field(description="the person it is bound to")
    priority: float | None = Field(description="the score of the queue item that started it")


class Run(RunSummary):
    """A run: its status, node states, variables, output, error and usage."""

    tenant: str
    input: dict[str, Any]
    variables: dict[str, Any]
    nodes: dict[str, Any] = Field(description="each node's state, by node id")
    output: Any
    error: Any
    started_by: str
    command_id: str | None
    version: int = Field(description="the run's latest event (its aggregate version)")
    position: int = Field(description="the store position of that event")


class StoredEvent(Answer):
    """An event as the store holds it (`domain.messages.Event`, the wire type)."""

    id: str
    position: int
    type: str
    aggregate_type: str
    aggregate_id: str
    aggregate_version: int
    timestamp: Timestamp
    data: dict[str, Any]
    metadata: dict[str, str] = Field(
        default_factory=dict,
        description="correlation_id, causation_id and traceparent, where known (docs/commands.md)",
    )


class RunEvents(Answer):
    """A run's events, in order."""

    run_id: str
    events: list[StoredEvent]


class Attempt(Answer):
    """One attempt of a node (or a map item or agent step of it)."""

    node_id: str
    attempt: int
    item: int | None
    step: int | None
    kind: str
    status: str
    request: dict[str, Any] | None = Field(description="the recorded request to the model")
    response: str | None
    tool_calls: list[Any]
    output: Any
    provider: str | None
    model: str | None
    finish_reason: str | None
    usage: dict[str, Any]
    latency_ms: float
    replayed: bool
    failed_tries: int
    error: Any
    started_at: Timestamp
    finished_at: Timestamp | None
    position: int


def routes(runtime: Runtime) -> APIRouter:
    """The run routes (include after the replay routes: `/v1/runs/diff` is not a run id)."""
    router = APIRouter(tags=["runs"])
    reads = [Depends(consistent_reads(runtime))]

    @router.post("/v1/runs", status_code=202, response_model=Accepted, dependencies=reads)
    async def start_run(body: StartRunIn, who: Caller = Depends(caller)) -> Accepted:
        """Start a run: publishes a `StartRun` command with a fresh run id."""
        run_id = str(body.run_id or uuid.uuid4())
        payload = {**body.model_dump(mode="json", exclude_none=True), "run_id": run_id}
        command_id = await send_command(runtime, who, "StartRun", payload, run_id)
        return Accepted(command_id=command_id, run_id=run_id)

    @router.get(
        "/v1/runs", response_model=Page[RunSummary], responses=errors(400), dependencies=reads
    )
    async def list_runs(
        who: Caller = Depends(caller),
        status: str | None = Query(default=None, pattern="^(" + "|".join(RUN_STATUSES) + ")$"),
        workflow: str | None = None,
        parent: UUID | None = Query(default=None, description="only the child runs of this run"),
        customer_id: str | None = Query(default=None, description="only the runs for a customer"),
        assignee: str | None = Query(default=None, description="only the runs of one person"),
        limit: int = Query(default=50, ge=1, le=500),
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Runs, newest first, with cursor pagination (`next_cursor`)."""
        keys = ["started_at", "run_id"]
        filters = {
            "status": status or None, "workflow": workflow or None, "parent_run_id": parent,
            "customer_id": customer_id, "assignee": assignee,
        }  # fmt: skip
        rows = await read(
            runtime, run_history.list_runs, who.tenant, filters, after(cursor, keys), limit + 1
        )
        return page(rows, limit, keys)

    @router.get("/v1/runs/{run_id}", response_model=Run, responses=errors(404), dependencies=reads)
    async def get_run(run_id: UUID, who: Caller = Depends(caller)) -> dict[str, Any]:
        """A run's status, node states, variables, output, error and usage."""
        run = await read(runtime, run_history.get_run, run_id, who.tenant)
        if run is None:
            raise run_not_found(run_id)
        return json_object(run)

    @router.get(
        "/v1/runs/{run_id}/events", response_model=RunEvents, responses=errors(404),
        dependencies=reads,
    )  # fmt: skip
    async def list_run_events(run_id: UUID, key: ApiKey = Depends(api_key)) -> dict[str, Any]:
        """The run's events as stored: the source of truth, in order."""
        events = await events_of(runtime, run_id, key.tenant)
        return {"run_id": str(run_id), "events": shown_to(key, events[0], events)}

    @router.get(
        "/v1/runs/{run_id}/attempts", response_model=Page[Attempt], responses=errors(400, 404),
        dependencies=reads,
    )  # fmt: skip
    async def list_run_attempts(
        run_id: UUID,
        key: ApiKey = Depends(api_key),
        node_id: str | None = Query(default=None, description="one node's attempts only"),
        status: ATTEMPT_STATUSES | None = None,
        limit: int = Query(default=100, ge=1, le=500),
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """Each attempt of each node of the run, in the order they started: the recorded
        request, the answer, tool calls, usage, latency, status and error. A map item or
        an agent step has a row of its own after its attempt's (`item` or `step` set)."""
        filters = {"node_id": node_id, "status": status}
        found = await run_page(
            runtime, caller(key), run_id, node_attempts.run_attempts, filters, limit, cursor
        )
        if not key.allows("admin"):
            run = await read(runtime, run_history.get_run, run_id, key.tenant)
            if run is not None and hides_run(key, run["workflow"], run["workflow_version"]):
                found = without_system_prompts(found)
        return found

    for control, command in CONTROLS.items():
        router.add_api_route(
            f"/v1/runs/{{run_id}}/{control}", _steer(runtime, command), methods=["POST"],
            status_code=202, response_model=Accepted,
            summary=f"{control.capitalize()} a run ({command})", name=snake_case(command),
        )  # fmt: skip
    return router


def _steer(runtime: Runtime, command: str) -> Callable[..., Awaitable[Accepted]]:
    async def steer(
        run_id: UUID,
        body: dict[str, Any] = Body(default={}, description="`reason` (pause and cancel)"),
        who: Caller = Depends(caller),
    ) -> Accepted:
        payload = {**body, "run_id": str(run_id)}
        return await send_run_command(runtime, who, command, payload, str(run_id))

    steer.__doc__ = f"Publishes `{command}` for the run."
    return steer
