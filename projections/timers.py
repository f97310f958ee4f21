"""`timers`: every timer a run has set (a wait, a retry, a timeout, a deadline, a snooze),
pending until it fires or its run ends. The timer role reads the pending ones that are
due; the events stay the record, so the table can be rebuilt like any other."""

from __future__ import annotations

from typing import Any

from projections import Cursor

NAME = "timers"
TABLES = ["timers"]
SCHEMA = """
CREATE TABLE IF NOT EXISTS timers (
    run_id uuid NOT NULL,
    timer_id text NOT NULL,
    tenant text NOT NULL,
    purpose text NOT NULL,
    node_id text,
    fire_at timestamptz NOT NULL,
    status text NOT NULL,
    version integer NOT NULL,
    PRIMARY KEY (run_id, timer_id)
);
CREATE INDEX IF NOT EXISTS timers_due ON timers (fire_at) WHERE status = 'pending';
"""
ENDED = {"WorkflowRun.Completed", "WorkflowRun.Failed", "WorkflowRun.Cancelled"}


def project(events: list[dict[str, Any]], sql: Cursor) -> None:
    """A timer takes its tenant from its run's row (`run_history` projects first)."""
    for event in events:
        kind, data = event["type"], event["data"]
        key = {"run_id": event["aggregate_id"], "version": event["aggregate_version"]}
        if kind == "WorkflowRun.TimerSet":
            sql.execute(
                "INSERT INTO timers (run_id, timer_id, tenant, purpose, node_id, fire_at, status,"
                " version) SELECT %(run_id)s, %(timer_id)s, tenant, %(purpose)s, %(node_id)s,"
                " %(fire_at)s, 'pending', %(version)s FROM runs WHERE run_id = %(run_id)s"
                " ON CONFLICT DO NOTHING",
                {**key, "timer_id": data["timer_id"], "purpose": data["purpose"],
                 "node_id": data["node_id"], "fire_at": data["fire_at"]},
            )
        elif kind == "WorkflowRun.TimerFired" or kind in ENDED:
            which = "timer_id = %(timer_id)s" if kind == "WorkflowRun.TimerFired" else "TRUE"
            status = "fired" if kind == "WorkflowRun.TimerFired" else "obsolete"
            sql.execute(
                f"UPDATE timers SET status = '{status}', version = %(version)s"
                f" WHERE run_id = %(run_id)s AND status = 'pending' AND {which}"
                " AND version < %(version)s",
                {**key, "timer_id": data.get("timer_id")},
            )
