"""Commands that change a `Schedule`, and the tick that starts a run of it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from domain.commands import (
    CreateSchedule,
    DeleteSchedule,
    FireSchedule,
    PauseSchedule,
    ResumeSchedule,
    StartRun,
)
from domain.errors import CommandRejected
from domain.messages import CommandEnvelope
from domain.runs import WorkflowRun
from domain.schedules import Schedule, ScheduleSpec, schedule_id, tick_run_id
from handlers.commands.context import Context
from handlers.commands.definitions import published_version
from handlers.commands.runs import start_run
from handlers.unit_of_work import UnitOfWork


def create_schedule(
    command: CreateSchedule, envelope: CommandEnvelope, uow: UnitOfWork, ctx: Context
) -> dict[str, Any]:
    """Create the schedule, or change it: its workflow must be published and take its input."""
    spec = ScheduleSpec.model_validate(command.model_dump(exclude={"name"}))
    published_version(uow, envelope.tenant, spec.workflow, None, spec.input)
    schedule = uow.get(schedule_id(envelope.tenant, command.name), Schedule)
    if schedule is None:
        schedule = Schedule(envelope.tenant, command.name, spec.model_dump(mode="json"),
                            envelope.actor)  # fmt: skip
        uow.add(schedule)
    else:
        schedule.change(spec, envelope.actor)
    return described(schedule)


def pause_schedule(
    command: PauseSchedule, envelope: CommandEnvelope, uow: UnitOfWork, ctx: Context
) -> dict[str, Any]:
    return _changed(uow, envelope, command.name, Schedule.pause)


def resume_schedule(
    command: ResumeSchedule, envelope: CommandEnvelope, uow: UnitOfWork, ctx: Context
) -> dict[str, Any]:
    return _changed(uow, envelope, command.name, Schedule.resume)


def delete_schedule(
    command: DeleteSchedule, envelope: CommandEnvelope, uow: UnitOfWork, ctx: Context
) -> dict[str, Any]:
    return _changed(uow, envelope, command.name, Schedule.delete)


def _changed(
    uow: UnitOfWork, envelope: CommandEnvelope, name: str, change: Callable[[Schedule, str], None]
) -> dict[str, Any]:
    schedule = schedule_of(uow, envelope.tenant, name)
    change(schedule, envelope.actor)
    return described(schedule)


def fire_schedule(
    command: FireSchedule, envelope: CommandEnvelope, uow: UnitOfWork, ctx: Context
) -> dict[str, Any]:
    """A tick: start its run, unless the previous run still goes and overlap is `skip`,
    or the run cannot start (the workflow or its input changed): then the tick is skipped,
    with the reason."""
    schedule = schedule_of(uow, envelope.tenant, command.name)
    schedule.check_fires(command.tick)
    rules = schedule.rules
    if rules.overlap == "skip" and schedule.last_run is not None:
        last = uow.get(UUID(schedule.last_run), WorkflowRun)
        if last is not None and not last.is_finished:
            reason = f"run {schedule.last_run} is still {last.status} (overlap: skip)"
            schedule.skipped(command.tick, reason)
            return {"schedule": schedule.name, "tick": command.tick.isoformat(), "skipped": reason}
    run_id = tick_run_id(schedule.id, command.tick)
    start = StartRun(workflow=rules.workflow, input=rules.input, run_id=run_id)
    try:
        started = start_run(start, envelope, uow, ctx)
    except CommandRejected as error:
        schedule.skipped(command.tick, str(error))
        return {"schedule": schedule.name, "tick": command.tick.isoformat(), "skipped": str(error)}
    schedule.fired(command.tick, run_id)
    return {"schedule": schedule.name, "tick": command.tick.isoformat(), **started}


def schedule_of(uow: UnitOfWork, tenant: str, name: str) -> Schedule:
    schedule = uow.get(schedule_id(tenant, name), Schedule)
    if schedule is None or schedule.status == "deleted":
        raise CommandRejected(f"no schedule {name!r}")
    return schedule


def described(schedule: Schedule) -> dict[str, Any]:
    return {
        "schedule": schedule.name,
        "status": schedule.status,
        "workflow": schedule.spec["workflow"],
    }
