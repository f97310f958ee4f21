"""The relay: publishes the store's notification log to `heddle.events`, in order.

It is the outbox of the event store. It wakes on PostgreSQL's NOTIFY (sent by every
insert), publishes each new event keyed by its aggregate id, waits for the broker's
acknowledgements, and then moves on; how far it got is written to the store in the
background (at most one write at a time), so that after a restart it resumes there or
a little before: at-least-once, in order, and the write is off the hot path. One relay
per database publishes at a time (an advisory lock elects it); others wait as standbys.
It has its own Kafka producer: one in-flight batch per partition keeps per-key order.

An event that cannot be published (the broker refuses it for good, as too large: only an
event stored before the claim check, infra/claims.py, can be; or its stored JSON does not
read as an envelope) is never retried at the same position: its envelope without `data`
goes to `heddle.dlq` with the error, and the relay moves on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import psycopg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError
from eventsourcing.persistence import Notification, Tracking

from infra import metrics
from infra.kafka import start_producer
from infra.settings import Settings
from infra.store import EventStore, dumps, event_id

log = logging.getLogger("heddle.relay")
RELAY_LOCK = 0x68656464  # "hedd": the advisory lock that elects the publishing relay
REFUSED_FOR_GOOD = (MessageSizeTooLargeError, RecordListTooLargeError)
"""What the broker answers a message that no retry can publish."""

Message = tuple[bytes, bytes, list[tuple[str, bytes]]]


def event_messages(store: EventStore, notifications: Sequence[Notification]) -> list[Message]:
    """The Kafka messages for stored events: keyed by aggregate id, typed in headers."""
    return [event_message(store, notification) for notification in notifications]


def event_message(store: EventStore, notification: Notification, data: bool = True) -> Message:
    """The Kafka message of a stored event; without `data`, only what the store knows
    of it besides its JSON (for a dead letter). Its trace context and correlation id, if
    it has them, are repeated in the `traceparent` and `correlation-id` headers."""
    type_name = notification.topic.split(":", 1)[1]
    envelope: Mapping[str, Any]
    if data:
        envelope = store.envelope(notification, resolve=False)
    else:
        envelope = {
            "id": event_id(notification), "position": notification.id, "type": type_name,
            "aggregate_type": type_name.rsplit(".", 1)[0],
            "aggregate_id": str(notification.originator_id),
            "aggregate_version": notification.originator_version, "data": {},
        }  # fmt: skip
    headers = [
        ("event-id", envelope["id"].encode()),
        ("position", str(notification.id).encode()),
        ("type", type_name.encode()),
        ("aggregate-id", str(notification.originator_id).encode()),
        ("aggregate-version", str(notification.originator_version).encode()),
    ]
    metadata = envelope.get("metadata") or {}
    headers += [
        (header, metadata[key].encode())
        for header, key in (("traceparent", "traceparent"), ("correlation-id", "correlation_id"))
        if key in metadata
    ]
    return str(notification.originator_id).encode(), dumps(envelope), headers


class Producer(Protocol):
    """What the relay needs of a Kafka producer (aiokafka's satisfies it)."""

    async def send(
        self, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[Any]: ...


class Relay:
    """Copies new events from the store to Kafka."""

    def __init__(
        self,
        store: EventStore,
        database_url: str,
        topic: str,
        kafka: Settings | None = None,
        position_name: str = "relay",
        batch_size: int = 1000,
        producer: Producer | None = None,
        dlq_topic: str | None = None,
    ) -> None:
        self.position_name = position_name
        self.store = store
        self.database_url = database_url
        self.topic = topic
        self.kafka = kafka
        self.batch_size = batch_size
        self.producer = producer
        self.dlq_topic = dlq_topic
        self.dead_lettered = 0
        self.position = 0
        self.saved_position = 0
        self.published = 0
        self._checkpoint: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Publish until cancelled."""
        channel = self.store.recorder.channel_name  # type: ignore[attr-defined]
        async with await psycopg.AsyncConnection.connect(
            self.database_url, autocommit=True
        ) as conn:
            await conn.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(channel)))
            await self._become_leader(conn)
            own = self.producer is None
            if own:
                self.producer = await self._start_producer()
            try:
                positions = self.store.positions([self.position_name])
                self.position = positions.get(self.position_name, 0)
                self.saved_position = self.position
                log.info("relay publishing to %s from position %s", self.topic, self.position)
                while True:
                    published = await self.publish_pending()
                    if published < self.batch_size:
                        async for _ in conn.notifies(timeout=1.0, stop_after=1):
                            pass
            finally:
                if self._checkpoint is not None:
                    await asyncio.gather(self._checkpoint, return_exceptions=True)
                await self.save_position()
                if own:
                    await self.producer.stop()  # type: ignore[union-attr]
                    self.producer = None

    async def publish_pending(self) -> int:
        """Publish one batch of new events; returns how many."""
        assert self.producer is not None, "start the relay's producer first"
        notifications = await asyncio.to_thread(
            self.store.recorder.select_notifications,
            self.position,
            self.batch_size,
            inclusive_of_start=False,
        )
        if not notifications:
            return 0
        sent = []
        for notification in notifications:
            try:
                message = self.message(notification)
            except Exception as error:  # its stored JSON does not read as an envelope
                await self._dead_letter(notification, error, len(notification.state))
                continue
            sent.append((notification, message, await self._send(self.topic, *message)))
        results = await asyncio.gather(*(future for *_, future in sent), return_exceptions=True)
        for (notification, message, _), result in zip(sent, results, strict=True):
            if isinstance(result, REFUSED_FOR_GOOD):
                await self._dead_letter(notification, result, len(message[1]))
            elif isinstance(result, BaseException):
                raise result
        self.position = notifications[-1].id
        self.published += len(notifications)
        log.debug("published %s events up to position %s", len(notifications), self.position)
        if self._checkpoint is None or self._checkpoint.done():
            self._checkpoint = asyncio.create_task(self.save_position())
        return len(notifications)

    def messages(self, notifications: Sequence[Notification]) -> list[Message]:
        return event_messages(self.store, notifications)

    def message(self, notification: Notification, data: bool = True) -> Message:
        return event_message(self.store, notification, data)

    async def _send(
        self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[Any]:
        """Send one message; a refusal for good (raised by the producer before sending)
        comes back in the future, like the broker's."""
        assert self.producer is not None
        try:
            return await self.producer.send(topic, value, key=key, headers=headers)
        except REFUSED_FOR_GOOD as error:
            refused: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            refused.set_exception(error)
            return refused

    async def _dead_letter(
        self, notification: Notification, error: BaseException, size: int
    ) -> None:
        """Record an event that cannot be published (too large, or its JSON does not read):
        its envelope without `data` (the event stays in the store) to the dead-letter
        topic, with the error, so that the relay moves on."""
        log.error(
            "event at position %s (%s, %s bytes) cannot be published: %r; dead-lettered",
            notification.id, notification.topic, size, error,
        )  # fmt: skip
        self.dead_lettered += 1
        metrics.DEAD_LETTERS.labels(topic=self.topic).inc()
        if self.dlq_topic is None:
            return
        key, value, headers = self.message(notification, data=False)
        headers += [
            ("x-error", f"{type(error).__name__}: {error}"[:1000].encode()),
            ("x-original-topic", self.topic.encode()),
            ("x-original-bytes", str(size).encode()),
        ]
        await (await self._send(self.dlq_topic, key, value, headers))

    async def save_position(self) -> None:
        """Record how far the relay has published (only ever forwards), until the saved
        position is the published one: what is published while a save is under way is
        saved next, not left for the next event to carry (reads that wait for a write
        would wait for it)."""
        while self.position > self.saved_position:
            position = self.position
            await asyncio.to_thread(
                self.store.recorder.insert_positions,  # type: ignore[attr-defined]
                [Tracking(self.position_name, position)],
            )
            self.saved_position = position

    async def _start_producer(self) -> AIOKafkaProducer:
        assert self.kafka is not None, "give the relay a producer or Kafka's settings"
        return await start_producer(
            self.kafka,
            "heddle-relay",
            acks="all",
            linger_ms=1,
            max_batch_size=512 * 1024,
        )

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
