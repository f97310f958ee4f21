"""Schedules: `POST /v1/schedules` creates or changes one (`CreateSchedule`), `GET`
lists them with their next fire time, and a schedule's page shows its latest ticks (the
run each started, or why it was skipped); pause, resume and delete send their commands
(docs/commands.md, "Schedules")."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field

from api.http.database import Answer, Timestamp, json_object, jsonable, read
from api.http.dependencies import Caller, Runtime, caller
from api.http.problems import errors
from api.http.send import Accepted, send_command
from domain.commands import CreateSchedule
from domain.schedules import schedule_id
from projections import schedules


class ScheduleRow(Answer):
    """A schedule: its rule (`spec`), status, next fire time and counts of its ticks."""

    name: str
    workflow: str
    spec: dict[str, Any] = Field(description="workflow, cron or every, timezone, input, ...")
    status: str = Field(description="active | paused")
    created_at: Timestamp
    next_fire_at: Timestamp | None = Field(description="none unless active")
    last_tick: Timestamp | None
    last_run_id: str | None
    fired: int
    skipped: int


class Fire(Answer):
    """A tick: the run it started, or why it was skipped."""

    tick: Timestamp
    run_id: str | None
    reason: str | None


class ScheduleWithFires(ScheduleRow):
    fires: list[Fire] = Field(description="the latest ticks, newest first")


class Schedules(BaseModel):
    items: list[ScheduleRow]


def routes(runtime: Runtime) -> APIRouter:
    router = APIRouter(tags=["schedules"])

    @router.post(
        "/v1/schedules", status_code=202, response_model=Accepted, responses=errors(413, 422)
    )
    async def create_schedule(command: CreateSchedule, who: Caller = Depends(caller)) -> Accepted:
        """Create a schedule, or change the one of that name: `name`, `workflow`, one of
        `cron` (five fields, in `timezone`) and `every` (`2s`, `15m`), `input`, `overlap`
        (skip|allow) and `catch_up` (how long missed ticks still fire after downtime)."""
        payload = command.model_dump(mode="json", exclude_none=True)
        key = str(schedule_id(who.tenant, command.name))
        return Accepted(command_id=await send_command(runtime, who, "CreateSchedule", payload, key))

    @router.get("/v1/schedules", response_model=Schedules)
    async def list_schedules(who: Caller = Depends(caller)) -> dict[str, Any]:
        """The tenant's schedules by name, each with its next fire time (none unless active)."""
        return {"items": jsonable(await read(runtime, schedules.list_schedules, who.tenant))}

    @router.get(
        "/v1/schedules/{name}", response_model=ScheduleWithFires, responses=errors(404, 422)
    )
    async def get_schedule(
        name: str,
        who: Caller = Depends(caller),
        fires: int = Query(default=20, ge=0, le=500, description="how many latest ticks"),
    ) -> dict[str, Any]:
        """A schedule and its latest ticks, newest first: each tick's run, or why it was skipped."""
        found = await read(runtime, schedules.get_schedule, who.tenant, name, fires)
        if found is None:
            raise HTTPException(404, f"no schedule {name!r}")
        return json_object(found)

    for action, command in (("pause", "PauseSchedule"), ("resume", "ResumeSchedule")):
        router.add_api_route(
            f"/v1/schedules/{{name}}/{action}", _sender(runtime, command), methods=["POST"],
            status_code=202, response_model=Accepted, summary=f"{action.capitalize()} a schedule",
            operation_id=f"{action}_schedule",
        )  # fmt: skip
    router.add_api_route(
        "/v1/schedules/{name}", _sender(runtime, "DeleteSchedule"), methods=["DELETE"],
        status_code=202, response_model=Accepted, summary="Delete a schedule (its runs stay)",
        operation_id="delete_schedule",
    )  # fmt: skip
    return router


def _sender(runtime: Runtime, command: str) -> Any:
    async def send(name: str, who: Caller = Depends(caller)) -> Accepted:
        key = str(schedule_id(who.tenant, name))
        return Accepted(command_id=await send_command(runtime, who, command, {"name": name}, key))

    return send
