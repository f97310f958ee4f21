"""`timers`: every timer a run has set (a wait, a retry, a timeout, a deadline, a snooze),
pending until it fires or its run ends. The timer role reads the pending ones that are
due; the events stay the record, so the table can be rebuilt like any other."""

from __future__ import annotations

from domain.messages import RUN_FINISHED, Event, RunEvent
from projections import Cursor

NAME = "timers"
TABLES = ["timers"]
VERSION = 1


def project(events: list[Event], sql: Cursor) -> None:
    """A timer takes its tenant from its run's row (`run_history` projects first). The
    runs that ended are gathered and their pending timers made obsolete in one statement
    (before any later timer event of the batch)."""
    ended: list[tuple[str, int]] = []
    for event in events:
        kind, data = event["type"], event["data"]
        if kind in RUN_FINISHED:
            ended.append((event["aggregate_id"], event["aggregate_version"]))
            continue
        if kind not in (RunEvent.TIMER_SET, RunEvent.TIMER_FIRED):
            continue
        _obsolete(sql, ended)
        ended = []
        key = {"run_id": event["aggregate_id"], "version": event["aggregate_version"]}
        if kind == RunEvent.TIMER_SET:
            sql.execute(
                "INSERT INTO timers (run_id, timer_id, tenant, purpose, node_id, fire_at, status,"
                " version) SELECT %(run_id)s, %(timer_id)s, tenant, %(purpose)s, %(node_id)s,"
                " %(fire_at)s, 'pending', %(version)s FROM runs WHERE run_id = %(run_id)s"
                " ON CONFLICT DO NOTHING",
                {
                    **key,
                    "timer_id": data["timer_id"],
                    "purpose": data["purpose"],
                    "node_id": data["node_id"],
                    "fire_at": data["fire_at"],
                },
            )
        else:
            sql.execute(
                "UPDATE timers SET status = 'fired', version = %(version)s"
                " WHERE run_id = %(run_id)s AND status = 'pending' AND timer_id = %(timer_id)s"
                " AND version < %(version)s",
                {**key, "timer_id": data["timer_id"]},
            )
    _obsolete(sql, ended)


def _obsolete(sql: Cursor, ended: list[tuple[str, int]]) -> None:
    if ended:
        sql.execute(
            "UPDATE timers SET status = 'obsolete', version = ended.version"
            " FROM unnest(%s::uuid[], %s::int[]) AS ended (run_id, version)"
            " WHERE timers.run_id = ended.run_id AND timers.status = 'pending'"
            " AND timers.version < ended.version",
            [[run_id for run_id, _ in ended], [version for _, version in ended]],
        )
