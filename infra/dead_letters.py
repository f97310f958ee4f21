"""The dead-letter topic, read and replayed: what `heddle dlq` and `/v1/dead-letters` show.

A dead letter is the original message (value, key, headers) with why it failed and where
it came from in `x-` headers (`infra.kafka.publish_dead_letter`). Replaying one publishes
it again to its original topic, as it was: that is safe, because a command is decided once
per command id and an event is only a hint to look at the store.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from infra.kafka import start_producer
from infra.settings import Settings

READ_LIMIT = 10_000
"""The most dead letters read per partition (the newest)."""


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]

    @property
    def error(self) -> str:
        return self.headers.get("x-error", "")

    @property
    def original_topic(self) -> str:
        return self.headers.get("x-original-topic", "")

    def tenant(self) -> str | None:
        """The tenant a command names (None for an event, or a value that is not JSON)."""
        try:
            body = json.loads(self.value)
        except ValueError:
            return None
        tenant = body.get("tenant") if isinstance(body, dict) else None
        return tenant if isinstance(tenant, str) else None

    def aggregate_id(self) -> str | None:
        return self.headers.get("aggregate-id")

    def summary(self) -> dict[str, Any]:
        original = self.headers
        return {
            "partition": self.partition,
            "offset": self.offset,
            "timestamp_ms": self.timestamp_ms,
            "error": self.error,
            "topic": self.original_topic,
            "original_partition": _int(original.get("x-original-partition")),
            "original_offset": _int(original.get("x-original-offset")),
            "type": original.get("type") or _command_type(self.value),
            "aggregate_id": self.aggregate_id(),
            "bytes": len(self.value),
        }

    def detail(self) -> dict[str, Any]:
        try:
            value: Any = json.loads(self.value)
        except ValueError:
            value = self.value.decode(errors="replace")
        return {**self.summary(), "headers": self.headers, "value": value}


async def read_dead_letters(
    settings: Settings, topic: str, limit: int = READ_LIMIT
) -> list[DeadLetter]:
    """Every dead letter on `topic` (the newest `limit` per partition), oldest first."""
    consumer = AIOKafkaConsumer(**settings.kafka_client(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if partitions is None:
            await consumer._client.force_metadata_update()  # a topic not yet in metadata
            partitions = consumer.partitions_for_topic(topic) or set()
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not assigned:
            return []
        consumer.assign(assigned)
        ends = await consumer.end_offsets(assigned)
        starts = await consumer.beginning_offsets(assigned)
        wanted = {tp: end for tp, end in ends.items() if end > starts[tp]}
        for tp, end in wanted.items():
            consumer.seek(tp, max(starts[tp], end - limit))
        found: list[DeadLetter] = []
        while wanted:
            batches = await consumer.getmany(*wanted, timeout_ms=1000)
            for tp, records in batches.items():
                found += [_dead_letter(r) for r in records if r.offset < wanted[tp]]
            for tp in [tp for tp, end in wanted.items() if await consumer.position(tp) >= end]:
                del wanted[tp]
    finally:
        await consumer.stop()
    return sorted(found, key=lambda d: (d.timestamp_ms, d.partition, d.offset))


async def replay(settings: Settings, letters: Iterable[DeadLetter]) -> int:
    """Publish each dead letter again to its original topic, as it was; how many."""
    producer: AIOKafkaProducer = await start_producer(settings, "heddle-dlq-replay", acks="all")
    try:
        sent = []
        for letter in letters:
            headers = [
                (name, value.encode())
                for name, value in letter.headers.items()
                if not name.startswith("x-")
            ]
            headers.append(("x-replayed-from", f"{letter.partition}@{letter.offset}".encode()))
            sent.append(
                await producer.send(
                    letter.original_topic, letter.value, key=letter.key, headers=headers
                )
            )
        for future in sent:
            await future
    finally:
        await producer.stop()
    return len(sent)


def _dead_letter(record: Any) -> DeadLetter:
    headers = {k: v.decode(errors="replace") for k, v in (record.headers or ())}
    return DeadLetter(
        record.partition, record.offset, record.timestamp, record.key, record.value or b"", headers
    )


def _int(value: str | None) -> int | None:
    return int(value) if value and value.lstrip("-").isdigit() else None


def _command_type(value: bytes) -> str | None:
    try:
        body = json.loads(value)
    except ValueError:
        return None
    kind = body.get("type") if isinstance(body, dict) else None
    return kind if isinstance(kind, str) else None
