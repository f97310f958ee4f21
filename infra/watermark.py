"""How far the read models have got: the store position up to which every event is in
every projection, for `GET /v1/projections` and for reads that wait for a write.

The projector consumes `heddle.events` partition by partition, so the highest store
position it has applied says little: an earlier event of another partition may still
be on its way. The position that holds is the lowest of: what the relay has published
(every event up to it is in Kafka), and for each partition the projector has not read
to its end, the position just before the first record it has not applied.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from psycopg.rows import dict_row
from psycopg.sql import SQL

from infra.live import events_table, partitions_of
from infra.projector import PROJECTIONS, STORE_SOURCE


@dataclass(frozen=True)
class Progress:
    """Positions in the store's log (event positions, from 1)."""

    newest: int
    """The newest event in the store."""
    published: int
    """Every event up to here is on `heddle.events`."""
    consistent: int
    """Every event up to here is in every projection."""
    applied: dict[str, int]
    """Per projection, the highest position it has applied (maybe with gaps below)."""


class ProgressReader:
    """Reads the projections' progress; `open` it for a series of reads (one Kafka client)."""

    def __init__(self, heddle: Any) -> None:
        self.heddle = heddle
        self.consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> ProgressReader:
        self.consumer = AIOKafkaConsumer(
            **self.heddle.settings.kafka_client(),
            client_id="heddle-progress",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self.heddle.settings.fetch_max_wait_ms,
        )
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.consumer is not None:
            await self.consumer.stop()

    async def read(self) -> Progress:
        heddle = self.heddle
        relay = f"relay@{heddle.epoch}"
        published = (await asyncio.to_thread(heddle.store.positions, [relay])).get(relay, 0)
        newest, rows = await self._positions()
        applied = {name: 0 for name in PROJECTIONS}
        offsets: dict[int, int] = {}
        topic = heddle.topics.events
        for row in rows:
            if row["source"] == STORE_SOURCE and row["projection"] in applied:
                applied[row["projection"]] = row["position"]
            elif row["projection"] == f"projector@{heddle.epoch}" and row["source"].startswith(
                f"{topic}:"
            ):
                offsets[int(row["source"].rsplit(":", 1)[1])] = row["position"]
        consistent = min(published, await self._before_unapplied(offsets))
        return Progress(newest, published, consistent, applied)

    async def wait_for(self, position: int, seconds: float) -> Progress:
        """Progress once every projection holds `position`, or the last seen after `seconds`."""
        deadline = time.monotonic() + seconds
        while True:
            progress = await self.read()
            if progress.consistent >= position or time.monotonic() >= deadline:
                return progress
            await asyncio.sleep(0.02)

    async def _positions(self) -> tuple[int, list[dict[str, Any]]]:
        async with self.heddle.reads.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(
                SQL("SELECT coalesce(max(notification_id), 0) AS newest FROM {}").format(
                    events_table(self.heddle.store)
                )
            )
            newest = (await cur.fetchone() or {"newest": 0})["newest"]
            await cur.execute("SELECT projection, source, position FROM projection_positions")
            return int(newest), await cur.fetchall()

    async def _before_unapplied(self, applied: dict[int, int]) -> int:
        """The position before the first unapplied record of any partition (or a huge
        number when the projector has applied every record there is)."""
        consumer = self.consumer
        assert consumer is not None, "use `async with ProgressReader(heddle)`"
        topic = self.heddle.topics.events
        partitions = [TopicPartition(topic, p) for p in await partitions_of(consumer, topic)]
        ends = await consumer.end_offsets(partitions)
        behind = [tp for tp in partitions if applied.get(tp.partition, -1) + 1 < ends[tp]]
        if not behind:
            return 2**62
        consumer.assign(behind)
        for tp in behind:
            consumer.seek(tp, applied.get(tp.partition, -1) + 1)
        first: dict[TopicPartition, int] = {}
        deadline = time.monotonic() + 5.0
        while len(first) < len(behind) and time.monotonic() < deadline:
            batches = await consumer.getmany(*behind, timeout_ms=200, max_records=1)
            for tp, records in batches.items():
                if records and tp not in first:
                    headers = dict(records[0].headers or ())
                    first[tp] = int(headers.get("position", b"1"))
        if len(first) < len(behind):
            return 0  # could not see where a partition stands: claim nothing
        return min(first.values()) - 1
