"""Schedules: runs of a workflow started on a cron expression or at a fixed interval.

A schedule's ticks are fixed by its definition alone (an interval's ticks are the
multiples of it since the Unix epoch; a cron expression's are read in its time zone), so
any timer role finds the same ones, and each tick is fired once: its `FireSchedule`
command id names the schedule and the tick, and the intake decides a command id once.
After downtime the ticks missed within the schedule's `catch_up` window fire late, the
older ones are left out. With `overlap: skip`, a tick whose previous run is still going
is recorded as skipped instead of starting another.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID, uuid5
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from eventsourcing.domain import Aggregate, event
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from domain.definitions import HEDDLE_NAMESPACE
from domain.durations import DURATION, seconds
from domain.errors import CommandRejected

SCHEDULE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
MAX_TICKS = 1000
"""At most this many missed ticks fire at once after downtime (the newest ones)."""


class ScheduleSpec(BaseModel):
    """When and what a schedule starts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workflow: str = Field(min_length=1, max_length=200)
    cron: str | None = Field(
        default=None, description="five fields, e.g. `*/15 9-17 * * mon-fri`, in `timezone`"
    )
    every: str | None = Field(default=None, pattern=DURATION, description="e.g. `2s`, `15m`")
    timezone: str = "UTC"
    input: dict[str, Any] = Field(default_factory=dict)
    overlap: Literal["skip", "allow"] = Field(
        default="skip",
        description="skip: a tick whose previous run is still going starts nothing; allow: it"
        " starts another run",
    )
    catch_up: str = Field(
        default="10m",
        pattern=DURATION,
        description="after downtime, ticks missed within this long fire late; older ones never",
    )

    @field_validator("cron")
    @classmethod
    def _cron(cls, cron: str | None) -> str | None:
        if cron is not None and (len(cron.split()) != 5 or not croniter.is_valid(cron)):
            raise ValueError(f"not a cron expression of five fields: {cron!r}")
        return cron

    @field_validator("timezone")
    @classmethod
    def _zone(cls, zone: str) -> str:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {zone!r} (e.g. UTC, Europe/Paris)") from None
        return zone

    @model_validator(mode="after")
    def _one_rule(self) -> ScheduleSpec:
        if (self.cron is None) == (self.every is None):
            raise ValueError("give exactly one of cron and every")
        if self.every is not None and seconds(self.every) < 1:
            raise ValueError("every: at least 1s")
        return self

    def ticks(self, after: datetime, until: datetime) -> list[datetime]:
        """The ticks in (`after`, `until`], oldest first (UTC), the newest `MAX_TICKS`."""
        start = max(after, until - timedelta(seconds=seconds(self.catch_up)))
        found: list[datetime] = []
        if self.every is not None:
            step = seconds(self.every)
            tick = (int(start.timestamp() // step) + 1) * step
            while tick <= until.timestamp():
                found.append(datetime.fromtimestamp(tick, UTC))
                tick += step
            return found[-MAX_TICKS:]
        assert self.cron is not None
        walk = croniter(self.cron, start.astimezone(ZoneInfo(self.timezone)))
        while (due := walk.get_next(datetime)) <= until:
            found.append(due.astimezone(UTC))
        return found[-MAX_TICKS:]

    def next_tick(self, after: datetime) -> datetime:
        """The first tick after `after` (UTC)."""
        if self.every is not None:
            step = seconds(self.every)
            return datetime.fromtimestamp((int(after.timestamp() // step) + 1) * step, UTC)
        assert self.cron is not None
        walk = croniter(self.cron, after.astimezone(ZoneInfo(self.timezone)))
        due: datetime = walk.get_next(datetime)
        return due.astimezone(UTC)


def schedule_id(tenant: str, name: str) -> UUID:
    return uuid5(HEDDLE_NAMESPACE, f"schedule/{tenant}/{name}")


def tick_run_id(schedule: UUID, tick: datetime) -> UUID:
    """The run a tick starts (one per tick, whoever fires it)."""
    return uuid5(schedule, tick.isoformat())


def fire_command_id(schedule: UUID, tick: datetime) -> str:
    return f"schedule:{schedule}:{tick.isoformat()}"


class Schedule(Aggregate):
    """A tenant's schedule: its spec, whether it fires, and its last tick."""

    @staticmethod
    def create_id(tenant: str, name: str) -> UUID:
        return schedule_id(tenant, name)

    @event("Created")
    def __init__(self, tenant: str, name: str, spec: dict[str, Any], actor: str) -> None:
        self.tenant, self.name, self.spec = tenant, name, spec
        self.status = "active"
        self.last_tick: str | None = None
        self.last_run: str | None = None

    @property
    def rules(self) -> ScheduleSpec:
        return ScheduleSpec.model_validate(self.spec)

    def change(self, spec: ScheduleSpec, actor: str) -> None:
        """Replace the spec (a deleted schedule comes back, active)."""
        self._changed(spec.model_dump(mode="json"), actor)

    @event("Changed")
    def _changed(self, spec: dict[str, Any], actor: str) -> None:
        self.spec, self.status = spec, "active"

    def pause(self, actor: str) -> None:
        self._live()
        if self.status == "active":
            self._paused(actor)

    @event("Paused")
    def _paused(self, actor: str) -> None:
        self.status = "paused"

    def resume(self, actor: str) -> None:
        self._live()
        if self.status == "paused":
            self._resumed(actor)

    @event("Resumed")
    def _resumed(self, actor: str) -> None:
        self.status = "active"

    def delete(self, actor: str) -> None:
        self._live()
        self._deleted(actor)

    @event("Deleted")
    def _deleted(self, actor: str) -> None:
        self.status = "deleted"

    def check_fires(self, tick: datetime) -> None:
        """Refuse a tick the schedule does not fire: it is not active, or it fired later."""
        if self.status != "active":
            raise CommandRejected(f"schedule {self.name!r} is {self.status}: it fires nothing")
        if self.last_tick is not None and tick <= datetime.fromisoformat(self.last_tick):
            raise CommandRejected(f"schedule {self.name!r} has fired up to {self.last_tick}")

    def fired(self, tick: datetime, run_id: UUID) -> None:
        self._fired(tick.isoformat(), str(run_id))

    @event("Fired")
    def _fired(self, tick: str, run_id: str) -> None:
        self.last_tick, self.last_run = tick, run_id

    def skipped(self, tick: datetime, reason: str) -> None:
        self._skipped(tick.isoformat(), reason)

    @event("Skipped")
    def _skipped(self, tick: str, reason: str) -> None:
        self.last_tick = tick

    def _live(self) -> None:
        if self.status == "deleted":
            raise CommandRejected(f"no schedule {self.name!r}")
