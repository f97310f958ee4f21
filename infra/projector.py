"""Runs the projections: applies event batches to read-model tables, and rebuilds them.

Each batch is applied to every projection and the consumed positions are written in
the same transaction. A rebuild empties a projection's tables and replays the whole
store in one transaction, so readers see the old rows or the new ones, never a mix.
"""

from __future__ import annotations

import gc
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from types import ModuleType
from typing import Any

import psycopg

from domain.messages import Event, RunEvent
from handlers.records import Record
from infra import metrics, tracing
from infra.store import EventStore
from projections import (
    artifacts,
    customers,
    definitions,
    node_attempts,
    playbooks,
    queues,
    run_history,
    run_timeline,
    schedules,
    tasks,
    threads,
    timers,
    usage,
)

log = logging.getLogger("heddle.projector")
PROJECTIONS: dict[str, ModuleType] = {
    # run_history first: tasks, timers, usage and artifacts take a run's tenant from its row
    p.NAME: p
    for p in (
        run_history,
        run_timeline,
        definitions,
        tasks,
        timers,
        node_attempts,
        usage,
        threads,
        artifacts,
        schedules,
        customers,  # before queues: an item takes its tenant and customer from its row
        queues,
        playbooks,
    )
}

STORE_SOURCE = "store"


ENDS_A_STEP = {RunEvent.NODE_COMPLETED, RunEvent.NODE_FAILED, RunEvent.NODE_RETRY_SCHEDULED}
ENDED_STEPS = """
SELECT DISTINCT ON (a.run_id, a.node_id) r.workflow, a.kind, a.status,
       EXTRACT(EPOCH FROM a.finished_at - a.started_at)::float8
FROM node_attempts a JOIN runs r USING (run_id)
WHERE (a.run_id, a.node_id) IN (SELECT * FROM unnest(%s::uuid[], %s::text[]))
  AND a.item IS NULL AND a.step IS NULL AND a.finished_at IS NOT NULL
ORDER BY a.run_id, a.node_id, a.attempt DESC
"""


def ended_steps(cur: psycopg.Cursor[Any], events: list[Event]) -> list[Any]:
    """(workflow, kind, status, seconds) of the node attempts that `events` ended, as the
    read models now record them (for the node-step histogram)."""
    ended = {(e["aggregate_id"], e["data"]["node_id"]) for e in events if e["type"] in ENDS_A_STEP}
    if not ended:
        return []
    runs, nodes = zip(*ended, strict=True)
    return cur.execute(ENDED_STEPS, [list(runs), list(nodes)]).fetchall()


@contextmanager
def traced(events: list[Event]) -> Iterator[None]:
    """A span for applying `events`, in each trace they belong to."""
    traces = Counter(e.get("metadata", {}).get("traceparent") for e in events)
    traces.pop(None, None)
    with ExitStack() as spans:
        for trace, count in traces.items():
            spans.enter_context(tracing.span("heddle.projector.apply", trace, events=count))
        yield


class Projector:
    """Applies batches of `heddle.events` records to all projections."""

    def __init__(
        self, database_url: str, consumer: str = "projector", store: EventStore | None = None
    ) -> None:
        self.database_url = database_url
        self.consumer = consumer
        self.store = store
        self._conn: psycopg.Connection[Any] | None = None
        self._known: dict[str, int] = {}
        self._lock = threading.Lock()
        self._observed_after: int | None = None
        """Node steps are observed for events past this store position (what the read models
        had when this projector started: a new Kafka epoch brings the whole store again)."""

    def connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.database_url)
            self._known.clear()
        return self._conn

    def apply(self, records: list[Record]) -> int:
        """Apply the records not applied yet; returns how many events were applied."""
        steps: list[Any] = []
        with self._lock:
            conn = self.connection()
            try:
                with conn.transaction(), conn.cursor() as cur:
                    fresh = self._fresh(cur, records)
                    if not fresh:
                        return 0
                    events = self._events(cur, fresh)
                    if self._observed_after is None:
                        self._observed_after = _store_position(cur, node_attempts.NAME)
                    if events:
                        with traced(events):
                            for projection in PROJECTIONS.values():
                                projection.project(events, cur)
                        new = [e for e in events if e["position"] > self._observed_after]
                        steps = ended_steps(cur, new)
                    self._record_positions(cur, fresh, events)
            except BaseException:
                self._known.clear()
                raise
            for record in fresh:
                self._known[record.source] = max(self._known.get(record.source, -1), record.offset)
            metrics.observe_node_steps(steps)
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

    def _events(self, cur: psycopg.Cursor[Any], records: list[Record]) -> list[Event]:
        """The events the records stand for. With a store, they are read from it by the
        position each record names, and a record that matches no stored event (its id
        differs: forged, or from another store) is dropped: the message is only a hint."""
        if self.store is None:
            return [json.loads(r.value) for r in records]
        positions = [_position(r) for r in records]
        stored = self.store.events_at(cur, [p for p in positions if p is not None])
        events = []
        for record, position in zip(records, positions, strict=True):
            event = stored.get(position) if position is not None else None
            if event is None or event["id"] != record.headers.get("event-id"):
                log.warning("%s@%s matches no stored event: not applied", record.source,
                            record.offset)  # fmt: skip
                continue
            events.append(event)
        return events

    def _record_positions(
        self, cur: psycopg.Cursor[Any], records: list[Record], events: list[Event]
    ) -> None:
        highest: dict[str, int] = {}
        for record in records:
            highest[record.source] = max(highest.get(record.source, -1), record.offset)
        rows = [(self.consumer, source, offset) for source, offset in highest.items()]
        if events:
            last = max(e["position"] for e in events)
            rows += [(name, STORE_SOURCE, last) for name in PROJECTIONS]
        cur.executemany(
            "INSERT INTO projection_positions (projection, source, position) VALUES (%s, %s, %s)"
            " ON CONFLICT (projection, source) DO UPDATE SET position = GREATEST("
            "projection_positions.position, EXCLUDED.position)",
            rows,
        )


def _store_position(cur: psycopg.Cursor[Any], projection: str) -> int:
    """How far into the store `projection` has applied events (0: nowhere yet)."""
    row = cur.execute(
        "SELECT position FROM projection_positions WHERE projection = %s AND source = %s",
        [projection, STORE_SOURCE],
    ).fetchone()
    return int(row[0]) if row else 0


def _position(record: Record) -> int | None:
    position = record.headers.get("position", "")
    return int(position) if position.isdigit() else None


def rebuild(
    database_url: str,
    store: EventStore,
    *names: str,
    page: int = 10_000,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Drop the named projections' rows (every projection's when none is named) and replay
    every stored event into them, in one pass over the store; returns the event count.
    `progress(position, last)` is told after each page: the store position applied so
    far, and the store's newest when the rebuild began.

    The next page of events is read and decoded in a thread while this one is applied, so
    the two overlap whenever either waits for PostgreSQL. The garbage collector is paused
    meanwhile: a rebuild makes millions of short-lived dicts and no cycles, and collecting
    while they pile up took a third of its time.
    """
    unknown = [name for name in names if name not in PROJECTIONS]
    if unknown:
        raise KeyError(f"unknown projection {unknown[0]!r} (known: {', '.join(PROJECTIONS)})")
    chosen = [p for name, p in PROJECTIONS.items() if name in names or not names]

    def read(after: int) -> list[Event]:
        notifications = store.recorder.select_notifications(after, page, inclusive_of_start=False)
        return [store.envelope(n) for n in notifications]

    count, position = 0, 0
    last = store.recorder.max_notification_id() or 0
    with (
        _garbage_collection_paused(),
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="heddle-rebuild") as reader,
        psycopg.connect(database_url) as conn,
        conn.transaction(),
        conn.cursor() as cur,
    ):
        cur.execute(f"TRUNCATE {', '.join(t for p in chosen for t in p.TABLES)}")
        events = read(position)
        while events:
            position = events[-1]["position"]
            upcoming = reader.submit(read, position)
            for projection in chosen:
                projection.project(events, cur)
            count += len(events)
            if progress is not None:
                progress(min(position, last), last)
            events = upcoming.result()
        cur.executemany(
            "INSERT INTO projection_positions (projection, source, position) VALUES (%s, %s, %s)"
            " ON CONFLICT (projection, source) DO UPDATE SET position = EXCLUDED.position",
            [(p.NAME, STORE_SOURCE, position) for p in chosen],
        )
    return count


def rebuild_changed(
    database_url: str, store: EventStore, announce: Callable[[str], None] = log.warning
) -> list[str]:
    """Rebuild each projection whose code's `VERSION` is not the one that built its rows
    (`projection_versions`), announcing it, then record every projection's version; the
    names rebuilt. A projection with no version recorded is taken as built by its code
    now: a new database, or one from before versions."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        recorded: dict[str, int] = dict(
            conn.execute("SELECT projection, version FROM projection_versions").fetchall()
        )
        changed = [n for n, p in PROJECTIONS.items() if recorded.get(n, p.VERSION) != p.VERSION]
        if changed:
            announce(f"rebuilding {', '.join(changed)} from the store: their code changed")
            started = time.perf_counter()
            count = rebuild(database_url, store, *changed)
            seconds = time.perf_counter() - started
            announce(f"rebuilt {', '.join(changed)} from {count} events in {seconds:.1f} s")
        conn.cursor().executemany(
            "INSERT INTO projection_versions (projection, version) VALUES (%s, %s)"
            " ON CONFLICT (projection) DO UPDATE SET version = EXCLUDED.version",
            [(name, projection.VERSION) for name, projection in PROJECTIONS.items()],
        )
    return changed


@contextmanager
def _garbage_collection_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
