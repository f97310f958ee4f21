"""Runs the projections: applies event batches to read-model tables, and rebuilds them.

Each batch is applied to every projection and the consumed positions are written in
the same transaction. A rebuild empties a projection's tables and replays the whole
store in one transaction, so readers see the old rows or the new ones, never a mix.
"""

from __future__ import annotations

import json
import threading
from types import ModuleType
from typing import Any

import psycopg

from handlers.records import Record
from infra.store import EventStore, dumps
from projections import definitions, run_history, run_timeline, tasks, timers

PROJECTIONS: dict[str, ModuleType] = {
    # run_history first: tasks and timers take a run's tenant from its row
    p.NAME: p for p in (run_history, run_timeline, definitions, tasks, timers)
}

POSITIONS_SCHEMA = """
CREATE TABLE IF NOT EXISTS projection_positions (
    projection text NOT NULL,
    source text NOT NULL,
    position bigint NOT NULL,
    PRIMARY KEY (projection, source)
);
"""
STORE_SOURCE = "store"


def create_read_models(conn: psycopg.Connection[Any]) -> None:
    """Create every projection's tables (idempotent)."""
    conn.execute(POSITIONS_SCHEMA)
    for projection in PROJECTIONS.values():
        conn.execute(projection.SCHEMA)


class Projector:
    """Applies batches of `heddle.events` records to all projections."""

    def __init__(self, database_url: str, consumer: str = "projector") -> None:
        self.database_url = database_url
        self.consumer = consumer
        self._conn: psycopg.Connection[Any] | None = None
        self._known: dict[str, int] = {}
        self._lock = threading.Lock()

    def connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.database_url)
            self._known.clear()
        return self._conn

    def apply(self, records: list[Record]) -> int:
        """Apply the records not applied yet; returns how many events were applied."""
        with self._lock:
            conn = self.connection()
            try:
                with conn.transaction(), conn.cursor() as cur:
                    fresh = self._fresh(cur, records)
                    if not fresh:
                        return 0
                    events = [json.loads(r.value) for r in fresh]
                    for projection in PROJECTIONS.values():
                        projection.project(events, cur)
                    self._record_positions(cur, fresh, events)
            except BaseException:
                self._known.clear()
                raise
            for record in fresh:
                self._known[record.source] = max(self._known.get(record.source, -1), record.offset)
            return len(fresh)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def _fresh(self, cur: psycopg.Cursor[Any], records: list[Record]) -> list[Record]:
        missing = sorted({r.source for r in records} - self._known.keys())
        if missing:
            cur.execute(
                "SELECT source, position FROM projection_positions"
                " WHERE projection = %s AND source = ANY(%s)",
                [self.consumer, missing],
            )
            self._known.update({source: -1 for source in missing})
            self._known.update(dict(cur.fetchall()))
        return [r for r in records if r.offset > self._known[r.source]]

    def _record_positions(
        self, cur: psycopg.Cursor[Any], records: list[Record], events: list[dict[str, Any]]
    ) -> None:
        highest: dict[str, int] = {}
        for record in records:
            highest[record.source] = max(highest.get(record.source, -1), record.offset)
        rows = [(self.consumer, source, offset) for source, offset in highest.items()]
        last = max(e["position"] for e in events)
        rows += [(name, STORE_SOURCE, last) for name in PROJECTIONS]
        cur.executemany(
            "INSERT INTO projection_positions (projection, source, position) VALUES (%s, %s, %s)"
            " ON CONFLICT (projection, source) DO UPDATE SET position = GREATEST("
            "projection_positions.position, EXCLUDED.position)",
            rows,
        )


def rebuild(database_url: str, store: EventStore, name: str, page: int = 2000) -> int:
    """Drop a projection's rows and replay every stored event; returns the event count."""
    projection = PROJECTIONS.get(name)
    if projection is None:
        raise KeyError(f"unknown projection {name!r} (known: {', '.join(PROJECTIONS)})")
    count, position = 0, 0
    with psycopg.connect(database_url) as conn, conn.transaction(), conn.cursor() as cur:
        cur.execute(f"TRUNCATE {', '.join(projection.TABLES)}")
        while True:
            notifications = store.recorder.select_notifications(
                position, page, inclusive_of_start=False
            )
            if not notifications:
                break
            events = [json.loads(dumps(store.envelope(n))) for n in notifications]
            projection.project(events, cur)
            position = notifications[-1].id
            count += len(notifications)
        cur.execute(
            "INSERT INTO projection_positions (projection, source, position) VALUES (%s, %s, %s)"
            " ON CONFLICT (projection, source) DO UPDATE SET position = EXCLUDED.position",
            [name, STORE_SOURCE, position],
        )
    return count
