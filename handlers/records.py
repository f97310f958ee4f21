"""The transport-neutral shape of a consumed message, and positions to track it by."""

from __future__ import annotations

from dataclasses import dataclass, field

from eventsourcing.persistence import Tracking


@dataclass(frozen=True, slots=True)
class Record:
    """One message as consumed from a topic partition."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return f"{self.topic}:{self.partition}"


def trackings_for(consumer: str, records: list[Record]) -> list[Tracking]:
    """The highest offset per partition of `records`, as tracking positions of `consumer`."""
    highest: dict[str, int] = {}
    for record in records:
        highest[record.source] = max(highest.get(record.source, -1), record.offset)
    return [Tracking(f"{consumer}@{source}", offset) for source, offset in highest.items()]
