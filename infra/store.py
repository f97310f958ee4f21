"""The event store: the `eventsourcing` library on PostgreSQL via psycopg 3.

All aggregates live in one application (`heddle_events`, one notification log). Its
recorder writes new events together with any number of tracking positions (one per
consumed partition) in one transaction, which is what makes redelivery harmless.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import json
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar, cast
from uuid import UUID, uuid5

from eventsourcing.application import Application
from eventsourcing.persistence import (
    InterfaceError,
    JSONTranscoder,
    Notification,
    OperationalError,
    Tracking,
)
from eventsourcing.postgres import PostgresProcessRecorder
from eventsourcing.utils import retry
from psycopg.conninfo import conninfo_to_dict
from psycopg.sql import SQL, Identifier

from domain.messages import Event
from handlers.causes import META
from handlers.records import Record
from infra import metrics
from infra.claims import (
    CLAIMS_FIELD,
    CLAIMS_MARK,
    ClaimingMapper,
    Claims,
    create_claims_statement,
    insert_claims_statement,
    put_claims,
)

T = TypeVar("T")
STORE_NAME = "heddle"
TWICE = retry((InterfaceError, OperationalError), max_attempts=2, wait=0.2)


class TrackingRecorder(PostgresProcessRecorder):
    """Writes events and several tracking positions in one transaction.

    Two departures from the library's recorder, both measured here. It sends this
    transaction in psycopg's pipeline mode, which can hang for good on a large batch
    (client and server each waiting to read; psycopg#685): a batch of a few hundred runs'
    events did so. And it passes the events as one array of a composite type, which
    psycopg dumps in Python, row by row: a third of a worker's save. Four arrays of plain
    types (dumped in C) unnested side by side insert the same rows in the same order.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sql_create_statements.append(create_claims_statement(self.datastore.schema))
        self.insert_claims_statement = insert_claims_statement(self.datastore.schema)
        table = SQL("{0}.{1}").format(
            Identifier(self.datastore.schema), Identifier(self.events_table_name)
        )
        self.insert_columns_statement = SQL(
            "INSERT INTO {0} (originator_id, originator_version, topic, state)"
            " SELECT * FROM unnest(%s::{1}[], %s::bigint[], %s::text[], %s::bytea[])"
            " RETURNING notification_id"
        ).format(table, SQL(self.datastore.originator_id_type))

    # The library tries each statement 10 times, each try waiting for a pooled connection:
    # through an outage that held a request for half a minute. Heddle's roles wait outages
    # out themselves (infra/faults.py) and the API answers 503, so a statement is tried twice.
    select_events = TWICE(PostgresProcessRecorder.select_events.__wrapped__)
    select_notifications = TWICE(PostgresProcessRecorder.select_notifications.__wrapped__)
    max_notification_id = TWICE(PostgresProcessRecorder.max_notification_id.__wrapped__)
    insert_tracking = TWICE(PostgresProcessRecorder.insert_tracking.__wrapped__)
    max_tracking_id = TWICE(PostgresProcessRecorder.max_tracking_id.__wrapped__)

    @TWICE
    def insert_positions(self, trackings: Sequence[Tracking]) -> None:
        """Record consumed positions alone, without waiting for the disk (asynchronous
        commit): one lost in a crash only means reading a little again, which repeats
        nothing, and the event writes no longer queue behind these for the disk."""
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            curs.execute("SET LOCAL synchronous_commit TO OFF")
            for tracking in trackings:
                self._insert_tracking(curs, tracking)

    @TWICE
    def insert_events(self, stored_events: Sequence[Any], **kwargs: Any) -> Sequence[int] | None:
        trackings = list(kwargs.get("trackings") or ())
        if kwargs.get("tracking") is not None:
            trackings.append(kwargs["tracking"])
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            for tracking in trackings:
                self._insert_tracking(curs, tracking)
            if not stored_events:
                return []
            claims = {k: v for e in stored_events for k, v in getattr(e, "claims", {}).items()}
            if claims:
                curs.execute(self.insert_claims_statement, [list(claims), list(claims.values())])
            self._lock_table(curs)  # commit order = notification order, for the relay
            self._notify_channel(curs)
            curs.execute(
                self.insert_columns_statement,
                [
                    [e.originator_id for e in stored_events],
                    [e.originator_version for e in stored_events],
                    [e.topic for e in stored_events],
                    [e.state for e in stored_events],
                ],
                prepare=True,
            )
            return [row["notification_id"] for row in curs.fetchall()]


class EventStore(Application[UUID]):
    """Heddle's aggregates and their events."""

    name = STORE_NAME

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.claims = Claims()
        super().__init__(*args, **kwargs)

    def construct_mapper(self) -> Any:
        transcoder = self.construct_transcoder()
        assert isinstance(transcoder, JSONTranscoder)
        return ClaimingMapper(transcoder, self.claims)

    def construct_recorder(self) -> Any:
        recorder = self.factory.process_recorder()
        if isinstance(recorder, TrackingRecorder):
            self.claims.datastore = recorder.datastore
        return recorder

    def positions(self, names: Sequence[str]) -> dict[str, int]:
        """Tracked positions by name (missing ones are absent)."""
        found = {}
        for name in names:
            value = self.recorder.max_tracking_id(name)  # type: ignore[attr-defined]
            if value is not None:
                found[name] = value
        return found

    @property
    def events_table(self) -> str:
        """The events table, with its schema."""
        recorder = self.recorder
        return f"{recorder.datastore.schema}.{recorder.events_table_name}"  # type: ignore[attr-defined]

    def aggregate_events(self, aggregate_id: UUID) -> list[Event]:
        """An aggregate's events as envelopes, with their positions in the store."""
        query = (
            f"SELECT originator_id, originator_version, topic, state, notification_id AS id"
            f" FROM {self.events_table} WHERE originator_id = %s ORDER BY originator_version"
        )
        with self.recorder.datastore.transaction(commit=False) as curs:  # type: ignore[attr-defined]
            curs.execute(query, [aggregate_id])
            rows = curs.fetchall()
        return [self.envelope(Notification(**row)) for row in rows]

    def events_at(self, cur: Any, positions: Sequence[int]) -> dict[int, Event]:
        """The stored events at these positions, as envelopes, read on `cur` (a cursor of
        the same database: a projector's, in its transaction)."""
        cur.execute(
            f"SELECT originator_id, originator_version, topic, state, notification_id"
            f" FROM {self.events_table} WHERE notification_id = ANY(%s)",
            [list(positions)],
        )
        found = {}
        for originator_id, version, topic, state, position in cur.fetchall():
            notification = Notification(
                id=position, originator_id=originator_id, originator_version=version,
                topic=topic, state=bytes(state),
            )  # fmt: skip
            found[position] = self.envelope(notification)
        return found

    def envelope(self, notification: Notification, resolve: bool = True) -> Event:
        """The JSON envelope of a stored event; with `resolve=False`, as published on
        `heddle.events`: its claimed values (infra/claims.py) left in the store, listed in
        `data._claims_`.

        Read from the stored JSON itself rather than through a domain event object: the
        relay does this for every event, and the values it needs are the JSON ones. The
        store is set up without compression or encryption (`store_environment`), and no
        event class has an upcast (`class_version`) that a domain event would apply.
        """
        data = json.loads(notification.state, object_hook=_plain)
        if resolve and CLAIMS_FIELD in data:
            put_claims(data, self.claimed)
        timestamp = data.pop("timestamp")
        data.pop("originator_topic", None)
        metadata = data.pop(META, None) or {}
        type_name = notification.topic.split(":", 1)[1]
        return {
            "id": event_id(notification),
            "position": notification.id,
            "type": type_name,
            "aggregate_type": type_name.rsplit(".", 1)[0],
            "aggregate_id": str(notification.originator_id),
            "aggregate_version": notification.originator_version,
            "timestamp": timestamp,
            "data": data,
            "metadata": metadata,
        }

    def resolved(self, records: list[Record]) -> list[Record]:
        """Consumed `heddle.events` records with their claimed values put back."""
        return [self._resolved(r) if CLAIMS_MARK in r.value else r for r in records]

    def _resolved(self, record: Record) -> Record:
        envelope = json.loads(record.value)
        if CLAIMS_FIELD not in envelope["data"]:
            return record
        put_claims(envelope["data"], self.claimed)
        return dataclasses.replace(record, value=dumps(envelope))

    def claimed(self, sha256: str) -> Any:
        """A claimed value, as plain JSON."""
        return json.loads(self.claims.get(sha256), object_hook=_plain)


def event_id(notification: Notification) -> str:
    """A stored event's id: the same on every redelivery."""
    originator = cast(UUID, notification.originator_id)
    return str(uuid5(originator, str(notification.originator_version)))


# How the library's transcodings (`{"_type_": ..., "_data_": ...}`) appear on the wire.
_PLAIN: dict[str, Callable[[str], str]] = {
    "uuid_hex": lambda data: str(UUID(data)),
    "datetime_iso": str,
    "decimal_str": str,
}


def _plain(value: dict[str, Any]) -> Any:
    if len(value) == 2 and "_type_" in value and "_data_" in value:
        return _PLAIN[value["_type_"]](value["_data_"])
    return value


def store_environment(
    database_url: str, cache_size: int, create_tables: bool, wait_seconds: int = 30
) -> dict[str, str]:
    """The `eventsourcing` settings for a database URL (a unix socket host works); a
    connection is waited for `wait_seconds` at most (to connect, and from the pool)."""
    parts = conninfo_to_dict(database_url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": str(parts.get("dbname", "postgres")),
        "POSTGRES_HOST": str(parts.get("host", "127.0.0.1")),
        "POSTGRES_PORT": str(parts.get("port", "5432")),
        "POSTGRES_USER": str(parts.get("user", "postgres")),
        "POSTGRES_PASSWORD": str(parts.get("password", "")),
        "POSTGRES_POOL_SIZE": "4",
        "POSTGRES_MAX_OVERFLOW": "4",
        "POSTGRES_CONNECT_TIMEOUT": str(wait_seconds),
        "PROCESS_RECORDER_TOPIC": f"{__name__}:TrackingRecorder",
        "CREATE_TABLE": "y" if create_tables else "n",
        "AGGREGATE_CACHE_MAXSIZE": str(cache_size),
        "AGGREGATE_CACHE_FASTFORWARD": "n",
        "DEEPCOPY_FROM_AGGREGATE_CACHE": "n",
    }


class Writer:
    """The one thread that changes aggregates in this process.

    The store's API is synchronous and cached aggregates are shared without copying,
    so every decision and save runs here, one batch at a time, off the event loop.
    """

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="heddle-writer")

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """Run `function` on the writer thread, in the caller's context (its log fields and
        the cause of what it records)."""
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, context.run, _timed, function, *args
        )

    def close(self) -> None:
        self._executor.shutdown(wait=True)


def _timed(function: Callable[..., T], *args: Any) -> T:
    with metrics.timed(metrics.WRITE_BATCH):
        return function(*args)


class Positions:
    """Tracked positions of one consumer per partition, read once and kept current."""

    def __init__(self, store: EventStore, consumer: str) -> None:
        self.store = store
        self.consumer = consumer
        self._known: dict[str, int] = {}
        self._lock = threading.Lock()

    def fresh(self, records: list[Record]) -> list[Record]:
        """Drop records at or below the tracked offset of their partition."""
        with self._lock:
            return [r for r in records if r.offset > self._recorded(r.source)]

    def further(self, offsets: dict[str, int]) -> list[Tracking]:
        """Tracking positions for the partitions `offsets` moves on (recording a position
        that is not further on is refused)."""
        with self._lock:
            return [
                Tracking(f"{self.consumer}@{source}", offset)
                for source, offset in offsets.items()
                if offset > self._recorded(source)
            ]

    def _recorded(self, source: str) -> int:
        """The recorded offset of a partition, read from the store the first time."""
        if source not in self._known:
            name = f"{self.consumer}@{source}"
            self._known[source] = self.store.positions([name]).get(name, -1)
        return self._known[source]

    def forget(self) -> None:
        """Read the recorded offsets from the store again next time: a write that failed
        may have recorded them all the same (its commit landed, its answer did not)."""
        with self._lock:
            self._known.clear()

    def advance(self, trackings: list[Tracking]) -> None:
        with self._lock:
            for tracking in trackings:
                source = tracking.application_name.split("@", 1)[1]
                self._known[source] = max(self._known.get(source, -1), tracking.notification_id)


def dumps(value: Any) -> bytes:
    """JSON for the wire, in UTF-8 (not `\\u` escapes, which can double its size): UUIDs
    and datetimes as strings."""
    return json.dumps(value, default=_default, separators=(",", ":"), ensure_ascii=False).encode()


def _default(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot serialise {type(value).__name__}")
