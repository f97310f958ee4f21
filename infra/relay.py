"""The relay: publishes the store's notification log to `heddle.events`, in order.

It is the outbox of the event store. It wakes on PostgreSQL's NOTIFY (sent by every
insert), publishes each new event keyed by its aggregate id and waits for the
broker's acknowledgements before it records how far it got, so that after a restart
it resumes there: at-least-once, in order. One relay per database publishes at a
time (an advisory lock elects it); others wait as standbys.
"""

from __future__ import annotations

import asyncio
import logging

import psycopg
from eventsourcing.persistence import Tracking
from faststream.kafka import KafkaBroker

from infra.kafka import publish_all
from infra.store import EventStore, dumps

log = logging.getLogger("heddle.relay")
RELAY_LOCK = 0x68656464  # "hedd": the advisory lock that elects the publishing relay


class Relay:
    """Copies new events from the store to Kafka."""

    def __init__(
        self,
        store: EventStore,
        broker: KafkaBroker,
        database_url: str,
        topic: str,
        position_name: str = "relay",
        batch_size: int = 1000,
    ) -> None:
        self.position_name = position_name
        self.store = store
        self.broker = broker
        self.database_url = database_url
        self.topic = topic
        self.batch_size = batch_size
        self.position = 0
        self.published = 0

    async def run(self) -> None:
        """Publish until cancelled."""
        channel = self.store.recorder.channel_name  # type: ignore[attr-defined]
        async with await psycopg.AsyncConnection.connect(
            self.database_url, autocommit=True
        ) as conn:
            await conn.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(channel)))
            await self._become_leader(conn)
            self.position = self.store.positions([self.position_name]).get(self.position_name, 0)
            log.info("relay publishing to %s from position %s", self.topic, self.position)
            while True:
                published = await self.publish_pending()
                if published < self.batch_size:
                    async for _ in conn.notifies(timeout=1.0, stop_after=1):
                        pass

    async def publish_pending(self) -> int:
        """Publish one batch of new events; returns how many."""
        notifications = await asyncio.to_thread(
            self.store.recorder.select_notifications,
            self.position,
            self.batch_size,
            inclusive_of_start=False,
        )
        if not notifications:
            return 0
        messages = []
        for notification in notifications:
            envelope = self.store.envelope(notification)
            headers = {
                "event-id": envelope["id"],
                "position": str(notification.id),
                "type": envelope["type"],
                "aggregate-id": envelope["aggregate_id"],
                "aggregate-version": str(notification.originator_version),
            }
            messages.append((str(notification.originator_id).encode(), dumps(envelope), headers))
        await publish_all(self.broker, self.topic, messages)
        last = notifications[-1].id
        await asyncio.to_thread(
            self.store.recorder.insert_tracking,  # type: ignore[attr-defined]
            Tracking(self.position_name, last),
        )
        self.position = last
        self.published += len(notifications)
        return len(notifications)

    async def _become_leader(self, conn: psycopg.AsyncConnection) -> None:
        waiting_logged = False
        while True:
            cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (RELAY_LOCK,))
            row = await cursor.fetchone()
            if row and row[0]:
                return
            if not waiting_logged:
                log.info("another relay is publishing; standing by")
                waiting_logged = True
            await asyncio.sleep(1.0)
