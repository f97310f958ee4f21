"""Live reads for streams: new events of one aggregate as they are stored, and one run's
token deltas from `heddle.tokens`.

Events are read from the store, by aggregate version, so a reader never misses one or
sees one twice. A `Doorbell` tells readers when to look: one LISTEN connection per
process (open while anyone is watching) hears every insert and rings the bells of the
aggregates that got new events. Token deltas are read from the one partition that holds
a run's key, by offset.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import murmur2
from eventsourcing.persistence import Notification
from psycopg.rows import dict_row
from psycopg.sql import SQL, Composed, Identifier
from psycopg_pool import AsyncConnectionPool

from domain.messages import Event
from infra.settings import Settings
from infra.store import EventStore

log = logging.getLogger("heddle.live")


def events_table(store: EventStore) -> Composed:
    recorder: Any = store.recorder
    return SQL("{}.{}").format(
        Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name)
    )


async def events_after(
    store: EventStore, reads: AsyncConnectionPool, aggregate_id: UUID, version: int
) -> list[Event]:
    """An aggregate's events after `version`, in order, as envelopes."""
    query = SQL(
        "SELECT originator_id, originator_version, topic, state, notification_id AS id"
        " FROM {} WHERE originator_id = %s AND originator_version > %s"
        " ORDER BY originator_version"
    ).format(events_table(store))
    async with reads.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, [aggregate_id, version])
        rows = await cur.fetchall()
    return [store.envelope(Notification(**row)) for row in rows]


async def first_and_last_event(
    store: EventStore, reads: AsyncConnectionPool, aggregate_id: UUID
) -> tuple[Event, Event] | None:
    """An aggregate's first and last events, or None when it has none."""
    one = SQL(
        "(SELECT originator_id, originator_version, topic, state, notification_id AS id"
        " FROM {} WHERE originator_id = %s ORDER BY originator_version {} LIMIT 1)"
    )
    table = events_table(store)
    query = SQL(" UNION ALL ").join([one.format(table, SQL("ASC")), one.format(table, SQL("DESC"))])
    async with reads.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, [aggregate_id, aggregate_id])
        rows = await cur.fetchall()
    if not rows:
        return None
    first, last = (store.envelope(Notification(**row)) for row in rows)
    return first, last


class Doorbell:
    """Rings when watched aggregates get new events."""

    def __init__(self, store: EventStore, database_url: str) -> None:
        self.store = store
        self.database_url = database_url
        self._bells: dict[UUID, set[asyncio.Event]] = {}
        self._listener: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def watch(self, aggregate_id: UUID) -> AsyncIterator[asyncio.Event]:
        """A bell set whenever `aggregate_id` may have new events (clear it, then read)."""
        bell = asyncio.Event()
        self._bells.setdefault(aggregate_id, set()).add(bell)
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen())
        try:
            yield bell
        finally:
            bells = self._bells[aggregate_id]
            bells.discard(bell)
            if not bells:
                del self._bells[aggregate_id]
            if not self._bells and self._listener is not None:
                self._listener.cancel()  # not awaited: this may run in a cancelled scope
                self._listener = None

    async def _listen(self) -> None:
        while self._bells:
            try:
                await self._listen_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("store listener failed; listening again in 1 s")
                self._ring(list(self._bells))
                await asyncio.sleep(1.0)

    async def _listen_once(self) -> None:
        channel = self.store.recorder.channel_name  # type: ignore[attr-defined]
        table = events_table(self.store)
        async with await psycopg.AsyncConnection.connect(
            self.database_url, autocommit=True
        ) as conn:
            await conn.execute(SQL("LISTEN {}").format(Identifier(channel)))
            position = await _max_position(conn, table)
            # Whatever was stored before the LISTEN took effect: let every reader look.
            self._ring(list(self._bells))
            while self._bells:
                async for _ in conn.notifies(timeout=1.0, stop_after=1):
                    pass
                newest = await _max_position(conn, table)
                if newest <= position:
                    continue
                cursor = await conn.execute(
                    SQL(
                        "SELECT DISTINCT originator_id FROM {} WHERE notification_id > %s"
                        " AND notification_id <= %s AND originator_id = ANY(%s)"
                    ).format(table),
                    [position, newest, list(self._bells)],
                )
                self._ring([row[0] for row in await cursor.fetchall()])
                position = newest

    def _ring(self, aggregate_ids: list[UUID]) -> None:
        for aggregate_id in aggregate_ids:
            for bell in self._bells.get(aggregate_id, ()):
                bell.set()


async def _max_position(conn: psycopg.AsyncConnection[Any], table: Composed) -> int:
    cursor = await conn.execute(
        SQL("SELECT coalesce(max(notification_id), 0) FROM {}").format(table)
    )
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> list[int]:
    """A topic's partition ids, from fresh metadata (`partitions_for_topic` knows only the
    topics a consumer has subscribed to)."""
    cluster = await consumer._client.fetch_all_metadata()
    partitions = sorted(cluster.partitions_for_topic(topic) or ())
    if not partitions:
        raise RuntimeError(f"topic {topic} does not exist")
    return partitions


class RunTokens:
    """Reads one run's token deltas from its partition of `heddle.tokens`, by offset."""

    def __init__(self, settings: Settings, topic: str, run_id: UUID) -> None:
        self.key = str(run_id).encode()
        self.topic = topic
        self.consumer = AIOKafkaConsumer(
            **settings.kafka_client(),
            client_id="heddle-stream",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
        )
        self.partition: TopicPartition | None = None

    async def start(self, next_offset: int, since_ms: int) -> None:
        """Read from `next_offset`; from the first delta at or after `since_ms` (a time in
        ms) when it is 0 or beyond the end (the topic was recreated)."""
        await self.consumer.start()
        partitions = await partitions_of(self.consumer, self.topic)
        # The producer's partitioner: murmur2 of the key (the run id).
        index = (murmur2(self.key) & 0x7FFFFFFF) % len(partitions)
        self.partition = TopicPartition(self.topic, partitions[index])
        self.consumer.assign([self.partition])
        end = await self.end_offset()
        if 0 < next_offset <= end:
            self.consumer.seek(self.partition, next_offset)
            return
        found = await self.consumer.offsets_for_times({self.partition: since_ms})
        start = found[self.partition]
        self.consumer.seek(self.partition, start.offset if start is not None else end)

    async def read(self, timeout_ms: int) -> tuple[list[tuple[int, bytes]], int]:
        """The run's deltas read next, as (offset, value), and the offset to read after them."""
        assert self.partition is not None
        batches = await self.consumer.getmany(self.partition, timeout_ms=timeout_ms)
        records = batches.get(self.partition, [])
        mine = [(r.offset, r.value or b"") for r in records if r.key == self.key]
        return mine, await self.consumer.position(self.partition)

    async def end_offset(self) -> int:
        assert self.partition is not None
        return int((await self.consumer.end_offsets([self.partition]))[self.partition])

    async def stop(self) -> None:
        await self.consumer.stop()
