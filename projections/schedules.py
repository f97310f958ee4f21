"""`schedules`: each schedule with its spec, status and when it fires next, and
`schedule_fires`: what each tick did (the run it started, or why it was skipped). The
timer role reads the due ones (`DUE`); the API lists them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from domain.messages import Event, ScheduleEvent
from domain.schedules import ScheduleSpec
from projections import Cursor, json_text
from projections.queries import AsyncCursor, Row, rows

NAME = "schedules"
TABLES = ["schedules", "schedule_fires"]
VERSION = 1
DUE = """
SELECT schedule_id, tenant, name, spec, fires_after FROM schedules
WHERE status = 'active' AND next_fire_at <= now()
ORDER BY next_fire_at LIMIT 1000
"""
"""The active schedules with a tick due: (id, tenant, name, spec, ticks after this)."""


def project(events: list[Event], sql: Cursor) -> None:
    for event in events:
        kind, data = event["type"], event["data"]
        key: dict[str, Any] = {
            "schedule_id": event["aggregate_id"], "version": event["aggregate_version"],
        }  # fmt: skip
        at = event["timestamp"]
        if kind == ScheduleEvent.CREATED:
            spec = data["spec"]
            sql.execute(
                "INSERT INTO schedules (schedule_id, tenant, name, workflow, spec, status,"
                " created_at, fires_after, next_fire_at, version) VALUES (%(schedule_id)s,"
                " %(tenant)s, %(name)s, %(workflow)s, %(spec)s, 'active', %(at)s, %(at)s,"
                " %(next)s, %(version)s) ON CONFLICT DO NOTHING",
                {**key, "tenant": data["tenant"], "name": data["name"],
                 "workflow": spec["workflow"], "spec": json_text(spec), "at": at,
                 "next": next_fire(spec, at)},
            )  # fmt: skip
        elif kind in (ScheduleEvent.CHANGED, ScheduleEvent.RESUMED):
            changes = "status = 'active', fires_after = GREATEST(fires_after, %(at)s)"
            if kind == ScheduleEvent.CHANGED:
                changes += ", spec = %(spec)s, workflow = %(workflow)s"
            _update(sql, key, changes, at=at, spec=json_text(data.get("spec")),
                    workflow=(data.get("spec") or {}).get("workflow"))  # fmt: skip
        elif kind in (ScheduleEvent.PAUSED, ScheduleEvent.DELETED):
            status = "paused" if kind == ScheduleEvent.PAUSED else "deleted"
            _update(sql, key, "status = %(status)s", status=status)
        elif kind in (ScheduleEvent.FIRED, ScheduleEvent.SKIPPED):
            fired = kind == ScheduleEvent.FIRED
            sql.execute(
                "INSERT INTO schedule_fires (schedule_id, tick, run_id, reason) VALUES"
                " (%(schedule_id)s, %(tick)s, %(run_id)s, %(reason)s) ON CONFLICT DO NOTHING",
                {**key, "tick": data["tick"], "run_id": data.get("run_id"),
                 "reason": data.get("reason")},
            )  # fmt: skip
            changes = "fires_after = GREATEST(fires_after, %(tick)s), last_tick = %(tick)s"
            changes += (
                ", fired = fired + 1, last_run_id = %(run_id)s"
                if fired
                else ", skipped = skipped + 1"
            )
            _update(sql, key, changes, tick=data["tick"], run_id=data.get("run_id"))
        else:
            continue
        _reschedule(sql, event["aggregate_id"])


def next_fire(spec: dict[str, Any], after: str | datetime) -> datetime:
    moment = datetime.fromisoformat(after) if isinstance(after, str) else after
    return ScheduleSpec.model_validate(spec).next_tick(moment)


def _update(sql: Cursor, key: dict[str, Any], changes: str, **values: Any) -> None:
    sql.execute(
        f"UPDATE schedules SET {changes}, version = %(version)s"
        " WHERE schedule_id = %(schedule_id)s AND version < %(version)s",
        {**key, **values},
    )


def _reschedule(sql: Cursor, schedule: str) -> None:
    """Set `next_fire_at` from the row as it now stands (none unless active)."""
    row = sql.execute(
        "SELECT spec, fires_after, status FROM schedules WHERE schedule_id = %s", [schedule]
    ).fetchone()
    if row is None:
        return
    spec, after, status = row
    due = next_fire(spec, after) if status == "active" else None
    sql.execute("UPDATE schedules SET next_fire_at = %s WHERE schedule_id = %s", [due, schedule])


FIELDS = (
    "name", "workflow", "spec", "status", "created_at", "next_fire_at", "last_tick",
    "last_run_id", "fired", "skipped",
)  # fmt: skip


async def list_schedules(sql: AsyncCursor, tenant: str) -> list[Row]:
    """The tenant's schedules (not the deleted ones), by name."""
    return await rows(
        sql,
        f"SELECT {', '.join(FIELDS)} FROM schedules WHERE tenant = %s AND status <> 'deleted'"
        " ORDER BY name",
        [tenant],
    )


async def get_schedule(sql: AsyncCursor, tenant: str, name: str, fires: int) -> Row | None:
    """A schedule with its latest `fires` ticks, newest first (None: none of that name)."""
    found = await rows(
        sql,
        f"SELECT schedule_id, {', '.join(FIELDS)} FROM schedules"
        " WHERE tenant = %s AND name = %s AND status <> 'deleted'",
        [tenant, name],
    )
    if not found:
        return None
    schedule = found[0]
    schedule["fires"] = await rows(
        sql,
        "SELECT tick, run_id, reason FROM schedule_fires WHERE schedule_id = %s"
        " ORDER BY tick DESC LIMIT %s",
        [schedule.pop("schedule_id"), fires],
    )
    return schedule
