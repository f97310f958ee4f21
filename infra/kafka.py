"""Kafka: the FastStream broker, topic creation, and batch consumers with tracked offsets.

Every consumer here follows one pattern: take a batch per poll, hand the records to a
plain handler, and commit the Kafka offsets only after the handler's results (and the
positions they were made from) are committed in PostgreSQL. A redelivered record is
dropped by the handler's tracked position; a batch that fails is sought back and
retried; a record that fails on its own is sent to the dead-letter topic so that the
partition keeps flowing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner
from faststream import AckPolicy
from faststream.kafka import KafkaBroker

from domain.messages import TokenDelta
from handlers.reactions.pipeline import Batch, Progress, Saved
from handlers.records import Record
from infra import metrics
from infra.faults import Outage, is_outage
from infra.settings import Settings, Topics
from infra.store import dumps

log = logging.getLogger("heddle.kafka")

TOKEN_RETENTION_MS = 60 * 60 * 1000
TOKEN_QUEUE_LIMIT = 10_000
GATHER_BYTES = 1024 * 1024
BatchHandler = Callable[[list[Record]], Awaitable[None]]


def create_broker(settings: Settings, bootstrap_servers: str) -> KafkaBroker:
    """The one Kafka connection of a process, used to publish and to subscribe."""
    return KafkaBroker(
        bootstrap_servers,
        security=settings.kafka_security(),
        metadata_max_age_ms=settings.kafka_metadata_max_age_ms,
        client_id="heddle",
        acks="all",
        linger_ms=1,
        max_batch_size=256 * 1024,
        logger=log,
        log_level=logging.DEBUG,
        graceful_timeout=10.0,
    )


async def ensure_topics(settings: Settings, topics: Topics) -> None:
    """Create Heddle's topics if they are missing (idempotent)."""
    await create_topics(
        settings,
        topics.all(),
        settings.partitions,
        {
            # Token deltas are a live view; the answer is recorded as an event.
            topics.tokens: {"retention.ms": str(TOKEN_RETENTION_MS)},
        },
    )


async def create_topics(
    settings: Settings,
    names: list[str],
    partitions: int,
    configs: dict[str, dict[str, str]] | None = None,
) -> None:
    """Create the topics of `names` that are missing (idempotent), with their `configs`."""
    admin = AIOKafkaAdminClient(**settings.kafka_client(), client_id="heddle-admin")
    for attempt in range(30):
        try:
            await admin.start()
            break
        except KafkaConnectionError:
            if attempt == 29:
                raise
            await asyncio.sleep(0.5)
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name,
                num_partitions=partitions,
                replication_factor=1,
                topic_configs=(configs or {}).get(name, {}),
            )
            for name in names
            if name not in existing
        ]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
    finally:
        await admin.close()


def consumer_groups(topics: Topics) -> dict[str, str]:
    """The consumer group of each role that consumes (each prefixed with `group_prefix`),
    and the topics it reads: a regular expression."""
    return {
        "intake": re.escape(topics.commands),
        "intake-tenants": topics.tenant_commands_pattern,
        "intake-results": re.escape(topics.task_results),
        "worker": re.escape(topics.events),
        "projector": re.escape(topics.events),
    }


async def consumer_lag(settings: Settings, topics: Topics) -> dict[tuple[str, str], int]:
    """Per (group, topic), how many messages the group has not committed yet: the end of
    each partition it has committed an offset on, minus that offset. (The partitions are
    named in the request: Tansu answers no request for all of a group's offsets.)"""
    client = settings.kafka_client()
    admin = AIOKafkaAdminClient(**client, request_timeout_ms=3000)
    consumer = AIOKafkaConsumer(**client, enable_auto_commit=False, request_timeout_ms=3000)
    await admin.start()
    try:
        await consumer.start()
        cluster = await consumer._client.fetch_all_metadata()
        committed = {}
        for group, pattern in consumer_groups(topics).items():
            read = [t for t in cluster.topics() if re.fullmatch(pattern, t)]
            partitions = [
                TopicPartition(t, p) for t in read for p in cluster.partitions_for_topic(t)
            ]
            if partitions:
                group_id = f"{settings.group_prefix}-{group}"
                committed[group] = await admin.list_consumer_group_offsets(
                    group_id, partitions=partitions
                )
        every = {tp for offsets in committed.values() for tp in offsets}
        ends = await consumer.end_offsets(list(every)) if every else {}
    finally:
        await consumer.stop()
        await admin.close()
    lag: dict[tuple[str, str], int] = {}
    for group, offsets in committed.items():
        for tp, at in offsets.items():
            if at.offset >= 0:
                behind = max(0, ends[tp] - at.offset)
                lag[(group, tp.topic)] = lag.get((group, tp.topic), 0) + behind
    return lag


def subscribe_batches(
    broker: KafkaBroker,
    settings: Settings,
    topic: str,
    group: str,
    handler: BatchHandler,
    *,
    dlq_topic: str,
    gather_ms: int | None = None,
    pattern: bool = False,
) -> None:
    """Register `handler` for batches of `topic` in consumer group `group`. With
    `gather_ms`, the broker holds each fetch until it has `GATHER_BYTES` or that long has
    passed: fewer, fuller batches, for a consumer whose cost is mostly per batch. With
    `pattern`, `topic` is a regular expression: every topic it matches is read (and one
    made later, once the clients' metadata is refreshed)."""
    failures: dict[tuple[int, int], int] = {}
    outage = Outage(f"reading {topic}")

    async def consume() -> None:
        message = broker.context.get_local("message")
        records = [_record(raw) for raw in message.raw_message]
        if not records:
            return
        first = (records[0].partition, records[0].offset)
        try:
            await handler(records)
        except Exception as error:
            if is_outage(error):
                await outage.wait(error)
                await message.nack()  # read again, not counted
                return
            failures[first] = failures.get(first, 0) + 1
            if failures[first] < settings.dlq_after_attempts:
                log.warning("batch from %s failed (attempt %s): %r", topic, failures[first], error)
                await asyncio.sleep(min(0.1 * 2 ** failures[first], 5.0))
                raise
            failures.pop(first, None)
            await _isolate_poison(broker, handler, records, dlq_topic, error)
        else:
            failures.pop(first, None)
            outage.over()
        await message.ack()

    batch_subscriber(
        broker, settings, topic, group, AckPolicy.NACK_ON_ERROR,
        fetch_max_wait_ms=gather_ms or settings.fetch_max_wait_ms,
        fetch_min_bytes=GATHER_BYTES if gather_ms else 1, pattern=pattern,
    )(consume)  # fmt: skip


def batch_subscriber(
    broker: KafkaBroker,
    settings: Settings,
    topic: str,
    group: str,
    ack_policy: AckPolicy,
    fetch_max_wait_ms: int,
    fetch_min_bytes: int = 1,
    pattern: bool = False,
) -> Any:
    """FastStream's batch subscriber of `topic` (a regular expression with `pattern`) in
    consumer group `group`, as every consumer of Heddle's reads: raw records, from the
    earliest offset of a new group."""
    return broker.subscriber(
        *([] if pattern else [topic]),
        pattern=topic if pattern else None,
        group_id=f"{settings.group_prefix}-{group}",
        batch=True,
        max_records=settings.batch_size,
        # FastStream sleeps this long again after a poll that found nothing, so it
        # bounds how long a message sent to an idle consumer waits: keep it short.
        batch_timeout_ms=settings.idle_poll_ms,
        fetch_max_wait_ms=fetch_max_wait_ms,
        fetch_min_bytes=fetch_min_bytes,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=max(100, settings.session_timeout_ms // 4),
        ack_policy=ack_policy,
        decoder=_undecoded,
        title=f"{group}:{topic}",
    )


@dataclass
class Reading:
    """The partitions of `topic` this process's consumer reads now (`subscribe_pipelined`
    sets the consumer once it has read)."""

    topic: str
    consumer: Any = None

    def partition(self, key: bytes) -> int | None:
        """The partition a producer sends `key` to, if this consumer reads it now."""
        if self.consumer is None:
            return None
        partitions = self.consumer.partitions_for_topic(self.topic)
        if not partitions:
            return None
        partition: int = DefaultPartitioner()(key, sorted(partitions), [])
        owned = TopicPartition(self.topic, partition) in self.consumer.assignment()
        return partition if owned else None


class Pipelined(Protocol):
    """A consumer whose records start work that ends later (the run worker's pipeline)."""

    async def take(self, records: list[Record]) -> Saved: ...

    def busy(self) -> bool: ...

    async def settle(self, committable: dict[str, int]) -> None: ...


def subscribe_pipelined(
    broker: KafkaBroker,
    settings: Settings,
    topic: str,
    group: str,
    pipeline: Pipelined,
    *,
    dlq_topic: str,
    reading: Reading | None = None,
) -> None:
    """Register `pipeline` for batches of `topic` in consumer group `group`. Reading goes
    on while a batch's work is in flight; a partition is committed only up to the batches
    whose outcomes are all saved (after `pipeline.settle` records that position), so a
    crash repeats at most the work that was in flight. While the pipeline is busy, the
    consumer's partitions are paused (it keeps its group membership) instead of blocking.
    A batch that cannot be started, or whose work failed, is read again; after
    `dlq_after_attempts` its records go one by one, and those that still fail to the
    dead-letter topic. `reading` is kept told of the consumer."""
    progress = Progress()
    failures: dict[tuple[int, int], int] = {}
    outage = Outage(f"reading {topic}")
    state: dict[str, Any] = {"consumer": None, "committer": None}
    wake = asyncio.Event()

    async def consume() -> None:
        message = broker.context.get_local("message")
        state["consumer"] = consumer = message.consumer
        if reading is not None:
            reading.consumer = consumer
        if state["committer"] is None or state["committer"].done():
            state["committer"] = asyncio.create_task(commit_forever())
        records = [_record(raw) for raw in message.raw_message]
        if not records:
            return
        first = (records[0].partition, records[0].offset)
        try:
            saved = await pipeline.take(records)
            outage.over()
        except Exception as error:
            if is_outage(error):
                await outage.wait(error)
                await message.nack()  # read again, not counted
                return
            failures[first] = failures.get(first, 0) + 1
            if failures[first] < settings.dlq_after_attempts:
                log.warning("batch from %s failed (attempt %s): %r", topic, failures[first], error)
                await asyncio.sleep(min(0.1 * 2 ** failures[first], 5.0))
                await message.nack()
                return
            failures.pop(first, None)
            saved = await _isolate(pipeline, broker, records, dlq_topic, error)
        progress.add(records, saved)
        saved.add_done_callback(lambda _: wake.set())
        if pipeline.busy():
            consumer.pause(*consumer.assignment())

    async def commit_forever() -> None:
        while True:
            await wake.wait()
            wake.clear()
            try:
                await commit(state["consumer"])
            except Exception:
                log.exception("committing the worker's offsets failed; trying again")
                await asyncio.sleep(1.0)
                wake.set()
            await asyncio.sleep(settings.worker_commit_interval_ms / 1000)

    async def commit(consumer: Any) -> None:
        committable, failed = progress.settled()
        for batch in failed:
            if await _read_again_or_dead_letter(
                consumer, broker, settings, dlq_topic, failures, batch
            ):
                progress.drop(batch)
                wake.set()  # the partition may commit past it now
        if committable:
            await pipeline.settle(committable)
            offsets = {}
            for source, offset in committable.items():
                name, _, partition = source.rpartition(":")
                offsets[TopicPartition(name, int(partition))] = offset + 1
            owned = consumer.assignment()
            offsets = {tp: offset for tp, offset in offsets.items() if tp in owned}
            if offsets:
                await consumer.commit(offsets)
        if consumer.paused() and not pipeline.busy():
            consumer.resume(*consumer.paused())

    batch_subscriber(broker, settings, topic, group, AckPolicy.MANUAL, settings.fetch_max_wait_ms)(
        consume
    )


async def _read_again_or_dead_letter(
    consumer: Any,
    broker: KafkaBroker,
    settings: Settings,
    dlq_topic: str,
    failures: dict[tuple[int, int], int],
    batch: Batch,
) -> bool:
    """A batch whose work failed is read again (seek back); after `dlq_after_attempts`
    its records go to the dead-letter topic instead: then True (give it up)."""
    record = batch.records[0]
    where = (record.partition, batch.first)
    error = batch.saved.exception() if not batch.saved.cancelled() else None
    if error is None or is_outage(error):  # cancelled (closing) or an outage: not counted
        consumer.seek(TopicPartition(record.topic, record.partition), batch.first)
        return False
    failures[where] = failures.get(where, 0) + 1
    if failures[where] < settings.dlq_after_attempts:
        log.warning("work of %s:%s@%s failed: reading it again", record.topic,
                    record.partition, record.offset)  # fmt: skip
        consumer.seek(TopicPartition(record.topic, record.partition), batch.first)
        return False
    failures.pop(where, None)
    for poison in batch.records:
        await publish_dead_letter(broker, dlq_topic, poison, error)
    return True


async def _isolate(
    pipeline: Pipelined,
    broker: KafkaBroker,
    records: list[Record],
    dlq_topic: str,
    batch_error: Exception,
) -> Saved:
    """Start a failing batch's records one at a time; dead-letter those that still fail."""
    log.error("batch keeps failing (%r); isolating the poison records", batch_error)
    started = []
    for record in records:
        try:
            started.append(await pipeline.take([record]))
        except Exception as error:
            await publish_dead_letter(broker, dlq_topic, record, error)
    return asyncio.gather(*started)


async def _undecoded(message: Any) -> None:
    """Skip FastStream's decoding: handlers take the raw records, and decode only what they need."""
    return None


async def _isolate_poison(
    broker: KafkaBroker,
    handler: BatchHandler,
    records: list[Record],
    dlq_topic: str,
    batch_error: Exception,
) -> None:
    """Retry a failing batch one record at a time; dead-letter the ones that still fail."""
    log.error("batch keeps failing (%r); isolating the poison records", batch_error)
    for record in records:
        try:
            await handler([record])
        except Exception as error:
            await publish_dead_letter(broker, dlq_topic, record, error)


async def publish_dead_letter(
    broker: KafkaBroker, dlq_topic: str, record: Record, error: BaseException
) -> None:
    """Send the original record to the dead-letter topic with the error in its headers."""
    headers = {
        **record.headers,
        "x-error": f"{type(error).__name__}: {error}"[:1000],
        "x-original-topic": record.topic,
        "x-original-partition": str(record.partition),
        "x-original-offset": str(record.offset),
    }
    log.error("dead-lettered %s:%s@%s: %s", record.topic, record.partition, record.offset, error)
    metrics.DEAD_LETTERS.labels(topic=record.topic).inc()
    await broker.publish(record.value, dlq_topic, key=record.key, headers=headers)


def _record(raw: ConsumerRecord[Any, Any]) -> Record:
    headers = {k: v.decode(errors="replace") for k, v in (raw.headers or ())}
    return Record(raw.topic, raw.partition, raw.offset, raw.key, raw.value or b"", headers)


async def publish_all(
    broker: KafkaBroker, topic: str, messages: Iterable[tuple[bytes, bytes, dict[str, str]]]
) -> None:
    """Publish many messages, keyed, and wait until the broker has acknowledged all."""
    futures = [
        await broker.publish(value, topic, key=key, headers=headers, no_confirm=True)
        for key, value, headers in messages
    ]
    if futures:
        await asyncio.gather(*futures)


async def start_producer(settings: Settings, client_id: str, **options: Any) -> AIOKafkaProducer:
    """A bare aiokafka producer, for the hot paths where the broker's per-message
    machinery would cost more than the message."""
    producer = AIOKafkaProducer(**settings.kafka_client(), client_id=client_id, **options)
    try:
        await producer.start()
    except BaseException:  # cancelled while connecting: close it, or it warns when freed
        await asyncio.shield(producer.stop())
        raise
    return producer


class TokenPublisher:
    """Publishes token pieces to `heddle.tokens`, keyed by run id, with its own producer.

    `publish` never waits: pieces are queued and one task hands them to the producer in
    order, without waiting for each acknowledgement. Tokens are a live view (the answer
    is recorded as an event), so a piece that is not delivered is logged, never raised,
    and pieces are dropped rather than queued without bound while the broker is away.
    """

    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings = settings
        self.topic = topic
        self.lost = 0
        self._queue: asyncio.Queue[tuple[bytes, bytes]] = asyncio.Queue(TOKEN_QUEUE_LIMIT)
        self._producer: AIOKafkaProducer | None = None
        self._sender: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._producer = await start_producer(self.settings, "heddle-tokens", linger_ms=5)
        self._sender = asyncio.create_task(self._send())

    async def stop(self) -> None:
        """Send what is queued, then close."""
        if self._sender is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._queue.join(), timeout=5.0)
            self._sender.cancel()
            await asyncio.gather(self._sender, return_exceptions=True)
        if self._producer is not None:
            await self._producer.stop()

    def publish(self, delta: TokenDelta) -> None:
        try:
            self._queue.put_nowait((str(delta.run_id).encode(), dumps(delta.as_message())))
        except asyncio.QueueFull:
            self._lose(RuntimeError(f"{TOKEN_QUEUE_LIMIT} token pieces already waiting"))

    async def _send(self) -> None:
        assert self._producer is not None
        while True:
            key, value = await self._queue.get()
            try:
                sent = await self._producer.send(self.topic, value, key=key)
                sent.add_done_callback(self._delivered)
            except Exception as error:
                self._lose(error)
            finally:
                self._queue.task_done()

    def _delivered(self, sent: asyncio.Future[Any]) -> None:
        if not sent.cancelled() and sent.exception() is not None:
            self._lose(sent.exception())

    def _lose(self, error: BaseException | None) -> None:
        self.lost += 1
        metrics.LOST_TOKEN_PIECES.inc()
        log.warning("a token piece was not delivered (%d so far): %r", self.lost, error)
